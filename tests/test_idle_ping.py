"""An idle client's liveness check (harness.liveness) costs as little as it can: issue 10's
idle-CPU target counts every wake-up of an idle TUI, and the check is all an idle TUI does.

With ticks (harness.ticks: one ``ping`` with ``every``, answered again by the daemon every
``every`` seconds) an idle cycle is one wake-up: the tick's read. Asking instead (a daemon from
before ticks) is two: the timer that writes the ping, then its answer. Counted on a real event
loop whose selector counts its waits, against a real `harness run` subprocess; the daemon too
old for ticks is a stand-in that refuses ``every`` as such a daemon does (``invalid_params``)."""

from __future__ import annotations

import asyncio
import contextlib
import selectors
from pathlib import Path

import msgspec

from harness import liveness, protocol
from harness.client import Client, ClientError
from harness.config import Config
from harness.daemon import Daemon
from harness.tick_reader import TickReader
from tests.conftest import HANG_GUARD, SpawnDaemon, StartDaemon, wait_until, write_config

CYCLES = 20
INTERVAL = 0.2  # seconds between ticks (or of silence before a ping)
# The answer's deadline: long, so that a loaded machine delaying a tick is never taken for a
# frozen daemon (this counts wake-ups; detection is tests/tui/test_liveness.py's).
TIMEOUT = 10.0


class CountingSelector(selectors.EpollSelector):
    """Counts the loop's sleeps (waits that may block), the waits that found a read, and the
    loop's turns (every wait, blocking or not: one per pass of the loop)."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeps = 0
        self.reads = 0
        self.turns = 0
        self.fast_ticks = 0  # ticks taken in the read callback while counting (tick_reader)
        self.counting = False
        self.enough: asyncio.Future[None] | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(timeout)
        if self.counting:
            self.sleeps += timeout is None or timeout > 0
            self.turns += 1
            self.reads += bool(ready)
            if self.reads >= CYCLES and self.enough is not None and not self.enough.done():
                self.enough.set_result(None)
        return ready


def idle_cycles(
    socket_path: Path, *, ticks: bool
) -> tuple[CountingSelector, list[float | None], bool]:
    """Watch an idle daemon over one connection until ``CYCLES`` frames were read; its own
    event loop, in this thread, so that only the client's wake-ups are counted."""
    selector = CountingSelector()
    loop = asyncio.SelectorEventLoop(selector)
    changes: list[float | None] = []
    ticked = [False]

    async def watch() -> None:
        client = await Client.connect(socket_path)
        try:
            await client.subscribe(["*"])  # as the TUI does: idle, nothing comes
            selector.enough = loop.create_future()
            # Asking, the next ping follows ``timeout`` after the last (its deadline): the
            # usual interval there, where a loaded machine may take an answer for late.
            timeout = TIMEOUT if ticks else INTERVAL
            watch = liveness.Watch(
                client, changes.append, after=INTERVAL, timeout=timeout, ticks=ticks
            )
            reader = client._reader
            fast = reader.fast_ticks if isinstance(reader, TickReader) else 0
            selector.counting = True
            try:
                async with asyncio.timeout(60):
                    await selector.enough
            finally:
                selector.counting = False
                if isinstance(reader, TickReader):
                    selector.fast_ticks = reader.fast_ticks - fast
                ticked[0] = watch.ticked
                watch.cancel()
        finally:
            await client.close()

    try:
        loop.run_until_complete(watch())
    finally:
        loop.close()
    return selector, changes, ticked[0]


# The two tests below judge the same measurement: an idle daemon's ticks, CYCLES of them, read
# by a client whose loop counts its waits. It is taken once, by whichever test runs first (a
# daemon's start and CYCLES * INTERVAL s of idling each time, for the same numbers).
_TICKED: list[tuple[CountingSelector, list[float | None], bool]] = []


async def ticked_cycles(
    spawn_daemon: SpawnDaemon, state_dir: Path
) -> tuple[CountingSelector, list[float | None], bool]:
    if not _TICKED:
        daemon = await spawn_daemon(write_config(state_dir))
        _TICKED.append(await asyncio.to_thread(idle_cycles, daemon.socket_path, ticks=True))
    return _TICKED[0]


async def test_an_idle_cycle_with_ticks_is_one_wake_up(
    spawn_daemon: SpawnDaemon, state_dir: Path
) -> None:
    selector, changes, ticked = await ticked_cycles(spawn_daemon, state_dir)
    assert ticked and changes == []  # ticks came in time: never "not responding"
    assert selector.reads >= CYCLES
    # One sleep per tick (its read); asking cost two (the timer, then the answer).
    assert selector.sleeps <= selector.reads * 1.25, (selector.sleeps, selector.reads)


async def test_a_tick_is_one_turn_of_the_loop(spawn_daemon: SpawnDaemon, state_dir: Path) -> None:
    """A tick read alone is taken in the read callback (harness.tick_reader): no second turn
    to wake the reader task, which read each tick through a plain StreamReader."""
    selector, changes, ticked = await ticked_cycles(spawn_daemon, state_dir)
    assert ticked and changes == []
    assert selector.reads >= CYCLES
    # One turn per tick taken in the read callback; a read the reader task must take (two
    # ticks read at once, when the loop was held up) costs a second. Through the reader task
    # every tick took two turns, and none was taken in the read callback.
    slow = selector.reads - selector.fast_ticks
    assert selector.fast_ticks >= 1, (selector.fast_ticks, selector.reads)
    assert selector.turns <= selector.reads + slow + 2, (selector.turns, selector.reads, slow)


async def test_an_idle_cycle_asking_is_two_wake_ups(
    spawn_daemon: SpawnDaemon, state_dir: Path
) -> None:
    daemon = await spawn_daemon(write_config(state_dir))
    selector, _, ticked = await asyncio.to_thread(idle_cycles, daemon.socket_path, ticks=False)
    assert not ticked  # (changes not checked: a loaded machine may delay an answer 0.2 s)
    assert selector.reads >= CYCLES
    # The timer's sleep and the answer's: at most two per answer read.
    assert selector.sleeps <= selector.reads * 2.25, (selector.sleeps, selector.reads)


async def test_one_daemon_timer_ticks_every_client_and_goes_with_the_last(
    start_daemon: StartDaemon, config: Config
) -> None:
    """Three clients asking for ticks at one interval share the daemon's one timer; each
    hears its own ping's id again and again; a client gone leaves the ticker, the last one
    takes the timer with it."""
    daemon: Daemon = await start_daemon()
    server = daemon.server
    assert server is not None
    clients = [await Client.connect(config.socket_path) for _ in range(3)]
    heard: list[list[bool]] = [[] for _ in clients]
    try:
        for client, got in zip(clients, heard, strict=True):
            client.tick_id = client.send_ping(every=INTERVAL)
            client.on_tick = got.append
        await wait_until(lambda: all(len(got) >= 3 for got in heard))
        assert all(all(got) for got in heard)  # answers, never refusals
        assert len(server.ticker) == 3 and len(server.ticker._groups) == 1
        await clients[0].close()
        await wait_until(lambda: len(server.ticker) == 2)
    finally:
        for client in clients:
            await client.close()
    await wait_until(lambda: not len(server.ticker) and not server.ticker._groups)


async def test_every_out_of_bounds_is_refused_and_ticks_nothing(
    start_daemon: StartDaemon, config: Config
) -> None:
    daemon: Daemon = await start_daemon()
    assert daemon.server is not None
    async with await Client.connect(config.socket_path) as client:
        for bad in (0.0, -1, 1e9, float("nan"), "5", True, None):
            raw = msgspec.json.encode(
                {"type": "request", "id": 99, "method": "ping", "params": {"every": bad}}
            ).replace(b"NaN", b"1e999")  # JSON has no NaN; an overflow decodes to inf
            future = client.expect(99)
            client._writer.write(raw + b"\n")
            async with asyncio.timeout(HANG_GUARD):
                with contextlib.suppress(ClientError):
                    await future
            assert isinstance(future.exception(), ClientError), bad
        assert len(daemon.server.ticker) == 0


async def test_a_daemon_from_before_ticks_is_asked_instead(tmp_path: Path) -> None:
    """A stand-in for an older daemon: it answers a plain ping and refuses one with params
    (``invalid_params``, as such a daemon did). The watch falls back to asking, and notices
    when the stand-in stops answering, then hears it again."""
    path = tmp_path / "old.sock"
    answering = asyncio.Event()
    answering.set()
    pings: list[dict[str, object]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()  # hello
        writer.write(
            protocol.encode(
                protocol.Welcome(protocol=protocol.PROTOCOL_VERSION, server="old", seq=0, pid=1)
            )
        )
        while line := await reader.readline():
            frame = msgspec.json.decode(line)
            if frame.get("type") == "subscribe":
                writer.write(protocol.encode(protocol.Ack(id=frame["id"], seq=0)))
            elif frame.get("method") == "ping":
                pings.append(frame.get("params") or {})
                await answering.wait()
                if frame.get("params"):
                    writer.write(
                        protocol.encode(
                            protocol.Error(
                                code=protocol.E_BAD_PARAMS, message="takes none", id=frame["id"]
                            )
                        )
                    )
                else:
                    writer.write(
                        protocol.encode(protocol.Response(id=frame["id"], result={"seq": 0}))
                    )
        writer.close()

    server = await asyncio.start_unix_server(serve, path=str(path))
    changes: list[float | None] = []
    try:
        client = await Client.connect(path)
        try:
            await client.subscribe(["*"])
            watch = liveness.Watch(client, changes.append, after=0.1, timeout=0.3)
            await wait_until(lambda: len(pings) >= 3)
            assert not watch.ticked and pings[0] == {"every": 0.1} and pings[1] == {}
            answering.clear()  # frozen: the next ping goes unanswered
            await wait_until(lambda: bool(changes))
            assert changes[0] is not None
            answering.set()
            await wait_until(lambda: changes[-1] is None)
            watch.cancel()
        finally:
            await client.close()
    finally:
        server.close()
