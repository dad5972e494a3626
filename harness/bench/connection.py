"""``python -m harness.bench connection``: from the Discord emulator acting (a fault, then the
recovery) to a socket subscriber receiving the matching ``discord:connection`` (or
``discord:health``) event, commit included.

Parts: (1) drop 4000 -> "disconnected" and RESUMED -> "connected", against a bare discord.py
baseline; (2) per fault class, fault -> first state change; (3) ACKs paused -> the overdue
warning; (4) outage cleared -> first attempt, against max_backoff, for outages of 5, 30 and
120 s with time compressed 10x (max_backoff 6 s stands for 60 s).
Set HARNESS_BENCH_DAEMON_PATH to run the daemon from another checkout (the code before a
change) while the emulator and the measuring stay the same.

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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import discord
import discord.gateway
import discord.http
import yarl

from harness.bench import heading, median, percentile, row
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
        async with asyncio.timeout(20):
            got, at = await next_state()
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


_OTHER_CHECKOUT = """
import os, runpy, sys
sys.meta_path[:] = [
    f for f in sys.meta_path
    if "__editable__" not in (getattr(f, "__module__", "") or "")
    and "__editable__" not in getattr(f, "__name__", "")
]
sys.path.insert(0, os.environ["HARNESS_BENCH_DAEMON_PATH"])
sys.argv[0] = "harness"
runpy.run_module("harness", run_name="__main__", alter_sys=True)
"""


class _Daemon:
    """A daemon process with the Discord plugin on ``gw``, and a subscriber to its events."""

    def __init__(self, gw: LocalDiscordGateway, **settings: Any) -> None:
        self.gw = gw
        self.settings = settings
        self.tmp = Path(tempfile.mkdtemp(prefix="hb-conn-"))
        self.proc: asyncio.subprocess.Process | None = None
        self.client: Client | None = None

    async def __aenter__(self) -> _Daemon:
        extra = "".join(f"{k} = {v}\n" for k, v in self.settings.items())
        cfg = self.tmp / "harness.toml"
        cfg.write_text(
            f'[daemon]\nsocket = "{self.tmp}/harness.sock"\ndatabase = "{self.tmp}/state.db"\n'
            f'log_level = "{os.environ.get("HARNESS_BENCH_LOG_LEVEL", "error")}"\n'
            f'[plugins.discord]\nbot_token = "{TOKEN}"\n'
            f'api_base_url = "{self.gw.api_base_url}"\ngateway_url = "{self.gw.gateway_url}"\n'
            + extra
        )
        launch = ["-m", "harness"]
        if os.environ.get("HARNESS_BENCH_DAEMON_PATH"):
            # The other checkout must win over this one's editable install, whose import
            # hook sits on sys.meta_path ahead of any PYTHONPATH entry.
            launch = ["-c", _OTHER_CHECKOUT]
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, *launch, "run", "--config", str(cfg)
        )
        deadline = time.monotonic() + 30
        while self.client is None:
            try:
                self.client = await Client.connect(self.tmp / "harness.sock", client="bench")
            except DaemonUnavailable:
                if time.monotonic() > deadline or self.proc.returncode is not None:
                    raise
                await asyncio.sleep(0.05)
        await self.client.subscribe(["discord:connection", "discord:health"], since=0)
        await _wait_state(self.next_state, "connected")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.client is not None:
            await self.client.close()
        if self.proc is not None:
            self.proc.terminate()
            async with asyncio.timeout(20):
                await self.proc.wait()

    async def next_event(self) -> tuple[str, dict[str, Any], float]:
        assert self.client is not None
        event = await self.client.next_event()
        return event.event, event.data, time.monotonic()

    async def next_state(self) -> tuple[str, float]:
        while True:
            name, data, at = await self.next_event()
            if name == "discord:connection":
                return data["state"], at


async def _daemon(flaps: int) -> tuple[list[float], list[float]]:
    async with LocalDiscordGateway(tokens={TOKEN}) as gw, _Daemon(gw) as d:
        return await _flaps(gw, d.next_state, flaps)


# -- per fault class ------------------------------------------------------------------------------


def _fault_classes(gw: LocalDiscordGateway) -> dict[str, Callable[[], Awaitable[None]]]:
    async def invalid(resumable: bool) -> None:
        await gw.send_invalid_session(resumable)

    return {
        "close 4000 (resume)": lambda: gw.drop(4000),
        "close 4009 (new session)": lambda: gw.drop(4009),
        "TCP abort": gw.abort,
        "op 7 reconnect": gw.send_reconnect,
        "op 9 resumable": lambda: invalid(True),
        "op 9 not resumable": lambda: invalid(False),
    }


async def _faults(n: int) -> dict[str, list[float]]:
    """Per fault class: ms from the emulator acting to the subscriber seeing the state leave
    `connected` (any state), then wait for `connected` again before the next one."""
    out: dict[str, list[float]] = {}
    async with LocalDiscordGateway(tokens={TOKEN}) as gw, _Daemon(gw) as d:
        for name, fault in _fault_classes(gw).items():
            samples = out.setdefault(name, [])
            for _ in range(n):
                t0 = time.monotonic()
                async with asyncio.timeout(30):
                    await fault()
                while True:
                    async with asyncio.timeout(30):
                        state, at = await d.next_state()
                    if state != "connected":
                        break
                samples.append((at - t0) * 1000)
                await _wait_state(d.next_state, "connected")
    return out


async def _ack_overdue(n: int, interval_ms: int) -> list[float | None]:
    """ACKs paused -> a discord:health event with ack_overdue_since: seconds, or None if no
    warning came within two intervals + 10 s (the code before this change has none)."""
    out: list[float | None] = []
    async with LocalDiscordGateway(tokens={TOKEN}, heartbeat_interval=interval_ms) as gw:
        async with _Daemon(gw) as d:
            for _ in range(n):
                await gw.pause_heartbeat_acks(True)
                t0 = time.monotonic()
                limit = 2 * interval_ms / 1000 + 10
                got: float | None = None
                try:
                    async with asyncio.timeout(limit):
                        while got is None:
                            name, data, at = await d.next_event()
                            if name == "discord:health" and data.get("ack_overdue_since"):
                                got = at - t0
                except TimeoutError:
                    pass
                out.append(got)
                await gw.pause_heartbeat_acks(False)
                async with asyncio.timeout(60):
                    await _settle(d)
    return out


async def _settle(d: _Daemon) -> None:
    """Until the connection is up and a heartbeat has been acknowledged since."""
    beats = d.gw.heartbeat_count

    def settled(g: LocalDiscordGateway) -> bool:
        return g.heartbeat_count >= beats + 2 and g.active_sessions == 1

    await d.gw.wait_for(settled, timeout=60)


async def _outages(outages: list[float], max_backoff: int) -> list[tuple[float, float, float]]:
    """For each outage (port closed, sessions dropped): (outage s, ms from the port reopening
    to the first gateway connection attempt, ms to `connected`)."""
    out = []
    async with LocalDiscordGateway(tokens={TOKEN}) as gw, _Daemon(gw, max_backoff=max_backoff) as d:
        for seconds in outages:
            await gw.outage(seconds)
            await gw.wait_for(lambda g: not g.refusing, timeout=seconds + 30)
            cleared = time.monotonic()
            before = gw.connection_count

            def attempted(g: LocalDiscordGateway, before: int = before) -> bool:
                return g.connection_count > before

            # Bounded: the code before this change could wait up to 1024 s between attempts.
            try:
                await gw.wait_for(attempted, timeout=300)
                first = time.monotonic()
                async with asyncio.timeout(300):
                    _, up = await _until_connected(d)
            except TimeoutError:
                out.append((seconds, float("nan"), float("nan")))
                continue
            out.append((seconds, (first - cleared) * 1000, (up - cleared) * 1000))
    return out


async def _until_connected(d: _Daemon) -> tuple[str, float]:
    while True:
        state, at = await d.next_state()
        if state == "connected":
            return state, at


def main(quick: bool = False) -> int:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("discord").setLevel(logging.CRITICAL)
    flaps = 20 if quick else 200
    per_fault = 5 if quick else 30
    daemon_from = os.environ.get("HARNESS_BENCH_DAEMON_PATH") or "this checkout"
    print(
        f"harness connection benchmark: {flaps} flaps (drop 4000 -> resume), {per_fault} per "
        f"fault class; daemon from {daemon_from}; {os.cpu_count()} CPUs"
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

    heading("fault -> subscriber sees the state leave 'connected' (baseline: drop 4000, bare p50)")
    faults = asyncio.run(_faults(per_fault))
    b = percentile(base_drop, 50)
    for name, samples in faults.items():
        for q in (50, 99):
            row(
                f"{name} p{q}",
                percentile(samples, q),
                "ms",
                baseline=b,
                target="<= 5 ms" if q == 99 else "",
            )

    interval_ms = 4000
    heading(f"ACKs paused -> 'overdue' warning reaches the subscriber (heartbeat {interval_ms} ms)")
    acks = asyncio.run(_ack_overdue(2 if quick else 4, interval_ms))
    shown = [a for a in acks if a is not None]
    if shown:
        row("pause -> warning, worst", max(shown), "s", target="<= 10 s")
        row("pause -> warning, median", median(shown), "s")
    missing = len(acks) - len(shown)
    if missing:
        print(
            f"  no warning within {2 * interval_ms / 1000 + 10:g} s "
            f"in {missing} of {len(acks)} runs"
        )

    max_backoff = 6
    heading(
        f"outage cleared -> first attempt / connected (time /10: max_backoff {max_backoff} s "
        "stands for 60 s; outages 0.5/3/12 s stand for 5/30/120 s)"
    )
    for seconds, first, up in asyncio.run(_outages([0.5, 3.0, 12.0], max_backoff)):
        row(
            f"{seconds * 10:g} s outage: cleared -> first attempt",
            first / 1000,
            "s",
            target=f"<= {max_backoff} s",
        )
        row(f"{seconds * 10:g} s outage: cleared -> connected", up / 1000, "s")
    return 0


if __name__ == "__main__":
    sys.exit(main("--quick" in sys.argv))
