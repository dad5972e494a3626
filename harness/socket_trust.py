"""Whether a daemon socket can be trusted, and the errors a client reports about reaching
one: stdlib only, so that the one-shot CLI path (``harness/cli/oneshot.py``) verifies exactly
as :class:`harness.client.Client` does without importing asyncio or msgspec."""

from __future__ import annotations

import os
import socket
import stat
import sys
from pathlib import Path


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


def why_unreachable(exc: BaseException) -> str:
    """A failed connect or read in words, for both the asyncio and the one-shot client."""
    if isinstance(exc, FileNotFoundError):
        return "the socket does not exist (is `harness run` running?)"
    if isinstance(exc, ConnectionRefusedError):
        return "nothing is listening (the daemon is not running)"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.errno is None and "too long" in str(exc):
        # Python's own refusal ("AF_UNIX path too long"), before any system call.
        from harness.preflight import SOCKET_PATH_MAX

        return (
            f"the path is longer than the {SOCKET_PATH_MAX} bytes a Unix socket path can have, "
            "so no daemon can listen there; use a shorter --socket PATH (or socket in [daemon])"
        )
    return str(exc) or type(exc).__name__


def too_large_message(limit: int) -> str:
    return (
        f"the daemon sent a frame larger than {limit // (1024 * 1024)} MiB, the protocol's "
        "limit; the daemon is running but this answer cannot be read (a setting may be too "
        "large: unset it, e.g. `harness plugins set NAME KEY=`)"
    )


def _owner(uid: int) -> str:
    import pwd  # only to name another user, which the common path never does

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
    # struct ucred: three C ints (pid, uid, gid), native order. Read without the struct
    # module, whose extension every one-shot command would load for these two numbers.
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    pid = int.from_bytes(creds[0:4], sys.byteorder, signed=True)
    uid = int.from_bytes(creds[4:8], sys.byteorder, signed=True)
    if not _trusted(uid):
        raise UntrustedSocket(
            f"refusing to talk to {path}: the process listening there (pid {pid}) runs as "
            f"{_owner(uid)}, not as you or root. Nothing was sent. Stop it or remove the "
            "socket, and start `harness run` again"
        )
