"""WAL checkpoints mostly on a thread and connection of their own, not inside commits.

SQLite's automatic checkpoint runs inside the COMMIT that pushes the WAL past its threshold:
that commit copies the WAL into the database file and fsyncs both, which on a busy disk took
50-190 ms here, and every event queued behind it waited as long. Here a thread with a
connection of its own runs ``PRAGMA wal_checkpoint(PASSIVE)`` once roughly :data:`PAGES` pages
were written (or every :data:`INTERVAL` seconds while anything is written): the copying happens
there, with the GIL released, while commits carry on. Once per :data:`RESTART_PAGES` the writer
checkpoints after its commit to let the WAL start over (see there); it then finds most of the
WAL copied already.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

PAGES = 2000  # pages written between two checkpoints of this thread
INTERVAL = 10.0  # seconds: a slow trickle of commits is checkpointed at least this often
# Past this many pages since the WAL last started over, the writer checkpoints after each
# commit (:meth:`Checkpointer.after_commit`) until one copies every frame, so that the next
# commit starts the WAL over: SQLite does that only once every frame is copied, which under a
# steady flood this thread alone never sees (commits land while it copies; the WAL grew past
# 100 MiB so). This thread has copied most of it by then, so the writer has little left to
# copy; it still waits for the fsyncs (of the WAL, of the database and, on the next commit,
# of the new WAL header: 10-100 ms each on a busy disk), hence 4x SQLite's default of 1,000.
RESTART_PAGES = 4000
# The writer connection's own wal_autocheckpoint: only a backstop (it is skipped whenever
# this thread is checkpointing, so it cannot be what starts the WAL over).
BACKSTOP_PAGES = 4 * RESTART_PAGES


class Checkpointer:
    """One thread with one connection. :meth:`wrote` is called by the writer after each commit
    (from any thread; it only counts); :meth:`close` stops the thread."""

    def __init__(
        self,
        path: Path,
        *,
        journal_size_limit: int,
        pages: int = PAGES,
        restart_pages: int = RESTART_PAGES,
    ) -> None:
        self.path = path
        self.pages = pages
        self.restart_pages = restart_pages
        self.journal_size_limit = journal_size_limit
        # What it did, for benchmarks and tests: checkpoints run, the longest one (seconds),
        # and the last result of PRAGMA wal_checkpoint (busy, WAL frames, frames copied).
        self.checkpoints = 0
        self.longest = 0.0
        self.last: tuple[int, int, int] | None = None
        self.by_writer = 0  # checkpoints the writer ran after its commits
        # One checkpoint at a time: a second one at once would only get SQLITE_BUSY.
        self.lock = threading.Lock()
        self._written = 0  # estimated pages written since this thread's last checkpoint
        self._cycle = 0  # estimated pages written since every frame was last copied
        self._commits = 0
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
        self._cycle += pages
        self._commits += 1
        if self._written >= self.pages and not self._wake.is_set():
            self._wake.set()

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def after_commit(self, conn: sqlite3.Connection) -> None:
        """Called by the writer on its connection's thread after each commit: past
        ``restart_pages``, checkpoint there (unless this thread is at it just now)."""
        if self._cycle >= self.restart_pages and self.lock.acquire(blocking=False):
            try:
                # Nothing commits meanwhile (this is the writer's thread): all copied means
                # the next commit starts the WAL over.
                if self.checkpoint_now(conn):
                    self._cycle = 0
                self.by_writer += 1
            finally:
                self.lock.release()

    def checkpoint_now(self, conn: sqlite3.Connection) -> bool:
        """One PASSIVE checkpoint; True if it copied every frame the WAL had when it began."""
        t0 = time.perf_counter()
        try:
            # fetchall: a statement left unfinished keeps a read lock on the WAL, and while
            # any reader holds one, the writer cannot start the WAL over from its beginning.
            rows = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            # A failing disk: the writer reports it through its own commits; the WAL keeps
            # the data meanwhile, and the next checkpoint tries again.
            log.debug("checkpoint failed: %s", exc)
            return False
        took = time.perf_counter() - t0
        self.checkpoints += 1
        self.longest = max(self.longest, took)
        if not rows:
            return False
        self.last = busy, frames, copied = (int(rows[0][0]), int(rows[0][1]), int(rows[0][2]))
        return not busy and frames == copied

    def _run(self, conn: sqlite3.Connection) -> None:
        try:
            while not self._stop:
                self._wake.wait(INTERVAL)
                self._wake.clear()
                if self._written == 0 or self._stop:
                    continue
                self._written = 0
                if self.lock.acquire(blocking=False):  # else the writer is at it
                    try:
                        commits = self._commits
                        # All copied with no commit meanwhile: the WAL starts over next.
                        if self.checkpoint_now(conn) and self._commits == commits:
                            self._cycle = 0
                    finally:
                        self.lock.release()
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
