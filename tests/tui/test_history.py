"""ConnectionHistory: stored transitions, live appends, and the 24 h uptime figure."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest

from harness.client import Client
from harness.config import Config
from harness.protocol import Event
from tests.conftest import StartDaemon
from tests.tui.conftest import make_app, open_settings, until
from tui.ageing import next_text_change
from tui.widgets import history as history_mod
from tui.widgets.history import WINDOW, ConnectionHistory, uptime


def test_uptime_counts_only_the_window_and_what_is_known() -> None:
    now = 1_000_000.0
    assert uptime([], now) is None
    # Connected for an hour, then down for an hour: half, over the two known hours.
    assert uptime([(now - 7200, "connected"), (now - 3600, "disconnected")], now) == (0.5, 7200.0)
    # Connected since before the window began: all of the window, and no more.
    assert uptime([(now - 3 * WINDOW, "connected")], now) == (1.0, WINDOW)
    # A repeat of the same state does not change the figure.
    assert uptime([(now - 100, "connected"), (now - 50, "connected")], now) == (1.0, 100.0)


async def test_history_loads_stored_transitions_then_appends_live_ones(
    start_daemon: StartDaemon, configured: Config
) -> None:
    await start_daemon(cfg=configured)
    app = make_app(configured)
    async with app.run_test(size=(100, 40)) as pilot:
        await until(pilot, lambda: app.link.online)
        screen = await open_settings(pilot, "echo")
        history = screen.query_one(ConnectionHistory)
        await until(pilot, lambda: history.loaded)
        assert [t[2] for t in history.transitions] == ["connecting", "connected"]
        text = str(history.render())
        assert "uptime" in text and "EchoBot#0001" in text

        client = await Client.connect(configured.socket_path, client="test")
        try:
            await client.request(
                "plugins.update_settings", name="echo", settings={"prefix": "Live"}
            )
        finally:
            await client.close()
        await until(
            pilot,
            lambda: (
                [t[2] for t in history.transitions][-1:] == ["connected"]
                and len(history.transitions) == 5
            ),
        )
        assert [t[2] for t in history.transitions] == [
            "connecting",
            "connected",
            "stopped",
            "connecting",
            "connected",
        ]
        assert "LiveBot#0001" in str(history.render())


def test_the_next_change_is_found_to_the_millisecond() -> None:
    # A figure rounded to a tenth that falls after 7.2 s, a step at a break, none at all.
    def falling(t: float) -> str:
        return f"{3600 / (7200 + t) * 100:.1f}"

    assert abs((next_text_change(falling, 0.0, [60.0]) or 0) - 7.2072) < 0.002
    assert next_text_change(lambda t: t >= 30, 0.0, [30.0, 90.0]) == 30.0
    assert next_text_change(lambda t: "same", 0.0, [30.0, 90.0]) is None


async def test_the_uptime_text_books_one_timer_for_the_moment_it_changes(
    start_daemon: StartDaemon, configured: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Instead of a 10 s check: connected an hour of the two recorded, the figure reads
    "50.0 %" until 3600 / (7200 + t) rounds to 49.9 (t = 7.207 s); the clock is injected."""
    await start_daemon(cfg=configured)
    now = [2_000_000_000.0]
    app = make_app(configured, clock=lambda: now[0])
    async with app.run_test(size=(100, 40)) as pilot:
        await until(pilot, lambda: app.link.online)
        screen = await open_settings(pilot, "echo")
        history = screen.query_one(ConnectionHistory)
        await until(pilot, lambda: history.loaded)
        history.transitions.clear()
        history.transitions.extend(
            [(1, now[0] - 7200, "connected", "x"), (2, now[0] - 3600, "disconnected", "y")]
        )
        assert "uptime 50.0 %" in history._text(now[0]).plain
        assert abs((history.next_change(now[0]) or 0) - 7.2072) < 0.002
        assert "uptime 49.9 %" in history._text(now[0] + 7.21).plain
        # A flapping plugin (500 transitions): the moment is the one an exact search finds,
        # from a few passes over the transitions, not one per moment looked at.
        history.transitions.clear()
        history.transitions.extend(
            (i, now[0] - WINDOW + 60 + i * 170.3, "connected" if i % 2 else "disconnected", "")
            for i in range(500)
        )
        exact = next_text_change(
            lambda t: (history._figure(t, []), dt.datetime.fromtimestamp(t, dt.UTC).date()),
            now[0],
            [ts + WINDOW for _, ts, _, _ in history.transitions] + [(now[0] // 86400 + 1) * 86400],
        )
        passes: list[float] = []
        real = history_mod.uptime

        def counted(*args: Any, **kwargs: Any) -> tuple[float, float] | None:
            passes.append(args[1])
            return real(*args, **kwargs)

        monkeypatch.setattr(history_mod, "uptime", counted)
        fast = history.next_change(now[0])
        assert exact is not None and fast is not None and abs(fast - exact) < 0.002
        assert len(passes) <= 8, len(passes)
        monkeypatch.undo()
        # Always connected over the whole window: nothing moves until midnight (the stamps).
        history.transitions.clear()
        history.transitions.append((3, now[0] - 2 * WINDOW, "connected", "x"))
        midnight = (now[0] // 86400 + 1) * 86400  # UTC in tests
        assert history.next_change(now[0]) == midnight - now[0]


async def test_a_figure_drifting_by_itself_is_redrawn_at_most_once_a_second(
    start_daemon: StartDaemon, configured: Config
) -> None:
    """Five seconds recorded, half of them connected: the figure reads differently every few
    milliseconds. The clock redraws it at most once a second (at ten a second, on the grid,
    its frames got in front of the indicator's often enough to show in the indicator's p99)."""
    await start_daemon(cfg=configured)
    now = [2_000_000_000.0]
    app = make_app(configured, clock=lambda: now[0])
    async with app.run_test(size=(100, 40)) as pilot:
        await until(pilot, lambda: app.link.online)
        screen = await open_settings(pilot, "echo")
        history = screen.query_one(ConnectionHistory)
        await until(pilot, lambda: history.loaded)
        history.transitions.clear()
        history.transitions.extend(
            [(1, now[0] - 5, "connected", "x"), (2, now[0] - 2.5, "disconnected", "y")]
        )
        drift = history.next_change(now[0])
        assert drift is not None and drift < 0.05, drift  # the text itself moves that fast
        history.render()  # books the clock's redraw
        timer = history._timer
        assert timer is not None and timer._timer is not None
        assert timer._due - now[0] >= 1.0  # at most once a second


async def test_the_uptime_timer_sleeps_while_its_screen_is_hidden(
    start_daemon: StartDaemon, configured: Config
) -> None:
    """A figure that changes every second ("4 s recorded") is redrawn by its timer while
    shown; with the events screen in front the timer finds it hidden and books nothing more
    until the settings screen is back, which then shows the figure of that moment."""
    import time

    await start_daemon(cfg=configured)
    app = make_app(configured)  # the real clock: the timer must really fire
    async with app.run_test(size=(100, 40)) as pilot:
        await until(pilot, lambda: app.link.online)
        screen = await open_settings(pilot, "echo")
        history = screen.query_one(ConnectionHistory)
        await until(pilot, lambda: history.loaded)
        history.transitions.clear()
        history.add(
            [
                Event(
                    seq=10**9, ts=time.time(), event=history.event_name, data={"state": "connected"}
                )
            ]
        )
        timer = history._timer
        assert timer is not None
        fired = timer.fired
        await until(pilot, lambda: timer.fired >= fired + 2)  # each second
        await pilot.press("e")
        await until(pilot, lambda: timer.asleep)
        fired, drawn = timer.fired, history._drawn
        app.switch_mode("plugins")
        await until(pilot, lambda: app.screen is screen and not timer.asleep)
        await until(pilot, lambda: history._drawn != drawn)
        assert timer.fired == fired  # the catch-up came from being shown, not from a tick
        await until(pilot, lambda: timer.fired > fired)  # and it ticks again


async def test_a_stretch_storage_failed_is_listed_and_counts_neither_way(
    start_daemon: StartDaemon, config: Config
) -> None:
    """Transitions published while the disk was full are not in the store: the history lists
    the stretch as not recorded (from the daemon's "recovered" event, live and stored) and
    leaves it out of the uptime, instead of counting it as the state stored before it."""
    from tests.test_storage_faults import Link, fill_up

    Link.contexts.clear()
    daemon = await start_daemon(plugins={"link": Link})
    (ctx,) = Link.contexts
    app = make_app(config)
    async with app.run_test(size=(100, 40)) as pilot:
        await until(pilot, lambda: app.link.online)
        screen = await open_settings(pilot, "link")
        history = screen.query_one(ConnectionHistory)
        await until(pilot, lambda: history.loaded and len(history.transitions) >= 1)
        await fill_up(daemon)  # (its fillers may fail and recover more than once)
        lost = time.time()
        await ctx.set_connection("disconnected", reason="gateway went away")
        await ctx.set_connection("connected", username="Link#0001")
        assert daemon.store is not None
        await daemon.store.limit_pages(1_000_000)

        def covers_the_loss() -> bool:
            return any(lo <= lost <= hi and cause == "disk full" for lo, hi, cause in history.gaps)

        await until(pilot, covers_the_loss)
        text = history._text(app.clock()).plain
        assert "unrecorded time excluded" in text, text
        assert "not recorded" in text and "storage: disk full" in text, text
        # What a new screen reads from the store says the same.
        live = list(history.gaps)
        history.gaps.clear()
        history.reload()
        await until(pilot, covers_the_loss)
        assert list(history.gaps) == live
