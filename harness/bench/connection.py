"""``python -m harness.bench connection``: from the local gateway acting (drop, then RESUMED)
to a socket subscriber receiving the matching ``discord:connection`` event, commit included.

The daemon runs as its own process with the real Discord plugin, as in production. Baseline,
same run: a bare discord.py client in this process, timed from the same gateway actions to its
own ``on_disconnect`` / ``on_resumed``; the difference is what harness adds (plugin, SQLite
commit, bus, socket, decode)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import discord
import discord.gateway
import discord.http
import yarl

from harness.bench import heading, percentile, row
from harness.client import Client, DaemonUnavailable
from harness.discord_emulator import LocalDiscordGateway

TOKEN = "bench-token-0123456789abcdefghijklmnop"


class _Probe(discord.Client):
    def __init__(self) -> None:
        super().__init__(intents=discord.Intents.default(), guild_ready_timeout=0.05)
        self.seen: asyncio.Queue[tuple[str, float]] = asyncio.Queue()

    async def on_ready(self) -> None:
        self.seen.put_nowait(("connected", time.monotonic()))

    async def on_resumed(self) -> None:
        self.seen.put_nowait(("connected", time.monotonic()))

    async def on_disconnect(self) -> None:
        self.seen.put_nowait(("disconnected", time.monotonic()))


async def _wait_state(next_state: Any, state: str) -> float:
    while True:
        got, at = await asyncio.wait_for(next_state(), 20)
        if got == state:
            return at


def _resumed(times: int) -> Callable[[LocalDiscordGateway], bool]:
    return lambda gw: gw.resume_count >= times


async def _flaps(
    gw: LocalDiscordGateway, next_state: Any, flaps: int
) -> tuple[list[float], list[float]]:
    """Drop ``flaps`` times; per flap, ms from the drop to "disconnected" and from RESUMED to
    "connected"."""
    drops, resumes = [], []
    for n in range(1, flaps + 1):
        t0 = time.monotonic()
        await gw.drop(4000)
        drops.append((await _wait_state(next_state, "disconnected") - t0) * 1000)
        seen = await _wait_state(next_state, "connected")
        await gw.wait_for(_resumed(n))
        resumes.append((seen - gw.resumed_at) * 1000)
    return drops, resumes


async def _baseline(flaps: int) -> tuple[list[float], list[float]]:
    async with LocalDiscordGateway(tokens={TOKEN}) as gw:
        discord.http.Route.BASE = gw.api_base_url
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gw.gateway_url)
        probe = _Probe()
        task = asyncio.create_task(probe.start(TOKEN))

        async def next_state() -> tuple[str, float]:
            return await probe.seen.get()

        await _wait_state(next_state, "connected")
        try:
            return await _flaps(gw, next_state, flaps)
        finally:
            await probe.close()
            await asyncio.gather(task, return_exceptions=True)


async def _daemon(flaps: int) -> tuple[list[float], list[float]]:
    tmp = Path(tempfile.mkdtemp(prefix="hb-conn-"))
    async with LocalDiscordGateway(tokens={TOKEN}) as gw:
        cfg = tmp / "harness.toml"
        cfg.write_text(
            f'[daemon]\nsocket = "{tmp}/harness.sock"\ndatabase = "{tmp}/state.db"\n'
            f'log_level = "error"\n[plugins.discord]\nbot_token = "{TOKEN}"\n'
            f'api_base_url = "{gw.api_base_url}"\ngateway_url = "{gw.gateway_url}"\n'
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "harness", "run", "--config", str(cfg)
        )
        client: Client | None = None
        try:
            deadline = time.monotonic() + 30
            while client is None:
                try:
                    client = await Client.connect(tmp / "harness.sock", client="bench")
                except DaemonUnavailable:
                    if time.monotonic() > deadline or proc.returncode is not None:
                        raise
                    await asyncio.sleep(0.05)
            await client.subscribe(["discord:connection"], since=0)

            async def next_state() -> tuple[str, float]:
                assert client is not None
                event = await client.next_event()
                return event.data["state"], time.monotonic()

            await _wait_state(next_state, "connected")
            return await _flaps(gw, next_state, flaps)
        finally:
            if client is not None:
                await client.close()
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 20)


def main(quick: bool = False) -> int:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("discord").setLevel(logging.CRITICAL)
    flaps = 20 if quick else 200
    print(
        f"harness connection benchmark: {flaps} flaps (drop 4000 -> resume); {os.cpu_count()} CPUs"
    )
    base_drop, base_resume = asyncio.run(_baseline(flaps))
    drop, resume = asyncio.run(_daemon(flaps))
    for title, base, ours in (
        ("gateway drop -> subscriber sees 'disconnected'", base_drop, drop),
        ("gateway RESUMED -> subscriber sees 'connected'", base_resume, resume),
    ):
        heading(title)
        for q in (50, 99):
            b = percentile(base, q)
            row(f"baseline (bare discord.py) p{q}", b, "ms")
            row(
                f"daemon -> socket subscriber p{q}",
                percentile(ours, q),
                "ms",
                baseline=b,
                target="<= 20 ms" if q == 99 else "",
            )
    return 0


if __name__ == "__main__":
    sys.exit(main("--quick" in sys.argv))
