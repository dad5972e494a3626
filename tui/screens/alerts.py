"""The alerts panel: rules, targets with their delivery state, what is firing, silences
(maintenance windows, which can be added and ended here) and the notification history."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.timer import Timer
from textual.widgets import Button, DataTable, Input, Label, Static

from harness.alerts.rules import format_duration as _seconds
from harness.client import ClientError, DaemonUnavailable
from tui.focus_keys import FOCUS_KEYS
from tui.state import EventBatch
from tui.widgets.footer import KeysFooter
from tui.widgets.link_status import LinkStatus

if TYPE_CHECKING:
    from tui.app import HarnessApp

HISTORY = 50  # notifications listed
REFRESH_EVERY = 5.0  # seconds between reloads while the screen is shown


class SilenceDialog(ModalScreen[tuple[str, str, str] | None]):
    """Ask for plugin, duration and reason; dismisses with them, or None."""

    DEFAULT_CSS = """
    SilenceDialog {
        align: center middle;
    }

    #silence-dialog {
        width: 60;
        height: auto;
        border: thick $warning;
        background: $surface;
        padding: 1 2;
    }

    #silence-buttons {
        height: auto;
    }
    """

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="silence.cancel"),
        *FOCUS_KEYS,  # keys typed in one burst land in the field they were typed for
    ]

    def __init__(self, plugin: str = "") -> None:
        super().__init__()
        self.plugin = plugin

    def compose(self) -> ComposeResult:
        with Vertical(id="silence-dialog"):
            yield Label("Silence alerts (maintenance window)")
            yield Input(
                self.plugin,
                placeholder="plugin name or glob, e.g. discord or *",
                id="silence-plugin",
            )
            yield Input("30m", placeholder="duration: 30m, 2h, 90s", id="silence-duration")
            yield Input("", placeholder="reason (optional)", id="silence-reason")
            with Horizontal(id="silence-buttons"):
                yield Button("Silence", variant="warning", id="silence-ok")
                yield Button("Cancel (esc)", id="silence-cancel")

    def on_mount(self) -> None:
        self.query_one("#silence-plugin" if not self.plugin else "#silence-duration", Input).focus()

    def _answer(self) -> tuple[str, str, str]:
        return (
            self.query_one("#silence-plugin", Input).value.strip(),
            self.query_one("#silence-duration", Input).value.strip(),
            self.query_one("#silence-reason", Input).value.strip(),
        )

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.dismiss(self._answer())

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(self._answer() if event.button.id == "silence-ok" else None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class AlertsScreen(Screen[None]):
    @staticmethod
    def short_descriptions() -> dict[str, str]:
        """Shorter words for the footer when the full ones do not fit (tui/widgets/footer.py)."""
        return {"alerts.end_silence": "Unsilence", "alerts.refresh": "Reload"}

    DEFAULT_CSS = """
    #alerts-summary {
        height: auto;
        max-height: 10;
        padding: 0 1;
    }

    #alerts-silences {
        height: auto;
        max-height: 5;
        border: round $warning;
        border-title-color: $text-warning;
    }

    #alerts-history {
        height: 1fr;
        border: round $panel-lighten-2;
        border-title-color: $text-muted;
    }
    """

    BINDINGS = [
        Binding("s", "silence", "Silence", id="alerts.silence"),
        Binding("x", "end_silence", "End silence", id="alerts.end_silence"),
        Binding("r", "reload", "Refresh", id="alerts.refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, Any] | None = None
        self.history: list[dict[str, Any]] = []
        self.problem = ""

    @property
    def harness(self) -> HarnessApp:
        return cast("HarnessApp", self.app)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("silence", "end_silence") and self.harness.target.read_only:
            # A read-only context refuses them: not offered in the footer, and `s` no longer
            # opens a dialog whose answer would only be refused (as the settings screen's ^s).
            return False
        return True

    def compose(self) -> ComposeResult:
        yield LinkStatus("Alerts")
        yield Static("loading…", id="alerts-summary", markup=False)
        yield DataTable(id="alerts-silences", cursor_type="row")
        yield DataTable(id="alerts-history", cursor_type="row", zebra_stripes=True)
        yield KeysFooter()

    def on_mount(self) -> None:
        silences = self.query_one("#alerts-silences", DataTable)
        silences.add_columns("Silence", "Plugin", "Until", "Reason")
        silences.border_title = "maintenance"
        history = self.query_one("#alerts-history", DataTable)
        history.add_columns("When", "Kind", "Plugin", "Target", "Status", "Tries", "Detail")
        history.border_title = "notifications"
        self.harness.events_signal.subscribe(self, self._on_batch)
        self.watch(self.app, "link", lambda link: self.reload() if link.online else None)
        self.watch(self.app, "silences", lambda _: self._show_silences())
        # A delivery (pending -> sent) publishes no event; retries count up: refresh now and then,
        # while shown only: paused, a Textual timer wakes nothing (another mode in front).
        self._refresher = self.set_interval(REFRESH_EVERY, self._refresh_if_shown)
        silences.focus()

    _refresher: Timer | None = None

    def on_screen_suspend(self) -> None:
        if self._refresher is not None:
            self._refresher.pause()

    def on_screen_resume(self) -> None:
        if self._refresher is not None:
            self._refresher.resume()

    def _refresh_if_shown(self) -> None:
        if self.is_current and self.harness.link.online:
            self.reload()

    def _on_batch(self, batch: EventBatch) -> None:
        if any(e.event.startswith("alert:") for e in batch.events):
            self.reload()

    def action_reload(self) -> None:
        self.reload()

    def reload(self) -> None:
        self.run_worker(self._load(), exclusive=True, group="alerts", exit_on_error=False)

    async def _load(self) -> None:
        try:
            self.data = await self.harness.stream.request("alerts.list")
            self.history = await self.harness.stream.request("alerts.history", limit=HISTORY)
            self.problem = ""
        except (DaemonUnavailable, ClientError) as exc:
            self.problem = f"cannot load alerts: {exc}"
        self._show()

    def _when(self, ts: float | None) -> str:
        if not ts:
            return "—"
        app = self.harness
        when = dt.datetime.fromtimestamp(ts, app.tz)
        today = dt.datetime.fromtimestamp(app.clock(), app.tz).date()
        return when.strftime("%H:%M:%S" if when.date() == today else "%m-%d %H:%M")

    def summary(self) -> Text:
        text = Text()
        if self.problem:
            text.append(self.problem + "\n", style="bold")
        data = self.data
        if data is None:
            text.append("daemon offline: alerts are shown while it runs" if self.problem else "…")
            return text
        if not data["rules"] and not data["targets"]:
            text.append("No alerts configured. One line in the config enables them:\n")
            text.append('  [alerts] targets = ["json://host:port/path"]   (see docs/alerts.md)')
        for name, r in data["rules"].items():
            text.append("rule ", style="bold")
            text.append(
                f"{name}: {','.join(r['plugins'])} {','.join(r['states'])} for "
                f"{_seconds(r['for'])}"
                + (f", remind {_seconds(r['remind_every'])}" if r["remind_every"] else "")
                + (", resolved on" if r["send_resolved"] else ", resolved off")
                + "\n"
            )
        for t in data["targets"]:
            text.append("target ", style="bold")
            text.append(f"{t['name']} {t['url']}  ")
            if t.get("last_error"):
                text.append(
                    f"✖ FAILING ({t['attempts']} tries): {t['last_error']}"[:120], style="bold"
                )
            elif t["pending"]:
                text.append(f"… {t['pending']} pending")
            else:
                text.append(f"✔ ok, last sent {self._when(t.get('last_sent'))}")
            text.append("\n")
        for a in data["active"]:
            glyph = {"firing": "✖", "flapping": "↯", "pending": "…"}.get(a["status"], "?")
            text.append(f"{glyph} {a['status'].upper()} ", style="bold")
            text.append(f"{a['plugin']} {a['state']} since {self._when(a['since'])}")
            if a.get("reason"):
                text.append(f": {a['reason']}")
            text.append("\n")
        if not data["active"] and (data["rules"] or data["targets"]):
            text.append("✔ no alert firing\n")
        hb = data.get("heartbeat")
        if hb:
            text.append(
                f"heartbeat {hb['url']} every {_seconds(hb['every'])}: "
                + (f"✖ {hb['last_error']}" if hb["last_error"] else f"✔ {hb['pings']} pings")
            )
        return text

    def _show(self) -> None:
        self.query_one("#alerts-summary", Static).update(self.summary())
        self._show_silences()
        table = self.query_one("#alerts-history", DataTable)
        table.clear()
        for r in self.history:
            detail = r.get("last_error") or r["title"]
            table.add_row(
                self._when(r.get("sent_at") or r["created"]),
                r["kind"],
                r["plugin"],
                r["target"],
                r["status"],
                str(r["attempts"]),
                detail,
                key=str(r["id"]),
            )

    def _show_silences(self) -> None:
        table = self.query_one("#alerts-silences", DataTable)
        table.clear()
        now = self.harness.clock()
        for s in self.harness.silences:
            if s.active(now):
                table.add_row(
                    f"#{s.id} maintenance",
                    s.plugin,
                    self._when(s.ends),
                    s.reason or "—",
                    key=str(s.id),
                )
        table.display = table.row_count > 0

    # -- silences --------------------------------------------------------------------------

    @work(group="alerts-silence", exit_on_error=False)
    async def action_silence(self, plugin: str = "") -> None:
        answer = await self.app.push_screen_wait(SilenceDialog(plugin))
        if answer is None:
            return
        plugin, duration, reason = answer
        try:
            s = await self.harness.stream.request(
                "silences.add", plugin=plugin, duration=duration, reason=reason
            )
        except (DaemonUnavailable, ClientError) as exc:
            self.notify(str(exc), title="Silence not added", severity="error")
            return
        self.notify(
            f"#{s['id']} {s['plugin']} until {self._when(s['ends'])}", title="Maintenance started"
        )

    @work(group="alerts-silence", exit_on_error=False)
    async def action_end_silence(self) -> None:
        table = self.query_one("#alerts-silences", DataTable)
        if not table.row_count:
            self.notify("No silence running.", title="End silence")
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        try:
            await self.harness.stream.request("silences.end", id=int(str(key.value)))
        except (DaemonUnavailable, ClientError) as exc:
            self.notify(str(exc), title="Silence not ended", severity="error")
