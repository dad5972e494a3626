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
  against the max, the WAL's largest size, and the longest single ``broadcast`` call, beside
  the same flood without retention and the longest single raw sqlite3 transaction over the
  same time (what the disk alone does). The stall target is about pruning, so two rows say
  what retention adds: the longest call with it minus the longest without, and the longest
  DELETE of one retention chunk, timed inside its commit in the database thread.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import gc
import itertools
import json
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any

import msgspec

from harness import protocol
from harness import store as store_mod
from harness.bench import heading, median, percentile, row
from harness.cli import run as run_mod
from harness.config import Config, DaemonConfig
from harness.daemon import Daemon
from harness.plugin import Plugin, PluginContext
from harness.recorder import Recorder
from harness.store import Store

# Looked up, not imported, so this benchmark also runs against the code before group commit
# (for a before/after in the same way); there the daemon left the limit at SQLite's default.
JOURNAL_SIZE_LIMIT: int = getattr(store_mod, "JOURNAL_SIZE_LIMIT", -1)
WAL_AUTOCHECKPOINT: int = getattr(store_mod, "WAL_AUTOCHECKPOINT", 1000)  # SQLite's default
# Likewise: the daemon froze nothing out of the collector before.
freeze_startup_objects = getattr(run_mod, "freeze_startup_objects", lambda: None)

PAYLOAD = {"kind": "tick", "text": "a short status line of ordinary size", "n": 0}

# -- raw sqlite3 baselines --------------------------------------------------------------------


# The daemon's background WAL sync (harness/wal_flush.py), run beside raw sqlite3 too, so the
# raw baseline's longest commit is the strongest raw setup's; the code before it had none.
try:
    from harness.wal_flush import WalFlusher
except ImportError:
    WalFlusher = None  # type: ignore[assignment,misc]
_raw_flushers: dict[int, Any] = {}


def _raw_close(conn: sqlite3.Connection) -> None:
    conn.close()
    if (flusher := _raw_flushers.pop(id(conn), None)) is not None:
        flusher.stop()


def _raw_connect(path: Path) -> sqlite3.Connection:
    # The daemon's own schema (tables, indexes, CHECKs), made by the store's migrations, so the
    # raw baseline writes exactly the rows and index entries the daemon writes.
    async def make() -> None:
        await (await Store.open(path)).close()

    asyncio.run(make())
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")  # what the daemon's store sets
    conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
    conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT}")  # the daemon's, too
    if WalFlusher is not None:
        flusher = WalFlusher(path, poked=False)
        flusher.start()
        _raw_flushers[id(conn)] = flusher
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
    _raw_close(conn)
    return n / elapsed


def raw_stalls(path: Path, seconds: float) -> tuple[float, float]:
    """The longest and the p99 single one-row transaction (ms) over ``seconds`` of raw sqlite3
    with SQLite's own checkpoints: what the disk alone does to one commit here, the baseline
    of the flood's longest ``broadcast`` call."""
    conn = _raw_connect(path)
    encode = msgspec.json.encode
    times: list[float] = []
    clock = time.perf_counter
    deadline = clock() + seconds
    n = 0
    while clock() < deadline:
        t0 = clock()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO events (seq, ts, name, data) VALUES (NULL, ?, ?, ?)",
            (time.time(), "bench0:tick", encode({**PAYLOAD, "n": n}).decode()),
        )
        conn.execute("COMMIT")
        times.append(clock() - t0)
        n += 1
    _raw_close(conn)
    return max(times) * 1000, percentile(times, 99) * 1000


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
    _raw_close(conn)
    return n / elapsed


async def _raw_one_row_hopped(conn: sqlite3.Connection, seconds: float) -> float:
    encode = msgspec.json.encode
    pool = concurrent.futures.ThreadPoolExecutor(1)
    loop = asyncio.get_running_loop()

    def one(n: int) -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO events (seq, ts, name, data) VALUES (NULL, ?, ?, ?)",
            (time.time(), "bench0:tick", encode({**PAYLOAD, "n": n}).decode()),
        )
        conn.execute("COMMIT")

    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        await loop.run_in_executor(pool, one, n)
        n += 1
    elapsed = time.perf_counter() - start
    pool.shutdown()
    _raw_close(conn)
    return n / elapsed


def raw_one_row_hopped(path: Path, seconds: float) -> float:
    """Rows/s of the same one-row transactions, each awaited from asyncio through one hop to
    a worker thread: the floor any writer that keeps SQLite off the event loop pays."""
    return asyncio.run(_raw_one_row_hopped(_raw_connect(path), seconds))


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
    freeze_startup_objects()  # as `harness run` does once the daemon is up
    try:
        # boot awaits each plugin's start, so every context is here now
        assert len(_contexts) == plugins, sorted(_contexts)
        yield daemon, [_contexts[f"bench{i}"] for i in range(plugins)]
    finally:
        await daemon.stop()
        gc.unfreeze()


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
    """Child process: subscribe to the ticks, print ``[seq, decode-time minus record-time]``
    per event."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    deadline = time.monotonic() + 30
    while True:  # started before the daemon: wait for its socket
        try:
            sock.connect(path)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    sock.sendall(protocol.encode(protocol.Hello(protocol=1, client="bench-persist")))
    sock.sendall(protocol.encode(protocol.Subscribe(id=1, events=["bench0:tick"])))
    decode = protocol.decode_server
    lat: list[tuple[int, float]] = []
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
                lat.append((frame.seq, time.monotonic() - frame.data["t"]))
    print(json.dumps(lat), flush=True)


@contextlib.contextmanager
def _timed_commits() -> Iterator[list[float]]:
    """Times (ms) of each transaction inside the database thread: tells the commit's own tail
    from time spent waiting for a CPU on a shared machine."""
    times: list[float] = []
    original = getattr(store_mod, "_write_batch", None)
    if original is None:  # the code before group commit: nothing to time
        yield times
        return

    def timed(*args: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return original(*args)
        finally:
            times.append((time.perf_counter() - t0) * 1000)

    store_mod._write_batch = timed  # type: ignore[assignment]
    try:
        yield times
    finally:
        store_mod._write_batch = original


@contextlib.contextmanager
def _traced_stages() -> Iterator[dict[int, list[float]]]:
    """For each stamped event, by seq: ``[recorded, taken into a batch, transaction started,
    transaction ended, published]`` (``time.monotonic``): where record -> decoded
    goes, hop by hop. The subscriber's decode time closes the chain."""
    stages: dict[int, list[float]] = {}
    take, publish = Recorder._take, Recorder._publish
    write = getattr(store_mod, "_write_batch", None)
    clock = time.monotonic

    def traced_take(self: Recorder) -> Any:
        batch = take(self)
        now = clock()
        for _, event, _ in batch:
            if isinstance(event.data, dict) and "t" in event.data:
                stages[event.seq] = [event.data["t"], now, 0.0, 0.0, 0.0]
        return batch

    def traced_write(conn: Any, rows: Any, *args: Any) -> Any:
        t0 = clock()
        try:
            return write(conn, rows, *args)  # type: ignore[misc]
        finally:
            t1 = clock()
            for r in rows:
                if (s := stages.get(r.seq)) is not None:
                    s[2], s[3] = t0, t1

    def traced_publish(self: Recorder, batch: Any, *, persisted: bool) -> None:
        now = clock()
        for _, event, _ in batch:
            if (s := stages.get(event.seq)) is not None:
                s[4] = now
        publish(self, batch, persisted=persisted)

    Recorder._take = traced_take  # type: ignore[method-assign]
    Recorder._publish = traced_publish  # type: ignore[method-assign]
    if write is not None:
        store_mod._write_batch = traced_write  # type: ignore[assignment]
    try:
        yield stages
    finally:
        Recorder._take, Recorder._publish = take, publish  # type: ignore[method-assign]
        if write is not None:
            store_mod._write_batch = write


async def _latency_run(
    root: Path, rate: float, count: int, child: subprocess.Popen[str]
) -> list[tuple[int, float]]:
    assert child.stdout is not None
    async with _daemon(root, plugins=1) as (_, (ctx,)):
        async with asyncio.timeout(30):
            ready = await asyncio.to_thread(child.stdout.readline)
        assert ready.strip() == "ready", ready
        start = time.monotonic()
        for i in range(count):
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await ctx.broadcast("tick", {**PAYLOAD, "n": i, "t": time.monotonic()})
        async with asyncio.timeout(30):
            out = await asyncio.to_thread(child.stdout.read)
    return [(seq, x * 1000) for seq, x in json.loads(out.strip().splitlines()[-1])]


def daemon_latency(root: Path, rate: float, seconds: float) -> list[tuple[int, float]]:
    """A subscriber process on the daemon's socket; ``rate`` broadcasts per second, each
    stamped with the time of the call. Returns ``(seq, record -> decoded ms)`` per event."""
    count = int(rate * seconds)
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from harness.bench.persist import _subscriber_main; "
            "_subscriber_main(sys.argv[1], int(sys.argv[2]))",
            str(root / "h.sock"),
            str(count),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        return asyncio.run(_latency_run(root, rate, count, child))
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()


def _report_stages(decoded: list[tuple[int, float]], stages: dict[int, list[float]]) -> None:
    """Record -> decoded hop by hop, each hop's own p99 (the tails of different events): the
    daemon's share, then what follows its socket write. Events whose transaction took over
    1 ms (in practice a checkpoint's fsync, which SQLite runs inside a commit every ~1000 WAL
    pages) are counted: past 1 % of events they alone set the p99."""
    hops: list[list[float]] = [[], [], [], [], []]
    daemon: list[float] = []
    slow_tx = 0
    for seq, ms in decoded:
        s = stages.get(seq)
        if s is None or not all(s):
            continue
        points = [*s, s[0] + ms / 1000]
        for i, (a, b) in enumerate(itertools.pairwise(points)):
            hops[i].append((b - a) * 1000)
        daemon.append((s[4] - s[0]) * 1000)
        slow_tx += s[3] - s[2] > 0.001
    if not daemon:
        return
    row("of which record -> published in the daemon, p50", percentile(daemon, 50), "ms")
    row("of which record -> published in the daemon, p99", percentile(daemon, 99), "ms")
    names = (
        "record -> taken into a batch",
        "taken -> transaction started (a hop, if in the db thread)",
        "the transaction",
        "transaction ended -> published (the hop back, if any)",
        "published -> decoded by the subscriber",
    )
    for name, values in zip(names, hops, strict=True):
        row(f"  {name}, p99", percentile(values, 99), "ms")
    row("  events whose transaction took > 1 ms", 100 * slow_tx / len(daemon), "%")


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
            # The longest DELETE of one retention chunk, timed in the database thread (the
            # code before this figure existed did not time it: NaN).
            "prune_ms": getattr(daemon.recorder, "longest_prune", float("nan")) * 1000,
        }


def _have_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def _on_uvloop(coro: Coroutine[Any, Any, float]) -> float:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


# -- main -------------------------------------------------------------------------------------


def _median_row(
    label: str,
    values: list[float],
    unit: str,
    *,
    baselines: list[float] | None = None,
    target: str = "",
) -> None:
    """The median value; the ratio is the median of per-round ratios, each taken against the
    baseline measured in the same round (the machine's load drifts between rounds)."""
    value = median(values)
    if baselines is None:
        row(label, value, unit, target=target)
        return
    ratio = median([v / b for v, b in zip(values, baselines, strict=True)])
    row(label, value, unit, baseline=value / ratio, target=target)


def _report_throughput(figures: dict[str, list[float]], rounds: int) -> None:
    one = figures["one"]
    heading(
        f"raw sqlite3 (the daemon's schema, WAL, synchronous=NORMAL); median of {rounds} "
        "interleaved rounds"
    )
    _median_row("one row per transaction", one, "rows/s")
    _median_row(
        "executemany, 1000 rows per transaction", figures["batched"], "rows/s", baselines=one
    )
    _median_row(
        "one row per transaction, awaited via a thread",
        figures["hopped"],
        "rows/s",
        baselines=one,
    )

    heading(
        "daemon: events through the plugin API, persisted (ratio to one-row raw); on "
        "asyncio unless the row says uvloop (`harness run` picks uvloop where installed)"
    )
    _median_row(
        "ctx.broadcast, 1 plugin awaiting each",
        figures["b1"],
        "ev/s",
        baselines=one,
        target=">= 0.5x",
    )
    _median_row(
        "ctx.broadcast, 10 plugins at once",
        figures["b10"],
        "ev/s",
        baselines=one,
        target=">= 1.5x",
    )
    _median_row("ctx.set_connection, 1 plugin awaiting each", figures["sc"], "ev/s", baselines=one)
    if "b1u" in figures:
        _median_row(
            "ctx.broadcast, 1 plugin awaiting each, uvloop",
            figures["b1u"],
            "ev/s",
            baselines=one,
            target=">= 0.5x",
        )


def main(quick: bool = False, argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.bench persist")
    parser.add_argument(
        "--flood-seconds",
        type=float,
        default=None,
        help="length of each flood (default 60, quick 10); run twice, without and with retention",
    )
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5)")
    parser.add_argument(
        "--only",
        action="append",
        choices=("throughput", "latency", "flood"),
        help="run only this part (repeatable)",
    )
    args = parser.parse_args(argv or [])
    parts = set(args.only or ("throughput", "latency", "flood"))
    seconds = 0.5 if quick else 1.0
    rounds = args.rounds or (2 if quick else 5)
    flood = args.flood_seconds or (10.0 if quick else 60.0)
    keep = 20_000
    with tempfile.TemporaryDirectory(prefix="hb-") as tmp:
        root = Path(tmp)
        serial = iter(range(1_000_000))

        def fresh() -> Path:
            d = root / str(next(serial))
            d.mkdir()
            return d

        figures: dict[str, list[float]] = {}
        for _ in range(rounds if "throughput" in parts else 0):
            # Interleaved, so a change in the machine's load hits baseline and daemon alike.
            for key, measure in (
                ("one", lambda: raw_one_row(fresh() / "raw.db", seconds)),
                ("batched", lambda: raw_batched(fresh() / "raw.db", seconds)),
                ("hopped", lambda: raw_one_row_hopped(fresh() / "raw.db", seconds)),
                ("b1", lambda: asyncio.run(daemon_broadcast(fresh(), 1, seconds))),
                ("b10", lambda: asyncio.run(daemon_broadcast(fresh(), 10, seconds))),
                ("sc", lambda: asyncio.run(daemon_set_connection(fresh(), seconds))),
                *(
                    [("b1u", lambda: _on_uvloop(daemon_broadcast(fresh(), 1, seconds)))]
                    if _have_uvloop()
                    else []
                ),
            ):
                figures.setdefault(key, []).append(measure())
        if "throughput" in parts:
            _report_throughput(figures, rounds)
        if "latency" in parts:
            heading("record -> subscriber decoded (separate process, real socket), 1k ev/s")
            with _timed_commits() as commits, _traced_stages() as stages:
                decoded = daemon_latency(fresh(), 1000.0, 2.0 if quick else 5.0)
            lat = [ms for _, ms in decoded]
            row("p50", percentile(lat, 50), "ms")
            row("p99", percentile(lat, 99), "ms", target="<= 2 ms")
            row("max", max(lat) if lat else float("nan"), "ms")
            _report_stages(decoded, stages)
            if commits:
                row(
                    "of which the transaction (loop or db thread), p99",
                    percentile(commits, 99),
                    "ms",
                )
                row("of which the transaction (loop or db thread), max", max(commits), "ms")
        if "flood" in parts:
            heading(
                f"flood through 10 plugins for {flood:.0f} s: without retention, then with "
                f"event_retention_max = {keep:,}"
            )
            raw_max, raw_p99 = raw_stalls(fresh() / "raw.db", flood)
            base = asyncio.run(daemon_flood(fresh(), 10**12, flood))
            f = asyncio.run(daemon_flood(fresh(), keep, flood))
            row("flood rate, no retention", base["rate"], "ev/s")
            row("flood rate, with retention", f["rate"], "ev/s", baseline=base["rate"])
            row("events table, largest sampled / max", f["largest"] / keep, "x", target="<= 1.1x")
            row("events table at the end / max", f["final"] / keep, "x")
            row("WAL file, largest sampled, no retention", base["wal_mib"], "MiB")
            row("WAL file, largest sampled, with retention", f["wal_mib"], "MiB")
            row("raw sqlite3 one-row transactions, longest", raw_max, "ms")
            row("raw sqlite3 one-row transactions, p99", raw_p99, "ms")
            row("longest broadcast call, no retention", base["stall_ms"], "ms", baseline=raw_max)
            row("longest broadcast call, with retention", f["stall_ms"], "ms", baseline=raw_max)
            # The target is about what pruning adds. Its own measure is the prune's DELETE,
            # timed inside its commit; the longest call with retention minus the longest
            # without is printed too, but it is a difference of two maxima that the disk's
            # fsyncs set (see the raw row above), so it moves by tens of ms run to run.
            row(
                "  longest prune chunk (its DELETE, timed in its commit)",
                f["prune_ms"],
                "ms",
                target="<= 20 ms",
            )
            row(
                "  longest call with retention minus without",
                f["stall_ms"] - base["stall_ms"],
                "ms",
            )
            row("broadcast call p99, no retention", base["stall_p99_ms"], "ms", baseline=raw_p99)
            row("broadcast call p99, with retention", f["stall_p99_ms"], "ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
