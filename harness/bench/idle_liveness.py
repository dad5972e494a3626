"""The idle benchmark's second baseline: a minimal Textual app doing the TUI's idle work, raw.

``python -m harness.bench tui --only idle`` compares the idle TUI with a minimal Textual app
(issue 10's target, kept as written). That app does nothing at all while idle, and the TUI
cannot match it: it must wake about every 5 s to notice a daemon frozen with its socket open
(harness.liveness). This is the strongest plain version of that same work, so the TUI can also
be judged against what the work itself costs:

- the minimal app (one ``Static``), plus one ``Static`` for the daemon's state;
- one Unix-socket connection to the same daemon: ``hello``, then the same ``ping`` with
  ``{"every": N}`` the TUI sends (harness.ticks: the daemon answers it again every N s);
- per frame read: a tick is known by its bytes (the daemon writes the same line every time,
  harness.ticks), anything else is decoded (msgspec, the protocol's own decoder); a tick moves
  the deadline (N + timeout s on): the same timer handling as harness.liveness.Watch;
- drawn only on a change: "not responding" when the deadline passes, "online" when a tick
  comes again. A tick that changes nothing touches nothing in Textual.

Raw, not through harness.client: an ``asyncio.BufferedProtocol`` reads into one buffer it
owns (no read buffer allocated per read, no StreamReader, no task woken per frame), and the
tick is handled in the callback that read it: one turn of the event loop per tick.

Run as ``python -m harness.bench.idle_liveness SOCKET SETTLE``: it prints ``ready`` once
settled and its first answer has come, then sits until killed; on SIGUSR1 it prints
``ticks N`` (ticks read so far), so the benchmark can check it did the work it is timed for,
and on SIGUSR2 ``silent 0|1`` (whether it holds the daemon for not responding: tests).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import msgspec
from textual.app import App, ComposeResult
from textual.widgets import Static

from harness import liveness, protocol

PING_ID = 1
BUFFER = 64 * 1024  # bytes: far above any frame this connection gets while idle
# The protocol's frames, decoded straight from the read buffer (a memoryview: no copy).
DECODER = msgspec.json.Decoder(protocol.ServerFrame)


class TickReader(asyncio.BufferedProtocol):
    """Reads the connection's frames into one buffer; ticks move the deadline."""

    def __init__(self, app: IdleLiveness, after: float, timeout: float) -> None:
        self.app = app
        self.after, self.timeout = after, timeout
        self._buffer = bytearray(BUFFER)
        self._view = memoryview(self._buffer)
        self._used = 0
        self.ticks = 0
        self.answered = False
        self.silent = False
        self._loop = asyncio.get_running_loop()
        self._deadline: asyncio.TimerHandle | None = None
        # A tick's line, newline excluded: compared, not decoded (the strongest plain client).
        self._tick = protocol.encode(protocol.Response(id=PING_ID, result={}))[:-1]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        self._transport = transport
        transport.write(
            protocol.encode(protocol.Hello(protocol=protocol.PROTOCOL_VERSION, client="bench"))
            + protocol.encode(
                protocol.Request(id=PING_ID, method="ping", params={"every": self.after})
            )
        )
        self._arm()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view[self._used :]

    def buffer_updated(self, nbytes: int) -> None:
        end = self._used + nbytes
        start = 0
        while (newline := self._buffer.find(b"\n", start, end)) >= 0:
            line = self._view[start:newline]
            if line == self._tick:
                self._ticked()
            else:
                self._frame(DECODER.decode(line))
            start = newline + 1
        if start:
            self._buffer[: end - start] = self._buffer[start:end]
        self._used = end - start
        if self._used == BUFFER:  # a frame larger than the buffer: not this connection's
            self._transport.close()

    def _frame(self, frame: Any) -> None:
        if isinstance(frame, protocol.Response) and frame.id == PING_ID:
            self._ticked()  # the first answer, which carries the head seq

    def _ticked(self) -> None:
        self.ticks += 1
        self._arm()
        if not self.answered:
            self.answered = True
            self.app.ready_if_settled()
        if self.silent:
            self.silent = False
            self.app.show("daemon online")

    def _arm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self._loop.call_later(self.after + self.timeout, self._expired)

    def _expired(self) -> None:
        self._deadline = None
        self.silent = True
        self.app.show("daemon not responding")

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self.app.show("daemon offline")


class IdleLiveness(App[None]):
    def __init__(self, socket: str, settle: float) -> None:
        super().__init__()
        self.socket, self.settle = socket, settle
        self.reader: TickReader | None = None
        self.settled = False
        self._said_ready = False

    def compose(self) -> ComposeResult:
        yield Static("hello")
        yield Static("daemon online", id="link")

    async def on_mount(self) -> None:
        after, timeout = liveness.intervals()
        loop = asyncio.get_running_loop()
        _, self.reader = await loop.create_unix_connection(
            lambda: TickReader(self, after, timeout), self.socket
        )
        signal.signal(signal.SIGUSR1, self._report)
        signal.signal(signal.SIGUSR2, self._report_silent)

    def on_ready(self) -> None:
        self.set_timer(self.settle, self._settled)

    def _settled(self) -> None:
        self.settled = True
        self.ready_if_settled()

    def ready_if_settled(self) -> None:
        if self.settled and self.reader is not None and self.reader.answered:
            if not self._said_ready:
                self._said_ready = True
                _say("ready")

    def show(self, text: str) -> None:
        self.query_one("#link", Static).update(text)

    def _report_silent(self, *_: object) -> None:
        _say(f"silent {int(self.reader is not None and self.reader.silent)}")

    def _report(self, *_: object) -> None:
        ticks = self.reader.ticks if self.reader is not None else 0
        _say(f"ticks {ticks}")


def _say(line: str) -> None:
    # Textual takes sys.stdout over; the benchmark reads the real one.
    out = sys.__stdout__
    assert out is not None
    out.write(line + "\n")
    out.flush()


def main() -> None:
    IdleLiveness(sys.argv[1], float(sys.argv[2])).run(headless=True)


if __name__ == "__main__":
    main()
