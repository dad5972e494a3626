"""Delivery: one worker per target drains that target's part of the outbox with retry and
backoff. Up to ``SEND_CONCURRENCY`` sends per target are in flight at once, one per lane (a rule
and a plugin), each lane in order. A target that fails or hangs delays only its own queue.

A failed send is logged at every attempt and counted (``failures``, exported as a metric), but
reported as an ``alert:failed`` event once per notification, at its first failure: the stream
says a notification is not getting through, not every retry of it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable

from harness.alerts import outbox
from harness.alerts.targets import Target
from harness.store import Store

log = logging.getLogger(__name__)

OnFailed = Callable[[Target, outbox.Queued, str, int, float], Awaitable[None]]

# Sends in flight per target. A receiver answers in ~10 ms, so in order, one by one, 1,000
# notifications took ~10 s; a bound keeps a backlog from opening a thousand connections.
SEND_CONCURRENCY = 8


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
        wake = self._wake[target.name]
        inflight: dict[tuple[str, str], asyncio.Task[None]] = {}  # lane -> its send
        row_of: dict[asyncio.Task[None], int] = {}
        # Rows whose send ended since the outbox was last read: what that read says of them
        # may be stale (still pending), and sending it again would be a duplicate.
        ended: set[int] = set()

        def done(task: asyncio.Task[None]) -> None:
            for lane, t in list(inflight.items()):
                if t is task:
                    del inflight[lane]
            ended.add(row_of.pop(task, -1))
            wake.set()  # a lane is free: its next notification may be due

        try:
            while not self._stopping:
                wake.clear()  # before reading: a send that ends after the read wakes us again
                ended.clear()
                wait: float | None = None  # nothing due: until woken
                try:
                    heads = await outbox.lane_heads(self.store, target.name, 4 * SEND_CONCURRENCY)
                except Exception:
                    log.exception("alerts: cannot read the outbox for target %s", target.name)
                    heads, wait = [], self.retry_max
                now = time.time()
                for row in heads:
                    lane = (row.rule, row.plugin)
                    if lane in inflight or row.id in ended:
                        continue
                    if len(inflight) >= SEND_CONCURRENCY:
                        break
                    due_in = row.next_try - now
                    if due_in > 0:
                        wait = due_in if wait is None else min(wait, due_in)
                        continue
                    task = asyncio.get_running_loop().create_task(self._attempt(target, row))
                    inflight[lane] = task
                    row_of[task] = row.id
                    task.add_done_callback(done)
                if self._stopping:  # stop() may have woken us while we read the outbox
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await wake.wait()
            if inflight:  # a clean stop lets the sends in flight finish and be marked
                await asyncio.wait(list(inflight.values()))
        finally:
            for task in inflight.values():
                task.cancel()
            if inflight:
                await asyncio.gather(*inflight.values(), return_exceptions=True)

    async def _attempt(self, target: Target, row: outbox.Queued) -> None:
        sent, error = await target.send(row.title, row.body, row.kind, self.timeout)
        try:
            if sent:
                # Marked at once, in its own commit: the window in which a crash resends.
                await outbox.mark_sent(self.store, row.id)
                self.sent += 1
                self.sent_by_target[target.name] = self.sent_by_target.get(target.name, 0) + 1
                log.info("alerts: %s sent to %s (%s)", row.kind, target.name, target.shown)
                return
            self.failures[target.name] = self.failures.get(target.name, 0) + 1
            next_try = time.time() + self.backoff(row.attempts + 1)
            attempts = await outbox.mark_failed(self.store, row.id, error, next_try)
        except Exception:
            # The database refused the mark: wait, then the same row comes round again.
            log.exception("alerts: cannot record the delivery of %s", row.dedup_key)
            await asyncio.sleep(self.retry_initial)
            return
        log.warning(
            "alerts: sending %s to %s (%s) failed (attempt %d, next in %.1f s): %s",
            row.kind,
            target.name,
            target.shown,
            attempts,
            next_try - time.time(),
            error,
        )
        if attempts != 1:
            return  # the log line above is the retry's record; the stream was told at first
        try:
            await self.on_failed(target, row, error, attempts, next_try)
        except Exception:
            log.exception("alerts: reporting a failed send failed")
