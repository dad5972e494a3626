"""The CLI messages the operations issue found wrong, each checked through the real
`python -m harness` against an in-process daemon."""

from __future__ import annotations

import re
import time
from pathlib import Path

import msgspec
import pytest

from harness.cli.events import Since, parse_point
from harness.cli.output import age, when
from harness.config import Config
from harness.daemon import Daemon
from tests.conftest import StartDaemon, run_cli, subprocess_env
from tests.sample_plugins import Crashy, Echo

SECRET = "polish-Tok3n-hidden"


@pytest.fixture
async def daemon(start_daemon: StartDaemon, config: Config) -> Daemon:
    cfg = msgspec.structs.replace(config, plugins={"echo": {"token": SECRET}})
    return await start_daemon(plugins={"echo": Echo, "crashy": Crashy}, cfg=cfg)


async def cli(config: Config, state_dir: Path, *args: str) -> tuple[int, str, str]:
    result = await run_cli(
        *args, "--socket", str(config.socket_path), env=subprocess_env(state_dir)
    )
    return result.rc, result.out, result.err


@pytest.mark.parametrize(("value", "shown"), [("abc", "got 'abc'"), ("1.5", "got '1.5'")])
async def test_a_bad_integer_is_named_once_with_the_value_typed(
    daemon: Daemon, config: Config, state_dir: Path, value: str, shown: str
) -> None:
    rc, _, err = await cli(config, state_dir, "plugins", "set", "echo", f"retries={value}")
    assert rc == 2, err
    assert err.count("retries") == 1, err  # printed once, not twice
    assert f"retries: expected a whole number, {shown}" in err and "got str" not in err
    assert "nothing was changed" in err


async def test_daemon_refusals_name_each_field_once(
    daemon: Daemon, config: Config, state_dir: Path
) -> None:
    rc, _, err = await cli(config, state_dir, "plugins", "set", "echo", "retries=11", "mode=slow")
    assert rc == 1, err
    lines = err.splitlines()
    assert lines[0] == "harness: settings of echo not saved:"
    assert (
        "  retries: must be at most 10" in lines and "  mode: must be one of: fast, safe" in lines
    )
    assert err.count("must be at most 10") == 1 and err.count("must be one of") == 1


async def test_plugin_table_columns_stay_aligned_with_a_reason(
    daemon: Daemon, config: Config, state_dir: Path
) -> None:
    rc, out, err = await cli(config, state_dir, "plugins", "list")
    assert rc == 0, err
    lines = [line for line in out.splitlines() if line.strip()]
    header = next(line for line in lines if line.startswith("PLUGIN"))
    column = header.index("CONNECTION")
    status = header.index("STATUS")
    rows = [line for line in lines if line.startswith(("echo", "crashy"))]
    assert len(rows) == 2
    crashy = next(r for r in rows if r.startswith("crashy"))
    assert crashy[status:].startswith("error (start failed")  # the reason is there ...
    for row in rows:  # ... and every CONNECTION cell still starts under its header
        assert row[column] in "●✖", (row, column)
    assert re.search(r"since \d\d:\d\d:\d\d \(\d+ s ago\)", out), out


async def test_global_options_work_before_and_after_the_command(
    daemon: Daemon, config: Config, state_dir: Path
) -> None:
    env = subprocess_env(state_dir)
    before = await run_cli("--socket", str(config.socket_path), "status", "--json", env=env)
    after = await run_cli("status", "--json", "--socket", str(config.socket_path), env=env)
    assert before.rc == after.rc == 0, (before, after)
    # Given after the command, it wins over the one before (the closer one is the intent).
    both = await run_cli(
        "--socket",
        "/nonexistent/x.sock",
        "plugins",
        "list",
        "--socket",
        str(config.socket_path),
        env=env,
    )
    assert both.rc == 0, both


async def test_not_configured_names_the_command_that_fixes_it(
    start_daemon: StartDaemon, config: Config, state_dir: Path
) -> None:
    await start_daemon(plugins={"echo": Echo})  # no token: not configured
    rc, out, err = await cli(config, state_dir, "status")
    assert rc == 0, err
    assert "not configured" in out
    assert "harness plugins set echo token=- (the secret is read from stdin)" in out
    rc, out, _ = await cli(config, state_dir, "plugins", "show", "echo")
    assert "harness plugins set echo token=-" in out


async def test_events_show_times_not_epochs_and_take_since_and_until(
    daemon: Daemon, config: Config, state_dir: Path
) -> None:
    rc, out, err = await cli(config, state_dir, "events", "*:connection", "--since", "1h")
    assert rc == 0, err
    assert "echo:connection" in out
    assert re.search(r"since=\d\d:\d\d:\d\d \(\d+ s ago\)", out), out
    assert not re.search(r"since=\d{9,}", out)
    rc, out, _ = await cli(config, state_dir, "events", "--since", "0", "--until", "2")
    assert [line.split()[0] for line in out.splitlines()] == ["1", "2"]
    rc, out, err = await cli(config, state_dir, "events", "--since", "yesterday-ish")
    assert rc == 2 and "expected a seq (1042), a duration (10m, 2h, 1d)" in err


def test_parse_point_reads_seqs_durations_and_local_times() -> None:
    now = 1_800_000_000.0
    assert parse_point("1042", now) == Since(seq=1042)
    assert parse_point("10m", now) == Since(ts=now - 600)
    assert parse_point("2h", now) == Since(ts=now - 7200)
    local = time.mktime((2026, 11, 25, 10, 0, 0, 0, 0, -1))
    assert parse_point("2026-11-25T10:00", now) == Since(ts=local)
    assert parse_point("2026-11-25 10:00", now) == Since(ts=local)


def test_times_are_local_with_age() -> None:
    now = time.time()
    # The units as the TUI writes them ("(13 s)", "3 min ago"), not "13s" / "5m".
    assert when(now - 300, now).endswith("(5 min ago)")
    assert age(13) == "13 s" and age(3 * 3600 + 20 * 60) == "3 h 20 min" and age(2 * 86400) == "2 d"


async def test_run_and_every_command_describe_themselves(state_dir: Path) -> None:
    env = subprocess_env(state_dir)
    result = await run_cli("run", "--help", env=env)
    assert result.rc == 0
    assert "Run the daemon in the foreground until SIGTERM" in result.out
