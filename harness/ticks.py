"""Liveness ticks: the daemon's side of a client's "tell me every N seconds that you run".

A client that must notice a frozen daemon (harness.liveness) used to ask: a ``ping`` after
each quiet spell, so every idle cycle woke it twice (the timer that wrote the ping, then the
answer) and the daemon once per client. A client may instead send one ``ping`` with
``{"every": N}``: it is answered at once, as any ping, and from then on the daemon writes that
same answer again (``{"type":"response","id":<the ping's id>,"result":{}}``) every N seconds
for as long as the connection lives. The client then wakes once per N seconds (to read the
tick), and the daemon once per N seconds for all such clients together: one timer per
interval, whatever the number of clients. A daemon that stops (SIGSTOP, a blocked loop) stops
ticking, and the client says so N + its timeout after the last frame it read, as before.

Ticks are written whatever else goes to the client: a busy stream gets one more tiny frame
every N seconds, which costs less than knowing when it last wrote.
"""

from __future__ import annotations

import asyncio
import math
from typing import Protocol

MIN_EVERY = 0.05  # seconds; below this a tick would be a busy loop (liveness.MIN_INTERVAL)
MAX_EVERY = 3600.0


class Ticked(Protocol):
    def send(self, frame: bytes, frames: int = 1) -> None: ...


def valid_every(value: object) -> float | None:
    """The interval a ping's ``every`` asks for, or None if it is not one we keep."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    every = float(value)
    if not math.isfinite(every) or not MIN_EVERY <= every <= MAX_EVERY:
        return None
    return every


class _Group:
    """The clients ticked at one interval, and the one timer that ticks them."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.members: dict[Ticked, bytes] = {}
        self.timer: asyncio.TimerHandle | None = None


class Ticker:
    """Every client that asked for ticks, grouped by interval."""

    def __init__(self) -> None:
        self._groups: dict[float, _Group] = {}
        self._of: dict[Ticked, _Group] = {}

    def __len__(self) -> int:
        return len(self._of)

    def add(self, client: Ticked, every: float, frame: bytes) -> None:
        """Write ``frame`` to ``client`` every ``every`` seconds (replacing what it asked
        before) until :meth:`remove`."""
        self.remove(client)
        group = self._groups.get(every)
        if group is None:
            group = self._groups[every] = _Group(every)
            group.timer = asyncio.get_running_loop().call_later(every, self._tick, group)
        group.members[client] = frame
        self._of[client] = group

    def remove(self, client: Ticked) -> None:
        group = self._of.pop(client, None)
        if group is None:
            return
        group.members.pop(client, None)
        if not group.members:
            if group.timer is not None:
                group.timer.cancel()
            del self._groups[group.every]

    def close(self) -> None:
        for group in self._groups.values():
            if group.timer is not None:
                group.timer.cancel()
        self._groups.clear()
        self._of.clear()

    def _tick(self, group: _Group) -> None:
        # Re-armed first: a client's send cannot stop the others' ticks. After a freeze
        # (SIGSTOP) the overdue timer fires at once on resume, and that tick ends every
        # client's "not responding" without waiting a whole interval more.
        group.timer = asyncio.get_running_loop().call_later(group.every, self._tick, group)
        for client, frame in list(group.members.items()):
            client.send(frame)
