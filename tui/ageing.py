"""Redraw at the moment a displayed age changes, and never on a timer otherwise.

A widget that shows ages ("3 min ago", "offline (42 s)") says which ages it drew; one timer
is set for the first moment one of those texts will read differently (``tui.state.ago``
steps: "just now" under 5 s, then seconds, minutes, hours, days). An idle screen whose texts do
not age sleeps: no wake-ups, no redraws."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable, Iterable

from textual.timer import Timer
from textual.widget import Widget

_STEPS = ((60, 1), (3600, 60), (86400, 3600))
_EPSILON = 0.01  # land just past the boundary, so the new text is the one drawn
# Redraws are booked on a grid of this many seconds (of the monotonic clock, Textual's): two
# texts that change within the same tenth of a second (the indicator's "(2 min)" and the
# history's "2 min recorded", a few milliseconds apart) are redrawn in one wake-up, not two.
_GRID = 0.1


def _on_grid(delay: float) -> float:
    """``delay`` stretched to the next point of the grid (at most _GRID later)."""
    now = time.monotonic()
    return math.ceil((now + delay) / _GRID) * _GRID - now


def next_change(age: float) -> float:
    """Seconds until ``tui.state.ago(age)`` reads differently."""
    s = max(0.0, age)
    if s < 5:
        return 5 - s
    for limit, unit in _STEPS:
        if s < limit:
            return unit - s % unit
    return 86400 - s % 86400


class AgeTimer:
    """One pending refresh for a widget's ages. Call :meth:`drawn` from ``render`` with the ages
    it showed (none: the timer is dropped)."""

    def __init__(self, widget: Widget) -> None:
        self.widget = widget
        self._timer: Timer | None = None
        self._due = 0.0

    def drawn(self, now: float, ages: Iterable[float]) -> None:
        delays = [next_change(a) for a in ages]
        if not delays:
            self.cancel()
            return
        due = now + min(delays) + _EPSILON
        if self._timer is not None and abs(due - self._due) < _EPSILON:
            return  # already set for that moment
        self.cancel()
        self._due = due
        self._timer = self.widget.set_timer(_on_grid(due - now), self._fire, name="age")

    def _fire(self) -> None:
        self._timer = None
        self.widget.refresh()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None


def shown(widget: Widget) -> bool:
    """Whether ``widget``'s screen is in view: on the current mode's stack with nothing but
    dialogs (modal screens) above it. Another mode (the events screen) or a full screen pushed
    over it (the settings screen over the plugins screen) hides it. A timed redraw of a widget
    not shown is skipped and made when its screen is shown again."""
    from textual.screen import ModalScreen

    if not widget.is_mounted:
        return False
    screen = widget.screen
    for above in reversed(widget.app.screen_stack):
        if above is screen:
            return True
        if not isinstance(above, ModalScreen):
            return False
    return False


_PRECISION = 0.001  # seconds: how close to the change the search lands (then _EPSILON past)
_MAX_PIECES = 16  # stretches looked at before giving up and looking again at the last one


def next_text_change(
    key: Callable[[float], Hashable], now: float, breaks: Iterable[float]
) -> float | None:
    """Seconds until ``key(t)`` (what a widget shows that depends on the clock) first differs
    from ``key(now)``; None: it never will by itself.

    ``breaks`` are the moments the way ``key`` moves with time may change (an interval enters
    or leaves a window, midnight). Between two of them each part of ``key`` must be monotonic
    in ``t`` (a figure that only grows, or only falls, rounded), so ``key`` is the same at both
    ends of a piece only if it is the same all through it: one look at each piece's end finds
    the piece with the change, and a bisection within it the moment, to a millisecond."""
    first = key(now)
    lo = now
    ends = sorted({b for b in breaks if b > now})
    for count, end in enumerate(ends):
        if count == _MAX_PIECES:
            return end - now  # a great many pieces: look again at this one (rare)
        inside = max(lo, end - _PRECISION)
        if key(inside) != first:
            hi = inside
            while hi - lo > _PRECISION:
                mid = (lo + hi) / 2
                if key(mid) != first:
                    hi = mid
                else:
                    lo = mid
            return hi - now
        if key(end) != first:
            return end - now
        lo = end
    return None


class TextTimer:
    """One pending redraw of ``widget`` for the moment its clock-dependent text changes
    (:func:`next_text_change`), none while its screen is hidden: the redraw then waits for
    the screen to be shown again. Call :meth:`book` after drawing, with the delay."""

    def __init__(
        self, widget: Widget, redraw: Callable[[], None], *, at_most_every: float = 0.0
    ) -> None:
        self.widget, self.redraw = widget, redraw
        # A text that drifts by itself (a share rounded to a tenth of a percent over a few
        # seconds recorded) can change many times a second; a widget that is not a countdown
        # asks to be redrawn by the clock at most this often.
        self.at_most_every = at_most_every
        self._timer: Timer | None = None
        self._due = 0.0
        self.asleep = False  # the timer found the screen hidden: nothing booked since
        self.fired = 0  # redraws made by the timer (tests: none while hidden)
        widget.app.screen_change_signal.subscribe(widget, self._on_screen_change)

    def book(self, now: float, delay: float | None) -> None:
        if delay is None:
            self.cancel()
            return
        due = now + max(delay, self.at_most_every) + _EPSILON
        if self._timer is not None and abs(due - self._due) < _EPSILON:
            return  # already set for that moment
        self.cancel()
        self._due = due
        self._timer = self.widget.set_timer(_on_grid(due - now), self._fire, name="text-change")

    def _fire(self) -> None:
        self._timer = None
        if not shown(self.widget):
            self.asleep = True
            return
        self.fired += 1
        self.redraw()

    def _on_screen_change(self, _screen: object) -> None:
        if self.asleep and shown(self.widget):
            self.asleep = False
            self.redraw()  # what changed meanwhile, and the next timer

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
