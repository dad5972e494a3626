"""Liveness: is the daemon behind a quiet connection still answering?

A daemon that is stopped (SIGSTOP), wedged (a plugin blocking its event loop) or cut off
behind a hung ssh keeps its socket open: nothing ever says it is gone, and a client that only
listens would show "online" forever. So a client that has heard nothing for ``after`` seconds
asks (a ``ping`` request; any answer, even an ``unknown_method`` error from an older daemon,
proves the loop runs) and calls the daemon *not responding* when no answer comes within
``timeout``. It keeps the connection and waits: a daemon that resumes answers the ping, and
that ends the episode by itself. A daemon that is busy streaming is never asked.

With the defaults a frozen daemon is noticed 5-10 s after its last frame; an idle client costs
one small request per 5 s of silence. ``$HARNESS_PING_INTERVAL`` (seconds) sets both.

Used by every client: the TUI's stream (harness.client.Client, local or over ssh) through
:class:`Watch`, and ``harness events --follow`` (the blocking one-shot connection,
``harness.cli.oneshot.Connection.keepalive``) with the same intervals and words."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

    from harness.client import Client

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
        if value >= MIN_INTERVAL and math.isfinite(value):
            return value, value
    return PING_AFTER, PING_TIMEOUT


def not_responding(silent_for: float) -> str:
    """One wording for every client: "the daemon is not responding (nothing for 10 s)"."""
    return (
        f"the daemon is not responding (nothing heard for {silent_for:.0f} s, and no answer "
        "to a ping): it may be stopped (SIGSTOP, a debugger) or its event loop blocked"
    )


# Called with the wall-clock time the daemon was last heard when it stops answering, and with
# None when it answers again.
OnChange = Callable[[float | None], None]


class Watch:
    """Watch ``client``'s connection until it closes or :meth:`cancel`: after ``after``
    seconds without a frame, ping; no answer within ``timeout``: ``on_change(last heard, wall
    clock)``; the answer at last: ``on_change(None)``. The connection's own end is not
    reported here: the reader of its events sees that.

    Timers and a done-callback, no task: an idle client's whole cost is one timer and one
    small request per ``after`` seconds."""

    def __init__(
        self,
        client: Client,
        on_change: OnChange,
        *,
        after: float = PING_AFTER,
        timeout: float = PING_TIMEOUT,
    ) -> None:
        import asyncio

        self.client, self.on_change = client, on_change
        self.after, self.timeout = after, timeout
        self.silent = False
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(after, self._check)
        self._over = False

    def cancel(self) -> None:
        self._over = True  # a ping still out is left to end; its answer is read and dropped
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        self._timer = None
        client = self.client
        if client.closed.is_set():
            return
        quiet = time.monotonic() - client.last_heard
        if quiet < self.after:  # heard from meanwhile: ask only after a quiet spell
            self._timer = self._loop.call_later(self.after - quiet, self._check)
            return
        from harness.client import DaemonUnavailable

        try:
            ping = client.ping()
        except DaemonUnavailable:
            return  # closed: the stream reports it
        ping.add_done_callback(self._answered)
        self._timer = self._loop.call_later(self.timeout, self._late)

    def _late(self) -> None:
        self._timer = None
        self.silent = True
        self.on_change(time.time() - (time.monotonic() - self.client.last_heard))

    def _answered(self, ping: asyncio.Future[Any]) -> None:
        if ping.cancelled():
            return
        from harness.client import ClientError

        error = ping.exception()  # retrieved either way: asyncio would log it otherwise
        if self._over:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if error is not None and not isinstance(error, ClientError):
            return  # the connection ended: an outage, which the stream reports
        if self.silent:
            self.silent = False
            self.on_change(None)
        self._timer = self._loop.call_later(self.after, self._check)
