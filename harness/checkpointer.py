"""WAL checkpoints on a thread and connection of their own, never inside a commit.

SQLite's automatic checkpoint runs inside the COMMIT that pushes the WAL past its threshold:
that commit copies the WAL into the database file and fsyncs both, which on a busy disk took
50-120 ms here, and every event queued behind it waited as long. The daemon's writer connection
therefore sets ``wal_autocheckpoint`` high (a backstop only: see :data:`BACKSTOP_PAGES`), and
this thread runs ``PRAGMA wal_checkpoint(PASSIVE)`` on its own connection once roughly
:data:`PAGES` pages were written, or at least every :data:`INTERVAL` seconds while anything is
written. PASSIVE never waits for readers or writers, and SQLite releases the GIL while it
works, so commits carry on meanwhile; once a checkpoint has copied the whole WAL, the next
commit starts the WAL over from its beginning, so the file stays at about ``PAGES`` pages
(and ``journal_size_limit`` trims what a burst left behind).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

PAGES = 1000  # SQLite's own default threshold for an automatic checkpoint
INTERVAL = 1.0  # seconds: a slow trickle of commits is checkpointed at least this often
CATCH_UP = 8  # checkpoints in a row at most, while commits keep adding frames
# The writer connection's wal_autocheckpoint: never reached while this thread keeps up; if it
# cannot (it failed to open, or is stuck behind a disk), the WAL still stops growing here.
BACKSTOP_PAGES = 20 * PAGES


class Checkpointer:
    """One thread with one connection. :meth:`wrote` is called by the writer after each commit
    (from any thread; it only counts); :meth:`close` stops the thread."""

    def __init__(self, path: Path, *, journal_size_limit: int, pages: int = PAGES) -> None:
        self.path = path
        self.pages = pages
        self.journal_size_limit = journal_size_limit
        # What it did, for benchmarks and tests: checkpoints run, the longest one (seconds),
        # and the last result of PRAGMA wal_checkpoint (busy, WAL frames, frames copied).
        self.checkpoints = 0
        self.longest = 0.0
        self.last: tuple[int, int, int] | None = None
        self._written = 0  # estimated pages written since the last checkpoint
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        # Opened here, not in the thread, so a database that cannot be opened is seen now.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA journal_size_limit = {self.journal_size_limit}")
        except BaseException:
            conn.close()
            raise
        self._stop = False
        self._thread = threading.Thread(
            target=self._run, args=(conn,), name="harness-checkpoint", daemon=True
        )
        self._thread.start()

    def wrote(self, pages: int) -> None:
        """Count ``pages`` (an estimate) written by a commit; wake the thread past the mark.
        Unlocked on purpose: a lost increment only makes one checkpoint come a little later."""
        self._written += pages
        if self._written >= self.pages and not self._wake.is_set():
            self._wake.set()

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def checkpoint_now(self, conn: sqlite3.Connection) -> None:
        t0 = time.perf_counter()
        try:
            # fetchall: a statement left unfinished keeps a read lock on the WAL, and while
            # any reader holds one, the writer cannot start the WAL over from its beginning.
            rows = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            # A failing disk: the writer reports it through its own commits; the WAL keeps
            # the data meanwhile, and the next checkpoint tries again.
            log.debug("checkpoint failed: %s", exc)
            return
        took = time.perf_counter() - t0
        self.checkpoints += 1
        self.longest = max(self.longest, took)
        if rows:
            self.last = (int(rows[0][0]), int(rows[0][1]), int(rows[0][2]))

    def _run(self, conn: sqlite3.Connection) -> None:
        try:
            while not self._stop:
                self._wake.wait(INTERVAL)
                self._wake.clear()
                if self._written == 0 or self._stop:
                    continue
                self._written = 0
                # Commits that land while a checkpoint copies leave frames it did not take,
                # and the writer starts the WAL over only once every frame is copied: go
                # again while that is so. Each pass has less to copy, so a gap between two
                # commits soon comes at the right moment.
                for _ in range(CATCH_UP):
                    self.checkpoint_now(conn)
                    if self._stop or self.last is None or self.last[1] <= self.last[2]:
                        break
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
