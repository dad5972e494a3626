"""The persisted path's machinery: the writer's place among other transactions, closing with
batches in flight, and the event loop ``harness run`` picks."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.bus import Bus, QueueSubscriber
from harness.cli.run import loop_factory
from harness.recorder import Recorder, Retention
from harness.store import Store
from tests.conftest import HANG_GUARD, SpawnDaemon, wait_until, write_config


async def test_the_writer_never_commits_inside_another_callers_transaction(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "state.db")
    bus = Bus(await store.last_seq())
    sub = QueueSubscriber()
    bus.subscribe(sub)
    recorder = Recorder(store, bus)
    try:
        await store.ensure_plugins(["p"])
        async with store.transaction():
            await store.conn.execute("UPDATE plugin_config SET enabled = 0 WHERE name = 'p'")
            # Recorded while the transaction is open: its commit must wait for the COMMIT
            # below (inside it, BEGIN would fail and the event be published as not stored).
            pending = asyncio.get_running_loop().create_task(recorder.record("p:tick", {"n": 1}))
            for _ in range(5):
                await asyncio.sleep(0)
            assert not pending.done()
        event = await asyncio.wait_for(pending, 10)
        assert event.persisted is not False
        assert [e.data for e in await store.events_after(0)] == [{"n": 1}]
        assert (await sub.queue.get()).seq == event.seq
        assert recorder.health.ok
    finally:
        await recorder.close()
        await store.close()


async def test_close_waits_for_the_batch_in_the_thread_and_what_queued_behind_it(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "state.db")
    bus = Bus(await store.last_seq())
    recorder = Recorder(store, bus)
    tasks = [
        asyncio.get_running_loop().create_task(recorder.record("p:tick", {"n": n}))
        for n in range(50)
    ]
    await asyncio.sleep(0)  # every record has queued; the first batch is in the thread
    await recorder.close()
    assert all(t.done() for t in tasks)
    assert [e.data["n"] for e in await store.events_after(0, limit=100)] == list(range(50))
    with pytest.raises(RuntimeError, match="closed"):
        await recorder.record("p:tick", {"n": 50})
    await store.close()


def test_loop_choice() -> None:
    assert loop_factory("asyncio") == ("asyncio", None)
    name, factory = loop_factory("auto")
    try:
        import uvloop
    except ImportError:
        assert (name, factory) == ("asyncio", None)
    else:
        assert (name, factory) == ("uvloop", uvloop.new_event_loop)
        assert loop_factory("uvloop") == ("uvloop", uvloop.new_event_loop)
    with pytest.raises(ValueError):
        loop_factory("trio")


def test_auto_falls_back_to_asyncio_where_uvloop_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    assert loop_factory("auto") == ("asyncio", None)
    with pytest.raises(ImportError):
        loop_factory("uvloop")


@pytest.mark.parametrize("choice", ["asyncio", "auto"])
async def test_the_daemon_runs_and_persists_on_the_loop_chosen(
    choice: str, state_dir: Path, spawn_daemon: SpawnDaemon
) -> None:
    """A real ``harness run`` on each loop: it says which one it runs and records the
    built-in plugins' connection states through the recorder, as on the other loop."""
    cfg = write_config(state_dir, log_level="debug")
    daemon = await spawn_daemon(cfg, args=("--loop", choice))
    expected = loop_factory(choice)[0]
    await wait_until(lambda: f"event loop: {expected}" in daemon.stderr)
    from harness.client import Client

    client = await Client.connect(daemon.socket_path, client="test", timeout=HANG_GUARD)
    try:
        plugins = await client.request("plugins.list")
    finally:
        await client.close()
    assert plugins
    daemon.proc.terminate()
    assert await daemon.wait() == 0
    db = sqlite3.connect(state_dir / "state" / "state.db")
    try:
        (count,) = db.execute("SELECT count(*) FROM events").fetchone()
    finally:
        db.close()
    assert count > 0


async def test_the_aiosqlite_internals_submit_relies_on(tmp_path: Path) -> None:
    """``Store.submit`` puts work on aiosqlite's own queue (pinned in pyproject.toml). If an
    aiosqlite release moves these, this names what changed instead of every daemon test
    failing on a closed connection."""
    store = await Store.open(tmp_path / "state.db")
    try:
        aconn = store.conn
        assert hasattr(aconn, "_tx") and hasattr(aconn._tx, "put_nowait"), "aiosqlite: _tx queue"
        assert aconn._running is True, "aiosqlite: Connection._running"
        assert isinstance(aconn._connection, sqlite3.Connection), "aiosqlite: _connection"
        loop = asyncio.get_running_loop()
        got: asyncio.Future[object] = loop.create_future()
        store.submit(
            lambda conn: conn.execute("SELECT 41 + 1").fetchone()[0],
            lambda result, exc: got.set_exception(exc) if exc else got.set_result(result),
        )
        # The worker runs a (None, fn) item: no future to resolve, fn's own callback answers.
        assert await asyncio.wait_for(got, 10) == 42
    finally:
        await store.close()
    done: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
    store.submit(lambda conn: None, lambda result, exc: done.set_result(exc))
    assert isinstance(await asyncio.wait_for(done, 10), ValueError)  # closed: said, not hung


async def test_callers_woken_by_a_commit_go_together_in_the_next_one(tmp_path: Path) -> None:
    """10 callers each awaiting its record: every transaction carries one event of each.
    Dispatching the first woken caller's event alone split them 1 + 9; dispatching from the
    first call of an idle writer sent that one alone (and the last 9 after it)."""
    store = await Store.open(tmp_path / "state.db")
    bus = Bus(await store.last_seq())
    recorder = Recorder(store, bus)
    sizes: list[int] = []
    take = recorder._take

    def counted() -> list[Any]:
        batch = take()
        sizes.append(len(batch))
        return batch

    recorder._take = counted  # type: ignore[method-assign]
    rounds, callers = 30, 10

    async def caller(i: int) -> None:
        for n in range(rounds):
            await recorder.record(f"p{i}:tick", {"n": n})

    try:
        await asyncio.wait_for(asyncio.gather(*(caller(i) for i in range(callers))), 30)
    finally:
        await recorder.close()
    assert sum(sizes) == rounds * callers
    assert set(sizes) == {callers}, sizes
    assert len(await store.events_after(0, limit=1000)) == rounds * callers
    await store.close()


async def test_the_recorder_times_its_retention_deletes(tmp_path: Path) -> None:
    """The benchmark's "longest prune chunk" is the DELETE timed inside its commit."""
    store = await Store.open(tmp_path / "state.db")
    recorder = Recorder(store, Bus(await store.last_seq()), retention=Retention(keep=5))
    try:
        assert recorder.longest_prune == 0.0
        for n in range(20):
            await recorder.record("p:tick", {"n": n})
    finally:
        await recorder.close()
    assert 0.0 < recorder.longest_prune < 10.0
    assert [e.data["n"] for e in await store.events_after(0)] == list(range(15, 20))
    await store.close()
