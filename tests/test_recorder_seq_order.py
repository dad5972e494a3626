"""Seq order holds when a write beside the batches (``ctx.update_metadata``) fails on storage
while a batch is in the database thread: the failure's ``daemon:storage`` announcement takes
the next seq, so it must be published after that batch's (lower) seqs, never before them
(found by review: announced at once, it reached subscribers first, and ``published_seq`` went
back when the batch followed). Real Store, Recorder and Bus on a real SQLite file, with the
store's full-disk hook; the database thread is held with two gates so the order of its work
is the one that showed the defect."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from harness.bus import Bus, QueueSubscriber
from harness.recorder import STORAGE_EVENT, Recorder
from harness.store import Store, is_storage_error
from tests.conftest import HANG_GUARD, wait_until


async def test_a_failed_metadata_write_is_announced_after_the_batch_in_flight(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "state.db")
    await store.ensure_plugins(["p", "q"])
    bus = Bus(await store.last_seq())
    sub = QueueSubscriber()
    bus.subscribe(sub)
    recorder = Recorder(store, bus)
    gate1, gate2 = threading.Event(), threading.Event()
    try:
        await store.limit_pages(await store.page_count())  # full: writes that grow fail
        store.submit(lambda conn: gate1.wait(HANG_GUARD), lambda result, exc: None)

        async def update_metadata() -> None:  # plugin q: ctx.update_metadata(k=...)
            try:
                await store.merge_metadata("q", {"k": "v" * 20_000})
            except Exception as exc:
                assert is_storage_error(exc), exc
                recorder.keep_metadata("q", {"k": "v"}, exc)
            else:
                raise AssertionError("the full disk took a 20 kB metadata write")

        metadata = asyncio.ensure_future(update_metadata())
        await asyncio.sleep(0)  # the metadata write is queued behind gate 1
        store.submit(lambda conn: gate2.wait(HANG_GUARD), lambda result, exc: None)
        record = asyncio.ensure_future(
            recorder.record(
                "p:connection",
                {"state": "connected", "pad": "y" * 20_000},
                plugin="p",
                metadata_key="connection",
            )
        )
        # The event gets its seq and its batch goes to the database thread, behind gate 2
        # (the loop's own commit cannot grow the full database either).
        await wait_until(lambda: recorder._busy)
        gate1.set()  # the metadata write fails while the batch waits
        await asyncio.wait_for(metadata, HANG_GUARD)
        gate2.set()  # the batch fails too
        event = await asyncio.wait_for(record, HANG_GUARD)
        assert event.persisted is False
        await wait_until(lambda: sub.queue.qsize() >= 2)
        published = [sub.queue.get_nowait() for _ in range(sub.queue.qsize())]
        seqs = [e.seq for e in published]
        assert seqs == sorted(seqs), [(e.seq, e.event) for e in published]
        assert [e.event for e in published] == ["p:connection", STORAGE_EVENT]
        assert bus.published_seq == seqs[-1] == bus.last_seq
    finally:
        gate1.set()
        gate2.set()
        await recorder.close()
        await store.close()
