"""The plugin host, driven through the socket: live enable/disable and settings, failure
isolation, bounded stops, the connection convention, secrets."""

from __future__ import annotations

import asyncio
import io
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from harness.client import Client, ClientError
from harness.config import Config
from harness.plugin import PluginContext
from harness.protocol import Event
from tests.conftest import HANG_GUARD, StartDaemon, collect, conn_states, next_matching, wait_until
from tests.sample_plugins import Crashy, EarlyFail, Echo, Forgetful, Leaky, Manual, Stuck

Connect = Callable[..., Awaitable[Client]]
SECRET = "tok-Qx7-top-secret-value"


def with_plugins(config: Config, stop_timeout: float | None = None, **tables: Any) -> Config:
    daemon = config.daemon
    if stop_timeout is not None:
        daemon = msgspec.structs.replace(daemon, stop_timeout=stop_timeout)
    return msgspec.structs.replace(config, daemon=daemon, plugins=tables)


@pytest.fixture
def configured(config: Config) -> Config:
    return with_plugins(config, echo={"token": SECRET})


def db_row(config: Config, name: str) -> tuple[bool, dict[str, Any], dict[str, Any]]:
    """A plugin's row read with a separate sqlite3 connection (what the TUI's seed sees)."""
    with sqlite3.connect(config.database_path) as conn:
        enabled, settings, metadata = conn.execute(
            "SELECT enabled, settings, metadata FROM plugin_config WHERE name = ?", (name,)
        ).fetchone()
    return bool(enabled), msgspec.json.decode(settings), msgspec.json.decode(metadata)


def db_events(config: Config, since: int = 0) -> list[tuple[int, str, dict[str, Any]]]:
    with sqlite3.connect(config.database_path) as conn:
        rows = conn.execute(
            "SELECT seq, name, data FROM events WHERE seq > ? ORDER BY seq", (since,)
        ).fetchall()
    return [(seq, name, msgspec.json.decode(data)) for seq, name, data in rows]


async def until_event(client: Client, name: str, **data: Any) -> Event:
    """The next event called ``name`` whose data has these values."""
    return await next_matching(
        client, lambda e: e.event == name and all(e.data.get(k) == v for k, v in data.items())
    )


async def events_until(client: Client, name: str, **data: Any) -> list[Event]:
    """Every event up to and including the first ``name`` event with these values."""
    got: list[Event] = []
    async with asyncio.timeout(HANG_GUARD):
        while True:
            e = await client.next_event()
            got.append(e)
            if e.event == name and all(e.data.get(k) == v for k, v in data.items()):
                return got


# -- live enable / disable ----------------------------------------------------------------------


async def test_disable_stops_the_connection_and_enable_restarts_without_a_daemon_restart(
    start_daemon: StartDaemon, connect: Connect, configured: Config
) -> None:
    await start_daemon(cfg=configured)
    client = await connect()
    before = await client.request("status")
    await client.subscribe(["echo:*", "plugin:*"])

    info = await client.request("plugins.set_enabled", name="echo", enabled=False)
    assert (info["enabled"], info["status"]) == (False, "disabled")
    assert info["metadata"]["connection"]["state"] == "stopped"
    got = await events_until(client, "plugin:status", plugin="echo", status="disabled")
    assert conn_states(got) == ["stopped"]
    assert db_row(configured, "echo")[0] is False

    info = await client.request("plugins.set_enabled", name="echo", enabled=True)
    assert (info["enabled"], info["status"]) == (True, "running")
    got = await events_until(client, "plugin:status", plugin="echo", status="running")
    assert conn_states(got) == ["connecting", "connected"]
    connected = [e for e in got if e.event == "echo:connection"][-1]
    enabled, _, metadata = db_row(configured, "echo")
    assert enabled is True and metadata["connection"] == connected.data

    after = await client.request("status")  # same process, same start, same connection
    assert (after["pid"], after["started"]) == (before["pid"], before["started"])


async def test_enabling_a_running_plugin_changes_nothing(
    start_daemon: StartDaemon, connect: Connect, configured: Config
) -> None:
    daemon = await start_daemon(cfg=configured)
    client = await connect()
    seq = daemon.bus.published_seq  # type: ignore[union-attr]
    info = await client.request("plugins.set_enabled", name="echo", enabled=True)
    assert info["status"] == "running"
    assert daemon.bus.published_seq == seq  # type: ignore[union-attr]


async def test_a_disabled_plugin_stays_disabled_across_a_restart(
    start_daemon: StartDaemon, connect: Connect, configured: Config
) -> None:
    daemon = await start_daemon(cfg=configured)
    client = await connect()
    await client.request("plugins.set_enabled", name="echo", enabled=False)
    await client.close()
    await daemon.stop()
    seq = db_events(configured)[-1][0]
    await start_daemon(cfg=configured)
    client = await connect()
    info = await client.request("plugins.get", name="echo")
    assert (info["enabled"], info["status"]) == (False, "disabled")
    assert [n for _, n, _ in db_events(configured, seq)] == ["plugin:status"]


# -- settings -----------------------------------------------------------------------------------

BAD_SETTINGS: list[tuple[str, Any, str]] = [
    ("retries", "three", "expected a whole number, got text"),
    ("retries", True, "expected a whole number, got true/false"),
    ("retries", 11, "must be at most 10"),
    ("retries", -1, "must be at least 0"),
    ("colour", "red", "unknown setting; known: token, prefix, retries, verbose, mode, greeting"),
    ("mode", "slow", "must be one of: fast, safe"),
    ("verbose", "yes", "expected true or false, got text"),
    ("prefix", 5, "expected text, got a whole number"),
    ("token", "   ", "required; must not be empty"),
]


@pytest.mark.parametrize(
    ("key", "value", "problem"), BAD_SETTINGS, ids=[f"{k}={v!r}" for k, v, _ in BAD_SETTINGS]
)
async def test_an_invalid_setting_is_named_and_nothing_is_saved(
    start_daemon: StartDaemon,
    connect: Connect,
    configured: Config,
    key: str,
    value: Any,
    problem: str,
) -> None:
    daemon = await start_daemon(cfg=configured)
    client = await connect()
    before = await client.request("plugins.get", name="echo")
    seq = daemon.bus.published_seq  # type: ignore[union-attr]
    with pytest.raises(ClientError) as info:
        # A valid change rides along: it must not be saved either.
        await client.request(
            "plugins.update_settings", name="echo", settings={"greeting": "hello", key: value}
        )
    assert info.value.code == "invalid_settings"
    assert info.value.details == {"fields": {key: problem}}
    assert key in info.value.message and "not saved" in info.value.message
    assert await client.request("plugins.get", name="echo") == before
    assert db_row(configured, "echo")[1] == {}
    assert daemon.bus.published_seq == seq  # type: ignore[union-attr]


async def test_every_invalid_field_is_reported_at_once(
    start_daemon: StartDaemon, connect: Connect, configured: Config
) -> None:
    await start_daemon(cfg=configured)
    client = await connect()
    with pytest.raises(ClientError) as info:
        await client.request(
            "plugins.update_settings",
            name="echo",
            settings={"retries": 99, "mode": "x", "nope": 1, "prefix": "ok"},
        )
    assert sorted(info.value.details["fields"]) == ["mode", "nope", "retries"]


async def test_a_live_setting_applies_in_place_and_another_restarts_the_plugin(
    start_daemon: StartDaemon, connect: Connect, configured: Config
) -> None:
    await start_daemon(cfg=configured)
    client = await connect()
    await client.subscribe(["echo:*", "plugin:*"])

    info = await client.request("plugins.update_settings", name="echo", settings={"greeting": "yo"})
    assert info["settings"]["greeting"] == "yo" and info["status"] == "running"
    got = await events_until(client, "plugin:settings", plugin="echo")
    assert got[-1].data["changed"] == ["greeting"] and conn_states(got) == []

    info = await client.request("plugins.update_settings", name="echo", settings={"prefix": "New"})
    got = await events_until(client, "plugin:status", plugin="echo", status="running")
    assert conn_states(got) == ["stopped", "connecting", "connected"]
    assert got[-2].data["username"] == "NewBot#0001"
    assert db_row(configured, "echo")[1] == {"greeting": "yo", "prefix": "New"}
    assert db_row(configured, "echo")[2]["connection"] == got[-2].data


async def test_unsetting_falls_back_to_the_config_table_then_the_default(
    start_daemon: StartDaemon, connect: Connect, config: Config
) -> None:
    cfg = with_plugins(config, echo={"token": SECRET, "prefix": "Cfg"})
    await start_daemon(cfg=cfg)
    client = await connect()
    assert (await client.request("plugins.get", name="echo"))["settings"]["prefix"] == "Cfg"
    info = await client.request(
        "plugins.update_settings", name="echo", settings={"prefix": "Mine", "retries": 7}
    )
    assert (info["settings"]["prefix"], info["settings"]["retries"]) == ("Mine", 7)
    info = await client.request(
        "plugins.update_settings", name="echo", settings={"prefix": None, "retries": None}
    )
    assert (info["settings"]["prefix"], info["settings"]["retries"]) == ("Cfg", 3)
    assert db_row(cfg, "echo")[1] == {}


async def test_settings_of_a_disabled_plugin_are_saved_without_starting_it(
    start_daemon: StartDaemon, connect: Connect, configured: Config
) -> None:
    await start_daemon(cfg=configured)
    client = await connect()
    await client.request("plugins.set_enabled", name="echo", enabled=False)
    info = await client.request(
        "plugins.update_settings", name="echo", settings={"prefix": "Later"}
    )
    assert info["status"] == "disabled" and info["metadata"]["connection"]["state"] == "stopped"
    info = await client.request("plugins.set_enabled", name="echo", enabled=True)
    assert info["metadata"]["connection"]["username"] == "LaterBot#0001"


# -- secrets ------------------------------------------------------------------------------------


async def test_a_secret_is_write_only_and_never_travels(
    start_daemon: StartDaemon, connect: Connect, config: Config, daemon_log: io.StringIO
) -> None:
    daemon = await start_daemon()  # no token yet: not configured
    client = await connect()
    wire: list[bytes] = []
    await client.subscribe(["*"], since=0)
    info = await client.request("plugins.get", name="echo")
    assert info["settings"]["token"] == {"set": False}
    assert info["metadata"]["connection"]["state"] == "not_configured"

    info = await client.request("plugins.update_settings", name="echo", settings={"token": SECRET})
    assert info["settings"]["token"] == {"set": True}
    assert info["metadata"]["connection"]["state"] == "connected"
    for method in ("status", "plugins.list"):
        wire.append(msgspec.json.encode(await client.request(method)))
    wire.append(msgspec.json.encode(info))
    info = await client.request("plugins.update_settings", name="echo", settings={"token": None})
    assert info["settings"]["token"] == {"set": False}
    assert info["metadata"]["connection"]["state"] == "not_configured"
    last = daemon.bus.published_seq  # type: ignore[union-attr]
    async with asyncio.timeout(HANG_GUARD):
        while True:
            e = await client.next_event()
            wire.append(msgspec.json.encode(e))
            if e.seq == last:
                break
    assert len(wire) > 5

    assert all(SECRET not in frame.decode() for frame in wire)
    assert all(SECRET not in str(data) for _, _, data in db_events(config))
    assert SECRET not in daemon_log.getvalue()


async def test_a_careless_plugin_cannot_leak_its_secret_into_logs_reasons_or_events(
    start_daemon: StartDaemon, connect: Connect, config: Config, daemon_log: io.StringIO
) -> None:
    key = "sk-live-Leaky-0123456789"
    cfg = with_plugins(config, leaky={"api_key": key})
    await start_daemon(plugins={"leaky": Leaky, "echo": Echo}, cfg=cfg)
    client = await connect()
    info = await client.request("plugins.get", name="leaky")
    assert info["status"] == "error" and "the service rejected key" in info["reason"]
    output = daemon_log.getvalue()
    assert "starting with api_key=***" in output and "Traceback" in output
    assert key not in output
    assert key not in msgspec.json.encode(info).decode()
    assert all(key not in str(data) for _, _, data in db_events(config))

    # A new key set over the socket is masked from then on, too.
    other = "sk-live-Another-9876543210"
    info = await client.request(
        "plugins.update_settings", name="leaky", settings={"api_key": other}
    )
    assert info["status"] == "error"
    assert other not in daemon_log.getvalue() and other not in str(info)
    assert all(other not in str(data) for _, _, data in db_events(config))


# -- failures stay with the plugin ----------------------------------------------------------------


async def test_a_plugin_raising_in_start_is_an_error_and_the_rest_carries_on(
    start_daemon: StartDaemon, connect: Connect, config: Config
) -> None:
    cfg = with_plugins(config, echo={"token": SECRET})
    await start_daemon(plugins={"crashy": Crashy, "echo": Echo}, cfg=cfg)
    client = await connect()
    status = {p["name"]: p for p in (await client.request("status"))["plugins"]}
    assert status["crashy"]["status"] == "error"
    assert status["crashy"]["reason"] == "start failed: boom at start"
    assert status["crashy"]["connection"]["state"] == "error"
    assert status["crashy"]["connection"]["reason"] == status["crashy"]["reason"]
    assert status["echo"]["status"] == "running"
    assert status["echo"]["connection"]["state"] == "connected"
    # The failed one can be retried live and the healthy one keeps working.
    info = await client.request("plugins.set_enabled", name="crashy", enabled=True)
    assert info["status"] == "error"
    info = await client.request(
        "plugins.update_settings", name="echo", settings={"prefix": "Still"}
    )
    assert info["metadata"]["connection"]["username"] == "StillBot#0001"


async def test_a_stop_that_hangs_is_bounded_and_marked_error(
    start_daemon: StartDaemon, connect: Connect, config: Config
) -> None:
    cfg = with_plugins(config, stop_timeout=0.2)
    await start_daemon(plugins={"stuck": Stuck}, cfg=cfg)
    client = await connect()
    assert (await client.request("plugins.get", name="stuck"))["status"] == "running"
    # Its stop never returns: without the bound this request would never be answered. The
    # reason below says the bound cut it short; the deadline only guards a hang (no wall-clock
    # bound here: a loaded machine may take seconds over 0.2 s of waiting).
    async with asyncio.timeout(HANG_GUARD):
        info = await client.request("plugins.set_enabled", name="stuck", enabled=False)
    assert info["enabled"] is False and info["status"] == "error"
    assert info["reason"] == "did not stop within 0.2 s; its tasks were cancelled"
    # It can be started again.
    info = await client.request("plugins.set_enabled", name="stuck", enabled=True)
    assert info["status"] == "running" and info.get("reason") is None


async def test_a_daemon_stop_is_bounded_by_a_hanging_plugin(
    start_daemon: StartDaemon, config: Config
) -> None:
    cfg = with_plugins(config, stop_timeout=0.2, echo={"token": SECRET})
    daemon = await start_daemon(plugins={"stuck": Stuck, "echo": Echo}, cfg=cfg)
    async with asyncio.timeout(HANG_GUARD):  # it would never end unbounded: see the reason below
        await daemon.stop()
    statuses = [d for _, n, d in db_events(cfg) if n == "plugin:status"]
    assert {
        "plugin": "stuck",
        "status": "error",
        "enabled": True,
        "reason": "did not stop within 0.2 s; its tasks were cancelled",
    } in statuses
    assert db_row(cfg, "echo")[2]["connection"]["state"] == "stopped"


async def test_a_failing_background_task_marks_the_plugin_error(
    start_daemon: StartDaemon, connect: Connect, config: Config
) -> None:
    cfg = with_plugins(config, stop_timeout=0.2, stuck={"fail": True})
    await start_daemon(plugins={"stuck": Stuck}, cfg=cfg)
    client = await connect()
    await client.subscribe(["plugin:status"], since=0)
    await until_event(client, "plugin:status", plugin="stuck", status="error")
    info = await client.request("plugins.get", name="stuck")
    assert info["status"] == "error"
    assert info["reason"] == "task failed: task gave up"


async def test_a_task_failing_while_start_still_runs_marks_the_plugin_error(
    start_daemon: StartDaemon, connect: Connect, config: Config
) -> None:
    await start_daemon(plugins={"earlyfail": EarlyFail})
    client = await connect()
    await client.subscribe(["*"], since=0)
    await until_event(client, "plugin:status", plugin="earlyfail", status="error")
    info = await client.request("plugins.get", name="earlyfail")
    assert info["status"] == "error"
    assert info["reason"] == "task failed: task died young"
    assert info["metadata"]["connection"]["state"] == "error"


async def test_the_host_records_stopped_for_a_plugin_that_forgets(
    start_daemon: StartDaemon, connect: Connect, config: Config
) -> None:
    daemon = await start_daemon(plugins={"forgetful": Forgetful})
    client = await connect()
    info = await client.request("plugins.set_enabled", name="forgetful", enabled=False)
    assert info["metadata"]["connection"] == {
        "state": "stopped",
        "username": "Forgetful#1",
        "reason": "plugin disabled",
        "seq": info["metadata"]["connection"]["seq"],
        "since": info["metadata"]["connection"]["since"],
    }
    await client.request("plugins.set_enabled", name="forgetful", enabled=True)
    await client.close()
    await daemon.stop()
    _, _, metadata = db_row(config, "forgetful")
    assert metadata["connection"]["state"] == "stopped"
    assert metadata["connection"]["reason"] == "daemon shut down"
    last = [d for _, n, d in db_events(config) if n == "forgetful:connection"][-1]
    assert metadata["connection"] == last


# -- the connection convention ------------------------------------------------------------------


async def test_set_connection_merges_partial_updates_and_persists_before_publishing(
    start_daemon: StartDaemon, connect: Connect, config: Config
) -> None:
    Manual.ctx = None
    await start_daemon(plugins={"manual": Manual})
    ctx = Manual.ctx
    assert ctx is not None
    client = await connect()
    await client.subscribe(["manual:connection"])

    structs = [
        await ctx.set_connection("connected", username="Bot#1", attempt=None),
        await ctx.set_connection("disconnected", reason="network down", attempt=1, code=4000),
        await ctx.set_connection("disconnected", reason="still down", attempt=2),
        await ctx.set_connection("connected"),  # a resume: no username given
        await ctx.set_connection("connected", username=None),  # None removes a field
    ]
    a, b, c, d, e = (msgspec.to_builtins(x) for x in structs)
    published = await collect(client, 5)

    assert [p.data for p in published] == [a, b, c, d, e]
    assert [p.seq for p in published] == [x["seq"] for x in (a, b, c, d, e)]
    assert b == {
        "state": "disconnected",
        "username": "Bot#1",
        "reason": "network down",
        "code": 4000,
        "attempt": 1,
        "seq": b["seq"],
        "since": b["since"],
    }
    assert c["since"] == b["since"] and c["attempt"] == 2  # same state: since is kept
    assert "code" not in c  # transient: not carried over
    assert d == {"state": "connected", "username": "Bot#1", "seq": d["seq"], "since": d["since"]}
    assert d["since"] >= c["since"] and e["since"] == d["since"]
    assert "username" not in e
    assert ctx.connection == structs[-1]
    assert e == db_row(config, "manual")[2]["connection"]

    # A plugin's own fields go in extra, which is identity: kept until replaced.
    f = await ctx.set_connection("connected", extra={"region": "eu"})
    g = await ctx.set_connection("disconnected", reason="x")
    assert f.extra == g.extra == {"region": "eu"}
    with pytest.raises(TypeError, match="extra"):
        await ctx.set_connection("connected", region="eu")
    with pytest.raises(ValueError, match="unknown connection state"):
        await ctx.set_connection("exploded")
    with pytest.raises(ValueError, match="set_connection only"):
        await ctx.update_metadata(connection={"state": "connected"})


async def test_plugin_metadata_and_broadcasts(
    start_daemon: StartDaemon, connect: Connect, config: Config
) -> None:
    Manual.ctx = None
    await start_daemon(plugins={"manual": Manual})
    ctx = Manual.ctx
    assert ctx is not None
    client = await connect()
    await client.subscribe(["manual:*"])
    await ctx.set_connection("connected")
    await ctx.update_metadata(guilds=3, note="hi")
    await ctx.update_metadata(note=None)
    await ctx.broadcast("message", {"text": "hello"})
    got = await collect(client, 2)
    assert [(g.event, g.data) for g in got][1] == ("manual:message", {"text": "hello"})
    _, _, metadata = db_row(config, "manual")
    assert metadata == {
        "connection": got[0].data,
        "guilds": 3,
        # The daemon's own description of the plugin, for readers of the database alone.
        "plugin": {"version": "0.1", "description": "", "schema": [], "settings": {}},
    }
    info = await client.request("plugins.get", name="manual")
    assert info["metadata"] == metadata


async def test_a_second_writer_keeps_its_metadata_key_through_connection_changes(
    start_daemon: StartDaemon, connect: Connect, configured: Config
) -> None:
    """An operator's sqlite3 session writes metadata while the daemon runs (WAL, a real second
    writer); the daemon's connection writes merge, they do not replace."""
    await start_daemon(cfg=configured)
    client = await connect()
    await client.subscribe(["echo:connection"])
    with sqlite3.connect(configured.database_path, timeout=5) as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        other.execute(
            "UPDATE plugin_config SET metadata = json_set(metadata, '$.operator_note', ?) "
            "WHERE name = 'echo'",
            ("keep me",),
        )
    other.close()
    for enabled in (False, True, False, True):
        await client.request("plugins.set_enabled", name="echo", enabled=enabled)
    await client.request("plugins.update_settings", name="echo", settings={"prefix": "Z"})
    last = await until_event(client, "echo:connection", state="connected", username="ZBot#0001")
    _, _, metadata = db_row(configured, "echo")
    assert metadata["operator_note"] == "keep me"
    assert metadata["connection"] == last.data
    assert (await client.request("plugins.get", name="echo"))["metadata"] == metadata


async def test_stored_connection_equals_the_last_published_one_after_a_stop(
    start_daemon: StartDaemon, connect: Connect, configured: Config, state_dir: Path
) -> None:
    daemon = await start_daemon(cfg=configured)
    client = await connect()
    await client.subscribe(["echo:connection"])
    await client.request("plugins.update_settings", name="echo", settings={"prefix": "Q"})
    await until_event(client, "echo:connection", state="connected")
    await client.close()
    await daemon.stop()
    last = [d for _, n, d in db_events(configured) if n == "echo:connection"][-1]
    assert last["state"] == "stopped"
    assert db_row(configured, "echo")[2]["connection"] == last


async def test_a_row_of_an_uninstalled_plugin_never_shows_a_live_connection(
    start_daemon: StartDaemon, config: Config
) -> None:
    # A run with a plugin that is later uninstalled, and a crash that left it "connected".
    daemon = await start_daemon(plugins={"echo": Echo, "forgetful": Forgetful})
    await daemon.stop()
    with sqlite3.connect(config.database_path) as db:
        db.execute(
            "UPDATE plugin_config SET metadata = json_set(metadata, '$.connection', "
            'json(\'{"state": "connected", "username": "Forgetful#1", "seq": 1}\')) '
            "WHERE name = 'forgetful'"
        )
    await start_daemon(plugins={"echo": Echo})
    with sqlite3.connect(config.database_path) as db:
        (meta,) = db.execute(
            "SELECT metadata FROM plugin_config WHERE name = 'forgetful'"
        ).fetchone()
        (last,) = db.execute(
            "SELECT data FROM events WHERE name = 'forgetful:connection' ORDER BY seq DESC"
        ).fetchone()
    conn = msgspec.json.decode(meta)["connection"]
    assert conn["state"] == "stopped" and conn["reason"] == "plugin not installed"
    assert conn["username"] == "Forgetful#1"
    assert conn == msgspec.json.decode(last)


async def test_metadata_describes_the_plugin_without_its_secrets(
    start_daemon: StartDaemon, config: Config, connect: Callable[[], Awaitable[Client]]
) -> None:
    await start_daemon()
    client = await connect()
    secret = "plain-text-secret-value-42"
    await client.request(
        "plugins.update_settings", name="echo", settings={"token": secret, "retries": 7}
    )
    _, stored, metadata = db_row(config, "echo")
    assert stored["token"] == secret  # the settings column holds it; nothing else may
    described = metadata["plugin"]
    assert secret not in msgspec.json.encode(metadata).decode()
    assert described["version"] == Echo.version
    assert [f["name"] for f in described["schema"]] == [f.name for f in Echo.settings_schema]
    assert described["settings"]["token"] == {"set": True}
    assert described["settings"]["retries"] == 7
    info = await client.request("plugins.get", name="echo")
    assert described["settings"] == info["settings"]

    await client.request("plugins.set_enabled", name="echo", enabled=False)
    statuses = [d for _, n, d in db_events(config) if n == "plugin:status"]
    assert statuses[-1] == {
        "plugin": "echo",
        "status": "disabled",
        "enabled": False,
        "reason": None,
    }


async def test_requests_during_shutdown_cannot_restart_a_plugin(
    start_daemon: StartDaemon, connect: Callable[[], Awaitable[Client]], config: Config
) -> None:
    """SIGTERM is being handled (a plugin takes a while to stop) when a client enables
    another plugin: refused, and every stored connection ends 'stopped'."""

    class SlowStop(Echo):
        name = "slowstop"

        async def stop(self, ctx: Any) -> None:
            await asyncio.sleep(0.3)
            await super().stop(ctx)

    daemon = await start_daemon(
        plugins={"echo": Echo, "slowstop": SlowStop},
        cfg=msgspec.structs.replace(
            config, plugins={"echo": {"token": "t0ken"}, "slowstop": {"token": "t0ken"}}
        ),
    )
    client = await connect()
    await client.request("plugins.set_enabled", name="echo", enabled=False)
    stopping = asyncio.create_task(daemon.stop())
    assert daemon.orchestrator is not None
    orchestrator = daemon.orchestrator
    await wait_until(lambda: orchestrator.closing)
    with pytest.raises(ClientError) as refused:
        await client.request("plugins.set_enabled", name="echo", enabled=True)
    assert refused.value.code == "shutting_down"
    await stopping
    for name in ("echo", "slowstop"):
        assert db_row(config, name)[2]["connection"]["state"] == "stopped"


class ApplyFails(Echo):
    """Echo whose in-place apply raises, as a live update on a closing socket would."""

    async def apply_settings(self, ctx: PluginContext, changed: frozenset[str]) -> bool:
        raise ConnectionResetError("Cannot write to closing transport")


async def test_a_failing_live_apply_restarts_the_plugin_instead_of_stranding_it(
    start_daemon: StartDaemon, connect: Connect, configured: Config
) -> None:
    await start_daemon(plugins={"echo": ApplyFails}, cfg=configured)
    client = await connect()
    await client.subscribe(["echo:*", "plugin:*"])
    info = await client.request("plugins.update_settings", name="echo", settings={"greeting": "yo"})
    assert info["status"] == "running" and not info.get("reason")
    got = await events_until(client, "plugin:status", plugin="echo", status="running")
    assert conn_states(got) == ["stopped", "connecting", "connected"]
    assert db_row(configured, "echo")[1] == {"greeting": "yo"}
