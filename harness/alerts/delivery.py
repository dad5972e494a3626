"""Delivery: one worker per target drains that target's part of the outbox with retry and
backoff. Up to ``SEND_CONCURRENCY`` sends per target are in flight at once, one per lane (a rule
and a plugin), each lane in order. A target that fails or hangs delays only its own queue.

A failed send is logged at every attempt and counted (``failures``, exported as a metric), but
reported as an ``alert:failed`` event once per notification, at its first failure: the stream
says a notification is not getting through, not every retry of it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable

import msgspec

from harness.alerts import outbox
from harness.alerts.targets import Target
from harness.store import Store

log = logging.getLogger(__name__)

OnFailed = Callable[[Target, outbox.Queued, str, int, float], Awaitable[None]]

# Sends in flight per target. A receiver answers in ~10 ms, so in order, one by one, 1,000
# notifications took ~10 s; a bound keeps a backlog from opening a thousand connections.
SEND_CONCURRENCY = 8
WINDOW = 512  # pending rows a worker holds in memory to send from
REREAD_EVERY = 1.0  # seconds: how soon lanes beyond a full window are seen


class Delivery:
    def __init__(
        self,
        store: Store,
        targets: dict[str, Target],
        *,
        timeout: float,
        retry_initial: float,
        retry_max: float,
        on_failed: OnFailed,
    ) -> None:
        self.store = store
        self.targets = targets
        self.timeout = timeout
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.on_failed = on_failed
        self._wake = {name: asyncio.Event() for name in targets}
        self._tasks: list[asyncio.Task[None]] = []
        self.sent = 0  # since start, for the benchmark and tests
        # Per target since start: sends accepted and failed attempts (every retry counts).
        self.sent_by_target: dict[str, int] = dict.fromkeys(targets, 0)
        self.failures: dict[str, int] = dict.fromkeys(targets, 0)
        self._stopping = False

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for name, target in self.targets.items():
            self._tasks.append(loop.create_task(self._run(target), name=f"alerts:deliver:{name}"))

    def wake(self, names: set[str] | None = None) -> None:
        for name, event in self._wake.items():
            if names is None or name in names:
                event.set()

    async def stop(self, grace: float = 5.0) -> None:
        """Let a send in flight finish and be marked (a clean stop never resends), for at most
        ``grace`` seconds; what is still queued stays in the outbox for the next start."""
        self._stopping = True
        self.wake()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=min(grace, self.timeout))
            for task in late:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._tasks.clear()
        for target in self.targets.values():
            target.close()

    def backoff(self, attempts: int) -> float:
        delay = min(self.retry_max, self.retry_initial * 2 ** max(0, attempts - 1))
        return delay * random.uniform(0.9, 1.1)  # targets failing together do not retry in step

    async def _run(self, target: Target) -> None:
        """Read a window of the target's pending rows, oldest first, and send from it: the
        oldest row of each lane not already sending, as many lanes as SEND_CONCURRENCY. The
        window is read again when the engine queues more, when it is used up, and every
        REREAD_EVERY seconds while rows lie beyond it; not once per send."""
        wake = self._wake[target.name]  # the engine queued something, or stop()
        changed = asyncio.Event()  # a send ended
        window: dict[int, outbox.Queued] = {}  # id -> row, oldest first
        inflight: dict[tuple[str, str], asyncio.Task[float | None]] = {}  # lane -> its send
        # Sends that ended since the last read began: what that read says of their rows may
        # be stale (still pending, the old next_try); None for a row now sent.
        ended: dict[int, outbox.Queued | None] = {}
        complete = False  # the last read held every pending row (none yet: read at start)
        read_at = -math.inf

        def done(row: outbox.Queued, task: asyncio.Task[float | None]) -> None:
            inflight.pop((row.rule, row.plugin), None)
            next_try = None if task.cancelled() or task.exception() else task.result()
            now_row = None if next_try is None else msgspec.structs.replace(row, next_try=next_try)
            ended[row.id] = now_row
            if now_row is None:
                window.pop(row.id, None)
            else:
                window[row.id] = now_row
            changed.set()

        try:
            while not self._stopping:
                wait: float | None = None if complete else REREAD_EVERY
                stale = time.monotonic() - read_at >= REREAD_EVERY
                if wake.is_set() or (not complete and (not window or stale)):
                    wake.clear()
                    ended.clear()
                    read_at = time.monotonic()
                    try:
                        rows = await outbox.pending(self.store, target.name, WINDOW)
                    except Exception:
                        log.exception("alerts: cannot read the outbox for target %s", target.name)
                        rows, wait = list(window.values()), self.retry_max
                    window = {}
                    for row in rows:
                        if row.id in ended:
                            known = ended[row.id]
                            if known is None:
                                continue  # sent while we read
                            row = known
                        window[row.id] = row
                    complete = len(rows) < WINDOW
                now = time.time()
                lanes: set[tuple[str, str]] = set()
                for row in window.values():
                    lane = (row.rule, row.plugin)
                    if lane in lanes:
                        continue  # each lane in order: only its oldest row may go
                    lanes.add(lane)
                    if lane in inflight:
                        continue
                    if len(inflight) >= SEND_CONCURRENCY:
                        break
                    due_in = row.next_try - now
                    if due_in > 0:
                        wait = due_in if wait is None else min(wait, due_in)
                        continue
                    task = asyncio.get_running_loop().create_task(self._attempt(target, row))
                    inflight[lane] = task
                    task.add_done_callback(functools.partial(done, row))
                if self._stopping:  # stop() may have woken us while we read the outbox
                    break
                changed.clear()  # what ended so far is in the window already
                waiters = [
                    asyncio.ensure_future(wake.wait()),
                    asyncio.ensure_future(changed.wait()),
                ]
                try:
                    await asyncio.wait(waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiter in waiters:
                        waiter.cancel()
            if inflight:  # a clean stop lets the sends in flight finish and be marked
                await asyncio.wait(list(inflight.values()))
        finally:
            for task in inflight.values():
                task.cancel()
            if inflight:
                await asyncio.gather(*inflight.values(), return_exceptions=True)

    async def _attempt(self, target: Target, row: outbox.Queued) -> float | None:
        """Send one row and mark it: None once sent, else when to try it again."""
        sent, error = await target.send(row.title, row.body, row.kind, self.timeout)
        try:
            if sent:
                # Marked at once, in its own commit: the window in which a crash resends.
                await outbox.mark_sent(self.store, row.id)
                self.sent += 1
                self.sent_by_target[target.name] = self.sent_by_target.get(target.name, 0) + 1
                log.info("alerts: %s sent to %s (%s)", row.kind, target.name, target.shown)
                return None
            self.failures[target.name] = self.failures.get(target.name, 0) + 1
            next_try = time.time() + self.backoff(row.attempts + 1)
            attempts = await outbox.mark_failed(self.store, row.id, error, next_try)
        except Exception:
            # The database refused the mark: wait, then the same row comes round again.
            log.exception("alerts: cannot record the delivery of %s", row.dedup_key)
            return time.time() + self.retry_initial
        log.warning(
            "alerts: sending %s to %s (%s) failed (attempt %d, next in %.1f s): %s",
            row.kind,
            target.name,
            target.shown,
            attempts,
            next_try - time.time(),
            error,
        )
        if attempts == 1:  # later ones: the log line above is the retry's record
            try:
                await self.on_failed(target, row, error, attempts, next_try)
            except Exception:
                log.exception("alerts: reporting a failed send failed")
        return next_try
