"""``python -m harness.bench shards``: a sharded bot on the local gateway, 5,000 guilds per
shard (16 shards: 80,000 GUILD_CREATEs; 64 shards: 320,000) — the time from the daemon's start
until every shard is connected (its guilds all received), against the minimum Discord's
concurrency rule allows (each ``max_concurrency`` bucket may IDENTIFY once per 5 s, so N shards
need at least ``(ceil(N / max_concurrency) - 1) x 5 s``), and the daemon's memory per shard.

The local gateway enforces that rule as Discord does (an IDENTIFY too soon on its rate-limit key
gets op 9), so the run also shows that the plugin's bucketed start never trips it.

Baselines in the same run: a daemon whose bot is in no guild (the daemon alone), and one
unsharded connection holding one shard's guilds. Memory per shard = (RSS with N shards - RSS of
the daemon alone) / N: one session and its 5,000 guilds in discord.py's cache. The daemon runs
as its own process with the real plugin and the real 5 s identify interval."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any

from harness.bench import heading, row
from harness.bench.connection import _Daemon
from harness.discord_emulator import LocalDiscordGateway

TOKEN = "bench-token-0123456789abcdefghijklmnop"
IDENTIFY_INTERVAL = 5.0  # Discord's, the plugin's and the local gateway's window


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class _ShardedDaemon(_Daemon):
    """The connection benchmark's daemon, waiting as long as a sharded start takes: minutes of
    buckets, with quiet stretches longer than that benchmark's 20 s per state change (a shard
    refused with op 9 queues again behind its bucket)."""

    async def next_state(self) -> tuple[str, float]:
        try:
            async with asyncio.timeout(10):
                return await super().next_state()
        except TimeoutError:
            return "(no change for 10 s)", time.monotonic()


@dataclass
class _Result:
    took: float  # s from the daemon's launch to every shard connected
    rss: float  # MB
    refused: int  # IDENTIFYs the gateway answered with op 9
    guilds: int
    closest: float | None  # the shortest gap between IDENTIFYs on one key, as read
    last_identify: float  # s from launch to the last IDENTIFY the gateway accepted
    daemon_cpu: float  # s of CPU the daemon used until every shard was connected
    gateway_cpu: float  # s of CPU this process (the local gateway) used meanwhile


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _closest(gw: LocalDiscordGateway) -> float | None:
    by_key: dict[int, list[float]] = {}
    for at, shard in gw.identify_times:
        by_key.setdefault((shard or 0) % gw.max_concurrency, []).append(at)
    gaps = [b - a for times in by_key.values() for a, b in itertools.pairwise(sorted(times))]
    return min(gaps) if gaps else None


async def _run(shards: int | None, per_shard: int, concurrency: int) -> _Result:
    """Launch a daemon on a gateway holding ``per_shard`` guilds per shard; time it until the
    connection (the aggregate of every shard) is ``connected``; read its RSS."""
    total = per_shard * (shards or 1)
    async with LocalDiscordGateway(
        tokens={TOKEN},
        guilds=total,
        max_guilds_per_shard=max(1, per_shard),
        recommended_guilds_per_shard=max(1, per_shard),
        max_concurrency=concurrency,
        identify_window=IDENTIFY_INTERVAL,
    ) as gw:
        settings: dict[str, Any] = {"shards": f'"{shards}"' if shards else '"off"'}
        t0 = time.monotonic()
        cpu0 = time.process_time()
        # _Daemon.__aenter__ waits for the first `connected`; sharded, that is the aggregate,
        # which is `connected` only when every shard is, each after its guilds streamed in.
        async with asyncio.timeout(900), _ShardedDaemon(gw, **settings) as d:
            took = time.monotonic() - t0
            gateway_cpu = time.process_time() - cpu0
            assert d.proc is not None
            daemon_cpu = _cpu_s(d.proc.pid)
            await asyncio.sleep(1.0)  # let the daemon settle before reading RSS
            rss = _rss_mb(d.proc.pid)
        last = max((at for at, _ in gw.identify_times), default=t0) - t0
        return _Result(
            took,
            rss,
            len(gw.identify_rate_limited),
            total,
            _closest(gw),
            last,
            daemon_cpu,
            gateway_cpu,
        )


def main(quick: bool = False) -> int:
    logging.basicConfig(level=logging.WARNING)
    per_shard = 500 if quick else 5000
    concurrency = 4
    counts = [8] if quick else [16, 64]  # quick: two buckets, one 5 s wait
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"harness shards benchmark: {per_shard} guilds per shard, max_concurrency "
        f"{concurrency}, identify interval {IDENTIFY_INTERVAL:g} s (enforced by the local "
        f"gateway); {os.cpu_count()} CPUs, load average {load}"
    )
    empty = asyncio.run(_run(None, 0, concurrency))
    heading("baseline: the daemon alone (a bot in no guild, unsharded)")
    row("launch -> connected", empty.took, "s")
    row("daemon RSS", empty.rss, "MB")
    one = asyncio.run(_run(None, per_shard, concurrency))
    heading(f"baseline: one unsharded connection with {per_shard} guilds")
    row("launch -> connected", one.took, "s")
    row("daemon RSS", one.rss, "MB")
    row("memory for one session and its guilds", one.rss - empty.rss, "MB")
    for n in counts:
        r = asyncio.run(_run(n, per_shard, concurrency))
        minimum = (math.ceil(n / concurrency) - 1) * IDENTIFY_INTERVAL
        heading(f"{n} shards x {per_shard} guilds ({r.guilds:,} GUILD_CREATEs)")
        row("minimum Discord's concurrency rule allows", minimum, "s")
        row("launch -> last IDENTIFY read by the gateway", r.last_identify, "s")
        row("launch -> every shard connected", r.took, "s", baseline=minimum or None)
        row(
            "over the minimum",
            r.took - minimum,
            "s",
            baseline=one.took,
            target="(baseline: one unsharded session)",
        )
        row("CPU until then: the daemon", r.daemon_cpu, "s")
        row("CPU until then: the local gateway (this process)", r.gateway_cpu, "s")
        row("IDENTIFYs refused by the gateway (op 9)", r.refused, "", target="(target 0)")
        if r.closest is not None:
            row(
                "closest IDENTIFYs on one key (gateway's clock)",
                r.closest,
                "s",
                target=f"(rule: >= {IDENTIFY_INTERVAL:g} s)",
            )
        row("daemon RSS", r.rss, "MB", baseline=one.rss)
        row(
            "memory per shard (RSS - daemon alone) / N",
            (r.rss - empty.rss) / n,
            "MB",
            baseline=one.rss - empty.rss,
        )
        row("memory per guild", (r.rss - empty.rss) * 1024 / r.guilds, "KB")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\nload average at the end: {load}")
    return 0
