"""PartsTable: the parts of a plugin's connection (a bot's shards, a pool's members), one row
each, under the indicator. Generic over plugins: it reads ``Connection.parts`` and nothing else,
and is hidden when the connection has none.

A compact DataTable of fixed height that scrolls for 100+ parts. Rows are updated in place
(``update_cell``) when the set of parts is unchanged, so a change to one part redraws one row,
not the table."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

from textual.timer import Timer
from textual.widgets import DataTable

from harness import render
from harness.protocol import Connection, Part
from tui.state import PluginState

if TYPE_CHECKING:
    from tui.app import HarnessApp


class PartsTable(DataTable[str]):
    DEFAULT_CSS = """
    PartsTable {
        height: auto;
        max-height: 11;
        border: round $panel-lighten-2;
        border-title-color: $text-muted;
        display: none;
        &.-has-parts { display: block; }
    }
    """

    def __init__(self, plugin: str, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True, show_cursor=False)
        self.plugin = plugin
        self.connection: Connection | None = None
        self._seq = -1
        self._keys: tuple[str, ...] = ()
        self._tick: Timer | None = None

    @property
    def harness(self) -> HarnessApp:
        return cast("HarnessApp", self.app)

    def on_mount(self) -> None:
        self.add_columns(*render.PART_COLUMNS)
        self.watch(self.app, "plugins", self._on_plugins)

    def _on_plugins(self, plugins: Mapping[str, PluginState]) -> None:
        state = plugins.get(self.plugin)
        conn = state.connection if state is not None else None
        seq = conn.seq if conn is not None else 0
        if seq == self._seq:
            return
        self._seq = seq
        self.show(conn)

    def show(self, conn: Connection | None) -> None:
        self.connection = conn
        parts: list[Part] = list(conn.parts) if conn is not None else []
        self.set_class(bool(parts), "-has-parts")
        self.border_title = render.parts_summary(conn) or ""
        self._redraw(parts)

    def _redraw(self, parts: list[Part]) -> None:
        now = self.harness.clock()
        tz: dt.tzinfo | None = self.harness.tz
        keys = tuple(p.id for p in parts)
        rows = [render.part_row(p, now, tz) for p in parts]
        if keys != self._keys:
            self.clear()
            for key, row in zip(keys, rows, strict=True):
                self.add_row(*row, key=key)
            self._keys = keys
        else:
            for key, row in zip(keys, rows, strict=True):
                for column, cell in zip(self.ordered_columns, row, strict=True):
                    if self.get_cell(key, column.key) != cell:
                        self.update_cell(key, column.key, cell)
        # A countdown ("retrying in 12 s") ticks once a second while any part waits.
        waiting = any(p.retry_at is not None and p.retry_at > now for p in parts)
        if self._tick is not None:
            self._tick.stop()
            self._tick = None
        if waiting:
            self._tick = self.set_timer(1.0, lambda: self._redraw(list(self._parts())))

    def _parts(self) -> list[Part]:
        return list(self.connection.parts) if self.connection is not None else []

    def row_texts(self) -> list[tuple[str, ...]]:
        """Every row as plain cells (tests, screen readers)."""
        return [tuple(str(c) for c in self.get_row(key)) for key in self._keys]
