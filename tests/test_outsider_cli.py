"""Found by using harness from outside, as a new operator would (round 2, fourth session):
each test is one thing that went wrong through the public interfaces (the real CLI as a
subprocess, a real daemon)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from harness.client import Client, DaemonUnavailable
from harness.config import Config
from harness.daemon import Daemon
from tests.conftest import REPO_ROOT, StartDaemon, run_cli, subprocess_env, write_config
from tests.sample_plugins import Echo


async def test_help_names_only_the_documented_exit_codes(state_dir: Path) -> None:
    """`harness --help` promised "4 socket not trusted" while the code (and the README) exit
    2 for that: a script written from the help would have tested for a code that never
    comes."""
    result = await run_cli("--help", env=subprocess_env(state_dir))
    assert result.rc == 0, result
    epilog = " ".join(result.out[result.out.index("exit codes:") :].split())
    assert epilog.startswith("exit codes: 0 ok, 1 failed, 2 usage or config error"), epilog
    assert "3 no daemon" in epilog, epilog
    assert "4" not in epilog, epilog


async def test_a_database_place_that_cannot_be_made_is_named_without_a_traceback(
    state_dir: Path,
) -> None:
    """A database path under a regular file (as a read-only file system, or a typo, does):
    `harness run` died with a Python traceback ending in NotADirectoryError. It names the
    path and the cause, says where to look, exit 1."""
    blocker = state_dir / "not-a-dir"
    blocker.write_text("")
    cfg = write_config(state_dir, database=str(blocker / "sub" / "state.db"))
    result = await run_cli("--config", str(cfg), "run", env=subprocess_env(state_dir))
    assert result.rc == 1, result
    assert "Traceback" not in result.err, result.err
    assert f"cannot start: {blocker / 'sub'}: Not a directory" in result.err, result.err
    assert f"harness config --config {cfg}" in result.err, result.err


async def test_a_socket_place_that_cannot_be_made_is_named_without_a_traceback(
    state_dir: Path,
) -> None:
    blocker = state_dir / "not-a-dir"
    blocker.write_text("")
    cfg = write_config(state_dir, socket=str(blocker / "h.sock"))
    result = await run_cli("--config", str(cfg), "run", env=subprocess_env(state_dir))
    assert result.rc == 1, result
    assert "Traceback" not in result.err, result.err
    assert f"cannot start: {blocker}: exists and is not a directory" in result.err, result.err


async def test_the_config_check_hint_names_the_file_that_was_checked(state_dir: Path) -> None:
    """`harness --config bad.toml config` said "check again: harness config", which checks
    another file (or none) and reports it fine."""
    bad = state_dir / "bad.toml"
    bad.write_text("[daemon]\nfoo = 5\n")
    result = await run_cli("--config", str(bad), "config", env=subprocess_env(state_dir))
    assert result.rc == 2, result
    assert f"check again: harness config --config {bad}" in result.err, result.err


async def test_a_silence_for_no_known_plugin_is_refused_and_times_read_as_times(
    start_daemon: StartDaemon, config: Config, state_dir: Path
) -> None:
    """`harness silence add nope 30m` answered "silenced #1 nope" (exit 0): a misspelt name
    covers nothing while its author believes the plugin quiet. And `harness events` showed
    the silence's start and end (and a storage gap's times) as raw Unix epochs."""
    daemon: Daemon = await start_daemon(plugins={"echo": Echo})
    assert daemon.server is not None
    env = subprocess_env(state_dir)
    sock = ("--socket", str(config.socket_path))

    typo = await run_cli("silence", "add", "ehco", "30m", *sock, env=env)
    assert typo.rc == 1, typo
    assert "no plugin matches 'ehco'; known: echo" in typo.err, typo
    listed = await run_cli("silence", "list", "--json", *sock, env=env)
    assert listed.rc == 0 and listed.out.strip() == "[]", listed

    for name in ("echo", "ec*"):
        added = await run_cli("silence", "add", name, "30m", *sock, env=env)
        assert added.rc == 0 and "silenced #" in added.out, added

    events = await run_cli("events", "alert:silence", *sock, env=env)
    assert events.rc == 0 and "starts=" in events.out, events
    assert not re.search(r"(starts|ends)=\d{9,}", events.out), events.out


async def test_the_demo_cleans_up_when_terminated(state_dir: Path) -> None:
    """`kill PID` (SIGTERM) of `harness demo` killed it at once: its daemon and gateway went
    (they die with their parent) but its state directory stayed in the temp dir, one more
    with every demo stopped that way. SIGTERM now leaves as `q` and a hang-up do."""
    env = subprocess_env(state_dir, TMPDIR=str(state_dir))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "harness",
        "demo",
        "--flap-every",
        "0",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
        env=env,
    )
    assert proc.stderr is not None
    seen = bytearray()

    async def drain() -> None:  # the TUI draws on stderr too: keep reading it
        assert proc.stderr is not None
        while chunk := await proc.stderr.read(65536):
            seen.extend(chunk)

    try:
        async with asyncio.timeout(60):
            first = await proc.stderr.readline()  # said before anything starts
            m = re.search(rb"state in (\S+);", first)
            assert m, first
            state = Path(m[1].decode())
            reader = asyncio.create_task(drain())
            while True:  # the daemon answers: the demo has started its children
                try:
                    client = await Client.connect(state / "harness.sock", timeout=1.0)
                except DaemonUnavailable:
                    await asyncio.sleep(0.05)
                    continue
                daemon_pid = client.welcome.pid
                await client.close()
                break
            proc.send_signal(signal.SIGTERM)
            rc = await proc.wait()
            await reader
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert rc == 128 + signal.SIGTERM, (rc, bytes(seen[-2000:]))
    assert not state.exists(), sorted(p.name for p in state.iterdir())
    with pytest.raises(ProcessLookupError):
        os.kill(daemon_pid, 0)


async def test_a_config_value_outside_its_choices_lists_them(state_dir: Path) -> None:
    """`log_level = "verbose"` was refused with msgspec's "Invalid enum value 'verbose'",
    which does not say what would do."""
    bad = state_dir / "bad.toml"
    bad.write_text('[daemon]\nlog_level = "verbose"\n')
    result = await run_cli("--config", str(bad), "config", env=subprocess_env(state_dir))
    assert result.rc == 2, result
    assert (
        "daemon.log_level: expected one of debug, error, info, warning, got 'verbose'" in result.err
    ), result.err
