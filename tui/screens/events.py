"""The live events tail: every event the daemon publishes, filtered (globs on names, words
anywhere, matches highlighted), pausable, exportable to NDJSON, with a detail pane that shows
one event whole however narrow the terminal.

Built for floods: events arrive in batches (at most ~30 a second, see tui/stream.py), only the
newest ``KEPT`` are held, and a batch larger than the log writes just its tail.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

import msgspec
from rich.highlighter import Highlighter
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Input, Log, Static

from harness.bus import Patterns
from harness.protocol import Event
from tui.state import KEPT, EventBatch
from tui.widgets.footer import KeysFooter
from tui.widgets.link_status import LinkStatus

if TYPE_CHECKING:
    from tui.app import HarnessApp

DATA_WIDTH = 160  # characters of event data per row
DETAIL_EVERY = 0.2  # seconds between redraws of the detail pane while following the newest

_encode = msgspec.json.Encoder().encode


# Keys that say most about an event go first, so a narrow terminal still shows them: what
# happened (state, attempt, reason) before who (username), which the detail pane shows anyway.
FIRST_KEYS = ("state", "attempt", "reason", "plugin", "status", "changed", "username")


# Keys of event data that hold a Unix time: shown as a clock time, never as an epoch.
TIME_KEYS = frozenset(
    {
        *("since", "retry_at", "ack_overdue_since"),
        *("failed_since", "recovered_at", "fired_at", "starts", "ends", "ended"),
    }
)


def compact(event: Event, width: int = DATA_WIDTH, tz: dt.tzinfo | None = None) -> str:
    """``key=value`` pairs, the telling keys first; a connection's own seq is the row's."""
    data = event.data
    keys = [k for k in FIRST_KEYS if k in data] + [k for k in data if k not in FIRST_KEYS]
    parts = []
    for key in keys:
        value = data[key]
        if (key == "seq" and value == event.seq) or value is None:
            continue  # the row's own seq; a null says nothing
        if key in TIME_KEYS and isinstance(value, (int, float)) and value > 0:
            text = dt.datetime.fromtimestamp(value, tz).strftime("%H:%M:%S")
        else:
            text = value if isinstance(value, str) else _encode(value).decode()
        parts.append(f"{key}={text}")
    line = " ".join(parts)
    return line if len(line) <= width else line[: width - 1] + "…"


def format_event(event: Event, tz: dt.tzinfo | None) -> str:
    when = dt.datetime.fromtimestamp(event.ts, tz).strftime("%H:%M:%S.%f")[:-3]
    return f"{event.seq:>8}  {when}  {event.event:<22} {compact(event, tz=tz)}"


def describe_event(event: Event, tz: dt.tzinfo | None) -> str:
    """The detail pane: one event whole (no cut), wrapped by the widget."""
    when = dt.datetime.fromtimestamp(event.ts, tz).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return f"seq {event.seq} · {when} · {event.event}\n{compact(event, width=10_000, tz=tz)}"


_GLOB_CHARS = frozenset("*?[")


class Filter:
    """The filter line: terms with ``*``, ``?`` or ``[`` are globs on the event name (any may
    match, as before); other words must all appear in the row (case-insensitive)."""

    def __init__(self, text: str = "") -> None:
        terms = [t for t in text.replace(",", " ").split() if t]
        globs = [t for t in terms if _GLOB_CHARS & set(t)]
        self.words = [t.lower() for t in terms if t not in globs]
        self.names = Patterns(globs or ["*"])
        parts = [re.escape(w) for w in self.words]
        parts += [_glob_regex(g) for g in globs]
        self.regex = re.compile("|".join(parts), re.IGNORECASE) if parts else None
        self.text = text

    @property
    def empty(self) -> bool:
        return self.regex is None

    def __call__(self, event: Event, line: str) -> bool:
        if not self.names(event.event):
            return False
        lowered = line.lower()
        return all(w in lowered for w in self.words)


def _glob_regex(glob: str) -> str:
    """A glob as a regex that finds it inside a row (for highlighting, not for matching)."""
    out = []
    for ch in glob:
        out.append({"*": r"\S*", "?": r"\S"}.get(ch, re.escape(ch)))
    return "".join(out)


class MatchHighlighter(Highlighter):
    """Marks each match of the filter in a row: reverse video, so it shows without colour."""

    def __init__(self) -> None:
        self.regex: re.Pattern[str] | None = None

    def highlight(self, text: Text) -> None:
        if self.regex is None:
            return
        plain = text.plain
        for m in self.regex.finditer(plain, 10):  # past the seq column
            if m.end() > m.start():
                text.stylize("reverse", m.start(), m.end())


def parse_patterns(text: str) -> Patterns:
    """Comma- or space-separated globs; empty means everything."""
    parts = [p for p in text.replace(",", " ").split() if p]
    return Patterns(parts or ["*"])


class EventsScreen(Screen[None]):
    """Live tail with a filter; space pauses and resumes; the detail pane shows the selected
    event whole (the newest until k/j move the selection); ctrl+e exports what is shown."""

    DEFAULT_CSS = """
    #events-bar {
        height: 1;
        padding: 0 1;
    }

    #filter {
        width: 1fr;
    }

    #events-state {
        width: auto;
        padding: 0 0 0 2;
    }

    #events-header {
        padding: 0 1;
        background: $panel;
        text-style: bold;
    }

    #events-log {
        height: 1fr;
        padding: 0 1;
    }

    #event-detail {
        /* Fixed: a pane that changed height with each event would re-lay-out the screen. */
        height: 4;
        padding: 0 1;
        border-top: solid $panel-lighten-2;
    }
    """

    BINDINGS = [
        Binding("space", "toggle_pause", "Pause/Resume", id="events.pause"),
        Binding("slash", "focus_filter", "Filter", id="events.filter"),
        Binding("escape", "focus_log", "Back to the log", show=False, id="events.log"),
        Binding("ctrl+l", "clear", "Clear", id="events.clear"),
        Binding("ctrl+e", "export", "Export", id="events.export"),
        Binding("k", "select(-1)", "Older event (detail)", show=False, id="events.older"),
        Binding("j", "select(1)", "Newer event (detail)", show=False, id="events.newer"),
        Binding("G", "select_newest", "Follow the newest", show=False, id="events.newest"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.kept: deque[Event] = deque(maxlen=KEPT)
        self.filter = Filter()
        self.paused = False
        self.held_while_paused = 0
        self.dropped = 0
        self.received = 0
        self.selected: Event | None = None  # None: the newest shown
        self._newest: Event | None = None
        self._detail_pending = False

    @property
    def patterns(self) -> Patterns:
        return self.filter.names

    @property
    def harness(self) -> HarnessApp:
        return cast("HarnessApp", self.app)

    def compose(self) -> ComposeResult:
        yield LinkStatus("Events")
        with Horizontal(id="events-bar"):
            search = Input(
                placeholder="filter: *:connection plugin:* or words, e.g. reason",
                id="filter",
                compact=True,
            )
            search.cursor_blink = self.harness.cursor_blink
            yield search
            yield Static("", id="events-state", markup=False)
        yield Static(f"{'seq':>8}  {'time':<12}  {'event':<22} data", id="events-header")
        log = Log(max_lines=KEPT, id="events-log", auto_scroll=True, highlight=True)
        log.highlighter = MatchHighlighter()
        yield log
        yield Static("", id="event-detail", markup=False)
        yield KeysFooter()

    def on_mount(self) -> None:
        self.harness.events_signal.subscribe(self, self._on_batch)
        # Opened late: start from what the app has kept since it started.
        self.kept.extend(self.harness.recent_events)
        self._rewrite()
        self.query_one(Log).focus()
        self._update_state()

    def _shown(self, events: Iterable[Event]) -> list[tuple[Event, str]]:
        """The events the filter lets through, with their rows. Names are checked before a
        row is formatted, and words only when there are any: this runs on every batch."""
        tz, match = self.harness.tz, self.filter
        names = match.names
        rows = [(e, format_event(e, tz)) for e in events if names(e.event)]
        if not match.words:
            return rows
        return [(e, line) for e, line in rows if match(e, line)]

    def _on_batch(self, batch: EventBatch) -> None:
        self.received += len(batch.events)
        self.dropped += batch.dropped
        self.kept.extend(batch.events)
        if self.paused:
            self.held_while_paused += len(batch.events)
        else:
            # Only the tail can stay in the log anyway: format no more than it keeps.
            events: Sequence[Event] = batch.events
            if not self.filter.words:  # then every match is a name match: cut before formatting
                events = [e for e in events if self.filter.names(e.event)]
            tail = self._shown(events[-KEPT:] if not self.filter.words else events)[-KEPT:]
            if tail:
                self.query_one(Log).write_lines([line for _, line in tail])
                if self.selected is None:
                    self._newest = tail[-1][0]
                    # At most a few redraws a second: under a flood, every batch would
                    # otherwise re-lay-out the pane.
                    if not self._detail_pending:
                        self._detail_pending = True
                        self.set_timer(DETAIL_EVERY, self._show_newest)
        self._update_state()

    def _show_newest(self) -> None:
        self._detail_pending = False
        if self.selected is None and self._newest is not None:
            self._show_detail(self._newest)

    def _rewrite(self) -> None:
        log = self.query_one(Log)
        log.clear()
        cast(MatchHighlighter, log.highlighter).regex = self.filter.regex
        shown = self._shown(self.kept)
        log.write_lines([line for _, line in shown])
        if self.selected is None or all(e is not self.selected for e, _ in shown):
            self.selected = None
            self._show_detail(shown[-1][0] if shown else None)

    def _show_detail(self, event: Event | None) -> None:
        detail = self.query_one("#event-detail", Static)
        if event is None:
            detail.update(
                "no event to show" if self.filter.empty else "no event matches the filter"
            )
            return
        mark = "" if self.selected is None else "  (selected: G follows the newest)"
        detail.update(describe_event(event, self.harness.tz) + mark)

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
        self.filter = Filter(event.value)
        self._rewrite()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self) -> None:
        self.query_one(Log).focus()

    def short_descriptions(self) -> dict[str, str]:
        """Shorter words for the footer when the full ones do not fit (tui/widgets/footer.py):
        what space does now."""
        return {"events.pause": "Resume" if self.paused else "Pause"}

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        self.refresh_bindings()  # the footer's shorter word for space follows
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
        self.selected = None
        self.query_one(Log).clear()
        self._show_detail(None)
        self._update_state()

    def action_select(self, step: int) -> None:
        shown = [e for e, _ in self._shown(self.kept)]
        if not shown:
            return
        index = len(shown) - 1
        if self.selected is not None:
            index = next((i for i, e in enumerate(shown) if e is self.selected), index)
        index = max(0, min(len(shown) - 1, index + step))
        self.selected = None if index == len(shown) - 1 and step > 0 else shown[index]
        self._show_detail(shown[index])

    def action_select_newest(self) -> None:
        self.selected = None
        shown = self._shown(self.kept)
        self._show_detail(shown[-1][0] if shown else None)

    def export_events(self) -> tuple[Path, int]:
        """Write the events the filter shows, oldest first, one JSON object per line (the
        shape of ``harness events --json``)."""
        events = [e for e, _ in self._shown(self.kept)]
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = self.harness.export_dir / f"harness-events-{stamp}.ndjson"
        n = 1
        while path.exists():
            n += 1
            path = path.with_name(f"harness-events-{stamp}-{n}.ndjson")
        with path.open("xb") as out:
            for event in events:
                out.write(_encode(event) + b"\n")
        return path, len(events)

    def action_export(self) -> None:
        try:
            path, count = self.export_events()
        except OSError as exc:
            self.notify(f"Export failed: {exc}", title="Export", severity="error")
            return
        what = f"{count} event{'s' if count != 1 else ''}"
        if not self.filter.empty:
            what += f" matching {self.filter.text.strip()!r}"
        self.notify(f"Wrote {what} to {path}", title="Export", timeout=8)
