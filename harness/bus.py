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


class StreamSubscriber:
    """A subscriber that takes frames already joined: one :meth:`receive` per loop iteration
    with every matching frame published in it, shared by all the subscribers with the same
    patterns. The daemon's socket clients are these: fan-out then costs one ``join`` per
    subscription and one ``write`` per client per loop iteration, not one per event."""

    patterns: Patterns
    group: _Group | None = None  # set by the bus while subscribed

    def receive(self, joined: bytes, frames: int) -> None:
        """Take ``frames`` encoded frames joined into one buffer, without blocking."""
        raise NotImplementedError


class _Group:
    """The stream subscribers with one set of patterns, and the frames pending for them."""

    __slots__ = ("frames", "key", "members", "patterns")

    def __init__(self, patterns: Patterns) -> None:
        self.key = patterns.patterns
        self.patterns = patterns
        self.members: dict[StreamSubscriber, None] = {}  # insertion-ordered set
        self.frames: list[bytes] = []


class Bus:
    def __init__(self, last_seq: int = 0) -> None:
        self.last_seq = last_seq  # highest seq assigned
        self.published_seq = last_seq  # highest seq delivered to subscribers
        self._subscribers: list[Subscriber] = []  # per-event (in-process) subscribers
        self._groups: dict[tuple[str, ...], _Group] = {}
        self._pending: list[_Group] = []  # groups with frames to flush, in order of first frame
        self._flush_scheduled = False

    def next_seq(self) -> int:
        self.last_seq += 1
        return self.last_seq

    def subscribe(self, subscriber: Subscriber | StreamSubscriber) -> None:
        if not isinstance(subscriber, StreamSubscriber):
            self._subscribers.append(subscriber)
            return
        group = self._groups.get(subscriber.patterns.patterns)
        if group is None:
            group = self._groups[subscriber.patterns.patterns] = _Group(subscriber.patterns)
        # Frames already pending were published before this subscriber came: not its own.
        self.flush_group(group)
        group.members[subscriber] = None
        subscriber.group = group

    def unsubscribe(self, subscriber: Subscriber | StreamSubscriber) -> None:
        if isinstance(subscriber, StreamSubscriber):
            group = subscriber.group
            if group is None:
                return
            # What was published while it was subscribed is still its own: deliver it first.
            self.flush_group(group)
            group.members.pop(subscriber, None)
            subscriber.group = None
            if not group.members:
                self._groups.pop(group.key, None)
            return
        try:
            self._subscribers.remove(subscriber)
        except ValueError:
            pass

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers) + sum(len(g.members) for g in self._groups.values())

    def publish(self, event: Event) -> int:
        """Deliver to every matching subscriber; returns how many got it. Encodes once.

        Stream subscribers get the frame at the end of this loop iteration, joined with every
        other frame published in it (:meth:`flush`); a subscriber that writes something of its
        own first calls :meth:`flush_group`, so nothing ever overtakes an event."""
        self.published_seq = event.seq
        frame = encode(event)
        name = event.event
        count = 0
        for group in self._groups.values():
            if group.patterns(name):
                if not group.frames:
                    self._pending.append(group)
                group.frames.append(frame)
                count += len(group.members)
        if self._pending and not self._flush_scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a synchronous caller): deliver now
                self.flush()
            else:
                self._flush_scheduled = True
                loop.call_soon(self.flush)
        if self._subscribers:
            # A copy: a subscriber that overflows unsubscribes itself during delivery.
            for sub in tuple(self._subscribers):
                if sub.patterns(name):
                    sub.deliver(frame, event)
                    count += 1
        return count

    def flush(self) -> None:
        """Hand every group its pending frames: one join per group, one call per member."""
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        for group in pending:
            self.flush_group(group)

    def flush_group(self, group: _Group) -> None:
        frames = group.frames
        if not frames:
            return
        group.frames = []  # before delivering: a member that leaves meanwhile finds it empty
        joined = frames[0] if len(frames) == 1 else b"".join(frames)
        for member in tuple(group.members):
            member.receive(joined, len(frames))


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
