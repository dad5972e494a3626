"""Redraw at the moment a displayed age changes, and never on a timer otherwise.

A widget that shows ages ("3 min ago", "offline (42 s)") says which ages it drew; a redraw is
booked for the first moment one of those texts will read differently (``tui.state.ago``
steps: "just now" under 5 s, then seconds, minutes, hours, days). An idle screen whose texts do
not age sleeps: no wake-ups, no redraws.

Every such booking on a screen goes to one clock per screen (:class:`ScreenClock`): one timer
for the earliest moment any text on it changes; when it fires, every widget whose text has
changed by then is redrawn in that one callback, so the screen repaints them in one pass. The
settings screen's connection age ("(2 min)") and the history's "2 min recorded" change within
milliseconds of each other each minute: one wake-up and one repaint, not two of each."""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections.abc import Callable, Hashable, Iterable

from textual.screen import Screen
from textual.widget import Widget

_STEPS = ((60, 1), (3600, 60), (86400, 3600))
_EPSILON = 0.01  # land just past the boundary, so the new text is the one drawn
# Redraws are booked on a grid of this many seconds (of the monotonic clock, Textual's): two
# texts that change within the same tenth of a second (the indicator's "(2 min)" and the
# history's "2 min recorded", a few milliseconds apart) are redrawn by the same firing.
_GRID = 0.1


def next_change(age: float) -> float:
    """Seconds until ``tui.state.ago(age)`` reads differently."""
    s = max(0.0, age)
    if s < 5:
        return 5 - s
    for limit, unit in _STEPS:
        if s < limit:
            return unit - s % unit
    return 86400 - s % 86400


class _Booking:
    """What the clock holds for one widget: it calls :meth:`_fire` at the grid point booked."""

    widget: Widget
    _clock: ScreenClock | None = None

    _due = 0.0  # the app-clock moment booked last

    def _fire(self) -> None:
        raise NotImplementedError

    def _book_at(self, due: float) -> None:
        """Book a redraw at ``due`` (the app's clock) on the screen's clock, unless it is
        already booked for that moment."""
        if self.booked and abs(due - self._due) < _EPSILON:
            return
        self._clock = self._clock or clock_of(self.widget)
        if self._clock is not None:
            self._due = due
            self._clock.book(self, due - _app_clock(self.widget)())

    def cancel(self) -> None:
        if self._clock is not None:
            self._clock.cancel(self)

    @property
    def booked(self) -> bool:
        return self._clock is not None and self._clock.booked(self)

    @property
    def _timer(self) -> asyncio.TimerHandle | None:
        """The timer that will redraw this widget (its screen clock's), None while nothing is
        booked (tests, as when each widget kept a Textual timer of its own)."""
        return self._clock._handle if self._clock is not None and self.booked else None


class ScreenClock:
    """One timer for every ageing text on a screen (:func:`clock_of`).

    Each widget books the moment its text next changes; the clock keeps one timer, for the
    grid point (``_GRID``) at or after the earliest. When it fires, every booking due by that
    grid point is taken off and fired in the same callback: their ``refresh()`` calls reach
    the screen together and are painted in one compositor pass. A widget that books again
    while the clock fires (its redraw found the text unchanged) is taken into the next timer.

    The timer is the event loop's own (``call_later``), not a Textual ``Timer``: a Textual
    timer is a task of its own that wakes to post a message to its widget, which wakes again
    to run the callback; this is one callback on the loop."""

    fires = 0  # every clock's firings in this process (the idle benchmark prints it)

    def __init__(self, screen: Screen[object]) -> None:
        self.screen = screen
        self._booked: dict[_Booking, int] = {}  # booking -> grid point (count of _GRID)
        self._handle: asyncio.TimerHandle | None = None
        self._point: int | None = None  # the grid point the handle is set for
        self._firing = False
        self.fired = 0  # this clock's firings (tests)

    def book(self, booking: _Booking, delay: float) -> None:
        """Fire ``booking`` at the first grid point at least ``delay`` seconds from now."""
        self._booked[booking] = math.ceil((time.monotonic() + delay) / _GRID)
        if not self._firing:
            self._arm()

    def cancel(self, booking: _Booking) -> None:
        if self._booked.pop(booking, None) is not None and not self._firing:
            self._arm()

    def booked(self, booking: _Booking) -> bool:
        return booking in self._booked

    def _arm(self) -> None:
        point = min(self._booked.values(), default=None)
        if point == self._point:
            return  # already set for that moment (or nothing booked, nothing set)
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._point = point
        if point is not None:
            loop = asyncio.get_running_loop()
            # The loop holds the clock weakly: a screen dropped (the settings screen closed)
            # goes with its clock and its bookings, not when its last booking comes due.
            fire = weakref.WeakMethod(self._fire)
            self._handle = loop.call_later(point * _GRID - time.monotonic(), _call, fire)

    def _fire(self) -> None:
        self._handle = None
        point, self._point = self._point, None
        if point is None:
            return
        due = [b for b, p in self._booked.items() if p <= point]
        for booking in due:
            del self._booked[booking]
        ScreenClock.fires += 1
        self.fired += 1
        self._firing = True
        try:
            for booking in due:
                booking._fire()
        except Exception as error:  # as a Textual timer's callback would: the app reports it
            self.screen.app._handle_exception(error)
        finally:
            self._firing = False
            self._arm()


def _call(fire: weakref.WeakMethod[Callable[[], None]]) -> None:
    method = fire()
    if method is not None:
        method()


_ATTRIBUTE = "_harness_ageing_clock"


def _app_clock(widget: Widget) -> Callable[[], float]:
    """The clock the widget's texts are drawn by (the app's, injected in tests; else wall
    time). A moment is booked as its distance from this clock read just now, not from the
    ``now`` the widget drew with: texts that change at the same moment are booked for the
    same grid point even when one widget drew a few milliseconds after the other."""
    clock: Callable[[], float] = getattr(widget.app, "clock", time.time)
    return clock


def clock_of(widget: Widget) -> ScreenClock | None:
    """The clock of ``widget``'s screen; None while the widget is on no screen (not mounted:
    nothing drawn yet, and its first render books)."""
    if not widget.is_mounted or not widget.is_attached:
        return None
    screen = widget.screen
    # Kept on the screen itself: it lives exactly as long as the screen (a mapping beside it
    # would hold the screen alive through the clock's bookings, whose widgets are on it).
    clock: ScreenClock | None = getattr(screen, _ATTRIBUTE, None)
    if clock is None:
        clock = ScreenClock(screen)
        setattr(screen, _ATTRIBUTE, clock)
    return clock


class AgeTimer(_Booking):
    """One pending refresh for a widget's ages. Call :meth:`drawn` from ``render`` with the ages
    it showed (none: the booking is dropped)."""

    def __init__(self, widget: Widget) -> None:
        self.widget = widget
        self._clock: ScreenClock | None = None
        self._due = 0.0

    def drawn(self, now: float, ages: Iterable[float]) -> None:
        delays = [next_change(a) for a in ages]
        if not delays:
            self.cancel()
            return
        due = now + min(delays) + _EPSILON
        self._book_at(due)

    def _fire(self) -> None:
        if self.widget.is_mounted and self.widget.is_attached:
            self.widget.refresh()


def shown(widget: Widget) -> bool:
    """Whether ``widget``'s screen is in view: on the current mode's stack with nothing but
    dialogs (modal screens) above it. Another mode (the events screen) or a full screen pushed
    over it (the settings screen over the plugins screen) hides it. A timed redraw of a widget
    not shown is skipped and made when its screen is shown again."""
    from textual.screen import ModalScreen

    if not widget.is_mounted or not widget.is_attached:
        return False  # removed (the app closing, its screen popped): not drawn again
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


class TextTimer(_Booking):
    """One pending redraw of ``widget`` for the moment its clock-dependent text changes
    (:func:`next_text_change`), on its screen's clock; none while its screen is hidden: the
    redraw then waits for the screen to be shown again. Call :meth:`book` after drawing, with
    the delay."""

    def __init__(
        self, widget: Widget, redraw: Callable[[], None], *, at_most_every: float = 0.0
    ) -> None:
        self.widget, self.redraw = widget, redraw
        # A text that drifts by itself (a share rounded to a tenth of a percent over a few
        # seconds recorded) can change many times a second; a widget that is not a countdown
        # asks to be redrawn by the clock at most this often. A text that steps about that
        # often ("7 s recorded", once a second) is redrawn at its steps: floored to a full
        # period from each redraw, which lands up to a grid point late, it fell a little
        # further behind its steps every time (a tenth of a second a step: "7 s" shown at 7.9).
        self.at_most_every = at_most_every
        self._clock: ScreenClock | None = None
        self._due = 0.0
        self.asleep = False  # the clock found the screen hidden: nothing booked since
        self.fired = 0  # redraws made by the clock (tests: none while hidden)
        widget.app.screen_change_signal.subscribe(widget, self._on_screen_change)

    def book(self, now: float, delay: float | None) -> None:
        if delay is None:
            self.cancel()
            return
        if delay < self.at_most_every / 2:
            delay = self.at_most_every
        due = now + delay + _EPSILON
        self._book_at(due)

    def _fire(self) -> None:
        if not shown(self.widget):
            self.asleep = True
            return
        self.fired += 1
        self.redraw()

    def _on_screen_change(self, _screen: object) -> None:
        if self.asleep and shown(self.widget):
            self.asleep = False
            self.redraw()  # what changed meanwhile, and the next booking
