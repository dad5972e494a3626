"""The one-shot commands stay cheap: ``--help`` and requests import no asyncio, Textual or
discord.py, and ``events --since`` prints each replayed frame as it arrives (no buffering)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import msgspec
import pytest

from harness import protocol
from harness.config import Config
from tests.conftest import REPO_ROOT, SpawnDaemon, StartDaemon, subprocess_env, write_config
from tests.sample_plugins import Echo

HEAVY = ("asyncio", "textual", "discord", "aiosqlite")

# Runs the CLI in a child and reports on stderr which heavy modules it ended up importing.
PROBE = """
import sys
from harness.cli import main
try:
    rc = main(sys.argv[1:])
except SystemExit as exc:
    rc = exc.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(__HEAVY__))
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
sys.exit(rc)
""".replace("__HEAVY__", repr(HEAVY))


async def probe(*args: str, env: dict[str, str]) -> tuple[int, str, list[str]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PROBE,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
        env=env,
    )
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    heavy = [line for line in err.decode().splitlines() if line.startswith("HEAVY=")]
    assert heavy, err.decode()
    return proc.returncode or 0, out.decode(), [m for m in heavy[-1][6:].split(",") if m]


async def test_help_imports_nothing_heavy(state_dir: Path) -> None:
    rc, out, heavy = await probe("--help", env=subprocess_env(state_dir))
    assert rc == 0 and "usage: harness" in out
    assert heavy == []
    rc, out, heavy = await probe("plugins", "set", "--help", env=subprocess_env(state_dir))
    assert rc == 0 and "KEY=VALUE" in out and heavy == []


async def test_one_shot_requests_import_nothing_heavy(
    start_daemon: StartDaemon, config: Config, state_dir: Path
) -> None:
    daemon = await start_daemon(plugins={"echo": Echo})
    assert daemon.recorder is not None
    await daemon.recorder.record("x:tick", {"i": 1})
    env = subprocess_env(state_dir)
    sock = str(config.socket_path)
    rc, out, heavy = await probe("status", "--json", "--socket", sock, env=env)
    assert rc == 0 and msgspec.json.decode(out)["pid"] > 0
    assert heavy == []
    rc, out, heavy = await probe("plugins", "show", "echo", "--socket", sock, env=env)
    assert rc == 0 and out.startswith("echo 1.2.3") and heavy == []
    rc, out, heavy = await probe(
        "events", "--since", "0", "--json", "x:*", "--socket", sock, env=env
    )
    assert rc == 0 and heavy == []
    assert [msgspec.json.decode(line)["data"] for line in out.splitlines()] == [{"i": 1}]
    # No daemon: the same clear error and exit code as before.
    rc, _, heavy = await probe("status", "--socket", str(state_dir / "none.sock"), env=env)
    assert rc == 3 and heavy == []


async def test_events_since_prints_each_frame_before_the_replay_ends(
    state_dir: Path, tmp_path: Path
) -> None:
    """A server that holds the end of its replay until the CLI has printed the first event:
    the CLI must not wait for the whole replay (it would hold all of it in memory)."""
    printed = asyncio.Event()
    subscribed = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()  # hello
        writer.write(protocol.encode(protocol.Welcome(protocol=1, server="t", seq=2, pid=1)))
        sub = msgspec.json.decode(await reader.readline())
        assert sub["type"] == "subscribe" and sub["since"] == 0
        writer.write(protocol.encode(protocol.Ack(id=sub["id"], seq=2)))
        writer.write(protocol.encode(protocol.Event(seq=1, ts=1.0, event="a:b", data={})))
        subscribed.set()
        await printed.wait()
        writer.write(protocol.encode(protocol.Event(seq=2, ts=2.0, event="a:b", data={})))
        writer.write(protocol.encode(protocol.Replayed(id=sub["id"], count=2)))
        await writer.drain()
        writer.close()

    path = tmp_path / "s.sock"
    server = await asyncio.start_unix_server(serve, path)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "harness",
        "events",
        "--since",
        "0",
        "--json",
        "--socket",
        str(path),
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
        env={k: v for k, v in subprocess_env(state_dir).items() if k != "PYTHONUNBUFFERED"},
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            first = await proc.stdout.readline()
            assert msgspec.json.decode(first)["seq"] == 1
            printed.set()
            second = await proc.stdout.readline()
            assert msgspec.json.decode(second)["seq"] == 2
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        server.close()


async def test_the_daemon_runs_on_uvloop(spawn_daemon: SpawnDaemon, state_dir: Path) -> None:
    """``harness run --loop uvloop`` (the ``fast`` extra): requests, replay and live events."""
    pytest.importorskip("uvloop")
    daemon = await spawn_daemon(write_config(state_dir), args=("--loop", "uvloop"))
    env = subprocess_env(state_dir)
    sock = str(daemon.socket_path)
    rc, out, _ = await probe("status", "--json", "--socket", sock, env=env)
    assert rc == 0 and msgspec.json.decode(out)["pid"] == daemon.pid
    rc, out, _ = await probe("events", "--since", "0", "--json", "--socket", sock, env=env)
    assert rc == 0
    names = {msgspec.json.decode(line)["event"] for line in out.splitlines()}
    assert "discord:connection" in names  # the built-in plugin reported "not configured"
