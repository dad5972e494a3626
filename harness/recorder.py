"""Persist, then publish: the one path by which any event enters the history and the stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from harness.bus import Bus
from harness.protocol import Event
from harness.store import Store


class Recorder:
    def __init__(self, store: Store, bus: Bus) -> None:
        self.store = store
        self.bus = bus
        # One event at a time from seq assignment to publish, so subscribers see seqs in order
        # and the stored metadata always equals the last published value.
        self._lock = asyncio.Lock()

    async def record(
        self,
        name: str,
        data: dict[str, Any] | Callable[[int, float], dict[str, Any]],
        *,
        plugin: str | None = None,
        metadata_key: str | None = None,
        ts: float | None = None,
        on_published: Callable[[Event], None] | None = None,
    ) -> Event:
        """Assign the next seq, commit the event (and ``metadata[metadata_key]`` of ``plugin``,
        set to the event's data) in one transaction, then publish it. ``data`` may be a function
        of ``(seq, ts)`` for payloads that carry their own seq. If the commit fails nothing is
        published and the seq is not reused.

        Shielded: a caller cancelled mid-way (a plugin task being stopped) must not leave an
        event committed but unpublished, or a transaction open. The step completes; only the
        caller stops waiting for it; ``on_published`` runs as part of the step, so state kept
        beside the stream (a plugin context's current connection) is updated either way."""
        return await asyncio.shield(
            self._record(name, data, plugin, metadata_key, ts, on_published)
        )

    async def _record(
        self,
        name: str,
        data: dict[str, Any] | Callable[[int, float], dict[str, Any]],
        plugin: str | None,
        metadata_key: str | None,
        ts: float | None,
        on_published: Callable[[Event], None] | None,
    ) -> Event:
        async with self._lock:
            seq = self.bus.next_seq()
            now = time.time() if ts is None else ts
            payload = data(seq, now) if callable(data) else data
            event = Event(seq=seq, ts=now, event=name, data=payload)
            await self.store.append_event(event, plugin=plugin, metadata_key=metadata_key)
            self.bus.publish(event)
            if on_published is not None:
                on_published(event)
            return event
