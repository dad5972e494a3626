"""The events screen: live tail, glob filter, pause/resume, and a flood it survives."""

from __future__ import annotations

import asyncio
import time

from textual.widgets import Input, Log

from harness.client import Client
from harness.config import Config
from harness.protocol import Event
from tests.conftest import StartDaemon
from tests.tui.conftest import make_app, screen_text, until
from tui.app import HarnessApp
from tui.screens.events import KEPT, EventsScreen


def log_lines(app: HarnessApp) -> list[str]:
    return list(app.screen.query_one(Log).lines)


async def open_events(app: HarnessApp, pilot: object) -> EventsScreen:
    await pilot.press("e")  # type: ignore[attr-defined]
    await until(pilot, lambda: isinstance(app.screen, EventsScreen))  # type: ignore[arg-type]
    assert isinstance(app.screen, EventsScreen)
    return app.screen


async def test_live_tail_filter_and_pause(start_daemon: StartDaemon, configured: Config) -> None:
    await start_daemon(cfg=configured)
    app = make_app(configured)
    async with (
        app.run_test(size=(100, 30)) as pilot,
        await Client.connect(configured.socket_path) as other,
    ):
        await until(pilot, lambda: app.link.online)
        screen = await open_events(app, pilot)

        await other.request("plugins.update_settings", name="echo", settings={"prefix": "A"})
        await until(pilot, lambda: "username=ABot#0001" in "\n".join(log_lines(app)))
        assert any("plugin:settings" in line for line in log_lines(app))
        assert any("echo:connection" in line for line in log_lines(app))

        # Filter: only plugin:* rows remain, old and new.
        screen.query_one("#filter", Input).value = "plugin:*"
        await until(pilot, lambda: all(" plugin:" in line for line in log_lines(app)))
        assert log_lines(app)

        # Pause: new events are counted, not drawn; resume draws them.
        screen.query_one(Log).focus()
        await pilot.press("space")
        assert screen.paused
        drawn = len(log_lines(app))
        await other.request("plugins.update_settings", name="echo", settings={"prefix": "B"})
        await until(pilot, lambda: screen.held_while_paused > 0)
        assert "⏸ paused" in screen_text(app)
        assert len(log_lines(app)) == drawn
        await pilot.press("space")
        await until(pilot, lambda: len(log_lines(app)) > drawn)
        assert "▶ live" in screen_text(app)


async def test_flood_is_bounded_and_keys_stay_responsive(
    start_daemon: StartDaemon, configured: Config
) -> None:
    """A flood of 10,000 events/s (the rate `python -m harness.bench tui` uses): the tail keeps
    at most KEPT rows, the app keeps up without being cut off, and a key press is handled while
    the flood is still going, not only after it ends. Wall-clock figures live in the benchmark."""
    daemon = await start_daemon(cfg=configured)
    app = make_app(configured)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.link.online)
        screen = await open_events(app, pilot)
        assert daemon.bus is not None
        bus = daemon.bus
        stop = asyncio.Event()
        sent = 0

        async def flood() -> None:
            nonlocal sent
            while not stop.is_set() or sent < 20_000:
                for _ in range(100):
                    bus.publish(
                        Event(seq=bus.next_seq(), ts=time.time(), event="flood:tick", data={})
                    )
                sent += 100
                await asyncio.sleep(0.01)  # ~10,000 events/s, paced like a busy daemon

        task = asyncio.create_task(flood())
        await until(pilot, lambda: screen.received > 1000)
        await pilot.press("space")
        # The flood never ends by itself before ``stop``: a key starved by it times out here.
        await until(pilot, lambda: "⏸ paused" in screen_text(app))
        stop.set()
        await pilot.press("space")
        await task
        await until(pilot, lambda: app.stream.events_received >= sent)
        await until(pilot, lambda: "▶ live" in screen_text(app))
        assert len(screen.kept) <= KEPT
        assert len(log_lines(app)) <= KEPT
        assert app.link.online  # the daemon did not have to cut us off
