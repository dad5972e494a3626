"""The bus: glob patterns, the seq counter, fan-out, and the persist-then-publish recorder."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from harness.bus import Bus, Patterns, QueueSubscriber
from harness.protocol import Event, decode_server
from harness.recorder import Recorder
from harness.store import Store


def ev(seq: int, name: str) -> Event:
    return Event(seq=seq, ts=1.0, event=name, data={"seq": seq})


class Recording:
    """A subscriber that keeps the exact frames it was given."""

    def __init__(self, *patterns: str) -> None:
        self.patterns = Patterns(patterns)
        self.frames: list[bytes] = []

    def deliver(self, frame: bytes, event: Event) -> None:
        self.frames.append(frame)


@pytest.mark.parametrize(
    ("patterns", "matches", "misses"),
    [
        (["*:connection"], ["discord:connection", "a:connection"], ["plugin:status", "connection"]),
        (["plugin:*"], ["plugin:status", "plugin:settings"], ["discord:connection", "plugins:x"]),
        (
            ["*:connection", "plugin:status"],
            ["x:connection", "plugin:status"],
            ["plugin:settings", "x:message"],
        ),
        (["discord:*"], ["discord:connection", "discord:message"], ["echo:connection"]),
        (["*"], ["anything", "a:b:c", ""], []),
        ([], ["anything"], []),  # no pattern means everything
        (["exact"], ["exact"], ["exactly", "inexact"]),
    ],
)
def test_patterns_match_whole_names(
    patterns: list[str], matches: list[str], misses: list[str]
) -> None:
    p = Patterns(patterns)
    for name in matches:
        assert p(name), name
        assert p(name), name  # memoised answer is the same
    for name in misses:
        assert not p(name), name


def test_pattern_memo_stays_bounded() -> None:
    p = Patterns(["a:*"])
    for i in range(10_000):
        assert p(f"a:{i}")
    assert len(p._memo) <= 4097


def test_seq_continues_from_the_stored_maximum() -> None:
    bus = Bus(last_seq=41)
    assert (bus.last_seq, bus.published_seq) == (41, 41)
    assert [bus.next_seq() for _ in range(3)] == [42, 43, 44]
    assert bus.published_seq == 41  # assigned is not published


def test_publish_fans_out_to_matching_subscribers_with_one_encoding() -> None:
    bus = Bus()
    conn, status, everything = Recording("*:connection"), Recording("plugin:*"), Recording("*")
    for sub in (conn, status, everything):
        bus.subscribe(sub)
    assert bus.publish(ev(1, "a:connection")) == 2
    assert bus.publish(ev(2, "plugin:status")) == 2
    assert bus.publish(ev(3, "a:other")) == 1
    assert bus.published_seq == 3
    assert [decode_server(f).seq for f in conn.frames] == [1]  # type: ignore[union-attr]
    assert [decode_server(f).seq for f in status.frames] == [2]  # type: ignore[union-attr]
    assert len(everything.frames) == 3
    assert conn.frames[0] is everything.frames[0]  # encoded once, shared
    frame = msgspec.json.decode(everything.frames[2])
    assert frame == {"type": "event", "seq": 3, "ts": 1.0, "event": "a:other", "data": {"seq": 3}}
    assert everything.frames[2].endswith(b"\n")


def test_a_subscriber_leaving_during_delivery_does_not_disturb_the_others() -> None:
    bus = Bus()

    class LeavesAtOnce(Recording):
        def deliver(self, frame: bytes, event: Event) -> None:
            super().deliver(frame, event)
            bus.unsubscribe(self)

    leaver, first, last = LeavesAtOnce("*"), Recording("*"), Recording("*")
    for sub in (first, leaver, last):
        bus.subscribe(sub)
    assert bus.publish(ev(1, "x")) == 3
    assert bus.publish(ev(2, "x")) == 2
    assert (len(first.frames), len(leaver.frames), len(last.frames)) == (2, 1, 2)
    assert bus.subscriber_count == 2
    bus.unsubscribe(leaver)  # twice is harmless


def test_queue_subscriber_drops_instead_of_growing() -> None:
    bus = Bus()
    sub = QueueSubscriber(["x"], maxsize=2)
    bus.subscribe(sub)
    for seq in range(1, 6):
        bus.publish(ev(seq, "x"))
    assert sub.queue.qsize() == 2 and sub.dropped == 3
    assert sub.queue.get_nowait().seq == 1


# -- the recorder: persist, then publish ---------------------------------------------------------


@pytest.fixture
async def store(state_dir: Path) -> AsyncIterator[Store]:
    s = await Store.open(state_dir / "state.db")
    await s.ensure_plugins(["p"])
    yield s
    await s.close()


async def test_recorder_commits_before_it_publishes(store: Store, state_dir: Path) -> None:
    bus = Bus(await store.last_seq())
    seen_in_db: list[object] = []

    class Checks(Recording):
        def deliver(self, frame: bytes, event: Event) -> None:
            # At publish time another connection already sees the event and the metadata.
            with sqlite3.connect(state_dir / "state.db") as conn:
                row = conn.execute("SELECT data FROM events WHERE seq = ?", (event.seq,))
                meta = conn.execute("SELECT metadata FROM plugin_config WHERE name = 'p'")
                seen_in_db.append((row.fetchone(), msgspec.json.decode(meta.fetchone()[0])))

    bus.subscribe(Checks("*"))
    recorder = Recorder(store, bus)
    event = await recorder.record(
        "p:connection",
        lambda seq, ts: {"state": "connected", "seq": seq},
        plugin="p",
        metadata_key="connection",
    )
    assert event.seq == 1 and event.data == {"state": "connected", "seq": 1}
    assert seen_in_db == [(('{"state":"connected","seq":1}',), {"connection": event.data})]


async def test_a_failed_commit_publishes_nothing_and_burns_its_seq(store: Store) -> None:
    bus = Bus()
    sub = QueueSubscriber()
    bus.subscribe(sub)
    recorder = Recorder(store, bus)
    with pytest.raises(TypeError):
        await recorder.record("x", {"not json": object()})
    assert sub.queue.empty() and bus.published_seq == 0
    event = await recorder.record("x", {"ok": True})
    assert event.seq == 2  # seq 1 is never reused
    assert [e.seq for e in await store.events_after(0)] == [2]


async def test_a_cancelled_record_still_commits_publishes_and_frees_the_connection(
    store: Store,
) -> None:
    """A plugin task cancelled while reporting its connection (the host stopping it): the
    event is committed and published all the same, and the database is not left inside a
    transaction that would refuse every later event."""
    await store.ensure_plugins(["p"])
    bus = Bus()
    sub = QueueSubscriber()
    bus.subscribe(sub)
    recorder = Recorder(store, bus)
    seen: list[Event] = []
    task = asyncio.create_task(
        recorder.record(
            "p:connection",
            {"state": "connecting"},
            plugin="p",
            metadata_key="connection",
            on_published=seen.append,
        )
    )
    await asyncio.sleep(0)  # now inside the write
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    later = await recorder.record(
        "p:connection", {"state": "stopped"}, plugin="p", metadata_key="connection"
    )
    assert later.seq == 2
    assert [e.seq for e in await store.events_after(0)] == [1, 2]
    assert [sub.queue.get_nowait().seq for _ in range(2)] == [1, 2]
    assert [e.seq for e in seen] == [1]  # the caller's bookkeeping ran with the step
    row = await store.get_plugin("p")
    assert row is not None and row.metadata["connection"] == {"state": "stopped"}


def test_patterns_agree_with_fnmatch_on_random_globs() -> None:
    """The glob matcher that replaced fnmatch (no regex cache) means what fnmatch means."""
    import fnmatch
    import random

    rng = random.Random(9)
    for _ in range(20_000):
        pattern = "".join(rng.choice("ab:*?[]!") for _ in range(rng.randint(1, 7)))
        name = "".join(rng.choice("ab:!]") for _ in range(rng.randint(0, 6)))
        assert Patterns([pattern])(name) == fnmatch.fnmatchcase(name, pattern), (pattern, name)
    for pattern, name in [("[a-c]x", "bx"), ("[!a-c]x", "dx"), ("[]]", "]"), ("[!]]", "a")]:
        assert Patterns([pattern])(name) == fnmatch.fnmatchcase(name, pattern), pattern
