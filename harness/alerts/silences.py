"""Silences (maintenance windows): stored, listed, ended early or by themselves.

While a silence covers a plugin nothing about it is sent; the firing is still tracked, and the
TUI leaves the window out of the plugin's uptime.
"""

from __future__ import annotations

import fnmatch
import time
import unicodedata
from collections.abc import Iterable
from typing import Any

import msgspec

from harness.store import Store

MAX_SILENCE = 30 * 86400.0  # a silence longer than a month is a mistake, not maintenance
MAX_REASON = 200


class Silence(msgspec.Struct, kw_only=True):
    id: int
    plugin: str  # a glob: "discord", "*"
    starts: float
    ends: float
    reason: str = ""
    ended: float | None = None  # set when ended early

    def active(self, now: float) -> bool:
        return self.starts <= now < self.ends

    def covers(self, plugin: str, now: float) -> bool:
        return self.active(now) and fnmatch.fnmatchcase(plugin, self.plugin)

    def describe(self, now: float) -> dict[str, Any]:
        data: dict[str, Any] = msgspec.to_builtins(self)
        data["active"] = self.active(now)
        return data


def _unprintable(text: str) -> str | None:
    """A reason is shown as it is in terminals (`harness silence list`, `harness alerts`, the
    TUI): an escape sequence in it would be run by the terminal, not shown, and a tab or a
    newline would break the one-line listings. Names the character and where."""
    for i, ch in enumerate(text):
        if unicodedata.category(ch) == "Cc":  # C0 and C1 controls: ESC, CSI, BEL, CR, tab
            return (
                f"contains an unprintable character (U+{ord(ch):04X}) at position {i + 1}; "
                "use plain text"
            )
    return None


def _silence(r: Any) -> Silence:
    return Silence(id=r[0], plugin=r[1], starts=r[2], ends=r[3], reason=r[4], ended=r[5])


class Silences:
    """The silences not yet over, cached; the table keeps every one for the record."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.current: dict[int, Silence] = {}

    async def load(self) -> None:
        rows = await self.store.fetch_all(
            "SELECT id, plugin, starts, ends, reason, ended FROM alert_silences WHERE ends > ? "
            "ORDER BY id",
            (time.time(),),
        )
        self.current = {r[0]: _silence(r) for r in rows}

    async def add(self, plugin: str, duration: float, reason: str) -> Silence:
        if not plugin or len(plugin) > 100:
            raise ValueError("plugin: expected a plugin name or glob of 1 to 100 characters")
        if not 0 < duration <= MAX_SILENCE:
            raise ValueError(
                f"duration: expected more than 0 and at most {MAX_SILENCE / 86400:g} days (30d)"
            )
        if len(reason) > MAX_REASON:
            raise ValueError(f"reason: at most {MAX_REASON} characters")
        if (problem := _unprintable(reason)) is not None:
            raise ValueError(f"reason: {problem}")
        now = time.time()
        async with self.store.transaction():
            cur = await self.store.conn.execute(
                "INSERT INTO alert_silences (plugin, starts, ends, reason) VALUES (?, ?, ?, ?)",
                (plugin, now, now + duration, reason),
            )
        assert cur.lastrowid is not None
        silence = Silence(
            id=cur.lastrowid, plugin=plugin, starts=now, ends=now + duration, reason=reason
        )
        self.current[silence.id] = silence
        return silence

    async def end(self, id: int) -> Silence | None:
        """End a silence now; None if there is no such silence still running."""
        silence = self.current.get(id)
        now = time.time()
        if silence is None or not silence.active(now):
            return None
        async with self.store.transaction():
            await self.store.conn.execute(
                "UPDATE alert_silences SET ends = ?, ended = ? WHERE id = ?", (now, now, id)
            )
        silence.ends = silence.ended = now
        del self.current[id]
        return silence

    def expire(self, now: float) -> list[Silence]:
        """Drop the silences that ran out by themselves; returns them."""
        done = [s for s in self.current.values() if s.ends <= now]
        for s in done:
            del self.current[s.id]
        return done

    def covering(self, plugin: str, now: float | None = None) -> Silence | None:
        now = time.time() if now is None else now
        for s in self.current.values():
            if s.covers(plugin, now):
                return s
        return None

    def next_end(self) -> float | None:
        return min((s.ends for s in self.current.values()), default=None)

    async def recent(self, since: float) -> list[Silence]:
        """Every silence that overlaps ``[since, now]`` (ended ones too): for the uptime."""
        rows = await self.store.fetch_all(
            "SELECT id, plugin, starts, ends, reason, ended FROM alert_silences WHERE ends > ? "
            "ORDER BY id",
            (since,),
        )
        return [_silence(r) for r in rows]


def describe_all(silences: Iterable[Silence], now: float) -> list[dict[str, Any]]:
    return [s.describe(now) for s in silences]
