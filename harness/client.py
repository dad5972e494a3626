"""An asyncio client for the daemon's socket, shared by the CLI, the TUI and the tests."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import pwd
import socket
import stat
import struct
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from harness import __version__, protocol
from harness.protocol import Ack, Error, Event, Lagged, Replayed, Response, Welcome

if TYPE_CHECKING:
    from harness.transport import SshLink

EVENT_BUFFER = 10_000
# What a client reads a line with: one frame and its newline, as the protocol bounds them. A
# longer line is reported as exactly that (FrameTooLarge), never as a daemon gone away.
READ_LIMIT = protocol.MAX_FRAME_BYTES + 1
_TOO_LARGE = (
    f"the daemon sent a frame larger than {protocol.MAX_FRAME_BYTES // (1024 * 1024)} MiB, the "
    "protocol's limit; the daemon is running but this answer cannot be read (a setting may be "
    "too large: unset it, e.g. `harness plugins set NAME KEY=`)"
)


class ClientError(Exception):
    """The daemon answered a request with an error frame."""

    def __init__(self, error: Error) -> None:
        super().__init__(error.message)
        self.code = error.code
        self.message = error.message
        self.details = error.details or {}


class DaemonUnavailable(Exception):
    """No daemon to talk to (no socket, nobody listening, or the connection dropped).
    ``not_running``: the socket is missing or nobody listens, so starting one is the fix."""

    def __init__(self, message: str, *, not_running: bool = False) -> None:
        super().__init__(message)
        self.not_running = not_running


class UntrustedSocket(DaemonUnavailable):
    """The socket, its directory or the process behind it could belong to another user:
    nothing was sent to it."""


class FrameTooLarge(DaemonUnavailable):
    """The daemon sent a line longer than the protocol's frame limit; the connection is
    unusable after it (the rest of that line cannot be told from the next frame)."""


def _owner(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _trusted(uid: int) -> bool:
    return uid in (os.getuid(), 0)


def verify_socket_path(path: Path | str) -> None:
    """Before connecting: the socket's directory and the socket itself must be ones only this
    user (or root) controls. Otherwise another user could have put a listener there to catch
    what clients send (a token, for one). Raises UntrustedSocket naming the path, its owner
    and what to do. A socket that does not exist is left to connect() to report."""
    path = Path(path)
    directory = path.parent
    for what, target, follow in (("directory", directory, False), ("directory", directory, True)):
        try:
            st = os.stat(target, follow_symlinks=follow)
        except FileNotFoundError:
            return
        if not _trusted(st.st_uid):
            kind = "the link" if stat.S_ISLNK(st.st_mode) else "the socket's " + what
            raise UntrustedSocket(
                f"refusing to talk to {path}: {kind} {directory} belongs to "
                f"{_owner(st.st_uid)}, not to you or root, so that user may be listening "
                f"there. Remove {directory} (as root if need be) and start `harness run` "
                "again, or point --socket/--config at your own daemon"
            )
        if stat.S_ISDIR(st.st_mode) and st.st_mode & 0o002 and not st.st_mode & stat.S_ISVTX:
            raise UntrustedSocket(
                f"refusing to talk to {path}: its directory {directory} is writable by every "
                f"user (mode {stat.S_IMODE(st.st_mode):04o}), so anyone could have put that "
                "socket there. Keep the socket in a private directory (the default, or "
                "`chmod 700` it)"
            )
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise UntrustedSocket(
            f"refusing to talk to {path}: it is not a socket (a link or a file). Remove it "
            "and start `harness run` again"
        )
    if not _trusted(st.st_uid):
        raise UntrustedSocket(
            f"refusing to talk to {path}: the socket belongs to {_owner(st.st_uid)}, not to "
            "you or root. Remove it and start `harness run` again, or point "
            "--socket/--config at your own daemon"
        )


def verify_peer(sock: socket.socket | None, path: Path | str) -> None:
    """After connecting, before sending a byte: the process that listens is this user's or
    root's (SO_PEERCRED). This is the check a planted socket cannot get round; the path
    checks only say earlier, and more precisely, what is wrong."""
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return  # not Linux: the private directory alone has to do
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", creds)
    if not _trusted(uid):
        raise UntrustedSocket(
            f"refusing to talk to {path}: the process listening there (pid {pid}) runs as "
            f"{_owner(uid)}, not as you or root. Nothing was sent. Stop it or remove the "
            "socket, and start `harness run` again"
        )


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
        self.welcome = welcome
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        # Bounded: a consumer that falls behind stops our reads, and the daemon's own lag policy
        # then decides, instead of this process buffering without limit.
        self._events: asyncio.Queue[Event | Replayed | None] = asyncio.Queue(EVENT_BUFFER)
        self._failure: BaseException | None = None
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
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(path), limit=READ_LIMIT), timeout
            )
        except (OSError, TimeoutError) as exc:
            raise DaemonUnavailable(
                f"no daemon at {path}: {_why(exc)}",
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
            line = await asyncio.wait_for(reader.readline(), timeout)
            if not line:
                raise DaemonUnavailable(f"the daemon at {path} closed the connection")
            frame = protocol.decode_server(line)
        except ValueError as exc:  # LimitOverrunError, and msgspec's DecodeError, are these
            writer.close()
            if isinstance(exc, msgspec.DecodeError):
                raise DaemonUnavailable(f"handshake with {path} failed: {exc}") from exc
            raise FrameTooLarge(_TOO_LARGE) from exc
        except (OSError, TimeoutError) as exc:
            writer.close()
            raise DaemonUnavailable(f"handshake with {path} failed: {_why(exc)}") from exc
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

    async def _read_loop(self) -> None:
        failure: BaseException = DaemonUnavailable("the daemon closed the connection")
        lagged = False
        try:
            while line := await self._reader.readline():
                frame = protocol.decode_server(line)
                if isinstance(frame, (Event, Replayed)):
                    await self._events.put(frame)
                elif isinstance(frame, (Response, Ack)):
                    fut = self._pending.pop(frame.id, None)
                    if fut and not fut.done():
                        fut.set_result(frame)
                elif isinstance(frame, Error):
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
            failure = DaemonUnavailable(f"connection to the daemon lost: {_why(exc)}")
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
        if self.closed.is_set():
            raise DaemonUnavailable("the connection to the daemon is closed")
        frame_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[frame_id] = fut
        self._writer.write(protocol.encode(frame_for_id(frame_id)))
        return await fut

    async def request(self, method: str, **params: Any) -> Any:
        if self.read_only is not None and method in protocol.WRITE_METHODS:
            raise ClientError(Error(code=protocol.E_READ_ONLY, message=self.read_only))
        response = await self._call(lambda i: protocol.Request(id=i, method=method, params=params))
        return response.result

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


def _why(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "the socket does not exist (is `harness run` running?)"
    if isinstance(exc, ConnectionRefusedError):
        return "nothing is listening (the daemon is not running)"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
