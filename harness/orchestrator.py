"""The plugin host: syncs registry and rows, starts and stops plugins, applies live changes,
and keeps a failing plugin from taking anything else down."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Mapping
from typing import Any

import msgspec

from harness import logs, settings
from harness.config import Config, ConfigError
from harness.plugin import Plugin, PluginContext, next_connection
from harness.protocol import PluginInfo, connection_event, to_connection
from harness.recorder import Recorder
from harness.store import Store, is_storage_error

log = logging.getLogger(__name__)

# How long shutdown waits for a plugin's lock before stopping it anyway: whatever the plugin is
# doing, SIGTERM must finish within stop_timeout + 1 s.
_SHUTDOWN_LOCK_WAIT = 0.5

# A connection in one of these states is live; anything that ends the plugin must replace it.
_LIVE = frozenset({"connecting", "connected", "disconnected"})


class PluginNotFound(LookupError):
    pass


class ShuttingDown(RuntimeError):
    """The daemon is stopping: no plugin may be started or reconfigured any more."""


def check_plugin_tables(config: Config, plugins: Mapping[str, type[Plugin]]) -> None:
    """Plugin tables of the config must name installed plugins and fit their schemas. Pure:
    the daemon calls it before it creates anything on disk."""
    where = config.source or "config"
    for name, table in config.plugins.items():
        cls = plugins.get(name)
        if cls is None:
            known = ", ".join(sorted(plugins)) or "none"
            raise ConfigError(f"{where}: plugins.{name}: no such plugin (installed: {known})")
        try:
            settings.validate(cls.settings_schema, table)
        except settings.SettingsError as exc:
            key, problem = next(iter(exc.errors.items()))
            raise ConfigError(f"{where}: plugins.{name}.{key}: {problem}") from exc


class _Slot:
    """One plugin's runtime: instance, context, lifecycle status and a lock ordering changes."""

    def __init__(self, plugin: Plugin) -> None:
        self.plugin = plugin
        self.ctx: PluginContext | None = None
        self.status = "stopped"  # running | stopped | error | disabled
        self.reason: str | None = None
        self.enabled = True
        self.stopping = False
        # Bumped on every start: a failure reported by an earlier run is not this run's.
        self.generation = 0
        self.lock = asyncio.Lock()


class Orchestrator:
    def __init__(
        self,
        store: Store,
        recorder: Recorder,
        config: Config,
        plugins: Mapping[str, type[Plugin]],
    ) -> None:
        self.store = store
        self.recorder = recorder
        self.config = config
        self.stop_timeout = config.daemon.stop_timeout
        self._slots = {name: _Slot(cls()) for name, cls in sorted(plugins.items())}
        self.closing = False
        self._background: set[asyncio.Task[None]] = set()

    # -- boot and shutdown -------------------------------------------------------------------

    def check_config(self) -> None:
        """Plugin tables of the config must name installed plugins and fit their schemas."""
        check_plugin_tables(
            self.config, {name: type(slot.plugin) for name, slot in self._slots.items()}
        )

    async def boot(self) -> None:
        self.check_config()
        await self.store.ensure_plugins(self._slots)
        rows = {row.name: row for row in await self.store.list_plugins()}
        for name, slot in self._slots.items():
            row = rows[name]
            conn = row.metadata.get("connection")
            layers = self._layers(slot, row.settings)
            logs.add_secrets(settings.secret_values(slot.plugin.settings_schema, *layers))
            slot.ctx = PluginContext(
                name,
                self.recorder,
                self.store,
                settings.effective(slot.plugin.settings_schema, *layers),
                to_connection(conn),
                functools.partial(self._task_failed, name),
                redact=functools.partial(self._mask, slot),
            )
            slot.enabled = row.enabled
            await self._describe(slot)
            # A connection the previous run left live is history, not the present.
            if slot.ctx.connection and slot.ctx.connection.state != "stopped":
                await slot.ctx.set_connection("stopped", reason="daemon restarted")
        for name, row in rows.items():
            if name not in self._slots:
                await self._retire_uninstalled(name, row.metadata.get("connection"))
                continue
            # Under the slot's lock like every other lifecycle change: a task that fails while
            # start is still running queues its failure handling behind the start, instead of
            # finding the plugin not yet "running", doing nothing, and leaving it "running".
            async with self._slots[name].lock:
                if row.enabled:
                    await self._start(self._slots[name])
                else:
                    await self._set_status(self._slots[name], "disabled")

    async def _retire_uninstalled(self, name: str, conn: Any) -> None:
        """A row whose plugin is not installed now keeps its settings (it may come back), but
        its connection cannot be live: record ``stopped`` so nothing shows it as current."""
        previous = to_connection(conn)
        if previous is None or previous.state == "stopped":
            return

        def build(seq: int, ts: float) -> dict[str, Any]:
            stopped = next_connection(
                previous, "stopped", {"reason": "plugin not installed"}, seq, ts
            )
            data: dict[str, Any] = msgspec.to_builtins(stopped)
            return data

        await self.recorder.record(
            connection_event(name),
            build,
            plugin=name,
            metadata_key="connection",
        )

    async def shutdown(self) -> None:
        """Stop every plugin, each recording ``stopped``. From here on, requests that would
        start or reconfigure a plugin are refused. Every stop runs to its end even if another
        fails; the first failure is raised afterwards."""
        self.closing = True
        # Slots without a context never booted (boot failed early): nothing to stop.
        results = await asyncio.gather(
            *(
                self._locked_stop(s, "daemon shut down")
                for s in self._slots.values()
                if s.ctx is not None
            ),
            return_exceptions=True,
        )
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        for failure in failures:
            log.error("stopping a plugin failed: %s", _describe(failure))
        if failures:
            raise failures[0]

    async def _locked_stop(self, slot: _Slot, why: str) -> None:
        try:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can take the lock and still
            # raise (a cancel or the timeout landing as acquire completes), leaving it held.
            async with asyncio.timeout(_SHUTDOWN_LOCK_WAIT):
                await slot.lock.acquire()
        except TimeoutError:
            # Something holds the lock (a start or a settings change still running): shutting
            # down wins; its tasks are cancelled by the stop.
            log.warning("plugin %s is busy; stopping it anyway", slot.plugin.name)
            await self._stop(slot, why)
            return
        try:
            await self._stop(slot, why)
        finally:
            slot.lock.release()

    # -- lifecycle ---------------------------------------------------------------------------

    def _layers(self, slot: _Slot, stored: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
        return (self.config.plugins.get(slot.plugin.name, {}), stored)

    def _mask(self, slot: _Slot, text: str) -> str:
        # A reason often quotes an exception, and a plugin's exception may quote its own
        # secret; reasons are stored, broadcast and shown, so the secret is masked here.
        values = slot.ctx.settings if slot.ctx else {}
        for secret in settings.secret_values(slot.plugin.settings_schema, values):
            for form in sorted(logs.secret_forms(secret), key=len, reverse=True):
                text = text.replace(form, logs.MASK)
        return text

    async def _set_status(self, slot: _Slot, status: str, reason: str | None = None) -> None:
        if reason is not None:
            reason = self._mask(slot, reason)
        slot.status, slot.reason = status, reason
        await self.recorder.record(
            "plugin:status",
            {
                "plugin": slot.plugin.name,
                "status": status,
                "enabled": slot.enabled,
                "reason": reason,
            },
        )

    async def _describe(self, slot: _Slot) -> None:
        """Keep ``metadata.plugin`` (version, description, schema, settings as the API shows
        them: secrets only as set / not set) so a reader of the database alone, such as the
        TUI while the daemon is down, can show the plugin as it last was."""
        p = slot.plugin
        values = slot.ctx.settings if slot.ctx else {}
        await self.store.set_metadata_key(
            p.name,
            "plugin",
            {
                "version": p.version,
                "description": p.description,
                "schema": msgspec.to_builtins(list(p.settings_schema)),
                "settings": settings.public(p.settings_schema, values),
            },
        )

    async def _start(self, slot: _Slot) -> None:
        ctx = slot.ctx
        assert ctx is not None
        slot.stopping = False
        slot.generation += 1
        try:
            await slot.plugin.start(ctx)
        except Exception as exc:
            log.exception("plugin %s failed to start", slot.plugin.name)
            await self._fail(slot, f"start failed: {_describe(exc)}")
            return
        await self._set_status(slot, "running")

    async def _stop(self, slot: _Slot, why: str, status: str = "stopped") -> None:
        ctx = slot.ctx
        assert ctx is not None
        if slot.status != "running":
            await self._ensure_stopped_connection(ctx, why)
            if status == "disabled" and slot.status != "disabled":
                await self._set_status(slot, "disabled")
            return
        slot.stopping = True
        reason: str | None = None
        try:
            # Not wait_for: on Python 3.11 it can lose a cancellation of this stop.
            async with asyncio.timeout(self.stop_timeout):
                await slot.plugin.stop(ctx)
        except TimeoutError:
            reason = f"did not stop within {self.stop_timeout:g} s; its tasks were cancelled"
        except Exception as exc:
            log.exception("plugin %s failed to stop", slot.plugin.name)
            reason = f"stop failed: {_describe(exc)}"
        if stuck := await ctx._cancel_tasks():
            # Bounded all the same: the stop ends, and says what it left running.
            reason = f"{reason or 'stopped'}; task(s) {', '.join(stuck)} ignored cancellation"
        await self._ensure_stopped_connection(ctx, why)
        if reason:
            log.error("plugin %s: %s", slot.plugin.name, reason)
            await self._set_status(slot, "error", reason)
        else:
            await self._set_status(slot, status)

    async def _ensure_stopped_connection(self, ctx: PluginContext, why: str) -> None:
        # The seed's dashboard kept showing "connected" after a stop; whatever the plugin did or
        # failed to do, a stopped plugin's connection reads "stopped".
        if ctx.connection and ctx.connection.state != "stopped":
            await ctx.set_connection("stopped", reason=why)

    async def _fail(self, slot: _Slot, reason: str) -> None:
        ctx = slot.ctx
        assert ctx is not None
        reason = self._mask(slot, reason)
        slot.stopping = True
        await ctx._cancel_tasks()
        if ctx.connection and ctx.connection.state in _LIVE:
            await ctx.set_connection("error", reason=reason)
        await self._set_status(slot, "error", reason)

    def _task_failed(self, name: str, exc: BaseException) -> None:
        slot = self._slots[name]
        if slot.stopping:
            return
        log.error("plugin %s: a task failed: %s", name, _describe(exc))
        slot.stopping = True
        generation = slot.generation

        async def fail() -> None:
            async with slot.lock:
                # A restart may have happened while we waited for the lock: that run is new.
                if slot.status == "running" and slot.generation == generation:
                    try:
                        async with asyncio.timeout(self.stop_timeout):  # not wait_for: see _stop
                            await slot.plugin.stop(slot.ctx)  # type: ignore[arg-type]
                    except Exception:
                        log.exception("plugin %s failed to stop after a task failure", name)
                    await self._fail(slot, f"task failed: {_describe(exc)}")

        task = asyncio.get_running_loop().create_task(fail())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- live changes (socket API) -------------------------------------------------------------

    def _refuse_if_closing(self) -> None:
        # Checked under the slot's lock: shutdown's stop of this plugin takes the same lock, so
        # nothing can start it again after that stop.
        if self.closing:
            raise ShuttingDown("the daemon is shutting down; try again once it is back")

    async def _written(self, write: Awaitable[None]) -> None:
        """A request's own write (settings, enabled): a storage fault fails the request and is
        told as storage failing, like an event that could not be stored."""
        try:
            await write
        except Exception as exc:
            if is_storage_error(exc):
                self.recorder.write_failed(exc)
            raise

    def _slot(self, name: str) -> _Slot:
        try:
            return self._slots[name]
        except KeyError:
            raise PluginNotFound(name) from None

    async def set_enabled(self, name: str, enabled: bool) -> PluginInfo:
        slot = self._slot(name)
        async with slot.lock:
            self._refuse_if_closing()
            await self._written(self.store.set_enabled(name, enabled))
            slot.enabled = enabled
            if enabled and slot.status != "running":
                await self._start(slot)
            elif not enabled:
                await self._stop(slot, "plugin disabled", status="disabled")
        return await self.info(name)

    async def update_settings(self, name: str, patch: Mapping[str, Any]) -> PluginInfo:
        """Merge ``patch`` into the stored settings (``None`` unsets a key), validated per
        field first: on any error nothing changes."""
        slot = self._slot(name)
        schema = slot.plugin.settings_schema
        settings.validate(schema, patch)
        async with slot.lock:
            self._refuse_if_closing()
            row = await self.store.get_plugin(name)
            assert row is not None
            stored = {k: v for k, v in {**row.settings, **patch}.items() if v is not None}
            ctx = slot.ctx
            assert ctx is not None
            old = dict(ctx.settings)
            new = settings.effective(schema, *self._layers(slot, stored))
            # Before the write: at debug level aiosqlite logs each statement with its
            # parameters, and the new secret must already be masked there.
            logs.add_secrets(settings.secret_values(schema, stored))
            await self._written(self.store.set_settings(name, stored))
            ctx._replace_settings(new)
            await self._describe(slot)
            changed = frozenset(k for k in new if new[k] != old.get(k))
            await self.recorder.record(
                "plugin:settings", {"plugin": name, "changed": sorted(changed)}
            )
            if changed and slot.status in ("running", "error") and row.enabled:
                applied = slot.status == "running" and await self._apply(slot, changed)
                if not applied:
                    await self._stop(slot, "restarting with new settings")
                    await self._start(slot)
        return await self.info(name)

    async def _apply(self, slot: _Slot, changed: frozenset[str]) -> bool:
        """Apply in place if the plugin can; False (restart it) otherwise. A plugin that fails
        to apply, or takes longer than stop_timeout, is restarted with the new settings rather
        than left in ``error``: a settings change must never strand it."""
        try:
            async with asyncio.timeout(self.stop_timeout):  # not wait_for: see _locked_stop
                return await slot.plugin.apply_settings(slot.ctx, changed)  # type: ignore[arg-type]
        except Exception as exc:
            log.warning(
                "plugin %s could not apply settings in place (%s); restarting it",
                slot.plugin.name,
                _describe(exc) if not isinstance(exc, TimeoutError) else "timed out",
            )
            return False

    # -- queries -------------------------------------------------------------------------------

    def names(self) -> list[str]:
        return list(self._slots)

    async def info(self, name: str) -> PluginInfo:
        slot = self._slot(name)
        row = await self.store.get_plugin(name)
        assert row is not None
        return self._info(slot, row)

    async def list(self) -> list[PluginInfo]:
        rows = await self.store.list_plugins()
        return [self._info(self._slots[r.name], r) for r in rows if r.name in self._slots]

    def _info(self, slot: _Slot, row: Any) -> PluginInfo:
        p = slot.plugin
        values = slot.ctx.settings if slot.ctx else {}
        return PluginInfo(
            name=p.name,
            version=p.version,
            description=p.description,
            enabled=row.enabled,
            status=slot.status,
            reason=slot.reason,
            settings=settings.public(p.settings_schema, values),
            metadata=self.recorder.live_metadata(p.name, row.metadata),
            schema=list(p.settings_schema),
            updated_at=row.updated_at,
        )


def _describe(exc: BaseException) -> str:
    """An exception in words for a reason an operator reads: its message, never its class name
    (the daemon log keeps the traceback for whoever debugs it)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text or "an unexpected error (details in the daemon log)"
