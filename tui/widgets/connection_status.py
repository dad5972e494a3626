"""ConnectionStatus: the live connection indicator of any plugin that follows the convention.

A plugin reports ``{name}:connection`` events and keeps ``metadata.connection`` in the store;
this widget knows nothing else about it. It is seeded from the stored object, updated live from
the App state, and applies a value only when its ``seq`` is greater than the one it holds, so
an event that raced the seed can never take it back in time. While the daemon is offline it
keeps the last known value, dimmed and aged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from rich.text import Text
from textual.message import Message
from textual.widget import Widget

from tui.ageing import AgeTimer
from tui.state import GLYPHS, UNKNOWN_GLYPH, LinkState, PluginState, ago, clock_time

if TYPE_CHECKING:
    from tui.app import HarnessApp


def headline(connection: Mapping[str, Any] | None) -> str:
    """The first line: a glyph and words for the state (never colour alone)."""
    if not connection:
        return f"{UNKNOWN_GLYPH} No connection reported yet"
    state = str(connection.get("state", ""))
    glyph = GLYPHS.get(state, UNKNOWN_GLYPH)
    reason = connection.get("reason")
    if state == "connected":
        name = connection.get("username")
        return f"{glyph} Connected as {name}" if name else f"{glyph} Connected"
    if state == "connecting":
        return f"{glyph} Connecting…"
    if state == "disconnected":
        attempt = connection.get("attempt")
        text = f"{glyph} Disconnected — retrying"
        text += f" (attempt {attempt})" if attempt else ""
        return text + (f": {reason}" if reason else "")
    if state == "error":
        return f"{glyph} Error: {reason or 'unknown'}"
    if state == "stopped":
        return f"{glyph} Stopped" + (f" — {reason}" if reason else "")
    if state == "not_configured":
        return f"{glyph} Not configured" + (f" — {reason}" if reason else "")
    return f"{UNKNOWN_GLYPH} Unknown state {state!r}"


class ConnectionStatus(Widget):
    """Shows one plugin's connection; generic over plugins."""

    DEFAULT_CSS = """
    ConnectionStatus {
        height: auto;
        padding: 0 1;
        border: round $panel-lighten-2;
        border-title-color: $text-muted;
        &.-connected { border: round $success; }
        &.-connecting, &.-disconnected { border: round $warning; }
        &.-error { border: round $error; }
        &.-stale { border: round $panel; color: $text-muted; text-style: dim; }
    }
    """

    class Changed(Message):
        """A newer connection value was applied (posted for listeners and tests)."""

        def __init__(self, plugin: str, connection: Mapping[str, Any] | None) -> None:
            super().__init__()
            self.plugin = plugin
            self.connection = connection

    def __init__(self, plugin: str, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.plugin = plugin
        self.connection: Mapping[str, Any] | None = None
        self.seq = 0
        self._epoch = -1
        self._link = LinkState()
        self._updated_at = 0.0
        self.border_title = "connection"

    @property
    def harness(self) -> HarnessApp:
        return cast("HarnessApp", self.app)

    def on_mount(self) -> None:
        self.watch(self.app, "link", self._on_link)
        self.watch(self.app, "plugins", self._on_plugins)
        # The "since"/"ago" texts age: render asks for a redraw when one would read differently.
        self._ages = AgeTimer(self)

    def _on_plugins(self, plugins: Mapping[str, PluginState]) -> None:
        state = plugins.get(self.plugin)
        if state is None:
            return
        if state.epoch != self._epoch:
            # A new seed is the truth as of now, even if its seq is lower (database reset).
            self._epoch = state.epoch
            self.seq = -1
        self.apply(state.connection, updated_at=state.updated_at)

    def _on_link(self, link: LinkState) -> None:
        self._link = link
        self.set_class(not link.online and link.changed_at > 0, "-stale")
        self.refresh(layout=True)

    def apply(self, connection: Mapping[str, Any] | None, *, updated_at: float = 0.0) -> bool:
        """Show ``connection`` if its seq is newer than the one held; returns whether it did."""
        seq = connection.get("seq", 0) if connection else 0
        if not isinstance(seq, int) or seq <= self.seq:
            return False
        self.seq = seq
        self.connection = connection
        self._updated_at = updated_at
        state = str(connection.get("state", "")) if connection else ""
        for name in GLYPHS:
            self.set_class(name == state, f"-{name}")
        self.refresh(layout=True)  # the number of lines may change
        self.post_message(self.Changed(self.plugin, connection))
        return True

    @property
    def text(self) -> str:
        """What the widget says, as plain text (tests and screen readers)."""
        return self.render().plain

    def render(self) -> Text:
        app = self.harness
        tz: dt.tzinfo | None = app.tz
        now = app.clock()
        conn = self.connection
        text = Text(headline(conn))
        since = conn.get("since") if conn else None
        ages: list[float] = []
        if isinstance(since, (int, float)):
            age = ago(now - since).removesuffix(" ago")
            text.append(f"\nsince {clock_time(since, tz)} ({age})")
            ages.append(now - since)
        if not self._link.online and self._link.changed_at > 0:
            known = self._link.changed_at if self._link.ever_online else self._updated_at
            when = ago(now - known) if known else "at an unknown time"
            text.append(f"\n▼ daemon offline — last known {when}", style="italic")
            if known:
                ages.append(now - known)
        if hasattr(self, "_ages"):  # mounted
            self._ages.drawn(now, ages)
        return text
