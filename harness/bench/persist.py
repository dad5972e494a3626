"""``python -m harness.bench persist``: the persisted event path (plugin API → SQLite → stream)
against raw sqlite3 on the same machine, in the same run, with the same WAL/synchronous settings.

Figures:

- raw sqlite3, one row per transaction (BEGIN IMMEDIATE; INSERT; COMMIT) and ``executemany``
  batches of 1000 rows: the ceiling for any persisted path here;
- ``ctx.broadcast`` persisted ev/s with 1 plugin awaiting each call, and with 10 plugins at once,
  and ``ctx.set_connection`` with 1 plugin — an in-process :class:`~harness.daemon.Daemon` with
  real plugins, so every event goes through the plugin API, the recorder and the store;
- record → subscriber decoded latency at 1k persisted ev/s: the subscriber is a separate process
  reading the daemon's real Unix socket;
- a flood through 10 plugins with ``event_retention_max`` set low: the events table's largest size
  against the max, the WAL's largest size, and the longest single ``broadcast`` call.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec

from harness import protocol
from harness.bench import heading, percentile, row
from harness.config import Config, DaemonConfig
from harness.daemon import Daemon
from harness.plugin import Plugin, PluginContext

PAYLOAD = {"kind": "tick", "text": "a short status line of ordinary size", "n": 0}

# -- raw sqlite3 baselines --------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    ts   REAL NOT NULL,
    name TEXT NOT NULL,
    data TEXT NOT NULL CHECK (json_valid(data))
);
CREATE INDEX IF NOT EXISTS events_by_name ON events (name, seq);
"""


def _raw_connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")  # what the daemon's store sets
    conn.executescript(_SCHEMA)
    return conn


def raw_one_row(path: Path, seconds: float) -> float:
    """Rows/s committing one event row per transaction, JSON encoded per row as the daemon does."""
    conn = _raw_connect(path)
    encode = msgspec.json.encode
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO events (seq, ts, name, data) VALUES (NULL, ?, ?, ?)",
            (time.time(), "bench0:tick", encode({**PAYLOAD, "n": n}).decode()),
        )
        conn.execute("COMMIT")
        n += 1
        if n % 64 == 0 and time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


def raw_batched(path: Path, seconds: float, batch: int = 1000) -> float:
    """Rows/s committing ``batch`` rows per transaction with ``executemany``."""
    conn = _raw_connect(path)
    encode = msgspec.json.encode
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        now = time.time()
        rows = [
            (now, "bench0:tick", encode({**PAYLOAD, "n": n + i}).decode()) for i in range(batch)
        ]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO events (seq, ts, name, data) VALUES (NULL, ?, ?, ?)", rows)
        conn.execute("COMMIT")
        n += batch
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


# -- the daemon, with plugins that hand their context to the benchmark ------------------------

_contexts: dict[str, PluginContext] = {}


def _bench_plugin(index: int) -> type[Plugin]:
    class BenchPlugin(Plugin):
        name = f"bench{index}"
        version = "0"

        async def start(self, ctx: PluginContext) -> None:
            _contexts[self.name] = ctx
            await ctx.set_connection("connected", username="Bench#0001")

        async def stop(self, ctx: PluginContext) -> None:
            await ctx.set_connection("stopped")

    return BenchPlugin


@contextlib.asynccontextmanager
async def _daemon(
    root: Path, *, plugins: int = 10, keep: int = 1_000_000
) -> AsyncIterator[tuple[Daemon, list[PluginContext]]]:
    _contexts.clear()
    classes = {f"bench{i}": _bench_plugin(i) for i in range(plugins)}
    cfg = Config(
        daemon=DaemonConfig(
            socket=str(root / "h.sock"),
            database=str(root / "state.db"),
            event_retention_max=keep,
            event_retention_days=0,
            stop_timeout=5.0,
        )
    )
    daemon = Daemon(cfg, classes)
    await daemon.start()
    try:
        # boot awaits each plugin's start, so every context is here now
        assert len(_contexts) == plugins, sorted(_contexts)
        yield daemon, [_contexts[f"bench{i}"] for i in range(plugins)]
    finally:
        await daemon.stop()


async def _producer(ctx: PluginContext, deadline: float, stalls: list[float] | None = None) -> int:
    n = 0
    clock = time.perf_counter
    while clock() < deadline:
        t0 = clock()
        await ctx.broadcast("tick", {**PAYLOAD, "n": n})
        if stalls is not None:
            stalls.append(clock() - t0)
        n += 1
    return n


async def daemon_broadcast(root: Path, producers: int, seconds: float) -> float:
    async with _daemon(root, plugins=producers) as (_, ctxs):
        start = time.perf_counter()
        counts = await asyncio.gather(*(_producer(c, start + seconds) for c in ctxs))
        return sum(counts) / (time.perf_counter() - start)


async def daemon_set_connection(root: Path, seconds: float) -> float:
    async with _daemon(root, plugins=1) as (_, (ctx,)):
        states = ("connecting", "connected")
        n = 0
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            await ctx.set_connection(states[n % 2], attempt=n)
            n += 1
        return n / (time.perf_counter() - start)


# -- latency: a subscriber in its own process on the daemon's socket --------------------------


def _subscriber_main(path: str, expect: int) -> None:
    """Child process: subscribe to the ticks, print decode-time minus record-time per event."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    sock.sendall(protocol.encode(protocol.Hello(protocol=1, client="bench-persist")))
    sock.sendall(protocol.encode(protocol.Subscribe(id=1, events=["bench0:tick"])))
    decode = protocol.decode_server
    lat: list[float] = []
    buf = b""
    ready = False
    while len(lat) < expect:
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            frame = decode(line)
            if isinstance(frame, protocol.Ack) and not ready:
                ready = True
                print("ready", flush=True)
            elif isinstance(frame, protocol.Event) and "t" in frame.data:
                lat.append(time.monotonic() - frame.data["t"])
    print(json.dumps(lat), flush=True)


async def daemon_latency(root: Path, rate: float, seconds: float) -> list[float]:
    async with _daemon(root, plugins=1) as (daemon, (ctx,)):
        count = int(rate * seconds)
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import sys; from harness.bench.persist import _subscriber_main; "
            "_subscriber_main(sys.argv[1], int(sys.argv[2]))",
            str(daemon.config.socket_path),
            str(count),
            stdout=subprocess.PIPE,
        )
        try:
            assert child.stdout is not None
            await asyncio.wait_for(child.stdout.readline(), 30)  # "ready"
            start = time.monotonic()
            for i in range(count):
                due = start + i / rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await ctx.broadcast("tick", {**PAYLOAD, "n": i, "t": time.monotonic()})
            out = await asyncio.wait_for(child.stdout.read(), 30)
        finally:
            if child.returncode is None:
                child.kill()
            await child.wait()
        return [x * 1000 for x in json.loads(out.decode().strip().splitlines()[-1])]


# -- retention under a flood ------------------------------------------------------------------


async def daemon_flood(root: Path, keep: int, seconds: float) -> dict[str, float]:
    async with _daemon(root, plugins=10, keep=keep) as (daemon, ctxs):
        db = daemon.config.database_path
        wal = db.with_name(db.name + "-wal")
        reader = sqlite3.connect(f"file:{db}?mode=ro", uri=True, check_same_thread=False)
        largest = 0
        largest_wal = 0
        done = False

        async def sample() -> None:
            nonlocal largest, largest_wal
            while not done:
                (n,) = await asyncio.to_thread(
                    lambda: reader.execute("SELECT count(*) FROM events").fetchone()
                )
                largest = max(largest, n)
                with contextlib.suppress(FileNotFoundError):
                    largest_wal = max(largest_wal, wal.stat().st_size)
                await asyncio.sleep(0.25)

        sampler = asyncio.get_running_loop().create_task(sample())
        stalls: list[float] = []
        start = time.perf_counter()
        counts = await asyncio.gather(*(_producer(c, start + seconds, stalls) for c in ctxs))
        elapsed = time.perf_counter() - start
        done = True
        await sampler
        (final,) = reader.execute("SELECT count(*) FROM events").fetchone()
        reader.close()
        return {
            "rate": sum(counts) / elapsed,
            "largest": float(largest),
            "final": float(final),
            "wal_mib": largest_wal / 2**20,
            "stall_ms": max(stalls) * 1000,
            "stall_p99_ms": percentile(stalls, 99) * 1000,
        }


# -- main -------------------------------------------------------------------------------------


def main(quick: bool = False, argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.bench persist")
    parser.add_argument(
        "--flood-seconds", type=float, default=None, help="flood length (default 60, quick 10)"
    )
    args = parser.parse_args(argv or [])
    seconds = 1.0 if quick else 3.0
    flood = args.flood_seconds or (10.0 if quick else 60.0)
    keep = 20_000
    with tempfile.TemporaryDirectory(prefix="hb-") as tmp:
        root = Path(tmp)

        def fresh(name: str) -> Path:
            d = root / name
            d.mkdir()
            return d

        heading("raw sqlite3 (WAL, synchronous=NORMAL), same machine, same run")
        one = raw_one_row(fresh("raw1") / "raw.db", seconds)
        row("one row per transaction", one, "rows/s")
        batched = raw_batched(fresh("rawN") / "raw.db", seconds)
        row("executemany, 1000 rows per transaction", batched, "rows/s", baseline=one)

        heading("daemon: events through the plugin API, persisted (ratio to one-row raw)")
        b1 = asyncio.run(daemon_broadcast(fresh("d1"), 1, seconds))
        row("ctx.broadcast, 1 plugin awaiting each", b1, "ev/s", baseline=one, target=">= 0.5x")
        b10 = asyncio.run(daemon_broadcast(fresh("d10"), 10, seconds))
        row("ctx.broadcast, 10 plugins at once", b10, "ev/s", baseline=one, target=">= 1.5x")
        sc = asyncio.run(daemon_set_connection(fresh("dc"), seconds))
        row("ctx.set_connection, 1 plugin awaiting each", sc, "ev/s", baseline=one)

        heading("record -> subscriber decoded (separate process, real socket), 1k ev/s")
        lat = asyncio.run(daemon_latency(fresh("lat"), 1000.0, 2.0 if quick else 5.0))
        row("p50", percentile(lat, 50), "ms")
        row("p99", percentile(lat, 99), "ms", target="<= 2 ms")
        row("max", max(lat) if lat else float("nan"), "ms")

        heading(f"flood through 10 plugins for {flood:.0f} s, event_retention_max = {keep:,}")
        f = asyncio.run(daemon_flood(fresh("flood"), keep, flood))
        row("flood rate", f["rate"], "ev/s", baseline=one)
        row("events table, largest sampled / max", f["largest"] / keep, "x", target="<= 1.1x")
        row("events table at the end / max", f["final"] / keep, "x")
        row("WAL file, largest sampled", f["wal_mib"], "MiB")
        row("longest broadcast call", f["stall_ms"], "ms", target="<= 20 ms")
        row("broadcast call p99", f["stall_p99_ms"], "ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
