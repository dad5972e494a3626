"""The event bus: the daemon-wide seq counter and fan-out of encoded frames to subscribers."""

from __future__ import annotations

import asyncio
import fnmatch
import re
from collections.abc import Iterable
from typing import Protocol

from harness.protocol import Event, encode


class Patterns:
    """Glob patterns over event names (``*:connection``, ``plugin:*``), memoised per name."""

    __slots__ = ("_memo", "_regex", "patterns")

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns) or ("*",)
        self._regex = re.compile("|".join(fnmatch.translate(p) for p in self.patterns))
        self._memo: dict[str, bool] = {}

    def __call__(self, name: str) -> bool:
        hit = self._memo.get(name)
        if hit is None:
            if len(self._memo) > 4096:  # event names are few; this only bounds a pathology
                self._memo.clear()
            hit = self._memo[name] = self._regex.match(name) is not None
        return hit


class Subscriber(Protocol):
    patterns: Patterns

    def deliver(self, frame: bytes, event: Event) -> None:
        """Take one event without blocking (queue it, or give up on the subscriber)."""


class Bus:
    def __init__(self, last_seq: int = 0) -> None:
        self.last_seq = last_seq  # highest seq assigned
        self.published_seq = last_seq  # highest seq delivered to subscribers
        self._subscribers: list[Subscriber] = []

    def next_seq(self) -> int:
        self.last_seq += 1
        return self.last_seq

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        try:
            self._subscribers.remove(subscriber)
        except ValueError:
            pass

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def publish(self, event: Event) -> int:
        """Deliver to every matching subscriber; returns how many got it. Encodes once."""
        self.published_seq = event.seq
        frame = encode(event)
        name = event.event
        count = 0
        # A copy: a subscriber that overflows unsubscribes itself during delivery.
        for sub in tuple(self._subscribers):
            if sub.patterns(name):
                sub.deliver(frame, event)
                count += 1
        return count


class QueueSubscriber:
    """An in-process subscriber with a bounded queue, for tests and tools."""

    def __init__(self, patterns: Iterable[str] = ("*",), maxsize: int = 100_000) -> None:
        self.patterns = Patterns(patterns)
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.dropped = 0

    def deliver(self, frame: bytes, event: Event) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
