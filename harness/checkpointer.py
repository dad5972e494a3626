"""WAL checkpoints on a thread and connection of their own, never inside a commit.

SQLite's automatic checkpoint runs inside the COMMIT that pushes the WAL past its threshold:
that commit copies the WAL into the database file and fsyncs both, which on a busy disk took
50-120 ms here, and every event queued behind it waited as long. The daemon's writer connection
therefore sets ``wal_autocheckpoint`` high (a backstop only: see :data:`BACKSTOP_PAGES`), and
this thread runs ``PRAGMA wal_checkpoint(PASSIVE)`` on its own connection once roughly
:data:`PAGES` pages were written, or at least every :data:`INTERVAL` seconds while anything is
written. PASSIVE never waits for readers or writers, and SQLite releases the GIL while it
works, so commits carry on meanwhile. Once a checkpoint has copied the whole WAL, the next
commit starts the WAL over from its beginning, so the file stays at about ``PAGES`` pages
(``journal_size_limit`` trims what a burst left behind); when commits kept coming while it
copied, a short second pass holds the writer back (:attr:`Checkpointer.gate`) to copy the
rest.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

# Pages written between checkpoints: 4x SQLite's own default. Each time the WAL starts over,
# the writer waits for an fsync or two; at 1k ev/s of one-event commits (4-5 pages each) the
# default would make that happen 4 times a second.
PAGES = 4000
INTERVAL = 10.0  # seconds: a slow trickle of commits is checkpointed at least this often
# A WAL this long (in frames) is started over, the writer held back for it; below it, the
# writer never waits for a checkpoint. Each start-over costs the writer one or two fsyncs.
RESTART_PAGES = PAGES // 2
# The writer connection's wal_autocheckpoint: never reached while this thread keeps up; if it
# cannot (it failed to open, or is stuck behind a disk), the WAL still stops growing here.
BACKSTOP_PAGES = 4 * PAGES


class Checkpointer:
    """One thread with one connection. :meth:`wrote` is called by the writer after each commit
    (from any thread; it only counts); :meth:`close` stops the thread."""

    def __init__(
        self,
        path: Path,
        *,
        journal_size_limit: int,
        pages: int = PAGES,
        restart_pages: int | None = None,
    ) -> None:
        self.path = path
        self.pages = pages
        self.restart_pages = RESTART_PAGES if restart_pages is None else restart_pages
        self.journal_size_limit = journal_size_limit
        # What it did, for benchmarks and tests: checkpoints run, the longest one (seconds),
        # and the last result of PRAGMA wal_checkpoint (busy, WAL frames, frames copied).
        self.checkpoints = 0
        self.longest = 0.0
        self.last: tuple[int, int, int] | None = None
        self.gated = 0  # second passes that held the writer at the gate
        self.longest_gated = 0.0  # the longest of them (seconds), waiting for the gate too
        # Held by the writer around each transaction (Store.write_batch_here) and by the
        # second pass of a checkpoint: see _run.
        self.gate = threading.Lock()
        self._written = 0  # estimated pages written since the last checkpoint
        self._commits = 0  # commits counted so far
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
        self._commits += 1
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
                commits = self._commits
                self.checkpoint_now(conn)
                if (
                    self._commits != commits
                    and self.last is not None
                    and self.last[1] >= self.restart_pages
                    and not self._stop
                ):
                    # Commits landed while it copied, and the writer starts the WAL over only
                    # once every frame is copied, which under a steady flood never happens by
                    # chance (the WAL grew past 100 MiB so). A second pass with the writer
                    # held at the gate copies the few frames left; the writer's next commit
                    # then starts the WAL over. The writer waits for that pass, and that
                    # commit for the fsync of the new WAL header (10-90 ms each on a busy
                    # disk), so this happens only once per ``restart_pages``.
                    t0 = time.perf_counter()
                    with self.gate:
                        self.checkpoint_now(conn)
                    self.gated += 1
                    self.longest_gated = max(self.longest_gated, time.perf_counter() - t0)
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
