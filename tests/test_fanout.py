"""The bus's stream fan-out: one joined buffer per subscription per loop iteration, shared by
the subscribers with the same patterns, and membership changes that never mix up whose
events are whose."""

from __future__ import annotations

import asyncio

from harness.bus import Bus, Patterns, StreamSubscriber
from harness.protocol import Event, encode


class Stream(StreamSubscriber):
    def __init__(self, *patterns: str) -> None:
        self.patterns = Patterns(patterns)
        self.received: list[tuple[bytes, int]] = []

    def receive(self, joined: bytes, frames: int) -> None:
        self.received.append((joined, frames))


def ev(seq: int, name: str = "a:x") -> Event:
    return Event(seq=seq, ts=1.0, event=name, data={"seq": seq})


async def test_one_joined_buffer_per_subscription_per_iteration() -> None:
    bus = Bus()
    one, two, other = Stream("a:*"), Stream("a:*"), Stream("b:*")
    for sub in (one, two, other):
        bus.subscribe(sub)
    assert bus.subscriber_count == 3
    events = [ev(1), ev(2, "b:y"), ev(3)]
    assert [bus.publish(e) for e in events] == [2, 1, 2]
    assert one.received == [] and other.received == []  # not yet: at the end of the iteration
    await asyncio.sleep(0)
    assert one.received == [(encode(events[0]) + encode(events[2]), 2)]
    assert two.received[0][0] is one.received[0][0]  # the same buffer, joined once
    assert other.received == [(encode(events[1]), 1)]
    bus.publish(ev(4))
    await asyncio.sleep(0)
    assert len(one.received) == 2 and one.received[1] == (encode(ev(4)), 1)


async def test_joining_and_leaving_flush_what_was_published_before() -> None:
    bus = Bus()
    early = Stream("*")
    bus.subscribe(early)
    bus.publish(ev(1))
    late = Stream("*")
    bus.subscribe(late)  # seq 1 was published before it came: not its own
    bus.publish(ev(2))
    bus.unsubscribe(early)  # seq 2 was published while it was here: its own, delivered now
    bus.publish(ev(3))
    await asyncio.sleep(0)
    assert b"".join(j for j, _ in early.received) == encode(ev(1)) + encode(ev(2))
    assert b"".join(j for j, _ in late.received) == encode(ev(2)) + encode(ev(3))
    bus.unsubscribe(early)  # twice is harmless
    assert bus.subscriber_count == 1


def test_without_a_running_loop_delivery_is_immediate() -> None:
    bus = Bus()
    sub = Stream("*")
    bus.subscribe(sub)
    bus.publish(ev(1))
    assert sub.received == [(encode(ev(1)), 1)]
