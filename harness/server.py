"""The Unix-socket server: framing, the handshake, subscriptions with replay, requests, and a
bounded write path per client: frames go straight to the transport's buffer, events joined once
per loop iteration by the bus (see ``Bus.flush``)."""

from __future__ import annotations

import asyncio
import collections
import errno
import fcntl
import logging
import os
import socket
import stat
import struct
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, cast

import msgspec

from harness import __version__, oversized, protocol, ticks
from harness.bus import Bus, Patterns, StreamSubscriber, Write
from harness.protocol import Ack, Error, Lagged, Replayed, Response, Welcome
from harness.reads import read_in_heap
from harness.store import Store

log = logging.getLogger(__name__)

Handler = Callable[[Any], Awaitable[Any]]

# How far a client may fall behind before it is cut off. Bytes bound memory whatever the frame
# sizes; frames bound it for the common small frames.
DEFAULT_MAX_QUEUED_FRAMES = 10_000
MAX_QUEUED_BYTES = 16 * 1024 * 1024
REPLAY_PAGE = 500
_WRITE_HIGH = 1024 * 1024  # a transport buffer above this pauses writing
_MIN_FRAME_BYTES = 3  # `{}` and its newline: no frame is shorter
_LAGGED_GRACE = 1.0  # seconds a lagged client gets to read its "lagged" frame before the abort
# Seconds a new connection gets to complete its hello line. A connection that says nothing (or
# a byte now and then) would otherwise hold one of max_clients for ever: enough of them and
# every `harness status` is turned away. Clients send hello at once; over ssh it comes one
# round trip after dial-stdio connects.
HELLO_TIMEOUT = 30.0


class RequestError(Exception):
    """Raised by a handler: becomes an ``error`` frame with this code, message and details."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details


class AlreadyRunning(Exception):
    @classmethod
    def holding(cls, lock: Path, pid: str) -> AlreadyRunning:
        """The daemon holding ``lock`` (its pid as written there; empty: not known)."""
        return cls(f"a harness daemon is already running (pid {pid or '?'}; lock {lock})")


def _peer_uid(sock: socket.socket) -> int | None:
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (OSError, AttributeError):  # not Linux: rely on the 0700 directory alone
        return None
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


class ClientConnection(asyncio.Protocol, StreamSubscriber):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.patterns = Patterns(())
        self.peer = "?"
        self._abort_timer: asyncio.TimerHandle | None = None  # set once cut off as lagged
        self._inbuf = bytearray()
        self._scanned = 0  # how much of _inbuf is known to hold no newline
        self._discarding = False  # inside an oversized frame: skip to its newline
        self._hello = False
        self._replaying = False
        self._held: list[bytes | bytearray] = []  # live events (joined) during a replay
        self._held_frames = 0
        # While the transport is paused (its buffer above the high-water mark), frames wait
        # here, not in the transport: on Python 3.11 a large transport buffer costs a memmove
        # of all of it per send. Past the limits the client is cut off (``_lagged``).
        self._paused = False
        self._backlog: collections.deque[tuple[bytes | bytearray, int]] = collections.deque()
        self._backlog_frames = 0
        self._backlog_bytes = 0
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._closed = False
        self._subscription: asyncio.Task[None] | None = None
        self._hello_timer: asyncio.TimerHandle | None = None
        self.made = False  # connection_made has run (the server counts clients by it)

    # -- transport callbacks ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made = True
        self.server._unmade -= 1
        # A duck-typed check: uvloop's transports are not asyncio.Transport subclasses.
        assert hasattr(transport, "write") and hasattr(transport, "pause_reading")
        self.transport = cast(asyncio.Transport, transport)
        transport = self.transport
        sock = transport.get_extra_info("socket")
        uid = _peer_uid(sock) if sock is not None else None
        self.peer = f"uid={uid}" if uid is not None else "peer"
        # Large enough that the writer batches, small enough that memory stays bounded.
        transport.set_write_buffer_limits(high=_WRITE_HIGH)
        read_in_heap(transport)  # a client's requests (pings) read without mmap
        if uid is not None and uid not in (os.getuid(), 0):
            log.warning("refused a client with uid %s (only uid %s may connect)", uid, os.getuid())
            transport.write(
                protocol.encode(Error(code=protocol.E_PERMISSION, message="wrong user"))
            )
            transport.close()
            self._closed = True
            return
        self.server.clients.add(self)
        self._hello_timer = asyncio.get_running_loop().call_later(HELLO_TIMEOUT, self._no_hello)

    def _no_hello(self) -> None:
        self._hello_timer = None
        if self._hello or self._closed or self.transport is None:
            return
        log.debug("closed a client that sent no hello within %g s (%s)", HELLO_TIMEOUT, self.peer)
        self.send_error(
            protocol.E_PROTOCOL, f"no hello within {HELLO_TIMEOUT:g} s; closing the connection"
        )
        self.transport.close()

    def pause_writing(self) -> None:
        self._paused = True
        self._can_write.clear()
        self.server.bus.redirect(self)  # events now go through receive(), to the backlog

    def resume_writing(self) -> None:
        self._paused = False
        self._can_write.set()
        # Hand the transport what waited, one buffer at a time, until it pauses again (write
        # calls pause_writing itself) or nothing is left; asyncio allows writes from this
        # callback. Not joined first: a join would make a temporary copy of up to the whole
        # backlog, allocated and freed on every resume.
        backlog, transport = self._backlog, self.transport
        while backlog and not self._paused and not self._closed and transport is not None:
            data, frames = backlog.popleft()
            if frames > 0:
                self._backlog_frames -= frames
            self._backlog_bytes -= len(data)
            transport.write(data)
        self.server.bus.redirect(self)  # straight to the transport again, if all was written

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._hello_timer is not None:
            self._hello_timer.cancel()
            self._hello_timer = None
        if self._abort_timer is not None:
            # Closed in time after ``lagged``: the abort is moot, and left pending it would
            # outlive a loop that stops meanwhile.
            self._abort_timer.cancel()
            self._abort_timer = None
        self.server.clients.discard(self)
        self.server.bus.unsubscribe(self)
        self.server.ticker.remove(self)
        self._can_write.set()
        # Requests are left to finish: one that changes a plugin must not stop half-way
        # because its client went away (their answers are simply dropped). A replay is moot.
        if self._subscription is not None:
            self._subscription.cancel()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def data_received(self, data: bytes) -> None:
        buf = self._inbuf
        buf += data
        while not self._closed:
            # Searched from where the last read stopped: a 1 MiB frame arriving in 64 KiB reads
            # is scanned once, not once per read.
            end = buf.find(b"\n", self._scanned)
            if end < 0:
                self._scanned = len(buf)
                if len(buf) > protocol.MAX_FRAME_BYTES:
                    if not self._discarding:
                        self._too_large()
                    self._discarding = True
                    buf.clear()
                    self._scanned = 0
                return
            self._scanned = 0
            line = bytes(buf[:end])
            del buf[: end + 1]
            if self._discarding:
                self._discarding = False  # this was the tail of the oversized frame
                continue
            if len(line) > protocol.MAX_FRAME_BYTES:
                self._too_large()
                continue
            if line and not line.isspace():
                try:
                    self._handle(line)
                except Exception:
                    # Whatever one frame does, the frames after it in this read still count.
                    log.exception("frame from %s could not be handled", self.peer)
                    self.send_error(protocol.E_INTERNAL, "the daemon failed on this frame")

    def _too_large(self) -> None:
        self.send_error(
            protocol.E_TOO_LARGE,
            f"frame larger than {protocol.MAX_FRAME_BYTES} bytes; it was discarded",
        )

    # -- outbound --------------------------------------------------------------------------

    def send(self, frame: bytes, frames: int = 1) -> None:
        """Write a frame of our own (an answer, a replayed page): after any events still
        pending for this client in the bus, so that nothing overtakes them."""
        if self._closed:
            return
        if self.group is not None and self.group.pending:
            self.server.bus.flush_group(self.group)
            if self._closed:  # that flush cut us off
                return
        self._write(frame, frames)

    def _write(self, data: bytes | bytearray, frames: int) -> None:
        assert self.transport is not None
        if self._paused or self._backlog:
            self._backlog.append((data, frames))
            if frames > 0:  # -1: not counted (see Server.max_queued_frames)
                self._backlog_frames += frames
            self._backlog_bytes += len(data)
            if (
                self._backlog_frames > self.server._max_queued_frames
                or self._backlog_bytes > MAX_QUEUED_BYTES
            ):
                self._lagged()
            return
        self.transport.write(data)

    def send_frame(self, frame: msgspec.Struct) -> None:
        self.send(protocol.encode(frame))

    def send_error(
        self, code: str, message: str, id: int | None = None, details: dict[str, Any] | None = None
    ) -> None:
        self.send_frame(Error(code=code, message=message, id=id, details=details))

    def direct_write(self) -> Write | None:
        """The bus writes events straight to the transport, as a raw server would, only while
        nothing else stands between: no replay holding them, no paused transport or backlog."""
        if self._closed or self._replaying or self._paused or self._backlog:
            return None
        return self.transport.write if self.transport is not None else None

    def receive(self, joined: bytes | bytearray, frames: int) -> None:
        """Bus callback, once per loop iteration, whenever :meth:`direct_write` is None: must
        never block or await."""
        if self._closed:
            return
        if self._replaying:
            self._held.append(joined)
            # Held frames have a frame bound only: always counted.
            self._held_frames += frames if frames >= 0 else joined.count(b"\n")
            if self._held_frames > self.server._max_queued_frames:
                self._lagged()
        else:
            self._write(joined, frames)

    def count_backlog(self) -> None:
        """Count the frames of the backlog's buffers that were queued uncounted: the frame
        bound binds from now on (Server.max_queued_frames)."""
        if any(frames < 0 for _, frames in self._backlog):
            self._backlog = collections.deque(
                (data, data.count(b"\n") if frames < 0 else frames)
                for data, frames in self._backlog
            )
            self._backlog_frames = sum(frames for _, frames in self._backlog)

    def _lagged(self) -> None:
        """Cut off a client that cannot keep up, so it never slows the bus or grows memory."""
        if self._closed or self.transport is None:
            return
        # Not delivered: what is held for after a replay and what waits for the transport.
        dropped = self._held_frames + self._backlog_frames
        dropped += sum(data.count(b"\n") for data, frames in self._backlog if frames < 0)
        log.warning("client %s fell %d frames behind; disconnecting it", self.peer, dropped)
        self._closed = True
        self._held.clear()
        self._held_frames = 0
        self._backlog.clear()
        self._backlog_frames = self._backlog_bytes = 0
        self.server.bus.unsubscribe(self)
        transport = self.transport
        transport.pause_reading()
        transport.write(protocol.encode(Lagged(dropped=dropped)))
        transport.close()  # flushes what the socket takes; the abort below ends a stuck one
        self._abort_timer = asyncio.get_running_loop().call_later(_LAGGED_GRACE, transport.abort)

    # -- inbound ---------------------------------------------------------------------------

    def _handle(self, line: bytes) -> None:
        try:
            frame = protocol.decode_client(line)
        except (msgspec.DecodeError, RecursionError) as exc:
            if isinstance(exc, RecursionError):  # too_deep should have caught it; be sure
                exc = msgspec.DecodeError(
                    f"frame is not accepted: JSON nested more than {protocol.MAX_JSON_DEPTH} "
                    "levels deep"
                )
            code, message = protocol.describe_decode_error(line, exc)
            self.send_error(code, message, id=protocol.skim_id(line))
            return
        if isinstance(frame, protocol.Hello):
            self._on_hello(frame)
        elif not self._hello:
            self.send_error(
                protocol.E_PROTOCOL, "send a hello frame first", id=getattr(frame, "id", None)
            )
        elif isinstance(frame, protocol.Subscribe):
            # One subscription per connection: a new one replaces the old, replay included.
            previous = self._subscription
            if frame.since is None and (previous is None or previous.done()):
                # Live only, nothing before it still running: it has nothing to wait for, so
                # it is made in this step, with no task to create now and tear down at close.
                self._subscription = None
                self._begin_subscription(frame)
            else:
                if previous is not None:
                    previous.cancel()
                self._subscription = asyncio.get_running_loop().create_task(
                    self._on_subscribe(frame, previous)
                )
        elif isinstance(frame, protocol.Unsubscribe):
            if self._subscription is not None:
                self._subscription.cancel()
            self.server.bus.unsubscribe(self)
            self.send_frame(Ack(id=frame.id, seq=self.server.bus.published_seq))
        elif frame.method == "ping":
            self._ping(frame)
        else:
            self.server.track(self._on_request(frame))

    def _ping(self, frame: protocol.Request) -> None:
        """The liveness check (harness.liveness): the cheapest answer there is, in this step,
        with no task or handler. A client that hears it knows the loop is running. With
        ``{"every": N}`` the same answer is written again every N seconds (harness.ticks)."""
        every = None
        if frame.params:
            every = ticks.valid_every(frame.params.get("every"))
            if every is None or len(frame.params) != 1:
                self.send_error(
                    protocol.E_BAD_PARAMS,
                    "invalid params for ping: none, or only every (seconds, "
                    f"{ticks.MIN_EVERY:g} to {ticks.MAX_EVERY:g})",
                    frame.id,
                )
                return
        self.send_frame(Response(id=frame.id, result={"seq": self.server.bus.published_seq}))
        if every is not None:
            tick = protocol.encode(Response(id=frame.id, result={}))
            self.server.ticker.add(self, every, tick)

    def _on_hello(self, frame: protocol.Hello) -> None:
        if self._hello:
            self.send_error(protocol.E_PROTOCOL, "hello was already received")
            return
        if frame.protocol != protocol.PROTOCOL_VERSION:
            self.send_error(
                protocol.E_PROTOCOL,
                f"unsupported protocol version {frame.protocol}; this daemon speaks "
                f"{protocol.PROTOCOL_VERSION}",
            )
            return
        self._hello = True
        if self._hello_timer is not None:
            self._hello_timer.cancel()
            self._hello_timer = None
        self.peer = f"{protocol.clip(frame.client, 64)} ({self.peer})"
        self.send_frame(
            Welcome(
                protocol=protocol.PROTOCOL_VERSION,
                server=f"harness/{__version__}",
                seq=self.server.bus.published_seq,
                pid=os.getpid(),
            )
        )

    def _begin_subscription(self, frame: protocol.Subscribe) -> int | None:
        """Replace the subscription with ``frame``'s and acknowledge it: the head (the seq
        a replay runs up to), or None when the frame was refused."""
        bus = self.server.bus
        bus.unsubscribe(self)
        if (problem := _subscribe_problem(frame)) is not None:
            self.send_error(protocol.E_BAD_PARAMS, problem, frame.id)
            return None
        self.patterns = Patterns(frame.events)
        # Registering and reading the head happen in the same loop step: every event with a
        # seq above the head reaches us live, every one at or below it is already committed.
        head = bus.published_seq
        self._replaying = frame.since is not None
        bus.subscribe(self)
        self.send_frame(Ack(id=frame.id, seq=head))
        return head

    async def _on_subscribe(
        self, frame: protocol.Subscribe, previous: asyncio.Task[None] | None
    ) -> None:
        bus = self.server.bus
        if previous is not None:
            await asyncio.wait([previous])  # its clean-up first; it must not touch ours
        head = self._begin_subscription(frame)
        if head is None or frame.since is None:
            return
        replayed = 0
        try:
            since = frame.since
            while since < head and not self._closed:
                page = await self.server.store.events_after(since, head, limit=REPLAY_PAGE)
                if not page:
                    break
                frames = [protocol.encode(e) for e in page if self.patterns(e.event)]
                if frames and max(map(len, frames)) > protocol.MAX_FRAME_BYTES + 1:
                    # Stored by older code: sent as a stand-in, not as a broken frame.
                    matched = [e for e in page if self.patterns(e.event)]
                    frames = oversized.fit_frames(frames, matched, self.peer)
                if frames:
                    self.send(b"".join(frames), len(frames))  # one write per page
                    replayed += len(frames)
                since = page[-1].seq
                # The next page only once the transport takes more: memory stays one page.
                await self._can_write.wait()
        except asyncio.CancelledError:
            # Replaced, unsubscribed or disconnected: what was held belongs to no one now.
            self._held.clear()
            self._held_frames = 0
            self._replaying = False
            raise
        except Exception:
            log.exception("replay for %s failed", self.peer)
            self._held.clear()
            self._held_frames = 0
            self._replaying = False
            bus.unsubscribe(self)
            self.send_error(
                protocol.E_INTERNAL, "replay failed inside the daemon; subscribe again", frame.id
            )
            return
        self.send_frame(Replayed(id=frame.id, count=replayed))
        # Live events that came meanwhile: flushed into the held list first, then all of it.
        if self.group is not None:
            self.server.bus.flush_group(self.group)
        held, self._held = self._held, []
        held_frames, self._held_frames = self._held_frames, 0
        self._replaying = False
        if held:
            self._write(b"".join(held), held_frames)
        self.server.bus.redirect(self)

    async def _on_request(self, frame: protocol.Request) -> None:
        params_type = protocol.METHODS.get(frame.method)
        handler = self.server.handlers.get(frame.method)
        if params_type is None or handler is None:
            known = ", ".join(sorted({*self.server.handlers, "ping"}))
            self.send_error(
                protocol.E_UNKNOWN_METHOD,
                f"unknown method {protocol.clip(frame.method)!r}; known: {known}",
                frame.id,
            )
            return
        try:
            params = msgspec.convert(frame.params, params_type)
        except msgspec.ValidationError as exc:
            self.send_error(
                protocol.E_BAD_PARAMS,
                f"invalid params for {frame.method}: {protocol.clip_quoted(str(exc))}",
                frame.id,
            )
            return
        try:
            result = await handler(params)
        except RequestError as exc:
            self.send_error(exc.code, exc.message, frame.id, exc.details)
        except Exception:
            log.exception("request %s failed", frame.method)
            self.send_error(
                protocol.E_INTERNAL,
                f"{frame.method} failed inside the daemon; see its log",
                frame.id,
            )
        else:
            self._respond(frame, result)

    def _respond(self, frame: protocol.Request, result: Any) -> None:
        """Send the answer, unless it would break the frame limit that clients read with:
        then the request fails with a clear error and the connection stays up."""
        data = protocol.encode(Response(id=frame.id, result=result))
        if len(data) - 1 <= protocol.MAX_FRAME_BYTES:
            self.send(data)
            return
        log.warning("%s answer of %d bytes not sent to %s", frame.method, len(data), self.peer)
        self.send_error(
            protocol.E_RESPONSE_TOO_LARGE,
            f"{frame.method} was carried out, but its answer would be {len(data) - 1} bytes, "
            f"over the {protocol.MAX_FRAME_BYTES}-byte frame limit, so it is not sent; a "
            "setting is probably too large (unset it with plugins.update_settings)",
            frame.id,
        )


def _subscribe_problem(frame: protocol.Subscribe) -> str | None:
    """Why a subscribe is refused: every bound is named, so a client knows what to change."""
    if len(frame.events) > protocol.MAX_SUBSCRIBE_PATTERNS:
        return (
            f"too many event patterns: {len(frame.events)}; at most "
            f"{protocol.MAX_SUBSCRIBE_PATTERNS}"
        )
    for pattern in frame.events:
        if not pattern:
            return "events must be non-empty patterns"
        if len(pattern) > protocol.MAX_PATTERN_CHARS:
            return (
                f"event pattern {protocol.clip(pattern)!r} is too long; at most "
                f"{protocol.MAX_PATTERN_CHARS} characters"
            )
    if frame.since is not None and not 0 <= frame.since <= protocol.MAX_SEQ:
        return f"since must be a seq between 0 and {protocol.MAX_SEQ} (2**63 - 1)"
    return None


class UnsafePath(PermissionError):
    """A path the daemon will not use because someone else could control what it points to."""


# Accepting: how many connections one wake-up takes, how long to pause when accept itself
# fails, and how often such a failure may be logged.
ACCEPT_BATCH = 64
ACCEPT_PAUSE = 0.5
ACCEPT_LOG_INTERVAL = 10.0
MIN_BACKLOG = 1024
DEFAULT_MAX_CLIENTS = 512


def listen_backlog() -> int:
    """At least MIN_BACKLOG, or the kernel's own ceiling if that is higher: a burst of clients
    (a TUI per terminal, scripts in a loop) waits in the queue instead of being refused."""
    try:
        somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    except (OSError, ValueError):
        somaxconn = 0
    return max(MIN_BACKLOG, somaxconn)


class Server:
    def __init__(
        self,
        path: Path,
        bus: Bus,
        store: Store,
        handlers: dict[str, Handler],
        *,
        max_queued_frames: int = DEFAULT_MAX_QUEUED_FRAMES,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        own_dir: bool = True,
    ) -> None:
        self.path = path
        self.own_dir = own_dir
        self.bus = bus
        self.store = store
        self.handlers = handlers
        self.max_queued_frames = max_queued_frames  # tells the bus whether to count frames
        self.max_clients = max_clients
        self.clients: set[ClientConnection] = set()
        self.ticker = ticks.Ticker()  # clients that asked for liveness ticks
        self._requests: set[asyncio.Task[None]] = set()
        self._starting: set[asyncio.Task[None]] = set()  # accepted, being set up
        # Accepted and not yet in ``clients`` (connection_made has not run). Not
        # len(_starting): a task stays there a step after its connection_made, so a client
        # accepted in that step was counted twice and turned away below max_clients.
        self._unmade = 0
        self._sock: socket.socket | None = None
        # One descriptor held in reserve: at the fd limit it is given up to accept a client
        # just long enough to tell it why it is turned away, instead of leaving it hanging.
        self._reserve: int | None = None
        self._paused: asyncio.TimerHandle | None = None
        self._last_accept_log = -ACCEPT_LOG_INTERVAL
        self._unlogged_accept_errors = 0
        # Whether the file at ``path`` is our socket. A start refused by prepare_socket_path
        # (a regular file, another listener) must leave that path alone on the way out.
        self._bound = False
        self._inode = 0

    @property
    def max_queued_frames(self) -> int:
        """A client's bound in frames (events held during its replay; frames waiting while
        its transport is paused, beside MAX_QUEUED_BYTES). Clients read ``_max_queued_frames``
        on their slow path: a property is a Python call there."""
        return self._max_queued_frames

    @max_queued_frames.setter
    def max_queued_frames(self, value: int) -> None:
        self._max_queued_frames = value
        counting = self.bus.count_frames
        # A backlog within MAX_QUEUED_BYTES holds at most MAX_QUEUED_BYTES // 3 frames, so
        # from that bound up the frame bound never binds before the byte bound: the bus need
        # not count the frames of each buffer for paused clients (as a raw server, which
        # bounds bytes only, does not). Cut-offs happen exactly where they did; a backlog's
        # uncounted frames are counted for the ``lagged`` frame when it is cut off, and a
        # replay's held frames are always counted (they have no byte bound).
        self.bus.count_frames = value < MAX_QUEUED_BYTES // _MIN_FRAME_BYTES
        if self.bus.count_frames and not counting:  # a lower bound set while clients wait
            for client in getattr(self, "clients", ()):
                client.count_backlog()

    async def start(self) -> None:
        prepare_socket_path(self.path, own_dir=self.own_dir)
        sock = bind_socket(self.path)
        self._bound = True
        self._inode = self.path.lstat().st_ino
        sock.listen(listen_backlog())
        self._sock = sock
        self._reserve = _open_reserve()
        asyncio.get_running_loop().add_reader(sock.fileno(), self._accept)
        log.info("listening on %s", self.path)

    # -- accepting ---------------------------------------------------------------------------
    # Our own accept loop, not loop.create_unix_server: asyncio's keeps calling accept() after
    # EMFILE within one wake-up and schedules a retry for each failure, so at the fd limit it
    # spins and logs a traceback per attempt (measured: 241,704 in 60 s at 96% CPU).

    def _accept(self) -> None:
        sock = self._sock
        if sock is None:
            return
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    self._at_fd_limit(exc)
                else:
                    self._accept_failed(exc)
                return
            if len(self.clients) + self._unmade >= self.max_clients:
                self._log_accept_problem(
                    f"{self.max_clients} clients connected (max_clients); turning new ones away"
                )
                _turn_away(
                    conn,
                    f"the daemon already serves {self.max_clients} clients (its max_clients); "
                    "close one or raise [daemon] max_clients",
                )
                continue
            self._start_client(conn)

    def _start_client(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        loop = asyncio.get_running_loop()

        made: list[ClientConnection] = []

        def protocol() -> ClientConnection:
            made.append(ClientConnection(self))
            return made[0]

        async def serve() -> None:
            try:
                await loop.connect_accepted_socket(protocol, sock=conn)
            except BaseException as exc:
                if not (made and made[0].made):
                    self._unmade -= 1  # its connection_made never ran
                if not isinstance(exc, Exception):
                    raise
                conn.close()
                self._log_accept_problem(f"could not set up a client connection: {exc}")

        self._unmade += 1

        task = loop.create_task(serve())
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    def _at_fd_limit(self, exc: OSError) -> None:
        """Out of descriptors: use the reserve one to answer each waiting client with an error
        frame, then take the reserve back. No spinning: the waiting queue is emptied (so the
        socket is not readable again until someone new knocks), and if the reserve cannot be
        had back, accepting pauses for a moment."""
        self._log_accept_problem(
            f"out of file descriptors ({exc.strerror}); turning new clients away"
        )
        sock = self._sock
        if self._reserve is not None and sock is not None:
            os.close(self._reserve)
            self._reserve = None
            for _ in range(ACCEPT_BATCH):
                try:
                    conn, _ = sock.accept()
                except OSError:
                    break
                _turn_away(
                    conn,
                    "the daemon is out of file descriptors and cannot take another client; "
                    "try again later (its soft limit is raised to the hard one at start)",
                )
            self._reserve = _open_reserve()
        if self._reserve is None:  # cannot answer the next one either: wait, do not spin
            self._pause()

    def _accept_failed(self, exc: OSError) -> None:
        self._log_accept_problem(f"accept failed: {exc}")
        self._pause()

    def _pause(self) -> None:
        if self._sock is None or self._paused is not None:
            return
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._sock.fileno())
        self._paused = loop.call_later(ACCEPT_PAUSE, self._resume)

    def _resume(self) -> None:
        self._paused = None
        if self._sock is None:
            return
        if self._reserve is None:
            self._reserve = _open_reserve()
        asyncio.get_running_loop().add_reader(self._sock.fileno(), self._accept)

    def _log_accept_problem(self, message: str) -> None:
        """At most one line per ACCEPT_LOG_INTERVAL, counting what it leaves out."""
        now = time.monotonic()
        if now - self._last_accept_log < ACCEPT_LOG_INTERVAL:
            self._unlogged_accept_errors += 1
            return
        skipped, self._unlogged_accept_errors = self._unlogged_accept_errors, 0
        self._last_accept_log = now
        more = f" ({skipped} more since the last report)" if skipped else ""
        log.warning("%s%s", message, more)

    def track(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a request. Owned by the server, not the connection, so that a client going
        away never cuts a change to a plugin short."""
        task = asyncio.get_running_loop().create_task(coro)
        self._requests.add(task)
        task.add_done_callback(self._requests.discard)

    async def close(self) -> None:
        if self._paused is not None:
            self._paused.cancel()
            self._paused = None
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        if self._reserve is not None:
            os.close(self._reserve)
            self._reserve = None
        for task in list(self._starting):
            task.cancel()
        if self._starting:
            await asyncio.gather(*self._starting, return_exceptions=True)
        self.ticker.close()
        for client in list(self.clients):
            if client.transport is not None:
                client.transport.abort()
        # By now the plugin host has stopped and refuses changes: what is left only reads.
        for task in list(self._requests):
            task.cancel()
        if self._requests:
            await asyncio.gather(*self._requests, return_exceptions=True)
        if not self._bound:
            return
        self._bound = False
        try:
            if self.path.lstat().st_ino == self._inode:  # ours, not whatever replaced it
                self.path.unlink()
        except FileNotFoundError:
            pass


def _open_reserve() -> int | None:
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def _turn_away(conn: socket.socket, message: str) -> None:
    """Tell a client why it cannot be served, in one frame, and close it. Never blocks: a
    client that does not read loses the frame, not the daemon's time."""
    try:
        conn.setblocking(False)
        conn.send(protocol.encode(Error(code=protocol.E_TOO_MANY_CLIENTS, message=message)))
    except OSError:
        pass
    finally:
        conn.close()


def bind_socket(path: Path) -> socket.socket:
    """A listening-ready socket at ``path``, created 0600 from the start (the umask, not a
    later chmod that would follow a link swapped in meanwhile)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        old = os.umask(0o177)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)
    except BaseException:
        sock.close()
        raise
    return sock


def ensure_private_dir(directory: Path, *, own: bool = True) -> None:
    """Create ``directory`` 0700 if missing.

    ``own``: it is harness's own directory (the default socket location). It is opened without
    following links and must be a real directory owned by this user; it is made private only
    if this call created it: a directory someone else made (or a link to one) is refused with
    what to do, never chmod-ed. A directory the operator chose (the parent of a configured
    socket, say their home) is never chmod-ed either: a lax one only gets a warning, the
    socket itself being 0600 and peer-checked."""
    if not own:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if stat.S_IMODE(directory.stat().st_mode) & 0o022:
            log.warning("%s is writable by other users; a private directory is safer", directory)
        return
    directory.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    created = False
    try:
        os.mkdir(directory, 0o700)
        created = True
    except FileExistsError:
        pass
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePath(
                f"{directory} is a symbolic link or not a directory; harness keeps its socket "
                "in a directory of its own and follows no link there. Remove it (if you did "
                "not make it, someone else may have planted it) or set [daemon] socket"
            ) from None
        raise
    try:
        st = os.fstat(fd)
        if st.st_uid != os.getuid():
            raise UnsafePath(
                f"{directory} belongs to uid {st.st_uid}, not to you (uid {os.getuid()}); "
                "another user may be waiting for your clients there. Remove it or set "
                "[daemon] socket"
            )
        if stat.S_IMODE(st.st_mode) & 0o077:
            if not created:
                raise UnsafePath(
                    f"{directory} is open to other users (mode "
                    f"{stat.S_IMODE(st.st_mode):03o}) and harness did not create it, so it does "
                    f"not change it: `chmod 700 {directory}` or remove it"
                )
            os.fchmod(fd, 0o700)  # the umask may have left group/other bits
    finally:
        os.close(fd)


def acquire_lock(path: Path) -> int:
    """Hold an exclusive lock on ``path`` for the life of the process; returns the fd.

    Opened without following a link, and written only once it is known to be a plain file of
    ours with no other name: a lock path planted in a shared directory never gets the daemon
    to overwrite what it points to."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePath(
                f"the lock file {path} is a symbolic link; harness never writes through one. "
                "Remove it (if you did not make it, someone else may have planted it)"
            ) from None
        raise
    st = os.fstat(fd)
    problem = (
        "is not a regular file"
        if not stat.S_ISREG(st.st_mode)
        else f"belongs to uid {st.st_uid}, not to you"
        if st.st_uid != os.getuid()
        else f"has {st.st_nlink} names (hard links)"
        if st.st_nlink != 1
        else None
    )
    if problem is not None:
        os.close(fd)
        raise UnsafePath(f"the lock file {path} {problem}; not touching it. Remove it")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            pid = os.read(fd, 32).decode(errors="replace").strip()
        finally:
            os.close(fd)
        raise AlreadyRunning.holding(path, pid) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def prepare_socket_path(path: Path, *, own_dir: bool = True) -> None:
    """Make room for our socket: a live daemon there is an error; a dead socket file is
    replaced, but only after a connection to it has failed. Anything else there (a file, a
    link) is left alone and refused."""
    ensure_private_dir(path.parent, own=own_dir)
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise FileExistsError(f"{path} exists and is not a socket; not touching it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise
        log.info("replacing the stale socket %s left by a daemon that did not stop", path)
        path.unlink(missing_ok=True)
    else:
        raise AlreadyRunning(f"a harness daemon is already listening on {path}")
    finally:
        probe.close()
