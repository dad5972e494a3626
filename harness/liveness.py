"""Liveness: is the daemon behind a quiet connection still answering?

A daemon that is stopped (SIGSTOP), wedged (a plugin blocking its event loop) or cut off
behind a hung ssh keeps its socket open: nothing ever says it is gone, and a client that only
listens would show "online" forever. So a client asks the daemon, with one ``ping`` carrying
``{"every": after}``, to say every ``after`` seconds that it runs (harness.ticks), and calls
it *not responding* when nothing at all (a tick or any other frame) came for ``after +
timeout`` seconds. It keeps the connection and waits: a daemon that resumes ticks again, and
that ends the episode by itself. A daemon from before ticks refuses the ``every``
(``invalid_params``, an answer too) and is asked instead: a plain ``ping`` after ``after``
seconds of silence, "not responding" when no frame came ``timeout`` seconds later (any answer,
even an ``unknown_method`` error from a daemon older still, proves the loop runs).

With the defaults a frozen daemon is noticed 5-10 s after its last frame; an idle client costs
one tiny frame from the daemon per 5 s (one wake-up). ``$HARNESS_PING_INTERVAL`` (seconds)
sets both.

Used by the TUI's stream (harness.client.Client, local or over ssh) and its fleet screen
through :class:`Watch`; ``harness events --follow`` (the blocking one-shot connection,
``harness.cli.oneshot.Connection.keepalive``) asks, with the same intervals and words."""

from __future__ import annotations

import os
import time

# typing, collections.abc and math not at run time: the one-shot commands (`harness status`)
# import this module for intervals() and the wording, and pay for every import.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import asyncio
    from collections.abc import Awaitable, Callable
    from typing import Any, TypeVar

    T = TypeVar("T")

    from harness.client import Client

    # Called with the wall-clock time the daemon was last heard when it stops answering, and
    # with None when it answers again.
    OnChange = Callable[[float | None], None]

ENV_INTERVAL = "HARNESS_PING_INTERVAL"
PING_AFTER = 5.0  # seconds of silence before asking
PING_TIMEOUT = 5.0  # seconds the answer may take before the daemon is "not responding"
MIN_INTERVAL = 0.05  # below this a ping would be a busy loop


def intervals() -> tuple[float, float]:
    """``(after, timeout)``: the defaults, or both ``$HARNESS_PING_INTERVAL`` when it is set
    to a number of seconds (not a number, or too small: the defaults)."""
    raw = os.environ.get(ENV_INTERVAL, "").strip()
    if raw:
        try:
            value = float(raw)
        except ValueError:
            value = 0.0
        if MIN_INTERVAL <= value < float("inf"):  # (not NaN either)
            return value, value
    return PING_AFTER, PING_TIMEOUT


def not_responding(silent_for: float) -> str:
    """One wording for every client: "the daemon is not responding (nothing for 10 s)"."""
    return (
        f"the daemon is not responding (nothing heard for {silent_for:.0f} s, and no answer "
        "to a ping): it may be stopped (SIGSTOP, a debugger) or its event loop blocked"
    )


class Watch:
    """Watch ``client``'s connection until it closes or :meth:`cancel`; nothing heard for
    ``after + timeout`` seconds: ``on_change(last heard, wall clock)``; heard again:
    ``on_change(None)``. The connection's own end is not reported here: the reader of its
    events sees that.

    Made to cost as little as it can while idle (the idle-CPU target, issue 10), since an idle
    TUI does nothing else. It asks the daemon once for ticks (a ``ping`` with ``every``:
    harness.ticks): the daemon answers that ping again every ``after`` seconds, so an idle
    cycle is one wake-up here, to read the tick, whose handling moves one timer (the deadline,
    ``after + timeout`` on) and reaches nothing in Textual. Over a Unix socket the tick is
    taken in the read callback itself (harness.tick_reader): one turn of the event loop. A
    daemon too old for ticks refuses the ping (``invalid_params``, an answer too) and is asked
    instead (:meth:`_tick`): after ``after`` seconds without a frame, a ping; no frame within
    ``timeout``: not responding. Either way a frozen daemon is noticed ``after`` to
    ``after + timeout`` seconds after its last frame."""

    def __init__(
        self,
        client: Client,
        on_change: OnChange,
        *,
        after: float = PING_AFTER,
        timeout: float = PING_TIMEOUT,
        ticks: bool = True,
    ) -> None:
        import asyncio

        self.client, self.on_change = client, on_change
        self.after, self.timeout = after, timeout
        # An answer may come this much before the timer that reads it: a ping then follows
        # at once instead of a second wake-up a round trip later (detection stays within
        # after + timeout of the daemon's last frame).
        self._slack = after / 10
        self.silent = False
        self.ticked = False  # the daemon sends ticks (else: asked by pings)
        self.ticks = 0  # ticks read (tests)
        self._loop = asyncio.get_running_loop()
        self._sent = float("-inf")  # monotonic time the ping still out was written
        self._ping_id = 0  # its request id; 0: none out
        self._timer: asyncio.TimerHandle | None = None
        self._over = False
        if ticks:
            from harness.client import DaemonUnavailable

            try:
                client.tick_id = client.send_ping(every=after)
            except DaemonUnavailable:
                return  # closed: the stream reports it
            client.on_tick = self._on_tick
            self.ticked = True
            self._timer = self._loop.call_later(after + timeout, self._expired)
        else:
            self._timer = self._loop.call_later(after, self._tick)

    def cancel(self) -> None:
        self._over = True  # a late ping's future is left to end; its answer is dropped
        if self.client.on_tick == self._on_tick:
            self.client.on_tick = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- ticks: the daemon says it runs every ``after`` seconds ------------------------------

    def _on_tick(self, ok: bool) -> None:
        if self._over:
            return
        if self._timer is not None:
            self._timer.cancel()
        if not ok:  # a daemon from before ticks: ask it instead, as it expects
            self.client.on_tick = None
            self.ticked = False
            self._timer = self._loop.call_later(self.after, self._tick)
            return
        self.ticks += 1
        # Moved, not left to fire and re-arm itself: an idle cycle then has one wake-up
        # (this tick's read), not two. A cancelled handle costs no system call.
        self._timer = self._loop.call_later(self.after + self.timeout, self._expired)
        if self.silent:
            self.silent = False
            self.on_change(None)

    def _expired(self) -> None:
        self._timer = None
        client = self.client
        if client.closed.is_set():
            return
        now = time.monotonic()
        heard = client.last_heard
        wait = heard + self.after + self.timeout - now
        if wait > self._slack:  # other frames came meanwhile: any frame proves the loop runs
            self._timer = self._loop.call_later(wait, self._expired)
            return
        # No re-arm: the next tick, whenever the daemon runs again, ends the episode.
        self.silent = True
        self.on_change(time.time() - (now - heard))

    # -- pings: a daemon without ticks is asked after each quiet spell -------------------------

    def _tick(self) -> None:
        self._timer = None
        client = self.client
        if client.closed.is_set():
            return
        now = time.monotonic()
        heard = client.last_heard
        if self._ping_id and heard < self._sent:  # no frame since the ping went out
            if now - self._sent >= self.timeout:
                self._late(now)
                return
            self._arm(self._sent + self.timeout - now)
            return
        self._ping_id = 0
        wait = heard + self.after - now
        if wait > self._slack:  # heard from meanwhile: ask only after a quiet spell
            self._arm(wait)
            return
        from harness.client import DaemonUnavailable

        try:
            self._ping_id = client.send_ping()
        except DaemonUnavailable:
            return  # closed: the stream reports it
        self._sent = now
        self._arm(self.timeout)

    def _arm(self, delay: float) -> None:
        self._timer = self._loop.call_later(delay, self._tick)

    def _late(self, now: float) -> None:
        self.silent = True
        from harness.client import DaemonUnavailable

        try:
            answer = self.client.expect(self._ping_id)
        except DaemonUnavailable:  # pragma: no cover - closed in the same step
            return
        answer.add_done_callback(self._answered)
        self.on_change(time.time() - (now - self.client.last_heard))

    def _answered(self, ping: asyncio.Future[Any]) -> None:
        if ping.cancelled():
            return
        from harness.client import ClientError

        error = ping.exception()  # retrieved either way: asyncio would log it otherwise
        if self._over:
            return
        if error is not None and not isinstance(error, ClientError):
            return  # the connection ended: an outage, which the stream reports
        self._ping_id = 0
        self.silent = False
        self.on_change(None)
        self._arm(self.after)


async def unless_silent(client: Client, work: Awaitable[T], where: str) -> T:
    """Await ``work`` (requests on ``client``) unless the daemon stops answering first (no
    frame, and no answer to a ping: :class:`Watch`); then raise DaemonUnavailable, saying so.
    For the asyncio one-shot commands (``harness alerts``, ``silence``): a request never waits
    silently for ever, as the blocking ones do not (harness/cli/oneshot.py). A daemon that is
    slow but running answers the pings and is waited for."""
    import asyncio

    from harness.client import DaemonUnavailable

    task = asyncio.ensure_future(work)
    silent: list[float] = []

    def on_change(last_heard: float | None) -> None:
        if last_heard is not None and not task.done():
            silent.append(time.time() - last_heard)
            task.cancel()

    after, timeout = intervals()
    watch = Watch(client, on_change, after=after, timeout=timeout)
    try:
        return await task
    except asyncio.CancelledError:
        if silent:
            raise DaemonUnavailable(
                f"{not_responding(silent[0])}; gave up waiting at {where}"
            ) from None
        raise
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
