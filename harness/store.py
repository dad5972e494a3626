"""SQLite state (aiosqlite, WAL): plugin_config and the events history, behind small named calls.

The daemon is the only writer. The TUI opens the same file read-only for its seed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite
import msgspec

from harness.protocol import Event

APPLICATION_ID = 0x48524E53  # "HRNS": tells a harness database from any other SQLite file
SCHEMA_VERSION = 2
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


class Store:
    """One aiosqlite connection. Use :meth:`open` (the daemon) or :meth:`open_readonly` (TUI)."""

    def __init__(self, conn: aiosqlite.Connection, path: Path, readonly: bool) -> None:
        self._conn = conn
        self.path = path
        self.readonly = readonly
        # One transaction at a time on the one connection: a BEGIN from another task while one
        # is open would fail, and its statements would land inside the open one.
        self._tx_lock = asyncio.Lock()

    @property
    def conn(self) -> aiosqlite.Connection:
        """The connection, for modules that keep the SQL of their own tables (harness/alerts)."""
        return self._conn

    # -- opening -------------------------------------------------------------------------

    @classmethod
    async def open(cls, path: Path) -> Store:
        """Open (creating if needed) and migrate the daemon's database."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _check_header(path)
        if not path.exists():
            # Created by us with 0600 before SQLite touches it: it holds plugin secrets.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
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
        return store

    @classmethod
    async def open_readonly(cls, path: Path) -> Store:
        """Open an existing database for reading only; never creates or migrates anything."""
        if not path.exists():
            raise StoreError(f"{path}: no database yet (the daemon creates it on first start)")
        _check_header(path)
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

    async def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        async with self._conn.execute(sql, params) as cur:
            row = await cur.fetchone()
        return None if row is None else row[0]

    async def _check_version(self) -> int:
        try:
            app_id = await self._scalar("PRAGMA application_id")
            version = await self._scalar("PRAGMA user_version")
            tables = await self._scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table'")
        except sqlite3.DatabaseError as exc:
            raise StoreError(self._corrupt(exc)) from exc
        if app_id != APPLICATION_ID and not (app_id == 0 and tables == 0):
            raise StoreError(
                f"{self.path}: this SQLite file is not a harness database; nothing was changed. "
                "Point [daemon] database at another path."
            )
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: the database has schema version {version}, newer than this "
                f"harness understands ({SCHEMA_VERSION}); upgrade harness. Nothing was changed."
            )
        return int(version)

    def _corrupt(self, exc: BaseException) -> str:
        return (
            f"{self.path}: the database is unreadable ({exc}); nothing was changed. "
            "Move the file aside (keep it for inspection) and start again for a fresh one."
        )

    async def _prepare(self) -> None:
        version = await self._check_version()
        try:
            await self._conn.execute("PRAGMA busy_timeout = 5000")
            mode = await self._scalar("PRAGMA journal_mode = WAL")
            if mode != "wal":
                raise StoreError(f"{self.path}: cannot switch the database to WAL mode ({mode})")
            # NORMAL is durable across application crashes in WAL mode; only an OS crash can
            # lose the newest commits, never corrupt the file.
            await self._conn.execute("PRAGMA synchronous = NORMAL")
            await self._conn.execute("PRAGMA foreign_keys = ON")
            if (await self._scalar("PRAGMA quick_check")) != "ok":
                raise StoreError(self._corrupt(RuntimeError("quick_check failed")))
            for target in range(version, SCHEMA_VERSION):
                async with self.transaction():
                    for statement in _statements(MIGRATIONS[target]):
                        await self._conn.execute(statement)
                    await self._conn.execute(f"PRAGMA user_version = {target + 1}")
                    await self._conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        except sqlite3.DatabaseError as exc:
            raise StoreError(self._corrupt(exc)) from exc

    async def close(self) -> None:
        if not self.readonly:
            with contextlib.suppress(sqlite3.Error):
                await self._conn.execute("PRAGMA optimize")
        await self._conn.close()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        # IMMEDIATE takes the write lock up front, so a concurrent writer (an operator's sqlite3
        # shell) makes us wait on busy_timeout instead of failing half-way.
        async with self._tx_lock:
            async with self._transaction():
                yield

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        try:
            await self._conn.execute("BEGIN IMMEDIATE")
            yield
            await self._conn.execute("COMMIT")
        except BaseException:
            # Even when cancelled while awaiting BEGIN or COMMIT: aiosqlite still runs that
            # statement in its thread, and a transaction left open would refuse every later one.
            # This ROLLBACK is queued behind it, so it always sees the real state.
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
        async with self._conn.execute(
            "SELECT name, enabled, settings, metadata, updated_at FROM plugin_config ORDER BY name"
        ) as cur:
            return [_row(r) for r in await cur.fetchall()]

    async def get_plugin(self, name: str) -> PluginRow | None:
        async with self._conn.execute(
            "SELECT name, enabled, settings, metadata, updated_at FROM plugin_config "
            "WHERE name = ?",
            (name,),
        ) as cur:
            r = await cur.fetchone()
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
        data = _json_encode(event.data)
        async with self.transaction():
            await self._conn.execute(
                "INSERT INTO events (seq, ts, name, data) VALUES (?, ?, ?, ?)",
                (event.seq, event.ts, event.event, data),
            )
            if plugin is not None and metadata_key is not None:
                await self._conn.execute(
                    "UPDATE plugin_config SET metadata = json_set(metadata, ?, json(?)), "
                    "updated_at = ? WHERE name = ?",
                    (_key_path(metadata_key), data, event.ts, plugin),
                )

    async def events_after(
        self, since: int, upto: int | None = None, *, limit: int = 1000
    ) -> list[Event]:
        """Stored events with ``since < seq <= upto``, oldest first, at most ``limit``."""
        async with self._conn.execute(
            "SELECT seq, ts, name, data FROM events WHERE seq > ? AND seq <= ? "
            "ORDER BY seq LIMIT ?",
            (since, upto if upto is not None else 2**62, limit),
        ) as cur:
            rows = await cur.fetchall()
        return [Event(seq=r[0], ts=r[1], event=r[2], data=_json_decode(r[3])) for r in rows]

    async def recent_events(
        self, name: str, *, limit: int = 50, since_ts: float = 0.0
    ) -> list[Event]:
        """The newest events called ``name`` (newest first), not older than ``since_ts``."""
        async with self._conn.execute(
            "SELECT seq, ts, name, data FROM events WHERE name = ? AND ts >= ? "
            "ORDER BY seq DESC LIMIT ?",
            (name, since_ts, limit),
        ) as cur:
            rows = await cur.fetchall()
        return [Event(seq=r[0], ts=r[1], event=r[2], data=_json_decode(r[3])) for r in rows]

    async def prune_events(self, *, keep: int, max_age_days: float) -> int:
        """Apply the retention policy; returns how many events were removed."""
        cutoff = time.time() - max_age_days * 86400 if max_age_days > 0 else 0.0
        cur = await self._conn.execute(
            "DELETE FROM events WHERE seq <= (SELECT max(seq) FROM events) - ? OR ts < ?",
            (keep, cutoff),
        )
        return cur.rowcount


def _statements(script: str) -> list[str]:
    # Migrations are plain DDL without string literals holding ';', so a split is enough and
    # keeps every statement inside our own transaction (executescript would commit first).
    return [s.strip() for s in script.split(";") if s.strip()]
