"""The seq high-water mark: a seq published but never stored is never handed out again.

Seqs come from the database: a daemon starts from the highest stored seq (ARCHITECTURE.md, the
seq **must**). While storage fails (disk full, read-only, I/O error) the daemon still publishes
every event, live and unstored (harness/recorder.py). If it then dies without storing them
(``kill -9``, the OOM killer, a crash, or a clean stop before the disk has room again), the next
daemon would start from the last *stored* seq and hand out the same numbers again: a client
that saw seq N+k under the old daemon and resumes with ``--since N+k`` would skip the new
daemon's events up to N+k, or take them for ones it already has.

So the recorder covers an unstored seq here before publishing it: a small file beside the
database (``state.db.seqmark``) records the highest seq that may have been published without
being stored, with when and why storage began failing. It is reserved :data:`STEP` seqs at a
time (one write per STEP unstored events, not one per event). A daemon that starts takes the
larger of the stored seq and the mark, and records the seqs it skips as a ``daemon:storage``
"recovered" event (the gap record a live recovery writes too); once that is stored, the mark is
cleared. Once storage recovers while the daemon runs, the mark is cleared as well: every seq
published after that is stored before it is published.

Why it can be written on a full disk: the file has one fixed-size record, created and written
whole (and synced) when the daemon starts, so later writes are ``pwrite`` of the same bytes in
place, which needs no new blocks (on ext4, xfs, tmpfs; a copy-on-write file system such as
btrfs or ZFS may still refuse them when full). The writes are not synced: the mark survives
the daemon's own death, which is what it guards against; an OS crash may lose it (as it may
lose the newest commits with ``synchronous = NORMAL``). If even this write fails (a file system
remounted read-only), the daemon says so in its log and carries on publishing: live state still
reaches subscribers, as the storage **must** requires."""

from __future__ import annotations

import logging
import os
import struct
import zlib
from pathlib import Path

import msgspec

log = logging.getLogger(__name__)

SUFFIX = ".seqmark"  # beside the database: state.db -> state.db.seqmark
STEP = 1000  # seqs reserved per write while storage fails
MAGIC = b"HSEQMRK1"
# magic, mark (0: nothing unstored), first unstored seq, failing since (Unix time), cause
# (UTF-8, cut to 40 bytes), then a CRC32 of all of it: a torn or foreign file is told, not used.
_BODY = struct.Struct("<8sqqd40s")
_CRC = struct.Struct("<I")
SIZE = 128  # the whole record (76 bytes), padded: always written whole, in place
RESTART_CAUSE = "the daemon stopped while storage was failing"


class Lost(msgspec.Struct, frozen=True):
    """Seqs a previous daemon may have published but never stored: ``first``..``last``
    (``last`` may be a reservation's end: not every seq in the range was necessarily used)."""

    first: int
    last: int
    failed_since: float | None
    cause: str | None

    def gap_data(self, now: float) -> dict[str, object]:
        """The ``daemon:storage`` "recovered" event that records the gap, as a live recovery
        would (``unpersisted`` is at most that many: the range's size)."""
        return {
            "state": "recovered",
            "cause": self.cause or "storage failing",
            "failed_since": self.failed_since,
            "recovered_at": now,
            "unpersisted": self.last - self.first + 1,
            "first_unpersisted": self.first,
            "last_unpersisted": self.last,
            "restarted": RESTART_CAUSE,
        }


def path_for(database: Path) -> Path:
    return database.with_name(database.name + SUFFIX)


def _pack(mark: int, first: int, since: float, cause: str) -> bytes:
    body = _BODY.pack(MAGIC, mark, first, since, cause.encode()[:40])
    return (body + _CRC.pack(zlib.crc32(body))).ljust(SIZE, b"\0")


def _unpack(raw: bytes) -> tuple[int, int, float, str] | None:
    if len(raw) != SIZE:
        return None
    body, (crc,) = raw[: _BODY.size], _CRC.unpack_from(raw, _BODY.size)
    if zlib.crc32(body) != crc:
        return None
    magic, mark, first, since, cause = _BODY.unpack(body)
    if magic != MAGIC:
        return None
    return mark, first, since, cause.rstrip(b"\0").decode(errors="replace")


class SeqMark:
    """The open mark file. :meth:`open` at start; :meth:`cover` before publishing an unstored
    seq; :meth:`clear` once nothing unstored is outstanding; :meth:`close`."""

    def __init__(self, path: Path, fd: int, lost: tuple[int, int, float, str] | None) -> None:
        self.path = path
        self._fd = fd
        self._found = lost  # what the file held at start
        self.mark = 0  # the highest seq covered now (0: none outstanding)
        self._failed = False  # the last write failed (logged once per run of failures)
        # The failure the covered seqs belong to: (first unstored seq, since, cause).
        self._failure: tuple[int, float | None, str | None] | None = None

    @classmethod
    def open(cls, database: Path) -> SeqMark:
        """Open (or create, written whole and synced) the mark beside ``database``. Raises
        OSError when it cannot be created or written: the daemon refuses to start then, as it
        does on a database it cannot write."""
        path = path_for(database)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            raw = os.pread(fd, SIZE + 1, 0)
            found = _unpack(raw)
            if found is None or os.fstat(fd).st_size != SIZE:
                if raw:
                    log.warning("%s: not a seq mark this version can read; starting it anew", path)
                # Written whole now, so that later writes are in place (no new blocks).
                record = _pack(*found) if found is not None else _pack(0, 0, 0.0, "")
                os.ftruncate(fd, 0)
                if os.pwrite(fd, record, 0) != SIZE:
                    raise OSError(f"{path}: short write")
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, found if found is not None and found[0] > 0 else None)

    def lost(self, stored: int) -> Lost | None:
        """The seqs after ``stored`` (the database's highest) that the previous daemon may
        have published without storing, or None."""
        if self._found is None:
            return None
        mark, first, since, cause = self._found
        if mark <= stored:
            return None
        return Lost(max(first, stored + 1), mark, since or None, cause or None)

    def cover(self, seq: int, first: int, since: float | None, cause: str | None) -> None:
        """Before ``seq`` is published unstored: make the file say so (reserving STEP seqs
        past it). ``first``/``since``/``cause``: the current failure's, for the next start."""
        if seq <= self.mark:
            return
        # A range still outstanding (the previous daemon's, not yet on record; or this
        # failure's) keeps its start: the record must cover all of it.
        for held in (self._failure, self._found[1:] if self._found else None):
            if held is not None:
                held_first, held_since, held_cause = held
                if held_first:
                    first = min(first, held_first)
                if held_since:
                    since = min(since, held_since) if since else held_since
                cause = cause or held_cause or None
        self._write(seq + STEP - 1, first, since, cause)

    def settle(self, last: int) -> None:
        """At a clean stop while storage fails: the exact last seq handed out, not the
        reservation's end, so the next start skips no more than was used."""
        if self._failure is not None and last < self.mark:
            self._write(last, *self._failure)

    def clear(self) -> None:
        """Everything published is stored (a recovery's gap record, or the start's)."""
        if self.mark or self._found is not None:
            self._found = None
            self._write(0, 0, None, None)

    def _write(self, mark: int, first: int, since: float | None, cause: str | None) -> None:
        try:
            os.pwrite(self._fd, _pack(mark, first, since or 0.0, cause or ""), 0)
        except OSError as exc:
            if not self._failed:
                log.error(
                    "cannot write the seq mark %s: %s; if the daemon stops before storage "
                    "recovers, the seqs published meanwhile may be handed out again",
                    self.path,
                    exc,
                )
            self._failed = True
            return
        if self._failed:
            log.warning("the seq mark %s is written again", self.path)
        self._failed = False
        self.mark = mark
        self._failure = (first, since, cause) if mark else None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
