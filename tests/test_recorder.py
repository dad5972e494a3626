"""Group commit through the plugin API on a real daemon, file and socket: seq order, stored equals
published, cancelled callers, callers whose payload fails, and retention's bound under a flood."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from harness.client import Client
from harness.config import Config
from harness.plugin import Plugin, PluginContext
from harness.protocol import Event, Replayed
from tests.conftest import HANG_GUARD, StartDaemon, next_matching

Connect = Callable[..., Awaitable[Client]]
PRODUCERS = 10


def _producer_plugin(index: int) -> type[Plugin]:
    class Producer(Plugin):
        name = f"p{index}"
        version = "0"

        async def start(self, ctx: PluginContext) -> None:
            CONTEXTS[self.name] = ctx

    return Producer


CONTEXTS: dict[str, PluginContext] = {}
PLUGINS = {f"p{i}": _producer_plugin(i) for i in range(PRODUCERS)}


def db_rows(path: Path) -> dict[int, tuple[str, dict[str, Any]]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT seq, name, data FROM events").fetchall()
    return {s: (n, msgspec.json.decode(d)) for s, n, d in rows}


def db_connections(path: Path) -> dict[str, Any]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name, metadata FROM plugin_config").fetchall()
    return {n: msgspec.json.decode(m).get("connection") for n, m in rows}


async def test_ten_producers_at_once_keep_seq_order_and_stored_equals_published(
    start_daemon: StartDaemon, connect: Connect, config: Config
) -> None:
    CONTEXTS.clear()
    await start_daemon(plugins=PLUGINS)
    client = await connect()
    await client.subscribe(["p*"])
    rounds = 40

    async def produce(ctx: PluginContext) -> list[dict[str, Any]]:
        returned = []
        for i in range(rounds):
            state = ("connecting", "connected")[i % 2]
            # Not awaited one by one: several updates of the same plugin queue at once, and
            # each must merge onto the one before it.
            a = asyncio.ensure_future(ctx.set_connection(state, attempt=i))
            b = asyncio.ensure_future(ctx.broadcast("tick", {"i": i}))
            returned.append(msgspec.to_builtins(await a))
            await b
        return returned

    results = await asyncio.gather(*(produce(c) for c in CONTEXTS.values()))
    expected = PRODUCERS * rounds * 2
    got: list[Event] = []
    async with asyncio.timeout(HANG_GUARD):
        while len(got) < expected:
            got.append(await client.next_event())

    seqs = [e.seq for e in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == expected  # one order, no repeats
    assert all(e.persisted for e in got)
    stored = db_rows(config.database_path)
    assert {e.seq: (e.event, e.data) for e in got}.items() <= stored.items()
    for e in got:
        if e.event.endswith(":connection"):
            assert e.data["seq"] == e.seq  # built from (seq, ts) in order
    last = {}
    for e in got:
        if e.event.endswith(":connection"):
            last[e.event.split(":")[0]] = e.data
    assert db_connections(config.database_path) == {**last}
    for ctx, returned in zip(CONTEXTS.values(), results, strict=True):
        assert [r["attempt"] for r in returned] == list(range(rounds))
        assert msgspec.to_builtins(ctx.connection) == last[ctx.name] == returned[-1]


async def test_a_cancelled_caller_still_commits_and_publishes(
    start_daemon: StartDaemon, connect: Connect, config: Config
) -> None:
    CONTEXTS.clear()
    await start_daemon(plugins=PLUGINS)
    client = await connect()
    await client.subscribe(["p0:*"])
    ctx = CONTEXTS["p0"]

    calls = [asyncio.ensure_future(ctx.set_connection("connected", attempt=i)) for i in range(20)]
    await asyncio.sleep(0)  # the first ones are queued or being written
    for call in calls:
        call.cancel()
    await asyncio.gather(*calls, return_exceptions=True)
    published = [await next_matching(client, lambda e: True) for _ in range(20)]
    assert [e.data["attempt"] for e in published] == list(range(20))
    # Nothing was left half-done: the next call commits, and the stored state is the last.
    after = msgspec.to_builtins(
        await ctx.set_connection("disconnected", reason="after the cancels")
    )
    assert (
        db_connections(config.database_path)["p0"] == after == msgspec.to_builtins(ctx.connection)
    )
    stored = db_rows(config.database_path)
    assert all(stored[e.seq] == (e.event, e.data) for e in published)


async def test_a_payload_that_fails_raises_to_its_caller_only(
    start_daemon: StartDaemon, connect: Connect, config: Config
) -> None:
    CONTEXTS.clear()
    daemon = await start_daemon(plugins=PLUGINS)
    assert daemon.recorder is not None
    client = await connect()
    await client.subscribe(["x:*"])

    def broken(seq: int, ts: float) -> dict[str, Any]:
        raise ValueError("bad payload")

    results = await asyncio.gather(
        daemon.recorder.record("x:before", {"n": 1}),
        daemon.recorder.record("x:broken", broken),
        daemon.recorder.record("x:object", {"n": object()}),
        daemon.recorder.record("x:after", {"n": 2}),
        return_exceptions=True,
    )
    assert isinstance(results[1], ValueError) and isinstance(results[2], TypeError)
    before, after = results[0], results[3]
    assert isinstance(before, Event) and isinstance(after, Event)
    got = [await client.next_event() for _ in range(2)]
    assert [e.event for e in got] == ["x:before", "x:after"]
    names = {n for n, _ in db_rows(config.database_path).values()}
    assert {"x:before", "x:after"} <= names and not {"x:broken", "x:object"} & names


@pytest.mark.parametrize("keep", [300])
async def test_retention_holds_its_bound_under_a_flood(
    start_daemon: StartDaemon, connect: Connect, config: Config, keep: int
) -> None:
    CONTEXTS.clear()
    cfg = msgspec.structs.replace(
        config, daemon=msgspec.structs.replace(config.daemon, event_retention_max=keep)
    )
    await start_daemon(plugins=PLUGINS, cfg=cfg)
    reader = sqlite3.connect(f"file:{cfg.database_path}?mode=ro", uri=True)
    largest = 0

    async def flood(ctx: PluginContext) -> None:
        nonlocal largest
        for i in range(keep):
            await ctx.broadcast("tick", {"i": i})
            if i % 10 == 0:  # the table as another reader sees it, all through the flood
                (n,) = reader.execute("SELECT count(*) FROM events").fetchone()
                largest = max(largest, n)

    await asyncio.gather(*(flood(c) for c in CONTEXTS.values()))
    (count,) = reader.execute("SELECT count(*) FROM events").fetchone()
    (oldest,) = reader.execute("SELECT min(seq) FROM events").fetchone()
    reader.close()
    assert PRODUCERS * keep > 3 * keep  # the flood is far beyond the bound ...
    assert count <= keep * 1.1 and largest <= keep * 1.1  # ... and the table held it
    assert count >= keep * 0.9  # without throwing away more than it must

    # A replay from 0 starts at the oldest kept event and runs to the end with no hole.
    client = await connect()
    await client.subscribe(["*"], since=0)
    seqs = []
    async with asyncio.timeout(HANG_GUARD):
        while not isinstance(frame := await client.next_frame(), Replayed):
            seqs.append(frame.seq)
    assert seqs[0] == oldest and seqs == list(range(oldest, oldest + len(seqs)))
