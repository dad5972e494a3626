"""Delivery: one worker per target drains that target's part of the outbox, in order, with
retry and backoff. A target that fails or hangs delays only its own queue."""

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
        while not self._stopping:
            wait: float | None = None  # nothing queued: until woken
            try:
                row = await outbox.head(self.store, target.name)
            except Exception:
                log.exception("alerts: cannot read the outbox for target %s", target.name)
                row, wait = None, self.retry_max
            if row is not None:
                wait = row.next_try - time.time()
                if wait <= 0:
                    await self._attempt(target, row)
                    continue
            wake.clear()
            if self._stopping:  # stop() may have woken us while we read the outbox
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await wake.wait()

    async def _attempt(self, target: Target, row: outbox.Queued) -> None:
        sent, error = await target.send(row.title, row.body, row.kind, self.timeout)
        try:
            if sent:
                # Marked at once, in its own commit: the window in which a crash resends.
                await outbox.mark_sent(self.store, row.id)
                self.sent += 1
                log.info("alerts: %s sent to %s (%s)", row.kind, target.name, target.shown)
                return
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
        try:
            await self.on_failed(target, row, error, attempts, next_try)
        except Exception:
            log.exception("alerts: reporting a failed send failed")
