"""``python -m harness.bench alerts``: from a plugin's connection change to the notification
arriving at an HTTP receiver (rule ``for = 0``), and draining 1,000 queued notifications.

An in-process daemon with a plugin the benchmark drives, apprise posting (``json://``) to an
aiohttp receiver on 127.0.0.1. Baseline, same run: apprise alone, posting the same kind of
notification to the same receiver from a worker thread; the difference is what harness adds
(event commit, bus, rule engine, outbox commit, delivery worker, the sent mark).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import ClassVar

import msgspec
from aiohttp import web

from harness.alerts import outbox
from harness.alerts.rules import AlertsConfig
from harness.bench import heading, percentile, row
from harness.config import Config, DaemonConfig
from harness.daemon import Daemon
from harness.plugin import Plugin, PluginContext


class _Driven(Plugin):
    """A plugin whose connection the benchmark sets."""

    name = "bench"
    ctx: ClassVar[PluginContext | None] = None

    async def start(self, ctx: PluginContext) -> None:
        type(self).ctx = ctx


class _Receiver:
    def __init__(self) -> None:
        self.count = 0
        self.arrived: asyncio.Queue[float] = asyncio.Queue()
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.delay = 0.0  # seconds before answering: a target across a network

    async def _post(self, request: web.Request) -> web.Response:
        await request.read()
        if self.delay:
            await asyncio.sleep(self.delay)
        self.count += 1
        self.arrived.put_nowait(time.perf_counter())
        return web.Response(text="{}")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._post)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


async def _baseline(receiver: _Receiver, n: int) -> list[float]:
    import apprise

    sender = apprise.Apprise()
    sender.add(f"json://127.0.0.1:{receiver.port}/baseline")
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        await asyncio.to_thread(sender.notify, body=f"baseline {i}", title="baseline")
        async with asyncio.timeout(10):
            arrived = await receiver.arrived.get()
        samples.append((arrived - t0) * 1000)
    return samples


async def _drain(daemon: Daemon, receiver: _Receiver, notes: list[tuple[str, str, str]]) -> float:
    """Seconds to send ``notes`` (dedup key, rule, body), queued at once in the outbox."""
    assert daemon.alerts is not None and daemon.store is not None
    delivery = daemon.alerts.delivery
    start_sent = delivery.sent
    notices = [
        outbox.Notice(
            dedup_key=f"{key}@bench",
            target="bench",
            kind="fired",
            rule=rule,
            plugin="bench",
            title="harness: drain",
            body=body,
        )
        for key, rule, body in notes
    ]
    t0 = time.perf_counter()
    await outbox.enqueue(daemon.store, notices)
    delivery.wake({"bench"})
    # Polling a counter the delivery worker bumps; 10 ms is far below the drain time.
    while delivery.sent - start_sent < len(notices):  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - t0
    while not receiver.arrived.empty():
        receiver.arrived.get_nowait()
    return elapsed


async def _run(n: int, drain: int) -> None:
    receiver = _Receiver()
    await receiver.start()
    tmp = Path(tempfile.mkdtemp(prefix="harness-bench-alerts-"))
    alerts = msgspec.convert(
        {
            "targets": {"bench": f"json://127.0.0.1:{receiver.port}/hook"},
            "rules": {"down": {"plugins": ["bench"], "for": 0, "flap_changes": 0}},
        },
        AlertsConfig,
    )
    cfg = Config(
        daemon=DaemonConfig(socket=str(tmp / "h.sock"), database=str(tmp / "state.db")),
        alerts=alerts,
    )
    daemon = Daemon(cfg, {"bench": _Driven})
    await daemon.start()
    try:
        ctx = _Driven.ctx
        assert ctx is not None and daemon.alerts is not None
        await ctx.set_connection("connected")
        base = await _baseline(receiver, n)
        fired, resolved = [], []
        for _ in range(n):
            t0 = time.perf_counter()
            await ctx.set_connection("disconnected", reason="bench")
            async with asyncio.timeout(10):
                arrived = await receiver.arrived.get()
            fired.append((arrived - t0) * 1000)
            t0 = time.perf_counter()
            await ctx.set_connection("connected")
            async with asyncio.timeout(10):
                arrived = await receiver.arrived.get()
            resolved.append((arrived - t0) * 1000)

        heading(f"state change -> notification received ({n} outages, rule for = 0)")
        for q in (50, 99):
            b = percentile(base, q)
            row(f"baseline (apprise alone, same receiver) p{q}", b, "ms")
            row(
                f"disconnected -> 'fired' received p{q}",
                percentile(fired, q),
                "ms",
                baseline=b,
                target="<= 100 ms" if q == 99 else "",
            )
            row(
                f"connected -> 'resolved' received p{q}",
                percentile(resolved, q),
                "ms",
                baseline=b,
                target="<= 100 ms" if q == 99 else "",
            )

        heading(f"outbox drain: {drain} notifications queued at once, twice")
        rss = [rss_mib()]
        for round_ in range(2):
            elapsed = await _drain(
                daemon,
                receiver,
                [(f"drain/{round_}/{i}", "drain", f"drain {round_} {i}") for i in range(drain)],
            )
            rss.append(rss_mib())
            row(f"round {round_ + 1}: drained in", elapsed, "s")
            row(f"round {round_ + 1}: throughput", drain / elapsed, "msg/s")
        row("RSS before the first round", rss[0], "MiB")
        row("RSS after round 1", rss[1], "MiB")
        row("RSS after round 2", rss[2], "MiB", target="flat: round 2 ~ round 1")

        # The rounds above are one lane (one rule, one plugin): sent in order, one at a time.
        # A backlog after a target outage spans many rules and plugins: lanes go side by side,
        # which pays most where each send waits on a network (here: an answer after 20 ms).
        lanes = 50
        for delay in (0.0, 0.02):
            receiver.delay = delay
            answer = f"answer after {delay * 1000:.0f} ms" if delay else "answer at once"
            heading(f"outbox drain: {drain} notifications over {lanes} lanes, {answer}")
            elapsed = await _drain(
                daemon,
                receiver,
                [(f"lanes/{delay}/{i}", f"drain{i % lanes}", f"lanes {i}") for i in range(drain)],
            )
            row(f"{lanes} lanes: drained in", elapsed, "s")
            row(f"{lanes} lanes: throughput", drain / elapsed, "msg/s")
    finally:
        await daemon.stop()
        await receiver.stop()


def main(quick: bool = False) -> int:
    logging.basicConfig(level=logging.ERROR)
    n, drain = (30, 200) if quick else (200, 1000)
    print(f"harness alerts benchmark: {os.cpu_count()} CPUs, apprise json:// to 127.0.0.1")
    asyncio.run(_run(n, drain))
    return 0


if __name__ == "__main__":
    sys.exit(main("--quick" in sys.argv))
