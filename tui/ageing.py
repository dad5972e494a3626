"""Redraw at the moment a displayed age changes, and never on a timer otherwise.

A widget that shows ages ("3 min ago", "offline (42 s)") says which ages it drew; one timer
is set for the first moment one of those texts will read differently (``tui.state.ago``
steps: "just now" under 5 s, then seconds, minutes, hours, days). An idle screen whose texts do
not age sleeps: no wake-ups, no redraws."""

from __future__ import annotations

from collections.abc import Iterable

from textual.timer import Timer
from textual.widget import Widget

_STEPS = ((60, 1), (3600, 60), (86400, 3600))
_EPSILON = 0.01  # land just past the boundary, so the new text is the one drawn


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
        self._timer = self.widget.set_timer(due - now, self._fire, name="age")

    def _fire(self) -> None:
        self._timer = None
        self.widget.refresh()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
