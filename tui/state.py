"""Immutable app state shared by every screen: one PluginState per plugin, one LinkState.

The stream worker is the only writer; widgets watch the App reactives holding these values.
Frozen dataclasses make "did it change?" a plain equality test, so watchers fire only on change.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.protocol import STATE_GLYPHS, Event, PluginInfo

Clock = Callable[[], float]


@dataclass(frozen=True)
class PluginState:
    """What the TUI knows about one plugin. ``connection`` is the stored/broadcast connection
    object (``{state, seq, since, username?, reason?, attempt?}``) and is never mutated."""

    name: str
    version: str = ""  # "" until the daemon or its stored description (metadata.plugin) says
    description: str = ""
    enabled: bool = True
    status: str = ""  # running | stopped | error | disabled; "" when unknown (offline seed)
    reason: str | None = None
    connection: Mapping[str, Any] | None = None
    updated_at: float = 0.0  # when the stored row or the last event was written
    # The daemon's view with the schema and redacted settings (secrets are {"set": bool}).
    # Kept after the daemon goes away: the cached copy the offline settings screen shows.
    info: PluginInfo | None = None
    # Bumped on every seed; lets a widget accept a seed whose seq went down (database reset).
    epoch: int = 0

    @property
    def seq(self) -> int:
        """The seq of the connection held (0 when none)."""
        return connection_seq(self.connection)

    def with_connection(self, connection: Mapping[str, Any], ts: float) -> PluginState:
        """This state with ``connection`` applied if, and only if, it is newer."""
        if connection_seq(connection) <= self.seq:
            return self
        return dataclasses.replace(self, connection=connection, updated_at=ts)


@dataclass(frozen=True)
class LinkState:
    """The stream connection to the daemon, as the header and the stale markers show it."""

    online: bool = False
    changed_at: float = 0.0  # when it last went online or offline
    ever_online: bool = False  # a stream has been up in this session
    head_seq: int = 0  # the daemon's head when we subscribed
    detail: str = "connecting to the daemon…"
    database: bool = True  # False: there is no database file yet
    storage: str | None = None  # "storage failing: disk full since 12:03 (…)", None when fine


@dataclass(frozen=True)
class EventBatch:
    """Raw events fanned out to the events screen and the history, oldest first. ``dropped``
    counts events that fell out of the bounded buffer before this batch was delivered."""

    events: tuple[Event, ...]
    dropped: int = 0


def connection_seq(connection: Mapping[str, Any] | None) -> int:
    if not connection:
        return 0
    seq = connection.get("seq")
    return seq if isinstance(seq, int) else 0


# -- presentation shared by the plugins table and the indicator --------------------------------

# A glyph and a word for every state, so nothing depends on colour alone (shared with the CLI).
GLYPHS: Mapping[str, str] = STATE_GLYPHS
UNKNOWN_GLYPH = "?"


def state_word(state: str) -> str:
    return state.replace("_", " ")


def clock_time(ts: float, tz: dt.tzinfo | None) -> str:
    """HH:MM in ``tz`` (None: the local zone)."""
    when = dt.datetime.fromtimestamp(ts, tz)
    return when.strftime("%H:%M")


def ago(seconds: float) -> str:
    """A short human age: "just now", "42 s ago", "3 min ago", "5 h ago", "2 d ago"."""
    s = max(0.0, seconds)
    if s < 5:
        return "just now"
    if s < 60:
        return f"{int(s)} s ago"
    if s < 3600:
        return f"{int(s // 60)} min ago"
    if s < 86400:
        return f"{int(s // 3600)} h ago"
    return f"{int(s // 86400)} d ago"


def connection_summary(connection: Mapping[str, Any] | None, tz: dt.tzinfo | None) -> str:
    """One line for a table cell: "● connected  since 12:03  EchoBot#0001". The time comes
    before the detail so that, in a narrow terminal, a long reason is what gets cut."""
    if not connection:
        return f"{UNKNOWN_GLYPH} no connection reported"
    state = str(connection.get("state", "unknown"))
    parts = [f"{GLYPHS.get(state, UNKNOWN_GLYPH)} {state_word(state)}"]
    since = connection.get("since")
    if isinstance(since, (int, float)):
        parts.append(f"since {clock_time(since, tz)}")
    if state == "connected" and connection.get("username"):
        parts.append(str(connection["username"]))
    elif state == "disconnected" and connection.get("attempt"):
        parts.append(f"attempt {connection['attempt']}")
    elif connection.get("reason"):
        parts.append(str(connection["reason"]))
    return "  ".join(parts)
