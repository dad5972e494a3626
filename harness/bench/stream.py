"""``python -m harness.bench stream``: the daemon's bus and socket server against a minimal
asyncio Unix-socket fan-out of the same frames, measured in the same run.

Subscribers run in a child process with the same reader code for both servers, so the ratio
isolates the server side. Clocks: ``time.monotonic`` is system-wide on Linux, so publish and
decode times compare across the two processes."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from harness import protocol
from harness.bench import heading, percentile, row
from harness.bus import Bus, Subscriber
from harness.protocol import Event
from harness.server import Server
from harness.store import Store

PAYLOAD = {"state": "connected", "username": "HarnessBot#1234", "since": 1764100000.0}


def _event(seq: int) -> Event:
    return Event(
        seq=seq,
        ts=time.time(),
        event="discord:connection",
        data={**PAYLOAD, "seq": seq, "t": time.monotonic()},
    )


# -- the subscriber process ------------------------------------------------------------------


async def _subscriber(path: str, expect: int, out: dict[str, Any]) -> None:
    reader, writer = await asyncio.open_unix_connection(path, limit=4 * protocol.MAX_FRAME_BYTES)
    writer.write(protocol.encode(protocol.Hello(protocol=1, client="bench")))
    writer.write(protocol.encode(protocol.Subscribe(id=1, events=["*:connection"])))
    decode = msgspec.json.Decoder(protocol.ServerFrame).decode
    got = 0
    latencies: list[float] = []
    buf = b""
    while got < expect:
        chunk = await reader.read(1 << 18)
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        now = time.monotonic()
        for line in lines:
            frame = decode(line)
            if isinstance(frame, Event):
                got += 1
                if got % 16 == 0:
                    latencies.append(now - frame.data["t"])
    out.setdefault("counts", []).append(got)
    out.setdefault("latencies", []).extend(latencies)
    out["end"] = max(out.get("end", 0.0), time.monotonic())
    writer.close()


def _subscribers_main(path: str, count: int, expect: int) -> None:
    async def go() -> None:
        out: dict[str, Any] = {}
        await asyncio.gather(*(_subscriber(path, expect, out) for _ in range(count)))
        print(json.dumps(out), flush=True)

    asyncio.run(go())


def _spawn_subscribers(path: str, count: int, expect: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness.bench.stream",
            "--subscribers",
            path,
            str(count),
            str(expect),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )


# -- the two servers ---------------------------------------------------------------------------


class BaselineServer:
    """What any asyncio fan-out would do: one transport.write per frame per subscriber."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.transports: list[asyncio.Transport] = []
        self.ready = asyncio.Event()
        self.expected = 0

    async def start(self) -> None:
        server = self

        class Proto(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport
                self.buf = b""

            def data_received(self, data: bytes) -> None:
                self.buf += data
                if self.buf.count(b"\n") >= 2 and self.transport not in server.transports:
                    assert isinstance(self.transport, asyncio.Transport)
                    server.transports.append(self.transport)
                    if len(server.transports) >= server.expected:
                        server.ready.set()

        self._server = await asyncio.get_running_loop().create_unix_server(Proto, self.path)

    def publish(self, event: Event) -> None:
        frame = protocol.encode(event)
        for t in self.transports:
            t.write(frame)

    async def close(self) -> None:
        for t in self.transports:
            t.abort()
        self._server.close()
        await self._server.wait_closed()


class DaemonServer:
    """The daemon's own Bus and Server (a real store behind it, as in the daemon)."""

    def __init__(self, path: str, db: Path, max_queued_frames: int) -> None:
        self.path = path
        self.db = db
        self.max_queued_frames = max_queued_frames
        self.expected = 0
        self.ready = asyncio.Event()

    async def start(self) -> None:
        self.store = await Store.open(self.db)
        outer = self

        class CountingBus(Bus):
            """Tells the benchmark when every subscriber is in."""

            def subscribe(self, subscriber: Subscriber) -> None:
                super().subscribe(subscriber)
                if self.subscriber_count >= outer.expected:
                    outer.ready.set()

        self.bus = bus = CountingBus(await self.store.last_seq())
        self.server = Server(
            Path(self.path), bus, self.store, {}, max_queued_frames=self.max_queued_frames
        )
        await self.server.start()

    def publish(self, event: Event) -> None:
        self.bus.publish(event)

    async def close(self) -> None:
        await self.server.close()
        await self.store.close()


# -- measurements ------------------------------------------------------------------------------


async def _run(
    make: Callable[[str], Any],
    subscribers: int,
    events: int,
    rate: float | None,
    work: Callable[[Any], Awaitable[None]] | None = None,
) -> dict[str, Any]:
    """Start a server, N subscribers in a child process, publish ``events`` (as fast as the
    subscribers take them, or at ``rate`` per second), and collect what they measured."""
    tmp = tempfile.mkdtemp(prefix="hb-")
    path = os.path.join(tmp, "s.sock")
    server = make(path)
    server.expected = subscribers
    await server.start()
    child = _spawn_subscribers(path, subscribers, events)
    try:
        await asyncio.wait_for(server.ready.wait(), 30)
        start = time.monotonic()
        for seq in range(1, events + 1):
            server.publish(_event(seq))
            if rate is not None:
                # Publish on schedule; sleep only when ahead of it.
                ahead = start + seq / rate - time.monotonic()
                if ahead > 0.0005:
                    await asyncio.sleep(ahead)
            elif seq % 256 == 0:
                await asyncio.sleep(0)  # let the writers run, as a daemon's loop would
        out_text = await asyncio.get_running_loop().run_in_executor(None, child.communicate)
        out = json.loads(out_text[0])
        out["start"] = start
        return out
    finally:
        if child.poll() is None:
            child.kill()
        await server.close()


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def _stuck_rss(make: Callable[[str], Any], rate: float, seconds: float) -> float:
    """RSS growth (MiB) of this process while one subscriber never reads."""
    tmp = tempfile.mkdtemp(prefix="hb-")
    path = os.path.join(tmp, "s.sock")
    server = make(path)
    server.expected = 1
    await server.start()
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await asyncio.get_running_loop().sock_connect(stuck, path)
    stuck.sendall(
        protocol.encode(protocol.Hello(protocol=1, client="stuck"))
        + protocol.encode(protocol.Subscribe(id=1, events=["*"]))
    )
    await asyncio.wait_for(server.ready.wait(), 10)
    before = _rss_kib()
    start = time.monotonic()
    total = int(rate * seconds)
    for seq in range(1, total + 1):
        server.publish(_event(seq))
        ahead = start + seq / rate - time.monotonic()
        if ahead > 0.0005:
            await asyncio.sleep(ahead)
    grown = (_rss_kib() - before) / 1024
    stuck.close()
    await server.close()
    return grown


def main(quick: bool = False) -> int:
    # The stuck subscriber's "fell behind" warning is the expected outcome, not news.
    logging.basicConfig(level=logging.ERROR)
    return asyncio.run(_main(quick))


async def _main(quick: bool) -> int:
    scale = 10 if quick else 1
    db_dir = Path(tempfile.mkdtemp(prefix="hb-db-"))
    big = 10_000_000  # throughput runs: never cut a subscriber off, measure raw delivery

    def baseline(path: str) -> BaselineServer:
        return BaselineServer(path)

    def daemon(path: str, frames: int = big) -> DaemonServer:
        return DaemonServer(path, db_dir / f"{os.path.basename(os.path.dirname(path))}.db", frames)

    print(
        f"harness stream benchmark ({'quick' if quick else 'full'}); "
        f"{os.cpu_count()} CPUs; subscribers in a separate process"
    )
    heading("Delivered events/s (publish -> decoded by every subscriber)")
    for subs, per_sub in ((1, 200_000), (10, 50_000), (100, 5_000)):
        n = per_sub // scale
        figures = []
        for make in (baseline, daemon):
            out = await _run(make, subs, n, rate=None)
            assert all(c == n for c in out["counts"]), "a subscriber missed events"
            figures.append(subs * n / (out["end"] - out["start"]))
        row(f"baseline, {subs} subscriber(s)", figures[0], "ev/s")
        row(
            f"daemon,   {subs} subscriber(s)",
            figures[1],
            "ev/s",
            baseline=figures[0],
            target=">= 0.50x baseline",
        )

    heading("Publish -> decoded latency, 10 subscribers")
    for rate in (1_000, 10_000):
        n = int(rate * (3 if not quick else 1))
        results = {}
        for name, make in (("baseline", baseline), ("daemon", daemon)):
            out = await _run(make, 10, n, rate=rate)
            lat = [x * 1000 for x in out["latencies"]]
            results[name] = (percentile(lat, 50), percentile(lat, 99))
        b50, b99 = results["baseline"]
        d50, d99 = results["daemon"]
        row(f"baseline p50 @ {rate:,} ev/s", b50, "ms")
        row(f"daemon   p50 @ {rate:,} ev/s", d50, "ms", baseline=b50)
        row(f"baseline p99 @ {rate:,} ev/s", b99, "ms")
        row(
            f"daemon   p99 @ {rate:,} ev/s",
            d99,
            "ms",
            baseline=b99,
            target="<= 1 ms" if rate == 10_000 else "",
        )

    heading("RSS growth with one subscriber that never reads, 10k ev/s")
    seconds = 2.0 if quick else 10.0
    naive = await _stuck_rss(baseline, 10_000, seconds)
    ours = await _stuck_rss(lambda p: daemon(p, 10_000), 10_000, seconds)
    row(f"baseline (unbounded buffer), {seconds:g} s", naive, "MiB")
    row(
        f"daemon (bounded queue, cut off), {seconds:g} s",
        ours,
        "MiB",
        baseline=naive if naive > 0 else None,
        target="<= 10 MB",
    )
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--subscribers":
        _subscribers_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(main("--quick" in sys.argv))
