"""Fleet: the overview watching 20 daemons, and ``harness --host ssh://… status`` against plain
``ssh host harness status``.

Part 1 runs 20 real ``harness run`` subprocesses (built-in plugins only; the Discord plugin has no
token, so it never touches the network) and the fleet screen headless in this process:
  * time until every context is live, against 20 bare clients doing the same requests;
  * a change (``plugins.set_enabled`` on one daemon) → its row rendered, p50/p99, with 20 streams
    open, against the same screen watching only that one daemon;
  * this process's CPU while idle with 20 streams, against 1 stream.
Part 2 needs OpenSSH (the test suite's throwaway sshd on 127.0.0.1) and skips without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from harness.bench import heading, median, percentile, row
from harness.bench.tui import RenderStamp

DAEMONS = 20


def _write_config(base: Path, i: int) -> Path:
    cfg = base / f"d{i}.toml"
    cfg.write_text(
        f'[daemon]\nsocket = "{base}/d{i}.sock"\ndatabase = "{base}/d{i}.db"\n'
        'log_level = "warning"\n'
    )
    return cfg


@contextlib.asynccontextmanager
async def daemons(count: int) -> AsyncIterator[list[Path]]:
    """``count`` real daemons; yields their socket paths once every one answers."""
    from harness.client import Client, DaemonUnavailable

    base = Path(tempfile.mkdtemp(prefix="hb-fleet-"))
    procs: list[asyncio.subprocess.Process] = []
    try:
        for i in range(count):
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "harness",
                    "run",
                    "--config",
                    str(_write_config(base, i)),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                    env={**os.environ, "XDG_STATE_HOME": str(base)},
                )
            )
        sockets = [base / f"d{i}.sock" for i in range(count)]
        deadline = time.monotonic() + 60
        for path in sockets:
            while True:
                try:
                    client = await Client.connect(path, timeout=1.0)
                except DaemonUnavailable:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.05)
                    continue
                await client.close()
                break
        yield sockets
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.terminate()
        for p in procs:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(10):
                    await p.wait()
        shutil.rmtree(base, ignore_errors=True)


def _fleet_app(sockets: list[Path]) -> Any:
    from harness.config import Config, DaemonConfig
    from tui.app import HarnessApp

    base = sockets[0].parent
    config = Config(
        daemon=DaemonConfig(socket=str(base / "none.sock"), database=str(base / "none.db")),
        contexts={f"d{i:02d}": {"socket": str(s)} for i, s in enumerate(sockets)},
    )
    return HarnessApp(config, fleet=True, stream=False)


async def bare_clients_live(sockets: list[Path]) -> float:
    """Baseline: 20 clients connect, subscribe and take the snapshot, concurrently."""
    from harness.client import Client

    async def one(path: Path) -> Client:
        client = await Client.connect(path)
        await client.subscribe(["*:connection", "plugin:status"])
        await client.request("connections.snapshot")
        return client

    started = time.perf_counter()
    clients = await asyncio.gather(*(one(s) for s in sockets))
    took = time.perf_counter() - started
    for c in clients:
        await c.close()
    return took * 1000


async def fleet_run(
    sockets: list[Path], watched: list[Path], changes: int, idle: float
) -> dict[str, Any]:
    """The fleet screen over ``watched``; changes made on ``watched[-1]``'s daemon."""
    from harness.client import Client
    from tui.screens.fleet import FleetScreen

    app = _fleet_app(watched)
    out: dict[str, Any] = {}
    started = time.perf_counter()
    async with app.run_test(size=(80, 24)) as pilot:
        while not isinstance(app.screen, FleetScreen):
            await pilot.pause(0.001)
        mounted = time.perf_counter()
        out["mount_ms"] = (mounted - started) * 1000
        screen = app.screen
        members = [m for n, m in screen.members.items() if n != "default"]
        while not all(m.online for m in members):
            await pilot.pause(0.001)
        out["live_ms"] = (time.perf_counter() - mounted) * 1000
        name = f"d{len(watched) - 1:02d}"
        # Selected, so scrolled into view: Textual does not render a row that is off screen.
        row_widget = screen.rows[name]
        screen.select(row_widget)
        while not screen.region.contains_region(row_widget.region):
            await pilot.pause(0.01)
        stamp = RenderStamp(screen.rows[name])
        control = await Client.connect(watched[-1])
        samples = []
        try:
            for i in range(changes):
                enable = i % 2 == 1
                stamp.arm("not configured" if enable else "disabled")
                t0 = time.perf_counter()
                await control.request("plugins.set_enabled", name="discord", enabled=enable)
                seen = await stamp.wait(lambda: pilot.pause(0.001))
                samples.append((seen - t0) * 1000)
                await asyncio.sleep(0.05)
            # Back to the start state, so every run begins alike.
            await control.request("plugins.set_enabled", name="discord", enabled=True)
        finally:
            await control.close()
        out["changes"] = samples
        await pilot.pause(0.5)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(idle)
        out["cpu"] = (time.process_time() - cpu0) / (time.perf_counter() - wall0) * 100
    return out


# -- part 2: over ssh ------------------------------------------------------------------------


@contextlib.contextmanager
def test_sshd() -> Iterator[Any]:
    root = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(root))
    try:
        from tests.sshd import running_sshd
    except ImportError:
        yield None
        return
    try:
        with running_sshd() as server:
            yield server
    except BaseException as exc:  # pytest.skip() outside pytest: no sshd here
        if type(exc).__name__ != "Skipped":
            raise
        yield None


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall ms and local CPU ms of one run: the command and what it reaped (for ours, its
    ssh), from this process's RUSAGE_CHILDREN around it (sshd and the daemon, our other
    children, are reaped only at the end). The server's side (sshd's session, the remote
    harness) is in the wall time only."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    wall = (time.perf_counter() - t0) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {done.stderr.strip()}")
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return wall, cpu


def ssh_status(
    runs: int,
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]] | None:
    with test_sshd() as sshd:
        if sshd is None:
            return None
        base = Path(tempfile.mkdtemp(prefix="hb-ssh-"))
        cfg = _write_config(base, 0)
        remote_env = {"HARNESS_CONFIG": str(cfg)}
        if pythonpath := os.environ.get("PYTHONPATH"):  # a before/after run: both ends alike
            remote_env["PYTHONPATH"] = pythonpath
        sshd.authorize(env=remote_env)
        harness = str(Path(sys.executable).with_name("harness"))
        daemon = subprocess.Popen(
            [sys.executable, "-m", "harness", "run", "--config", str(cfg)],
            stdin=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            env = {**os.environ, "HARNESS_SSH": sshd.ssh_env}
            deadline = time.monotonic() + 30
            while not (base / "d0.sock").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            ours = [harness, "status", "--host", sshd.url]
            plain = [
                "ssh",
                "-F",
                str(sshd.client_config),
                "-o",
                "BatchMode=yes",
                "-p",
                str(sshd.port),
                f"{sshd.user}@127.0.0.1",
                "harness status",
            ]
            timed(ours, env), timed(plain, env)  # warm caches alike
            a, b = [], []
            for _ in range(runs):  # interleaved: load on the machine hits both alike
                a.append(timed(ours, env))
                b.append(timed(plain, env))
            return a, b
        finally:
            daemon.terminate()
            daemon.wait(10)
            shutil.rmtree(base, ignore_errors=True)


def main(quick: bool = False, ssh_only: bool = False) -> int:
    changes = 10 if quick else 60
    idle = 2.0 if quick else 5.0
    runs = 3 if quick else 15
    if ssh_only:  # `python -m harness.bench.fleet --ssh-only`: part 2 alone
        return ssh_part(runs)

    async def part1() -> tuple[float, dict[str, Any], dict[str, Any]]:
        async with daemons(DAEMONS) as sockets:
            bare = await bare_clients_live(sockets)
            many = await fleet_run(sockets, sockets, changes, idle)
            one = await fleet_run(sockets, sockets[-1:], changes, idle)
            return bare, many, one

    bare, many, one = asyncio.run(part1())
    heading(f"fleet: overview of {DAEMONS} local daemons (real `harness run` subprocesses)")
    row(
        f"all {DAEMONS} contexts live (screen mounted -> every row live)",
        many["live_ms"],
        "ms",
        baseline=bare,
    )
    row("app start -> fleet screen mounted (Textual, before any stream)", many["mount_ms"], "ms")
    row(f"baseline: {DAEMONS} bare clients connect+subscribe+snapshot", bare, "ms")
    heading(f"fleet: set_enabled on one daemon -> its row rendered ({changes} changes)")
    row(
        f"p50, {DAEMONS} streams open",
        median(many["changes"]),
        "ms",
        baseline=median(one["changes"]),
    )
    row(
        f"p99, {DAEMONS} streams open",
        percentile(many["changes"], 99),
        "ms",
        baseline=percentile(one["changes"], 99),
    )
    row("baseline p50, 1 stream", median(one["changes"]), "ms")
    row("baseline p99, 1 stream", percentile(one["changes"], 99), "ms")
    heading(f"fleet: TUI process CPU while idle ({idle:g} s)")
    row(f"{DAEMONS} streams", many["cpu"], "%", baseline=one["cpu"] or None)
    row("baseline: 1 stream", one["cpu"], "%")

    return ssh_part(runs)


def ssh_part(runs: int) -> int:
    print(f"load average {os.getloadavg()[0]:.2f}", flush=True)
    heading(
        f"fleet: `harness --host ssh://… status` vs `ssh host harness status` ({runs} runs each)"
    )
    result = ssh_status(runs)
    if result is None:
        print("  skipped: OpenSSH (sshd) is not installed here", flush=True)
        return 0
    ours_runs, plain_runs = result
    ours, plain = [r[0] for r in ours_runs], [r[0] for r in plain_runs]
    row(
        "harness --host ssh://… status, p50",
        median(ours),
        "ms",
        baseline=median(plain),
        target="target <= 1.2x",
    )
    row(
        "harness --host ssh://… status, p90",
        percentile(ours, 90),
        "ms",
        baseline=percentile(plain, 90),
    )
    row("baseline: ssh host harness status, p50", median(plain), "ms")
    row("baseline: p90", percentile(plain, 90), "ms")
    ours_cpu, plain_cpu = median([r[1] for r in ours_runs]), median([r[1] for r in plain_runs])
    row("local CPU, harness --host (with its ssh), p50", ours_cpu, "ms", baseline=plain_cpu)
    row("local CPU, baseline ssh, p50", plain_cpu, "ms")
    print(f"load average {os.getloadavg()[0]:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main("--quick" in sys.argv, ssh_only="--ssh-only" in sys.argv))
