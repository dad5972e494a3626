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
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, cast

import msgspec

from harness import __version__, protocol
from harness.bus import Bus, Patterns, StreamSubscriber
from harness.protocol import Ack, Error, Lagged, Replayed, Response, Welcome
from harness.store import Store

log = logging.getLogger(__name__)

Handler = Callable[[Any], Awaitable[Any]]

# How far a client may fall behind before it is cut off. Bytes bound memory whatever the frame
# sizes; frames bound it for the common small frames.
DEFAULT_MAX_QUEUED_FRAMES = 10_000
MAX_QUEUED_BYTES = 16 * 1024 * 1024
REPLAY_PAGE = 500
_WRITE_HIGH = 1024 * 1024  # a transport buffer above this pauses writing
_LAGGED_GRACE = 1.0  # seconds a lagged client gets to read its "lagged" frame before the abort


class RequestError(Exception):
    """Raised by a handler: becomes an ``error`` frame with this code, message and details."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details


class AlreadyRunning(Exception):
    pass


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
        self._inbuf = bytearray()
        self._discarding = False  # inside an oversized frame: skip to its newline
        self._hello = False
        self._replaying = False
        self._held: list[bytes] = []  # live events (joined) that arrive during a replay
        self._held_frames = 0
        # While the transport is paused (its buffer above the high-water mark), frames wait
        # here, not in the transport: on Python 3.11 a large transport buffer costs a memmove
        # of all of it per send. Past the limits the client is cut off (``_lagged``).
        self._paused = False
        self._backlog: collections.deque[tuple[bytes, int]] = collections.deque()
        self._backlog_frames = 0
        self._backlog_bytes = 0
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._closed = False
        self._subscription: asyncio.Task[None] | None = None

    # -- transport callbacks ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A duck-typed check: uvloop's transports are not asyncio.Transport subclasses.
        assert hasattr(transport, "write") and hasattr(transport, "pause_reading")
        self.transport = cast(asyncio.Transport, transport)
        transport = self.transport
        sock = transport.get_extra_info("socket")
        uid = _peer_uid(sock) if sock is not None else None
        self.peer = f"uid={uid}" if uid is not None else "peer"
        # Large enough that the writer batches, small enough that memory stays bounded.
        transport.set_write_buffer_limits(high=_WRITE_HIGH)
        if uid is not None and uid not in (os.getuid(), 0):
            log.warning("refused a client with uid %s (only uid %s may connect)", uid, os.getuid())
            transport.write(
                protocol.encode(Error(code=protocol.E_PERMISSION, message="wrong user"))
            )
            transport.close()
            self._closed = True
            return
        self.server.clients.add(self)

    def pause_writing(self) -> None:
        self._paused = True
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._paused = False
        self._can_write.set()
        # Hand the transport what waited, about a high-water mark at a time, until it pauses
        # again or nothing is left (asyncio allows writes from this callback).
        backlog, transport = self._backlog, self.transport
        while backlog and not self._paused and not self._closed and transport is not None:
            chunk: list[bytes] = []
            size = 0
            while backlog and size < _WRITE_HIGH:
                data, frames = backlog.popleft()
                chunk.append(data)
                size += len(data)
                self._backlog_frames -= frames
                self._backlog_bytes -= len(data)
            transport.write(b"".join(chunk))

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self.server.clients.discard(self)
        self.server.bus.unsubscribe(self)
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
            end = buf.find(b"\n")
            if end < 0:
                if len(buf) > protocol.MAX_FRAME_BYTES:
                    if not self._discarding:
                        self._too_large()
                    self._discarding = True
                    buf.clear()
                return
            line = bytes(buf[:end])
            del buf[: end + 1]
            if self._discarding:
                self._discarding = False  # this was the tail of the oversized frame
                continue
            if len(line) > protocol.MAX_FRAME_BYTES:
                self._too_large()
                continue
            if line.strip():
                self._handle(line)

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
        if self.group is not None and self.group.frames:
            self.server.bus.flush_group(self.group)
            if self._closed:  # that flush cut us off
                return
        self._write(frame, frames)

    def _write(self, data: bytes, frames: int) -> None:
        assert self.transport is not None
        if self._paused or self._backlog:
            self._backlog.append((data, frames))
            self._backlog_frames += frames
            self._backlog_bytes += len(data)
            if (
                self._backlog_frames > self.server.max_queued_frames
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

    def receive(self, joined: bytes, frames: int) -> None:
        """Bus callback, once per loop iteration: must never block or await."""
        if self._closed:
            return
        if self._replaying:
            self._held.append(joined)
            self._held_frames += frames
            if self._held_frames > self.server.max_queued_frames:
                self._lagged()
        else:
            self._write(joined, frames)

    def _lagged(self) -> None:
        """Cut off a client that cannot keep up, so it never slows the bus or grows memory."""
        if self._closed or self.transport is None:
            return
        # Not delivered: what is held for after a replay and what waits for the transport.
        dropped = self._held_frames + self._backlog_frames
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
        asyncio.get_running_loop().call_later(_LAGGED_GRACE, transport.abort)

    # -- inbound ---------------------------------------------------------------------------

    def _handle(self, line: bytes) -> None:
        try:
            frame = protocol.decode_client(line)
        except msgspec.DecodeError as exc:
            code, message = protocol.describe_decode_error(line, exc)
            self.send_error(code, message, id=_guess_id(line))
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
        else:
            self.server.track(self._on_request(frame))

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
        self.peer = f"{frame.client} ({self.peer})"
        self.send_frame(
            Welcome(
                protocol=protocol.PROTOCOL_VERSION,
                server=f"harness/{__version__}",
                seq=self.server.bus.published_seq,
                pid=os.getpid(),
            )
        )

    async def _on_subscribe(
        self, frame: protocol.Subscribe, previous: asyncio.Task[None] | None
    ) -> None:
        bus = self.server.bus
        if previous is not None:
            await asyncio.wait([previous])  # its clean-up first; it must not touch ours
        bus.unsubscribe(self)
        if not all(frame.events):  # msgspec has checked they are strings
            self.send_error(protocol.E_BAD_PARAMS, "events must be non-empty patterns", frame.id)
            return
        self.patterns = Patterns(frame.events)
        # Registering and reading the head happen in the same loop step: every event with a
        # seq above the head reaches us live, every one at or below it is already committed.
        head = bus.published_seq
        self._replaying = frame.since is not None
        bus.subscribe(self)
        self.send_frame(Ack(id=frame.id, seq=head))
        if frame.since is None:
            return
        replayed = 0
        try:
            since = frame.since
            while since < head and not self._closed:
                page = await self.server.store.events_after(since, head, limit=REPLAY_PAGE)
                if not page:
                    break
                frames = [protocol.encode(e) for e in page if self.patterns(e.event)]
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

    async def _on_request(self, frame: protocol.Request) -> None:
        params_type = protocol.METHODS.get(frame.method)
        handler = self.server.handlers.get(frame.method)
        if params_type is None or handler is None:
            known = ", ".join(sorted(self.server.handlers))
            self.send_error(
                protocol.E_UNKNOWN_METHOD,
                f"unknown method {frame.method!r}; known: {known}",
                frame.id,
            )
            return
        try:
            params = msgspec.convert(frame.params, params_type)
        except msgspec.ValidationError as exc:
            self.send_error(
                protocol.E_BAD_PARAMS, f"invalid params for {frame.method}: {exc}", frame.id
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
            self.send_frame(Response(id=frame.id, result=result))


def _guess_id(line: bytes) -> int | None:
    """The ``id`` of a frame that failed validation, so the client can match the error."""
    try:
        value = protocol.decode_json(line)
    except msgspec.DecodeError:
        return None
    frame_id = value.get("id") if isinstance(value, dict) else None
    return frame_id if isinstance(frame_id, int) and not isinstance(frame_id, bool) else None


class Server:
    def __init__(
        self,
        path: Path,
        bus: Bus,
        store: Store,
        handlers: dict[str, Handler],
        *,
        max_queued_frames: int = DEFAULT_MAX_QUEUED_FRAMES,
        own_dir: bool = True,
    ) -> None:
        self.path = path
        self.own_dir = own_dir
        self.bus = bus
        self.store = store
        self.handlers = handlers
        self.max_queued_frames = max_queued_frames
        self.clients: set[ClientConnection] = set()
        self._requests: set[asyncio.Task[None]] = set()
        self._server: asyncio.AbstractServer | None = None
        # Whether the file at ``path`` is our socket. A start refused by prepare_socket_path
        # (a regular file, another listener) must leave that path alone on the way out.
        self._bound = False

    async def start(self) -> None:
        prepare_socket_path(self.path, own_dir=self.own_dir)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(
            lambda: ClientConnection(self), path=str(self.path)
        )
        self._bound = True
        os.chmod(self.path, 0o600)
        log.info("listening on %s", self.path)

    def track(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a request. Owned by the server, not the connection, so that a client going
        away never cuts a change to a plugin short."""
        task = asyncio.get_running_loop().create_task(coro)
        self._requests.add(task)
        task.add_done_callback(self._requests.discard)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for client in list(self.clients):
            if client.transport is not None:
                client.transport.abort()
        # By now the plugin host has stopped and refuses changes: what is left only reads.
        for task in list(self._requests):
            task.cancel()
        if self._requests:
            await asyncio.gather(*self._requests, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        if not self._bound:
            return
        self._bound = False
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def ensure_private_dir(directory: Path, *, own: bool = True) -> None:
    """Create ``directory`` 0700 if missing. ``own``: it is harness's own directory (the
    default socket location), so it must be ours and is made private. A directory the operator
    chose (the parent of a configured socket, say their home) is never chmod-ed: a lax one only
    gets a warning, the socket itself being 0600 and peer-checked."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = directory.stat()
    if not own:
        if stat.S_IMODE(st.st_mode) & 0o022:
            log.warning("%s is writable by other users; a private directory is safer", directory)
        return
    if st.st_uid != os.getuid():
        raise PermissionError(f"{directory} belongs to uid {st.st_uid}, not to you")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(directory, 0o700)


def acquire_lock(path: Path) -> int:
    """Hold an exclusive lock on ``path`` for the life of the process; returns the fd."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            pid = os.read(fd, 32).decode().strip()
        finally:
            os.close(fd)
        raise AlreadyRunning(
            f"a harness daemon is already running (pid {pid or '?'}; lock {path})"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def prepare_socket_path(path: Path, *, own_dir: bool = True) -> None:
    """Make room for our socket: a live daemon there is an error; a dead socket file is
    replaced, but only after a connection to it has failed."""
    ensure_private_dir(path.parent, own=own_dir)
    if not path.exists() and not path.is_symlink():
        return
    if not stat.S_ISSOCK(path.lstat().st_mode):
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
