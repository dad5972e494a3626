"""The live events tail: every event the daemon publishes, filtered by glob, pausable.

Built for floods: events arrive in batches (at most ~30 a second, see tui/stream.py), only the
newest ``KEPT`` are held, and a batch larger than the log writes just its tail.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from typing import TYPE_CHECKING, cast

import msgspec
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Input, Log, Static

from harness.bus import Patterns
from harness.protocol import Event
from tui.state import EventBatch
from tui.widgets.link_status import LinkStatus

if TYPE_CHECKING:
    from tui.app import HarnessApp

KEPT = 1000  # rows held (and shown) at most
DATA_WIDTH = 160  # characters of event data per row

_encode = msgspec.json.Encoder().encode


# Keys that say most about an event go first, so a narrow terminal still shows them.
FIRST_KEYS = ("state", "plugin", "status", "username", "reason", "attempt", "changed")


def compact(event: Event) -> str:
    """``key=value`` pairs, the telling keys first; a connection's own seq is the row's."""
    data = event.data
    keys = [k for k in FIRST_KEYS if k in data] + [k for k in data if k not in FIRST_KEYS]
    parts = []
    for key in keys:
        value = data[key]
        if key == "seq" and value == event.seq:
            continue
        text = value if isinstance(value, str) else _encode(value).decode()
        parts.append(f"{key}={text}")
    line = " ".join(parts)
    return line if len(line) <= DATA_WIDTH else line[: DATA_WIDTH - 1] + "…"


def format_event(event: Event, tz: dt.tzinfo | None) -> str:
    when = dt.datetime.fromtimestamp(event.ts, tz).strftime("%H:%M:%S.%f")[:-3]
    return f"{event.seq:>8}  {when}  {event.event:<22} {compact(event)}"


def parse_patterns(text: str) -> Patterns:
    """Comma- or space-separated globs; empty means everything."""
    parts = [p for p in text.replace(",", " ").split() if p]
    return Patterns(parts or ["*"])


class EventsScreen(Screen[None]):
    """Live tail with a glob filter; space pauses and resumes."""

    BINDINGS = [
        Binding("space", "toggle_pause", "Pause/Resume", id="events.pause"),
        Binding("slash", "focus_filter", "Filter", id="events.filter"),
        Binding("escape", "focus_log", "Back to the log", show=False, id="events.log"),
        Binding("ctrl+l", "clear", "Clear", id="events.clear"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.kept: deque[Event] = deque(maxlen=KEPT)
        self.patterns = parse_patterns("")
        self.paused = False
        self.held_while_paused = 0
        self.dropped = 0
        self.received = 0

    @property
    def harness(self) -> HarnessApp:
        return cast("HarnessApp", self.app)

    def compose(self) -> ComposeResult:
        yield LinkStatus("Events")
        with Horizontal(id="events-bar"):
            search = Input(
                placeholder="filter: glob, e.g. *:connection plugin:*", id="filter", compact=True
            )
            search.cursor_blink = self.harness.cursor_blink
            yield search
            yield Static("", id="events-state", markup=False)
        yield Static(f"{'seq':>8}  {'time':<12}  {'event':<22} data", id="events-header")
        yield Log(max_lines=KEPT, id="events-log", auto_scroll=True)
        yield Footer()

    def on_mount(self) -> None:
        self.harness.events_signal.subscribe(self, self._on_batch)
        # Opened late: start from what the app has kept since it started.
        self.kept.extend(self.harness.recent_events)
        self._rewrite()
        self.query_one(Log).focus()
        self._update_state()

    def _on_batch(self, batch: EventBatch) -> None:
        self.received += len(batch.events)
        self.dropped += batch.dropped
        self.kept.extend(batch.events)
        if self.paused:
            self.held_while_paused += len(batch.events)
        else:
            match = self.patterns
            tz = self.harness.tz
            # Only the tail can stay in the log anyway: format no more than it keeps.
            tail = [e for e in batch.events if match(e.event)][-KEPT:]
            if tail:
                self.query_one(Log).write_lines([format_event(e, tz) for e in tail])
        self._update_state()

    def _rewrite(self) -> None:
        log = self.query_one(Log)
        log.clear()
        match, tz = self.patterns, self.harness.tz
        log.write_lines([format_event(e, tz) for e in self.kept if match(e.event)])

    def _update_state(self) -> None:
        if self.paused:
            text = f"⏸ paused · {self.held_while_paused} new"
        else:
            text = "▶ live"
        if self.dropped:
            text += f" · ⚠ {self.dropped} skipped under load"
        self.query_one("#events-state", Static).update(text)

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.patterns = parse_patterns(event.value)
        self._rewrite()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self) -> None:
        self.query_one(Log).focus()

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused:
            self.held_while_paused = 0
            self._rewrite()
        self._update_state()

    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_focus_log(self) -> None:
        self.query_one(Log).focus()

    def action_clear(self) -> None:
        self.kept.clear()
        self.dropped = 0
        self.query_one(Log).clear()
        self._update_state()
