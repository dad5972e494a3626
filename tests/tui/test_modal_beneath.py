"""A modal prompt shows the screen beneath it, dimmed, as Textual's modals do: the operator
still sees which plugin and what state they are deciding about. (app.tcss's ``Screen``
background applied to modal screens too and blanked everything around the dialog.) The real
app through its pilot against a real daemon; the frame is composed as the terminal gets it,
background screens included."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import Input

from harness.config import Config
from tests.conftest import StartDaemon
from tests.tui.conftest import make_app, until
from tui.app import HarnessApp
from tui.screens.confirm import ConfirmScreen
from tui.screens.discard import DiscardScreen
from tui.screens.settings import SettingsScreen
from tui.widgets.setting_field import SettingRow

BENEATH = "Plugins > echo"  # the settings screen's top line, outside any dialog


def frame_text(app: HarnessApp) -> str:
    """The whole frame as drawn, the screens beneath a modal included (as the app's own
    ``export_screenshot`` composes it), in plain text."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True)
    console.print(
        app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    )
    return console.export_text()


async def settings(pilot: Pilot[Any], app: HarnessApp) -> SettingsScreen:
    await until(pilot, lambda: app.link.online)
    screen = app.screen
    assert isinstance(screen, SettingsScreen)
    await until(pilot, lambda: screen.form is not None and screen.form.ready)
    await until(pilot, lambda: app.first_frame_released)
    await until(pilot, lambda: BENEATH in frame_text(app))
    return screen


async def test_the_discard_prompt_shows_the_settings_beneath(
    start_daemon: StartDaemon, configured: Config
) -> None:
    await start_daemon(cfg=configured)
    app = make_app(configured, plugin="echo")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await settings(pilot, app)
        prefix = screen.query_one("#field-prefix", SettingRow).query_one(Input)
        prefix.focus()
        await pilot.press("end", "Z")
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, DiscardScreen))
        await until(pilot, lambda: "Discard unsaved changes to echo?" in frame_text(app))
        assert BENEATH in frame_text(app)
        assert app.screen.styles.background.a < 1  # dimmed, not painted over


async def test_the_enable_disable_prompt_shows_the_settings_beneath(
    start_daemon: StartDaemon, configured: Config
) -> None:
    await start_daemon(cfg=configured)
    app = make_app(configured, plugin="echo")
    async with app.run_test(size=(80, 24)) as pilot:
        await settings(pilot, app)
        await pilot.press("ctrl+t")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await until(pilot, lambda: "Disable echo?" in frame_text(app))
        assert BENEATH in frame_text(app)
        assert app.screen.styles.background.a < 1
