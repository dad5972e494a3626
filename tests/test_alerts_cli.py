"""Alerts from the outside: `harness alerts` and `harness silence` against a daemon, config
errors named at load, and delivery surviving a SIGKILL of a real daemon process."""

from __future__ import annotations

import re
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from harness import config as config_mod
from harness.config import Config
from tests.alerts_receiver import Receiver, free_port
from tests.conftest import (
    SpawnDaemon,
    StartDaemon,
    run_cli,
    subprocess_env,
    wait_until,
    write_config,
)
from tests.sample_plugins import Manual
from tests.test_alerts import alerts_config, rule

TOKEN = "tok-9f8e7d6c5b4a39281706"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


def cli_env(state_dir: Path, cfg: Path) -> dict[str, str]:
    return subprocess_env(state_dir, HARNESS_CONFIG=str(cfg))


def write_alerts_config(state_dir: Path, alerts_toml: str) -> Path:
    path = write_config(state_dir)
    path.write_text(path.read_text() + "\n" + alerts_toml)
    return path


async def test_cli_lists_tests_and_silences_without_showing_a_secret(
    start_daemon: StartDaemon,
    config: Config,
    receiver: Receiver,
    state_dir: Path,
) -> None:
    url = f"json://127.0.0.1:{receiver.port}/{TOKEN}"
    dead = f"json://127.0.0.1:{free_port()}/{TOKEN}"  # nobody listens there
    cfg = alerts_config(config, targets={"ops": url, "dead": dead}, rules={"down": rule()})
    Manual.ctx = None
    await start_daemon(plugins={"manual": Manual}, cfg=cfg)
    env = cli_env(state_dir, write_config(state_dir))

    listed = await run_cli("alerts", env=env)
    assert listed.rc == 0, listed.err
    assert "down: plugins manual in connecting,disconnected,error for 0.3s" in listed.out
    assert "ops  json://127.0.0.1/…  nothing pending" in listed.out

    sent = await run_cli("alerts", "test", "ops", env=env)
    assert sent.rc == 0 and "test notification sent to ops" in sent.out
    refused = await run_cli("alerts", "test", "dead", "--config", str(env["HARNESS_CONFIG"]))
    assert refused.rc == 1 and "FAILED" in refused.out and "Connection error" in refused.out
    unknown = await run_cli("alerts", "test", "nope", env=env)
    assert unknown.rc == 1 and "no alert target named 'nope'" in unknown.err

    history = await run_cli("alerts", "--json", "history", "--target", "ops", env=env)
    assert history.rc == 0
    (row,) = msgspec.json.decode(history.out)
    assert (row["kind"], row["status"], row["url"]) == ("test", "sent", "json://127.0.0.1/…")

    added = await run_cli("silence", "add", "manual", "30m", "--reason", "deploy", env=env)
    assert added.rc == 0 and "silenced #1 manual" in added.out and "deploy" in added.out
    overview = await run_cli("alerts", env=env)
    # Today's end as a time and how far away (a full date made one work it out); another
    # day's with its date (a test run just before midnight).
    until = r"MAINTENANCE #1 manual until (\d\d:\d\d:\d\d|\d{4}-\d\d-\d\d \d\d:\d\d) \(in \d+ min\)"
    assert re.search(until, overview.out), overview.out
    silences = await run_cli("silence", "list", "--json", env=env)
    assert [s["active"] for s in msgspec.json.decode(silences.out)] == [True]
    bad = await run_cli("silence", "add", "manual", "soon", env=env)
    assert bad.rc == 2 and "duration" in bad.err  # a usage error, before sending
    ended = await run_cli("silence", "end", "1", env=env)
    assert ended.rc == 0 and "ended early" in ended.out
    again = await run_cli("silence", "end", "1", env=env)
    assert again.rc == 1 and "no running silence #1" in again.err

    for result in (listed, sent, refused, unknown, history, added, overview, silences, ended):
        assert TOKEN not in result.out + result.err


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            '[alerts]\ntargets = ["nosuchscheme://x/y"]\n',
            "alerts.targets[0]: apprise cannot use this nosuchscheme:// URL",
        ),
        (
            '[alerts]\ntargets = { ops = "not a url" }\n',
            "alerts.targets.ops: expected an apprise URL",
        ),
        (
            '[alerts.rules.down]\nfro = "2m"\n',
            "alerts.rules.down.fro: unknown key; expected one of plugins, states, for,",
        ),
        (
            '[alerts.rules.down]\nfor = "two minutes"\n',
            "alerts.rules.down.for: expected a duration such as '2m'",
        ),
        (
            '[alerts.rules.down]\nstates = ["broken"]\n',
            "alerts.rules.down.states: 'broken' matches no connection state",
        ),
        ('[alerts]\nheartbeat_every = "-1s"\n', "alerts.heartbeat_every: expected a duration"),
        ('[alerts]\nretry = "1s"\n', "alerts.retry: unknown key"),
        (
            '[alerts]\ntargets = { a = "json://127.0.0.1:1/x" }\n'
            '[alerts.rules.down]\ntargets = ["b"]\n',
            "alerts.rules.down.targets: no target named 'b'",
        ),
    ],
)
def test_bad_alert_config_is_named_at_load(state_dir: Path, toml: str, expected: str) -> None:
    path = write_alerts_config(state_dir, toml)
    with pytest.raises(config_mod.ConfigError) as info:
        config_mod.load(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_one_line_of_config_gives_a_default_rule(state_dir: Path) -> None:
    path = write_alerts_config(state_dir, '[alerts]\ntargets = ["json://127.0.0.1:9000/hook"]\n')
    cfg = config_mod.load(path)
    (name,) = cfg.alerts.active_rules
    r = cfg.alerts.active_rules[name]
    assert r.for_seconds == 120 and r.send_resolved and r.plugins == ["*"]
    assert not r.matches_state("connected") and r.matches_state("disconnected")
    assert config_mod.load(write_alerts_config(state_dir, "")).alerts.active_rules == {}


async def test_bad_alert_config_stops_the_daemon_with_exit_2(state_dir: Path) -> None:
    path = write_alerts_config(state_dir, '[alerts.rules.down]\nfor = "soon"\n')
    result = await run_cli("run", "--config", str(path), env=subprocess_env(state_dir))
    assert result.rc == 2
    assert "alerts.rules.down.for" in result.err


def outbox(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT kind, status FROM alert_outbox ORDER BY id").fetchall()
    conn.close()
    return rows


async def test_a_notification_recorded_before_a_sigkill_is_delivered_once_after_restart(
    spawn_daemon: SpawnDaemon, state_dir: Path
) -> None:
    # The real daemon process with the built-in Discord plugin and no token: it reports
    # `not_configured`, which this rule treats as broken, at once.
    down = Receiver()  # not listening yet: every send is refused
    path = write_alerts_config(
        state_dir,
        f'[alerts]\ntargets = ["{down.url()}"]\nretry_initial = "0.05s"\nretry_max = "0.2s"\n'
        '[alerts.rules.setup]\nstates = ["not_configured"]\nfor = 0\n',
    )
    db = state_dir / "state" / "state.db"
    daemon = await spawn_daemon(path)
    await wait_until(lambda: db.exists() and outbox_attempts(db) >= 2)
    assert outbox(db) == [("fired", "pending")]  # recorded, never sent
    daemon.proc.send_signal(signal.SIGKILL)
    await daemon.wait()

    await down.start()
    try:
        again = await spawn_daemon(path)
        await wait_until(lambda: outbox(db) == [("fired", "sent")])
        again.proc.send_signal(signal.SIGTERM)
        assert await again.wait() == 0, again.stderr
        # Once: the restart neither re-fired (the firing was stored open) nor resent.
        assert down.kinds() == ["fired"]
        assert down.posts[0]["fields"]["state"] == "not_configured"
        assert down.posts[0]["fields"]["plugin"] == "discord"
    finally:
        await down.stop()


def outbox_attempts(db: Path) -> int:
    try:
        with sqlite3.connect(db) as conn:
            row = conn.execute("SELECT max(attempts) FROM alert_outbox").fetchone()
        conn.close()
    except sqlite3.OperationalError:  # not migrated yet
        return 0
    return int(row[0] or 0)
