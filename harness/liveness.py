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
:func:`watch`, and ``harness events --follow`` (the blocking one-shot connection,
``harness.cli.oneshot.Connection.keepalive``) with the same intervals and words."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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
        if value >= MIN_INTERVAL and value == value and value != float("inf"):
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


async def watch(
    client: Client,
    on_change: OnChange,
    *,
    after: float = PING_AFTER,
    timeout: float = PING_TIMEOUT,
) -> None:
    """Watch ``client``'s connection until it closes (or this task is cancelled): after
    ``after`` seconds without a frame, ping; no answer within ``timeout``: ``on_change(last
    heard, wall clock)``; the answer at last: ``on_change(None)``. The connection's own end is
    not reported here: the reader of its events sees that."""
    import asyncio

    from harness.client import ClientError, DaemonUnavailable

    while not client.closed.is_set():
        quiet = time.monotonic() - client.last_heard
        if quiet < after:
            await asyncio.sleep(after - quiet)
            continue
        ping = asyncio.ensure_future(client.request("ping"))
        try:
            done, _ = await asyncio.wait({ping}, timeout=timeout)
            if not done:
                heard = time.time() - (time.monotonic() - client.last_heard)
                on_change(heard)
                await asyncio.wait({ping})  # as long as it takes: SIGCONT, or the end
                if client.closed.is_set() and ping.exception() is not None:
                    return  # gone, not back: the stream reports the loss itself
                on_change(None)
            with contextlib.suppress(ClientError, DaemonUnavailable):
                ping.result()  # an error answer (an older daemon) is an answer too
        finally:
            if not ping.done():
                ping.cancel()
            elif not ping.cancelled():
                ping.exception()  # retrieved: the connection's end is reported elsewhere
