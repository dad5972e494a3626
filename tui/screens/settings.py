"""One plugin's screen: connection indicator, settings form, enable/disable, history.

Everything here is generic: the form comes from the plugin's schema, the indicator from the
``{name}:connection`` convention. Offline, the form is read-only (from the copy of the schema
cached while the daemon was reachable, or a note when this session never saw it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

import msgspec
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Static

from harness import render
from harness.client import ClientError, DaemonUnavailable
from harness.protocol import E_INVALID_SETTINGS, PluginInfo, to_connection
from harness.settings_saved import really_changed, unchanged_message
from tui.focus_keys import FOCUS_KEYS
from tui.screens.confirm import ConfirmScreen
from tui.state import LinkState, PluginState
from tui.widgets.connection_status import ConnectionStatus
from tui.widgets.footer import KeysFooter
from tui.widgets.history import ConnectionHistory
from tui.widgets.link_status import LinkStatus
from tui.widgets.parts_table import PartsTable
from tui.widgets.settings_form import SettingsForm

if TYPE_CHECKING:
    from tui.app import HarnessApp


class SettingsScreen(Screen[None]):
    """Settings and live status of the plugin called ``plugin``."""

    DEFAULT_CSS = """
    #settings-body {
        height: 1fr;
        padding: 0 0 0 1;
        scrollbar-size-vertical: 1;
        /* The scrollbar's column is kept whether it shows or not: a form that fits the screen
           almost exactly (the demo's, at 100x30) would otherwise get a scrollbar for a frame
           while its rows mount, and every box would shift by a column when it went. */
        scrollbar-gutter: stable;
    }

    #plugin-title {
        padding: 0 1;
        text-style: bold;
    }

    #form-box {
        height: auto;
        border: round $panel-lighten-2;
        border-title-color: $text-muted;
    }

    #form-note {
        padding: 0 1;
        color: $text-muted;
    }

    #actions {
        height: auto;
        padding: 0 1;
    }

    #actions Button {
        margin: 0 2 0 0;
    }
    """

    BINDINGS = [
        Binding("escape", "back", "Back", id="settings.back"),
        Binding("ctrl+s", "save", "Save", id="settings.save"),
        Binding("ctrl+t", "toggle_enabled", "Enable/Disable", id="settings.toggle"),
        *FOCUS_KEYS,  # keys typed in one burst land in the field they were typed for
    ]

    def __init__(self, plugin: str) -> None:
        super().__init__()
        self.plugin = plugin
        self.form: SettingsForm | None = None
        self._schema_key: tuple[object, ...] | None = None
        self._shown: tuple[object, ...] | None = ()  # what the title and form last showed
        self._shown_info: PluginInfo | None = None

    def first_paint_ready(self) -> bool:
        """Whether a first frame now shows this screen whole: not while the form's rows are
        still mounting (the App holds its first frame for it; see HarnessApp)."""
        return self.form is None or self.form.ready

    @property
    def harness(self) -> HarnessApp:
        return cast("HarnessApp", self.app)

    def compose(self) -> ComposeResult:
        yield LinkStatus(f"Plugins > {self.plugin}")
        with VerticalScroll(id="settings-body"):
            yield Static("", id="plugin-title", markup=False)
            yield ConnectionStatus(self.plugin, id="connection")
            yield PartsTable(self.plugin, id="parts")
            with Vertical(id="form-box") as box:
                box.border_title = "settings"
                yield Static("", id="form-note", markup=False)
                with Horizontal(id="actions"):
                    yield Button("Save (ctrl+s)", id="save", variant="primary", compact=True)
                    yield Button("Disable (ctrl+t)", id="toggle", compact=True)
            yield ConnectionHistory(self.plugin, id="history")
        yield KeysFooter()

    def on_mount(self) -> None:
        self.watch(self.app, "plugins", self._on_plugins)
        self.watch(self.app, "link", self._on_link)

    # -- state -> view ------------------------------------------------------------------------

    @property
    def state(self) -> PluginState | None:
        return self.harness.plugins.get(self.plugin)

    def _composed(self) -> bool:
        # A watcher can fire before nested children have mounted; then retry after a refresh.
        return bool(self.query("#actions"))

    def _on_plugins(self, plugins: Mapping[str, PluginState]) -> None:
        state = plugins.get(self.plugin)
        # A connection change (the widgets below show it) leaves what this screen draws alone:
        # redrawing the title and form then would cost a layout of the screen for nothing.
        # (Checked first: ``_composed`` is a query of the whole screen.)
        shown = (
            None
            if state is None
            else (state.version, state.enabled, state.status, state.reason, state.description)
        )
        if shown == self._shown and state is not None and state.info is self._shown_info:
            return
        if not self._composed():
            self.call_after_refresh(lambda: self._on_plugins(self.harness.plugins))
            return
        self._shown = shown
        self._shown_info = state.info if state is not None else None
        title = self.query_one("#plugin-title", Static)
        if state is None:
            title.update(f"{self.plugin}: no such plugin in the database")
            self._update_form(None)
            return
        words = [state.name]
        if state.version:
            words.append(state.version)
        words.append("✔ enabled" if state.enabled else "✘ disabled")
        if state.status:
            words.append(f"status {state.status}" + (f" ({state.reason})" if state.reason else ""))
        head = " · ".join(words)
        title.update(f"{head}\n{state.description}" if state.description else head)
        toggle = self.query_one("#toggle", Button)
        toggle.label = "Disable (ctrl+t)" if state.enabled else "Enable (ctrl+t)"
        self.refresh_bindings()  # the footer's shorter word for ctrl+t follows
        self._update_form(state.info)

    def short_descriptions(self) -> dict[str, str]:
        """Shorter words for the footer when the full ones do not fit (tui/widgets/footer.py):
        what ctrl+t does now."""
        state = self.state
        if state is None:
            return {}
        return {"settings.toggle": "Disable" if state.enabled else "Enable"}

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("save", "toggle_enabled"):
            if self.harness.target.read_only:
                return False  # a read-only context refuses them: not offered in the footer
            if not self.harness.link.online:
                return None  # shown greyed out in the footer: nothing to send them to
        return True

    def _on_link(self, link: LinkState) -> None:
        self.refresh_bindings()
        if not self._composed():
            self.call_after_refresh(lambda: self._on_link(self.harness.link))
            return
        if link.online:
            self._refresh_info()
        self._update_form(self.state.info if self.state else None)

    def _update_form(self, info: PluginInfo | None) -> None:
        link = self.harness.link
        offline = not link.online
        # A read-only context refuses saving and enable/disable: nothing here offers them.
        refused = self.harness.target.read_only
        read_only = offline or refused
        note = self.query_one("#form-note", Static)
        for button in self.query("#actions Button"):
            button.disabled = read_only or info is None
        self.query_one("#actions").display = info is not None
        if info is None:
            if offline:
                note.update(
                    "The daemon is offline and this session has not seen this plugin's "
                    "settings schema yet; the form appears once the daemon is reachable."
                )
            else:
                note.update("Loading settings…")
            return
        key = (tuple(info.schema),)
        if self.form is None or key != self._schema_key:
            if self.form is not None:
                self.form.remove()
            self._schema_key = key
            self.form = SettingsForm(
                info.schema, info.settings, read_only=read_only, id="settings-form"
            )
            self.query_one("#form-box").mount(self.form, before="#actions")
        else:
            self.form.set_read_only(read_only)
            if not self.form.dirty and info.settings != self.form.values:
                self.form.load(info.settings)  # changed elsewhere; no edit here to lose
        if offline:
            note.update(f"Read-only: the daemon is {_away(link)}. Values are the last ones seen.")
        elif refused:
            name = self.harness.target.name
            note.update(f"Read-only context {name!r}: saving and enable/disable are refused.")
        elif not info.schema:
            note.update("This plugin has no settings.")
        else:
            note.update("* required · secrets are write-only: type to replace, Clear to unset")

    @work(exclusive=True, group="settings-refresh", exit_on_error=False)
    async def _refresh_info(self) -> None:
        try:
            result = await self.harness.stream.request("plugins.get", name=self.plugin)
        except (DaemonUnavailable, ClientError):
            return  # the cached copy (if any) stays; the link state says why
        self.harness.stream.apply_infos([msgspec.convert(result, PluginInfo)])

    # -- actions ------------------------------------------------------------------------------

    def action_back(self) -> None:
        from tui.screens.discard import ask_first

        if ask_first(self.harness, self.action_back, words="go back"):
            return  # unsaved edits: the prompt decides (tui/screens/discard.py)
        self.app.pop_screen()

    # -- unsaved edits (asked about on leaving: tui/screens/discard.py) ------------------------

    def unsaved_labels(self) -> list[str]:
        """The labels of the fields edited and not saved (never a value); empty when the form
        shows the values last loaded or saved."""
        form = self.form
        if form is None or not form.ready:
            return []
        return form.changed_labels()

    def cannot_save(self) -> str | None:
        """Why a save cannot be sent now (offline, a read-only context), or None."""
        if self.harness.target.read_only:
            return "this context is read-only"
        if not self.harness.link.online:
            return f"the daemon is {_away(self.harness.link)}"
        return None

    def discard_edits(self) -> None:
        """Drop the edits: the form shows the daemon's settings as last heard (newer than the
        ones it loaded, if another client saved meanwhile), a typed secret emptied, errors
        cleared."""
        if self.form is None:
            return
        state = self.state
        self.form.load(state.info.settings if state and state.info else self.form.values)

    @on(Button.Pressed, "#save")
    def _save_pressed(self) -> None:
        self.action_save()

    @on(Button.Pressed, "#toggle")
    def _toggle_pressed(self) -> None:
        self.action_toggle_enabled()

    def _refused_read_only(self) -> bool:
        """A read-only context: refuse here, before any confirmation or request."""
        target = self.harness.target
        if not target.read_only:
            return False
        from harness.contexts import read_only_message

        self.notify(read_only_message(target), title="Read-only", severity="error")
        return True

    @work(exclusive=True, group="settings-save", exit_on_error=False)
    async def action_save(self) -> None:
        await self.save()

    async def save(self) -> bool:
        """Send the changed fields; True when nothing is left unsaved (stored, or nothing to
        store). Every outcome is notified."""
        form = self.form
        if self._refused_read_only():
            return False
        if form is None or not self.harness.link.online:
            away = _away(self.harness.link)
            self.notify(f"The daemon is {away}: nothing was saved.", severity="warning")
            return False
        changes, errors = form.collect()
        form.show_errors(errors)
        if errors:
            self.notify(f"Not saved: {form.described(errors)}.", severity="error")
            return False
        if not changes:
            self.notify("Nothing to save: no field was changed.")
            return True
        state = self.state
        before = dict(state.info.settings) if state and state.info else {}
        try:
            result = await self.harness.stream.request(
                "plugins.update_settings", name=self.plugin, settings=changes
            )
        except ClientError as exc:
            if exc.code == E_INVALID_SETTINGS:
                fields = exc.details.get("fields") or {}
                form.show_errors(fields)
                self.notify(
                    f"Not saved: the daemon refused {form.described(fields)}.", severity="error"
                )
            else:
                self.notify(f"Not saved: {exc.message}", severity="error")
            return False
        except DaemonUnavailable as exc:
            self.notify(f"Not saved: {exc}", severity="error")
            return False
        info = msgspec.convert(result, PluginInfo)
        form.load(info.settings)
        self.harness.stream.apply_infos([info])
        # Names only: a secret's value never goes into a notification. The toast says what
        # really happened: stored, and whether the plugin is up, waiting or in error.
        secrets = [f.name for f in info.schema if f.type == "secret"]
        changed = really_changed(changes, before, info.settings, secrets)
        if not changed:  # an emptied field already at its default: nothing to restart or apply
            self.notify(unchanged_message(self.plugin, changes))
            return True
        saved = f"Saved {self.plugin}: {', '.join(changed)}."
        if info.status == "error":
            self.notify(
                f"{saved} But the plugin is in error: {info.reason or 'see the log'}",
                severity="error",
            )
            return True
        conn = to_connection(info.metadata.get("connection"))
        if conn is not None and conn.state in ("disconnected", "connecting"):
            now = render.headline(conn, self.harness.clock())
            self.notify(f"{saved} Connection now: {now} (a live setting applies once connected).")
            return True
        self.notify(saved)
        return True

    @work(exclusive=True, group="settings-toggle", exit_on_error=False)
    async def action_toggle_enabled(self) -> None:
        state = self.state
        if self._refused_read_only():
            return
        if state is None or not self.harness.link.online:
            away = _away(self.harness.link)
            self.notify(f"The daemon is {away}: cannot enable or disable.", severity="warning")
            return
        enable = not state.enabled
        verb = "Enable" if enable else "Disable"
        detail = (
            f"{self.plugin} will start now and on every daemon start."
            if enable
            else f"{self.plugin} will stop now and stay stopped until enabled again."
        )
        if not await self.app.push_screen_wait(
            ConfirmScreen(f"{verb} {self.plugin}?", detail, confirm=verb)
        ):
            return
        try:
            result = await self.harness.stream.request(
                "plugins.set_enabled", name=self.plugin, enabled=enable
            )
        except (ClientError, DaemonUnavailable) as exc:
            self.notify(f"{verb} failed: {exc}", severity="error")
            return
        self.harness.stream.apply_infos([msgspec.convert(result, PluginInfo)])
        self.notify(f"{self.plugin} {'enabled' if enable else 'disabled'}.")


def _away(link: LinkState) -> str:
    """Why the daemon cannot be asked: gone, or there but answering nothing (liveness)."""
    return "offline" if link.responding else "not responding"
