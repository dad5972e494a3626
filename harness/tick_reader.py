"""A client's read buffer that takes a liveness tick where it is read, waking nothing.

An idle client (the TUI, ``harness events -f``) reads nothing but the daemon's liveness ticks
(harness.ticks): one tiny frame every 5 s. Through a plain ``asyncio.StreamReader`` each one
costs a second turn of the event loop after the read: the bytes go into the buffer, the reader
task's future is resolved, and the task is stepped to take the line out again, decode it and
move the deadline. Measured against the same work done raw (harness/bench/idle_liveness.py,
one turn per tick), that was about 60 % more instructions per tick.

The tick's bytes are known in advance: the daemon writes the same answer to the same ping
every time (``{"type":"response","id":N,"result":{}}``, encoded as ``harness.protocol``
encodes it). So when a read brings exactly those bytes and nothing is waiting in the buffer
ahead of them, :class:`TickReader` hands the tick to a callback right there, in the read
callback, and the reader task sleeps on. Anything else (the first answer, which carries the
head seq; a tick read together with an event; a tick behind a partly read frame; a daemon
that encodes differently) goes through the buffer and the reader task as before, where the
client handles ticks too: the fast path only saves work, it decides nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import SupportsIndex


class TickReader(asyncio.StreamReader):
    """``asyncio.StreamReader`` whose :attr:`tick_line`, read alone into an empty buffer, is
    given to :attr:`on_tick_line` instead of the buffer."""

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(limit=limit, loop=loop)
        self.tick_line = b""  # the exact bytes of one tick, newline included; b"": none
        self.on_tick_line: Callable[[], None] | None = None
        self.fast_ticks = 0  # ticks taken here (tests)

    def feed_data(self, data: Iterable[SupportsIndex]) -> None:  # bytes, in fact
        # The buffer must be empty: a tick behind unread bytes waits its turn, so the
        # reader never sees frames out of the order they were written in.
        if data == self.tick_line and not self._buffer and self.on_tick_line is not None:  # type: ignore[attr-defined]
            self.fast_ticks += 1
            self.on_tick_line()
            return
        super().feed_data(data)
