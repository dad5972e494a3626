"""`harness silence add` with input a terminal would run or misread, through the real CLI
against a daemon: refused with what and where, nothing stored; a bad duration in days."""

from __future__ import annotations

from pathlib import Path

from harness.config import Config
from tests.conftest import StartDaemon, run_cli, subprocess_env, write_config
from tests.sample_plugins import Manual
from tests.test_alerts import alerts_config, rule


async def test_a_reason_with_an_escape_sequence_is_refused_and_a_duration_named_in_days(
    start_daemon: StartDaemon, config: Config, state_dir: Path
) -> None:
    cfg = alerts_config(config, targets={"ops": "json://127.0.0.1:9/x"}, rules={"r": rule()})
    Manual.ctx = None
    await start_daemon(plugins={"manual": Manual}, cfg=cfg)
    env = subprocess_env(state_dir, HARNESS_CONFIG=str(write_config(state_dir)))

    hostile = await run_cli("silence", "add", "manual", "10m", "--reason", "dep\x1b[2Jloy", env=env)
    # Before: added, and `silence list` wrote the ESC [2J (clear screen) to the terminal.
    assert hostile.rc == 1, hostile
    assert "reason: contains an unprintable character (U+001B) at position 4" in hostile.err
    assert "\x1b" not in hostile.err
    listed = await run_cli("silence", "list", env=env)
    assert listed.rc == 0 and "\x1b" not in listed.out, listed
    assert "dep" not in listed.out, listed  # nothing was stored

    too_long = await run_cli("silence", "add", "manual", "31d", env=env)
    # Before: "at most 2.592e+06 s".
    assert too_long.rc == 1, too_long
    assert "at most 30 days (30d)" in too_long.err, too_long

    fine = await run_cli("silence", "add", "manual", "10m", "--reason", "déploiement 🚀", env=env)
    assert fine.rc == 0, fine
    assert "déploiement 🚀" in (await run_cli("silence", "list", env=env)).out
