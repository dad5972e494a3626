"""The persisted path's machinery: WAL checkpoints off the commit path, the writer's place among
other transactions, and the event loop ``harness run`` picks."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from harness.bus import Bus, QueueSubscriber
from harness.checkpointer import BACKSTOP_PAGES
from harness.cli.run import loop_factory
from harness.recorder import Recorder
from harness.store import BatchRow, Store
from tests.conftest import SpawnDaemon, wait_until, write_config

PAGE = 4096  # SQLite's default page size, which the daemon keeps
ROW_DATA = '{"text": "%s"}' % ("x" * 300)


def _rows(first: int, count: int) -> list[BatchRow]:
    now = time.time()
    return [BatchRow(seq, now, "bench:tick", ROW_DATA) for seq in range(first, first + count)]


def _wal(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


async def test_commits_do_not_checkpoint_the_checkpointer_does_and_the_wal_stays_bounded(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    store = await Store.open(path)
    try:
        checkpointer = store.checkpointer
        assert checkpointer is not None
        # The writer's own automatic checkpoint is only a backstop, far above the thread's mark.
        assert await store._scalar("PRAGMA wal_autocheckpoint") == BACKSTOP_PAGES
        # With the thread stopped, commits far past SQLite's usual threshold (1,000 pages)
        # leave the WAL whole: nothing on the commit path copied it back.
        checkpointer.close()
        seq = 1
        for _ in range(6):
            await store.write_batch(_rows(seq, 3000))
            seq += 3000
        grown = _wal(path).stat().st_size
        assert grown > 1.5 * 1000 * PAGE
        # Running again (with a small cycle, so the test writes little), the thread copies the
        # WAL back and the writer starts it over: the file is reused, not grown, however
        # much is written (the same writes without it would add a batch's size each time).
        checkpointer.pages, checkpointer.restart_pages = 500, 10**9
        checkpointer.start()
        checkpointer.wrote(checkpointer.pages)  # what was written while it was stopped
        await wait_until(lambda: checkpointer.checkpoints >= 1, timeout=15)
        batch_bytes = 8000 * 400
        for _ in range(4):
            before = checkpointer.checkpoints
            await store.write_batch(_rows(seq, 8000))
            seq += 8000
            await wait_until(lambda before=before: checkpointer.checkpoints > before, timeout=15)
        assert checkpointer.last is not None and checkpointer.last[1] == checkpointer.last[2]
        assert _wal(path).stat().st_size <= grown + batch_bytes
        assert await store._scalar("SELECT count(*) FROM events") == seq - 1
    finally:
        await store.close()


async def test_the_writer_never_commits_inside_another_callers_transaction(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "state.db")
    bus = Bus(await store.last_seq())
    sub = QueueSubscriber()
    bus.subscribe(sub)
    recorder = Recorder(store, bus)
    try:
        await store.ensure_plugins(["p"])
        async with store.transaction():
            await store.conn.execute("UPDATE plugin_config SET enabled = 0 WHERE name = 'p'")
            # Recorded while the transaction is open: its commit must wait for the COMMIT
            # below (inside it, BEGIN would fail and the event be published as not stored).
            pending = asyncio.get_running_loop().create_task(recorder.record("p:tick", {"n": 1}))
            for _ in range(5):
                await asyncio.sleep(0)
            assert not pending.done()
        event = await asyncio.wait_for(pending, 10)
        assert event.persisted is not False
        assert [e.data for e in await store.events_after(0)] == [{"n": 1}]
        assert (await sub.queue.get()).seq == event.seq
        assert recorder.health.ok
    finally:
        await recorder.close()
        await store.close()


async def test_close_waits_for_the_batch_in_the_thread_and_what_queued_behind_it(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "state.db")
    bus = Bus(await store.last_seq())
    recorder = Recorder(store, bus)
    tasks = [
        asyncio.get_running_loop().create_task(recorder.record("p:tick", {"n": n}))
        for n in range(50)
    ]
    await asyncio.sleep(0)  # every record has queued; the first batch is in the thread
    await recorder.close()
    assert all(t.done() for t in tasks)
    assert [e.data["n"] for e in await store.events_after(0, limit=100)] == list(range(50))
    with pytest.raises(RuntimeError, match="closed"):
        await recorder.record("p:tick", {"n": 50})
    await store.close()


def test_loop_choice() -> None:
    assert loop_factory("asyncio") == ("asyncio", None)
    name, factory = loop_factory("auto")
    try:
        import uvloop
    except ImportError:
        assert (name, factory) == ("asyncio", None)
    else:
        assert (name, factory) == ("uvloop", uvloop.new_event_loop)
        assert loop_factory("uvloop") == ("uvloop", uvloop.new_event_loop)
    with pytest.raises(ValueError):
        loop_factory("trio")


def test_auto_falls_back_to_asyncio_where_uvloop_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    assert loop_factory("auto") == ("asyncio", None)
    with pytest.raises(ImportError):
        loop_factory("uvloop")


@pytest.mark.parametrize("choice", ["asyncio", "auto"])
async def test_the_daemon_runs_and_persists_on_the_loop_chosen(
    choice: str, state_dir: Path, spawn_daemon: SpawnDaemon
) -> None:
    """A real ``harness run`` on each loop: it says which one it runs and records the
    built-in plugins' connection states through the recorder, as on the other loop."""
    cfg = write_config(state_dir, log_level="debug")
    daemon = await spawn_daemon(cfg, args=("--loop", choice))
    expected = loop_factory(choice)[0]
    await wait_until(lambda: f"event loop: {expected}" in daemon.stderr, timeout=10)
    from harness.client import Client

    client = await Client.connect(daemon.socket_path, client="test", timeout=5)
    try:
        plugins = await client.request("plugins.list")
    finally:
        await client.close()
    assert plugins
    daemon.proc.terminate()
    assert await daemon.wait() == 0
    db = sqlite3.connect(state_dir / "state" / "state.db")
    try:
        (count,) = db.execute("SELECT count(*) FROM events").fetchone()
    finally:
        db.close()
    assert count > 0


async def test_under_steady_writes_the_writer_lets_the_wal_start_over(tmp_path: Path) -> None:
    """Past ``restart_pages`` the writer checkpoints after its commit, so the next commit
    starts the WAL over, even when the thread never finds a gap between commits (here it
    is stopped)."""
    path = tmp_path / "state.db"
    store = await Store.open(path)
    try:
        checkpointer = store.checkpointer
        assert checkpointer is not None
        checkpointer.close()
        checkpointer.restart_pages = 300
        seq = 1
        for _ in range(12):
            await store.write_batch(_rows(seq, 3000))
            seq += 3000
        assert checkpointer.by_writer >= 1
        # Twelve batches of ~1.2 MB each; started over, the file holds about two of them.
        assert _wal(path).stat().st_size <= 4 * 3000 * 400
        assert await store._scalar("SELECT count(*) FROM events") == seq - 1
    finally:
        await store.close()
