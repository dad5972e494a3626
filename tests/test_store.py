"""The SQLite store on a real file: schema, metadata merges, events, retention, refusals."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import msgspec
import pytest

from harness.protocol import Event
from harness.store import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    SEQ_BEFORE_SQL,
    Store,
    StoreError,
    read_plugins_readonly,
)
from tests.conftest import file_digest


@pytest.fixture
def db_path(state_dir: Path) -> Path:
    return state_dir / "db" / "state.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(db_path)
    await s.ensure_plugins(["alpha", "beta"])
    yield s
    await s.close()


def ev(seq: int, name: str = "x:y", ts: float = 1000.0, **data: object) -> Event:
    return Event(seq=seq, ts=ts, event=name, data=dict(data) or {"n": seq})


def read_metadata(path: Path, plugin: str) -> dict[str, object]:
    """Through a separate sqlite3 connection: what any other reader of the file sees."""
    with sqlite3.connect(path) as conn:
        (raw,) = conn.execute(
            "SELECT metadata FROM plugin_config WHERE name = ?", (plugin,)
        ).fetchone()
    return msgspec.json.decode(raw)


# -- opening -----------------------------------------------------------------------------------


async def test_open_creates_a_private_wal_database_with_the_harness_markers(
    db_path: Path,
) -> None:
    s = await Store.open(db_path)
    await s.close()
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(db_path.parent.stat().st_mode) == 0o700
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"plugin_config", "events"} <= tables


async def test_reopen_keeps_rows_and_events(db_path: Path) -> None:
    s = await Store.open(db_path)
    await s.ensure_plugins(["alpha"])
    await s.set_enabled("alpha", False)
    await s.append_event(ev(1))
    await s.close()
    s = await Store.open(db_path)
    try:
        (row,) = await s.list_plugins()
        assert (row.name, row.enabled) == ("alpha", False)
        assert [e.seq for e in await s.events_after(0)] == [1]
    finally:
        await s.close()


@pytest.mark.parametrize("kind", ["zero-byte file", "empty sqlite database"])
async def test_an_empty_file_is_adopted_and_migrated(db_path: Path, kind: str) -> None:
    db_path.parent.mkdir(parents=True)
    if kind == "zero-byte file":
        db_path.touch()
    else:
        sqlite3.connect(db_path).close()
        with sqlite3.connect(db_path) as conn:
            conn.execute("PRAGMA user_version = 0")
    s = await Store.open(db_path)
    await s.close()
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID


# -- refusals: a clear message, and the file's bytes untouched -----------------------------------


def _not_sqlite(path: Path) -> None:
    path.write_bytes(b"this is my diary, not a database\n" * 100)


def _other_app(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE recipes (name TEXT, steps TEXT)")
        conn.execute("INSERT INTO recipes VALUES ('bread', 'knead')")
    sqlite3.connect(path).close()


def _newer_schema(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("PRAGMA user_version = 99")
        conn.execute("CREATE TABLE from_the_future (x)")


def _harness_db(path: Path) -> bytes:
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, data TEXT)")
        conn.executemany("INSERT INTO events (data) VALUES (?)", [("x" * 300,)] * 300)
    sqlite3.connect(path).close()
    return path.read_bytes()


def _truncated(path: Path) -> None:
    raw = _harness_db(path)
    path.write_bytes(raw[: len(raw) // 3])


def _scribbled(path: Path) -> None:
    raw = _harness_db(path)
    # Keep the 100-byte header (so it still says "SQLite format 3"), trash the schema page.
    path.write_bytes(raw[:100] + bytes(range(256)) * 12 + raw[100 + 256 * 12 :])


REFUSALS: list[tuple[str, Callable[[Path], None], str]] = [
    ("not sqlite", _not_sqlite, "not a SQLite database"),
    ("another app", _other_app, "not a harness database"),
    ("newer schema", _newer_schema, "schema version 99, newer than"),
    ("truncated", _truncated, "unreadable"),
    ("scribbled", _scribbled, "unreadable"),
]


@pytest.mark.parametrize("opener", ["daemon", "readonly", "seed"])
@pytest.mark.parametrize(
    ("make", "message"), [(m, msg) for _, m, msg in REFUSALS], ids=[r[0] for r in REFUSALS]
)
async def test_a_database_it_cannot_use_is_refused_and_left_unchanged(
    db_path: Path, make: Callable[[Path], None], message: str, opener: str
) -> None:
    """By the daemon's Store, the TUI's read-only one, and the TUI's seed read alike."""
    db_path.parent.mkdir(parents=True)
    make(db_path)
    before = file_digest(db_path)
    with pytest.raises(StoreError) as info:
        if opener == "seed":
            read_plugins_readonly(db_path)
        elif opener == "readonly":
            await Store.open_readonly(db_path)
        else:
            await Store.open(db_path)
    assert message in str(info.value)
    assert str(db_path) in str(info.value)
    assert "nothing was changed" in str(info.value).lower()
    assert file_digest(db_path) == before


async def test_readonly_open_of_a_missing_file_creates_nothing(db_path: Path) -> None:
    with pytest.raises(StoreError, match="no database yet"):
        await Store.open_readonly(db_path)
    with pytest.raises(StoreError, match="no database yet"):
        read_plugins_readonly(db_path)
    assert not db_path.exists()


async def test_the_seed_read_gives_the_rows_the_store_lists(store: Store, db_path: Path) -> None:
    """The TUI's seed (plain sqlite3, one thread hop) reads what Store.list_plugins reads,
    while the daemon's connection is open."""
    await store.merge_metadata("alpha", {"connection": {"state": "connected", "seq": 3}})
    await store.set_enabled("beta", False)
    assert read_plugins_readonly(db_path) == await store.list_plugins()


async def test_readonly_store_reads_committed_data_and_cannot_write(
    store: Store, db_path: Path
) -> None:
    await store.merge_metadata("alpha", {"k": 1})
    ro = await Store.open_readonly(db_path)
    try:
        row = await ro.get_plugin("alpha")
        assert row is not None and row.metadata == {"k": 1}
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            await ro.set_enabled("alpha", False)
        # WAL: the writer goes on while a reader is open, and the reader sees the new commit.
        await store.append_event(ev(1), plugin="alpha", metadata_key="connection")
        row = await ro.get_plugin("alpha")
        assert row is not None and row.metadata == {"k": 1, "connection": {"n": 1}}
    finally:
        await ro.close()


# -- plugin_config -----------------------------------------------------------------------------


async def test_ensure_plugins_adds_missing_rows_and_keeps_existing_ones(store: Store) -> None:
    await store.set_enabled("alpha", False)
    await store.set_settings("alpha", {"a": 1})
    await store.ensure_plugins(["alpha", "gamma"])
    rows = {r.name: r for r in await store.list_plugins()}
    assert sorted(rows) == ["alpha", "beta", "gamma"]
    assert rows["alpha"].enabled is False and rows["alpha"].settings == {"a": 1}
    assert rows["gamma"].enabled is True and rows["gamma"].settings == {}
    assert await store.get_plugin("nope") is None


async def test_merge_metadata_keeps_other_keys_and_none_deletes(
    store: Store, db_path: Path
) -> None:
    await store.merge_metadata("alpha", {"a": 1, "nested": {"x": 1, "y": 2}})
    await store.merge_metadata("alpha", {"b": 2, "nested": {"y": 3}})
    await store.merge_metadata("alpha", {"a": None})
    assert read_metadata(db_path, "alpha") == {"b": 2, "nested": {"x": 1, "y": 3}}
    assert read_metadata(db_path, "beta") == {}


async def test_append_event_sets_only_its_metadata_key(store: Store, db_path: Path) -> None:
    await store.merge_metadata("alpha", {"keep": [1, 2], "connection": {"old": True}})
    await store.append_event(
        ev(1, "alpha:connection", state="connected", username="Bot#1"),
        plugin="alpha",
        metadata_key="connection",
    )
    # The new object replaces the old one under that key (the merge of fields is the
    # context's job), and nothing else is touched.
    assert read_metadata(db_path, "alpha") == {
        "keep": [1, 2],
        "connection": {"state": "connected", "username": "Bot#1"},
    }
    # A key with a dot addresses one top-level member, not a path.
    await store.append_event(ev(2, "x", v=1), plugin="alpha", metadata_key="a.b")
    assert read_metadata(db_path, "alpha")["a.b"] == {"v": 1}


async def test_append_event_and_metadata_commit_together_or_not_at_all(
    store: Store, db_path: Path
) -> None:
    await store.append_event(ev(1, state="connected"), plugin="alpha", metadata_key="connection")
    with pytest.raises(sqlite3.IntegrityError):  # seq 1 is taken: the insert fails
        await store.append_event(ev(1, state="stopped"), plugin="alpha", metadata_key="connection")
    assert read_metadata(db_path, "alpha") == {"connection": {"state": "connected"}}
    assert [e.data for e in await store.events_after(0)] == [{"state": "connected"}]


# -- events and retention ------------------------------------------------------------------------


async def test_events_after_respects_bounds_order_and_limit(store: Store) -> None:
    for seq in range(1, 11):
        await store.append_event(ev(seq, f"e{seq % 2}"))
    assert [e.seq for e in await store.events_after(3)] == list(range(4, 11))
    assert [e.seq for e in await store.events_after(3, 6)] == [4, 5, 6]
    assert [e.seq for e in await store.events_after(0, limit=4)] == [1, 2, 3, 4]
    assert await store.events_after(10) == []
    first = (await store.events_after(0, limit=1))[0]
    assert first == Event(seq=1, ts=1000.0, event="e1", data={"n": 1})


async def test_recent_events_are_newest_first_for_one_name(store: Store) -> None:
    for seq in range(1, 8):
        await store.append_event(ev(seq, "a" if seq % 2 else "b", ts=float(seq)))
    assert [e.seq for e in await store.recent_events("a")] == [7, 5, 3, 1]
    assert [e.seq for e in await store.recent_events("a", limit=2)] == [7, 5]
    assert [e.seq for e in await store.recent_events("a", since_ts=4.0)] == [7, 5]


async def test_prune_keeps_the_newest_and_drops_the_old(store: Store) -> None:
    import time

    now = time.time()
    for seq in range(1, 11):
        age_days = 10 if seq <= 3 else 0  # three events from ten days ago
        await store.append_event(ev(seq, ts=now - age_days * 86400))
    assert await store.prune_events(keep=100, max_age_days=0) == 0  # 0: no age limit
    assert await store.prune_events(keep=100, max_age_days=5) == 3
    assert [e.seq for e in await store.events_after(0)] == list(range(4, 11))
    assert await store.prune_events(keep=2, max_age_days=0) == 5
    assert [e.seq for e in await store.events_after(0)] == [9, 10]


async def test_last_seq_survives_retention_deleting_everything_and_a_reopen(
    db_path: Path,
) -> None:
    s = await Store.open(db_path)
    assert await s.last_seq() == 0
    for seq in range(1, 6):
        await s.append_event(ev(seq))
    assert await s.prune_events(keep=0, max_age_days=0) == 5
    assert await s.events_after(0) == []
    assert await s.last_seq() == 5
    await s.close()
    s = await Store.open(db_path)
    try:
        assert await s.last_seq() == 5
    finally:
        await s.close()


async def test_the_database_file_is_created_0600_even_with_a_lax_umask(db_path: Path) -> None:
    old = os.umask(0)
    try:
        s = await Store.open(db_path)
        await s.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600


async def test_json_columns_are_stored_as_text(store: Store, db_path: Path) -> None:
    """JSON handed to SQLite as a BLOB is read as binary JSONB by SQLite >= 3.45 when its
    bytes happen to look like a JSONB header, and shows as a blob in the sqlite3 shell."""
    await store.set_settings("alpha", {"a": 1})
    await store.merge_metadata("alpha", {"k": "v"})
    await store.append_event(
        ev(1, "x:connection", state="connected"), plugin="alpha", metadata_key="connection"
    )
    with sqlite3.connect(db_path) as conn:
        types = conn.execute(
            "SELECT typeof(settings), typeof(metadata) FROM plugin_config WHERE name = 'alpha'"
        ).fetchone()
        (data_type,) = conn.execute("SELECT typeof(data) FROM events").fetchone()
    assert (*types, data_type) == ("text", "text", "text")


# -- schema v2: retention by index, bounded WAL ----------------------------------------------


async def test_a_version_1_database_migrates_forward_keeping_its_events(db_path: Path) -> None:
    from harness.store import MIGRATIONS, _statements

    db_path.parent.mkdir(parents=True)
    with sqlite3.connect(db_path) as conn:
        for statement in _statements(MIGRATIONS[0]):
            conn.execute(statement)
        conn.execute("INSERT INTO events (seq, ts, name, data) VALUES (7, 1.0, 'x:y', '{}')")
        conn.execute("PRAGMA user_version = 1")
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    s = await Store.open(db_path)
    try:
        assert [e.seq for e in await s.events_after(0)] == [7]
    finally:
        await s.close()
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "events_by_ts" in indexes


async def test_the_age_cutoff_uses_the_ts_index_not_a_scan(store: Store, db_path: Path) -> None:
    for seq in range(1, 6):
        await store.append_event(ev(seq, ts=float(seq)))
    assert await store.seq_before(3.5) == 3
    with sqlite3.connect(db_path) as conn:
        plan = " ".join(
            str(r[-1]) for r in conn.execute(f"EXPLAIN QUERY PLAN {SEQ_BEFORE_SQL}", (3.5,))
        )
    assert "SEARCH events USING COVERING INDEX events_by_ts (ts<?)" in plan, plan
    assert "SCAN" not in plan and "TEMP B-TREE" not in plan, plan


async def test_the_wal_is_bounded_by_a_journal_size_limit(store: Store) -> None:
    from harness.store import JOURNAL_SIZE_LIMIT, WAL_AUTOCHECKPOINT

    assert await store._scalar("PRAGMA journal_size_limit") == JOURNAL_SIZE_LIMIT
    # checkpoints (and their fsync inside a commit) every WAL_AUTOCHECKPOINT pages, not 1000
    assert await store._scalar("PRAGMA wal_autocheckpoint") == WAL_AUTOCHECKPOINT


async def test_an_empty_database_with_a_leftover_wal_is_refused_untouched(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"")
    wal = db_path.with_name(db_path.name + "-wal")
    wal.write_bytes(b"w" * 1000)
    with pytest.raises(StoreError, match="write-ahead log"):
        await Store.open(db_path)
    assert db_path.stat().st_size == 0 and wal.read_bytes() == b"w" * 1000
