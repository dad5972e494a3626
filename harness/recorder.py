"""Persist, then publish: the one path by which any event enters the history and the stream.

Group commit: callers queue events; the writer drains the queue into ONE transaction and after
the commit publishes the batch in seq order. The writer is not a task but callbacks: a caller
that finds it idle schedules it for the loop's next turn (so the other callers of this turn
join the batch), and after each batch it runs again one turn later, once the callers the
publish woke have queued their next events. With one caller awaiting each event a batch holds
one event; with many callers at once a batch holds what each sends next, so throughput grows
with concurrency.

Where the transaction runs: a batch of one event (one caller awaiting each event, the common
case of a quiet daemon) commits on the loop's own thread, on a connection that never waits
(harness/loop_commit.py), when storage is healthy, no retention look-up or large delete is
due, nothing else holds the write lock and the WAL is not due a checkpoint. Everything else
goes in ONE hop to the database thread (its completion is one wake-up of the loop), where a
larger batch's SQLite work runs beside the loop's fan-out instead of holding it up. A commit
on the loop that fails is rolled back and the batch goes to the thread, whose outcome decides
what is published.

When storage fails (disk full, read-only, I/O error) the batch is still published, each event
marked ``persisted=False``; the recorder remembers the newest metadata value of every key it
could not store, retries every :data:`RETRY_INTERVAL` seconds (and with every new batch), and
the first commit that succeeds also stores those values and a ``daemon:storage`` event that
records the gap: which seqs were published but never stored.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from harness.bus import Bus
from harness.protocol import STORAGE_EVENT, Event, StorageHealth, check_event_size
from harness.seq_mark import SeqMark
from harness.store import BatchRow, Store, describe_error, is_storage_error

log = logging.getLogger(__name__)

MAX_BATCH = 1024  # events per transaction: bounds one commit's time and the WAL it writes
RETRY_INTERVAL = 1.0  # seconds between attempts to write again while storage is failing
AGE_CHECK_INTERVAL = 10.0  # seconds between look-ups of the retention age cutoff
# Batches of at most this many events commit on the loop's thread. Two thread hops cost more
# than a one-event transaction; a batch of 10 shares them. In loaded interleaved floods through
# 10 plugins, batches of 10 on the loop gave 0.5-0.8x the ev/s of the database thread (the loop,
# one busy thread, was preempted more often) at ~15 % less CPU per event.
LOOP_BATCH_MAX = 1
# Retention deletes of at most this many events run in a commit on the loop's thread (a batch's
# own steady share); a larger chunk (catching up) goes to the database thread.
LOOP_PRUNE_MAX = 64

DataArg = dict[str, Any] | Callable[[int, float], dict[str, Any]]


class Retention(msgspec.Struct, frozen=True):
    """Keep the newest ``keep`` seqs and nothing older than ``max_age_days`` (0: no age limit).
    Applied by the writer in chunks of at most ``chunk`` events per transaction."""

    keep: int
    max_age_days: float = 0.0
    chunk: int = 512


class _Pending:
    __slots__ = ("data", "future", "metadata_key", "name", "on_published", "plugin", "ts")

    def __init__(
        self,
        name: str,
        data: DataArg,
        plugin: str | None,
        metadata_key: str | None,
        ts: float | None,
        on_published: Callable[[Event], None] | None,
        future: asyncio.Future[Event],
    ) -> None:
        self.name, self.data, self.plugin, self.metadata_key = name, data, plugin, metadata_key
        self.ts, self.on_published, self.future = ts, on_published, future


# A batch on its way: each caller's pending entry, its event and its row. What the database
# thread hands back: (prune_below, rows removed, seconds the prune took, the stamped gap row).
_Batch = list[tuple[_Pending, Event, BatchRow]]
_Written = tuple[int, int, float, BatchRow | None]


def _fail(future: asyncio.Future[Event], exc: BaseException) -> None:
    if not future.done():  # done: its caller was cancelled and no longer waits
        future.set_exception(exc)
        future.exception()  # marks it retrieved: the caller re-raises it all the same


def _encode(value: Any) -> str:
    return msgspec.json.encode(value).decode()


class Recorder:
    def __init__(self, store: Store, bus: Bus, *, retention: Retention | None = None) -> None:
        self.store = store
        self.bus = bus
        self.retention = retention
        self.health = StorageHealth()
        self._queue: collections.deque[_Pending] = collections.deque()
        self._busy = False  # a batch is in the database thread (or waiting for its turn)
        # A write beside the batches failed while a batch (lower seqs) was in the database
        # thread: the failure is announced once that batch is published (write_failed).
        self._announce_after_batch = False
        # A _collect is scheduled: callers queue behind it and their events leave together
        # (the callers a publish woke, or those of the turn in which an idle writer was found).
        self._collecting = False
        self._retry: asyncio.TimerHandle | None = None  # the next try while storage fails
        self._drained: asyncio.Future[None] | None = None  # close() waits on it
        self._closing = False
        # While storage fails: the newest value of each (plugin, key) not stored, to store on
        # recovery so the stored state catches up with the published one.
        self._unstored: dict[tuple[str, str], tuple[str, float]] = {}
        self._oldest: int | None = None  # oldest stored seq, for retention by seq range
        self._age_floor = 0
        self._age_checked = 0.0
        # The longest DELETE of one retention chunk so far (seconds, in the database thread):
        # what retention added to a commit at worst; the persist benchmark reports it.
        self.longest_prune = 0.0
        self._last_gap: dict[str, Any] = {}
        # While the daemon boots, a storage failure ends the start with one message of the
        # daemon's own; the recorder's log line would only repeat it.
        self.quiet = False
        # Covers each seq published unstored, so no later daemon hands it out again
        # (harness/seq_mark.py); the daemon sets it.
        self.seq_mark: SeqMark | None = None

    async def record(
        self,
        name: str,
        data: DataArg,
        *,
        plugin: str | None = None,
        metadata_key: str | None = None,
        ts: float | None = None,
        on_published: Callable[[Event], None] | None = None,
    ) -> Event:
        """Assign the next seq, commit the event (and ``metadata[metadata_key]`` of ``plugin``,
        set to the event's data) in one transaction, then publish it. ``data`` may be a function
        of ``(seq, ts)`` for payloads that carry their own seq; it is called in seq order, after
        every earlier event for the same ``(plugin, metadata_key)`` was published.

        Storage failures do not raise: the event is published with ``persisted=False`` (and
        returned so); see the module docstring. Anything else that fails (``data`` raising,
        a payload that is not JSON) raises to this caller only, and nothing is published.

        Cancelling the caller only stops it waiting: the event is still committed and
        published, and ``on_published`` runs either way, so state kept beside the stream (a
        plugin context's current connection) is updated either way."""
        if self._closing:
            raise RuntimeError("the recorder is closed")
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(name, data, plugin, metadata_key, ts, on_published, future))
        if not self._busy and not self._collecting:
            # Idle: the batch leaves in the loop's next turn, with whatever the other callers
            # of this turn add (10 plugins started together go as one batch). Not from this
            # call: a commit on the loop would resolve the future before the await below, and
            # a caller that awaits each event in a loop would never let the loop run. While a
            # batch is in the database thread, events queue up and go together when it is done.
            self._collecting = True
            asyncio.get_running_loop().call_soon(self._collect)
        # Not shielded (a shield costs a loop iteration per event): a cancelled caller cancels
        # only this future; the batch still commits and publishes the event.
        return await future

    async def close(self) -> None:
        """Write and publish what is queued, then stop. Never cancels a commit."""
        self._closing = True
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._queue and not self._busy and not self._collecting:  # not expected
            self._dispatch()
        if self._busy or self._collecting or self._queue:
            self._drained = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._drained)

    # -- the writer: a batch at a time in the database thread, driven by callbacks ----------

    def _dispatch(self) -> None:
        """Take the next batch and commit it, on the loop's thread when it can, else in the
        database thread; :meth:`_done` follows on the loop. One batch at a time (a commit on the
        loop is over before this returns), so seqs commit and publish in order."""
        while True:
            batch = self._take()
            recovering = not self.health.ok
            if batch or recovering:
                break
            if not self._queue:  # every payload of the batch failed to build
                self._idle()
                return
        rows = [b[2] for b in batch]
        metadata: list[tuple[str, str, str, float]] = []
        gap: BatchRow | None = None
        gap_data: dict[str, Any] = {}
        if recovering:
            # The event that records the gap takes the seq after the batch, but only if the
            # commit succeeds: a failed retry must not use up seqs.
            metadata = [(p, k, v, ts) for (p, k), (v, ts) in self._unstored.items()]
            gap_data = self._gap_data()
            gap = BatchRow(self.bus.last_seq + 1, time.time(), STORAGE_EVENT, _encode(gap_data))
            rows = [*rows, gap]
        store = self.store
        first, newest, size = rows[0].seq, rows[-1].seq, len(rows)
        if (
            gap is None
            and size <= LOOP_BATCH_MAX
            and (prune_below := self._prune_on_loop(first, newest, size)) is not None
        ):
            if (written := store.write_batch_now(rows, prune_below)) is not None:
                self._done(batch, None, (prune_below, *written, None), None)
                return

        def stamp() -> None:
            # With the write lock held: storage takes writes again now, not when this retry was
            # handed over (BEGIN IMMEDIATE may have waited seconds for another process's lock).
            # The loop reads the gap's data only in _done, after this thread is finished.
            assert gap is not None
            now = time.time()
            gap_data["recovered_at"] = now
            rows[-1] = BatchRow(gap.seq, now, gap.name, _encode(gap_data))

        def work(conn: sqlite3.Connection) -> _Written:
            # In the database thread: the retention look-ups and the one transaction.
            prune_below = self._prune_below(conn, first, newest, size)
            removed, took = store.write_batch_here(
                conn, rows, metadata, prune_below, stamp if gap is not None else None
            )
            return prune_below, removed, took, rows[-1] if gap is not None else None

        self._busy = True
        try:
            store.submit(work, functools.partial(self._done, batch, gap))
        except BaseException:
            self._busy = False
            raise

    def _done(
        self,
        batch: _Batch,
        gap: BatchRow | None,
        result: _Written | None,
        exc: BaseException | None,
    ) -> None:
        """On the loop, when the batch's transaction is over: publish, then the next batch."""
        self._busy = False
        announce, self._announce_after_batch = self._announce_after_batch, False
        try:
            self._finish(batch, gap, result, exc)
        except Exception as bug:  # a bug here must not stop every later record
            log.exception("recorder: writing a batch failed unexpectedly")
            for p, _, _ in batch:
                _fail(p.future, bug)
        if announce:
            self._announce_failure()
        if self.health.ok and (not self._closing or self._queue):
            # The callers this batch just woke run in the loop's next iteration, before this
            # callback (a loop runs its callbacks in order): their next events join what is
            # queued and leave as one batch. Dispatching at once, from here or from the first
            # woken caller, split 10 plugins at once into batches of 1 and 9 (half the
            # commits). Also while closing: a batch committed on the loop calls this from
            # _dispatch, so dispatching from here would nest a call per batch.
            self._collecting = True
            asyncio.get_running_loop().call_soon(self._collect)
        elif self._queue:  # storage failing: the database thread's road, never nested
            self._dispatch()
        elif not self.health.ok and not self._closing:
            # Storage is failing and nothing is queued: try again in a while all the same,
            # so the stored state catches up without waiting for the next event.
            if self._retry is not None:
                self._retry.cancel()
            self._retry = asyncio.get_running_loop().call_later(RETRY_INTERVAL, self._try_again)
        else:
            self._idle()

    def _collect(self) -> None:
        self._collecting = False
        if self._busy:
            return
        if self._queue:
            self._dispatch()
        else:
            self._idle()

    def _try_again(self) -> None:
        self._retry = None
        if not self._busy and not self._closing:
            self._dispatch()

    def _idle(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _take(self) -> _Batch:
        """Up to MAX_BATCH queued events, seqs assigned in order and payloads built. A second
        event for a (plugin, key) already in the batch waits for the next one, so its builder
        sees the state published by the first."""
        batch: _Batch = []
        keys: set[tuple[str, str]] = set()
        queue = self._queue
        while queue and len(batch) < MAX_BATCH:
            p = queue[0]
            key = (p.plugin, p.metadata_key) if p.plugin and p.metadata_key else None
            if key is not None:
                if key in keys:
                    break
                keys.add(key)
            queue.popleft()
            seq = self.bus.next_seq()
            now = time.time() if p.ts is None else p.ts
            try:
                payload = p.data(seq, now) if callable(p.data) else p.data
                text = _encode(payload)
                check_event_size(p.name, text)  # over a frame: EventTooLarge, to this caller
            except Exception as exc:  # this caller's bug: it alone hears of it
                _fail(p.future, exc)
                continue
            event = Event(seq=seq, ts=now, event=p.name, data=payload)
            batch.append((p, event, BatchRow(seq, now, p.name, text, p.plugin, p.metadata_key)))
        return batch

    def _finish(
        self,
        batch: _Batch,
        gap: BatchRow | None,
        result: _Written | None,
        exc: BaseException | None,
    ) -> None:
        if exc is not None:
            if not is_storage_error(exc):
                log.error("recording %d events failed: %s", len(batch), exc)
                for p, _, _ in batch:
                    _fail(p.future, exc)
                return
            first_failure = self.health.ok
            self._failed(exc, batch)
            if batch:
                self._cover(batch[-1][1].seq)
            self._publish(batch, persisted=False)
            if first_failure:
                self._announce_failure()
            return
        assert result is not None
        prune_below, removed, took, stamped = result
        if stamped is not None:
            gap = stamped  # the row as committed: stamped when the write lock was ours
        if prune_below:
            self._oldest = prune_below
            self.longest_prune = max(self.longest_prune, took)
            log.debug("retention removed %d events below seq %d", removed, prune_below)
        if gap is not None:
            self._recovered(gap)
            if self.seq_mark is not None:
                self.seq_mark.clear()  # the gap is on record: nothing unstored is outstanding
        self._publish(batch, persisted=True)
        if gap is not None:
            seq = self.bus.next_seq()
            assert seq == gap.seq
            self.bus.publish(Event(seq=seq, ts=gap.ts, event=gap.name, data=self._last_gap))

    def _publish(self, batch: _Batch, *, persisted: bool) -> None:
        for p, event, _ in batch:
            if not persisted:
                event.persisted = False
            self.bus.publish(event)
            if p.on_published is not None:
                try:
                    p.on_published(event)
                except Exception as exc:
                    _fail(p.future, exc)
                    continue
            if not p.future.done():
                p.future.set_result(event)

    # -- storage faults ----------------------------------------------------------------------

    def keep_metadata(self, plugin: str, values: dict[str, Any], exc: BaseException) -> None:
        """A metadata write beside the batches (``ctx.update_metadata``) failed on storage:
        keep its values like an unstored connection, for the first commit that succeeds (a
        key deleted with None is deleted then). The failure is told as any other."""
        now = time.time()
        for key, value in values.items():
            self._unstored[(plugin, key)] = (_encode(value), now)
        self.write_failed(exc)

    def write_failed(self, exc: BaseException) -> None:
        """A write beside the batches met a storage fault: told like a failed batch and
        retried, so ``status`` and the TUI's header say "failing" until a write succeeds.
        A settings change that failed is not kept (its request said so); before this, such a
        failure left the health "ok" until the next event happened to fail too."""
        if self.health.ok:
            self._failed(exc, [])
            if self._busy:
                # The batch in the database thread holds lower seqs, not yet published: the
                # announcement's seq must come after them (seq order), so it waits for _done.
                # (Announced at once, it reached subscribers before that batch's events, and
                # published_seq went back when they followed.)
                self._announce_after_batch = True
            else:
                self._announce_failure()
        if not self._busy and self._retry is None and not self._closing:
            self._retry = asyncio.get_running_loop().call_later(RETRY_INTERVAL, self._try_again)

    def live_metadata(self, plugin: str, stored: dict[str, Any]) -> dict[str, Any]:
        """``plugin``'s metadata as published: the stored row with, while storage fails, the
        newest value of each key published but not stored laid over it (one kept as None was
        deleted). Answers (``status``, ``plugins.*``, ``connections.snapshot``) read through
        it, so a client that asks sees what one that listens sees, not the last row stored."""
        if not self._unstored:
            return stored
        merged = dict(stored)
        for (p, key), (value, _) in self._unstored.items():
            if p != plugin:
                continue
            decoded = msgspec.json.decode(value)
            if decoded is None:
                merged.pop(key, None)
            else:
                merged[key] = decoded
        return merged

    def metadata_stored(self, plugin: str, keys: Iterable[str]) -> None:
        """Those keys were just written: a value kept from before must not overwrite them."""
        if self._unstored:
            for key in keys:
                self._unstored.pop((plugin, key), None)

    def _failed(self, exc: BaseException, batch: _Batch) -> None:
        h = self.health
        if h.ok:
            self.health = h = StorageHealth(
                ok=False, cause=describe_error(exc), detail=str(exc), since=time.time()
            )
            log.log(
                logging.DEBUG if self.quiet else logging.ERROR,
                "storage failing: %s (%s) writing %s; events are published but not stored "
                "until writes succeed again",
                h.cause,
                exc,
                self.store.path,
            )
        for _, event, row in batch:
            h.unpersisted += 1
            if h.first_unpersisted is None:
                h.first_unpersisted = event.seq
            h.last_unpersisted = event.seq
            if row.plugin is not None and row.metadata_key is not None:
                self._unstored[(row.plugin, row.metadata_key)] = (row.data, row.ts)

    def _announce_failure(self) -> None:
        """Subscribers hear of it at once, as a live-only event like the ones it affects (after
        the failed batch, so seqs stay in order)."""
        h = self.health
        seq = self.bus.next_seq()
        h.last_unpersisted = seq
        if h.first_unpersisted is None:
            h.first_unpersisted = seq
        h.unpersisted += 1
        self._cover(seq)
        self.bus.publish(
            Event(
                seq=seq,
                ts=time.time(),
                event=STORAGE_EVENT,
                data={"state": "failing", "cause": h.cause, "detail": h.detail},
                persisted=False,
            )
        )

    def _cover(self, seq: int) -> None:
        if self.seq_mark is not None:
            h = self.health
            self.seq_mark.cover(seq, h.first_unpersisted or seq, h.since, h.cause)

    def _gap_data(self) -> dict[str, Any]:
        h = self.health
        self._last_gap = {
            "state": "recovered",
            "cause": h.cause,
            "failed_since": h.since,
            "recovered_at": time.time(),
            "unpersisted": h.unpersisted,
            "first_unpersisted": h.first_unpersisted,
            "last_unpersisted": h.last_unpersisted,
        }
        return self._last_gap

    def _recovered(self, gap: BatchRow) -> None:
        h = self.health
        log.warning(
            "storage writable again after %.1f s (%s); %d events between seq %s and %s were "
            "published but not stored",
            time.time() - (h.since or time.time()),
            h.cause,
            h.unpersisted,
            h.first_unpersisted,
            h.last_unpersisted,
        )
        self.health = StorageHealth()
        self._unstored.clear()

    # -- retention ---------------------------------------------------------------------------

    def _prune_below(self, conn: sqlite3.Connection, first: int, newest: int, size: int) -> int:
        """In the database thread, before the batch's transaction: the seq below which that
        transaction deletes events (0: none): at most ``chunk`` or twice the batch's size,
        whichever is larger, of the oldest events past the bound. Deleting up to twice what
        is added keeps the table within a batch of ``keep`` at any rate, and no transaction
        carries a long delete. A batch never deletes its own events (even with ``keep = 0``):
        what was just published can be replayed. (Only one batch is in the thread at a time,
        so the retention fields are never touched by two threads at once.)"""
        r = self.retention
        if r is None:
            return 0
        try:
            if self._oldest is None:
                self._oldest = self.store.first_seq_here(conn)
            if r.max_age_days > 0 and time.monotonic() - self._age_checked > AGE_CHECK_INTERVAL:
                self._age_checked = time.monotonic()
                cutoff = time.time() - r.max_age_days * 86400
                self._age_floor = self.store.seq_before_here(conn, cutoff)
        except Exception as exc:  # retention waits for a later batch; the events do not
            log.debug("retention look-up failed: %s", exc)
            return 0
        return self._prune_floor(r, first, newest, size)

    def _prune_on_loop(self, first: int, newest: int, size: int) -> int | None:
        """:meth:`_prune_below` for a commit on the loop's thread, or None when the batch must
        go to the database thread: storage is failing (a retry may wait for the write lock),
        a retention look-up is due, or the delete would be longer than a batch's own share."""
        if not self.health.ok:
            return None
        r = self.retention
        if r is None:
            return 0
        if self._oldest is None or (
            r.max_age_days > 0 and time.monotonic() - self._age_checked > AGE_CHECK_INTERVAL
        ):
            return None
        below = self._prune_floor(r, first, newest, size)
        if below and below - (self._oldest or 1) > LOOP_PRUNE_MAX:
            return None
        return below

    def _prune_floor(self, r: Retention, first: int, newest: int, size: int) -> int:
        floor = min(max(newest - r.keep + 1, self._age_floor + 1), first)
        oldest = self._oldest or 1
        if oldest >= floor:
            return 0
        return min(floor, oldest + max(r.chunk, 2 * size))
