"""No read on the daemon's aiosqlite connection leaves a statement open, cancelled or not.

Why it matters: a SELECT's statement holds a read transaction (a fixed snapshot) from its first
step until it is fetched to the end, closed or reset. While the daemon's connection was the only
writer, a snapshot could never go stale. With a second writer (another connection, another
process) any write on this connection that runs while a statement is open fails at once with
SQLITE_BUSY_SNAPSHOT ("database is locked": no busy wait, no retry). That is what reverted the
fourth session's loop-thread commits (docs/architecture.md, "Reads on the daemon's connection").

How a read left one open: ``async with conn.execute(...) as cur`` returns after the statement's
first step; when the awaiting task is cancelled right then (a client gone in the middle of a
replay), nobody fetches or closes that cursor, and aiosqlite's worker thread keeps it as the last
result it produced until its next call succeeds. A write that fails does not replace it, so every
write after fails the same way. These tests cancel every read at each of its hops to the thread,
in both orders (the task cancelled before the thread answers, or as the answer arrives), let
another connection commit, then write through the Store.
"""

from __future__ import annotations

import ast
import asyncio
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import harness
from harness.alerts import outbox
from harness.alerts.silences import Silences
from harness.store import BatchRow, Store

# Each hop is cancelled in one of two orders: "early", the task is cancelled while the thread
# still runs the call (its answer is dropped); "late", the task is cancelled in the same loop
# iteration as the answer arrives, so it never resumes to use it.
MODES = ("early", "late")


class CancelAtHop:
    """Counts the Store connection's calls to its thread (aiosqlite's ``_execute``, through which
    every statement and fetch goes) and cancels the calling task at call number ``hop``."""

    def __init__(self, store: Store, hop: int, mode: str) -> None:
        self.conn = store.conn
        self.real = self.conn._execute
        self.hop, self.mode = hop, mode
        self.calls = 0
        self.ran = threading.Event()  # the cancelled call did run in the thread

    def __enter__(self) -> CancelAtHop:
        self.conn._execute = self._execute  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        del self.conn._execute

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls != self.hop:
            return await self.real(fn, *args, **kwargs)
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        future: asyncio.Future[Any] = loop.create_future()
        if self.mode == "late":
            # Runs before the task's own wake-up (callbacks run in the order they were added):
            # the future is done, so the task is marked to be cancelled where it resumes.
            future.add_done_callback(lambda _: task.cancel())
        else:
            loop.call_soon(task.cancel)

        def run() -> Any:
            try:
                return fn(*args, **kwargs)
            finally:
                self.ran.set()

        # What aiosqlite's _execute does, with the cancel wired in.
        self.conn._tx.put_nowait((future, run))
        return await future


def commit_elsewhere(path: Path) -> None:
    """Another writer commits (as the loop-thread commits or an operator's sqlite3 shell)."""
    other = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        other.execute("UPDATE plugin_config SET updated_at = updated_at + 1 WHERE name = 'b'")
    finally:
        other.close()


async def must_write(store: Store, what: str) -> None:
    """A plain write and a transaction through the Store, as a settings change and a batch make
    them; either fails with SQLITE_BUSY_SNAPSHOT if a read left its statement open."""
    try:
        await store.set_settings("a", {"probe": what})
        await store.write_batch([], prune_below=0)
    except sqlite3.OperationalError as exc:
        pytest.fail(
            f"{what}: a write after it failed with {getattr(exc, 'sqlite_errorname', '')} "
            f"({exc}): the read left its statement open"
        )


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    s = await Store.open(tmp_path / "harness.db")
    await s.ensure_plugins(["a", "b", "c"])
    now = time.time()
    await s.write_batch([BatchRow(seq, now, "tick", "{}") for seq in range(1, 11)])
    # Several rows in every table a read looks at, so a SELECT is left with rows to go.
    other = sqlite3.connect(s.path, isolation_level=None, timeout=10)
    try:
        for i in range(3):
            other.execute(
                "INSERT INTO alert_outbox (dedup_key, target, kind, rule, plugin, title, body, "
                "created, status, next_try) VALUES (?, 't', 'firing', 'r', 'a', 'x', 'y', ?, "
                "'pending', ?)",
                (f"k{i}", now, now),
            )
            other.execute(
                "INSERT INTO alert_active (rule, plugin, key, fired_at, state, since) "
                "VALUES (?, 'a', 'k', ?, 'down', ?)",
                (f"r{i}", now, now),
            )
            other.execute(
                "INSERT INTO alert_silences (plugin, starts, ends) VALUES ('a', ?, ?)",
                (now, now + 3600),
            )
    finally:
        other.close()
    yield s
    await s.close()


# Every read that goes through the daemon's connection (harness/store.py, harness/alerts/).
READS: dict[str, Callable[[Store], Awaitable[Any]]] = {
    "list_plugins": lambda s: s.list_plugins(),
    "get_plugin": lambda s: s.get_plugin("a"),
    "events_after": lambda s: s.events_after(0),
    "recent_events": lambda s: s.recent_events("tick"),
    "last_seq": lambda s: s.last_seq(),
    "first_seq": lambda s: s.first_seq(),
    "seq_before": lambda s: s.seq_before(time.time() + 60),
    "retention_floor": lambda s: s.retention_floor(keep=5, max_age_days=1),
    "page_count": lambda s: s.page_count(),
    "fetch_all": lambda s: s.fetch_all("SELECT seq FROM events"),
    "fetch_one": lambda s: s.fetch_one("SELECT seq FROM events"),
    "outbox.pending": lambda s: outbox.pending(s, "t", 10),
    "outbox.history": lambda s: outbox.history(s),
    "outbox.target_summary": lambda s: outbox.target_summary(s),
    "outbox.load_active": lambda s: outbox.load_active(s),
    "outbox.mark_failed": lambda s: outbox.mark_failed(s, 1, "x", time.time()),
    "silences.load": lambda s: Silences(s).load(),
    "silences.recent": lambda s: Silences(s).recent(0),
}


@pytest.mark.parametrize("name", list(READS))
async def test_no_read_leaves_a_statement_open_cancelled_or_not(store: Store, name: str) -> None:
    read = READS[name]
    await read(store)
    commit_elsewhere(store.path)
    await must_write(store, f"{name}, not cancelled")

    with CancelAtHop(store, hop=0, mode="early") as counter:
        await read(store)
    hops = counter.calls
    assert hops >= 1
    for hop in range(1, hops + 1):
        for mode in MODES:
            with CancelAtHop(store, hop, mode) as cut:
                task = asyncio.ensure_future(read(store))
                with pytest.raises(asyncio.CancelledError):
                    await task
            # The cancelled call ran in the thread (what it left behind is what matters).
            assert await asyncio.to_thread(cut.ran.wait, 30)
            commit_elsewhere(store.path)
            await must_write(store, f"{name} cancelled at hop {hop} of {hops} ({mode})")


async def test_an_aiosqlite_cursor_cancelled_after_its_first_step_blocks_every_write(
    store: Store,
) -> None:
    """The cause itself, on the read the Store made before (an aiosqlite cursor): cancelled as
    its first step returns, the statement stays open in aiosqlite's worker, and writes on the
    connection fail with SQLITE_BUSY_SNAPSHOT at once, one after another. If this stops
    failing, aiosqlite changed; the Store's reads do not depend on it either way."""

    async def old_read() -> None:
        async with store.conn.execute("SELECT seq FROM events") as cur:
            await cur.fetchall()

    with CancelAtHop(store, hop=1, mode="late") as cut:
        task = asyncio.ensure_future(old_read())
        with pytest.raises(asyncio.CancelledError):
            await task
    assert await asyncio.to_thread(cut.ran.wait, 30)
    commit_elsewhere(store.path)
    for _ in range(3):  # a failed write leaves the cursor where it was: it fails again
        with pytest.raises(sqlite3.OperationalError) as failed:
            await store.set_settings("a", {"probe": 1})
        assert failed.value.sqlite_errorname == "SQLITE_BUSY_SNAPSHOT"
    # Any call that succeeds (here a read) replaces what the worker held: writes work again.
    await store.page_count()
    await store.set_settings("a", {"probe": 2})


def _awaited_cursor_uses(tree: ast.AST) -> list[int]:
    """Lines that read through an aiosqlite cursor: ``async with x.execute(...)``,
    ``async for ... in x.execute(...)``, ``await cur.fetchone()/fetchall()/fetchmany()``.
    (A plain sqlite3 cursor in the database thread is never awaited.)"""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.AsyncWith):
            for item in node.items:
                call = item.context_expr
                if (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Attribute)
                    and call.func.attr in ("execute", "cursor")
                ):
                    lines.append(node.lineno)
        elif isinstance(node, ast.AsyncFor):
            it = node.iter
            if isinstance(it, ast.Call) and isinstance(it.func, ast.Attribute):
                if it.func.attr in ("execute", "cursor"):
                    lines.append(node.lineno)
        elif isinstance(node, ast.Await):
            call = node.value
            if (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Attribute)
                and call.func.attr in ("fetchone", "fetchall", "fetchmany")
            ):
                lines.append(node.lineno)
    return sorted(lines)


def test_no_module_reads_through_an_aiosqlite_cursor() -> None:
    """Reads go through Store.fetch_all / fetch_one (one hop, statement finished in the thread);
    a new read written the old way is caught here, whichever module it is in."""
    root = Path(harness.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        for line in _awaited_cursor_uses(ast.parse(path.read_text(), str(path))):
            found.append(f"{path.relative_to(root.parent)}:{line}")
    assert not found, "reads through an aiosqlite cursor (use Store.fetch_all): " + ", ".join(found)


def test_the_cursor_check_sees_each_old_form() -> None:
    code = """
async def f(conn, store):
    async with conn.execute("SELECT 1") as cur:
        pass
    async for row in conn.execute("SELECT 1"):
        pass
    row = await cur.fetchone()
    rows = await store.fetch_all("SELECT 1")
"""
    assert _awaited_cursor_uses(ast.parse(code)) == [3, 5, 7]
