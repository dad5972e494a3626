"""The plugin contract and the PluginContext through which a plugin talks to the daemon."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from harness.protocol import (
    CONNECTION_STATES,
    Connection,
    Event,
    Health,
    SettingField,
    check_event_size,
    connection_event,
    health_event,
)

if TYPE_CHECKING:
    from harness.recorder import Recorder
    from harness.store import Store

# How long a stop waits for the plugin's cancelled tasks: with the orchestrator's lock wait, a
# stop ends within stop_timeout + 1 s whatever a task does (harness/orchestrator.py).
CANCEL_WAIT = 0.5
_RECANCEL_INTERVAL = 0.05

# Identity survives a partial update (a resume does not repeat the username); every other field
# describes the current state only and is dropped unless the update gives it again.
_IDENTITY = ("username", "extra")
# What a plugin may pass to set_connection; seq and since are the host's.
_SETTABLE = frozenset(Connection.__struct_fields__) - {"state", "seq", "since"}


def check_connection_fields(fields: Mapping[str, Any]) -> None:
    """TypeError naming any field a plugin may not pass to ``set_connection``."""
    unknown = fields.keys() - _SETTABLE
    if unknown:
        raise TypeError(
            f"unknown connection field(s) {sorted(unknown)}: "
            "a plugin's own fields go in extra={...}"
        )


def next_connection(
    previous: Connection | None, state: str, fields: Mapping[str, Any], seq: int, ts: float
) -> Connection:
    """The connection that follows ``previous``: identity kept, transient fields replaced,
    ``since`` kept while the state is unchanged, fields given as None removed."""
    check_connection_fields(fields)
    kept: dict[str, Any] = {}
    if previous is not None:
        kept = {k: getattr(previous, k) for k in _IDENTITY}
    kept.update(fields)
    if kept.get("extra") is None:
        kept["extra"] = {}
    same = previous is not None and previous.state == state
    since = previous.since if same and previous is not None else ts
    return Connection(state=state, seq=seq, since=since, **kept)


class Plugin:
    """Subclass and register (built-in registry or the ``harness.plugins`` entry-point group).

    ``start`` should return once the plugin is up; long-running work goes in
    ``ctx.create_task`` so the host can cancel it and notice when it fails."""

    name: ClassVar[str]
    version: ClassVar[str] = "0.0.0"
    description: ClassVar[str] = ""
    settings_schema: ClassVar[tuple[SettingField, ...]] = ()

    async def start(self, ctx: PluginContext) -> None:
        raise NotImplementedError

    async def stop(self, ctx: PluginContext) -> None:
        return None

    async def apply_settings(self, ctx: PluginContext, changed: frozenset[str]) -> bool:
        """React to changed settings while running. Return True if applied in place; the
        default returns False, which makes the host restart the plugin with the new settings."""
        return False


class PluginContext:
    """What a running plugin may use. One per plugin for the daemon's lifetime."""

    def __init__(
        self,
        name: str,
        recorder: Recorder,
        store: Store,
        settings: Mapping[str, Any],
        connection: Connection | None,
        on_task_failed: Callable[[BaseException], None],
        redact: Callable[[str], str] = str,
    ) -> None:
        self.name = name
        self.logger = logging.getLogger(f"harness.plugin.{name}")
        self._recorder = recorder
        self._store = store
        self._settings: Mapping[str, Any] = MappingProxyType(dict(settings))
        self._connection = connection
        self._on_task_failed = on_task_failed
        self._redact = redact  # masks this plugin's secrets in text it publishes
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def settings(self) -> Mapping[str, Any]:
        """Typed, validated settings with defaults applied (read-only)."""
        return self._settings

    def _replace_settings(self, settings: Mapping[str, Any]) -> None:
        self._settings = MappingProxyType(dict(settings))

    @property
    def connection(self) -> Connection | None:
        """The last connection recorded (equal to the stored one)."""
        return self._connection

    async def set_connection(self, state: str, **fields: Any) -> Connection:
        """Report the connection state: next seq, one transaction merging
        ``metadata.connection`` and appending the event, then ``{name}:connection`` is published.
        ``fields`` are ``Connection`` fields (a plugin's own go in ``extra``). A field passed as
        None is removed; identity fields not passed (``username``, ``extra``) are kept."""
        if state not in CONNECTION_STATES:
            raise ValueError(f"unknown connection state {state!r}")
        if isinstance(fields.get("reason"), str):
            fields["reason"] = self._redact(fields["reason"])
        # Checked now, in the caller's frame, rather than when the recorder builds it.
        check_connection_fields(fields)
        built: list[Connection] = []

        def build(seq: int, ts: float) -> dict[str, Any]:
            # Read here, when the recorder's writer takes the event (it builds in seq order and
            # holds a second update of the same key for the next batch): a queued update merges
            # onto the one published before it, never onto a value read before it waited.
            built.append(next_connection(self._connection, state, fields, seq, ts))
            # The recorder and the store take builtins; the struct is the contract around them.
            data: dict[str, Any] = msgspec.to_builtins(built[-1])
            return data

        def published(event: Event) -> None:
            self._connection = built[-1]

        await self._recorder.record(
            connection_event(self.name),
            build,
            plugin=self.name,
            metadata_key="connection",
            on_published=published,
        )
        return built[-1]

    def publish_health(self, health: Health) -> None:
        """Publish ``{name}:health`` to live subscribers only: not stored, not replayed, no
        seq of its own (it carries the seq of the last event published, see docs/protocol.md)."""
        bus = self._recorder.bus
        data: dict[str, Any] = msgspec.to_builtins(health)
        # Not through the recorder, so its frame check is made here (a bot of many shards).
        check_event_size(health_event(self.name), msgspec.json.encode(data).decode())
        bus.publish(
            Event(seq=bus.published_seq, ts=time.time(), event=health_event(self.name), data=data)
        )

    async def broadcast(self, event: str, data: dict[str, Any]) -> None:
        """Record and publish ``{plugin}:{event}``. Data that would make a frame over the
        protocol's 1 MiB raises :class:`harness.protocol.EventTooLarge` here (nothing stored or
        sent; the daemon and its clients carry on); so does ``set_connection``."""
        await self._recorder.record(f"{self.name}:{event}", data)

    async def update_metadata(self, **values: Any) -> None:
        """Merge keys into this plugin's metadata (``None`` deletes); other keys survive.

        When storage fails (disk full, read-only, I/O error) this returns normally, as
        ``set_connection`` and ``broadcast`` do: the operator is told (``daemon:storage``) and
        the values are stored by the first write that succeeds (docs/protocol.md)."""
        if "connection" in values:
            raise ValueError("metadata.connection is written by set_connection only")
        try:
            await self._store.merge_metadata(self.name, values)
        except Exception as exc:
            from harness.store import is_storage_error

            if not is_storage_error(exc):
                raise
            self._recorder.keep_metadata(self.name, values, exc)
        else:
            self._recorder.metadata_stored(self.name, values)

    def create_task(self, coro: Coroutine[Any, Any, Any], *, name: str = "") -> asyncio.Task[Any]:
        """A task owned by the plugin: cancelled when it stops; if it fails, the plugin is
        marked ``error`` and stopped."""
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.name}:{name or 'task'}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._on_task_failed(exc)

    async def _cancel_tasks(self, timeout: float = CANCEL_WAIT) -> list[str]:
        """Cancel the plugin's tasks and wait for them, ``timeout`` at most; return the names
        of those still running then. A stop must end whatever a task does: one that swallows
        its cancellation (Python 3.11's ``asyncio.wait_for`` loses a cancel that lands as the
        awaited call completes) is cancelled again, then left behind, logged, not waited for."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pending = set(self._tasks)
        for t in pending:
            t.cancel()
        # Half the time for a clean exit (a task may close its sockets as it unwinds), then
        # the stragglers are cancelled again every interval until the deadline.
        wait = timeout / 2
        while pending:
            left = deadline - loop.time()
            if left <= 0:
                break
            _done, pending = await asyncio.wait(pending, timeout=min(wait, left))
            for t in pending:
                t.cancel()
            wait = _RECANCEL_INTERVAL
        stuck = sorted(t.get_name() for t in pending)
        if stuck:
            self.logger.error(
                "plugin %s: task(s) %s still running %.1f s after being cancelled; left behind",
                self.name,
                ", ".join(stuck),
                timeout,
            )
        return stuck
