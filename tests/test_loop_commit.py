"""Commits on the event loop's thread (harness/loop_commit.py), on a real SQLite file: they do not
wait for the database thread, never wait for a lock on the loop, leave checkpoints to the
database thread, and keep seq order and stored = published when batches take either road."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from harness.bus import Bus, QueueSubscriber
from harness.loop_commit import WalFrames, open_writer
from harness.protocol import Event
from harness.recorder import Recorder
from harness.store import JOURNAL_SIZE_LIMIT, WAL_AUTOCHECKPOINT, Store
from tests.conftest import HANG_GUARD, wait_until


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[tuple[Store, Recorder, QueueSubscriber]]:
    store = await Store.open(tmp_path / "state.db")
    bus = Bus(await store.last_seq())
    sub = QueueSubscriber()
    bus.subscribe(sub)
    recorder = Recorder(store, bus)
    try:
        yield store, recorder, sub
    finally:
        await recorder.close()
        await store.close()


def stored(path: Path) -> list[tuple[int, str, dict[str, object]]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT seq, name, data FROM events ORDER BY seq").fetchall()
    return [(s, n, msgspec.json.decode(d)) for s, n, d in rows]


def block_the_database_thread(store: Store) -> threading.Event:
    """Occupy the database thread (as a long read would) until the returned event is set."""
    release = threading.Event()
    store.submit(lambda conn: release.wait(HANG_GUARD), lambda result, exc: None)
    return release


async def test_a_lone_caller_commits_without_waiting_for_the_database_thread(
    parts: tuple[Store, Recorder, QueueSubscriber], tmp_path: Path
) -> None:
    """With the database thread busy, a caller awaiting each event still has each one
    committed (readable by another connection) and published: the commit ran on the loop.
    Through the thread, the first record would wait for the thread to be free."""
    store, recorder, sub = parts
    release = block_the_database_thread(store)
    try:
        events = [
            await asyncio.wait_for(recorder.record("p:tick", {"n": n}), 10) for n in range(20)
        ]
        assert [e.persisted for e in events] == [True] * 20
        assert [(s, d) for s, _, d in stored(tmp_path / "state.db")] == [
            (e.seq, {"n": n}) for n, e in enumerate(events)
        ]
        assert [sub.queue.get_nowait().seq for _ in events] == [e.seq for e in events]
    finally:
        release.set()


async def test_a_write_lock_held_elsewhere_never_blocks_the_loop(
    parts: tuple[Store, Recorder, QueueSubscriber], tmp_path: Path
) -> None:
    """Another connection (an operator's sqlite3 shell) holds the write lock. The commit on the
    loop does not wait for it (the batch goes to the database thread, which waits there), so
    this coroutine keeps running and can end the other transaction; the event is then stored.
    Waiting on the loop (busy_timeout) would freeze this coroutine until the wait ran out and
    publish the event as not stored."""
    _, recorder, sub = parts
    other = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO plugin_config (name, updated_at) VALUES ('shell', 0)")
        pending = asyncio.get_running_loop().create_task(recorder.record("p:tick", {"n": 1}))
        for _ in range(20):  # the loop turns: the recorder's commit has been tried by now
            await asyncio.sleep(0)
        assert not pending.done()
        other.execute("COMMIT")
        event = await asyncio.wait_for(pending, 10)
    finally:
        other.close()
    assert event.persisted is True
    assert recorder.health.ok
    assert [(s, d) for s, _, d in stored(tmp_path / "state.db")] == [(event.seq, {"n": 1})]
    assert sub.queue.get_nowait().seq == event.seq


async def test_checkpoints_are_left_to_the_database_thread(
    parts: tuple[Store, Recorder, QueueSubscriber], tmp_path: Path
) -> None:
    """While the database thread is busy, commits on the loop go on until the WAL is due a
    checkpoint, and then wait for the thread (the loop never checkpoints, and the WAL grows no
    further). Once the thread is free, the commit there checkpoints and the rest follow."""
    store, recorder, _ = parts
    frames = WalFrames(tmp_path / "state.db")
    count = 0

    async def caller() -> None:
        nonlocal count
        for n in range(1500):  # about 4 WAL pages each: past WAL_AUTOCHECKPOINT
            await recorder.record("p:tick", {"n": n})
            count += 1

    release = block_the_database_thread(store)
    task = asyncio.get_running_loop().create_task(caller())
    try:
        await wait_until(lambda: (frames.count() or 0) >= WAL_AUTOCHECKPOINT)
        for _ in range(50):  # committing on the loop would go on, one event per turn
            await asyncio.sleep(0)
        stuck = count
        for _ in range(50):
            await asyncio.sleep(0)
        assert count == stuck < 1500
        assert not task.done()
        assert (frames.count() or 0) < WAL_AUTOCHECKPOINT + 16
    finally:
        release.set()
    await asyncio.wait_for(task, 30)
    assert count == 1500
    assert (frames.count() or 0) < WAL_AUTOCHECKPOINT  # checkpointed in the thread's commit
    assert [d["n"] for _, _, d in stored(tmp_path / "state.db")] == list(range(1500))
    frames.close()


async def test_the_write_that_starts_the_wal_over_is_left_to_the_database_thread(
    parts: tuple[Store, Recorder, QueueSubscriber], tmp_path: Path
) -> None:
    """After a checkpoint that copied every frame, the next writer starts the WAL over, and that
    write syncs (the WAL's new header; the directory, when the file is cut to its size limit):
    it goes to the database thread, and the commits after it are on the loop again. (On the
    loop, strace showed an fdatasync of the WAL and an fsync of the directory on the loop's
    thread after every checkpoint.)"""
    store, recorder, _ = parts
    frames = WalFrames(tmp_path / "state.db")
    try:
        await recorder.record("p:tick", {"n": 0})
        other = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
        try:
            busy, log, copied = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            other.close()
        assert busy == 0 and log == copied > 0
        state = frames.state()
        assert state is not None and state[0] == state[1]

        release = block_the_database_thread(store)
        try:
            pending = asyncio.get_running_loop().create_task(recorder.record("p:tick", {"n": 1}))
            for _ in range(50):  # a commit on the loop would be over by now
                await asyncio.sleep(0)
            assert not pending.done()
        finally:
            release.set()
        assert (await asyncio.wait_for(pending, 30)).persisted is True
        state = frames.state()
        assert state is not None and state[0] > state[1]  # started over, not yet copied

        release = block_the_database_thread(store)
        try:  # on the loop again: done while the database thread is still occupied
            event = await asyncio.wait_for(recorder.record("p:tick", {"n": 2}), 30)
        finally:
            release.set()
        assert event.persisted is True
        assert [d["n"] for _, _, d in stored(tmp_path / "state.db")] == [0, 1, 2]
    finally:
        frames.close()


async def test_batches_on_either_road_keep_seq_order_and_stored_equals_published(
    parts: tuple[Store, Recorder, QueueSubscriber], tmp_path: Path
) -> None:
    """A caller awaiting each event (its batches commit on the loop) and callers now and then
    at once (their batches go to the thread) record while other writers come and go:
    transactions of the store's own (a batch waits for them in the database thread) and
    autocommit statements (the loop's commit finds the lock taken and leaves the batch to the
    thread). Every event is stored and published once, in seq order, and each plugin's stored
    connection is its last published."""
    store, recorder, sub = parts
    await store.ensure_plugins([f"p{i}" for i in range(4)])
    stop = False

    async def other_writer() -> None:
        n = 0
        while not stop:
            async with store.transaction():
                await store.conn.execute(
                    "UPDATE plugin_config SET settings = ? WHERE name = 'p0'", (f'{{"n": {n}}}',)
                )
            await store.set_enabled("p1", n % 2 == 0)
            n += 1
            for _ in range(10):  # now and then, so that most batches find the lock free
                await asyncio.sleep(0)

    async def caller(i: int, pause: int) -> None:
        for n in range(100):
            await recorder.record(f"p{i}:tick", {"n": n})
            await recorder.record(
                f"p{i}:connection", {"state": f"s{n}"}, plugin=f"p{i}", metadata_key="connection"
            )
            for _ in range(pause):  # the others' events mostly go alone, sometimes together
                await asyncio.sleep(0)

    writer = asyncio.get_running_loop().create_task(other_writer())
    try:
        await asyncio.wait_for(asyncio.gather(*(caller(i, 7 * i) for i in range(4))), 60)
    finally:
        stop = True
        await writer
    published: list[Event] = []
    while not sub.queue.empty():
        published.append(sub.queue.get_nowait())
    assert len(published) == 800
    assert [e.seq for e in published] == sorted(e.seq for e in published)
    assert all(e.persisted is not False for e in published)
    assert [(e.seq, e.event, e.data) for e in published] == stored(tmp_path / "state.db")
    with sqlite3.connect(tmp_path / "state.db") as conn:
        rows = dict(conn.execute("SELECT name, metadata FROM plugin_config").fetchall())
    for i in range(4):
        assert msgspec.json.decode(rows[f"p{i}"])["connection"] == {"state": "s99"}


async def test_each_commit_on_the_loop_is_synced_in_the_background(
    parts: tuple[Store, Recorder, QueueSubscriber],
) -> None:
    """Commits on the loop poke the WAL flusher as the database thread's do, and a commit
    after a sync gets a sync of its own (the poke that finds the flag set is the only one
    skipped)."""
    store, recorder, _ = parts
    flusher = store._flusher
    assert flusher is not None
    release = block_the_database_thread(store)  # so these commits can only be the loop's
    try:
        for n in range(3):
            before = flusher.syncs
            await asyncio.wait_for(recorder.record("p:tick", {"n": n}), 10)
            await wait_until(lambda: flusher.syncs > before)  # noqa: B023
    finally:
        release.set()


async def test_the_full_disk_hook_holds_for_commits_on_the_loop(
    parts: tuple[Store, Recorder, QueueSubscriber],
) -> None:
    """``limit_pages`` (the full-disk test hook, a per-connection cap) applies to the loop's
    connection too: the first event that needs a new page is not stored, as on a full disk."""
    store, recorder, _ = parts
    await recorder.record("p:tick", {"n": 0})
    await store.limit_pages(await store.page_count())
    event = await asyncio.wait_for(recorder.record("p:tick", {"x": "f" * 20_000}), 10)
    assert event.persisted is False
    assert not recorder.health.ok


def test_the_loop_writer_never_waits_and_never_checkpoints(tmp_path: Path) -> None:
    """What the loop's connection must be: no busy wait (a lock held elsewhere is SQLITE_BUSY at
    once, and the batch goes to the database thread) and no automatic checkpoint."""
    path = tmp_path / "x.db"
    sqlite3.connect(path).execute("PRAGMA journal_mode = WAL").close()
    conn = open_writer(path, journal_size_limit=JOURNAL_SIZE_LIMIT, max_pages=None)
    try:
        assert conn.execute("PRAGMA busy_timeout").fetchone() == (0,)
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
        assert conn.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
        assert conn.execute("PRAGMA journal_size_limit").fetchone() == (JOURNAL_SIZE_LIMIT,)
    finally:
        conn.close()


async def test_closing_with_thousands_of_one_event_batches_queued(tmp_path: Path) -> None:
    """Updates of one plugin's connection never share a batch, so 3,000 of them queued (sent
    without awaiting each) are 3,000 one-event commits on the loop. Closing writes them all,
    in order: each next batch is a callback of its own, not a call inside the one before
    (3,000 nested calls would exceed Python's recursion limit)."""
    store = await Store.open(tmp_path / "state.db")
    await store.ensure_plugins(["p"])
    recorder = Recorder(store, Bus(await store.last_seq()))
    loop = asyncio.get_running_loop()
    tasks = [
        loop.create_task(
            recorder.record("p:connection", {"n": n}, plugin="p", metadata_key="connection")
        )
        for n in range(3000)
    ]
    await asyncio.sleep(0)  # every record has queued
    await asyncio.wait_for(recorder.close(), 60)
    events = [t.result() for t in tasks]
    assert all(e.persisted is True for e in events)
    assert [d["n"] for _, _, d in stored(tmp_path / "state.db")] == list(range(3000))
    await store.close()
    with sqlite3.connect(tmp_path / "state.db") as conn:
        (meta,) = conn.execute("SELECT metadata FROM plugin_config WHERE name = 'p'").fetchone()
    assert msgspec.json.decode(meta)["connection"] == {"n": 2999}


def _dms_lock_free(shm: str) -> bool:
    """In another process: can it take SQLite's "WAL index in use" lock (byte 128 of the
    -shm file) for writing? Then no process holds it, and the next one to open the database
    would truncate the WAL index."""
    code = (
        "import fcntl, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR)\n"
        "try:\n"
        "    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 128)\n"
        "except OSError:\n"
        "    sys.exit(1)\n"
        "sys.exit(0)\n"
    )
    return subprocess.run([sys.executable, "-c", code, shm], check=False).returncode == 0


async def test_reading_the_frame_count_keeps_sqlites_locks(
    parts: tuple[Store, Recorder, QueueSubscriber], tmp_path: Path
) -> None:
    """The daemon keeps SQLite's shared lock on the WAL index while it runs, however many
    commits on the loop read the frame count (a descriptor opened and closed per read
    released it; a reader in another process then truncated the index and the daemon died
    of SIGBUS)."""
    _, recorder, _ = parts
    shm = str(tmp_path / "state.db-shm")
    assert not _dms_lock_free(shm)
    for n in range(5):
        await recorder.record("p:tick", {"n": n})
    assert not _dms_lock_free(shm)


def test_the_wal_frame_count_is_sqlites_own(tmp_path: Path) -> None:
    """WalFrames reads the WAL index's header (a documented format); SQLite's checkpoint
    reports the same number of frames, and none left once it has copied them."""
    path = tmp_path / "x.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute("CREATE TABLE t (x TEXT)")
        frames = WalFrames(path)
        for n in range(200):
            conn.execute("INSERT INTO t VALUES (?)", (str(n) * 50,))
        before = frames.count()
        busy, log, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert (busy, copied) == (0, log)
        assert before == log > 200
        assert frames.count() == 0
    finally:
        conn.close()
        frames.close()
    assert WalFrames(tmp_path / "missing.db").count() is None
