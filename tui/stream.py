"""The app-level stream: one connection to the daemon, subscribe-then-seed, coalesced fan-out.

The order matters (list-then-watch): subscribe to ``*`` first, then read the seed — from SQLite,
or, with no local database (any remote target), from the daemon's ``connections.snapshot`` —
then apply streamed events only when their ``seq`` is newer than what is held. An event that
raced the seed read is therefore either already in the seed or newer than it, never lost and
never applied twice.

Events are not applied one by one: the latest value per key (a plugin's connection, a plugin's
status) and a bounded buffer of raw events are kept, and flushed to the App at most every
``FLUSH_INTERVAL``. The first change after a quiet spell (no flush for ``FLUSH_INTERVAL``) is
the leading edge: it is flushed as soon as the events already read from the socket are taken
in, straight from the event loop, not through the App's message queue and without waiting for
a tick. What arrives within ``FLUSH_INTERVAL`` of a flush is a burst: it is coalesced and
flushed once at the trailing edge, so a flood of 10k events/s costs at most 1/FLUSH_INTERVAL
state updates a second.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from time import monotonic  # a module name, so a test can stand in a clock of its own
from typing import TYPE_CHECKING, Any

import msgspec

from harness import __version__, liveness, transport
from harness.client import Client, ClientError, DaemonUnavailable
from harness.protocol import (
    STORAGE_EVENT,
    Connection,
    ConnectionsSnapshot,
    Event,
    Health,
    PluginInfo,
    StorageHealth,
    StoredPlugin,
    describe_storage,
    plugin_of_connection_event,
    plugin_of_health_event,
    to_connection,
)
from harness.store import PluginRow, StoreError, read_plugins_readonly
from harness.transport import Target
from tui.state import EventBatch, LinkState, PluginState, connection_seq, health_applies

if TYPE_CHECKING:
    from tui.app import HarnessApp

FLUSH_INTERVAL = 1 / 30  # seconds: at most 30 state updates a second reach the widgets
EVENT_BUFFER = 1000  # raw events held between flushes; older ones are dropped and counted
BACKOFF_BASE = 0.1  # seconds; doubles per failed attempt...
BACKOFF_CAP = 2.0  # ...up to this, with jitter so many TUIs do not reconnect in step
YIELD_EVERY = 256  # events handled before the worker lets the UI run, even if more are queued

CLIENT_NAME = f"harness-tui/{__version__}"

BeforeSeed = Callable[[], Awaitable[None]]


def backoff(attempt: int) -> float:
    """Delay before reconnect attempt ``attempt`` (0-based): exponential, capped, jittered."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)
    return random.uniform(ceiling / 2, ceiling)


def described_info(name: str, enabled: bool, metadata: Mapping[str, Any]) -> PluginInfo | None:
    """The plugin as the daemon last described it in ``metadata.plugin``, or None."""
    described = metadata.get("plugin")
    if not isinstance(described, dict):
        return None
    try:
        return msgspec.convert(
            {
                **described,
                "name": name,
                "enabled": enabled,
                "status": "",
                "metadata": dict(metadata),
            },
            PluginInfo,
        )
    except msgspec.ValidationError:
        return None  # written by another version: the daemon's own answer will do


def _reraise(exc: Exception) -> None:
    raise exc


class Stream:
    """Owns the daemon connection and is the only writer of ``app.plugins`` and ``app.link``."""

    def __init__(
        self,
        app: HarnessApp,
        target: Target | Path,
        database_path: Path | None,
        *,
        before_seed: BeforeSeed | None = None,
    ) -> None:
        self.app = app
        if isinstance(target, Path):
            target = Target(name="default", socket=target)
        self.target = target
        self.database_path = database_path
        self.before_seed = before_seed  # a test hook: runs between subscribe and seed read
        self.client: Client | None = None
        # Counters, read by tests and the benchmark.
        self.events_received = 0
        self.stale_ignored = 0
        self.seeds = 0
        self._epoch = 0
        self._pending_conn: dict[str, tuple[Connection, float]] = {}
        # Live heartbeat health per plugin ({plugin}:health): latest wins, never stored.
        self._pending_health: dict[str, Health] = {}
        # Health heard while its plugin was not connected (a bot's first heartbeat, timed
        # before its READY): kept, as the daemon keeps it (harness.live_health), and shown
        # once connected; a later state other than connected ends it.
        self._held_health: dict[str, Health] = {}
        # Plugins whose health a pending connection state ended, though a later one in the
        # same flush keeps health (disconnected then connected: the old link's is not true).
        self._ended_health: set[str] = set()
        self._pending_status: dict[str, tuple[Mapping[str, Any], float]] = {}
        self._pending_events: deque[Event] = deque(maxlen=EVENT_BUFFER)
        self._dropped = 0
        self._refresh: set[str] = set()
        self._flush_scheduled = False
        self._last_flush = 0.0
        # Liveness (harness.liveness): ask a daemon quiet this long, and call it not responding
        # when the answer takes longer than the timeout.
        self.ping_after, self.ping_timeout = liveness.intervals()
        self.watcher: liveness.Watch | None = None  # the connection's, while one is served

    # -- the worker body ---------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, subscribe, seed, stream; on any loss mark offline and try again. Forever."""
        attempt = 0
        offline_seeded = False
        while True:
            try:
                client = await transport.connect(self.target, client=CLIENT_NAME)
            except (DaemonUnavailable, ClientError) as exc:
                if not offline_seeded and self.database_path is not None:
                    # The daemon is down: show the stored state as last-known, once per outage.
                    await self.seed()
                    offline_seeded = True
                self.set_offline(str(exc))
                await asyncio.sleep(backoff(attempt))
                attempt += 1
                continue
            try:
                await self._serve(client)
            except (DaemonUnavailable, ClientError) as exc:
                reason = str(exc)
            else:  # pragma: no cover - _serve only returns by raising
                reason = "stream ended"
            finally:
                self.client = None
                await client.close()
            self.flush()  # what arrived before the loss is real: show it
            self.set_offline(reason)
            offline_seeded = False
            attempt = 0  # the first retry after a loss is quick: a restart is the usual cause
            await asyncio.sleep(backoff(attempt))
            attempt = 1

    async def _serve(self, client: Client) -> None:
        if self.target.read_only:
            from harness.contexts import read_only_message

            client.read_only = read_only_message(self.target)
        # Sent together, in this order, without waiting for each answer: the two requests'
        # round trips overlap the seed read instead of following it. Only the seed must wait
        # for the subscription (list-then-watch); the answers are applied after the seed.
        subscribed = asyncio.ensure_future(client.subscribe(["*"]))
        # Marked: the live health in its answer is ordered against the events by position.
        listed = asyncio.ensure_future(client.request_marked("plugins.list"))
        storage = asyncio.ensure_future(self._storage(client))
        try:
            head = await subscribed
            self._forget_health()
            if self.before_seed is not None:
                await self.before_seed()
            if self.history_from_daemon:
                await self.seed_from_daemon(client)
            else:
                await self.seed()
            self.client = client
            answer, mark = await listed
            self.apply_infos(msgspec.convert(answer, list[PluginInfo]))
            self.apply_health(answer)
            self.set_online(head, await storage)
        finally:
            for pending in (subscribed, listed, storage):
                if not pending.done():
                    pending.cancel()
                elif not pending.cancelled():
                    pending.exception()  # retrieved: the one raised above says it already
        watcher = self.watcher = liveness.Watch(
            client, self._on_liveness, after=self.ping_after, timeout=self.ping_timeout
        )
        try:
            handled = 0
            while True:
                event = await client.next_event()
                handled += 1
                # The first `mark` events came before the plugins.list answer: their health is
                # older than the answer's, already applied (no seq says so; their place does).
                self.on_event(event, stale_health=handled <= mark)
                if handled % YIELD_EVERY == 0:
                    # next_event() does not suspend while events are queued; let the UI breathe.
                    await asyncio.sleep(0)
        finally:
            watcher.cancel()
            self.watcher = None

    def _on_liveness(self, last_heard: float | None) -> None:
        if self.app.stream is not self:
            return  # replaced by a context switch
        if last_heard is None:
            self.set_responding()
        else:
            self.set_not_responding(last_heard)

    async def _storage(self, client: Client) -> str | None:
        # Storage may have been failing before we connected; later changes come as events.
        status = await client.request("status")
        health = status.get("storage") if isinstance(status, dict) else None
        if not isinstance(health, dict):
            return None
        try:
            # Without the count of unstored events: it would not fit at 80 columns.
            current = msgspec.convert(health, StorageHealth)
            described = describe_storage(msgspec.structs.replace(current, unpersisted=0))
        except msgspec.ValidationError:
            return None
        return None if described == "ok" else described

    def _forget_health(self) -> None:
        """A new stream: the heartbeat health heard on an earlier one is not current. After a
        daemon restart the plugins table showed the previous run's latency as if measured now,
        until the first heartbeat (up to a heartbeat interval later). None until one arrives,
        as on the first connection; live health is never stored, so there is nothing to seed.
        (While offline the last one stays, shown as last known.)"""
        self._pending_health.clear()
        self._held_health.clear()
        self._ended_health.clear()
        plugins = self.app.plugins
        if any(state.health is not None for state in plugins.values()):
            self.app.plugins = {
                name: msgspec.structs.replace(state, health=None) if state.health else state
                for name, state in plugins.items()
            }

    # -- seed --------------------------------------------------------------------------------

    @property
    def history_from_daemon(self) -> bool:
        """No local database to read (a remote target, or none yet): ask the daemon."""
        return self.database_path is None or not self.database_path.exists()

    async def seed_from_daemon(self, client: Client) -> None:
        """The seed over the protocol: the daemon reads its own database for us."""
        snapshot = msgspec.convert(
            await client.request("connections.snapshot"), ConnectionsSnapshot
        )
        self._apply_rows(snapshot.plugins)
        self._set_link(database=True)

    async def seed(self) -> None:
        """Replace every plugin's state with the stored one (read-only SQLite)."""
        if self.database_path is None:
            return
        try:
            # One hop to a thread and back (harness.store.read_plugins_readonly says why).
            rows = await asyncio.to_thread(read_plugins_readonly, self.database_path)
        except StoreError as exc:
            missing = not self.database_path.exists()
            self._set_link(database=not missing, detail=str(exc) if not missing else None)
            return
        except Exception as exc:  # a corrupt or half-migrated file: say so, keep going
            self._set_link(detail=f"cannot read the database: {exc}")
            return
        self._apply_rows(rows)
        if not self.app.link.database:
            self._set_link(database=True)

    def _apply_rows(self, rows: Iterable[PluginRow | StoredPlugin]) -> None:
        # The seed is newer than anything pending from an older connection: drop those.
        self._pending_conn.clear()
        self._pending_status.clear()
        self._epoch += 1
        self.seeds += 1
        online = self.client is not None
        old = self.app.plugins
        new: dict[str, PluginState] = {}
        for row in rows:
            prev = old.get(row.name) or PluginState(name=row.name)
            conn = row.metadata.get("connection")
            described = described_info(row.name, row.enabled, row.metadata)
            if prev.info is None and described is not None:
                # Never seen the daemon this session: its stored description of the plugin
                # (secrets only as set / not set) stands in until plugins.list answers.
                prev = msgspec.structs.replace(
                    prev,
                    info=described,
                    version=described.version,
                    description=described.description,
                )
            new[row.name] = msgspec.structs.replace(
                prev,
                enabled=row.enabled,
                # Offline, nothing is running; plugins.list fills this in once online.
                status=prev.status if online else "",
                reason=prev.reason if online else None,
                connection=to_connection(conn),
                updated_at=row.updated_at,
                epoch=self._epoch,
            )
        self.app.plugins = new

    def apply_infos(self, infos: Iterable[PluginInfo]) -> None:
        """Merge the daemon's view (version, status, schema, redacted settings)."""
        plugins = dict(self.app.plugins)
        for info in infos:
            prev = plugins.get(info.name) or PluginState(name=info.name, epoch=self._epoch)
            state = msgspec.structs.replace(
                prev,
                version=info.version,
                description=info.description,
                enabled=info.enabled,
                status=info.status,
                reason=info.reason,
                info=info,
            )
            conn = to_connection(info.metadata.get("connection"))
            if conn is not None:
                state = state.with_connection(conn, info.updated_at)
            plugins[info.name] = state
        self.app.plugins = plugins

    def apply_health(self, answer: Iterable[Any]) -> None:
        """Each plugin's live health as the daemon's ``plugins.list`` answered it (health is
        never stored, so the seed cannot hold it; without this an ACK already overdue when the
        TUI connects would show only at the next change). A plugin the answer gives no health
        has none now: one kept from an earlier connection is dropped."""
        plugins = dict(self.app.plugins)
        for item in answer:
            name = item.get("name") if isinstance(item, dict) else None
            prev = plugins.get(name) if isinstance(name, str) else None
            if prev is None:
                continue
            health = None
            raw = item.get("health")
            if isinstance(raw, dict) and health_applies(prev.connection):
                try:
                    health = msgspec.convert(raw, Health)
                except msgspec.ValidationError:
                    pass  # a health shape we do not know: nothing to show
            self._pending_health.pop(prev.name, None)
            self._held_health.pop(prev.name, None)
            if health != prev.health:
                plugins[prev.name] = msgspec.structs.replace(prev, health=health)
        if plugins != self.app.plugins:
            self.app.plugins = plugins

    # -- events ------------------------------------------------------------------------------

    def on_event(self, event: Event, *, stale_health: bool = False) -> None:
        """Take one streamed event: keep the latest value per key, schedule a flush.
        ``stale_health``: the event was read before an answer whose health was applied, so a
        health event is older than what is shown and is not applied."""
        self.events_received += 1
        if len(self._pending_events) == EVENT_BUFFER:
            self._dropped += 1
        self._pending_events.append(event)
        name = event.event
        plugin = plugin_of_connection_event(name)
        health_of = plugin_of_health_event(name) if plugin is None else None
        conn = None
        if plugin is not None:
            data = event.data if "seq" in event.data else {**event.data, "seq": event.seq}
            conn = to_connection(data)
        if health_of is not None and not stale_health:
            try:
                self._pending_health[health_of] = msgspec.convert(event.data, Health)
            except msgspec.ValidationError:
                pass  # a health shape we do not know: nothing to show
        if plugin is not None and conn is not None:
            pending = self._pending_conn.get(plugin)
            held = max(
                connection_seq(pending[0]) if pending else 0,
                self.app.plugins[plugin].seq if plugin in self.app.plugins else 0,
            )
            if connection_seq(conn) <= held:
                self.stale_ignored += 1  # older than the seed or a newer event: keep ours
            else:
                self._pending_conn[plugin] = (conn, event.ts)
                if not health_applies(conn):  # ends any health heard before it
                    self._pending_health.pop(plugin, None)
                    self._held_health.pop(plugin, None)
                    self._ended_health.add(plugin)
        elif name == "plugin:status" and isinstance(event.data.get("plugin"), str):
            self._pending_status[event.data["plugin"]] = (event.data, event.ts)
        elif name == STORAGE_EVENT:
            self._on_storage(event)
        elif name == "plugin:settings" and isinstance(event.data.get("plugin"), str):
            self._refresh.add(event.data["plugin"])
        self._schedule()

    def _on_storage(self, event: Event) -> None:
        if event.data.get("state") == "failing":
            cause = event.data.get("cause")
            text = describe_storage(
                StorageHealth(
                    ok=False, cause=cause if isinstance(cause, str) else None, since=event.ts
                )
            )
        else:
            text = None
        self.app.link = msgspec.structs.replace(self.app.link, storage=text)

    def _schedule(self) -> None:
        if self._flush_scheduled:
            return
        self._flush_scheduled = True
        delay = self._last_flush + FLUSH_INTERVAL - monotonic()
        if delay <= 0:
            # Leading edge: quiet until now. call_soon runs once the worker waits for the
            # socket again (or yields, every YIELD_EVERY events), so the events of one read
            # land in one flush; the App's message queue, with whatever waits in it, is skipped.
            asyncio.get_running_loop().call_soon(self._flush_soon)
        else:
            # Trailing edge of a burst: one flush for all of it, FLUSH_INTERVAL after the last.
            self.app.set_timer(delay, self.flush, name="stream-flush")

    def _flush_soon(self) -> None:
        try:
            self.flush()
        except Exception as exc:
            # Outside the App's queue a failure would only be logged by asyncio: hand it to
            # the App, which handles it as it would any failing callback (a bug: it says so).
            self.app.call_later(_reraise, exc)

    def flush(self) -> None:
        """Apply what is pending to the App: one reactive update, one signal per batch."""
        self._flush_scheduled = False
        if self.app.stream is not self:
            return  # replaced by a context switch: its leftovers belong to no one
        self._last_flush = monotonic()
        if self._pending_conn or self._pending_status or self._pending_health:
            plugins = dict(self.app.plugins)
            for name, (conn, ts) in self._pending_conn.items():
                prev = plugins.get(name) or PluginState(name=name, epoch=self._epoch)
                plugins[name] = prev.with_connection(conn, ts)
                if name in self._ended_health and plugins[name].health is not None:
                    plugins[name] = msgspec.structs.replace(plugins[name], health=None)
                held_health = self._held_health.pop(name, None)
                if held_health is not None and health_applies(conn):
                    plugins[name] = msgspec.structs.replace(plugins[name], health=held_health)
            self._ended_health.clear()
            for name, health in self._pending_health.items():
                prev = plugins.get(name) or PluginState(name=name, epoch=self._epoch)
                if health_applies(prev.connection):
                    plugins[name] = msgspec.structs.replace(prev, health=health)
                else:
                    self._held_health[name] = health
            self._pending_health.clear()
            for name, (data, ts) in self._pending_status.items():
                prev = plugins.get(name) or PluginState(name=name, epoch=self._epoch)
                status = str(data.get("status", ""))
                enabled = data.get("enabled")
                if not isinstance(enabled, bool):  # a daemon from before "enabled" was sent
                    enabled = {"running": True, "disabled": False}.get(status, prev.enabled)
                plugins[name] = msgspec.structs.replace(
                    prev,
                    status=status,
                    reason=data.get("reason"),
                    enabled=enabled,
                    updated_at=max(prev.updated_at, ts),
                )
            self._pending_conn.clear()
            self._pending_status.clear()
            self.app.plugins = plugins
        if self._pending_events:
            batch = EventBatch(tuple(self._pending_events), self._dropped)
            self._pending_events.clear()
            self._dropped = 0
            self.app.events_signal.publish(batch)
        if self._refresh and self.client is not None:
            names, self._refresh = sorted(self._refresh), set()
            self.app.run_worker(self._refresh_infos(names), group="refresh", exit_on_error=False)

    async def _refresh_infos(self, names: list[str]) -> None:
        # Settings changed (here or by another client): fetch the new schema/values view.
        infos = []
        for name in names:
            try:
                infos.append(
                    msgspec.convert(await self.request("plugins.get", name=name), PluginInfo)
                )
            except (DaemonUnavailable, ClientError):
                return
        if self.app.stream is self:  # not replaced by a context switch meanwhile
            self.apply_infos(infos)

    # -- requests ----------------------------------------------------------------------------

    async def request(self, method: str, **params: Any) -> Any:
        """A request over the stream's connection; DaemonUnavailable while offline."""
        client = self.client
        if client is None:
            raise DaemonUnavailable("the daemon is offline")
        return await client.request(method, **params)

    # -- link state --------------------------------------------------------------------------

    def set_online(self, head: int, storage: str | None = None) -> None:
        """Mark the stream live (``head``: the daemon's seq when the subscription began;
        ``storage``: the daemon's storage failure, if any)."""
        self.app.link = LinkState(
            online=True,
            changed_at=self.app.clock(),
            ever_online=True,
            head_seq=head,
            detail="live",
            database=self.app.link.database,
            storage=storage,
        )

    def set_not_responding(self, last_heard: float) -> None:
        """The connection is open but the daemon answers nothing: what is shown is only as true
        as ``last_heard`` (wall clock). Widgets treat it as offline (stale, read-only)."""
        silent = self.app.clock() - last_heard
        self.app.link = msgspec.structs.replace(
            self.app.link,
            online=False,
            responding=False,
            changed_at=last_heard,
            detail=liveness.not_responding(silent),
        )

    def set_responding(self) -> None:
        """The daemon answered again on the same connection: live, nothing was lost (events
        queued meanwhile arrive in order)."""
        self.app.link = msgspec.structs.replace(
            self.app.link, online=True, responding=True, changed_at=self.app.clock(), detail="live"
        )

    def set_offline(self, why: str) -> None:
        """Mark the stream down; widgets keep their values and show them as last known."""
        link = self.app.link
        if link.online or link.changed_at == 0.0:
            changed_at = self.app.clock()
        else:
            changed_at = link.changed_at  # still the same outage: keep when it began
        self.app.link = msgspec.structs.replace(
            link, online=False, responding=True, changed_at=changed_at, detail=why
        )

    def _set_link(self, *, database: bool | None = None, detail: str | None = None) -> None:
        link = self.app.link
        self.app.link = msgspec.structs.replace(
            link,
            database=link.database if database is None else database,
            detail=link.detail if detail is None else detail,
        )
