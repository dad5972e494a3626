"""Checks ``harness run`` makes before it binds or creates anything, so that what it says first
is the real reason it cannot start."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

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
