"""The alerts part of the daemon: builds targets, outbox delivery, silences, the rule engine
and the heartbeat from ``[alerts]``, and answers the ``alerts.*`` and ``silences.*`` requests."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from harness import logs, protocol
from harness.alerts import outbox
from harness.alerts.delivery import SEND_CONCURRENCY, Delivery
from harness.alerts.engine import Engine, render, silence_event
from harness.alerts.heartbeat import Heartbeat
from harness.alerts.rules import AlertsConfig, seconds
from harness.alerts.silences import Silences, describe_all
from harness.alerts.targets import Target
from harness.recorder import Recorder
from harness.server import RequestError
from harness.store import Store

log = logging.getLogger(__name__)

PRUNE_INTERVAL = 3600.0

Current = Callable[[], Awaitable[dict[str, Any]]]


class Alerts:
    def __init__(self, config: AlertsConfig, store: Store, recorder: Recorder) -> None:
        self.config = config
        self.store = store
        self.recorder = recorder
        urls = config.target_urls
        self.targets = {
            name: Target(
                name, url, workers=SEND_CONCURRENCY, read_timeout=seconds(config.send_timeout)
            )
            for name, url in urls.items()
        }
        # Before anything can log a URL: from here on the log filter masks every secret part.
        for target in self.targets.values():
            logs.add_secrets(target.secrets)
        if config.heartbeat_url:
            logs.add_secrets({config.heartbeat_url})
        self.silences = Silences(store)
        self.delivery = Delivery(
            store,
            self.targets,
            timeout=seconds(config.send_timeout),
            retry_initial=seconds(config.retry_initial),
            retry_max=seconds(config.retry_max),
            on_failed=self._on_failed,
        )
        self.engine = Engine(
            config.active_rules,
            self.targets,
            store,
            recorder,
            self.silences,
            self.delivery.wake,
        )
        self.heartbeat = (
            Heartbeat(
                config.heartbeat_url,
                seconds(config.heartbeat_every),
                seconds(config.send_timeout),
            )
            if config.heartbeat_url
            else None
        )
        self._pruner: asyncio.Task[None] | None = None

    async def start(self, current: Current) -> None:
        dropped = await outbox.drop_unknown_targets(self.store, list(self.targets))
        if dropped:
            log.warning("alerts: %d queued notification(s) for removed targets dropped", dropped)
        await self._prune()  # here, not in the background: start leaves no transaction open
        await self.silences.load()
        await self.engine.start(current)
        self.delivery.start()
        if self.heartbeat is not None:
            self.heartbeat.start()
        self._pruner = asyncio.get_running_loop().create_task(self._prune_loop())
        if self.targets or self.heartbeat:
            log.info(
                "alerts: %d rule(s), targets %s%s",
                len(self.engine.rules),
                ", ".join(f"{t.name}={t.shown}" for t in self.targets.values()) or "none",
                f", heartbeat {self.heartbeat.shown}" if self.heartbeat else "",
            )

    async def stop(self) -> None:
        """Stop judging first, so the plugins' ``stopped`` on shutdown resolves nothing; what is
        still queued stays in the outbox for the next start."""
        await self.engine.stop()
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
        await self.delivery.stop()
        if self.heartbeat is not None:
            await self.heartbeat.stop()

    async def _prune(self) -> None:
        try:
            await outbox.prune(self.store, self.config.history_max)
        except Exception:
            log.exception("alerts: pruning the notification history failed")

    async def _prune_loop(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_INTERVAL)
            await self._prune()

    async def _on_failed(
        self, target: Target, row: outbox.Queued, error: str, attempts: int, next_try: float
    ) -> None:
        await self.recorder.record(
            "alert:failed",
            {
                "target": target.name,
                "url": target.shown,
                "kind": row.kind,
                "rule": row.rule,
                "plugin": row.plugin,
                "key": row.dedup_key,
                "error": error,
                "attempts": attempts,
                "next_try": next_try,
            },
        )

    # -- requests ------------------------------------------------------------------------------

    def handlers(self) -> dict[str, Any]:
        return {
            "alerts.list": self._list,
            "alerts.history": self._history,
            "alerts.test": self._test,
            "silences.list": self._silences_list,
            "silences.add": self._silences_add,
            "silences.end": self._silences_end,
        }

    async def _list(self, _: protocol.NoParams) -> dict[str, Any]:
        summary = await outbox.target_summary(self.store)
        now = time.time()
        return {
            "rules": {name: rule.describe() for name, rule in self.engine.rules.items()},
            "targets": [
                {
                    "name": t.name,
                    "url": t.shown,
                    "pending": summary.get(t.name, {}).get("pending", 0),
                    "attempts": summary.get(t.name, {}).get("attempts", 0),
                    "last_error": summary.get(t.name, {}).get("last_error"),
                    "next_try": summary.get(t.name, {}).get("next_try"),
                    "last_sent": summary.get(t.name, {}).get("last_sent"),
                }
                for t in self.targets.values()
            ],
            "active": self.engine.active(),
            "silences": describe_all(self.silences.current.values(), now),
            "heartbeat": self.heartbeat.describe() if self.heartbeat else None,
        }

    async def _history(self, params: protocol.AlertsHistory) -> list[dict[str, Any]]:
        rows = await outbox.history(self.store, limit=params.limit, target=params.target)
        shown = {t.name: t.shown for t in self.targets.values()}
        out = []
        for r in rows:
            data: dict[str, Any] = msgspec.to_builtins(r)
            data.pop("body")
            data["url"] = shown.get(r.target, "(no longer configured)")
            out.append(data)
        return out

    async def _test(self, params: protocol.AlertsTest) -> dict[str, Any]:
        target = self.targets.get(params.target)
        if target is None:
            known = ", ".join(self.targets) or "none configured ([alerts] targets)"
            raise RequestError(
                protocol.E_NOT_FOUND, f"no alert target named {params.target!r}; known: {known}"
            )
        now = time.time()
        key = f"test/{int(now * 1000)}"
        title, body = render("test", "harness", "test", "a test notification", now, "-", key)
        title = "harness: test notification"
        sent, error = await target.send(title, body, "test", seconds(self.config.send_timeout))
        notice = outbox.Notice(
            dedup_key=f"{key}@{target.name}",
            target=target.name,
            kind="test",
            rule="-",
            plugin="-",
            title=title,
            body=body,
        )
        await outbox.record_done(self.store, notice, sent=sent, error=error)
        return {"target": target.name, "url": target.shown, "sent": sent, "error": error or None}

    async def _silences_list(self, _: protocol.NoParams) -> list[dict[str, Any]]:
        # Recent ones too (the last 24 h), so a client can leave them out of the uptime.
        now = time.time()
        return describe_all(await self.silences.recent(now - 86400), now)

    async def _silences_add(self, params: protocol.SilenceAdd) -> dict[str, Any]:
        # A silence for a misspelt name would cover nothing while its author believes the
        # plugin quiet: refused, with the names it could have meant.
        names = [row.name for row in await self.store.list_plugins()]
        if not any(fnmatch.fnmatchcase(name, params.plugin) for name in names):
            raise RequestError(
                protocol.E_NOT_FOUND,
                f"silence not added: no plugin matches {protocol.clip(params.plugin)!r}; "
                f"known: {', '.join(names) or 'none'}",
            )
        try:
            duration = seconds(params.duration)
            silence = await self.silences.add(params.plugin, duration, params.reason)
        except ValueError as exc:
            raise RequestError(protocol.E_BAD_PARAMS, f"silence not added: {exc}") from None
        data = silence_event(silence, "added")
        await self.recorder.record("alert:silence", data)
        self.engine.silences_changed()
        return data

    async def _silences_end(self, params: protocol.SilenceEnd) -> dict[str, Any]:
        silence = await self.silences.end(params.id)
        if silence is None:
            raise RequestError(
                protocol.E_NOT_FOUND,
                f"no running silence #{params.id}; `harness silence list` shows them",
            )
        data = silence_event(silence, "ended")
        await self.recorder.record("alert:silence", data)
        self.engine.silences_changed()
        return data
