"""Write the WAL to disk in the background, so a checkpoint inside a commit finds little left to
sync.

With ``synchronous = NORMAL`` SQLite does not sync the WAL at commit; the first sync of
everything written since the last checkpoint happens inside the commit that crosses
``wal_autocheckpoint``, and that commit waits for it (with 4,000 pages, 16 MiB: 60-85 ms on this
machine's disk against 16-25 ms with this flusher; raw sqlite3 one-row commits, 8 s runs).
Here a thread of its own calls ``fdatasync`` on the WAL at most every :data:`INTERVAL`
seconds while commits keep coming (each commit pokes it), and sleeps while nothing is written:
no wake-ups on an idle daemon. It takes no SQLite lock and changes nothing SQLite relies on;
it only syncs sooner what SQLite would sync later. (A side effect: at a few events per second
each commit is on disk within ``INTERVAL``, not at the next checkpoint.)
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)

# Seconds between syncs while commits keep coming. In 12 s floods through 10 plugins (4,000-page
# checkpoints) the longest broadcast call was 61-74 ms at 0.1 s, 44-59 at 0.05 and 40-50 at
# 0.025: under a flood 0.1 s of WAL is megabytes, left for the checkpoint to sync.
INTERVAL = 0.025

# fdatasync where the platform has it (Linux); macOS has only fsync.
_datasync = getattr(os, "fdatasync", os.fsync)


class WalFlusher:
    def __init__(self, database: Path, interval: float = INTERVAL, *, poked: bool = True) -> None:
        """``poked=False``: sync every ``interval`` whether written or not, for a writer that
        cannot poke (the benchmark's raw sqlite3 loops)."""
        self.wal = database.with_name(database.name + "-wal")
        self.interval = interval
        self.poked = poked
        self._written = threading.Event()
        self._stopping = threading.Event()
        self._fd: int | None = None
        self._thread = threading.Thread(target=self._run, name="harness-wal-flush", daemon=True)
        self.syncs = 0  # how many fdatasync calls were made (tests, benchmarks)

    def start(self) -> None:
        self._thread.start()

    def poke(self) -> None:
        """A commit wrote to the WAL (any thread; cheap: sets an event, if not set yet)."""
        # Event.set takes a lock and notifies (~1-4 us here) on every commit; most commits find
        # it set already. A poke skipped because the flag is still set loses nothing: the
        # thread clears it before it syncs, so that sync comes after this commit's write.
        if not self._written.is_set():
            self._written.set()

    def stop(self) -> None:
        self._stopping.set()
        self._written.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._close()

    def _run(self) -> None:
        while True:
            if self.poked:
                self._written.wait()
            if self._stopping.is_set():
                return
            self._written.clear()
            self._sync()
            # Coalesce: what is written meanwhile waits for the next round, at most this long.
            if self._stopping.wait(self.interval):
                return

    def _sync(self) -> None:
        try:
            fd = self._open()
            if fd is not None:
                _datasync(fd)
                self.syncs += 1
        except OSError as exc:  # the disk's trouble shows in the commits; this only retries
            log.debug("syncing %s failed: %s", self.wal, exc)
            self._close()

    def _open(self) -> int | None:
        # The same file as SQLite's: reopened when the WAL was deleted and made again (a new
        # inode); never creates it.
        try:
            current = os.stat(self.wal).st_ino
        except FileNotFoundError:
            self._close()
            return None
        if self._fd is not None and os.fstat(self._fd).st_ino != current:
            self._close()
        if self._fd is None:
            self._fd = os.open(self.wal, os.O_RDONLY | os.O_CLOEXEC)
        return self._fd

    def _close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
