"""Commit small batches on the event loop's own thread, when that is safe.

A group commit through the database thread costs two thread hops (loop -> thread -> loop), each
a wake-up of a sleeping thread; for one caller awaiting each event the hops cost more than the
transaction (issue 10). With ``synchronous = NORMAL`` in WAL mode a commit appends a few pages to
the WAL and does not sync, so it can run on the loop, on a second connection of its own, as long
as it never waits:

- ``busy_timeout = 0``: when another connection holds the write lock (the database thread's
  autocommit statements, an operator's sqlite3 shell) BEGIN fails at once with SQLITE_BUSY, and
  the batch goes to the database thread, which waits there as before. Any other failure (disk
  full, read-only, I/O error) also sends the batch to the thread: its outcome, published as
  persisted or not, is decided there exactly as before.
- ``wal_autocheckpoint = 0``: this connection never checkpoints. SQLite's automatic checkpoint
  (the database thread's connection keeps :data:`harness.store.WAL_AUTOCHECKPOINT`) runs inside
  the commit that finds the WAL at that many frames; so once the WAL holds that many, the next
  batch goes to the thread, where the checkpoint runs in its commit, as it did for every batch
  before (the loop writes nothing meanwhile: one batch at a time).
- The first write after a checkpoint that copied every frame (``mxFrame == nBackfill``, or an
  empty WAL) starts the WAL over: it writes a new WAL header and syncs it, and cuts the file to
  ``journal_size_limit`` and syncs its directory (seen with strace: an ``fdatasync`` of the WAL
  and an ``fsync`` of the directory on the loop's thread after every checkpoint). That write
  goes to the database thread too; the ones after it append to the new WAL without syncing.

The frame count is read from the WAL index (the ``-shm`` file SQLite maps into every connection
using the database; https://www.sqlite.org/walformat.html, "The WAL-Index Header" and "The
Checkpoint Information"): ``mxFrame``, the number of valid frames in the WAL, a native-endian
u32 at byte 16, less ``nBackfill``, how many of them a checkpoint already copied, at byte 96.
The format has not changed since WAL mode was introduced; ``tests/test_loop_commit.py`` checks
the count against SQLite's own.
"""

from __future__ import annotations

import os
import sqlite3
import struct
from pathlib import Path

_U32 = struct.Struct("=I")  # native byte order
_MX_FRAME = 16  # WalIndexHdr.mxFrame
_N_BACKFILL = 96  # WalCkptInfo.nBackfill, after the header's two 48-byte copies


def open_writer(
    path: Path, *, journal_size_limit: int, max_pages: int | None
) -> sqlite3.Connection:
    """The loop thread's connection to the daemon's (already prepared, WAL) database. Opened
    in a worker thread; used only from the loop's thread afterwards."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA busy_timeout = 0")  # never wait on the loop
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA wal_autocheckpoint = 0")  # checkpoints stay in the db thread
        conn.execute(f"PRAGMA journal_size_limit = {int(journal_size_limit)}")
        conn.execute("PRAGMA foreign_keys = ON")
        if max_pages is not None:  # the full-disk test hook is per connection
            conn.execute(f"PRAGMA max_page_count = {int(max_pages)}")
    except BaseException:
        conn.close()
        raise
    return conn


class WalFrames:
    """The number of frames in ``database``'s WAL not yet copied into the database by a
    checkpoint, read from its WAL index; None when that cannot be read (then the caller must
    not assume the WAL is small).

    One descriptor, opened on first use and closed only by :meth:`close`, which the store calls
    after its SQLite connections are closed. Closing any descriptor of a file drops every POSIX
    lock the process holds on it, SQLite's own included: opening and closing the ``-shm`` file
    per read dropped SQLite's lock that tells other processes the WAL index is in use, and the
    next process to open the database truncated it under this one's mapping (the daemon died
    of SIGBUS). Read with ``pread``, not through a mapping of our own: a short read past the
    end is harmless where a mapped page past it is SIGBUS."""

    def __init__(self, database: Path) -> None:
        self.shm = database.with_name(database.name + "-shm")
        self._fd: int | None = None

    def count(self) -> int | None:
        state = self.state()
        return None if state is None else state[0] - state[1]

    def state(self) -> tuple[int, int] | None:
        """``(mxFrame, nBackfill)``: the frames in the WAL, and how many of them a checkpoint
        has copied into the database; None when the index cannot be read."""
        if self._fd is None:
            try:
                self._fd = os.open(self.shm, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return None
        try:
            head = os.pread(self._fd, _N_BACKFILL + 4 - _MX_FRAME, _MX_FRAME)
        except OSError:
            return None
        if len(head) < _N_BACKFILL + 4 - _MX_FRAME:  # being initialised
            return None
        mx_frame = _U32.unpack_from(head, 0)[0]
        backfilled = _U32.unpack_from(head, _N_BACKFILL - _MX_FRAME)[0]
        return int(mx_frame), int(backfilled)

    def close(self) -> None:
        """Only once no SQLite connection of this process uses the database (see above)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
