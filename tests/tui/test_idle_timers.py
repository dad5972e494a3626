"""Timers of screens in other modes sleep while those screens are hidden (issue 10's idle
CPU: every wake-up of an idle TUI counts). The real app through its pilot, a real daemon."""

from __future__ import annotations

from harness.config import Config
from tests.conftest import StartDaemon
from tests.tui.conftest import make_app, until
from tui.screens.alerts import AlertsScreen


async def test_the_alerts_refresh_is_paused_while_another_mode_is_shown(
    start_daemon: StartDaemon, config: Config
) -> None:
    await start_daemon(cfg=config)
    app = make_app(config)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.link.online)
        app.switch_mode("alerts")
        await until(pilot, lambda: isinstance(app.screen, AlertsScreen) and app.screen.is_mounted)
        alerts = app.screen
        assert isinstance(alerts, AlertsScreen)
        await until(pilot, lambda: alerts._refresher is not None)
        timer = alerts._refresher
        assert timer is not None
        await until(pilot, lambda: timer._active.is_set())
        app.switch_mode("plugins")
        await until(pilot, lambda: not timer._active.is_set())  # paused: no wake-ups
        app.switch_mode("alerts")
        await until(pilot, lambda: timer._active.is_set())
