"""Immutable app state shared by every screen: one PluginState per plugin, one LinkState.

The stream worker is the only writer; widgets watch the App reactives holding these values.
Frozen structs make "did it change?" a plain equality test, so watchers fire only on change.
They are msgspec Structs, not dataclasses: a frozen dataclass is made by compiling generated
source for each of its methods, which cost these three about 15 M instructions (callgrind) on
the way to the first frame; a Struct class is made in C (docs/benchmarks.md, "tui").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import msgspec

from harness import render
from harness.protocol import STATE_GLYPHS, Connection, Event, Health, PluginInfo, keeps_health

Clock = Callable[[], float]
# Raw events held at most: the events screen's rows, and the App's recent events behind them.
KEPT = 1000


class PluginState(msgspec.Struct, frozen=True):
    """What the TUI knows about one plugin. ``connection`` is the stored/broadcast
    ``Connection``; ``health`` the live-only heartbeat health (``{plugin}:health``), None until
    one arrives and after the stream is lost."""

    name: str
    version: str = ""  # "" until the daemon or its stored description (metadata.plugin) says
    description: str = ""
    enabled: bool = True
    status: str = ""  # running | stopped | error | disabled; "" when unknown (offline seed)
    reason: str | None = None
    connection: Connection | None = None
    health: Health | None = None
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

    def with_connection(self, connection: Connection, ts: float) -> PluginState:
        """This state with ``connection`` applied if, and only if, it is newer. A new state
        ends the health it had (a heartbeat warning belongs to the connection that had it),
        unless a part of it is still connected (``protocol.keeps_health``)."""
        if connection_seq(connection) <= self.seq:
            return self
        health = self.health if health_applies(connection) else None
        return msgspec.structs.replace(self, connection=connection, health=health, updated_at=ts)


class LinkState(msgspec.Struct, frozen=True):
    """The stream connection to the daemon, as the header and the stale markers show it."""

    online: bool = False
    changed_at: float = 0.0  # when it last went online or offline
    ever_online: bool = False  # a stream has been up in this session
    head_seq: int = 0  # the daemon's head when we subscribed
    detail: str = "connecting to the daemon…"
    database: bool = True  # False: there is no database file yet
    storage: str | None = None  # "storage failing: disk full since 12:03 (…)", None when fine
    # False while the daemon keeps the connection open but answers nothing (stopped, wedged:
    # harness.liveness); ``online`` is then False too and ``changed_at`` is when it was last heard.
    responding: bool = True


class EventBatch(msgspec.Struct, frozen=True):
    """Raw events fanned out to the events screen and the history, oldest first. ``dropped``
    counts events that fell out of the bounded buffer before this batch was delivered."""

    events: tuple[Event, ...]
    dropped: int = 0


def connection_seq(connection: Connection | None) -> int:
    return connection.seq if connection is not None else 0


def health_applies(connection: Connection | None) -> bool:
    """Whether live health says anything about ``connection`` (``protocol.keeps_health``)."""
    return connection is not None and keeps_health(
        connection.state, (p.state for p in connection.parts)
    )


# -- presentation: harness.render says it; these names stay for the widgets that draw glyphs --

GLYPHS: Mapping[str, str] = STATE_GLYPHS
UNKNOWN_GLYPH = render.UNKNOWN_GLYPH
state_word = render.state_word
clock_time = render.clock_time
ago = render.ago
