"""PartsTable: the parts of a plugin's connection (a bot's shards, a pool's members), one row
each, under the indicator. Generic over plugins: it reads ``Connection.parts`` and nothing else,
and is hidden when the connection has none.

A compact table of fixed height that scrolls for 100+ parts, the header kept in place. It draws
line by line (Textual's Line API) and keeps each row's line until that row's text changes: a
change to one part repaints that part's row and nothing else — no layout, no other row drawn
again. (Textual's DataTable, which this replaces, re-renders every visible cell on any
``update_cell``: its caches are keyed on a table-wide update count.) Only a change in the
number of parts changes the height (a layout); a wider cell redraws the visible rows once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar, cast

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.timer import Timer

from harness import render
from harness.protocol import STATE_GLYPHS, Connection, Health, Part
from tui.state import PluginState

if TYPE_CHECKING:
    from tui.app import HarnessApp

Row = tuple[str, ...]

# Widest a column other than the last may grow; the last (the detail) takes what is left.
MAX_COLUMN = 24
PADDING = 1  # a space each side of a cell
STATE_WIDTH = max(cell_len(f"{render.glyph(s)} {render.state_word(s)}") for s in STATE_GLYPHS)


class PartsTable(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    PartsTable {
        height: auto;
        max-height: 11;
        width: 1fr;
        overflow-x: hidden;
        overflow-y: auto;
        border: round $panel-lighten-2;
        border-title-color: $text-muted;
        border-subtitle-color: $text-muted;
        display: none;
        &.-has-parts { display: block; }
        & > .parts-table--header { text-style: bold; background: $panel; }
        & > .parts-table--odd-row { background: $boost; }
    }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {"parts-table--header", "parts-table--odd-row"}

    def __init__(self, plugin: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.plugin = plugin
        self.connection: Connection | None = None
        self.health: Health | None = None  # live-only: each connected part's latest latency
        self._seq = -1
        self._keys: tuple[str, ...] = ()
        self._rows: list[Row] = []
        # The parts _rows were made from, each with its overdue ACK's time (None: none).
        self._drawn_parts: tuple[tuple[Part, float | None], ...] = ()
        self._widths = self._measure(())
        # Drawn lines by row index, each with what it was drawn from; a row whose text, width
        # or style changed is drawn again, and only then.
        self._lines: dict[int, tuple[tuple[object, ...], Strip]] = {}
        self.rows_drawn = 0  # row lines built since mount (tests: one change, one row)
        self._tick: Timer | None = None
        self.ticks = 0  # timed redraws since mount (tests: none while hidden)
        self._asleep = False  # a timed redraw found the table hidden: none booked since

    @property
    def harness(self) -> HarnessApp:
        return cast("HarnessApp", self.app)

    @property
    def row_count(self) -> int:
        return len(self._rows)

    def on_mount(self) -> None:
        self.watch(self.app, "plugins", self._on_plugins)
        self.app.screen_change_signal.subscribe(self, self._on_screen_change)

    def _shown(self) -> bool:
        # On the current mode's stack: another mode (the events screen) hides it, while a
        # dialog over it leaves it in view.
        return self.screen in self.app.screen_stack

    def _on_screen_change(self, _screen: object) -> None:
        if self._asleep and self._shown():
            self._asleep = False
            self._redraw(self._parts())  # what aged meanwhile, and the next timer

    def _on_plugins(self, plugins: Mapping[str, PluginState]) -> None:
        state = plugins.get(self.plugin)
        conn = state.connection if state is not None else None
        health = state.health if state is not None else None
        seq = conn.seq if conn is not None else 0
        if seq == self._seq and health is self.health:
            return
        self._seq = seq
        self.show(conn, health)

    def show(self, conn: Connection | None, health: Health | None = None) -> None:
        self.connection = conn
        self.health = health
        parts = self._parts()
        self.set_class(bool(parts), "-has-parts")
        self._redraw(parts)

    def _title(self, now: float) -> float | None:
        """Set the title (the parts' count) and, in the bottom border, the identify budget;
        return when they would next read differently (None: never by themselves). The
        budget's "resets in" is shown, counting down, only while new sessions wait for it
        (``render.budget_held``); otherwise the count alone, which does not age. In its own
        border, the countdown is not what a narrow terminal cuts from a long title."""
        conn = self.connection
        title = render.parts_summary(conn) or ""
        held = render.budget_held(conn, now)
        budget = (render.identify_budget(conn, now, with_reset=held) or "") if title else ""
        if title != self.border_title:
            self.border_title = title
        if budget != self.border_subtitle:
            self.border_subtitle = budget
        return render.budget_next_change(conn, now) if held else None

    def _redraw(self, parts: Sequence[Part]) -> None:
        now = self.harness.clock()
        tz: dt.tzinfo | None = self.harness.tz
        keys = tuple(p.id for p in parts)
        late = render.parts_overdue(self.connection, self.health)
        link = self.harness.link
        away = not link.online and link.changed_at > 0  # an attempt's age is not known then
        # A part equal to the one drawn before reads the same, unless a countdown or an age
        # runs in it: of 64 parts, one or two are formatted again, not all.
        before = dict(zip(self._keys, zip(self._drawn_parts, self._rows, strict=True), strict=True))
        rows: list[Row] = []
        changes: list[float] = []
        for part in parts:
            held = before.get(part.id)
            overdue = late.get(part.id)
            drawn = (part, overdue)
            if (
                held is not None
                and held[0] == drawn
                and part.retry_at is None
                and overdue is None
                and not render.under_way(part)  # its age counts up
            ):
                rows.append(held[1])
                continue
            rows.append(render.part_row(part, now, tz, overdue, stale=away))
            step = render.part_next_change(part, now, overdue, stale=away)
            if step is not None:
                changes.append(step)
        title_step = self._title(now)
        if title_step is not None:
            changes.append(title_step)
        old = self._rows
        self._rows = rows
        self._drawn_parts = tuple((p, late.get(p.id)) for p in parts)
        widths = self._measure(rows, self._widths if keys == self._keys else ())
        if keys != self._keys:
            # Parts came or went: the height may change, so a layout (rare: a re-shard).
            self._keys = keys
            self._widths = widths
            self.virtual_size = Size(sum(widths), len(rows) + 1)
            self._lines.clear()
            self.refresh(layout=True)
        elif widths != self._widths:
            self._widths = widths  # a wider cell: every visible row moves, draw them again
            self.refresh()
        else:
            scroll_y = round(self.scroll_y)
            for index, (was, now_row) in enumerate(zip(old, rows, strict=True)):
                y = index + 1 - scroll_y  # the line on screen, under the header
                if was != now_row and 1 <= y < self.size.height:
                    self.refresh_line(index + 1)  # that line alone (ScrollView subtracts scroll)
        # A countdown ("retrying in 12 s", "resets in 5 h") or an age ("no heartbeat reply for
        # 14 s") is redrawn at the moment its text changes; with none shown, no timer at all.
        if self._tick is not None:
            self._tick.stop()
            self._tick = None
        if changes:
            self._tick = self.set_timer(min(changes), self._on_tick, name="parts-tick")

    def _on_tick(self) -> None:
        self._tick = None
        if not self._shown():
            # Not on screen: nothing to count down for; shown again, it catches up.
            self._asleep = True
            return
        self.ticks += 1
        self._redraw(self._parts())

    def _measure(self, rows: Sequence[Row], before: Sequence[int] = ()) -> tuple[int, ...]:
        """Column widths with padding. The last column (the detail) takes what is left of the
        line, so it is not measured; the others only grow while the parts stay the same
        (``before``), so a part going down and up again does not move every row."""
        columns = render.PART_COLUMNS[:-1]
        widths = [cell_len(name) for name in columns]
        widths[1] = max(widths[1], STATE_WIDTH)  # any state fits: a change moves no column
        for row in rows:
            for i, cell in enumerate(row[:-1]):
                widths[i] = max(widths[i], cell_len(cell))
        measured = [min(w, MAX_COLUMN) + 2 * PADDING for w in widths]
        return (
            tuple(max(w, b) for w, b in zip(measured, before, strict=True))
            if before
            else (tuple(measured))
        )

    def _parts(self) -> list[Part]:
        # Stored parts keep the round-trip of the moment each connected; the live health
        # carries the latest, so a connected part's latency follows it.
        return render.live_parts(self.connection, self.health)

    def row_texts(self) -> list[Row]:
        """Every row as plain cells (tests, screen readers)."""
        return list(self._rows)

    def get_row(self, key: str) -> Row:
        """The cells of the part called ``key``."""
        return self._rows[self._keys.index(key)]

    # -- drawing -----------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self.rich_style
        if y == 0:
            header = self.get_component_rich_style("parts-table--header")
            return self._line(render.PART_COLUMNS, width, base + header)
        index = y - 1 + round(self.scroll_y)
        if index >= len(self._rows):
            return Strip.blank(width, base)
        style = base
        if index % 2:
            style = base + self.get_component_rich_style("parts-table--odd-row")
        row = self._rows[index]
        key = (row, width, self._widths, style)
        cached = self._lines.get(index)
        if cached is not None and cached[0] == key:
            return cached[1]
        strip = self._line(row, width, style)
        self._lines[index] = (key, strip)
        self.rows_drawn += 1
        return strip

    def _line(self, cells: Sequence[str], width: int, style: Style) -> Strip:
        pad = " " * PADDING
        text = "".join(
            pad + set_cell_size(cell, w - 2 * PADDING) + pad
            for cell, w in zip(cells, self._widths, strict=False)  # the last takes the rest
        )
        text += pad + cells[-1]
        return Strip([Segment(set_cell_size(text, width), style)], width)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._lines.clear()  # a theme change: every line is drawn again in the new colours
