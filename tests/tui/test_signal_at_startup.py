"""SIGTERM while the app is still being built leaves as `q` does, with 128 + the signal.

Textual cannot exit while it composes the first screen: an exit asked for then ended in a
MountError ("Can't mount widget(s) before PluginsScreen() is mounted") or a NoMatches from a
screen's on_mount, a traceback on the terminal and exit 1 (seen with `kill` a few seconds into
`harness demo`). The app, its screens and the signal path are the real ones; the signal is
raised at a chosen turn of the loop after the app's on_load, so no timing is involved."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC
from typing import Any

import pytest

from harness import hangup
from harness.config import Config
from tests.conftest import StartDaemon
from tests.tui.conftest import make_app
from tui import leaving
from tui.app import HarnessApp, leave_on_signals

TURNS = [0, 1, 2, 4, 8, 12]  # the old code failed at each of these (and was fine from ~20)


class SignalledWhileBuilt(HarnessApp):
    """Raises SIGTERM ``turns`` turns of the loop after on_load (0: at the first)."""

    turns = 0

    def on_load(self) -> None:
        super().on_load()
        loop = asyncio.get_running_loop()

        def later(left: int) -> None:
            if left:
                loop.call_soon(later, left - 1)
            else:
                signal.raise_signal(signal.SIGTERM)

        loop.call_soon(later, self.turns)


async def ended(app: HarnessApp, **kwargs: Any) -> int | None:
    async with app.run_test(size=(80, 24), **kwargs) as pilot:
        async with asyncio.timeout(60):
            while app.return_code is None:
                await pilot.pause(0.01)
    return app.return_code


@pytest.fixture
def quiet_signals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hangup, "signalled", 0)  # put back after the test
    # No forced exit of the test run itself on a slow machine (tui/leaving.py).
    monkeypatch.setenv(leaving.GRACE_ENV, "3600")


@pytest.mark.parametrize("turns", TURNS)
@pytest.mark.parametrize("start", [{}, {"plugin": "echo"}, {"fleet": True}])
async def test_a_sigterm_while_the_first_screen_is_built_exits_143(
    config: Config, quiet_signals: None, turns: int, start: dict[str, Any]
) -> None:
    app = SignalledWhileBuilt(config, tz=UTC, cursor_blink=False, stream=False, **start)
    app.turns = turns
    with leave_on_signals(app):
        assert await ended(app) == 128 + signal.SIGTERM


async def test_a_sigterm_recorded_before_the_app_ran_exits_143(
    start_daemon: StartDaemon, config: Config, quiet_signals: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`harness demo` records signals from its start: one that came before the TUI's loop ran
    is seen by on_load (with the stream to a real daemon starting, as it does there). Passed
    before too (Textual can leave from on_load): it guards that path now that the exit waits
    for the first screen."""
    await start_daemon(cfg=config)
    monkeypatch.setattr(hangup, "signalled", 128 + signal.SIGTERM)
    assert await ended(make_app(config)) == 128 + signal.SIGTERM
