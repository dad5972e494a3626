"""An asyncio client for the daemon's socket, shared by the CLI, the TUI and the tests."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from harness import __version__, protocol
from harness.protocol import Ack, Error, Event, Lagged, Replayed, Response, Welcome
from harness.reads import read_in_heap
from harness.socket_trust import (  # re-exported: they were defined here first
    DaemonUnavailable as DaemonUnavailable,
)
from harness.socket_trust import (
    FrameTooLarge as FrameTooLarge,
)
from harness.socket_trust import (
    UntrustedSocket as UntrustedSocket,
)
from harness.socket_trust import (
    too_large_message,
    verify_peer,
    verify_socket_path,
    why_unreachable,
)
from harness.tick_reader import TickReader

if TYPE_CHECKING:
    from harness.transport import SshLink

EVENT_BUFFER = 10_000
# What a client reads a line with: one frame and its newline, as the protocol bounds them. A
# longer line is reported as exactly that (FrameTooLarge), never as a daemon gone away.
READ_LIMIT = protocol.MAX_FRAME_BYTES + 1
_TOO_LARGE = too_large_message(protocol.MAX_FRAME_BYTES)


class ClientError(Exception):
    """The daemon answered a request with an error frame."""

    def __init__(self, error: Error) -> None:
        super().__init__(error.message)
        self.code = error.code
        self.message = error.message
        self.details = error.details or {}


class Client:
    """One connection: ``await Client.connect(path)``, then requests and at most one
    subscription. Events are read with :meth:`events`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        welcome: Welcome,
        link: SshLink | None = None,
    ) -> None:
        self._reader = reader
        self._link = link  # the ssh child when the stream runs over ssh (harness.transport)
        # Set by the caller for a read-only context: writes are refused here, before sending.
        self.read_only: str | None = None
        self._writer = writer
        read_in_heap(writer.transport)  # an idle client's ping answer without mmap
        self.welcome = welcome
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        # Bounded: a consumer that falls behind stops our reads, and the daemon's own lag policy
        # then decides, instead of this process buffering without limit.
        self._events: asyncio.Queue[Event | Replayed | None] = asyncio.Queue(EVENT_BUFFER)
        self._failure: BaseException | None = None
        # Monotonic time of the last frame read: how long the daemon has been quiet
        # (harness.liveness asks a quiet daemon whether it is still there).
        self.last_heard = time.monotonic()
        # The id of a ping answered again every few seconds (harness.ticks), and who is told
        # of each such answer (True) or of its refusal by a daemon too old for it (False).
        self._tick_id = 0
        self.on_tick: Callable[[bool], None] | None = None
        if isinstance(reader, TickReader):  # ticks taken in the read callback: see there
            reader.on_tick_line = self._tick_read
        # Events read off the socket so far, and for a request_marked() the count when its
        # answer was read (by request id): what came before an answer is older than it.
        self.events_read = 0
        self._marks: dict[int, int] = {}
        self._reader_task = asyncio.get_running_loop().create_task(self._read_loop())
        self.closed = asyncio.Event()

    @classmethod
    async def connect(
        cls, path: Path | str, *, client: str = f"harness-cli/{__version__}", timeout: float = 5.0
    ) -> Client:
        """Connect to the daemon's Unix socket, verifying first that it is this user's (see
        :func:`verify_socket_path` and :func:`verify_peer`), then shake hands."""
        verify_socket_path(path)
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can lose a cancel that
            # lands as the connect completes (the connection then leaks; see plugin.py).
            async with asyncio.timeout(timeout):
                reader, writer = await _open_unix(str(path))
        except (OSError, TimeoutError) as exc:
            raise DaemonUnavailable(
                f"no daemon at {path}: {why_unreachable(exc)}",
                not_running=isinstance(exc, (FileNotFoundError, ConnectionRefusedError)),
            ) from exc
        try:
            verify_peer(writer.get_extra_info("socket"), path)
        except BaseException:
            writer.close()
            raise
        return await cls.handshake(reader, writer, path=str(path), client=client, timeout=timeout)

    @classmethod
    async def handshake(
        cls,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        path: str,
        client: str = f"harness-cli/{__version__}",
        timeout: float = 5.0,
        link: SshLink | None = None,
    ) -> Client:
        """Hello/welcome over an already verified stream (another transport, such as a pipe,
        does its own verifying and comes in here: ssh runs `harness dial-stdio`, which checks
        the remote socket). ``reader`` should have a limit of at least READ_LIMIT."""
        try:
            writer.write(
                protocol.encode(protocol.Hello(protocol=protocol.PROTOCOL_VERSION, client=client))
            )
            async with asyncio.timeout(timeout):
                line = await reader.readline()
            if not line:
                raise DaemonUnavailable(f"the daemon at {path} closed the connection")
            frame = protocol.decode_server(line)
        except ValueError as exc:  # LimitOverrunError, and msgspec's DecodeError, are these
            writer.close()
            if isinstance(exc, msgspec.DecodeError):
                raise DaemonUnavailable(f"handshake with {path} failed: {exc}") from exc
            raise FrameTooLarge(_TOO_LARGE) from exc
        except TimeoutError as exc:
            writer.close()
            if link is not None:  # ssh may still be connecting: not the daemon's silence
                raise DaemonUnavailable(f"handshake with {path} failed: timed out") from exc
            # Connected, but no welcome: a daemon that is there and answers nothing.
            # The cause first: a fleet row or a tooltip may show only the start.
            raise DaemonUnavailable(
                f"the daemon at {path} is not responding (no welcome within {timeout:g} s): "
                "it may be stopped (SIGSTOP, a debugger) or its event loop blocked"
            ) from exc
        except OSError as exc:
            writer.close()
            raise DaemonUnavailable(
                f"handshake with {path} failed: {why_unreachable(exc)}"
            ) from exc
        if isinstance(frame, Error):
            writer.close()
            raise ClientError(frame)
        if not isinstance(frame, Welcome):
            writer.close()
            raise DaemonUnavailable(f"unexpected first frame from {path}: {frame!r}")
        return cls(reader, writer, frame, link)

    async def close(self) -> None:
        if self._link is not None:
            self._link.terminate()
        self._reader_task.cancel()
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader_task
        if self._link is not None:
            await self._link.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def tick_id(self) -> int:
        return self._tick_id

    @tick_id.setter
    def tick_id(self, value: int) -> None:
        self._tick_id = value
        if isinstance(self._reader, TickReader):
            # The daemon writes each tick as this same line (harness.ticks: the ping's
            # answer, encoded once); the first answer carries the head seq and is read below.
            self._reader.tick_line = (
                protocol.encode(Response(id=value, result={})) if value else b""
            )

    def _tick_read(self) -> None:
        """A tick taken by the TickReader, as the read loop would take it."""
        self.last_heard = time.monotonic()
        if self.on_tick is not None:
            self.on_tick(True)

    async def _read_loop(self) -> None:
        failure: BaseException = DaemonUnavailable("the daemon closed the connection")
        lagged = False
        try:
            while line := await self._reader.readline():
                self.last_heard = time.monotonic()
                frame = protocol.decode_server(line)
                if isinstance(frame, (Event, Replayed)):
                    self.events_read += isinstance(frame, Event)
                    await self._events.put(frame)
                elif isinstance(frame, (Response, Ack)):
                    if frame.id == self.tick_id and self.on_tick is not None:
                        self.on_tick(True)
                        continue
                    if frame.id in self._marks:
                        self._marks[frame.id] = self.events_read
                    fut = self._pending.pop(frame.id, None)
                    if fut and not fut.done():
                        fut.set_result(frame)
                elif isinstance(frame, Error):
                    if frame.id == self.tick_id and self.on_tick is not None:
                        self.on_tick(False)
                        continue
                    fut = self._pending.pop(frame.id, None) if frame.id is not None else None
                    if fut and not fut.done():
                        fut.set_exception(ClientError(frame))
                elif isinstance(frame, Lagged):
                    failure = DaemonUnavailable(f"cut off by the daemon: {frame.message}")
                    lagged = True
            if self._link is not None and not lagged:
                # Over ssh, the end of stdout means ssh ended: its stderr says why.
                failure = DaemonUnavailable(await self._link.failure(1.0))
        except msgspec.DecodeError as exc:
            failure = DaemonUnavailable(f"the daemon sent a frame that is not valid: {exc}")
        except ValueError:  # readline past READ_LIMIT (asyncio.LimitOverrunError)
            failure = FrameTooLarge(_TOO_LARGE)
        except OSError as exc:
            failure = DaemonUnavailable(f"connection to the daemon lost: {why_unreachable(exc)}")
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(failure)
            self._pending.clear()
            self._failure = failure
            with contextlib.suppress(asyncio.QueueFull):
                self._events.put_nowait(None)  # wakes a waiting reader; a full queue wakes none
            self.closed.set()

    async def _call(self, frame_for_id: Any) -> Any:
        return await self._send(frame_for_id)

    def _send(self, frame_for_id: Any) -> asyncio.Future[Any]:
        if self.closed.is_set():
            raise DaemonUnavailable("the connection to the daemon is closed")
        frame_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[frame_id] = fut
        self._writer.write(protocol.encode(frame_for_id(frame_id)))
        return fut

    def send_ping(self, every: float | None = None) -> int:
        """Write a ``ping`` and return its id, with no future waiting for it: its answer, as
        any frame, moves :attr:`last_heard`, which is all harness.liveness reads while the
        daemon answers (the cheapest idle cycle there is). :meth:`expect` waits for it.
        ``every``: ask the daemon to answer it again every so many seconds (harness.ticks);
        set :attr:`tick_id` and :attr:`on_tick` to hear those answers."""
        if self.closed.is_set():
            raise DaemonUnavailable("the connection to the daemon is closed")
        frame_id = next(self._ids)
        params = {} if every is None else {"every": every}
        self._writer.write(
            protocol.encode(protocol.Request(id=frame_id, method="ping", params=params))
        )
        return frame_id

    def expect(self, frame_id: int) -> asyncio.Future[Any]:
        """A future for the answer to a request already sent (:meth:`send_ping`) and not yet
        answered: it ends with the answer (a ``Response``, or ``ClientError`` from a daemon
        too old to know the method: an answer too) or the connection's end."""
        if self.closed.is_set():
            raise DaemonUnavailable("the connection to the daemon is closed")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[frame_id] = fut
        return fut

    async def request(self, method: str, **params: Any) -> Any:
        if self.read_only is not None and method in protocol.WRITE_METHODS:
            raise ClientError(Error(code=protocol.E_READ_ONLY, message=self.read_only))
        response = await self._call(lambda i: protocol.Request(id=i, method=method, params=params))
        return response.result

    async def request_marked(self, method: str, **params: Any) -> tuple[Any, int]:
        """A request whose answer is to be merged with the stream: returns the result and how
        many events had been read when the answer came. The daemon writes an answer after
        every event it sent before it (``server.send``), so the events up to that count
        (``events_read``, from this connection's first) are older than the answer, and the rest
        newer: the order a value without a seq of its own (live health) needs."""
        frame_id = 0

        def frame(i: int) -> protocol.Request:
            nonlocal frame_id
            frame_id = i
            self._marks[i] = -1
            return protocol.Request(id=i, method=method, params=params)

        try:
            response = await self._call(frame)
            return response.result, self._marks[frame_id]
        finally:
            self._marks.pop(frame_id, None)

    async def subscribe(self, events: Iterable[str] = ("*",), since: int | None = None) -> int:
        """Subscribe; returns the head seq (events after it are live). Replayed events with
        ``seq > since`` come first through :meth:`events`."""
        ack: Ack = await self._call(
            lambda i: protocol.Subscribe(id=i, events=list(events), since=since)
        )
        return ack.seq

    async def next_frame(self) -> Event | Replayed:
        """The next event, or the ``replayed`` marker that ends a replay."""
        if self._failure is not None and self._events.empty():
            raise self._failure
        item = await self._events.get()
        if item is None:
            assert self._failure is not None
            raise self._failure
        return item

    async def next_event(self) -> Event:
        while not isinstance(frame := await self.next_frame(), Event):
            pass
        return frame

    async def events(self) -> AsyncIterator[Event]:
        while True:
            yield await self.next_event()


async def _open_unix(path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``asyncio.open_unix_connection``, with a TickReader as the reader."""
    loop = asyncio.get_running_loop()
    reader = TickReader(READ_LIMIT, loop)
    reading = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await loop.create_unix_connection(lambda: reading, path)
    return reader, asyncio.StreamWriter(transport, reading, reader, loop)
