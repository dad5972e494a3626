"""Storage faults are told, not hidden: a real daemon on a real file whose writes start failing
(SQLite's ``max_page_count`` makes it report SQLITE_FULL exactly as a full disk does), watched by
a subscriber on the real socket; and refusals at start, through ``harness run`` as a process."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import pytest

from harness.client import Client, ClientError
from harness.config import Config
from harness.daemon import Daemon
from harness.plugin import Plugin, PluginContext
from harness.protocol import STORAGE_EVENT, Event, SettingField
from harness.recorder import RETRY_INTERVAL
from harness.store import MAX_PAGES_ENV, Store
from tests.conftest import (
    HANG_GUARD,
    REPO_ROOT,
    StartDaemon,
    next_matching,
    subprocess_env,
    wait_until,
    write_config,
)

Connect = Callable[..., Awaitable[Client]]


class Link(Plugin):
    """A plugin whose connection the test drives, as a gateway outage would."""

    name = "link"
    version = "0.1"
    settings_schema = (SettingField("motto", "string", default=""),)
    contexts: ClassVar[list[PluginContext]] = []

    async def apply_settings(self, ctx: PluginContext, changed: frozenset[str]) -> bool:
        return True

    async def start(self, ctx: PluginContext) -> None:
        Link.contexts.append(ctx)
        await ctx.set_connection("connected", username="Link#0001")

    async def stop(self, ctx: PluginContext) -> None:
        await ctx.set_connection("stopped")


def stored(path: Path) -> tuple[dict[str, Any], list[tuple[int, str, dict[str, Any]]]]:
    """What any other reader of the file sees: link's metadata.connection and the history."""
    with sqlite3.connect(path) as conn:
        (meta,) = conn.execute("SELECT metadata FROM plugin_config WHERE name = 'link'").fetchone()
        rows = conn.execute("SELECT seq, name, data FROM events ORDER BY seq").fetchall()
    return msgspec.json.decode(meta).get("connection"), [
        (s, n, msgspec.json.decode(d)) for s, n, d in rows
    ]


async def fill_up(daemon: Daemon) -> None:
    """Cap the file at its current size, then record ever smaller events until even a tiny one
    no longer fits: from here every event insert fails with SQLITE_FULL."""
    assert daemon.store and daemon.recorder
    await daemon.store.limit_pages(await daemon.store.page_count())
    for size in (4000, 1000, 250, 60, 1):
        for _ in range(1000):
            event = await daemon.recorder.record("test:filler", {"x": "f" * size})
            if not event.persisted:
                break
        else:
            raise AssertionError(f"a {size}-byte filler never failed")
    assert not daemon.recorder.health.ok


async def test_storage_full_during_an_outage_is_told_live_and_caught_up_after(
    start_daemon: StartDaemon, connect: Connect, config: Config, state_dir: Path
) -> None:
    Link.contexts.clear()
    daemon = await start_daemon(plugins={"link": Link})
    (ctx,) = Link.contexts
    client: Client = await connect()
    await client.subscribe(["link:*", STORAGE_EVENT])
    watcher: Client = await connect()  # sees everything, in one order
    await watcher.subscribe(["*"])

    await fill_up(daemon)
    failing = await next_matching(client, lambda e: e.event == STORAGE_EVENT)
    assert failing.data["state"] == "failing" and failing.data["cause"] == "disk full"
    assert failing.persisted is False

    # The outage: none of these raise into the plugin, all reach the subscriber, marked.
    returned = [
        msgspec.to_builtins(await ctx.set_connection("disconnected", reason="gateway went away")),
        msgspec.to_builtins(await ctx.set_connection("connecting", attempt=1)),
        msgspec.to_builtins(await ctx.set_connection("connected")),
    ]
    live = [await next_matching(client, lambda e: e.event == "link:connection") for _ in range(3)]
    assert [e.data["state"] for e in live] == ["disconnected", "connecting", "connected"]
    assert [e.persisted for e in live] == [False, False, False]
    assert [e.data for e in live] == returned
    assert msgspec.to_builtins(ctx.connection) == returned[-1]  # the live state is the plugin's

    status = await client.request("status")
    assert status["storage"]["ok"] is False and status["storage"]["cause"] == "disk full"
    assert status["storage"]["unpersisted"] >= 3
    cfg_path = write_config(state_dir, socket=str(config.socket_path))
    cli = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "harness",
        "status",
        "--config",
        str(cfg_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=subprocess_env(state_dir),
        cwd=REPO_ROOT,
    )
    out, err = await asyncio.wait_for(cli.communicate(), 30)
    assert cli.returncode == 0, err.decode()
    assert "  storage   failing: disk full since " in out.decode()

    # A request that must write is refused with the cause, and the connection carries on.
    with pytest.raises(ClientError) as refused:
        await client.request("plugins.update_settings", name="link", settings={"motto": "m" * 3000})
    assert refused.value.code == "storage_failed" and "disk full" in str(refused.value)

    conn_before, history_before = stored(config.database_path)
    assert conn_before["state"] == "connected" and conn_before["seq"] < live[0].seq
    assert not {e.seq for e in live} & {s for s, _, _ in history_before}

    # Space comes back: within the retry interval, the stored state catches up and the
    # history says which seqs were published but never stored.
    assert daemon.store is not None
    await daemon.store.limit_pages(1_000_000)
    recovered = await next_matching(client, lambda e: e.event == STORAGE_EVENT)
    assert recovered.persisted and recovered.data["state"] == "recovered"
    assert recovered.data["cause"] == "disk full"
    first, last = recovered.data["first_unpersisted"], recovered.data["last_unpersisted"]
    assert first <= live[0].seq and live[-1].seq <= last < recovered.seq

    conn_after, history_after = stored(config.database_path)
    assert conn_after == returned[-1]
    # (filling the file up flapped too: each short failure has its own record)
    gap = [d for s, n, d in history_after if n == STORAGE_EVENT]
    assert gap[-1] == recovered.data
    assert not [s for s, _, _ in history_after if first <= s <= last]
    health = (await client.request("status"))["storage"]
    assert health["ok"] is True and health["cause"] is None and health["unpersisted"] == 0

    # And it is a live daemon again: the next change is stored and published as usual.
    await ctx.set_connection("disconnected", reason="later")
    after = await next_matching(client, lambda e: e.event == "link:connection")
    assert after.persisted and after.seq > recovered.seq
    assert stored(config.database_path)[0] == after.data

    seen: list[int] = []
    async with asyncio.timeout(HANG_GUARD):
        while not seen or seen[-1] < after.seq:
            seen.append((await watcher.next_event()).seq)
    assert seen == sorted(set(seen))  # every event, failing or not, in seq order

    # A replay across the gap returns what was stored: the recovery event stands where the
    # unstored events were.
    replayer: Client = await connect()
    await replayer.subscribe(["link:*", STORAGE_EVENT], since=first - 1)
    replayed: list[Event] = []
    while len(replayed) < 2:
        frame = await asyncio.wait_for(replayer.next_frame(), 5)
        assert isinstance(frame, Event)
        replayed.append(frame)
    assert [e.seq for e in replayed] == [recovered.seq, after.seq]


async def test_recovering_in_the_same_commit_as_a_newer_state_keeps_the_newer(
    start_daemon: StartDaemon, connect: Connect, config: Config
) -> None:
    Link.contexts.clear()
    daemon = await start_daemon(plugins={"link": Link})
    (ctx,) = Link.contexts
    client: Client = await connect()
    await client.subscribe([STORAGE_EVENT])
    await fill_up(daemon)
    unstored = msgspec.to_builtins(await ctx.set_connection("disconnected", reason="outage"))
    assert daemon.store is not None
    await daemon.store.limit_pages(1_000_000)
    # At once, before the retry timer: this commit also stores what the outage left unstored,
    # and that older value must not overwrite this newer one.
    newest = msgspec.to_builtins(await ctx.set_connection("connected"))
    assert newest["seq"] > unstored["seq"]
    await next_matching(client, lambda e: e.data.get("state") == "recovered")
    assert stored(config.database_path)[0] == newest == msgspec.to_builtins(ctx.connection)


async def test_a_daemon_stopping_while_storage_fails_still_stops_cleanly(
    start_daemon: StartDaemon, connect: Connect, config: Config
) -> None:
    Link.contexts.clear()
    daemon = await start_daemon(plugins={"link": Link})
    client: Client = await connect()
    await client.subscribe(["link:*"])
    await fill_up(daemon)
    await daemon.stop()  # plugins stop, recording "stopped" that cannot be stored
    stopped = await next_matching(client, lambda e: e.data.get("state") == "stopped")
    assert stopped.persisted is False


# -- refusals at start: one message naming the file and the cause, no traceback, exit 1 ---------


async def run_daemon(state_dir: Path, *prefix: str, **env: str) -> tuple[int, str]:
    cfg = write_config(state_dir)
    proc = await asyncio.create_subprocess_exec(
        *prefix,
        sys.executable,
        "-m",
        "harness",
        "run",
        "--config",
        str(cfg),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=subprocess_env(state_dir, **env),
        cwd=REPO_ROOT,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
    assert proc.returncode is not None
    return proc.returncode, err.decode()


def db_of(state_dir: Path) -> Path:
    return state_dir / "state" / "state.db"


def assert_refused(rc: int, err: str, path: Path, cause: str) -> None:
    assert rc == 1, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err  # one message
    assert str(path) in err and cause in err, err


async def test_start_on_a_full_database_is_refused_with_the_cause(state_dir: Path) -> None:
    # One page: the schema itself does not fit, exactly as on a disk with no room left.
    rc, err = await run_daemon(state_dir, **{MAX_PAGES_ENV: "1"})
    assert_refused(rc, err, db_of(state_dir), "disk full")


def fill_file(db: Path) -> int:
    """Fill an existing database to its current size, as a full disk leaves it; returns the
    page count to cap it at."""
    with sqlite3.connect(db, isolation_level=None) as conn:
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        conn.execute(f"PRAGMA max_page_count = {pages}")
        for size in (4000, 1000, 250, 60, 1):
            while True:
                try:
                    conn.execute(
                        "INSERT INTO events (ts, name, data) VALUES (?, 'test:filler', json(?))",
                        (time.time(), msgspec.json.encode({"x": "f" * size}).decode()),
                    )
                except sqlite3.OperationalError as exc:
                    assert "full" in str(exc)
                    break
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return int(pages)


async def test_restart_on_a_full_database_is_refused_with_the_cause(
    start_daemon: StartDaemon, config: Config, state_dir: Path
) -> None:
    Link.contexts.clear()
    cfg = msgspec.structs.replace(
        config,
        daemon=msgspec.structs.replace(config.daemon, database=str(db_of(state_dir))),
    )
    daemon = await start_daemon(plugins={"link": Link}, cfg=cfg)
    await daemon.stop()
    pages = fill_file(db_of(state_dir))
    rc, err = await run_daemon(state_dir, **{MAX_PAGES_ENV: str(pages)})
    assert_refused(rc, err, db_of(state_dir), "disk full")


async def test_start_on_an_empty_database_with_a_leftover_wal_is_refused(
    state_dir: Path,
) -> None:
    db = db_of(state_dir)
    db.parent.mkdir(parents=True)
    db.write_bytes(b"")
    wal = db.with_name(db.name + "-wal")
    wal.write_bytes(b"\x37\x7f\x06\x82" + b"\0" * 4092)
    rc, err = await run_daemon(state_dir)
    assert_refused(rc, err, db, "write-ahead log")
    assert db.stat().st_size == 0 and wal.stat().st_size == 4096  # nothing was changed


async def test_start_on_an_unreadable_database_is_refused(state_dir: Path) -> None:
    db = db_of(state_dir)
    db.mkdir(parents=True)  # a directory where the file should be: no one can read it
    rc, err = await run_daemon(state_dir)
    assert_refused(rc, err, db, "cannot read the database")


async def made_database(state_dir: Path) -> Path:
    db = db_of(state_dir)
    store = await Store.open(db)
    await store.close()
    return db


async def test_start_on_a_read_only_database_is_refused(state_dir: Path) -> None:
    """The file is a harness database this process may not write. Root ignores file modes,
    so as root the daemon runs without the capability to override them."""
    db = await made_database(state_dir)
    os.chmod(db, 0o444)
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root and no setpriv to drop CAP_DAC_OVERRIDE")
        drop = "-dac_override,-dac_read_search"
        prefix = (setpriv, f"--bounding-set={drop}", f"--inh-caps={drop}")
    rc, err = await run_daemon(state_dir, *prefix)
    assert_refused(rc, err, db, "read-only")


def chattr(flag: str, path: Path) -> bool:
    tool = shutil.which("chattr")
    return tool is not None and subprocess.run([tool, flag, str(path)], check=False).returncode == 0


async def test_start_on_an_immutable_database_is_refused(state_dir: Path) -> None:
    db = await made_database(state_dir)
    if not chattr("+i", db):
        pytest.skip("cannot mark a file immutable here (needs chattr and CAP_LINUX_IMMUTABLE)")
    try:
        rc, err = await run_daemon(state_dir)
    finally:
        assert chattr("-i", db)
    assert_refused(rc, err, db, "read-only")


async def test_recovered_at_is_when_storage_took_writes_again_not_when_the_retry_began(
    start_daemon: StartDaemon, connect: Connect, config: Config
) -> None:
    """Another process holds the database's write lock: records fail after SQLite's busy
    timeout, and each retry waits on that lock too. The "recovered" record must carry the moment
    the lock was ours, not the moment the retry waiting for it was handed over."""
    Link.contexts.clear()
    daemon = await start_daemon(plugins={"link": Link})
    assert daemon.recorder is not None
    client: Client = await connect()
    await client.subscribe([STORAGE_EVENT])
    other = sqlite3.connect(config.database_path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN EXCLUSIVE")
        event = await daemon.recorder.record("test:locked", {"n": 1})
        assert event.persisted is False
        await next_matching(client, lambda e: e.data.get("state") == "failing")
        # Then a retry (due RETRY_INTERVAL later) waits in BEGIN IMMEDIATE for the lock, up
        # to busy_timeout; it gets the lock only once this releases it.
        recorder = daemon.recorder
        await wait_until(lambda: recorder._busy, timeout=5 * RETRY_INTERVAL)
        released = time.time()
        other.execute("ROLLBACK")
    finally:
        other.close()
    recovered = await next_matching(client, lambda e: e.data.get("state") == "recovered")
    assert recovered.data["recovered_at"] >= released
    assert recovered.ts >= released
    assert recovered.data["failed_since"] < released
