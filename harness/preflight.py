"""Checks ``harness run`` makes before it binds or creates anything, so that what it says first
is the real reason it cannot start."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from pathlib import Path

from harness.config_paths import ConfigError

# sun_path's size: the longest path bind() and connect() take (Linux 108 bytes, BSDs 104).
SOCKET_PATH_MAX = 108 if sys.platform.startswith("linux") else 104


def too_long(path: Path | str) -> str | None:
    """Why a socket path cannot be used, in words, or None when it fits."""
    size = len(os.fsencode(path))
    if size <= SOCKET_PATH_MAX:
        return None
    return (
        f"the socket path {path} is {size} bytes; a Unix socket path can have at most "
        f"{SOCKET_PATH_MAX} (the kernel's limit). Choose a shorter one: --socket PATH or "
        "socket in [daemon]"
    )


def check_socket_path(path: Path) -> None:
    if (why := too_long(path)) is not None:
        raise ConfigError(f"daemon.socket: {why}")


def running_pid(lock: Path) -> str | None:
    """The pid written in ``lock`` when another process holds it (a daemon on this socket),
    else None. Creates and writes nothing: a daemon that will not start leaves no trace."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None  # none there (or not ours to read): acquire_lock says what is wrong later
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            with contextlib.suppress(OSError):
                return os.read(fd, 32).decode(errors="replace").strip() or "?"
            return "?"
        except OSError:
            return None
        return None
    finally:
        os.close(fd)  # also drops the shared lock just taken
