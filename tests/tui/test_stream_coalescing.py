"""The stream's coalescing: a change after a quiet spell is applied at once (leading edge), a
burst is held and applied once, its latest value winning (trailing edge).

The burst window is set to an hour and the stream's clock is the test's own, so nothing here
depends on how fast this machine is: "at once" means "with no window to wait for", checked as
state and order."""

from __future__ import annotations

import time
from typing import Any

import pytest

import tui.stream
from harness.config import Config
from harness.protocol import Event
from tests.conftest import StartDaemon
from tests.tui.conftest import make_app, until
from tui.state import PluginState

WINDOW = 3600.0  # seconds: a flush that waited for the window would never come in a test


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_change_after_quiet_is_applied_at_once_and_a_burst_once(
    start_daemon: StartDaemon, configured: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    monkeypatch.setattr(tui.stream, "FLUSH_INTERVAL", WINDOW)
    monkeypatch.setattr(tui.stream, "monotonic", clock)
    daemon = await start_daemon(cfg=configured)
    bus = daemon.bus
    assert bus is not None
    app = make_app(configured, plugin="echo")
    applied: list[str | None] = []

    def record(plugins: dict[str, PluginState]) -> None:
        conn = plugins["echo"].connection if "echo" in plugins else None
        if conn is not None and (not applied or applied[-1] != conn.username):
            applied.append(conn.username)

    def publish(username: str) -> None:
        data: dict[str, Any] = {"state": "connected", "username": username}
        bus.publish(Event(seq=bus.next_seq(), ts=time.time(), event="echo:connection", data=data))

    def shown() -> str | None:
        conn = app.plugins["echo"].connection if "echo" in app.plugins else None
        return conn.username if conn is not None else None

    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.link.online and shown() == "EchoBot#0001")
        app.watch(app, "plugins", record, init=False)

        # Quiet for longer than the window: the next change is the leading edge.
        clock.now += WINDOW + 1
        received = app.stream.events_received
        publish("Quiet#1")
        await until(pilot, lambda: shown() == "Quiet#1")
        assert app.stream.events_received == received + 1

        # Within the window of that flush: a burst. Held, not applied one by one...
        publish("Burst#1")
        publish("Burst#2")
        publish("Burst#3")
        await until(pilot, lambda: app.stream.events_received == received + 4)
        await pilot.pause()
        assert shown() == "Quiet#1"
        # ...and applied once at the trailing edge (the timer's call, made here, not awaited
        # for an hour), the latest value winning.
        app.stream.flush()
        assert shown() == "Burst#3"
        assert applied == ["Quiet#1", "Burst#3"]

        # Quiet again: the next lone change is again applied without waiting.
        clock.now += WINDOW + 1
        publish("Quiet#2")
        await until(pilot, lambda: shown() == "Quiet#2")
        assert applied == ["Quiet#1", "Burst#3", "Quiet#2"]
