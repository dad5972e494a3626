"""A blocking, stdlib-only connection for the one-shot commands (``status``, ``plugins``,
``events``): a socket, the handshake, requests, and raw frame lines.

Why not :class:`harness.client.Client`: a one-shot command pays for every import before it
prints anything, and asyncio plus msgspec cost more than the whole exchange. The frames are the
same protocol (``harness/protocol.py``); this module only writes the three client frames it
needs and reads the server's by their ``type``. Each frame is bounded by
``protocol.MAX_FRAME_BYTES``, as in the asyncio client."""

from __future__ import annotations

import collections
import contextlib
import json
import socket
from pathlib import Path

from harness.socket_trust import why_unreachable

# typing and collections.abc only for the type checker: a one-shot command pays for each import.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

PROTOCOL_VERSION = 1  # harness.protocol.PROTOCOL_VERSION (not imported: it pulls in msgspec)
MAX_FRAME_BYTES = 1024 * 1024  # harness.protocol.MAX_FRAME_BYTES
_READ = 1 << 16


class NoDaemon(Exception):
    """No daemon to talk to (no socket, nobody listening, or the connection dropped).
    ``not_running``: the socket is missing or nobody listens, so starting one is the fix."""

    def __init__(self, message: str, *, not_running: bool = False) -> None:
        super().__init__(message)
        self.not_running = not_running


class TooLarge(NoDaemon):
    """The daemon sent a line over the frame limit: the connection is unusable after it."""


class Refused(Exception):
    """The daemon answered with an error frame."""

    def __init__(self, frame: dict[str, Any]) -> None:
        super().__init__(frame.get("message", "error"))
        self.code = str(frame.get("code", ""))
        self.message = str(frame.get("message", ""))
        self.details: dict[str, Any] = frame.get("details") or {}


class Pinger:
    """Liveness for a blocking connection (why: harness/liveness.py): after ``after`` quiet
    seconds a ping goes out; no frame within ``timeout`` more and ``on_silent(seconds quiet)``
    is called once; the next frame calls ``on_back()``. Any frame counts as an answer."""

    def __init__(
        self,
        after: float,
        timeout: float,
        on_silent: Callable[[float], None],
        on_back: Callable[[], None],
    ) -> None:
        import time

        self._now = time.monotonic
        self.after, self.timeout = after, timeout
        self.on_silent, self.on_back = on_silent, on_back
        self.last_heard = self._now()
        self.pinged_at: float | None = None
        self.silent = False

    def wait(self) -> float | None:
        """How long the next read may block before :meth:`quiet` is due (None: for ever)."""
        if self.silent:
            return None  # said once; now wait for the daemon as long as it takes
        due = (
            self.last_heard + self.after
            if self.pinged_at is None
            else (self.pinged_at + self.timeout)
        )
        return max(0.01, due - self._now())

    def limit(self) -> float | None:
        """How long one read may block, measured from its start (None: for ever). While no
        ping is out, the whole ``after``: it differs from :meth:`wait` only by the time taken
        to pass the last read on, and staying the same it costs a blocking read nothing to
        set (``Connection._limit_reads``). A read that waited on our own stdout (a paused
        pager) does not count against the daemon."""
        if self.pinged_at is None and not self.silent:
            return self.after
        return self.wait()

    def quiet(self, send: Callable[[], None]) -> None:
        """The read timed out: ping, or, if the ping went unanswered, say so."""
        if self.pinged_at is None:
            send()
            self.pinged_at = self._now()
        else:
            self.silent = True
            self.on_silent(self._now() - self.last_heard)

    def heard(self) -> None:
        self.last_heard = self._now()
        self.pinged_at = None
        if self.silent:
            self.silent = False
            self.on_back()


# Requests that only read: given up on, they changed nothing. Any other may still take effect.
_READS = frozenset(
    ("status", "plugins.list", "plugins.get", "events.history", "connections.snapshot", "subscribe")
)


def _request_pinger(path: str, method: str) -> Pinger:
    """The liveness check (harness/liveness.py, same intervals and words as everywhere) for a
    one-shot request: not responding ends the command (NoDaemon: exit 3), saying so."""
    from harness import liveness

    def give_up(seconds: float) -> None:
        text = f"{liveness.not_responding(seconds)}; gave up waiting at {path}"
        if method and method not in _READS:
            text += f" for the answer to {method}: the change may still be made once it answers"
        raise NoDaemon(text)

    after, timeout = liveness.intervals()
    return Pinger(after, timeout, give_up, lambda: None)


class Connection:
    """One blocking connection: ``Connection(path)``, then :meth:`request` or
    :meth:`subscribe` and :meth:`lines`.

    The hello goes out with the first request, in one write, before the welcome is read (the
    daemon handles a connection's frames in order): one round trip fewer, which over
    ``--host`` is a trip through ssh, sshd and ``dial-stdio``. The welcome is read and checked
    before any answer is (:attr:`welcome`)."""

    def __init__(
        self,
        path: Path | str,
        *,
        client: str,
        timeout: float = 5.0,
        verify: Callable[[socket.socket], None] | None = None,
        sock: socket.socket | None = None,
    ) -> None:
        """``verify(sock)`` runs once connected, before a byte is sent (the peer check).
        ``sock``: already connected (``--host ssh://``: our end of ssh's stdin/stdout)."""
        self.path = str(path)
        self._sock = sock or socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._ready: collections.deque[bytes] = collections.deque()  # received, not yet read
        self._partial = b""  # the start of a frame whose newline has not come yet
        self._ids = 0
        self._pinger: Pinger | None = None
        self._read_limit: float | None = None  # SO_RCVTIMEO, see _limit_reads
        try:
            self._sock.settimeout(timeout)
            if sock is None:
                self._sock.connect(self.path)
        except OSError as exc:
            self._sock.close()
            missing = isinstance(exc, (FileNotFoundError, ConnectionRefusedError))
            raise NoDaemon(
                f"no daemon at {path}: {why_unreachable(exc)}", not_running=missing
            ) from exc
        try:
            if verify is not None:
                verify(self._sock)
        except BaseException:
            self._sock.close()
            raise
        self._welcome: dict[str, Any] | None = None
        # Sent with the first request, in one write (or before the welcome is read).
        self._hello = self._line({"type": "hello", "protocol": PROTOCOL_VERSION, "client": client})

    @property
    def welcome(self) -> dict[str, Any]:
        """The daemon's welcome (read, once, after whatever was sent behind the hello)."""
        if self._welcome is not None:
            return self._welcome
        try:
            if self._hello:
                self._send_lines(b"")
            frame = self._frame(next(self.lines(), None))
        except (OSError, ValueError) as exc:
            self._sock.close()
            raise NoDaemon(f"no daemon at {self.path}: {why_unreachable(exc)}") from exc
        except BaseException:
            self._sock.close()
            raise
        if frame.get("type") == "error":
            self._sock.close()
            raise Refused(frame)
        if frame.get("type") != "welcome":
            self._sock.close()
            raise NoDaemon(f"unexpected first frame from {self.path}: {frame!r}")
        self._welcome = frame
        self._sock.settimeout(None)  # a request may take as long as a plugin needs to stop
        return frame

    def _send_early(self, frame: dict[str, Any]) -> None:
        """Send ``frame``; before the welcome, a failure is "no daemon", or the error frame
        the daemon sent before closing (a refused hello: its words, not a broken pipe)."""
        try:
            self._send(frame)
        except OSError as exc:
            if self._welcome is not None:
                raise
            self.welcome  # noqa: B018 - raises Refused or NoDaemon if the daemon said why
            self._sock.close()
            raise NoDaemon(f"no daemon at {self.path}: {why_unreachable(exc)}") from exc

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _line(frame: dict[str, Any]) -> bytes:
        return json.dumps(frame, separators=(",", ":")).encode() + b"\n"

    def _send(self, frame: dict[str, Any]) -> None:
        self._send_lines(self._line(frame))

    def _send_lines(self, data: bytes) -> None:
        """Send ``data``, behind the hello if that has not gone yet."""
        if self._hello:
            data, self._hello = self._hello + data, b""
        self._sock.sendall(data)

    def _frame(self, line: bytes | None) -> dict[str, Any]:
        if line is None:
            raise NoDaemon(f"the daemon at {self.path} closed the connection")
        try:
            frame = json.loads(line)
        except ValueError as exc:
            raise NoDaemon(f"the daemon sent a malformed frame: {exc}") from exc
        if not isinstance(frame, dict):
            raise NoDaemon("the daemon sent a malformed frame")
        if frame.get("type") == "lagged":
            raise NoDaemon(f"cut off by the daemon: {frame.get('message', '')}")
        return frame

    def lines(self, before_wait: Callable[[], None] | None = None) -> Iterator[bytes]:
        """Raw frame lines as they arrive, without their newline; ends when the daemon closes
        the connection. Memory: one read plus one partial frame (at most MAX_FRAME_BYTES).
        ``before_wait`` runs whenever what was received is used up (to flush output)."""
        ready = self._ready
        while True:
            while ready:
                line = ready.popleft()
                if line:
                    yield line
            if before_wait is not None:
                before_wait()
            chunk = self._recv()
            if chunk is None:
                continue
            if not chunk:
                return
            # Split whole reads at C speed; only the unfinished last frame is carried over.
            *complete, self._partial = (self._partial + chunk).split(b"\n")
            if len(self._partial) > MAX_FRAME_BYTES:
                from harness.socket_trust import too_large_message

                raise TooLarge(too_large_message(MAX_FRAME_BYTES))
            ready.extend(complete)

    def _recv(self) -> bytes | None:
        """One read (empty: the daemon closed the connection). With a pinger, a read that
        waited long enough pings, or says the daemon is not responding: None, read again."""
        pinger = self._pinger
        try:
            if pinger is not None and (limit := pinger.limit()) != self._read_limit:
                self._limit_reads(limit)
            chunk = self._sock.recv(_READ)
        except BlockingIOError:
            # The read limit ran out with nothing read (SO_RCVTIMEO: the kernel's timeout on
            # a blocking socket; a socket timeout would poll before every read of a replay).
            if pinger is None:
                raise NoDaemon(f"the daemon at {self.path} sent nothing in time") from None
            pinger.quiet(self._ping)
            return None
        except TimeoutError:
            # Only the welcome is read with a socket timeout: the daemon is there but frozen.
            raise NoDaemon(
                f"the daemon at {self.path} is not responding (no answer within "
                f"{self._sock.gettimeout() or 0:g} s): it may be stopped (SIGSTOP, a "
                "debugger) or its event loop blocked"
            ) from None
        except OSError as exc:
            raise NoDaemon(f"connection to the daemon lost: {why_unreachable(exc)}") from exc
        if pinger is not None:
            pinger.heard()
        return chunk

    def _limit_reads(self, seconds: float | None) -> None:
        """Let a blocking read wait at most ``seconds`` (None: for ever), then fail with
        EAGAIN. Set only when the limit changes: a replay's reads pay nothing for it."""
        import struct

        whole = 0 if seconds is None else max(int(seconds), 0)
        micro = 0 if seconds is None else max(int((seconds - whole) * 1e6), 1 if not whole else 0)
        self._sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", whole, micro)
        )
        self._read_limit = seconds

    def keepalive(self, pinger: Pinger) -> None:
        """From now on, :meth:`lines` and :meth:`copy_lines` ask a quiet daemon whether it is
        there (a ``ping`` request, whose answer comes through :meth:`lines` like any frame:
        skip it) and say when it is not (``pinger``'s callbacks)."""
        self._pinger = pinger

    def _ping(self) -> None:
        self._ids += 1
        try:
            self._send({"type": "request", "id": self._ids, "method": "ping", "params": {}})
        except OSError as exc:  # not BrokenPipeError to the caller: that is our stdout's
            raise NoDaemon(f"connection to the daemon lost: {why_unreachable(exc)}") from exc

    def copy_lines(
        self,
        prefix: bytes,
        write: Callable[[bytes], object],
        before_wait: Callable[[], None] | None = None,
    ) -> None:
        """Write every frame line that starts with ``prefix`` to ``write``, each with its
        newline, as they arrive, until a line that does not (or the daemon closes the
        connection); that line and what came after it are left for :meth:`lines`.

        Why: a replay is mostly event lines passed on unchanged (``events --since --json``).
        A received block whose lines all start with ``prefix`` goes out in one write,
        checked at C speed: a newline never occurs inside a frame (JSON escapes it), so the
        lines that start with ``prefix`` are the block's start plus each ``\\n`` + prefix.
        Memory as :meth:`lines`: one read plus one partial frame."""
        ready = self._ready
        run: list[bytes] = []  # lines already split off by lines(): passed on in one write
        while ready:
            line = ready[0]
            if line and not line.startswith(prefix):
                break
            ready.popleft()
            if line:
                run.append(line)
        if run:
            run.append(b"")
            write(b"\n".join(run))
        if ready:
            return
        inner = b"\n" + prefix
        while True:
            if before_wait is not None:
                before_wait()
            chunk = self._recv()
            if chunk is None:
                continue
            if not chunk:
                return  # lines() sees the end too
            data = self._partial + chunk if self._partial else chunk
            end = data.rfind(b"\n") + 1
            if len(data) - end > MAX_FRAME_BYTES:
                from harness.socket_trust import too_large_message

                raise TooLarge(too_large_message(MAX_FRAME_BYTES))
            self._partial = data[end:]
            if not end:
                continue
            lines_in = data.count(b"\n", 0, end)
            if data.startswith(prefix) and data.count(inner, 0, end) == lines_in - 1:
                write(data[:end] if end < len(data) else data)  # every line an event
                continue
            # A block with another frame in it: the event lines before that frame in one
            # write, the rest left for lines().
            *lines, _ = data[:end].split(b"\n")
            at = next(
                (i for i, line in enumerate(lines) if line and not line.startswith(prefix)),
                len(lines),
            )
            if events := [line for line in lines[:at] if line]:
                events.append(b"")
                write(b"\n".join(events))
            if at < len(lines):
                ready.extend(lines[at:])
                return

    def _answer(self, frame_id: int, method: str = "") -> dict[str, Any]:
        """The answer to request ``frame_id``. Without a keepalive of the caller's own, the
        wait is bounded as the welcome's is: a daemon that then answers neither the request
        nor a ping is not responding (NoDaemon, exit 3), never waited for silently for ever;
        a live daemon that takes long (a plugin stopping) answers the pings and is waited for."""
        if self._pinger is not None:
            return self._answer_lines(frame_id)
        self._pinger = _request_pinger(self.path, method)
        try:
            return self._answer_lines(frame_id)
        finally:
            self._pinger = None
            if self._read_limit is not None:
                with contextlib.suppress(OSError):  # closed meanwhile
                    self._limit_reads(None)  # as after the welcome: reads wait for ever

    def _answer_lines(self, frame_id: int) -> dict[str, Any]:
        for line in self.lines():
            frame = self._frame(line)
            kind = frame.get("type")
            if frame.get("id") == frame_id and kind in ("response", "ack"):
                return frame
            if kind == "error" and frame.get("id") in (frame_id, None):
                raise Refused(frame)
        raise NoDaemon(f"the daemon at {self.path} closed the connection")

    def request(self, method: str, **params: Any) -> Any:
        self._ids += 1
        self._send_early({"type": "request", "id": self._ids, "method": method, "params": params})
        self.welcome  # noqa: B018 - checked before the answer is read
        return self._answer(self._ids, method)["result"]

    def subscribe(
        self,
        events: list[str],
        since: int | None = None,
        keepalive: Callable[[], Pinger] | None = None,
    ) -> int:
        """Subscribe; returns the head seq. Then read :meth:`lines`: replayed events, a
        ``replayed`` frame (when ``since`` was given), live events.

        ``keepalive``: makes the :meth:`keepalive` pinger, called once the subscribe is sent
        (its imports then overlap the daemon's first work, not delay it) and installed once
        the welcome is read (a daemon frozen at the handshake still ends the command)."""
        self._ids += 1
        self._send_early({"type": "subscribe", "id": self._ids, "events": events, "since": since})
        pinger = keepalive() if keepalive is not None else None
        self.welcome  # noqa: B018 - checked before the answer is read
        if pinger is not None:
            self.keepalive(pinger)
        return int(self._answer(self._ids, "subscribe")["seq"])
