"""``python -m harness.bench shards``: a sharded bot on the local gateway — the time from the
daemon's start until every shard is connected, against the minimum Discord's concurrency rule
allows (each ``max_concurrency`` bucket may IDENTIFY once per 5 s, so N shards need at least
``(ceil(N / max_concurrency) - 1) x 5 s``), and the daemon's memory per shard.

Both runs hold the same guilds (streamed as GUILD_CREATE on READY): the baseline is one
unsharded connection (the emulator allowing that many guilds on one), the measured run N shards.
Memory per shard = (RSS with N shards - RSS unsharded) / (N - 1): what each further shard costs
beyond the guilds themselves. The daemon runs as its own process with the real plugin and the
real 5 s identify interval."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from typing import Any

from harness.bench import heading, row
from harness.bench.connection import _Daemon
from harness.discord_emulator import LocalDiscordGateway

TOKEN = "bench-token-0123456789abcdefghijklmnop"
IDENTIFY_INTERVAL = 5.0  # Discord's, and the plugin's


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def _run(shards: int | None, guilds: int, concurrency: int) -> tuple[float, float]:
    """Seconds from the daemon's launch to all connected, and the daemon's RSS in MB."""
    async with LocalDiscordGateway(
        tokens={TOKEN},
        guilds=guilds,
        max_guilds_per_shard=guilds,  # the baseline may hold them all on one connection
        recommended_guilds_per_shard=max(1, guilds // (shards or 1)),
        max_concurrency=concurrency,
    ) as gw:
        settings: dict[str, Any] = {"shards": f'"{shards}"' if shards else '"off"'}
        t0 = time.monotonic()
        d = _Daemon(gw, **settings)
        # _Daemon.__aenter__ waits for the first `connected`; sharded, that is the aggregate,
        # which is `connected` only when every shard is.
        async with d:
            took = time.monotonic() - t0
            await asyncio.sleep(1.0)  # let the guild caches settle before reading RSS
            assert d.proc is not None
            rss = _rss_mb(d.proc.pid)
        return took, rss


def main(quick: bool = False) -> int:
    logging.basicConfig(level=logging.WARNING)
    guilds = 1000 if quick else 5000
    concurrency = 4
    counts = [4] if quick else [16, 64]
    print(
        f"harness shards benchmark: {guilds} guilds in all, max_concurrency {concurrency}, "
        f"identify interval {IDENTIFY_INTERVAL:g} s; {os.cpu_count()} CPUs"
    )
    base_t, base_rss = asyncio.run(_run(None, guilds, concurrency))
    heading(f"unsharded baseline ({guilds} guilds on one connection)")
    row("launch -> connected", base_t, "s")
    row("daemon RSS", base_rss, "MB")
    for n in counts:
        took, rss = asyncio.run(_run(n, guilds, concurrency))
        minimum = (math.ceil(n / concurrency) - 1) * IDENTIFY_INTERVAL
        heading(f"{n} shards x {guilds // n} guilds")
        row("minimum Discord's concurrency rule allows", minimum, "s")
        row("launch -> every shard connected", took, "s", baseline=minimum or None)
        row(
            "over the minimum",
            took - minimum,
            "s",
            baseline=base_t,
            target="(baseline: unsharded launch)",
        )
        row("daemon RSS", rss, "MB", baseline=base_rss)
        row("memory per further shard", (rss - base_rss) / (n - 1), "MB")
    return 0
