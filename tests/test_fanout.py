"""The bus's stream fan-out: one joined buffer per subscription per loop iteration, shared by
the subscribers with the same patterns, and membership changes that never mix up whose
events are whose."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
import pytest

from harness.bus import Bus, Patterns, QueueSubscriber, StreamSubscriber
from harness.client import Client
from harness.config import Config
from harness.protocol import PROTOCOL_VERSION, Event, encode
from tests.conftest import HANG_GUARD, StartDaemon, collect, wait_until

Connect = Callable[..., Awaitable[Client]]


class Stream(StreamSubscriber):
    def __init__(self, *patterns: str) -> None:
        self.patterns = Patterns(patterns)
        self.received: list[tuple[bytes | bytearray, int]] = []

    def receive(self, joined: bytes | bytearray, frames: int) -> None:
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


class Direct(Stream):
    """A stream subscriber that, like a socket client, may be written to directly."""

    def __init__(self, *patterns: str) -> None:
        super().__init__(*patterns)
        self.written: list[bytes | bytearray] = []
        self.direct = True

    def direct_write(self) -> Callable[[bytes | bytearray], object] | None:
        return self.written.append if self.direct else None

    def everything(self) -> bytes:
        return b"".join(self.written) + b"".join(j for j, _ in self.received)


async def test_a_direct_subscriber_is_written_to_until_it_redirects_and_keeps_its_order() -> None:
    bus = Bus()
    sub = Direct("*")
    bus.subscribe(sub)
    bus.publish(ev(1))
    await asyncio.sleep(0)
    assert sub.written == [encode(ev(1))] and sub.received == []
    sub.direct = False  # say, its transport paused: frames now go through receive()
    bus.redirect(sub)
    bus.publish(ev(2))
    bus.publish(ev(3))
    await asyncio.sleep(0)
    assert sub.received == [(encode(ev(2)) + encode(ev(3)), 2)]  # counted for the slow path
    sub.direct = True
    bus.redirect(sub)
    bus.publish(ev(4))
    await asyncio.sleep(0)
    assert sub.written[-1] == encode(ev(4))
    # In order: what went through receive() in between was only ever seq 2 and 3.
    assert sub.written == [encode(ev(1)), encode(ev(4))]


async def test_routes_follow_groups_coming_and_going_and_each_sees_its_events_in_order() -> None:
    bus = Bus()
    wide, narrow = Direct("*"), Direct("a:*")
    bus.subscribe(wide)
    events = [ev(1, "a:x"), ev(2, "b:y")]
    for e in events:
        bus.publish(e)  # routes worked out with one group: the short path
    bus.subscribe(narrow)  # a second group: a:x now goes to two groups, b:y to one
    events += [ev(3, "a:x"), ev(4, "b:y"), ev(5, "a:z")]
    assert [bus.publish(e) for e in events[2:]] == [2, 1, 2]
    bus.unsubscribe(wide)  # back to one group for a:*, none for b:*
    events += [ev(6, "a:x"), ev(7, "b:y")]
    assert [bus.publish(e) for e in events[5:]] == [1, 0]
    await asyncio.sleep(0)
    assert wide.everything() == b"".join(encode(e) for e in events[:5])
    assert narrow.everything() == b"".join(encode(events[n]) for n in (2, 4, 5))


async def test_in_process_subscribers_and_stream_groups_get_the_same_events() -> None:
    bus = Bus()
    stream = Direct("a:*")
    queue = QueueSubscriber(["a:*"])
    bus.subscribe(stream)
    bus.publish(ev(1))
    bus.subscribe(queue)  # the short path gives way: the queue needs each event
    bus.publish(ev(2))
    bus.unsubscribe(queue)
    bus.publish(ev(3))  # and comes back
    await asyncio.sleep(0)
    assert stream.everything() == encode(ev(1)) + encode(ev(2)) + encode(ev(3))
    assert queue.queue.qsize() == 1 and queue.queue.get_nowait() == ev(2)


async def test_in_process_subscribers_for_other_names_leave_the_short_path_alone() -> None:
    """As in the daemon, whose live health always listens to ``*:health`` and
    ``*:connection``: the names it does not want go the short path to the one group, the
    ones it wants go the wide path, and each side gets exactly its events, in order."""
    bus = Bus()
    stream = Direct("*")
    health = QueueSubscriber(["*:health", "*:connection"])
    bus.subscribe(stream)
    bus.subscribe(health)
    events = [ev(1, "a:tick"), ev(2, "a:health"), ev(3, "a:tick"), ev(4, "a:connection")]
    assert [bus.publish(e) for e in events] == [1, 2, 1, 2]
    assert bus._single["a:tick"] is stream.group  # the short path
    assert bus._single["a:health"] is None  # the wide path: the queue needs it
    await asyncio.sleep(0)
    assert stream.everything() == b"".join(encode(e) for e in events)
    assert [health.queue.get_nowait().seq for _ in range(health.queue.qsize())] == [2, 4]


async def test_an_event_that_cannot_be_encoded_leaves_nothing_half_written() -> None:
    bus = Bus()
    sub = Direct("*")
    bus.subscribe(sub)
    bus.publish(ev(1))
    bad = Event(seq=2, ts=1.0, event="a:x", data={"oops": object()})
    with pytest.raises(TypeError):
        bus.publish(bad)
    bus.publish(ev(3))
    await asyncio.sleep(0)
    assert sub.everything() == encode(ev(1)) + encode(ev(3))


def big(seq: int, name: str = "a:x") -> Event:
    """About 1 KiB encoded: 32 of them in one iteration pass the bus's scratch threshold."""
    return Event(seq=seq, ts=1.0, event=name, data={"seq": seq, "pad": "p" * 1000})


async def test_a_busy_groups_scratch_buffer_hands_over_exact_frames_that_never_change() -> None:
    """Busy iterations go through the group's kept buffer (room, then the frames); quieter
    ones give it up again. Every handed-over buffer holds exactly that iteration's frames,
    and stays so after later iterations wrote over the kept buffer."""
    bus = Bus()
    sub = Direct("*")
    bus.subscribe(sub)
    group = sub.group
    assert group is not None
    sizes = [40, 40, 5, 40, 200, 40, 1, 1, 40]  # frames per iteration
    expected: list[bytes] = []
    bases: list[int] = []
    seq = 0
    for count in sizes:
        events = [big(seq + i) for i in range(count)]
        seq += count
        for e in events:
            bus.publish(e)
        expected.append(b"".join(encode(e) for e in events))
        await asyncio.sleep(0)
        bases.append(group.base)
    assert sub.written == expected  # compared after every iteration ran: none changed since
    assert 0 in bases and any(bases)  # it took the scratch, gave it up and took it again
    assert len(set(bases) - {0}) > 1  # and resized it for the 200-frame iteration


async def test_a_bad_event_in_a_busy_iteration_drops_only_itself() -> None:
    bus = Bus()
    sub = Direct("*")
    bus.subscribe(sub)
    assert sub.group is not None
    for n in range(40):  # a busy iteration first: the group now writes at its room
        bus.publish(big(n))
    await asyncio.sleep(0)
    assert sub.group.base > 0
    bad = Event(seq=99, ts=1.0, event="a:x", data={"oops": object()})
    with pytest.raises(TypeError):
        bus.publish(bad)  # the first frame of an iteration, written at the room
    bus.publish(big(100))
    with pytest.raises(TypeError):
        bus.publish(bad)  # a later one, appended
    bus.publish(big(101))
    await asyncio.sleep(0)
    assert sub.written[-1] == encode(big(100)) + encode(big(101))


# -- through real sockets ------------------------------------------------------------------------


async def test_a_paused_client_in_a_shared_group_catches_up_in_order_then_goes_direct_again(
    start_daemon: StartDaemon, connect: Connect, config: Config
) -> None:
    """Two clients with the same patterns share one group. One stops reading: its transport
    pauses, its events wait in its backlog (not cut off: within the bounds), the other gets
    everything meanwhile. Once it reads, it gets every event in order, and is written to
    directly again."""
    daemon = await start_daemon()
    assert daemon.bus is not None and daemon.server is not None and daemon.recorder is not None
    fast = await connect()
    first = await fast.subscribe(["*"]) + 1
    slow = await _silent_subscriber(config.socket_path)
    try:
        (client,) = [c for c in daemon.server.clients if c.peer.startswith("silent")]
        group = client.group
        assert group is not None and len(group.members) == 2  # one group, shared
        pad = "x" * 100_000
        last = first - 1
        async with asyncio.timeout(HANG_GUARD):
            while group.members[client] is not None or last - first < 3:  # until it pauses
                last = (await daemon.recorder.record("flood:blob", {"pad": pad})).seq
        for _ in range(5):  # more while paused: these wait in its backlog
            last = (await daemon.recorder.record("flood:blob", {"pad": pad})).seq
        assert client._backlog and not client._closed
        await _assert_got_everything(fast, first, last)
        got = await _read_events(slow, first, last)
        assert got == list(range(first, last + 1))
        await wait_until(lambda: group.members.get(client) is not None)  # direct again
        after = (await daemon.recorder.record("after:resume", {})).seq
        assert await _read_events(slow, after, after) == [after]
    finally:
        slow.close()


class _Silent:
    """A raw subscriber to everything that reads only when asked to."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    async def frames(self) -> list[dict[str, object]]:
        """The complete frames that the next read brings."""
        loop = asyncio.get_running_loop()
        while b"\n" not in self.buf:
            chunk = await loop.sock_recv(self.sock, 1 << 20)
            if not chunk:
                raise EOFError("the daemon closed the connection")
            self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        return [msgspec.json.decode(line) for line in lines]

    def close(self) -> None:
        self.sock.close()


async def _silent_subscriber(path: Path) -> _Silent:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, str(path))
    hello = {"type": "hello", "protocol": PROTOCOL_VERSION, "client": "silent"}
    subscribe = {"type": "subscribe", "id": 1, "events": ["*"]}
    await loop.sock_sendall(
        sock, msgspec.json.encode(hello) + b"\n" + msgspec.json.encode(subscribe) + b"\n"
    )
    silent = _Silent(sock)
    async with asyncio.timeout(HANG_GUARD):
        while not any(f["type"] == "ack" for f in await silent.frames()):
            pass
    return silent


async def _read_events(silent: _Silent, first: int, last: int) -> list[int]:
    """The seqs of the events from ``first`` to ``last`` as they arrive, others skipped."""
    seqs: list[int] = []
    async with asyncio.timeout(HANG_GUARD):
        while not seqs or seqs[-1] < last:
            for frame in await silent.frames():
                assert frame["type"] == "event", frame  # never lagged, never an error
                seq = frame["seq"]
                assert isinstance(seq, int)
                if seq >= first:
                    seqs.append(seq)
    return seqs


async def _assert_got_everything(client: Client, first: int, last: int) -> None:
    seqs = [e.seq for e in await collect(client, last - first + 1)]
    assert seqs == list(range(first, last + 1))


# -- the hot lane: a flood of one name costs what a raw server's publish costs -----------------


class _CountingDict(dict[str, object]):
    lookups = 0

    def __getitem__(self, key: str) -> object:
        self.lookups += 1
        return super().__getitem__(key)


async def test_a_flood_of_one_name_looks_its_route_up_once_per_iteration() -> None:
    """The first event of a name in a loop iteration finds its route; the ones after it go
    straight to the buffer (the hot lane). A name that takes turns with another in the same
    subscription, and a wide event in between, still arrive in order."""
    bus = Bus()
    sub = Direct("*")
    bus.subscribe(sub)
    bus.publish(ev(0))  # routed
    await asyncio.sleep(0)
    counting = _CountingDict(bus._single)
    bus._single = counting  # type: ignore[assignment]
    events = [ev(n) for n in range(1, 11)]
    assert [bus.publish(e) for e in events] == [1] * 10
    assert counting.lookups == 1  # per event before: 10
    await asyncio.sleep(0)
    more = [ev(11), ev(12, "a:y"), ev(13), ev(14)]
    assert [bus.publish(e) for e in more] == [1] * 4
    # A new iteration (1), a name never seen (2: missed, then routed), the first name again (1).
    assert counting.lookups == 1 + (1 + 2 + 1)
    await asyncio.sleep(0)
    assert sub.written == [
        encode(ev(0)),
        b"".join(encode(e) for e in events),
        b"".join(encode(e) for e in more),
    ]


async def test_published_seq_is_the_last_published_at_every_step_of_a_hot_lane() -> None:
    """The hot lane stores no seq per event (see Bus.published_seq): whatever happens between
    its events, published_seq is the seq of the last event published, and a subscriber that
    joins mid-iteration gets exactly the events after the head it read."""
    bus = Bus(last_seq=100)
    sub = Direct("*")
    health = QueueSubscriber(["*:health"])
    bus.subscribe(sub)
    bus.subscribe(health)
    assert bus.published_seq == 100
    seqs = iter(range(101, 200))
    published: list[Event] = []

    def publish(name: str = "a:x") -> None:
        e = ev(next(seqs), name)
        bus.publish(e)
        published.append(e)
        assert bus.published_seq == e.seq, name

    for _ in range(3):
        publish()  # hot after the first
    publish("a:y")  # another name, same group: the lane follows it
    publish()
    publish("a:health")  # the wide path (an in-process subscriber wants it) cools the lane
    publish()
    head = bus.published_seq
    late = Direct("*")
    bus.subscribe(late)  # mid-iteration, as a socket client's subscribe
    publish()
    publish()
    bad = Event(seq=next(seqs), ts=1.0, event="a:x", data={"oops": object()})
    with pytest.raises(TypeError):
        bus.publish(bad)
    assert bus.published_seq == bad.seq  # counted, as on every path: stored before encoding
    for _ in range(3):
        publish()
    await asyncio.sleep(0)
    assert bus.published_seq == published[-1].seq  # and after the flush
    publish()
    await asyncio.sleep(0)
    assert sub.everything() == b"".join(encode(e) for e in published)
    assert late.everything() == b"".join(encode(e) for e in published if e.seq > head)


async def test_bad_events_on_the_hot_lane_drop_only_themselves_whatever_the_room_held() -> None:
    """The hot lane keeps no length per event: a frame that fails half-way is cut off where it
    starts, found from the front, though msgspec leaves the buffer's old bytes (old frames,
    newlines and all) after it. Frames of every size, bad events anywhere, the same bad event
    again: every subscriber gets exactly the good frames, iteration after iteration."""
    import random

    rng = random.Random(7)
    bus = Bus()
    sub = Direct("*")
    bus.subscribe(sub)
    bad_data = {"ok": 1, "oops": object()}
    again = Event(seq=-1, ts=2.0, event="a:x", data=bad_data)  # published more than once
    expected: list[bytes] = []
    seq = 0
    for _ in range(30):
        good: list[Event] = []
        for _ in range(rng.choice([1, 5, 40, 120])):
            seq += 1
            if rng.random() < 0.15:
                bad = again if rng.random() < 0.3 else Event(seq, 1.0, "a:x", bad_data)
                with pytest.raises(TypeError):
                    bus.publish(bad)
                continue
            e = Event(
                seq=seq, ts=1.0, event="a:x", data={"n": seq, "pad": "p" * rng.randrange(2000)}
            )
            bus.publish(e)
            good.append(e)
        await asyncio.sleep(0)
        expected.append(b"".join(encode(e) for e in good))
    assert b"".join(sub.written) == b"".join(expected)
    for joined in sub.written:
        for line in bytes(joined).splitlines():
            msgspec.json.decode(line)  # every frame whole


async def test_a_bad_event_of_another_name_joining_the_hot_lane_drops_only_itself() -> None:
    """A second name on the hot subscription's buffer knows where its frame starts and cuts
    it there; it then looked for the frame again, did not find it, and dropped every good
    frame pending for the subscription in that iteration (found by a review)."""
    bus = Bus()
    sub = Direct("*")
    bus.subscribe(sub)
    good = [Event(seq=n, ts=1.0, event="a:x", data={"n": n}) for n in (1, 2)]  # a:x hot
    for e in good:
        bus.publish(e)
    with pytest.raises(TypeError):
        bus.publish(Event(seq=3, ts=1.0, event="b:y", data={"oops": object()}))
    after = Event(seq=4, ts=1.0, event="b:y", data={"n": 4})
    bus.publish(after)
    await asyncio.sleep(0)
    assert b"".join(sub.written) == b"".join(encode(e) for e in [*good, after])
    assert bus.published_seq == 4


async def test_a_bad_seq_on_the_hot_lane_drops_its_iteration_rather_than_send_a_broken_frame(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Never from the daemon's own events (it sets every seq and time itself): when an
    event's head cannot be encoded, where its half frame starts is not known, and the frames
    of that iteration for the subscription go, with an error logged."""
    bus = Bus()
    sub = Direct("*")
    bus.subscribe(sub)
    bus.publish(ev(1))
    bus.publish(ev(2))
    with pytest.raises(TypeError):
        bus.publish(Event(seq=object(), ts=1.0, event="a:x", data={}))  # type: ignore[arg-type]
    bus.publish(ev(3))
    await asyncio.sleep(0)
    assert sub.everything() == encode(ev(3))
    assert "could not be encoded and its frame not be found" in caplog.text


# -- the slow path's frame count: skipped where the frame bound cannot bind ---------------------


@pytest.mark.parametrize("queue_frames", [8, 10_000_000])
async def test_a_client_cut_off_is_told_exactly_how_many_events_it_lost_counted_or_not(
    start_daemon: StartDaemon,
    config: Config,
    monkeypatch: pytest.MonkeyPatch,
    queue_frames: int,
) -> None:
    """A client that stops reading is cut off by its frame bound (8 frames) or, where that
    bound is so high that it cannot bind before the byte bound (10,000,000 frames: the bus
    then counts no frames for paused clients), by its 16 MiB byte bound. Either way its
    ``lagged`` frame counts exactly the events it lost: every event published up to the
    cut-off that did not reach it, and it got an unbroken prefix."""
    from harness import server as server_module
    from harness.server import ClientConnection

    monkeypatch.setattr(server_module, "_LAGGED_GRACE", 30.0)  # closed by the flush, not aborted
    cfg = msgspec.structs.replace(
        config,
        daemon=msgspec.structs.replace(config.daemon, client_queue_frames=queue_frames),
    )
    daemon = await start_daemon(cfg=cfg)
    bus = daemon.bus
    assert bus is not None
    assert bus.count_frames is (queue_frames == 8)
    published_at_cut: list[int] = []
    real_lagged = ClientConnection._lagged

    def lagged(self: ClientConnection) -> None:
        published_at_cut.append(bus.published_seq)
        real_lagged(self)

    monkeypatch.setattr(ClientConnection, "_lagged", lagged)
    stuck = await _silent_subscriber(cfg.socket_path)
    try:
        before = bus.subscriber_count
        pad = "x" * 100_000
        async with asyncio.timeout(HANG_GUARD):
            while bus.subscriber_count == before:
                bus.publish(Event(seq=bus.next_seq(), ts=1.0, event="flood:blob", data={"p": pad}))
                await asyncio.sleep(0)  # the flush: the transport fills, pauses, the backlog grows
        data = bytearray(stuck.buf)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(HANG_GUARD):
            while chunk := await loop.sock_recv(stuck.sock, 1 << 20):
                data += chunk
    finally:
        stuck.close()
    frames = [msgspec.json.decode(line) for line in bytes(data).splitlines()]
    assert frames[-1]["type"] == "lagged"
    seqs = [f["seq"] for f in frames[:-1] if f["type"] == "event"]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # an unbroken prefix
    assert len(published_at_cut) == 1
    assert frames[-1]["dropped"] == published_at_cut[0] - seqs[-1] > 0


async def test_a_frame_bound_lowered_while_a_client_waits_counts_what_it_holds(
    start_daemon: StartDaemon, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Buffers queued uncounted (the frame bound could not bind) are counted when the bound is
    lowered to one that can: the next buffer cuts the client off, with the exact count."""
    from harness import server as server_module

    monkeypatch.setattr(server_module, "_LAGGED_GRACE", 30.0)
    cfg = msgspec.structs.replace(
        config, daemon=msgspec.structs.replace(config.daemon, client_queue_frames=10_000_000)
    )
    daemon = await start_daemon(cfg=cfg)
    bus, srv = daemon.bus, daemon.server
    assert bus is not None and srv is not None
    stuck = await _silent_subscriber(cfg.socket_path)
    try:
        (client,) = [c for c in srv.clients if c.peer.startswith("silent")]
        pad = "x" * 100_000
        async with asyncio.timeout(HANG_GUARD):
            while len(client._backlog) < 3:  # paused, and buffers wait uncounted
                bus.publish(Event(seq=bus.next_seq(), ts=1.0, event="flood:blob", data={"p": pad}))
                await asyncio.sleep(0)
        assert client._backlog_frames == 0 and not bus.count_frames
        srv.max_queued_frames = len(client._backlog)  # one frame per buffer here
        assert bus.count_frames and client._backlog_frames == len(client._backlog)
        assert not client._closed
        bus.publish(Event(seq=bus.next_seq(), ts=1.0, event="flood:blob", data={"p": pad}))
        last = bus.published_seq
        await wait_until(lambda: client._closed)
        data = bytearray(stuck.buf)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(HANG_GUARD):
            while chunk := await loop.sock_recv(stuck.sock, 1 << 20):
                data += chunk
    finally:
        stuck.close()
    frames = [msgspec.json.decode(line) for line in bytes(data).splitlines()]
    assert frames[-1]["type"] == "lagged"
    seqs = [f["seq"] for f in frames[:-1] if f["type"] == "event"]
    assert frames[-1]["dropped"] == last - seqs[-1] > 0
