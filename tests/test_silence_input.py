"""`harness silence add` with input a terminal would run or misread, through the real CLI
against a daemon: refused with what and where, nothing stored; a bad duration in days."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import Config
from tests.conftest import StartDaemon, run_cli, subprocess_env, write_config
from tests.sample_plugins import Manual
from tests.test_alerts import Connect, alerts_config, rule


async def test_a_reason_with_an_escape_sequence_is_refused_and_a_duration_named_in_days(
    start_daemon: StartDaemon, config: Config, state_dir: Path, connect: Connect
) -> None:
    cfg = alerts_config(config, targets={"ops": "json://127.0.0.1:9/x"}, rules={"r": rule()})
    Manual.ctx = None
    await start_daemon(plugins={"manual": Manual}, cfg=cfg)
    env = subprocess_env(state_dir, HARNESS_CONFIG=str(write_config(state_dir)))

    hostile = await run_cli("silence", "add", "manual", "10m", "--reason", "dep\x1b[2Jloy", env=env)
    # Before: added, and `silence list` wrote the ESC [2J (clear screen) to the terminal.
    # Refused by the CLI as a usage error; the daemon refuses it too (the request below).
    assert hostile.rc == 2, hostile
    assert "reason: contains an unprintable character (U+001B) at position 4" in hostile.err
    assert "\x1b" not in hostile.err
    listed = await run_cli("silence", "list", env=env)
    assert listed.rc == 0 and "\x1b" not in listed.out, listed
    assert "dep" not in listed.out, listed  # nothing was stored

    too_long = await run_cli("silence", "add", "manual", "31d", env=env)
    # Before: "at most 2.592e+06 s".
    assert too_long.rc == 2, too_long
    assert "at most 30 days (30d)" in too_long.err, too_long
    # Before: exit 1, "Expected `str` of length <= 200 - at `$.reason`", and "forever" exit 1.
    wordy = await run_cli(
        "silence", "add", "manual", "1m", "--reason", "x" * 201, "--json", env=env
    )
    assert wordy.rc == 2 and "reason: at most 200 characters, got 201" in wordy.out, wordy
    forever = await run_cli("silence", "add", "manual", "forever", env=env)
    assert forever.rc == 2 and "expected a duration such as '2m'" in forever.err, forever

    client = await connect()  # the daemon's own check, unchanged
    with pytest.raises(Exception, match="unprintable character"):
        await client.request("silences.add", plugin="manual", duration="1m", reason="\x1b")

    fine = await run_cli("silence", "add", "manual", "10m", "--reason", "déploiement 🚀", env=env)
    assert fine.rc == 0, fine
    assert "déploiement 🚀" in (await run_cli("silence", "list", env=env)).out
