"""SQLite state (aiosqlite, WAL): plugin_config and the events history, behind small named calls.

The daemon is the only writer. The TUI opens the same file read-only for its seed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from harness import loop_commit
from harness.protocol import Event
from harness.wal_flush import WalFlusher

# aiosqlite (and its queue and threading machinery) is imported where a Store is opened: the
# TUI's seed reads the stored rows through :func:`read_plugins_readonly` (plain sqlite3, one
# thread hop) and must not pay for it before its first frame.
if TYPE_CHECKING:
    import aiosqlite

T = TypeVar("T")

log = logging.getLogger(__name__)

APPLICATION_ID = 0x48524E53  # "HRNS": tells a harness database from any other SQLite file
SCHEMA_VERSION = 3
_SQLITE_HEADER = b"SQLite format 3\x00"

# Forward migrations: MIGRATIONS[n] takes the schema from version n to n + 1.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE plugin_config (
        name       TEXT PRIMARY KEY,
        enabled    INTEGER NOT NULL DEFAULT 1,
        settings   TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(settings)),
        metadata   TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
        updated_at REAL NOT NULL
    );
    -- AUTOINCREMENT keeps the highest seq ever used in sqlite_sequence, so seq stays monotonic
    -- across restarts even after retention has deleted every event.
    CREATE TABLE events (
        seq  INTEGER PRIMARY KEY AUTOINCREMENT,
        ts   REAL NOT NULL,
        name TEXT NOT NULL,
        data TEXT NOT NULL CHECK (json_valid(data))
    );
    CREATE INDEX events_by_name ON events (name, seq);
    """,
    # Retention's age cutoff finds the newest too-old seq through this index instead of
    # scanning the table; the delete itself is then a seq (rowid) range.
    """
    CREATE INDEX events_by_ts ON events (ts);
    """,
    # Alerts (harness/alerts/): notifications recorded before they are sent (the outbox), the
    # firings still open (so a restart neither re-fires nor forgets to resolve), silences.
    """
    CREATE TABLE alert_outbox (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        dedup_key  TEXT NOT NULL UNIQUE,
        target     TEXT NOT NULL,
        kind       TEXT NOT NULL,
        rule       TEXT NOT NULL,
        plugin     TEXT NOT NULL,
        title      TEXT NOT NULL,
        body       TEXT NOT NULL,
        created    REAL NOT NULL,
        status     TEXT NOT NULL,
        attempts   INTEGER NOT NULL DEFAULT 0,
        next_try   REAL NOT NULL,
        sent_at    REAL,
        last_error TEXT
    );
    CREATE INDEX alert_outbox_queue ON alert_outbox (target, status, id);
    CREATE TABLE alert_active (
        rule      TEXT NOT NULL,
        plugin    TEXT NOT NULL,
        key       TEXT NOT NULL,
        fired_at  REAL NOT NULL,
        state     TEXT NOT NULL,
        reason    TEXT,
        since     REAL NOT NULL,
        reminders INTEGER NOT NULL DEFAULT 0,
        notified  INTEGER NOT NULL DEFAULT 1,
        PRIMARY KEY (rule, plugin)
    );
    CREATE TABLE alert_silences (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        plugin  TEXT NOT NULL,
        starts  REAL NOT NULL,
        ends    REAL NOT NULL,
        reason  TEXT NOT NULL DEFAULT '',
        ended   REAL
    );
    """,
)

SEQ_BEFORE_SQL = (
    "SELECT seq FROM events INDEXED BY events_by_ts WHERE ts < ? ORDER BY ts DESC LIMIT 1"
)

# WAL pages between SQLite's automatic checkpoints (its default is 1000). A checkpoint runs
# inside the commit that crosses the mark and costs that commit an fsync (5-30 ms on this
# disk): with one event per commit (4 WAL pages) that was 1 commit in 250, 0.4-0.9 % of the
# events at 1k ev/s, which alone set their record -> decoded p99. 4000 makes it 1 in 1000.
WAL_AUTOCHECKPOINT = 4000
# Bounds the WAL file left on disk after a checkpoint (a flood could leave it at tens of MiB):
# the autocheckpoint's size, so the file is reused rather than cut and grown again each time.
JOURNAL_SIZE_LIMIT = WAL_AUTOCHECKPOINT * 4096
# Test hook: cap the database's size in pages so SQLite reports SQLITE_FULL, as a full disk
# would, without filling a real disk. Unset in normal use.
MAX_PAGES_ENV = "HARNESS_DB_MAX_PAGES"

_CAUSES = {
    "SQLITE_FULL": "disk full",
    "SQLITE_READONLY": "database is read-only",
    "SQLITE_IOERR": "I/O error",
    "SQLITE_CANTOPEN": "cannot open the database file",
    "SQLITE_CORRUPT": "database is corrupt",
    "SQLITE_NOTADB": "not a database",
    "SQLITE_BUSY": "database is locked by another process",
    "SQLITE_LOCKED": "database is locked",
    "SQLITE_PERM": "permission denied",
    "SQLITE_AUTH": "permission denied",
}


def describe_error(exc: BaseException) -> str:
    """A short cause for an operator ("disk full", "database is read-only", "I/O error"), from
    SQLite's primary result code; falls back to SQLite's own message."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    for prefix, cause in _CAUSES.items():
        if name == prefix or name.startswith(prefix + "_"):
            return cause
    return str(exc) or type(exc).__name__


def is_storage_error(exc: BaseException) -> bool:
    """A failure of the storage itself (full, read-only, I/O, locked, corrupt), as opposed to a
    misuse of the connection (closed, programming error, constraint)."""
    return type(exc) in (sqlite3.OperationalError, sqlite3.DatabaseError)


class BatchRow(msgspec.Struct, array_like=True):
    """One event of a group commit, already encoded, with the metadata key it sets (if any)."""

    seq: int
    ts: float
    name: str
    data: str  # JSON text
    plugin: str | None = None
    metadata_key: str | None = None


def _write_batch(
    conn: sqlite3.Connection,
    rows: Sequence[BatchRow],
    metadata: Sequence[tuple[str, str, str, float]],
    prune_below: int,
    after_begin: Callable[[], None] | None = None,
) -> tuple[int, float]:
    """Runs in the connection's thread: one transaction for a whole batch. Returns how many
    events retention removed and how long their DELETE took (seconds). Either everything
    commits or nothing does. ``after_begin`` runs once the write lock is held (BEGIN
    IMMEDIATE may have waited ``busy_timeout`` for it), before ``rows`` are read: the moment
    to stamp a row with when storage took writes again."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if after_begin is not None:
            after_begin()
        if rows:
            conn.executemany(
                "INSERT INTO events (seq, ts, name, data) VALUES (?, ?, ?, ?)",
                [(r.seq, r.ts, r.name, r.data) for r in rows],
            )
        # The extra values first: they are older than any row of this batch (values left
        # unstored by a storage failure), so a row's newer value for the same key wins. A
        # key deleted meanwhile (None, kept as JSON null) is deleted, as merge_metadata does.
        deleted = [
            (_key_path(key), ts, plugin) for plugin, key, value, ts in metadata if value == "null"
        ]
        if deleted:
            conn.executemany(
                "UPDATE plugin_config SET metadata = json_remove(metadata, ?), updated_at = ? "
                "WHERE name = ?",
                deleted,
            )
        updates = [
            (_key_path(key), value, ts, plugin)
            for plugin, key, value, ts in metadata
            if value != "null"
        ]
        updates += [
            (_key_path(r.metadata_key), r.data, r.ts, r.plugin)
            for r in rows
            if r.plugin is not None and r.metadata_key is not None
        ]
        if updates:
            conn.executemany(
                "UPDATE plugin_config SET metadata = json_set(metadata, ?, json(?)), "
                "updated_at = ? WHERE name = ?",
                updates,
            )
        removed, took = 0, 0.0
        if prune_below > 0:
            # Timed: what retention adds to this commit (issue 10: at most 20 ms).
            t0 = time.perf_counter()
            removed = conn.execute("DELETE FROM events WHERE seq < ?", (prune_below,)).rowcount
            took = time.perf_counter() - t0
        conn.execute("COMMIT")
        return removed, took
    except BaseException:
        # A failed COMMIT (SQLITE_FULL, SQLITE_IOERR) may or may not have ended the
        # transaction; a transaction left open would refuse every later one.
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


def _first_seq(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT min(seq) FROM events").fetchone()
    return int(row[0] or 0)


def _fetch_all(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[Any]:
    """Runs in the connection's thread: one query to its end, its cursor closed here.

    Why no read on the daemon's connection may go through an aiosqlite cursor: a SELECT's
    statement stays active (a read transaction open, its snapshot fixed) from its first step
    until it is fetched to the end, closed or reset. ``await conn.execute(...)`` returns after
    the first step; if its awaiting task is cancelled then (a client gone in the middle of a
    replay), nobody fetches or closes that cursor, and aiosqlite's worker thread still holds
    it as the last result it produced until its next call succeeds. Any write on the
    connection meanwhile (a settings change, a batch) runs inside that stale read
    transaction: if another connection has committed since, SQLite refuses it at once with
    SQLITE_BUSY_SNAPSHOT ("database is locked", no busy wait, no retry), and a failed write
    does not replace the held result, so the next write fails the same way.
    tests/test_store_reads.py reproduces it."""
    cur = conn.execute(sql, params)
    try:
        return cur.fetchall()
    finally:
        cur.close()


def _seq_before(conn: sqlite3.Connection, ts: float) -> int:
    # One seek in the ts index (named: without ANALYZE, SQLite would rather walk the rowids
    # down from the newest, through every event it keeps). Clocks that step back make ts and
    # seq disagree slightly; retention then cuts at the newest old timestamp.
    row = conn.execute(SEQ_BEFORE_SQL, (ts,)).fetchone()
    return int(row[0] or 0) if row else 0


class StoreError(Exception):
    """The database cannot be used; the message says why and what to do."""


class PluginRow(msgspec.Struct):
    name: str
    enabled: bool
    settings: dict[str, Any]
    metadata: dict[str, Any]
    updated_at: float


_json_decode = msgspec.json.decode


def _json_encode(value: Any) -> str:
    # Bound as TEXT, not bytes: SQLite >= 3.45 reads a BLOB argument of its JSON functions as
    # binary JSONB when the bytes happen to fit a JSONB header, and a BLOB column is opaque in
    # the sqlite3 shell.
    return msgspec.json.encode(value).decode()


def _row(r: sqlite3.Row | tuple[Any, ...]) -> PluginRow:
    return PluginRow(
        name=r[0],
        enabled=bool(r[1]),
        settings=_json_decode(r[2]),
        metadata=_json_decode(r[3]),
        updated_at=r[4],
    )


def _key_path(key: str) -> str:
    # A quoted JSON path, so keys with dots or spaces address one top-level member.
    return '$."' + key.replace('"', '""') + '"'


def _check_orphan_wal(path: Path) -> None:
    # SQLite would treat a 0-byte file as a new database and discard the WAL beside it: the
    # history in that WAL would be lost without a word. Refuse instead.
    wal = path.with_name(path.name + "-wal")
    try:
        empty = path.stat().st_size == 0
        wal_size = wal.stat().st_size
    except OSError:
        return
    if empty and wal_size > 0:
        raise StoreError(
            f"{path}: the database file is empty but its write-ahead log {wal.name} beside it "
            f"holds {wal_size:,} bytes; the file was probably truncated or replaced. Nothing "
            "was changed. Restore the database file, or move both files aside to start fresh."
        )


def _check_header(path: Path) -> None:
    try:
        with path.open("rb") as f:
            head = f.read(len(_SQLITE_HEADER))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreError(f"{path}: cannot read the database: {exc.strerror}") from exc
    if head and head != _SQLITE_HEADER:
        raise StoreError(
            f"{path}: not a SQLite database (it may be corrupt or another kind of file); "
            "nothing was changed. Move it aside or point [daemon] database elsewhere."
        )


def _corrupt(path: Path, exc: BaseException) -> str:
    return (
        f"{path}: the database is unreadable ({exc}); nothing was changed. "
        "Move the file aside (keep it for inspection) and start again for a fresh one."
    )


def _judge_version(path: Path, app_id: Any, version: Any, tables: Any) -> int:
    """The schema version of a file whose header pragmas say ``app_id``/``version``/``tables``;
    StoreError if it is not a harness database, or one newer than this code."""
    if app_id != APPLICATION_ID and not (app_id == 0 and tables == 0):
        raise StoreError(
            f"{path}: this SQLite file is not a harness database; nothing was changed. "
            "Point [daemon] database at another path."
        )
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: the database has schema version {version}, newer than this "
            f"harness understands ({SCHEMA_VERSION}); upgrade harness. Nothing was changed."
        )
    return int(version)


_PLUGIN_ROWS = (
    "SELECT name, enabled, settings, metadata, updated_at FROM plugin_config ORDER BY name"
)


def read_plugins_readonly(path: Path) -> list[PluginRow]:
    """Every stored plugin row, read through a read-only connection opened and closed here,
    with the checks :meth:`Store.open_readonly` makes (StoreError, worded the same).

    Blocking: call it in a thread. It is the TUI's seed: one hop to a thread and back, where
    the same read through aiosqlite took about fifteen (open, three pragmas, the query, close),
    each waiting for the UI's event loop to come round, which put it last on the path to the
    first frame (docs/benchmarks.md, "tui")."""
    if not path.exists():
        raise StoreError(f"{path}: no database yet (the daemon creates it on first start)")
    _check_header(path)
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot open the database: {exc}") from exc
    try:
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
            ).fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise StoreError(_corrupt(path, exc)) from exc
        _judge_version(path, app_id, version, tables)
        return [_row(r) for r in conn.execute(_PLUGIN_ROWS).fetchall()]
    finally:
        conn.close()


class Store:
    """One aiosqlite connection. Use :meth:`open` (the daemon) or :meth:`open_readonly` (TUI)."""

    def __init__(self, conn: aiosqlite.Connection, path: Path, readonly: bool) -> None:
        self._conn = conn
        self.path = path
        self.readonly = readonly
        # Held by every multi-statement transaction: the group-commit writer's single-hop
        # transaction must never start between another one's BEGIN and COMMIT.
        self._tx_lock = asyncio.Lock()
        self._waiting: set[asyncio.Task[None]] = set()  # submits waiting for a transaction
        self._flusher: WalFlusher | None = None  # the daemon's store only (harness/wal_flush.py)
        # The daemon's store only: a second connection for commits on the loop's own thread
        # (harness/loop_commit.py), and the WAL's frame count that tells when to leave the
        # next commit, and its checkpoint, to the database thread.
        self._writer: sqlite3.Connection | None = None
        self._wal_frames: loop_commit.WalFrames | None = None

    @property
    def conn(self) -> aiosqlite.Connection:
        """The connection, for modules that keep the SQL of their own tables (harness/alerts).
        Their multi-statement writes go through :meth:`transaction` like everyone else's."""
        return self._conn

    # -- opening -------------------------------------------------------------------------

    @classmethod
    async def open(cls, path: Path) -> Store:
        """Open (creating if needed) and migrate the daemon's database."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _check_header(path)
        _check_orphan_wal(path)
        if not path.exists():
            # Created by us with 0600 before SQLite touches it: it holds plugin secrets.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        import aiosqlite

        try:
            conn = await aiosqlite.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot open the database: {exc}") from exc
        store = cls(conn, path, readonly=False)
        try:
            await store._prepare()
        except BaseException:
            await conn.close()
            raise
        store._flusher = WalFlusher(path)
        store._flusher.start()
        try:
            pages = os.environ.get(MAX_PAGES_ENV)
            store._writer = await asyncio.to_thread(
                loop_commit.open_writer,
                path,
                journal_size_limit=JOURNAL_SIZE_LIMIT,
                max_pages=int(pages) if pages else None,
            )
            store._wal_frames = loop_commit.WalFrames(path)
        except sqlite3.Error as exc:  # every commit goes through the database thread instead
            log.warning("%s: committing on the event loop's thread is off: %s", path, exc)
        return store

    @classmethod
    async def open_readonly(cls, path: Path) -> Store:
        """Open an existing database for reading only; never creates or migrates anything."""
        if not path.exists():
            raise StoreError(f"{path}: no database yet (the daemon creates it on first start)")
        _check_header(path)
        import aiosqlite

        try:
            conn = await aiosqlite.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot open the database: {exc}") from exc
        store = cls(conn, path, readonly=True)
        try:
            await store._check_version()
        except BaseException:
            await conn.close()
            raise
        return store

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Every row of one query, read in ONE hop to the connection's thread, where the
        statement runs to its end and is closed before the hop returns, even if the caller is
        cancelled meanwhile. Every read on this connection goes through here (or
        :meth:`fetch_one`), never through an aiosqlite cursor: see :func:`_fetch_all`."""
        rows: list[Any] = await self._conn._execute(_fetch_all, self._conn._conn, sql, params)
        return rows

    async def fetch_one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first row of one query (None if none), as :meth:`fetch_all` reads it: give the
        query a ``LIMIT 1`` when it could return more."""
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    async def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = await self.fetch_one(sql, params)
        return None if row is None else row[0]

    async def _check_version(self) -> int:
        try:
            app_id = await self._scalar("PRAGMA application_id")
            version = await self._scalar("PRAGMA user_version")
            tables = await self._scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table'")
        except sqlite3.DatabaseError as exc:
            raise StoreError(_corrupt(self.path, exc)) from exc
        return _judge_version(self.path, app_id, version, tables)

    def _cannot_use(self, exc: BaseException) -> str:
        cause = describe_error(exc)
        if cause in ("database is corrupt", "not a database") or not is_storage_error(exc):
            return self._corrupt(exc)
        return (
            f"{self.path}: cannot write the database: {cause} ({exc}); nothing was changed. "
            "Fix the cause (free disk space, make the file and its directory writable) and "
            "start again."
        )

    def _corrupt(self, exc: BaseException) -> str:
        return _corrupt(self.path, exc)

    async def _prepare(self) -> None:
        version = await self._check_version()
        try:
            await self._scalar("PRAGMA busy_timeout = 5000")
            mode = await self._scalar("PRAGMA journal_mode = WAL")
            if mode != "wal":
                raise StoreError(f"{self.path}: cannot switch the database to WAL mode ({mode})")
            # NORMAL is durable across application crashes in WAL mode; only an OS crash can
            # lose the newest commits, never corrupt the file.
            await self._conn.execute("PRAGMA synchronous = NORMAL")
            await self._scalar(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT}")
            await self._scalar(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
            if pages := os.environ.get(MAX_PAGES_ENV):
                await self.limit_pages(int(pages))
            await self._conn.execute("PRAGMA foreign_keys = ON")
            if (await self._scalar("PRAGMA quick_check")) != "ok":
                raise StoreError(self._corrupt(RuntimeError("quick_check failed")))
            for target in range(version, SCHEMA_VERSION):
                async with self.transaction():
                    for statement in _statements(MIGRATIONS[target]):
                        await self._conn.execute(statement)
                    await self._conn.execute(f"PRAGMA user_version = {target + 1}")
                    await self._conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            # A write that must reach the file: a read-only or full database is told now, with
            # its cause, instead of on the first state change.
            async with self.transaction():
                await self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise StoreError(self._cannot_use(exc)) from exc

    async def limit_pages(self, pages: int) -> int:
        """Cap the database at ``pages`` pages (``PRAGMA max_page_count``; never below its
        current size): past it every write fails with SQLITE_FULL, as on a full disk. A test
        hook (also :data:`MAX_PAGES_ENV`); returns the cap SQLite applied."""
        if self._writer is not None:  # a per-connection setting: the loop's writer too
            self._writer.execute(f"PRAGMA max_page_count = {int(pages)}")
        return int(await self._scalar(f"PRAGMA max_page_count = {int(pages)}"))

    async def page_count(self) -> int:
        return int(await self._scalar("PRAGMA page_count"))

    async def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            await asyncio.to_thread(writer.close)
        if self._flusher is not None:
            await asyncio.to_thread(self._flusher.stop)
            self._flusher = None
        if not self.readonly:
            with contextlib.suppress(sqlite3.Error):
                await self._conn.execute("PRAGMA optimize")
        await self._conn.close()
        if self._wal_frames is not None:  # last: closing it drops this process's shm locks
            self._wal_frames.close()
            self._wal_frames = None

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        # IMMEDIATE takes the write lock up front, so a concurrent writer (an operator's sqlite3
        # shell) makes us wait on busy_timeout instead of failing half-way.
        async with self._tx_lock:
            try:
                await self._conn.execute("BEGIN IMMEDIATE")
                yield
                await self._conn.execute("COMMIT")
            except BaseException:
                # Even when cancelled while awaiting BEGIN or COMMIT: aiosqlite still runs that
                # statement in its thread, and a transaction left open would refuse every later
                # one. This ROLLBACK is queued behind it, so it always sees the real state.
                with contextlib.suppress(sqlite3.OperationalError):  # nothing was open
                    await asyncio.shield(self._conn.execute("ROLLBACK"))
                raise

    # -- plugin_config ---------------------------------------------------------------------

    async def ensure_plugins(self, names: Iterable[str]) -> None:
        """Create a row (enabled, empty settings and metadata) for each plugin that has none."""
        now = time.time()
        async with self.transaction():
            await self._conn.executemany(
                "INSERT OR IGNORE INTO plugin_config (name, updated_at) VALUES (?, ?)",
                [(n, now) for n in names],
            )

    async def list_plugins(self) -> list[PluginRow]:
        return [_row(r) for r in await self.fetch_all(_PLUGIN_ROWS)]

    async def get_plugin(self, name: str) -> PluginRow | None:
        r = await self.fetch_one(
            "SELECT name, enabled, settings, metadata, updated_at FROM plugin_config "
            "WHERE name = ?",
            (name,),
        )
        return None if r is None else _row(r)

    async def set_enabled(self, name: str, enabled: bool) -> None:
        await self._conn.execute(
            "UPDATE plugin_config SET enabled = ?, updated_at = ? WHERE name = ?",
            (int(enabled), time.time(), name),
        )

    async def set_settings(self, name: str, settings: dict[str, Any]) -> None:
        await self._conn.execute(
            "UPDATE plugin_config SET settings = ?, updated_at = ? WHERE name = ?",
            (_json_encode(settings), time.time(), name),
        )

    async def set_metadata_key(self, name: str, key: str, value: Any) -> None:
        """Replace one top-level metadata key, in SQL on the stored value: the others survive."""
        await self._conn.execute(
            "UPDATE plugin_config SET metadata = json_set(metadata, ?, json(?)) WHERE name = ?",
            (_key_path(key), _json_encode(value), name),
        )

    async def merge_metadata(self, name: str, patch: dict[str, Any]) -> None:
        """RFC 7396 merge in SQL: keys not in ``patch`` survive, ``None`` deletes a key."""
        await self._conn.execute(
            "UPDATE plugin_config SET metadata = json_patch(metadata, ?), updated_at = ? "
            "WHERE name = ?",
            (_json_encode(patch), time.time(), name),
        )

    # -- events ----------------------------------------------------------------------------

    async def last_seq(self) -> int:
        """The highest seq ever assigned, including events already removed by retention."""
        used = await self._scalar("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
        stored = await self._scalar("SELECT max(seq) FROM events")
        return max(used or 0, stored or 0)

    async def append_event(
        self,
        event: Event,
        *,
        plugin: str | None = None,
        metadata_key: str | None = None,
    ) -> None:
        """Append ``event`` and, in the same transaction, set ``metadata[metadata_key]`` of
        ``plugin`` to the event's data. The set happens in SQL on the stored value, so every
        other metadata key survives, whoever wrote it."""
        row = BatchRow(
            event.seq, event.ts, event.event, _json_encode(event.data), plugin, metadata_key
        )
        await self.write_batch([row])

    async def write_batch(
        self,
        rows: Sequence[BatchRow],
        *,
        metadata: Sequence[tuple[str, str, str, float]] = (),
        prune_below: int = 0,
    ) -> int:
        """One transaction in ONE hop to the connection's thread: set the extra ``(plugin, key,
        json, ts)`` metadata values, append ``rows`` (each also setting its plugin's
        ``metadata[metadata_key]`` to its data, after the extra values), and delete events
        with ``seq < prune_below``. Returns how many events were deleted. Raises
        ``sqlite3.Error`` with nothing committed if any part fails.

        The function runs on aiosqlite's own thread (its ``_execute``): per statement,
        aiosqlite would hop threads and wake the event loop once each, which is most of the
        cost of a small transaction."""
        async with self._tx_lock:
            removed: tuple[int, float] = await self._conn._execute(
                self.write_batch_here, self._conn._conn, rows, metadata, prune_below
            )
        return removed[0]

    def write_batch_here(
        self,
        conn: sqlite3.Connection,
        rows: Sequence[BatchRow],
        metadata: Sequence[tuple[str, str, str, float]] = (),
        prune_below: int = 0,
        after_begin: Callable[[], None] | None = None,
    ) -> tuple[int, float]:
        """:meth:`write_batch`'s transaction, run by the caller on the connection's thread
        (inside a function given to :meth:`submit`). Returns how many events retention removed
        and the seconds their DELETE took."""
        result = _write_batch(conn, rows, metadata, prune_below, after_begin)
        if self._flusher is not None:
            self._flusher.poke()
        return result

    def write_batch_now(
        self,
        rows: Sequence[BatchRow],
        prune_below: int = 0,
    ) -> tuple[int, float] | None:
        """:meth:`write_batch_here`'s transaction on the calling thread (the event loop's),
        on the loop's own connection, or None when it is better done in the database thread:
        another transaction is open or holds the write lock (this connection never waits for
        it), the WAL is due a checkpoint, or the write failed (rolled back; the database
        thread's attempt decides what the caller is told). See harness/loop_commit.py."""
        writer = self._writer
        if writer is None or self._tx_lock.locked() or self._checkpoint_due():
            return None
        try:
            result = _write_batch(writer, rows, (), prune_below)
        except Exception as exc:  # rolled back; the thread's attempt reports a bug as a bug
            log.debug("commit on the loop's thread declined: %s", exc)
            return None
        if self._flusher is not None:
            self._flusher.poke()
        return result

    def _checkpoint_due(self) -> bool:
        """The next commit would sync: leave it to the database thread. Either the WAL is due
        a checkpoint (SQLite's own rule for its automatic one, on the frames every connection
        wrote and no checkpoint copied yet), or a checkpoint copied every frame and the next
        writer starts the WAL over, which syncs its new header and, cutting the file to
        journal_size_limit, the directory (harness/loop_commit.py). Unreadable counts as due,
        so the WAL is never left to grow."""
        state = self._wal_frames.state() if self._wal_frames is not None else None
        if state is None:
            return True
        frames, copied = state
        return frames == copied or frames - copied >= WAL_AUTOCHECKPOINT

    def first_seq_here(self, conn: sqlite3.Connection) -> int:
        """:meth:`first_seq` on the connection's thread (inside a :meth:`submit` function)."""
        return _first_seq(conn)

    def seq_before_here(self, conn: sqlite3.Connection, ts: float) -> int:
        """:meth:`seq_before` on the connection's thread (inside a :meth:`submit` function)."""
        return _seq_before(conn, ts)

    def submit(
        self,
        fn: Callable[[sqlite3.Connection], T],
        done: Callable[[T | None, BaseException | None], None],
    ) -> None:
        """Run ``fn(connection)`` on the connection's thread, after everything queued before
        it, and then ``done(result, None)`` or ``done(None, exception)`` on this event loop.
        Never awaits: no future, no task, and one wake-up of the loop when ``fn`` is done,
        which is what a small group commit costs most of. ``fn`` never runs inside another
        caller's :meth:`transaction`: while one is open, it waits for its end (in a task)."""
        loop = asyncio.get_running_loop()
        if self._tx_lock.locked():

            async def after_transaction() -> None:
                async with self._tx_lock:
                    self._enqueue(loop, fn, done)

            task = loop.create_task(after_transaction())
            self._waiting.add(task)
            task.add_done_callback(self._waiting.discard)
            return
        self._enqueue(loop, fn, done)

    def _enqueue(
        self,
        loop: asyncio.AbstractEventLoop,
        fn: Callable[[sqlite3.Connection], T],
        done: Callable[[T | None, BaseException | None], None],
    ) -> None:
        # aiosqlite's own queue (a private part of aiosqlite, pinned in pyproject.toml), so
        # ``fn`` keeps its place among the statements other callers queue; a None future
        # tells its worker that nobody awaits the call.
        aconn = self._conn
        if not aconn._running or aconn._connection is None:
            loop.call_soon(done, None, ValueError("Connection closed"))
            return
        sconn = aconn._connection

        def work() -> None:
            try:
                result = fn(sconn)
            except BaseException as exc:
                loop.call_soon_threadsafe(done, None, exc)
            else:
                loop.call_soon_threadsafe(done, result, None)

        aconn._tx.put_nowait((None, work))

    async def events_after(
        self, since: int, upto: int | None = None, *, limit: int = 1000
    ) -> list[Event]:
        """Stored events with ``since < seq <= upto``, oldest first, at most ``limit``."""
        rows = await self.fetch_all(
            "SELECT seq, ts, name, data FROM events WHERE seq > ? AND seq <= ? "
            "ORDER BY seq LIMIT ?",
            (since, upto if upto is not None else 2**62, limit),
        )
        return [Event(seq=r[0], ts=r[1], event=r[2], data=_json_decode(r[3])) for r in rows]

    async def recent_events(
        self, name: str, *, limit: int = 50, since_ts: float = 0.0
    ) -> list[Event]:
        """The newest events called ``name`` (newest first), not older than ``since_ts``."""
        rows = await self.fetch_all(
            "SELECT seq, ts, name, data FROM events WHERE name = ? AND ts >= ? "
            "ORDER BY seq DESC LIMIT ?",
            (name, since_ts, limit),
        )
        return [Event(seq=r[0], ts=r[1], event=r[2], data=_json_decode(r[3])) for r in rows]

    async def first_seq(self) -> int:
        """The oldest stored seq (0 when there are none)."""
        return int(await self._scalar("SELECT min(seq) FROM events") or 0)

    async def seq_before(self, ts: float) -> int:
        """The newest seq of an event older than ``ts`` (0 if none), through the ts index
        (see :func:`_seq_before`)."""
        return int(await self._scalar(SEQ_BEFORE_SQL, (ts,)) or 0)

    async def retention_floor(self, *, keep: int, max_age_days: float) -> int:
        """The lowest seq the retention policy keeps: events below it are due for removal.
        Seq ranges, not counts: ``keep`` bounds ``last_seq - seq``, which bounds the count."""
        floor = await self.last_seq() - keep + 1
        if max_age_days > 0:
            floor = max(floor, await self.seq_before(time.time() - max_age_days * 86400) + 1)
        return max(floor, 0)

    async def prune_events(self, *, keep: int, max_age_days: float, chunk: int = 5000) -> int:
        """Apply the retention policy now, in transactions of at most ``chunk`` events (so the
        WAL stays small); returns how many events were removed."""
        floor = await self.retention_floor(keep=keep, max_age_days=max_age_days)
        removed = 0
        low = await self.first_seq()
        while low and low < floor:
            low = min(floor, low + chunk)
            removed += await self.write_batch([], prune_below=low)
        return removed


def _statements(script: str) -> list[str]:
    # Migrations are plain DDL without string literals holding ';', so a split is enough and
    # keeps every statement inside our own transaction (executescript would commit first).
    return [s.strip() for s in script.split(";") if s.strip()]
