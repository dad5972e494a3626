"""The Discord plugin end to end: daemon + real discord.py + the local gateway.

After each step both the published ``discord:connection`` events and the stored
``metadata.connection`` are checked."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import discord.gateway
import discord.http
import pytest

from harness.client import Client
from harness.config import Config, DaemonConfig
from harness.daemon import Daemon
from harness.discord_emulator import LocalDiscordGateway
from harness.plugins.discord import DiscordPlugin
from harness.protocol import Event
from tests.conftest import HANG_GUARD, wait_until

TOKEN = "test-token-Zm9vYmFyYmF6cXV4-0123456789"  # looks real enough to be caught if leaked
BOT = "HarnessBot#1234"
# The emulator enforces Discord's one IDENTIFY per rate-limit key per window (op 9 otherwise);
# tests shorten Discord's 5 s on both sides, the plugin's interval a margin above the
# emulator's window so that a loaded machine's jitter never reads as a violation.
IDENTIFY_WINDOW = 0.02


class FastDiscord(DiscordPlugin):
    """The real plugin with discord.py's test-unfriendly pauses shortened."""

    guild_ready_timeout = 0.05
    identify_wait = (0.0, 0.0)
    ack_warn_after = 0.3
    backoff_base = 0.01
    identify_interval = 0.1  # Discord's 5 s between IDENTIFYs per bucket, shortened
    identify_margin = 0.0  # the interval above is already 5x the gateway's window


@pytest.fixture(autouse=True)
def _restore_discord_urls() -> Any:
    # The plugin points discord.py at the gateway through class attributes; put them back.
    base, gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    yield
    discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = base, gateway


@pytest.fixture
async def gateway() -> AsyncIterator[LocalDiscordGateway]:
    async with LocalDiscordGateway(tokens={TOKEN}, identify_window=IDENTIFY_WINDOW) as gw:
        yield gw


def discord_config(config: Config, gw: LocalDiscordGateway, **settings: Any) -> Config:
    table = {"bot_token": TOKEN, "api_base_url": gw.api_base_url, "gateway_url": gw.gateway_url}
    table.update(settings)
    return Config(daemon=config.daemon, plugins={"discord": table})


class Watcher:
    """A socket subscriber to ``discord:connection`` from seq 0 (history replayed, then live),
    keeping the events it read since the last :meth:`reset`.

    Unless ``attempts``, it passes over the updates that say an attempt is under way
    (``attempt_started``): the plugin publishes them only for an attempt that takes longer than
    its ``attempt_grace`` (0.5 s), which a loaded machine can make any attempt do; the sequences
    these tests assert are the outcomes (tests/test_discord_attempts.py checks those updates)."""

    def __init__(self, client: Client, *, attempts: bool = False) -> None:
        self.client = client
        self.attempts = attempts
        self.events: list[Event] = []

    def reset(self) -> None:
        self.events.clear()

    async def until(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = HANG_GUARD
    ) -> dict[str, Any]:
        """Read events until one whose data satisfies ``predicate``; return its data. The
        default timeout is a hang guard (a loaded machine takes its time), not an expectation."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self.client.next_event()
                if not self.attempts and event.data.get("attempt_started") is not None:
                    continue
                self.events.append(event)
                if predicate(event.data):
                    return event.data

    async def state(self, state: str, timeout: float = HANG_GUARD) -> dict[str, Any]:
        return await self.until(lambda d: d["state"] == state, timeout)

    def states(self) -> list[str]:
        return [e.data["state"] for e in self.events]


def stored_connection(config: Config) -> dict[str, Any]:
    """What the TUI would seed from; {} before the daemon has written anything."""
    if not config.database_path.exists():
        return {}
    with sqlite3.connect(f"file:{config.database_path}?mode=ro", uri=True) as db:
        try:
            row = db.execute("SELECT metadata FROM plugin_config WHERE name = 'discord'").fetchone()
        except sqlite3.OperationalError:  # the daemon is still creating the schema
            return {}
    return json.loads(row[0]).get("connection") or {} if row else {}


@pytest.fixture
async def watcher(config: Config, connect: Any) -> Callable[..., Any]:
    async def make(cfg: Config | None = None, *, attempts: bool = False) -> Watcher:
        client = await connect(cfg or config)
        await client.subscribe(["discord:connection"], since=0)
        return Watcher(client, attempts=attempts)

    return make


async def start(start_daemon: Any, cfg: Config) -> Daemon:
    return await start_daemon(plugins={"discord": FastDiscord}, cfg=cfg)


def assert_seqs_increase(events: list[Event]) -> None:
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
    assert all(e.seq == e.data["seq"] for e in events)


# -- the happy path and recoveries -----------------------------------------------------------


async def connected(start_daemon: Any, watcher: Any, cfg: Config) -> tuple[Daemon, Watcher]:
    """A daemon whose plugin has reached ``connected``; the watcher is reset after it."""
    daemon = await start(start_daemon, cfg)
    w = await watcher(cfg)
    up = await w.state("connected")
    assert w.states() == ["connecting", "connected"]
    assert up["username"] == BOT
    w.reset()
    return daemon, w


async def test_ready_reports_connected_with_bot_name(
    config: Config, gateway: LocalDiscordGateway, start_daemon: Any, watcher: Any
) -> None:
    cfg = discord_config(config, gateway)
    daemon = await start(start_daemon, cfg)
    w = await watcher(cfg)
    up = await w.state("connected")
    assert w.states() == ["connecting", "connected"]
    assert up["username"] == BOT and "reason" not in up and "attempt" not in up
    assert_seqs_increase(w.events)
    assert stored_connection(cfg) == up
    assert gateway.identify_count == 1
    status = await w.client.request("status")
    assert status["plugins"][0]["connection"] == up
    assert daemon.orchestrator is not None


async def test_drop_and_resume_keeps_the_name(
    config: Config, gateway: LocalDiscordGateway, start_daemon: Any, watcher: Any
) -> None:
    cfg = discord_config(config, gateway)
    _, w = await connected(start_daemon, watcher, cfg)
    await gateway.drop(4000)
    down = await w.state("disconnected")
    assert down["attempt"] == 1 and down["username"] == BOT
    assert down["reason"] == "4000 unknown error, resuming" and down["code"] == 4000
    assert down["since"] <= down["retry_at"]
    assert stored_connection(cfg)["seq"] >= down["seq"]
    up = await w.state("connected")
    assert up["username"] == BOT and "attempt" not in up and "reason" not in up
    assert "retry_at" not in up and "code" not in up and up["drop_ms"] >= 0
    assert gateway.resume_count == 1 and gateway.identify_count == 1
    assert w.states() == ["disconnected", "connected"]
    assert_seqs_increase(w.events)
    assert stored_connection(cfg) == up


async def test_tcp_abort_is_resumed(
    config: Config, gateway: LocalDiscordGateway, start_daemon: Any, watcher: Any
) -> None:
    cfg = discord_config(config, gateway)
    _, w = await connected(start_daemon, watcher, cfg)
    await gateway.abort()
    up = await w.state("connected")
    assert w.states() == ["disconnected", "connected"] and up["username"] == BOT
    assert gateway.resume_count == 1
    assert stored_connection(cfg) == up


async def test_zombie_connection_is_closed_and_resumed(
    config: Config, gateway: LocalDiscordGateway, start_daemon: Any, watcher: Any
) -> None:
    # A zombie: the socket is up but heartbeats go unacknowledged. When the next heartbeat
    # falls due with no ACK, the plugin closes (not 1000) and resumes, as Discord prescribes.
    gateway.heartbeat_interval = 300
    cfg = discord_config(config, gateway)
    _, w = await connected(start_daemon, watcher, cfg)
    await gateway.pause_heartbeat_acks(True)
    down = await w.state("disconnected")
    assert down["reason"] == "no heartbeat acknowledged" and down["attempt"] == 1
    await gateway.pause_heartbeat_acks(False)
    up = await w.state("connected")
    assert up["username"] == BOT and gateway.resume_count >= 1
    assert stored_connection(cfg) == up


async def test_non_resumable_session_identifies_again(
    config: Config, gateway: LocalDiscordGateway, start_daemon: Any, watcher: Any
) -> None:
    cfg = discord_config(config, gateway)
    _, w = await connected(start_daemon, watcher, cfg)
    await gateway.send_invalid_session(resumable=False)
    up = await w.state("connected")
    # The socket stays open while the client waits to identify: `connecting`, not down.
    assert w.states() == ["connecting", "connected"]
    assert w.events[0].data["reason"] == "session invalidated (op 9): identifying again"
    assert up["username"] == BOT
    assert gateway.identify_count == 2
    assert stored_connection(cfg) == up


async def test_gateway_refusing_for_two_seconds(
    config: Config, gateway: LocalDiscordGateway, start_daemon: Any, watcher: Any
) -> None:
    cfg = discord_config(config, gateway, max_backoff=1)
    _, w = await connected(start_daemon, watcher, cfg)
    await gateway.refuse_connections(2.0)
    await gateway.drop(4000)
    up = await w.state("connected")
    downs = [e.data for e in w.events if e.data["state"] == "disconnected"]
    assert [d["attempt"] for d in downs] == list(range(1, len(downs) + 1))
    assert len(downs) >= 2, "a 2 s refusal spans more than one attempt"
    assert downs[0]["reason"] == "4000 unknown error, resuming"
    assert {d["reason"] for d in downs[1:]} == {"cannot reach the gateway: connection refused"}
    assert len({d["since"] for d in downs}) == 1, "since is fixed across one outage"
    assert w.states()[-1] == "connected" and set(w.states()) == {"disconnected", "connected"}
    assert up["username"] == BOT
    assert_seqs_increase(w.events)
    assert stored_connection(cfg) == up


async def test_first_connection_failing_is_retried_by_the_supervisor(
    config: Config, gateway: LocalDiscordGateway, start_daemon: Any, watcher: Any
) -> None:
    # Down before the plugin ever connects: login itself fails, and discord.py does not retry
    # that (nor its 2.7.1 first-connect bug). The plugin's own supervisor must.
    await gateway.refuse_connections(1.5)
    cfg = discord_config(config, gateway)
    await start(start_daemon, cfg)
    w = await watcher(cfg)
    up = await w.state("connected")
    states = w.states()
    assert states[:2] == ["connecting", "disconnected"] and states[-1] == "connected"
    downs = [e.data for e in w.events if e.data["state"] == "disconnected"]
    assert downs[0]["reason"] == "cannot reach Discord's API: connection refused"
    assert [d["attempt"] for d in downs] == list(range(2, len(downs) + 2))
    assert up["username"] == BOT
    assert stored_connection(cfg) == up


# -- errors that must not be retried ----------------------------------------------------------


async def test_bad_token_is_an_error_without_a_retry_storm(
    config: Config,
    gateway: LocalDiscordGateway,
    start_daemon: Any,
    watcher: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    gateway.set_tokens({"some-other-token"})
    cfg = discord_config(config, gateway)
    daemon = await start(start_daemon, cfg)
    w = await watcher(cfg)
    err = await w.state("error")
    assert w.states() == ["connecting", "error"]
    assert err["reason"] == (
        "token rejected: set a new one with `harness plugins set discord bot_token=-`"
    )
    assert err["code"] == 401 and "username" not in err
    # Terminal: the supervisor has ended after exactly one login.
    assert daemon.orchestrator is not None
    plugin = daemon.orchestrator._slots["discord"].plugin
    assert isinstance(plugin, DiscordPlugin)
    assert plugin._supervisor is not None and plugin._supervisor.done()
    assert gateway.login_count == 1 and gateway.connection_count == 0
    await w.client.request("plugins.set_enabled", name="discord", enabled=False)
    await w.state("stopped")
    assert w.states() == ["connecting", "error", "stopped"]
    assert gateway.login_count == 1
    # The token is nowhere: not in the logs, not in any event, not in what the API returns.
    assert TOKEN not in caplog.text
    with sqlite3.connect(cfg.database_path) as db:
        assert not db.execute("SELECT 1 FROM events WHERE data LIKE ?", (f"%{TOKEN}%",)).fetchall()
    info = await w.client.request("plugins.get", name="discord")
    assert TOKEN not in json.dumps(info) and info["settings"]["bot_token"] == {"set": True}


async def test_privileged_intents_missing_is_an_error(
    config: Config, gateway: LocalDiscordGateway, start_daemon: Any, watcher: Any
) -> None:
    gateway.require_privileged_intents = True
    cfg = discord_config(config, gateway, members_intent=True)
    await start(start_daemon, cfg)
    w = await watcher(cfg)
    err = await w.state("error")
    assert w.states() == ["connecting", "error"]
    assert err["reason"].startswith("disallowed intents (4014): turn them on")
    assert err["code"] == 4014
    assert gateway.identify_count == 1
    assert stored_connection(cfg) == err


async def test_token_revoked_while_running_is_an_error(
    config: Config, gateway: LocalDiscordGateway, start_daemon: Any, watcher: Any
) -> None:
    cfg = discord_config(config, gateway)
    _, w = await connected(start_daemon, watcher, cfg)
    gateway.reject_all_tokens()
    await gateway.drop(4000)
    err = await w.state("error")
    assert w.states() == ["disconnected", "error"]
    assert err["reason"].startswith("token rejected (4004): set a new one with")
    assert err["code"] == 4004 and "username" not in err
    assert stored_connection(cfg) == err


# -- settings and lifecycle --------------------------------------------------------------------


async def test_not_configured_then_a_token_connects(
    config: Config, gateway: LocalDiscordGateway, start_daemon: Any, watcher: Any
) -> None:
    cfg = discord_config(config, gateway)
    del cfg.plugins["discord"]["bot_token"]
    await start(start_daemon, cfg)
    w = await watcher(cfg)
    idle = await w.state("not_configured")
    assert idle["reason"] == "no bot token set"
    await w.client.request("plugins.update_settings", name="discord", settings={"bot_token": TOKEN})
    up = await w.state("connected")
    assert w.states() == ["not_configured", "stopped", "connecting", "connected"]
    assert up["username"] == BOT


async def test_new_token_reconnects_and_disable_stops(
    config: Config, gateway: LocalDiscordGateway, start_daemon: Any, watcher: Any
) -> None:
    cfg = discord_config(config, gateway)
    _, w = await connected(start_daemon, watcher, cfg)
    second = "second-token-abcdefghijklmnop"
    gateway.set_tokens({TOKEN, second})
    await w.client.request(
        "plugins.update_settings", name="discord", settings={"bot_token": second}
    )
    await w.state("connected")
    assert w.states() == ["stopped", "connecting", "connected"]
    # The old bot's name is gone the moment the token changes, until the new one identifies.
    assert all("username" not in e.data for e in w.events[:2])
    assert gateway.identify_count == 2
    # status_text applies live: no new connection.
    info = await w.client.request(
        "plugins.update_settings", name="discord", settings={"status_text": "watching the harness"}
    )
    assert info["status"] == "running" and gateway.identify_count == 2
    await gateway.wait_for(lambda g: g.presence_updates[-1:] != [], timeout=HANG_GUARD)
    assert gateway.presence_updates[-1]["activities"][0]["name"] == "watching the harness"
    await w.client.request("plugins.set_enabled", name="discord", enabled=False)
    stopped = await w.state("stopped")
    assert w.states()[-1] == "stopped" and gateway.identify_count == 2
    assert stored_connection(cfg) == stopped
    await gateway.wait_for(lambda g: g.active_sessions == 0, timeout=HANG_GUARD)


async def test_a_stop_ends_the_session_with_a_normal_close_and_a_drop_does_not(
    config: Config, gateway: LocalDiscordGateway, start_daemon: Any, watcher: Any
) -> None:
    """Reconnecting closes with 4000 so the session resumes; a stop closes with 1000, which
    ends the session at Discord and shows the bot offline at once instead of after it times
    out."""
    gateway.heartbeat_interval = 300
    cfg = discord_config(config, gateway)
    _, w = await connected(start_daemon, watcher, cfg)
    await gateway.pause_heartbeat_acks(True)
    await w.state("disconnected")  # the plugin closed the zombie, to resume
    await gateway.pause_heartbeat_acks(False)
    await w.state("connected")
    assert gateway.client_close_codes == [4000] and gateway.resume_count == 1
    await w.client.request("plugins.set_enabled", name="discord", enabled=False)
    await w.state("stopped")
    await gateway.wait_for(lambda g: len(g.client_close_codes) == 2, timeout=HANG_GUARD)
    assert gateway.client_close_codes == [4000, 1000]
    assert gateway.active_sessions == 0


async def test_two_hundred_flaps_leave_stored_equal_to_published(
    config: Config, gateway: LocalDiscordGateway, start_daemon: Any, watcher: Any
) -> None:
    cfg = discord_config(config, gateway)
    _, w = await connected(start_daemon, watcher, cfg)
    # Another writer's key, through its own connection while the daemon runs.
    with sqlite3.connect(cfg.database_path) as db:
        db.execute(
            "UPDATE plugin_config SET metadata = json_set(metadata, '$.owner', 'ops') "
            "WHERE name = 'discord'"
        )
    for n in range(1, 201):
        await gateway.drop(4000)
        await gateway.wait_for(
            lambda g, n=n: g.resume_count >= n and g.active_sessions == 1, timeout=HANG_GUARD
        )
    await w.until(lambda d: len(w.events) >= 400)
    assert w.states() == ["disconnected", "connected"] * 200
    assert_seqs_increase(w.events)
    with sqlite3.connect(cfg.database_path) as db:
        (meta,) = db.execute("SELECT metadata FROM plugin_config WHERE name = 'discord'").fetchone()
    meta = json.loads(meta)
    assert meta["connection"] == w.events[-1].data
    assert meta["owner"] == "ops"


# -- the daemon as a process -------------------------------------------------------------------


def write_config(state_dir: Path, gw: LocalDiscordGateway) -> Path:
    path = state_dir / "harness.toml"
    path.write_text(
        "[daemon]\n"
        f'socket = "{state_dir}/run/harness.sock"\n'
        f'database = "{state_dir}/state/state.db"\n'
        "[plugins.discord]\n"
        f'bot_token = "{TOKEN}"\n'
        f'api_base_url = "{gw.api_base_url}"\n'
        f'gateway_url = "{gw.gateway_url}"\n'
    )
    return path


def spawn(path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--config", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ},
    )


async def test_sigterm_records_stopped_and_restart_never_shows_old_connected(
    state_dir: Path, gateway: LocalDiscordGateway
) -> None:
    path = write_config(state_dir, gateway)
    cfg = Config(
        daemon=DaemonConfig(
            socket=str(state_dir / "run/harness.sock"), database=str(state_dir / "state/state.db")
        )
    )
    proc = spawn(path)
    try:
        await wait_until(lambda: stored_connection(cfg).get("state") == "connected")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=HANG_GUARD) == 0
        assert stored_connection(cfg)["state"] == "stopped"
        assert not cfg.socket_path.exists()
        output = proc.stdout.read().decode() if proc.stdout else ""
        assert TOKEN not in output

        # Now a crash: SIGKILL leaves "connected" stored; the next daemon must not show it.
        proc = spawn(path)
        await wait_until(
            lambda: (
                gateway.identify_count == 2 and stored_connection(cfg).get("state") == "connected"
            ),
        )
        before_crash = stored_connection(cfg)["seq"]
        proc.kill()
        proc.wait(timeout=HANG_GUARD)
        assert stored_connection(cfg)["state"] == "connected"  # what a crash leaves behind
        proc = spawn(path)
        await wait_until(
            lambda: (
                gateway.identify_count == 3 and stored_connection(cfg).get("state") == "connected"
            ),
        )
        with sqlite3.connect(cfg.database_path) as db:
            after = [
                json.loads(d)
                for (d,) in db.execute(
                    "SELECT data FROM events WHERE name = 'discord:connection' AND seq > ? "
                    "ORDER BY seq",
                    (before_crash,),
                )
            ]
        assert [a["state"] for a in after] == ["stopped", "connecting", "connected"]
        assert after[0]["reason"] == "daemon restarted"
        assert after[0]["seq"] > before_crash
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=HANG_GUARD)
