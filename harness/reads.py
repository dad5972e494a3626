"""How much asyncio's transports read at once, for the daemon's and the clients' sockets.

asyncio's socket and pipe transports read up to 256 KiB at a time (``max_size``). That is above
glibc's mmap threshold, so every read, even of a 100-byte ping answer, maps a fresh buffer,
shrinks it and unmaps it: three system calls and page faults, which were a good share of an
idle client's liveness ping (issue 10's idle-CPU target). 64 KiB comes from the heap and is
still hundreds of frames per read in a flood. uvloop's transports reuse one buffer and have no
such attribute: they are left alone."""

from __future__ import annotations

import asyncio

READ_CHUNK = 64 * 1024


def read_in_heap(transport: asyncio.BaseTransport) -> None:
    """Lower ``transport``'s read size to :data:`READ_CHUNK` where asyncio's is larger."""
    if getattr(transport, "max_size", 0) > READ_CHUNK:
        transport.max_size = READ_CHUNK  # type: ignore[attr-defined]
