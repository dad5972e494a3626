"""The background WAL sync (harness/wal_flush.py): it follows the daemon's commits, on the
real WAL file, and stops with the store."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from harness.store import BatchRow, Store
from harness.wal_flush import WalFlusher
from tests.conftest import wait_until


async def test_commits_are_synced_in_the_background_and_close_stops_the_thread(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "state.db")
    flusher = store._flusher
    assert flusher is not None and flusher._thread.is_alive()
    before = flusher.syncs
    await store.write_batch([BatchRow(1, 1.0, "p:tick", '{"n":1}')])
    await wait_until(lambda: flusher.syncs > before)
    assert flusher._fd is not None
    assert os.fstat(flusher._fd).st_ino == os.stat(tmp_path / "state.db-wal").st_ino
    await store.close()
    assert not flusher._thread.is_alive() and flusher._fd is None
    assert not any(t.name == "harness-wal-flush" for t in threading.enumerate())


def test_a_wal_made_again_is_reopened_and_a_missing_one_is_not_created(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    flusher = WalFlusher(db)
    flusher._sync()  # no WAL yet: nothing opened, nothing created
    assert flusher._fd is None and not (tmp_path / "x.db-wal").exists()
    wal = tmp_path / "x.db-wal"
    wal.write_bytes(b"a")
    flusher._sync()
    first = flusher._fd
    assert first is not None and flusher.syncs == 1
    wal.unlink()
    wal.write_bytes(b"b")  # a new inode, as when SQLite deletes the WAL and makes it again
    flusher._sync()
    assert flusher._fd is not None
    assert os.fstat(flusher._fd).st_ino == os.stat(wal).st_ino and flusher.syncs == 2
    flusher.stop()
    assert flusher._fd is None
