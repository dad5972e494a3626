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
from typing import TYPE_CHECKING, cast

from rich.cells import cell_len
from rich.text import Text
from textual.message import Message
from textual.widget import Widget

from harness import render
from harness.protocol import Connection, Health
from tui.ageing import TextTimer, next_change
from tui.state import GLYPHS, LinkState, PluginState, ago

if TYPE_CHECKING:
    from tui.app import HarnessApp


# Lines of text the indicator keeps room for: connected (headline, since) and disconnected
# (headline, cause, since) then take the same height, so the usual change repaints the widget
# in place instead of moving everything below it (a layout of the whole screen).
MIN_LINES = 3


class ConnectionStatus(Widget):
    """Shows one plugin's connection; generic over plugins."""

    DEFAULT_CSS = """
    ConnectionStatus {
        height: auto;
        min-height: 5;  /* MIN_LINES and the border */
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

        def __init__(self, plugin: str, connection: Connection | None) -> None:
            super().__init__()
            self.plugin = plugin
            self.connection = connection

    def __init__(self, plugin: str, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.plugin = plugin
        self.connection: Connection | None = None
        self.health: Health | None = None
        self.seq = 0
        self._tick: TextTimer | None = None
        self._epoch = -1
        self._link = LinkState()
        self._updated_at = 0.0
        self._drawn = ""  # the text last drawn
        self.border_title = "connection"

    @property
    def harness(self) -> HarnessApp:
        return cast("HarnessApp", self.app)

    def on_mount(self) -> None:
        # Countdowns and ages are redrawn when their text changes, not while the screen is
        # hidden (then once, when it is shown again).
        self._tick = TextTimer(self, self._redraw)
        self.watch(self.app, "link", self._on_link)
        self.watch(self.app, "plugins", self._on_plugins)

    def _on_plugins(self, plugins: Mapping[str, PluginState]) -> None:
        state = plugins.get(self.plugin)
        if state is None:
            return
        if state.epoch != self._epoch:
            # A new seed is the truth as of now, even if its seq is lower (database reset).
            self._epoch = state.epoch
            self.seq = -1
        if not self.apply(state.connection, updated_at=state.updated_at) and (
            state.health != self.health
        ):
            self.health = state.health
            self._redraw()
        self.health = state.health

    def _on_link(self, link: LinkState) -> None:
        self._link = link
        self.set_class(not link.online and link.changed_at > 0, "-stale")
        self._redraw()

    def apply(self, connection: Connection | None, *, updated_at: float = 0.0) -> bool:
        """Show ``connection`` if its seq is newer than the one held; returns whether it did."""
        seq = connection.seq if connection else 0
        if seq <= self.seq:
            return False
        self.seq = seq
        self.connection = connection
        self._updated_at = updated_at
        state = connection.state if connection else ""
        # One class change, so the stylesheet is applied once (set_class per state would apply
        # it for every class removed and added).
        classes = {c for c in self.classes if c.removeprefix("-") not in GLYPHS}
        if state in GLYPHS:
            classes.add(f"-{state}")
        if classes != set(self.classes):
            self.set_classes(classes)
        self._redraw()
        self.post_message(self.Changed(self.plugin, connection))
        return True

    def _redraw(self) -> None:
        text = self._text(schedule=False).plain
        if text == self._drawn:
            # A newer value that reads the same (one part of a several-part connection changed:
            # the table below shows it): nothing to paint here; book the new value's next tick.
            self._text(schedule=True)
            return
        # A layout of the screen costs far more than repainting this widget: ask for one only
        # when our height (the number of lines as wrapped, at least MIN_LINES) changes.
        lines, drawn = self._rows(text), self._rows(self._drawn)
        self.refresh(layout=max(lines, MIN_LINES) != max(drawn, MIN_LINES))

    def _rows(self, text: str) -> int:
        """Lines ``text`` takes at the widget's width: a long cause wraps, and a line added
        under a wrapped headline makes the widget taller though the count of lines stays
        within MIN_LINES."""
        width = self.content_size.width
        if width <= 0:
            return text.count("\n") + 1
        if all(cell_len(line) <= width for line in text.split("\n")):
            return text.count("\n") + 1  # the usual case: nothing wraps, nothing to measure
        return len(Text(text).wrap(self.app.console, width))

    @property
    def text(self) -> str:
        """What the widget says, as plain text (tests and screen readers)."""
        return self.render().plain

    def render(self) -> Text:
        text = self._text(schedule=True)
        self._drawn = text.plain
        return text

    def _text(self, *, schedule: bool) -> Text:
        app = self.harness
        tz: dt.tzinfo | None = app.tz
        now = app.clock()
        conn = self.connection
        offline = not self._link.online and self._link.changed_at > 0
        # Health is live-only: while the daemon is away it says nothing about now, and only
        # the last heartbeat's round trip is kept, as last known (render.kept_health).
        health = render.kept_health(self.health) if offline else self.health
        lines = render.long(conn, now, tz, health, stale=offline)
        if offline and conn is not None:
            # Not the truth of now: the last known value, said so in words, not only dimmed.
            lines[0] = render.last_known(lines[0])
        text = Text("\n".join(lines))
        known = 0.0
        if offline:
            known = self._link.changed_at if self._link.ever_online else self._updated_at
        if schedule and self._tick is not None:
            # No fixed timer: the next redraw is booked for the moment the text would change
            # by itself (a countdown, an age, "last known 17 s ago"), and none while it would not.
            delay = render.next_change(conn, now, health, stale=offline)
            if known:
                aged = next_change(now - known)
                delay = aged if delay is None else min(delay, aged)
            self._tick.book(now, delay)
        if offline:
            when = ago(now - known) if known else "at an unknown time"
            why = "daemon offline" if self._link.responding else "daemon not responding"
            glyph = "▼" if self._link.responding else "?"
            text.append(f"\n{glyph} {why} — last known {when}", style="italic")
        return text
