"""``harness run``: wires store, bus, plugin host and socket server, and runs until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from harness import __version__, oversized, preflight, protocol, settings
from harness.alerts.service import Alerts
from harness.bus import Bus
from harness.config import Config
from harness.live_health import LiveHealth
from harness.orchestrator import (
    Orchestrator,
    PluginNotFound,
    ShuttingDown,
    check_plugin_tables,
)
from harness.plugin import Plugin
from harness.recorder import Recorder, Retention
from harness.seq_mark import Lost, SeqMark
from harness.server import (
    AlreadyRunning,
    RequestError,
    Server,
    acquire_lock,
    ensure_private_dir,
)
from harness.store import Store, StoreError, describe_error, is_storage_error
from harness.systemd import Notifier, StatusLine

if TYPE_CHECKING:
    from pathlib import Path

    from harness.metrics import Metrics

log = logging.getLogger(__name__)


class Daemon:
    """The running daemon. ``async with Daemon(config).running():`` in tests and tools;
    :func:`run` for the command line."""

    def __init__(self, config: Config, plugins: Mapping[str, type[Plugin]] | None = None) -> None:
        self.config = config
        self._plugins = plugins
        self.store: Store | None = None
        self.bus: Bus | None = None
        self.recorder: Recorder | None = None
        self.orchestrator: Orchestrator | None = None
        self.server: Server | None = None
        self.alerts: Alerts | None = None
        self.live_health = LiveHealth()
        self.started = time.time()
        self._lock_fds: list[int] = []
        self._seq_mark: SeqMark | None = None
        self.metrics: Metrics | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Daemon]:
        await self.start()
        try:
            yield self
        finally:
            await self.stop()

    async def start(self) -> None:
        cfg = self.config
        socket_path, db_path = cfg.socket_path, cfg.database_path
        if self._plugins is None:
            from harness.plugins import discover

            self._plugins = discover()
        # A bad plugin table is refused before anything exists on disk (no lock, no database).
        check_plugin_tables(cfg, self._plugins)
        preflight.check_socket_path(socket_path)
        lock_path = socket_path.with_name(socket_path.name + ".lock")
        if cfg.metrics.listen and (pid := preflight.running_pid(lock_path)) is not None:
            # Said before the metrics port is bound: a second `harness run` finds that port
            # busy too, and the daemon already running is the news, not the port.
            raise AlreadyRunning.holding(lock_path, pid)
        if cfg.metrics.listen:
            # So is a busy metrics port: the port is bound before anything exists on disk.
            self.metrics = self._metrics(cfg.metrics.listen)
        try:
            # The default location is harness's own directory; a configured one the operator's.
            own_dir = not cfg.daemon.socket
            ensure_private_dir(socket_path.parent, own=own_dir)
            # One daemon per socket and one writer per database; both locks are released by
            # the kernel however the process ends, so they can never go stale.
            self._lock_fds.append(_lock(lock_path))
            db_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if db_path.parent != socket_path.parent:
                self._lock_fds.append(_lock(db_path.with_name(db_path.name + ".lock")))
            self.store = await Store.open(db_path)
            stored = await self.store.last_seq()
            lost = self._open_seq_mark(db_path, stored)
            self.bus = Bus(max(stored, lost.last if lost else 0))
            self.bus.subscribe(self.live_health)  # requests answer with the latest health
            if self.metrics is not None:
                # Subscribed before the plugins start, so it sees every connection change.
                self.bus.subscribe(self.metrics)
            # Retention runs inside the recorder's own transactions, a small chunk at a time,
            # so the table holds its bound under any rate and no record waits on a big delete.
            self.recorder = Recorder(
                self.store,
                self.bus,
                retention=Retention(
                    keep=cfg.daemon.event_retention_max,
                    max_age_days=cfg.daemon.event_retention_days,
                ),
            )
            self.recorder.seq_mark = self._seq_mark
            self.orchestrator = Orchestrator(self.store, self.recorder, cfg, self._plugins)
            self.recorder.quiet = True
            try:
                if lost is not None:
                    await self._record_lost(lost)
                await self._prune()
                await self.orchestrator.boot()
            except Exception as exc:
                if is_storage_error(exc):
                    raise StoreError(self._cannot_write(describe_error(exc), str(exc))) from exc
                raise
            if not self.recorder.health.ok:
                h = self.recorder.health
                raise StoreError(self._cannot_write(h.cause or "?", h.detail or ""))
            self.recorder.quiet = False
            self.alerts = Alerts(cfg.alerts, self.store, self.recorder)
            await self.alerts.start(self._connections)
            self.server = Server(
                socket_path,
                self.bus,
                self.store,
                self._handlers(),
                max_queued_frames=cfg.daemon.client_queue_frames,
                max_clients=cfg.daemon.max_clients,
                own_dir=own_dir,
            )
            await self.server.start()
        except BaseException:
            await self.stop()
            raise
        log.info(
            "harness %s running: socket %s, database %s, plugins %s",
            __version__,
            socket_path,
            db_path,
            ", ".join(self.orchestrator.names()) or "none",
        )

    def _metrics(self, listen: str) -> Metrics:
        from harness.config import ConfigError, parse_listen
        from harness.metrics import Metrics, MetricsError

        metrics = Metrics(
            seq=lambda: self.bus.published_seq if self.bus else 0,
            clients=lambda: len(self.server.clients) if self.server else 0,
            storage_ok=lambda: self.recorder.health.ok if self.recorder else True,
            alerts=lambda: (
                (dict(self.alerts.delivery.sent_by_target), dict(self.alerts.delivery.failures))
                if self.alerts
                else ({}, {})
            ),
            version=__version__,
        )
        try:
            metrics.serve(*parse_listen(listen))
        except MetricsError as exc:
            raise ConfigError(f"{self.config.source or 'config'}: {exc}") from exc
        return metrics

    async def stop(self) -> None:
        """Stop plugins (recording ``stopped``), close the socket, close the database."""
        # Every step runs whatever failed before it: an open aiosqlite connection keeps a
        # non-daemon thread, and with it the process, alive; locks must always be released.
        failure: BaseException | None = None
        for step in (
            # Alerts first: the plugins' `stopped` on shutdown must not resolve any alert.
            self.alerts.stop if self.alerts else None,
            self.orchestrator.shutdown if self.orchestrator else None,
            self.server.close if self.server else None,
            self.recorder.close if self.recorder else None,
            self.store.close if self.store else None,
        ):
            if step is None:
                continue
            try:
                await step()
            except Exception as exc:
                log.exception("stopping: %s failed", step.__qualname__)
                failure = failure or exc
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None
        if self._seq_mark is not None:
            if self.bus is not None and self.recorder is not None and not self.recorder.health.ok:
                self._seq_mark.settle(self.bus.last_seq)  # the exact end, not the reservation's
            self._seq_mark.close()
            self._seq_mark = None
        for fd in self._lock_fds:
            os.close(fd)
        self._lock_fds.clear()
        self.orchestrator = self.server = self.store = self.recorder = self.alerts = None
        if failure is not None:
            raise failure

    def _open_seq_mark(self, db_path: Path, stored: int) -> Lost | None:
        """The seq high-water mark beside the database (harness/seq_mark.py): the seqs a
        previous daemon published without storing, which this one must not hand out again."""
        try:
            self._seq_mark = SeqMark.open(db_path)
        except OSError as exc:
            raise StoreError(
                self._cannot_write(exc.strerror or type(exc).__name__, str(exc))
            ) from exc
        lost = self._seq_mark.lost(stored)
        if lost is not None:
            log.warning(
                "the previous daemon stopped while storage was failing: seqs %d to %d may have "
                "been published without being stored; starting after them",
                lost.first,
                lost.last,
            )
        return lost

    async def _record_lost(self, lost: Lost) -> None:
        """The gap record, as a live recovery writes it; the mark is cleared once it is
        stored (not stored: the start fails on storage and the mark still says it)."""
        assert self.recorder is not None and self._seq_mark is not None
        event = await self.recorder.record(protocol.STORAGE_EVENT, lost.gap_data(time.time()))
        if event.persisted:
            self._seq_mark.clear()

    async def _prune(self) -> None:
        assert self.store is not None
        d = self.config.daemon
        removed = await self.store.prune_events(
            keep=d.event_retention_max, max_age_days=d.event_retention_days
        )
        if removed:
            log.info("retention removed %d old events", removed)

    def _cannot_write(self, cause: str, detail: str) -> str:
        return (
            f"{self.config.database_path}: cannot write the database: {cause} ({detail}). "
            "Fix the cause (free disk space, make the file and its directory writable) and "
            "start again."
        )

    # -- request handlers --------------------------------------------------------------------

    def _handlers(self) -> dict[str, Any]:
        assert self.alerts
        return {
            "status": self._status,
            "plugins.list": self._plugins_list,
            "plugins.get": self._plugins_get,
            "plugins.update_settings": self._update_settings,
            "plugins.set_enabled": self._set_enabled,
            "connections.snapshot": self._connections_snapshot,
            "events.history": self._events_history,
            **self.alerts.handlers(),
        }

    async def _connections_snapshot(self, _: protocol.NoParams) -> Any:
        """The stored rows, for a client with no database of its own (a remote TUI). Read
        after the client subscribed, so with "apply newer only" nothing is missed."""
        assert self.store and self.bus and self.recorder
        head = self.bus.published_seq  # before the read: the rows are at least this new
        rows = await self.store.list_plugins()
        live = self.recorder.live_metadata  # while storage fails, the rows alone are older
        return protocol.ConnectionsSnapshot(
            seq=head,
            plugins=[
                protocol.StoredPlugin(
                    name=r.name,
                    enabled=r.enabled,
                    metadata=live(r.name, r.metadata),
                    updated_at=r.updated_at,
                )
                for r in rows
            ],
        )

    async def _events_history(self, params: protocol.EventsHistory) -> Any:
        assert self.store
        events = await self.store.recent_events(
            params.name, limit=params.limit, since_ts=params.since_ts
        )
        return {"events": oversized.fit_events(events)}

    async def _connections(self) -> dict[str, Any]:
        """Each plugin's current connection object, for the alert engine's first judgement."""
        assert self.orchestrator
        return {p.name: p.metadata.get("connection") for p in await self.orchestrator.list()}

    async def _status(self, _: protocol.NoParams) -> dict[str, Any]:
        assert self.orchestrator and self.bus and self.server and self.recorder
        plugins = await self.orchestrator.list()
        return {
            "server": f"harness/{__version__}",
            "pid": os.getpid(),
            "started": self.started,
            "uptime": time.time() - self.started,
            "seq": self.bus.published_seq,
            "socket": str(self.config.socket_path),
            "database": str(self.config.database_path),
            "clients": len(self.server.clients),
            "storage": msgspec.to_builtins(self.recorder.health),
            "plugins": [
                {
                    "name": p.name,
                    "enabled": p.enabled,
                    "status": p.status,
                    "reason": p.reason,
                    "connection": p.metadata.get("connection"),
                    **self._health_of(p.name),
                }
                for p in plugins
            ],
        }

    def _health_of(self, plugin: str) -> dict[str, Any]:
        """``{"health": …}`` while the plugin has live heartbeat health, else nothing."""
        health = self.live_health.of(plugin)
        return {"health": msgspec.to_builtins(health)} if health is not None else {}

    async def _plugins_list(self, _: protocol.NoParams) -> list[Any]:
        assert self.orchestrator
        return [
            {**msgspec.to_builtins(p), **self._health_of(p.name)}
            for p in await self.orchestrator.list()
        ]

    async def _plugins_get(self, params: protocol.PluginName) -> Any:
        assert self.orchestrator
        with _not_found(params.name):
            info = await self.orchestrator.info(params.name)
        return {**msgspec.to_builtins(info), **self._health_of(params.name)}

    async def _update_settings(self, params: protocol.UpdateSettings) -> Any:
        assert self.orchestrator
        with _not_found(params.name):
            try:
                info = await self.orchestrator.update_settings(params.name, params.settings)
            except settings.SettingsError as exc:
                raise RequestError(
                    protocol.E_INVALID_SETTINGS,
                    f"settings of {params.name} not saved: {exc}",
                    {"fields": exc.errors},
                ) from None
        return msgspec.to_builtins(info)

    async def _set_enabled(self, params: protocol.SetEnabled) -> Any:
        assert self.orchestrator
        with _not_found(params.name):
            return msgspec.to_builtins(
                await self.orchestrator.set_enabled(params.name, params.enabled)
            )


@contextlib.contextmanager
def _not_found(name: str) -> Any:
    """Map the plugin host's refusals, and a database that cannot be written, to error
    frames."""
    try:
        yield
    except PluginNotFound:
        raise RequestError(
            protocol.E_NOT_FOUND, f"no plugin named {protocol.clip(name)!r}"
        ) from None
    except ShuttingDown as exc:
        raise RequestError(protocol.E_SHUTTING_DOWN, str(exc)) from None
    except Exception as exc:
        if not is_storage_error(exc):
            raise
        raise RequestError(
            protocol.E_STORAGE,
            f"storage failing: {describe_error(exc)} ({exc}); the change may not have been "
            "saved. Fix the cause and try again.",
        ) from None


def raise_fd_limit() -> None:
    """Every client is a descriptor: take all the kernel allows this process (the soft limit
    up to the hard one), so the ceiling is max_clients, not a default of 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (OSError, ValueError) as exc:
            log.debug("could not raise the fd limit from %s to %s: %s", soft, hard, exc)
            return
    log.debug("fd limit: %s", hard)


def _lock(path: Path) -> int:
    """acquire_lock, with the file named when the file system refuses it: writing the pid on
    a full disk said only "cannot start: No space left on device", not where."""
    try:
        return acquire_lock(path)
    except OSError as exc:
        if exc.filename is None and exc.errno is not None:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


async def serve(config: Config) -> int:
    """Run until SIGTERM or SIGINT; a second signal during shutdown exits at once."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals_seen = 0

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen == 1:
            log.info("%s received; stopping", signal.Signals(signum).name)
            stop.set()
        else:
            log.warning("second signal: exiting without a clean stop")
            os._exit(130)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    raise_fd_limit()
    notifier = Notifier()
    notifier.status("starting")
    daemon = Daemon(config)
    try:
        await daemon.start()
        assert daemon.bus is not None and daemon.orchestrator is not None
        status_line = StatusLine(notifier)
        if notifier.enabled:
            status_line.seed(
                {
                    p.name: (p.metadata.get("connection") or {}).get("state") or p.status
                    for p in await daemon.orchestrator.list()
                }
            )
            daemon.bus.subscribe(status_line)
        # The socket serves from here on: only now may systemd order dependants after us.
        notifier.ready(status_line.text())
        notifier.start_watchdog()
        try:
            await stop.wait()
        finally:
            status_line.phase = "stopping"
            notifier.stopping()
            await daemon.stop()
    finally:
        notifier.close()
    log.info("stopped")
    return 0
