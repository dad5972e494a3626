"""The idle benchmark's same-work baseline (harness/bench/idle_liveness.py) does the work it
is timed for: it reads the daemon's ticks, holds a frozen daemon (SIGSTOP, socket open) for
not responding, and hears it again once resumed. A real ``harness run`` subprocess and the
baseline as the benchmark runs it (its own process, headless)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import HANG_GUARD, SpawnDaemon, subprocess_env, write_config


async def ask(proc: asyncio.subprocess.Process, sig: signal.Signals) -> str:
    assert proc.stdout is not None
    proc.send_signal(sig)
    async with asyncio.timeout(HANG_GUARD):
        return (await proc.stdout.readline()).decode().strip()


async def until_said(
    proc: asyncio.subprocess.Process, sig: signal.Signals, check: Callable[[str], bool]
) -> str:
    """Ask until the answer passes ``check`` (a callable on the line), within the hang guard."""
    async with asyncio.timeout(HANG_GUARD):
        while True:
            line = await ask(proc, sig)
            if check(line):
                return line
            await asyncio.sleep(0.05)


async def test_the_same_work_baseline_ticks_and_notices_a_frozen_daemon(
    spawn_daemon: SpawnDaemon, state_dir: Path
) -> None:
    daemon = await spawn_daemon(write_config(state_dir))
    # Ticks every 0.2 s, so the freeze is noticed 0.2-0.4 s after it.
    env = subprocess_env(state_dir, HARNESS_PING_INTERVAL="0.2")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "harness.bench.idle_liveness",
        str(daemon.socket_path),
        "0.1",  # seconds to settle
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        stdin=asyncio.subprocess.DEVNULL,
        env=env,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(HANG_GUARD):
            assert (await proc.stdout.readline()).strip() == b"ready"
        first = int((await ask(proc, signal.SIGUSR1)).split()[1])
        assert first >= 1  # the ping's own answer at least
        await until_said(proc, signal.SIGUSR1, lambda line: int(line.split()[1]) >= first + 3)
        os.kill(daemon.pid, signal.SIGSTOP)
        try:
            await until_said(proc, signal.SIGUSR2, lambda line: line == "silent 1")
        finally:
            os.kill(daemon.pid, signal.SIGCONT)
        stopped = int((await ask(proc, signal.SIGUSR1)).split()[1])
        await until_said(proc, signal.SIGUSR1, lambda line: int(line.split()[1]) > stopped)
        await until_said(proc, signal.SIGUSR2, lambda line: line == "silent 0")
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
