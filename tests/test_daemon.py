"""The daemon as a process (`python -m harness run`): signals, one instance per socket, stale
sockets, database refusals, restarts; and the restart invariants in-process."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from harness.client import Client
from harness.config import Config
from harness.protocol import Event, Replayed
from tests.conftest import (
    HANG_GUARD,
    SpawnDaemon,
    StartDaemon,
    file_digest,
    subprocess_env,
    wait_until,
    write_config,
)
from tests.test_store import REFUSALS

Connect = Callable[..., Awaitable[Client]]
TOKEN = "disc-Tk9.never-logged.abcdefghijkl"


def db_events(db: Path, since: int = 0) -> list[tuple[int, str, dict[str, Any]]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT seq, name, data FROM events WHERE seq > ? ORDER BY seq", (since,)
        ).fetchall()
    return [(seq, name, msgspec.json.decode(data)) for seq, name, data in rows]


def db_metadata(db: Path, plugin: str) -> dict[str, Any]:
    with sqlite3.connect(db) as conn:
        (raw,) = conn.execute(
            "SELECT metadata FROM plugin_config WHERE name = ?", (plugin,)
        ).fetchone()
    return msgspec.json.decode(raw)


def set_stored_connection(db: Path, plugin: str, connection: dict[str, Any]) -> None:
    """What a crash while connected leaves behind, written as any other process would."""
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE plugin_config SET metadata = json_set(metadata, '$.connection', json(?)) "
            "WHERE name = ?",
            (msgspec.json.encode(connection).decode(), plugin),
        )
    conn.close()


# -- signals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signal_stops_the_daemon_cleanly(
    spawn_daemon: SpawnDaemon, state_dir: Path, sig: signal.Signals
) -> None:
    cfg = write_config(state_dir)
    daemon = await spawn_daemon(cfg)
    db, sock = state_dir / "state" / "state.db", state_dir / "run" / "harness.sock"
    client = await Client.connect(sock)
    st = await client.request("status")
    assert st["pid"] == daemon.pid
    (discord,) = st["plugins"]
    assert discord["connection"]["state"] == "not_configured"  # no token: no network
    await client.close()

    daemon.proc.send_signal(sig)
    assert await daemon.wait() == 0, daemon.stderr
    assert not sock.exists()
    assert f"{sig.name} received; stopping" in daemon.stderr
    connection = db_metadata(db, "discord")["connection"]
    assert connection["state"] == "stopped"
    published = [d for _, n, d in db_events(db) if n == "discord:connection"]
    assert published[-1] == connection
    assert (
        "plugin:status",
        {"plugin": "discord", "status": "stopped", "enabled": True, "reason": None},
    ) in [(n, d) for _, n, d in db_events(db)]


async def test_the_secret_never_reaches_the_daemons_log_output(
    spawn_daemon: SpawnDaemon, state_dir: Path
) -> None:
    # A closed local port instead of Discord: the plugin tries, fails and retries, offline.
    closed = "http://127.0.0.1:9"
    cfg = write_config(
        state_dir,
        log_level="debug",
        plugins={"discord": {"api_base_url": closed, "gateway_url": closed}},
    )
    daemon = await spawn_daemon(cfg)
    client = await Client.connect(state_dir / "run" / "harness.sock")
    await client.subscribe(["discord:connection"])
    info = await client.request(
        "plugins.update_settings", name="discord", settings={"bot_token": TOKEN}
    )
    assert info["settings"]["bot_token"] == {"set": True}
    async with asyncio.timeout(HANG_GUARD):  # the attempt was made, and failed
        while (await client.next_event()).data["state"] != "disconnected":
            pass
    await client.close()
    daemon.proc.send_signal(signal.SIGTERM)
    assert await daemon.wait() == 0
    assert "DEBUG" in daemon.stderr and "cannot reach Discord" in daemon.stderr
    assert TOKEN not in daemon.stderr
    db = state_dir / "state" / "state.db"
    assert all(TOKEN not in str(data) for _, _, data in db_events(db))


# -- one daemon per socket, stale sockets, paths it must not touch --------------------------------


async def test_a_second_instance_is_refused(spawn_daemon: SpawnDaemon, state_dir: Path) -> None:
    cfg = write_config(state_dir)
    first = await spawn_daemon(cfg)
    second = await spawn_daemon(cfg, ready=False)
    assert await second.wait() == 1
    assert "a harness daemon is already running" in second.stderr
    assert f"pid {first.pid}" in second.stderr
    client = await Client.connect(state_dir / "run" / "harness.sock")
    assert (await client.request("status"))["pid"] == first.pid
    await client.close()


async def test_a_second_instance_on_the_same_database_is_refused(
    spawn_daemon: SpawnDaemon, state_dir: Path
) -> None:
    await spawn_daemon(write_config(state_dir))
    other = write_config(state_dir, name="other.toml", socket=str(state_dir / "b" / "h.sock"))
    second = await spawn_daemon(other, ready=False)
    assert await second.wait() == 1
    assert "already running" in second.stderr and "state.db.lock" in second.stderr


async def test_a_killed_daemon_is_replaced_and_its_connected_state_is_not_shown(
    spawn_daemon: SpawnDaemon, state_dir: Path
) -> None:
    cfg = write_config(state_dir)
    sock, db = state_dir / "run" / "harness.sock", state_dir / "state" / "state.db"
    first = await spawn_daemon(cfg)
    first.proc.kill()
    assert await first.wait() == -signal.SIGKILL
    assert sock.exists()  # left behind: nobody removed it
    old_max = db_events(db)[-1][0]
    set_stored_connection(
        db,
        "discord",
        {"state": "connected", "seq": old_max, "since": 1.0, "username": "Bot#1"},
    )

    second = await spawn_daemon(cfg)
    assert "replacing the stale socket" in second.stderr
    after = db_events(db, old_max)
    assert after[0][0] == old_max + 1
    assert after[0][1:] == (
        "discord:connection",
        {
            "state": "stopped",
            "username": "Bot#1",
            "reason": "daemon restarted",
            "seq": old_max + 1,
            "since": after[0][2]["since"],
        },
    )


async def test_a_hand_made_socket_with_nobody_listening_is_replaced(
    spawn_daemon: SpawnDaemon, state_dir: Path
) -> None:
    sock = state_dir / "run" / "harness.sock"
    sock.parent.mkdir(mode=0o700)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(sock))
    dead.close()
    daemon = await spawn_daemon(write_config(state_dir))
    assert "replacing the stale socket" in daemon.stderr


@pytest.mark.parametrize("kind", ["regular file", "directory"])
async def test_a_socket_path_that_is_not_a_socket_is_refused_and_left_alone(
    spawn_daemon: SpawnDaemon, state_dir: Path, kind: str
) -> None:
    sock = state_dir / "run" / "harness.sock"
    sock.parent.mkdir(mode=0o700)
    if kind == "regular file":
        sock.write_text("precious notes\n")
    else:
        sock.mkdir()
        (sock / "inside").write_text("x")
    daemon = await spawn_daemon(write_config(state_dir), ready=False)
    assert await daemon.wait() == 1
    assert f"{sock} exists and is not a socket" in daemon.stderr
    assert "Traceback" not in daemon.stderr
    if kind == "regular file":
        assert sock.read_text() == "precious notes\n"
    else:
        assert (sock / "inside").read_text() == "x"


# -- database problems -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"), [(m, msg) for _, m, msg in REFUSALS], ids=[r[0] for r in REFUSALS]
)
async def test_a_database_it_cannot_use_stops_the_start_and_is_left_unchanged(
    spawn_daemon: SpawnDaemon, state_dir: Path, make: Callable[[Path], None], message: str
) -> None:
    db = state_dir / "state" / "state.db"
    db.parent.mkdir(mode=0o700)
    make(db)
    before = file_digest(db)
    daemon = await spawn_daemon(write_config(state_dir), ready=False)
    assert await daemon.wait() == 1
    assert message in daemon.stderr and str(db) in daemon.stderr
    assert "Traceback" not in daemon.stderr
    assert file_digest(db) == before
    assert not (state_dir / "run" / "harness.sock").exists()


# -- configuration from the environment and defaults -------------------------------------------


async def test_harness_config_env_is_used_when_no_option_is_given(
    spawn_daemon: SpawnDaemon, state_dir: Path
) -> None:
    cfg = write_config(state_dir, socket=str(state_dir / "env" / "e.sock"))
    daemon = await spawn_daemon(
        None,
        env=subprocess_env(state_dir, HARNESS_CONFIG=str(cfg)),
        socket_path=state_dir / "env" / "e.sock",
    )
    client = await Client.connect(state_dir / "env" / "e.sock")
    assert (await client.request("status"))["pid"] == daemon.pid
    await client.close()


async def test_without_a_config_the_xdg_defaults_are_used(
    spawn_daemon: SpawnDaemon, state_dir: Path
) -> None:
    # subprocess_env points XDG_RUNTIME_DIR and XDG_STATE_HOME into state_dir.
    sock = state_dir / "harness" / "harness.sock"
    await spawn_daemon(None, socket_path=sock)
    client = await Client.connect(sock)
    st = await client.request("status")
    await client.close()
    assert st["socket"] == str(sock)
    assert st["database"] == str(state_dir / "xdg-state" / "harness" / "state.db")


# -- restarts, in-process ------------------------------------------------------------------------


def _retention(config: Config, keep: int) -> Config:
    return msgspec.structs.replace(
        config, daemon=msgspec.structs.replace(config.daemon, event_retention_max=keep)
    )


@pytest.mark.parametrize("keep", [100_000, 0], ids=["kept", "all-pruned"])
async def test_seq_keeps_rising_across_restarts(
    start_daemon: StartDaemon, connect: Connect, config: Config, keep: int
) -> None:
    cfg = msgspec.structs.replace(config, plugins={"echo": {"token": "t0k3n-restart"}})
    first = await start_daemon(cfg=cfg)
    assert first.recorder is not None
    for i in range(5):
        await first.recorder.record("x:tick", {"i": i})
    await first.stop()
    old_max = db_events(config.database_path)[-1][0]

    second = await start_daemon(cfg=_retention(cfg, keep))
    client = await connect()
    assert client.welcome.seq > old_max
    await client.subscribe(["*"], since=0)
    events: list[Event] = []
    async with asyncio.timeout(HANG_GUARD):
        while not isinstance(frame := await client.next_frame(), Replayed):
            events.append(frame)
    new = [e.seq for e in events if e.seq > old_max]
    if keep:
        assert new and new == list(range(old_max + 1, old_max + 1 + len(new)))
    else:
        # the old history is gone, and retention (applied with every commit) keeps only the
        # newest commit's events
        assert new and all(e.seq > old_max for e in events)
    assert second.bus is not None and second.bus.published_seq == events[-1].seq


async def test_boot_never_shows_the_previous_runs_connected(
    start_daemon: StartDaemon, connect: Connect, config: Config
) -> None:
    cfg = msgspec.structs.replace(config, plugins={"echo": {"token": "t0k3n-crash"}})
    first = await start_daemon(cfg=cfg)
    await first.stop()
    db = config.database_path
    old_max = db_events(db)[-1][0]
    set_stored_connection(
        db, "echo", {"state": "connected", "seq": old_max, "since": 5.0, "username": "Ghost#9"}
    )

    await start_daemon(cfg=cfg)
    client = await connect()
    await client.subscribe(["*"], since=old_max)
    first_event = await asyncio.wait_for(client.next_event(), 5)
    assert (first_event.seq, first_event.event) == (old_max + 1, "echo:connection")
    assert first_event.data["state"] == "stopped"
    assert first_event.data["reason"] == "daemon restarted"
    states = []
    async with asyncio.timeout(HANG_GUARD):
        while not isinstance(frame := await client.next_frame(), Replayed):
            if frame.event == "echo:connection":
                states.append(frame.data["state"])
    assert states == ["connecting", "connected"]


async def test_a_config_table_for_a_missing_plugin_fails_the_start_without_a_hang(
    start_daemon: StartDaemon, config: Config
) -> None:
    from harness.config import ConfigError

    cfg = msgspec.structs.replace(config, plugins={"nope": {"x": 1}})
    with pytest.raises(ConfigError, match=r"plugins\.nope: no such plugin \(installed: echo\)"):
        await asyncio.wait_for(start_daemon(cfg=cfg), 10)
    # Everything was released: a good start on the same paths works at once.
    await start_daemon()
    await wait_until(lambda: config.socket_path.exists())
    assert os.path.exists(config.database_path)
