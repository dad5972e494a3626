"""The plugins overview: one live row per plugin; Enter opens its settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.events import Resize
from textual.timer import Timer
from textual.widgets import DataTable, Static

from harness import render
from tui import plugins_columns
from tui.screens.held import HeldScreen
from tui.state import LinkState, PluginState
from tui.widgets.footer import KeysFooter
from tui.widgets.link_status import LinkStatus

if TYPE_CHECKING:
    from tui.app import HarnessApp

COLUMNS = plugins_columns.COLUMNS  # which are shown, and how wide: tui/plugins_columns.py


def enabled_cell(enabled: bool) -> str:
    return "✔ yes" if enabled else "✘ no"


class PluginsScreen(HeldScreen):
    """A DataTable of plugins, kept live from the App's plugin state."""

    BINDINGS = [
        # priority: the DataTable's own (hidden) enter binding would hide this from the footer.
        Binding("enter", "open_selected", "Settings", id="plugins.open", priority=True),
    ]

    @property
    def harness(self) -> HarnessApp:
        return cast("HarnessApp", self.app)

    def compose(self) -> ComposeResult:
        yield LinkStatus("Plugins")
        yield DataTable(id="plugins-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="plugins-note", markup=False)
        yield KeysFooter()

    _tick: Timer | None = None
    _note: str | None = None  # the note last shown
    _behind = False  # plugins changed while another screen was shown

    _layout: plugins_columns.Layout | None = None

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        self._layout = self._fit(self.harness.plugins)
        self._add_columns(table)
        self.watch(self.app, "plugins", self._on_plugins)
        self.watch(self.app, "link", self._on_link)
        table.focus()

    # -- columns that fit the width (tui/plugins_columns.py) ----------------------------------

    @staticmethod
    def _fixed_cells(state: PluginState) -> tuple[str, str, str, str]:
        """Every cell but the connection, in full."""
        return (
            state.name,
            state.version or "—",
            enabled_cell(state.enabled),
            state.status or "—",
        )

    def _fit(self, plugins: Mapping[str, PluginState]) -> plugins_columns.Layout:
        """The columns for the screen's width and these plugins."""
        width, height = self.app.size
        # Rows the table shows without scrolling: the screen less the link bar, the table's
        # header and the footer (a note under the table takes a line more; it is short).
        overflow = len(plugins) > height - 3
        rows = [self._fixed_cells(state) for state in plugins.values()]
        return plugins_columns.layout(width, rows, scrollbar=overflow)

    def _add_columns(self, table: DataTable[Text]) -> None:
        assert self._layout is not None
        labels = dict(COLUMNS)
        for key, width in zip(self._layout.keys, self._layout.widths, strict=True):
            table.add_column(Text(labels[key]), width=width, key=key)

    def _relaid(self, plugins: Mapping[str, PluginState]) -> bool:
        """The width, or the names and versions, call for other columns: rebuild the table
        with every row (rare: a resize, a new plugin) and say so."""
        fitted = self._fit(plugins)
        if fitted == self._layout:
            return False
        self._layout = fitted
        table = self.query_one(DataTable)
        selected = table.cursor_row
        table.clear(columns=True)
        self._add_columns(table)
        for name in sorted(plugins):
            table.add_row(*self._row(plugins[name]), key=name)
        if table.row_count:
            table.move_cursor(row=min(selected, table.row_count - 1))
        return True

    def on_resize(self, event: Resize) -> None:
        if self.app.screen is self:
            self._on_plugins(self.harness.plugins)
        else:
            self._behind = True  # redrawn for the new width when shown again

    def _row(self, state: PluginState) -> tuple[Text, ...]:
        # Text, not str: DataTable reads a str cell as Rich markup, so a name or a reason with
        # "[...]" in it lost that part, and parsing markup (and loading Rich's emoji table for
        # it) cost the first frame time.
        layout = self._layout
        assert layout is not None
        fixed = dict(
            zip(("name", "version", "enabled", "status"), self._fixed_cells(state), strict=True)
        )
        pieces = render.short_pieces(
            state.connection, self.harness.clock(), self.harness.tz, state.health, stale=_away(self)
        )
        cells = {
            key: plugins_columns.elide(fixed[key], layout.width(key))
            if key != "connection"
            else plugins_columns.fit_connection(pieces, layout.width(key))
            for key in layout.keys
        }
        return tuple(Text(cells[key], end="") for key in layout.keys)

    def on_screen_resume(self) -> None:
        if self._behind:
            self._on_plugins(self.harness.plugins)

    def _on_plugins(self, plugins: Mapping[str, PluginState]) -> None:
        if self.app.screen is not self and self.is_mounted:
            # Under a settings screen: nobody sees the table, and its updates would still cost
            # a layout (cell widths) on every change. Catch up once shown again.
            self._behind = True
            return
        self._behind = False
        table = self.query_one(DataTable)
        if self._relaid(plugins):
            self._update_note()
            self._schedule_tick(plugins)
            return
        assert self._layout is not None
        present = {str(key.value) for key in table.rows}
        for name in sorted(plugins):
            cells = self._row(plugins[name])
            if name in present:
                for key, value in zip(self._layout.keys, cells, strict=True):
                    # Only what changed: each update re-renders the table and may resize it.
                    if table.get_cell(name, key) != value:
                        table.update_cell(name, key, value, update_width=True)
            else:
                table.add_row(*cells, key=name)
        for gone in present - set(plugins):
            table.remove_row(gone)
        self._update_note()
        self._schedule_tick(plugins)

    def _schedule_tick(self, plugins: Mapping[str, PluginState]) -> None:
        # No fixed timer: redraw exactly when a cell's text would change by itself (a retry
        # countdown, a heartbeat warning counting up), and not at all while nothing would.
        if self._tick is not None:
            self._tick.stop()
            self._tick = None
        now = self.harness.clock()
        waits = [
            w
            for s in plugins.values()
            if (
                w := render.next_change(
                    s.connection, now, s.health, short_form=True, stale=_away(self)
                )
            )
            is not None
        ]
        if waits:
            self._tick = self.set_timer(min(waits), lambda: self._on_plugins(self.harness.plugins))

    def _on_link(self, link: LinkState) -> None:
        away = not link.online and link.changed_at > 0
        changed = away != self.has_class("-offline")
        self.set_class(away, "-offline")
        if changed:
            # An attempt under way is said with its age only while the daemon reports it.
            self._on_plugins(self.harness.plugins)
        self._update_note()

    def _update_note(self) -> None:
        link: LinkState = self.harness.link
        note = ""
        if not link.database:
            note = (
                f"No database yet at {self.harness.config.database_path}: "
                "start the daemon (harness run) to create it."
            )
        elif not link.online and link.changed_at > 0:
            why = "Daemon offline" if link.responding else "Daemon not responding"
            note = f"{why}: showing the last known state" + (
                "." if self.harness.stream.database_path is None else " from the database."
            )
        elif not self.harness.plugins and link.online:
            note = "The daemon has no plugins installed."
        if note == self._note:
            return  # unchanged: an update would cost a layout
        self._note = note
        note_widget = self.query_one("#plugins-note", Static)
        note_widget.update(note)
        note_widget.display = bool(note)

    def action_open_selected(self) -> None:
        table = self.query_one(DataTable)
        if table.row_count:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
            self.harness.open_settings(str(key.value))

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.harness.open_settings(str(event.row_key.value))


def _away(screen: PluginsScreen) -> bool:
    """The daemon is away (offline or not responding): what the table shows is last known."""
    link = screen.harness.link
    return not link.online and link.changed_at > 0
