"""TUI test helpers: condition waits under Pilot, plain-text screen capture, app factory."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from textual.pilot import Pilot

from harness.config import Config
from tests.conftest import HANG_GUARD
from tui.app import HarnessApp
from tui.screens.settings import SettingsScreen
from tui.widgets.connection_status import ConnectionStatus

TOKEN = "tok-5ecret-e1ght"  # a secret that must never be drawn on screen
UTC = dt.UTC


@pytest.fixture
def configured(config: Config) -> Config:
    """The shared test config with the echo plugin given a token, so it connects."""
    return msgspec.structs.replace(config, plugins={"echo": {"token": TOKEN}})


def make_app(config: Config, **kwargs: Any) -> HarnessApp:
    """The app as tests run it: UTC times, no cursor blink (snapshot determinism)."""
    kwargs.setdefault("tz", UTC)
    kwargs.setdefault("cursor_blink", False)
    return HarnessApp(config, **kwargs)


async def until(
    pilot: Pilot[Any], predicate: Callable[[], object], timeout: float = HANG_GUARD
) -> None:
    """Let the app run until ``predicate()`` holds; fail after ``timeout`` seconds (a hang
    guard: generous, for a loaded machine)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {predicate}")
        await pilot.pause(0.01)


def screen_text(app: HarnessApp) -> str:
    """Everything drawn on the current screen, as plain text lines."""
    strips = app.screen._compositor.render_strips()
    return "\n".join(strip.text for strip in strips)


async def open_settings(pilot: Pilot[Any], name: str) -> SettingsScreen:
    """Open ``name``'s settings screen and wait until it is mounted and frames are drawn (at
    start the first frame is held for the daemon's state: see HarnessApp)."""
    app = pilot.app
    assert isinstance(app, HarnessApp)
    screen = app.open_settings(name)
    await until(pilot, lambda: app.screen is screen and screen.is_mounted)
    await until(pilot, lambda: app.first_frame_released)
    await until(pilot, lambda: bool(screen.query(ConnectionStatus)))
    return screen
