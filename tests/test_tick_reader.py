"""Liveness ticks taken where they are read (harness.tick_reader): a tick read alone is handed
to the client's watch in the read callback, without waking the reader task; anything else
(a tick behind unread bytes, a tick read with other frames or in pieces, the first answer)
goes through the buffer and the reader task in the order it was written, and still counts.

The reader on its own, fed as a transport feeds it; then a real Client against a stand-in
daemon that writes ticks in those awkward ways over a real Unix socket, and against a real
in-process daemon (harness.ticks)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from harness import liveness, protocol
from harness.client import READ_LIMIT, Client
from harness.config import Config
from harness.tick_reader import TickReader
from tests.conftest import StartDaemon, wait_until

TICK = protocol.encode(protocol.Response(id=7, result={}))
EVENT = protocol.encode(protocol.Event(seq=1, ts=1.0, event="echo:message", data={"n": 1}))


def reader_taking_ticks() -> tuple[TickReader, list[int]]:
    reader = TickReader(READ_LIMIT)
    taken: list[int] = []
    reader.tick_line = TICK
    reader.on_tick_line = lambda: taken.append(1)
    return reader, taken


async def test_a_tick_read_alone_is_taken_at_once_and_leaves_the_buffer_empty() -> None:
    reader, taken = reader_taking_ticks()
    reader.feed_data(TICK)
    reader.feed_data(TICK)
    assert taken == [1, 1] and reader.fast_ticks == 2
    reader.feed_data(EVENT)  # the next frame is the first the reader task sees
    assert await reader.readline() == EVENT


async def test_a_tick_behind_unread_bytes_waits_its_turn() -> None:
    reader, taken = reader_taking_ticks()
    reader.feed_data(EVENT)  # read from the socket, not yet taken by the reader task
    reader.feed_data(TICK)
    assert taken == [] and reader.fast_ticks == 0
    assert await reader.readline() == EVENT
    assert await reader.readline() == TICK


async def test_anything_but_exactly_one_tick_goes_to_the_buffer() -> None:
    reader, taken = reader_taking_ticks()
    for data in (TICK + EVENT, EVENT + TICK, TICK[:10], TICK[10:], TICK + TICK):
        reader.feed_data(data)
    assert taken == []
    lines = [await reader.readline() for _ in range(7)]
    assert lines == [TICK, EVENT, EVENT, TICK, TICK, TICK, TICK]


async def test_without_a_tick_line_or_a_taker_nothing_is_taken() -> None:
    reader = TickReader(READ_LIMIT)
    reader.feed_data(protocol.encode(protocol.Response(id=0, result={})))
    reader.tick_line = TICK  # no taker yet
    reader.feed_data(TICK)
    assert reader.fast_ticks == 0
    assert await reader.readline() == protocol.encode(protocol.Response(id=0, result={}))
    assert await reader.readline() == TICK


# -- a real Client against a stand-in daemon that writes ticks awkwardly ----------------------


Writes = list[bytes]


@pytest.fixture
async def stand_in(tmp_path: Path) -> AsyncIterator[tuple[Path, Callable[[Writes], None]]]:
    """A daemon stand-in: welcome, ack a subscribe, answer the ticking ping at once; then
    write whatever the test queues, each item as one write, each after the client has had
    the chance to read the one before (a write per turn of the test)."""
    path = tmp_path / "stand-in.sock"
    queue: asyncio.Queue[bytes] = asyncio.Queue()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()  # hello
        writer.write(
            protocol.encode(
                protocol.Welcome(protocol=protocol.PROTOCOL_VERSION, server="t", seq=0, pid=1)
            )
        )
        for _ in range(2):  # subscribe, then the ping with every
            frame = protocol.decode_client(await reader.readline())
            if isinstance(frame, protocol.Subscribe):
                writer.write(protocol.encode(protocol.Ack(id=frame.id, seq=0)))
            elif isinstance(frame, protocol.Request):
                writer.write(protocol.encode(protocol.Response(id=frame.id, result={"seq": 0})))
        while True:
            writer.write(await queue.get())
            await writer.drain()

    def write(writes: Writes) -> None:
        for data in writes:
            queue.put_nowait(data)

    server = await asyncio.start_unix_server(serve, path=str(path))
    try:
        yield path, write
    finally:
        server.close()


async def test_a_client_hears_every_tick_however_it_is_written(
    stand_in: tuple[Path, Callable[[Writes], None]],
) -> None:
    path, write = stand_in
    client = await Client.connect(path)
    try:
        assert isinstance(client._reader, TickReader)
        await client.subscribe(["*"])
        changes: list[float | None] = []
        # A deadline far away: this counts ticks heard, not detection.
        watch = liveness.Watch(client, changes.append, after=0.05, timeout=3600)
        await wait_until(lambda: watch.ticks == 1)  # the first answer, which carries a seq
        reader = client._reader
        assert reader.fast_ticks == 0
        tick = protocol.encode(protocol.Response(id=client.tick_id, result={}))
        event = protocol.encode(protocol.Event(seq=1, ts=1.0, event="echo:message", data={"n": 1}))
        write([tick])  # alone: taken in the read callback
        await wait_until(lambda: watch.ticks == 2)
        assert reader.fast_ticks == 1
        write([tick + event, event + tick, tick[:9], tick[9:]])  # through the reader task
        await wait_until(lambda: watch.ticks == 5)
        assert [e.seq for e in [await client.next_event(), await client.next_event()]] == [1, 1]
        write([tick])
        await wait_until(lambda: watch.ticks == 6)
        assert changes == []  # never "not responding"
        assert reader.fast_ticks >= 2  # (the split tick too, if its halves met in the buffer)
        watch.cancel()
    finally:
        await client.close()


async def test_ticks_from_a_real_daemon_wake_no_reader_task(
    start_daemon: StartDaemon, config: Config
) -> None:
    await start_daemon()
    client = await Client.connect(config.socket_path)
    try:
        await client.subscribe(["*"])
        changes: list[float | None] = []
        watch = liveness.Watch(client, changes.append, after=0.05, timeout=3600)
        reader = client._reader
        assert isinstance(reader, TickReader)
        # Each tick the daemon writes is one write; read alone (the usual case) it is taken
        # in the read callback. Under load two may be read at once: those go the slow way.
        await wait_until(lambda: reader.fast_ticks >= 3)
        assert watch.ticks > reader.fast_ticks  # and the first answer went the usual way
        assert changes == []
        watch.cancel()
    finally:
        await client.close()
