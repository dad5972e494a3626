"""The one-shot commands stay cheap: ``--help`` and requests import no asyncio, Textual or
discord.py (nor msgspec, rich, tomllib or platformdirs where they do not need them), and
``events --since`` prints each replayed frame as it arrives (no buffering)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import msgspec
import pytest

from harness import protocol
from harness.config import Config, DaemonConfig
from tests.conftest import (
    HANG_GUARD,
    REPO_ROOT,
    SpawnDaemon,
    StartDaemon,
    subprocess_env,
    write_config,
)
from tests.sample_plugins import Echo

HEAVY = ("asyncio", "textual", "discord", "aiosqlite")
# What the light paths (--help, status --json, --host) must not import either: each costs a
# one-shot command more than its whole request (docs/benchmarks.md, "cli").
LIGHT = (*HEAVY, "msgspec", "rich", "tomllib", "platformdirs", "harness.config", "dataclasses")
# What reading a config file as `harness run` does brings in (harness/client_config.py).
FULL_CONFIG = ("harness.alerts", "harness.settings", "harness.orchestrator")
WATCHED = (
    *LIGHT,
    *FULL_CONFIG,
    "argparse",  # the common one-shot lines are parsed without it (harness/cli/quick_parse.py)
    "harness.cli.run",
    "harness.cli.plugins",
    "harness.cli.events",
)

# Runs the CLI in a child and reports on stderr which heavy modules it ended up importing.
PROBE = """
import sys
from harness.cli import main
try:
    rc = main(sys.argv[1:])
except SystemExit as exc:
    rc = exc.code
loaded = set(sys.modules) | {m.split(".")[0] for m in sys.modules}
heavy = sorted(loaded & set(__HEAVY__))
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
sys.exit(rc)
""".replace("__HEAVY__", repr(WATCHED))


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
    async with asyncio.timeout(HANG_GUARD):
        out, err = await proc.communicate()
    heavy = [line for line in err.decode().splitlines() if line.startswith("HEAVY=")]
    assert heavy, err.decode()
    return proc.returncode or 0, out.decode(), [m for m in heavy[-1][6:].split(",") if m]


def heavy_only(modules: list[str]) -> list[str]:
    return [m for m in modules if m in HEAVY]


async def test_help_imports_nothing_heavy(state_dir: Path) -> None:
    rc, out, loaded = await probe("--help", env=subprocess_env(state_dir))
    assert rc == 0 and "usage: harness" in out
    # Not even a command module: the parser is built from harness/cli/commands.py.
    assert loaded == ["argparse"]
    rc, out, loaded = await probe("plugins", "set", "--help", env=subprocess_env(state_dir))
    assert rc == 0 and "KEY=VALUE" in out and loaded == ["argparse"]
    rc, out, loaded = await probe("events", "--help", env=subprocess_env(state_dir))
    assert rc == 0 and "--since WHEN" in out and loaded == ["argparse"]


async def test_one_shot_requests_import_nothing_heavy(
    start_daemon: StartDaemon, config: Config, state_dir: Path
) -> None:
    daemon = await start_daemon(plugins={"echo": Echo})
    assert daemon.recorder is not None
    await daemon.recorder.record("x:tick", {"i": 1})
    env = subprocess_env(state_dir)
    sock = str(config.socket_path)
    rc, out, loaded = await probe("status", "--json", "--socket", sock, env=env)
    assert rc == 0 and msgspec.json.decode(out)["pid"] > 0
    assert loaded == []  # not even msgspec, rich, the config or another command's module
    rc, out, loaded = await probe("plugins", "show", "echo", "--socket", sock, env=env)
    assert rc == 0 and out.startswith("echo 1.2.3") and heavy_only(loaded) == []
    rc, out, loaded = await probe(
        "events", "--since", "0", "--json", "x:*", "--socket", sock, env=env
    )
    # Event lines are passed through undecoded: no msgspec either.
    assert rc == 0 and heavy_only(loaded) == [] and "msgspec" not in loaded
    assert not {"argparse", "dataclasses", "harness.config"} & set(loaded), loaded
    assert [msgspec.json.decode(line)["data"] for line in out.splitlines()] == [{"i": 1}]
    # The table in a pipe is laid out without rich (same lines: see the test below).
    rc, out, loaded = await probe("status", "--socket", sock, env=env)
    assert rc == 0 and "PLUGIN" in out and "echo" in out
    assert "rich" not in loaded and heavy_only(loaded) == []
    # No daemon: the same clear error and exit code as before.
    rc, _, loaded = await probe("status", "--socket", str(state_dir / "none.sock"), env=env)
    assert rc == 3 and loaded == []


async def test_status_without_options_or_config_file_reads_no_config_module(
    start_daemon: StartDaemon, state_dir: Path
) -> None:
    """No --socket and no config file: the default socket, found without harness.config."""
    env = subprocess_env(state_dir)
    default = state_dir / "harness" / "harness.sock"  # $XDG_RUNTIME_DIR/harness/harness.sock
    await start_daemon(
        cfg=Config(daemon=DaemonConfig(socket=str(default), database=str(state_dir / "d.db")))
    )
    assert not (state_dir / "xdg-config" / "harness" / "config.toml").exists()
    rc, out, loaded = await probe("status", "--json", env=env)
    assert rc == 0 and msgspec.json.decode(out)["socket"] == str(default), out
    # Not even platformdirs: on Linux its rule for the config and state files is followed
    # without importing it (harness/config_paths.py; compared in test_client_config.py).
    assert loaded == []
    # A config file, named or found: only what a client reads of it is read and checked
    # (harness/client_config.py), and a plain file without tomllib (harness/plain_toml.py).
    cfg = write_config(state_dir, socket=str(default))
    found = state_dir / "xdg-config" / "harness" / "config.toml"
    found.parent.mkdir(parents=True)
    found.write_text(cfg.read_text())
    for args, extra in (
        (("--config", str(cfg)), {}),
        ((), {"HARNESS_CONFIG": str(cfg)}),
        ((), {}),  # found in $XDG_CONFIG_HOME
    ):
        rc, out, loaded = await probe(
            "status", "--json", *args, env=subprocess_env(state_dir, **extra)
        )
        assert rc == 0 and msgspec.json.decode(out)["socket"] == str(default), (args, out)
        assert loaded == [], args
    # A file tomllib has to read (an array of tables): still none of the daemon's checks.
    cfg.write_text(cfg.read_text() + "\n[[extra]]\nx = 1\n")
    rc, _, loaded = await probe("status", "--json", "--config", str(cfg), env=env)
    assert rc == 2 and loaded == ["tomllib"], loaded  # [[extra]]: not a key harness knows


def fake_ssh(tmp_path: Path) -> str:
    """An ``ssh`` that runs the remote command here: enough to exercise --host's local side
    (the real sshd is in tests/test_fleet.py)."""
    script = tmp_path / "fake-ssh"
    script.write_text('#!/bin/sh\nfor last; do :; done\nexec /bin/sh -c "$last"\n')
    script.chmod(0o755)
    return str(script)


async def test_host_and_dial_stdio_import_nothing_they_do_not_need(
    start_daemon: StartDaemon, config: Config, state_dir: Path, tmp_path: Path
) -> None:
    await start_daemon(plugins={"echo": Echo})
    sock = str(config.socket_path)
    env = subprocess_env(state_dir, HARNESS_SSH=fake_ssh(tmp_path))
    remote = f"{sys.executable} -m harness --socket {sock}"
    rc, out, loaded = await probe(
        "status", "--json", "--host", "ssh://server", "--remote-harness", remote, env=env
    )
    assert rc == 0 and msgspec.json.decode(out)["socket"] == sock, out
    # No asyncio, msgspec or config: transport's blocking half only (its Target and SshHost
    # are dataclasses, a few ms against an ssh connection's hundreds).
    assert loaded == ["dataclasses"]
    # The server's side: what ssh runs for every --host command.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PROBE,
        "--socket",
        sock,
        "dial-stdio",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
        env=env,
    )
    hello = b'{"type":"hello","protocol":1,"client":"t"}\n'
    async with asyncio.timeout(HANG_GUARD):
        answer, err = await proc.communicate(hello)
    assert proc.returncode == 0 and b'"welcome"' in answer, err
    assert "HEAVY=argparse\n" in err.decode()  # nothing else watched imported


def test_plain_table_is_richs_table() -> None:
    """In a pipe the CLI lays its tables out itself (no rich import): the same lines."""
    from rich.cells import cell_len

    from harness.cli.output import NARROW, plain_lines, rich_lines
    from harness.protocol import STATE_GLYPHS
    from harness.render import UNKNOWN_GLYPH

    assert all(cell_len(c) == 1 for c in NARROW)
    # The glyphs rendered in a table are laid out here, not handed to rich.
    assert set(STATE_GLYPHS.values()) <= NARROW | {UNKNOWN_GLYPH}
    tables = [
        (["PLUGIN", "ENABLED", "STATUS", "CONNECTION"], []),
        (["A", "B"], [["", " x "], ["long cell [b]x[/b]", "● connected · 42 ms"]]),
        (["KEY", "VALUE", "SOURCE"], [["daemon.socket", "/run/h.sock", "file"], ["x", "", ""]]),
        (["N"], [[":smile: …"], ["  lead"]]),
    ]
    for headers, rows in tables:
        assert plain_lines(headers, rows) == rich_lines(headers, rows, 100_000)


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
        async with asyncio.timeout(HANG_GUARD):
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
