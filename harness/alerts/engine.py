"""The rule engine: a bus subscriber that turns connection changes into firings, reminders,
resolves and flap notices, and queues one notification per target for each in the outbox.

Everything runs in one consumer task, fed by the bus and by its own timers (``for``, reminders,
flap quiet, silence ends), so no two decisions about the same plugin ever interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from harness.alerts import outbox
from harness.alerts.rules import AlertRule, seconds
from harness.alerts.silences import Silence, Silences
from harness.bus import Patterns
from harness.protocol import Event, plugin_of_connection_event
from harness.recorder import Recorder
from harness.store import Store

log = logging.getLogger(__name__)

QUEUE_MAX = 10_000  # connection events waiting for the engine; more are dropped and logged


@dataclasses.dataclass
class Track:
    """What the engine knows about one plugin under one rule."""

    state: str | None = None
    reason: str | None = None
    bad_since: float = 0.0
    state_since: float = 0.0  # when the current state began (the connection's `since`)
    pending: asyncio.TimerHandle | None = None  # the `for` timer
    token: int = 0  # invalidates a `for` timer that already queued its item
    firing: outbox.Active | None = None
    remind: asyncio.TimerHandle | None = None
    changes: deque[float] = dataclasses.field(default_factory=deque)
    flapping: str = ""  # the flap notice's key while flapping
    quiet: asyncio.TimerHandle | None = None
    quiet_token: int = 0

    def cancel_pending(self) -> None:
        if self.pending is not None:
            self.pending.cancel()
            self.pending = None
        self.token += 1


def when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def render(
    kind: str,
    plugin: str,
    state: str,
    reason: str | None,
    since: float,
    rule: str,
    key: str,
    extra: str = "",
) -> tuple[str, str]:
    """Title and body. The body's ``name: value`` lines are stable, for receivers to parse;
    ``alert`` is the dedup key a receiver may use to drop a repeat."""
    titles = {
        "fired": f"{plugin} is {state}",
        "reminder": f"{plugin} is still {state}",
        "resolved": f"{plugin} recovered: {state}",
        "flapping": f"{plugin} is flapping",
        "stable": f"{plugin} is stable again: {state}",
    }
    title = f"harness: {titles.get(kind, kind)}"
    lines = [
        f"{title.removeprefix('harness: ')}{': ' + reason if reason else ''}"
        + (f" ({extra})" if extra else ""),
        "",
        f"plugin: {plugin}",
        f"state: {state}",
        f"reason: {reason or '-'}",
        f"since: {when(since)}",
        f"rule: {rule}",
        f"kind: {kind}",
        f"alert: {key}",
    ]
    return title, "\n".join(lines)


class Engine:
    def __init__(
        self,
        rules: Mapping[str, AlertRule],
        targets: Iterable[str],
        store: Store,
        recorder: Recorder,
        silences: Silences,
        wake: Callable[[set[str]], None],
    ) -> None:
        self.rules = dict(rules)
        self.target_names = list(targets)
        self.store = store
        self.recorder = recorder
        self.silences = silences
        self._wake = wake
        self.patterns = Patterns(["*:connection"])
        self._queue: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue(QUEUE_MAX)
        self._tracks: dict[tuple[str, str], Track] = {}
        self._seq: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._silence_timer: asyncio.TimerHandle | None = None
        self.dropped = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, current: Callable[[], Any]) -> None:
        """Load the firings a previous run left open, then subscribe, then judge the current
        connections (``await current()`` → plugin → connection): an event that raced the read
        is skipped by its seq, so nothing is judged twice or missed."""
        for active in await outbox.load_active(self.store):
            rule = self.rules.get(active.rule)
            if rule is None or not rule.matches_plugin(active.plugin):
                # The rule was removed or no longer covers the plugin: nothing would ever
                # resolve this firing.
                await outbox.forget_active(self.store, active.rule, active.plugin)
                continue
            t = self._track(active.rule, active.plugin)
            t.firing, t.state, t.reason, t.bad_since = (
                active,
                active.state,
                active.reason,
                active.since,
            )
            t.state_since = active.since
            self._schedule_reminder(active.rule, active.plugin, t)
        connections: dict[str, Any] = {}
        if self.rules:  # nothing to judge otherwise: stay off the bus
            self.recorder.bus.subscribe(self)
            connections = await current()
        for plugin, conn in connections.items():
            # A stored `stopped` is the previous run's shutdown, recorded after its engine had
            # stopped judging: it must not resolve a firing that is still true.
            if isinstance(conn, dict) and conn.get("state") != "stopped":
                await self._on_connection(plugin, conn, time.time(), initial=True)
        self._schedule_silence_check()
        self._task = asyncio.get_running_loop().create_task(self._consume(), name="alerts:engine")

    async def stop(self) -> None:
        """Before the plugins stop: their ``stopped`` on shutdown must not resolve anything."""
        self.recorder.bus.unsubscribe(self)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for t in self._tracks.values():
            for handle in (t.pending, t.remind, t.quiet):
                if handle is not None:
                    handle.cancel()
        if self._silence_timer is not None:
            self._silence_timer.cancel()

    # -- bus subscriber ----------------------------------------------------------------------

    def deliver(self, frame: bytes, event: Event) -> None:
        self._put(("event", event))

    def _put(self, item: tuple[Any, ...]) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("alerts: engine queue full; %d items dropped", self.dropped)

    async def _consume(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                await self._handle(item)
            except Exception:
                log.exception("alerts: handling %s failed", item[0])

    async def _handle(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == "event":
            event: Event = item[1]
            plugin = plugin_of_connection_event(event.event)
            if plugin is not None:
                await self._on_connection(plugin, event.data, event.ts)
        elif kind == "fire":
            _, name, plugin, token = item
            t = self._tracks.get((name, plugin))
            if t is not None and t.token == token and t.pending is not None:
                t.pending = None
                if not t.flapping and t.firing is None and t.state is not None:
                    if self.rules[name].matches_state(t.state):
                        await self._fire(name, plugin, t)
        elif kind == "remind":
            _, name, plugin, key = item
            t = self._tracks.get((name, plugin))
            if t is not None and t.firing is not None and t.firing.key == key:
                await self._remind(name, plugin, t)
        elif kind == "quiet":
            _, name, plugin, token = item
            t = self._tracks.get((name, plugin))
            if t is not None and t.flapping and t.quiet_token == token:
                await self._stable(name, plugin, t)
        elif kind == "silences":
            await self._check_silences()

    # -- decisions -------------------------------------------------------------------------

    def _track(self, rule: str, plugin: str) -> Track:
        return self._tracks.setdefault((rule, plugin), Track())

    async def _on_connection(
        self, plugin: str, data: Mapping[str, Any], ts: float, *, initial: bool = False
    ) -> None:
        seq = data.get("seq")
        if isinstance(seq, int):
            if seq <= self._seq.get(plugin, 0):
                return  # already judged (the start-up read raced the stream)
            self._seq[plugin] = seq
        state = str(data.get("state", ""))
        reason = data.get("reason") if isinstance(data.get("reason"), str) else None
        since = data.get("since")
        since = float(since) if isinstance(since, (int, float)) else ts
        for name, rule in self.rules.items():
            if not rule.matches_plugin(plugin):
                continue
            t = self._track(name, plugin)
            changed = t.state is not None and state != t.state
            was_bad = t.state is not None and rule.matches_state(t.state)
            bad = rule.matches_state(state)
            if changed or t.state is None:
                t.state_since = since
            t.state, t.reason = state, reason
            if bad and not was_bad:
                t.bad_since = since
            if changed and not initial and rule.flap_changes:
                now = time.time()
                t.changes.append(now)
                window = seconds(rule.flap_window)
                while t.changes and t.changes[0] < now - window:
                    t.changes.popleft()
                if t.flapping:
                    self._schedule_quiet(name, plugin, rule, t)
                elif len(t.changes) > rule.flap_changes:
                    await self._flapping(name, plugin, rule, t, window)
            if t.flapping:
                continue
            await self._evaluate(name, plugin, rule, t)

    async def _evaluate(self, name: str, plugin: str, rule: AlertRule, t: Track) -> None:
        assert t.state is not None
        if rule.matches_state(t.state):
            if t.firing is not None or t.pending is not None:
                return
            delay = t.bad_since + rule.for_seconds - time.time()
            if delay <= 0:
                await self._fire(name, plugin, t)
                return
            t.token += 1
            t.pending = asyncio.get_running_loop().call_later(
                delay, self._put, ("fire", name, plugin, t.token)
            )
        else:
            t.cancel_pending()
            if t.firing is not None:
                await self._resolve(name, plugin, rule, t)

    def _notices(
        self,
        name: str,
        rule: AlertRule,
        plugin: str,
        kind: str,
        key: str,
        t: Track,
        *,
        since: float,
        status: str = outbox.PENDING,
        suffix: str = "",
        extra: str = "",
    ) -> list[outbox.Notice]:
        title, body = render(
            kind, plugin, t.state or "?", t.reason, since, name, f"{key}#{kind}{suffix}", extra
        )
        return [
            outbox.Notice(
                dedup_key=f"{key}#{kind}{suffix}@{target}",
                target=target,
                kind=kind,
                rule=name,
                plugin=plugin,
                title=title,
                body=body,
                status=status,
            )
            for target in (rule.targets or self.target_names)
        ]

    async def _queue_notices(self, notices: list[outbox.Notice], **firing: Any) -> None:
        await outbox.enqueue(self.store, notices, **firing)
        self._wake({n.target for n in notices if n.status == outbox.PENDING})

    async def _fire(self, name: str, plugin: str, t: Track) -> None:
        rule = self.rules[name]
        now = time.time()
        key = f"{name}/{plugin}/{int(now * 1000)}"
        silence = self.silences.covering(plugin, now)
        assert t.state is not None
        firing = outbox.Active(
            rule=name,
            plugin=plugin,
            key=key,
            fired_at=now,
            state=t.state,
            reason=t.reason,
            since=t.bad_since,
            notified=silence is None,
        )
        notices = self._notices(
            name,
            rule,
            plugin,
            "fired",
            key,
            t,
            since=t.bad_since,
            status=outbox.SILENCED if silence else outbox.PENDING,
        )
        await self._queue_notices(notices, open_firing=firing)
        t.firing = firing
        log.warning(
            "alerts: %s fired for %s (%s since %s)%s",
            name,
            plugin,
            t.state,
            when(t.bad_since),
            f"; silenced by #{silence.id}" if silence else "",
        )
        await self.recorder.record(
            "alert:fired",
            {
                "rule": name,
                "plugin": plugin,
                "state": t.state,
                "reason": t.reason,
                "since": t.bad_since,
                "key": key,
                "targets": [n.target for n in notices],
                "silenced": silence.id if silence else None,
            },
        )
        self._schedule_reminder(name, plugin, t)

    def _schedule_reminder(self, name: str, plugin: str, t: Track) -> None:
        every = self.rules[name].remind_seconds
        if t.remind is not None:
            t.remind.cancel()
            t.remind = None
        if every <= 0 or t.firing is None:
            return
        due = t.firing.fired_at + (t.firing.reminders + 1) * every
        t.remind = asyncio.get_running_loop().call_later(
            max(0.0, due - time.time()), self._put, ("remind", name, plugin, t.firing.key)
        )

    async def _remind(self, name: str, plugin: str, t: Track) -> None:
        assert t.firing is not None
        rule = self.rules[name]
        t.remind = None
        n = t.firing.reminders + 1
        t.firing.reminders = n
        silence = self.silences.covering(plugin)
        if silence is None and not t.flapping:
            notices = self._notices(
                name,
                rule,
                plugin,
                "reminder",
                t.firing.key,
                t,
                since=t.bad_since,
                suffix=str(n),
                extra=f"reminder {n}",
            )
            await self._queue_notices(notices, reminders=(name, plugin, n, True))
            t.firing.notified = True
            await self.recorder.record(
                "alert:reminder",
                {"rule": name, "plugin": plugin, "state": t.state, "key": t.firing.key, "n": n},
            )
        else:
            await outbox.enqueue(self.store, [], reminders=(name, plugin, n, t.firing.notified))
        self._schedule_reminder(name, plugin, t)

    async def _resolve(self, name: str, plugin: str, rule: AlertRule, t: Track) -> None:
        firing = t.firing
        assert firing is not None
        t.firing = None
        if t.remind is not None:
            t.remind.cancel()
            t.remind = None
        silence = self.silences.covering(plugin)
        send = rule.send_resolved and firing.notified and silence is None
        notices = (
            self._notices(name, rule, plugin, "resolved", firing.key, t, since=time.time())
            if send
            else []
        )
        await self._queue_notices(notices, close_firing=(name, plugin))
        log.info("alerts: %s resolved for %s (%s)", name, plugin, t.state)
        await self.recorder.record(
            "alert:resolved",
            {
                "rule": name,
                "plugin": plugin,
                "state": t.state,
                "reason": t.reason,
                "key": firing.key,
                "fired_at": firing.fired_at,
                "targets": [n.target for n in notices],
                "silenced": silence.id if silence else None,
            },
        )

    # -- flapping --------------------------------------------------------------------------

    def _schedule_quiet(self, name: str, plugin: str, rule: AlertRule, t: Track) -> None:
        if t.quiet is not None:
            t.quiet.cancel()
        t.quiet_token += 1
        t.quiet = asyncio.get_running_loop().call_later(
            seconds(rule.flap_quiet), self._put, ("quiet", name, plugin, t.quiet_token)
        )

    async def _flapping(
        self, name: str, plugin: str, rule: AlertRule, t: Track, window: float
    ) -> None:
        now = time.time()
        t.flapping = key = f"{name}/{plugin}/{int(now * 1000)}"
        t.cancel_pending()
        changes = len(t.changes)
        silence = self.silences.covering(plugin, now)
        notices = self._notices(
            name,
            rule,
            plugin,
            "flapping",
            key,
            t,
            since=t.changes[0],
            status=outbox.SILENCED if silence else outbox.PENDING,
            extra=f"{changes} changes in {window:g} s",
        )
        await self._queue_notices(notices)
        log.warning("alerts: %s is flapping (%d changes in %g s)", plugin, changes, window)
        await self.recorder.record(
            "alert:flapping",
            {
                "rule": name,
                "plugin": plugin,
                "state": t.state,
                "key": key,
                "changes": changes,
                "window": window,
                "silenced": silence.id if silence else None,
            },
        )
        self._schedule_quiet(name, plugin, rule, t)

    async def _stable(self, name: str, plugin: str, t: Track) -> None:
        rule = self.rules[name]
        key, t.flapping, t.quiet = t.flapping, "", None
        t.changes.clear()
        silence = self.silences.covering(plugin)
        notices = self._notices(
            name,
            rule,
            plugin,
            "stable",
            key,
            t,
            since=time.time() - seconds(rule.flap_quiet),
            status=outbox.SILENCED if silence else outbox.PENDING,
        )
        await self._queue_notices(notices)
        log.info("alerts: %s is stable again (%s)", plugin, t.state)
        await self.recorder.record(
            "alert:stable",
            {
                "rule": name,
                "plugin": plugin,
                "state": t.state,
                "key": key,
                "silenced": silence.id if silence else None,
            },
        )
        await self._evaluate(name, plugin, rule, t)

    # -- silences --------------------------------------------------------------------------

    def _schedule_silence_check(self) -> None:
        if self._silence_timer is not None:
            self._silence_timer.cancel()
            self._silence_timer = None
        end = self.silences.next_end()
        if end is not None:
            self._silence_timer = asyncio.get_running_loop().call_later(
                max(0.0, end - time.time()) + 0.001, self._put, ("silences",)
            )

    def silences_changed(self) -> None:
        """A silence was added or ended through a request: re-arm the expiry timer and let
        firings it was holding back go out."""
        self._schedule_silence_check()
        self._put(("silences",))

    async def _check_silences(self) -> None:
        for silence in self.silences.expire(time.time()):
            await self.recorder.record("alert:silence", silence_event(silence, "expired"))
        self._schedule_silence_check()
        # A firing nobody was told about (it began during a silence) goes out once no silence
        # covers its plugin any more.
        for (name, plugin), t in self._tracks.items():
            f = t.firing
            if f is None or f.notified or self.silences.covering(plugin) is not None:
                continue
            notices = self._notices(
                name,
                self.rules[name],
                plugin,
                "fired",
                f.key,
                t,
                since=f.since,
                suffix="-after-silence",
            )
            await self._queue_notices(notices, reminders=(name, plugin, f.reminders, True))
            f.notified = True

    # -- for requests ----------------------------------------------------------------------

    def active(self) -> list[dict[str, Any]]:
        out = []
        for (name, plugin), t in sorted(self._tracks.items()):
            if t.firing is not None or t.pending is not None or t.flapping:
                out.append(
                    {
                        "rule": name,
                        "plugin": plugin,
                        "state": t.state,
                        "reason": t.reason,
                        # Flapping, it may be fine right now: "connected since" must be
                        # when it came back, not when it last broke.
                        "since": t.bad_since
                        if t.state is not None and self.rules[name].matches_state(t.state)
                        else t.state_since,
                        "status": "flapping"
                        if t.flapping
                        else ("firing" if t.firing is not None else "pending"),
                        "key": t.firing.key if t.firing else (t.flapping or None),
                        "notified": t.firing.notified if t.firing else None,
                    }
                )
        return out


def silence_event(silence: Silence, why: str) -> dict[str, Any]:
    data = silence.describe(time.time())
    data["change"] = why  # added | ended | expired
    return data
