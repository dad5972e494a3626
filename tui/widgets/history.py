"""ConnectionHistory: a plugin's recent connection transitions and its uptime over 24 h.

Seeded from the ``events`` table (read-only) — or, with no local database (a remote daemon),
through the ``events.history`` request — and appended live from the app's raw event batches,
so no transition is lost to the latest-value coalescing the indicator uses.
"""

from __future__ import annotations

import bisect
import datetime as dt
import fnmatch
from collections import deque
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, cast

import msgspec
from rich.text import Text
from textual import work
from textual.widget import Widget

from harness.client import ClientError, DaemonUnavailable
from harness.protocol import STORAGE_EVENT, Event, connection_event
from harness.store import Store, StoreError
from tui.ageing import TextTimer, next_text_change
from tui.state import GLYPHS, UNKNOWN_GLYPH, EventBatch, LinkState, state_word

if TYPE_CHECKING:
    from harness.alerts.silences import Silence
    from tui.app import HarnessApp

WINDOW = 24 * 3600.0  # seconds the uptime figure covers
SHOWN = 8  # transitions listed
CLOCK_REDRAW_EVERY = 1.0  # seconds: the clock redraws the figure at most this often
LOADED = 500  # stored transitions read to compute the uptime
GAPS = 16  # stretches the daemon could not record (storage failing) kept


def storage_gap(e: Event) -> tuple[float, float, str] | None:
    """``(failed since, recovered at, cause)`` from a ``daemon:storage`` "recovered" event:
    a stretch in which transitions may have happened and were not stored."""
    d = e.data
    lo, hi = d.get("failed_since"), d.get("recovered_at")
    if d.get("state") != "recovered" or not isinstance(lo, int | float):
        return None
    if not isinstance(hi, int | float) or hi <= lo:
        return None
    return float(lo), float(hi), str(d.get("cause") or "cause unknown")


def _merged(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for lo, hi in sorted(i for i in intervals if i[1] > i[0]):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def uptime(
    transitions: Sequence[tuple[float, str]],
    now: float,
    window: float = WINDOW,
    excluded: Iterable[tuple[float, float]] = (),
) -> tuple[float, float] | None:
    """``(fraction connected, seconds covered)`` over ``[now - window, now]``.

    ``transitions`` are ``(ts, state)`` oldest first. Time before the first known transition is
    not counted either way: the figure covers only what the history knows about. ``excluded``
    intervals (maintenance windows, when alerts were silenced) count neither way either."""
    start = now - window
    if not transitions:
        return None
    gaps = _merged(excluded)
    covered = connected = 0.0
    for i, (ts, state) in enumerate(transitions):
        end = transitions[i + 1][0] if i + 1 < len(transitions) else now
        lo, hi = max(ts, start), min(end, now)
        if hi <= lo:
            continue
        span = hi - lo - sum(max(0.0, min(hi, g_hi) - max(lo, g_lo)) for g_lo, g_hi in gaps)
        covered += span
        if state == "connected":
            connected += span
    if covered <= 0:
        return None
    return connected / covered, covered


def _figure_text(
    figure: tuple[float, float] | None, silenced: bool, unrecorded: bool = False
) -> tuple[str, str]:
    """The uptime line: its bold figure and the rest, from ``uptime``'s answer."""
    if figure is None:
        return "", "uptime: no transitions recorded in the last 24 h"
    fraction, covered = figure
    over = "the last 24 h" if covered >= WINDOW - 60 else duration(covered) + " recorded"
    rest = f" connected over {over}" + (", maintenance excluded" if silenced else "")
    rest += ", unrecorded time excluded" if unrecorded else ""
    return f"uptime {fraction * 100:.1f} %", rest


def duration(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class ConnectionHistory(Widget):
    """The last transitions, newest first, with the uptime over the last 24 h."""

    DEFAULT_CSS = """
    ConnectionHistory {
        height: auto;
        padding: 0 1;
        border: round $panel-lighten-2;
        border-title-color: $text-muted;
    }
    """

    def __init__(self, plugin: str, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.plugin = plugin
        self.event_name = connection_event(plugin)
        # Bounded: a flapping plugin cannot grow this without limit.
        self.transitions: deque[tuple[int, float, str, str]] = deque(maxlen=LOADED)
        # While storage failed the daemon published transitions it could not store: what the
        # store holds skips them. Those stretches count neither way and are listed as such.
        self.gaps: deque[tuple[float, float, str]] = deque(maxlen=GAPS)
        self.loaded = False
        self._note = ""
        self.border_title = "history"
        self._drawn = ""
        self._timer: TextTimer | None = None
        self._asked_at = 0  # see reload()

    @property
    def harness(self) -> HarnessApp:
        return cast("HarnessApp", self.app)

    def on_mount(self) -> None:
        self.harness.events_signal.subscribe(self, self._on_batch)
        self.watch(self.app, "link", self._on_link, init=False)
        self.watch(self.app, "silences", self._on_silences, init=False)
        # The uptime figure, the maintenance line and the day of the stamps move with the clock:
        # one timer for the moment the text will read differently (render books it), none
        # while it would not, and none while the screen is hidden. At most one a second: over
        # the first minutes recorded a flapping plugin's figure moves every few milliseconds,
        # and redrawing it ten times a second (the grid) put a frame of this widget in front of
        # the indicator's often enough to show in the indicator's p99 (the bench's 200 flaps).
        self._timer = TextTimer(self, self._if_changed, at_most_every=CLOCK_REDRAW_EVERY)
        self.reload()

    def _on_silences(self) -> None:
        self.refresh(layout=True)  # maintenance shown, and left out of the uptime

    def _on_link(self, link: LinkState) -> None:
        if link.online:
            self.reload()  # transitions that happened while we were away are in the store

    def reload(self) -> None:
        # The newest transition held when the read is asked for: only ones after it can come
        # live while it is read (add() takes only seqs above the last).
        self._asked_at = self.transitions[-1][0] if self.transitions else 0
        self._load()

    # A worker made by @work from the method, not from a coroutine made beforehand: a load
    # replaced (exclusive) before it started left that coroutine never awaited (a warning).
    @work(exclusive=True, group="history", exit_on_error=False)
    async def _load(self) -> None:
        stream = self.harness.stream
        if stream.history_from_daemon:
            await self._load_from_daemon()
            return
        try:
            store = await Store.open_readonly(self.harness.config.database_path)
        except StoreError:
            self._note = "no stored history"
            self.loaded = True
            self.refresh(layout=True)
            return
        try:
            events = await store.recent_events(self.event_name, limit=LOADED)
            gaps = await store.recent_events(STORAGE_EVENT, limit=2 * GAPS)
        finally:
            await store.close()
        self.gaps.clear()
        self._note = ""
        self._replace(events)
        self.add_gaps(reversed(gaps))
        self.loaded = True

    async def _load_from_daemon(self) -> None:
        try:
            result = await self.harness.stream.request(
                "events.history", name=self.event_name, limit=LOADED
            )
            events = msgspec.convert(result["events"], list[Event])
            result = await self.harness.stream.request(
                "events.history", name=STORAGE_EVENT, limit=2 * GAPS
            )
            gaps = msgspec.convert(result["events"], list[Event])
        except (DaemonUnavailable, ClientError, msgspec.ValidationError, KeyError, TypeError):
            # Offline: what this session saw stays; it reloads when the stream is back.
            self._note = "" if self.transitions else "history: waiting for the daemon"
            self.loaded = True
            self.refresh(layout=True)
            return
        self.gaps.clear()
        self._note = ""
        self._replace(events)
        self.add_gaps(reversed(gaps))
        self.loaded = True
        self.refresh(layout=True)

    def _replace(self, events: list[Event]) -> None:
        """The history read (newest first), then every transition that came live while it was
        read (newer than ``_asked_at``, the newest held when it was asked for) and is newer than
        all of it. A plain clear() lost those: a live event delivered between the read and
        its answer (the reload when the link comes online races the stream) vanished from the
        history until the next reload. Transitions held from before the read are not kept:
        a daemon on a fresh database starts its seqs again, and an old seq 120 kept as the
        newest would have made add() skip every new one."""
        newest = max((e.seq for e in events), default=0)
        live = [t for t in self.transitions if t[0] > max(newest, self._asked_at)]
        self.transitions.clear()
        self.add(reversed(events))
        self.transitions.extend(live)

    def _on_batch(self, batch: EventBatch) -> None:
        self.add(e for e in batch.events if e.event == self.event_name)
        self.add_gaps(e for e in batch.events if e.event == STORAGE_EVENT)

    def add_gaps(self, events: Iterable[Event]) -> None:
        """Keep the stretches storage failed, from ``daemon:storage`` "recovered" events
        (oldest first; repeats skipped)."""
        changed = False
        for e in events:
            gap = storage_gap(e)
            if gap is not None and gap not in self.gaps:
                self.gaps.append(gap)
                changed = True
        if changed:
            self.refresh(layout=True)

    def add(self, events: Iterable[Event]) -> None:
        """Append transitions (oldest first); repeats and older seqs are skipped."""
        last = self.transitions[-1][0] if self.transitions else 0
        changed = False
        for e in events:
            if e.seq <= last:
                continue
            state = str(e.data.get("state", ""))
            if self.transitions and self.transitions[-1][2] == state:
                continue  # a partial update (same state): not a transition
            # The username survives every state (identity); it only says something when
            # connected. Otherwise the reason is the news.
            if state == "connected":
                detail = str(e.data.get("username") or "")
            elif state == "disconnected" and e.data.get("attempt"):
                detail = f"attempt {e.data['attempt']}: {e.data.get('reason') or ''}".rstrip(": ")
            else:
                detail = str(e.data.get("reason") or "")
            self.transitions.append((e.seq, e.ts, state, detail))
            last = e.seq
            changed = True
        if changed:
            # Painted in the frame after the one that shows the change above (the indicator,
            # the parts): Textual repaints the band of the screen spanning every widget dirty
            # in a frame, and with this one, at the bottom, that band was the whole form.
            self.call_after_refresh(lambda: self._redraw(self._text(self.harness.clock()).plain))

    def _if_changed(self) -> None:
        now = self.harness.clock()
        text = self._text(now).plain
        if text != self._drawn:
            self._redraw(text)  # render books the next change
        elif self._timer is not None:
            self._timer.book(now, self.next_change(now))  # early, or shown again unchanged

    def _redraw(self, text: str) -> None:
        # Only SHOWN transitions are listed: once that many are, the height stays put and a
        # repaint will do. Ask for a layout of the screen (far dearer) only when it does not:
        # when the text needs another height than the one laid out. (Not compared with the
        # text last drawn: a repaint meanwhile drew the new text into the old height, cropped,
        # and no layout was asked for.)
        self.refresh(layout=text.count("\n") + 1 != self.size.height)

    def render(self) -> Text:
        now = self.harness.clock()
        text = self._text(now)
        self._drawn = text.plain
        if self._timer is not None:
            self._timer.book(now, self.next_change(now))
        return text

    def _silences(self) -> list[Silence]:
        return [s for s in self.harness.silences if fnmatch.fnmatchcase(self.plugin, s.plugin)]

    def _excluded(self, silences: Sequence[Silence]) -> list[tuple[float, float]]:
        return [(s.starts, s.ends) for s in silences] + [(lo, hi) for lo, hi, _ in self.gaps]

    def _unrecorded(self, now: float) -> bool:
        return any(hi > now - WINDOW for _, hi, _ in self.gaps)

    def _figure(self, now: float, silences: Sequence[Silence]) -> tuple[str, str]:
        """The uptime line's bold figure and the rest of it, at ``now``."""
        figure = uptime(
            [(ts, state) for _, ts, state, _ in self.transitions],
            now,
            excluded=self._excluded(silences),
        )
        return _figure_text(figure, bool(silences), self._unrecorded(now))

    def next_change(self, now: float) -> float | None:
        """Seconds until the text reads differently by the clock alone (the uptime figure, the
        maintenance line, the day of the stamps); None: not by itself."""
        app = self.harness
        silences = self._silences()
        shown = bool(self.transitions)
        pairs = [(ts, state) for _, ts, state, _ in self.transitions]
        excluded = self._excluded(silences)
        # Where the figure's slope may change: a transition or a silence's or storage gap's
        # edge entering or leaving the 24 h window; and midnight, for the stamps' day.
        breaks = [ts + WINDOW for ts, _ in pairs]
        for lo, hi in excluded:
            breaks += (lo, hi, lo + WINDOW, hi + WINDOW)
        if shown:
            today = dt.datetime.fromtimestamp(now, app.tz)
            midnight = dt.datetime.combine(today.date(), dt.time(), today.tzinfo)
            breaks.append((midnight + dt.timedelta(days=1)).timestamp())
        edges = sorted({b for b in breaks if b > now})
        # Between two edges the time covered and the time connected are linear in the clock:
        # each stretch's figure is drawn from its two ends (one pass over the transitions
        # each), not recomputed for every moment the search looks at (500 transitions: ~1 ms
        # a pass, and a search looks at some thirty moments).
        lines: dict[int, tuple[float, float, float, float, float]] = {}

        def figure(t: float) -> tuple[float, float] | None:
            i = bisect.bisect_right(edges, t)
            line = lines.get(i)
            if line is None:
                start = now if i == 0 else edges[i - 1]
                stop = edges[i] - 0.001 if i < len(edges) else start + WINDOW
                a = uptime(pairs, start, excluded=excluded)
                b = uptime(pairs, stop, excluded=excluded)
                if a is None or b is None or stop <= start:
                    return uptime(pairs, t, excluded=excluded)  # rare: nothing covered yet
                connected_a, connected_b = a[0] * a[1], b[0] * b[1]
                span = stop - start
                line = (
                    start,
                    connected_a,
                    a[1],
                    (connected_b - connected_a) / span,
                    (b[1] - a[1]) / span,
                )
                lines[i] = line
            start, connected, covered, d_connected, d_covered = line
            covered += d_covered * (t - start)
            if covered <= 0:
                return None
            return (connected + d_connected * (t - start)) / covered, covered

        def key(t: float) -> tuple[object, ...]:
            current = next((s.id for s in silences if s.active(t)), None)
            day = dt.datetime.fromtimestamp(t, app.tz).date() if shown else None
            unrecorded = self._unrecorded(t)
            return _figure_text(figure(t), bool(silences), unrecorded), current, day

        return next_text_change(key, now, edges)

    def _text(self, now: float) -> Text:
        app = self.harness
        text = Text()
        silences = self._silences()
        current = next((s for s in silences if s.active(now)), None)
        if current is not None:
            until = dt.datetime.fromtimestamp(current.ends, app.tz).strftime("%H:%M")
            reason = f": {current.reason}" if current.reason else ""
            text.append(f"⚒ maintenance until {until}{reason} (alerts silenced)\n", style="bold")
        figure, rest = self._figure(now, silences)
        text.append(figure, style="bold")
        text.append(rest)
        if self._note:
            text.append(f"\n{self._note}")
        shown = list(self.transitions)[-SHOWN:]
        today = dt.datetime.fromtimestamp(now, app.tz).date()

        def stamp(ts: float) -> str:
            when = dt.datetime.fromtimestamp(ts, app.tz)
            return when.strftime("%H:%M:%S" if when.date() == today else "%m-%d %H:%M")

        rows = [
            (
                ts,
                f"{stamp(ts)}  {GLYPHS.get(state, UNKNOWN_GLYPH)} {state_word(state):<14} {detail}",
            )
            for _, ts, state, detail in shown
        ]
        # A stretch storage failed, among the transitions shown: they may not be all there was.
        oldest = shown[0][1] if len(shown) == SHOWN else 0.0
        rows += [
            (
                lo,
                f"{stamp(lo)}  ⚠ {'not recorded':<14} {duration(hi - lo)}, storage: {cause}",
            )
            for lo, hi, cause in self.gaps
            if hi >= oldest
        ]
        for _, line in sorted(rows, key=lambda r: r[0], reverse=True):
            text.append(f"\n{line}".rstrip())
        return text
