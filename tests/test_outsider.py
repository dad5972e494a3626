"""Found by trying harness from outside, as a new operator would: each test is one thing that
went wrong through the public interfaces (the real CLI in a pipe, a real daemon)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from harness.config import Config
from harness.daemon import Daemon
from tests.conftest import HANG_GUARD, REPO_ROOT, StartDaemon, run_cli, subprocess_env
from tests.sample_plugins import Echo


@pytest.fixture
async def daemon(start_daemon: StartDaemon) -> Daemon:
    return await start_daemon(plugins={"echo": Echo})


@pytest.mark.parametrize(
    "args", [("status",), ("plugins", "list"), ("events", "-n", "5"), ("config",)], ids=" ".join
)
async def test_output_into_a_closed_pipe_exits_quietly(
    daemon: Daemon, config: Config, state_dir: Path, args: tuple[str, ...]
) -> None:
    """`harness status | head -1`: the reader is gone before the output is written. That is
    the reader's choice, not a failure: no traceback, exit status 0."""
    read, write = os.pipe()
    os.close(read)  # like `head` that has read its line and exited
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "harness",
            *args,
            "--socket",
            str(config.socket_path),
            stdout=write,
            stderr=asyncio.subprocess.PIPE,
            cwd=REPO_ROOT,
            env=subprocess_env(state_dir),
        )
    finally:
        os.close(write)
    async with asyncio.timeout(HANG_GUARD):
        _, err = await proc.communicate()
    assert "Traceback" not in err.decode(), err.decode()
    assert proc.returncode == 0, err.decode()


@pytest.mark.parametrize("value", ["-5", "x"])
async def test_a_bad_event_count_is_a_usage_error(
    daemon: Daemon, config: Config, state_dir: Path, value: str
) -> None:
    """`harness events -n -5` crashed with "maxlen must be non-negative"."""
    result = await run_cli(
        "events", "-n", value, "--socket", str(config.socket_path), env=subprocess_env(state_dir)
    )
    assert result.rc == 2, result.err
    assert "Traceback" not in result.err
    assert "argument -n/--lines: " in result.err and value in result.err


async def test_service_install_refuses_a_config_the_daemon_could_not_start_with(
    state_dir: Path,
) -> None:
    """`harness service install --user --config typo.toml` wrote a unit pointing at a file that
    does not exist: the service then failed at every start. Refused, nothing written."""
    env = subprocess_env(state_dir)
    unit = state_dir / "xdg-config" / "systemd" / "user" / "harness.service"
    missing = state_dir / "typo.toml"
    result = await run_cli("service", "install", "--user", "--config", str(missing), env=env)
    assert result.rc == 2, result.err
    assert str(missing) in result.err and not unit.exists()
    bad = state_dir / "bad.toml"
    bad.write_text("[daemon]\nstop_timeout = 'soon'\n")
    result = await run_cli("service", "install", "--user", "--config", str(bad), env=env)
    assert result.rc == 2 and "stop_timeout" in result.err and not unit.exists()


async def test_service_install_keeps_the_config_named_by_harness_config(
    state_dir: Path,
) -> None:
    """HARNESS_CONFIG is not in the service's environment: the unit must name the file, or
    the service silently runs on the defaults."""
    good = state_dir / "good.toml"
    good.write_text("[daemon]\nstop_timeout = 5.0\n")
    env = subprocess_env(state_dir, HARNESS_CONFIG=str(good))
    result = await run_cli("service", "install", "--user", "--print", env=env)
    assert result.rc == 0, result.err
    # Each word double-quoted, by systemd's rules (tests/test_systemd.py).
    assert "ExecStart=" in result.out and f'"run" "--config" "{good}"' in result.out


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("stop_timeout", "-1.0"),
        ("event_retention_days", "-1.0"),
        ("event_retention_max", "-5"),
        ("client_queue_frames", "0"),
    ],
)
async def test_a_number_out_of_range_in_the_config_is_refused(
    state_dir: Path, key: str, value: str
) -> None:
    """`stop_timeout = -1` started a daemon that cancelled every plugin at once ("did not stop
    within -1 s"); a negative retention would delete the whole history. Refused like any bad
    config: exit 2 naming the key, nothing created."""
    cfg = state_dir / "range.toml"
    home = state_dir / "home"
    cfg.write_text(
        f'[daemon]\nsocket = "{home}/s.sock"\ndatabase = "{home}/s.db"\n{key} = {value}\n'
    )
    result = await run_cli("run", "--config", str(cfg), env=subprocess_env(state_dir))
    assert result.rc == 2, result.err
    assert f"daemon.{key}" in result.err
    assert not home.exists()
