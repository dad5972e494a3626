"""One clock for a screen's ageing texts (tui.ageing.ScreenClock): texts that change at the same
moment are redrawn by one firing, and none is left stale. The real app through its pilot."""

from __future__ import annotations

import math
import time

from harness.config import Config
from harness.protocol import Connection
from tests.tui.conftest import make_app, open_settings, until
from tui import ageing
from tui.ageing import clock_of
from tui.widgets.connection_status import ConnectionStatus
from tui.widgets.history import ConnectionHistory


async def test_at_a_minute_boundary_both_texts_change_and_the_clock_fires_once(
    config: Config,
) -> None:
    """The settings screen's connection age ("(1 min)") and the history's "1 min recorded"
    turn to "2 min" at the same moment: one firing redraws both (each booked its own timer
    before: two wake-ups and two repaints a minute)."""
    epoch = 1_700_000_000.0  # the app's clock runs with the real one (the clock must fire)
    app = make_app(config, stream=False, clock=lambda: epoch + time.monotonic())
    async with app.run_test(size=(100, 40)) as pilot:
        app.stream.set_online(0)
        screen = await open_settings(pilot, "echo")
        status = screen.query_one(ConnectionStatus)
        history = screen.query_one(ConnectionHistory)
        await until(pilot, lambda: history.loaded)
        # The minute turns 2 s or more from now, booked (with the texts' epsilon) for the middle
        # of a grid slot, so a millisecond either way cannot split the two into two slots.
        slot = math.ceil((time.monotonic() + 2.0) / ageing._GRID) + 0.5
        turn = epoch + slot * ageing._GRID - ageing._EPSILON
        connected = Connection(state="connected", seq=10**9, since=turn - 120, username="Bot#1")
        assert status.apply(connected)
        history.transitions.clear()
        history.transitions.append((10**9, turn - 120, "connected", "Bot#1"))
        history.refresh()
        await until(pilot, lambda: "1 min recorded" in history._drawn)
        await until(pilot, lambda: "(1 min)" in status._drawn)
        clock = clock_of(status)
        assert clock is not None and clock is clock_of(history)  # one clock for the screen
        tick, timer = status._tick, history._timer
        assert tick is not None and timer is not None and tick.booked and timer.booked
        fired, by_status, by_history = clock.fired, tick.fired, timer.fired
        await until(pilot, lambda: "2 min recorded" in history._drawn)
        await until(pilot, lambda: "(2 min)" in status._drawn)
        assert app.clock() >= turn  # not drawn before the minute turned
        assert clock.fired == fired + 1  # one firing for both
        assert (tick.fired, timer.fired) == (by_status + 1, by_history + 1)
        # Each booked again for its next minute (the history: the stamps' midnight too).
        assert tick.booked and timer.booked
