"""Leaving a settings screen with unsaved edits asks first (tui/screens/discard.py); without
edits it leaves at once. The real app through its pilot, against a real daemon."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Button, Input

from harness import hangup
from harness.client import Client
from harness.config import Config
from tests.conftest import StartDaemon
from tests.tui.conftest import TOKEN, make_app, screen_text
from tests.tui.conftest import until as until_within
from tui import leaving
from tui.app import HarnessApp, leave_on_signals
from tui.screens.discard import DiscardScreen
from tui.screens.plugins import PluginsScreen
from tui.screens.settings import SettingsScreen
from tui.widgets.setting_field import SettingRow


async def until(pilot: Pilot[Any], predicate: Callable[[], object]) -> None:
    """conftest's wait with a deadline for a loaded CI machine (5 s was met late at load 20)."""
    await until_within(pilot, predicate, timeout=60.0)


def field(app: HarnessApp, screen: SettingsScreen, name: str) -> Input:
    return screen.query_one(f"#field-{name}", SettingRow).query_one(Input)


async def settings_ready(pilot: Pilot[Any], app: HarnessApp) -> SettingsScreen:
    await until(pilot, lambda: app.link.online)
    screen = app.screen
    assert isinstance(screen, SettingsScreen)
    await until(pilot, lambda: screen.form is not None and screen.form.ready)
    await until(pilot, lambda: app.first_frame_released)
    return screen


async def type_into(pilot: Pilot[Any], control: Input, text: str) -> None:
    control.focus()
    await pilot.press("end", *text)  # focusing selects the whole value; type after it


async def prompt_shown(pilot: Pilot[Any], app: HarnessApp) -> DiscardScreen:
    await until(pilot, lambda: isinstance(app.screen, DiscardScreen))
    prompt = app.screen
    assert isinstance(prompt, DiscardScreen)
    await until(pilot, lambda: "Discard unsaved changes to echo?" in screen_text(app))
    return prompt


async def test_leaving_without_changes_is_immediate(
    start_daemon: StartDaemon, configured: Config
) -> None:
    """Typing and deleting back, or 03 for a stored 3, is no change: escape leaves at once."""
    await start_daemon(cfg=configured)
    app = make_app(configured, plugin="echo")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await settings_ready(pilot, app)
        prefix = field(app, screen, "prefix")
        await type_into(pilot, prefix, "xy")
        await pilot.press("backspace", "backspace")
        retries = field(app, screen, "retries")
        retries.value = "03"
        assert screen.unsaved_labels() == []
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, PluginsScreen))
        assert not any(isinstance(s, DiscardScreen) for s in app.screen_stack)


async def test_escape_asks_keep_editing_keeps_the_edit_and_discard_leaves(
    start_daemon: StartDaemon, configured: Config
) -> None:
    await start_daemon(cfg=configured)
    app = make_app(configured, plugin="echo")
    async with (
        app.run_test(size=(80, 24)) as pilot,
        await Client.connect(configured.socket_path) as other,
    ):
        screen = await settings_ready(pilot, app)
        prefix = field(app, screen, "prefix")
        await type_into(pilot, prefix, "Zed")
        await pilot.press("escape")
        prompt = await prompt_shown(pilot, app)
        assert "Changed: prefix." in screen_text(app)
        assert prompt.query_one("#keep", Button).has_focus  # the safe answer is the default
        await pilot.press("escape")  # keep editing
        await until(pilot, lambda: app.screen is screen)
        assert prefix.value == "EchoZed"

        # Another plugin's screen (the command palette's "Open plugin X") asks too.
        assert app.open_settings("other") is screen
        await prompt_shown(pilot, app)
        assert "then open other" in screen_text(app)
        await pilot.click("#keep")
        await until(pilot, lambda: app.screen is screen)
        assert prefix.value == "EchoZed"

        # Another client saves another field meanwhile: the edit stays, and so does the form's
        # baseline (the values it loaded); the prompt still names only this edit.
        greeting = field(app, screen, "greeting")
        await other.request("plugins.update_settings", name="echo", settings={"greeting": "yo"})
        info_now = lambda: app.plugins["echo"].info  # noqa: E731
        await until(pilot, lambda: (info := info_now()) and info.settings["greeting"] == "yo")
        assert (prefix.value, greeting.value) == ("EchoZed", "hi")

        # `p` (focus off the input, where it would be typed) asks too; a click discards.
        screen.set_focus(None)
        await pilot.press("p")
        await prompt_shown(pilot, app)
        assert "Changed: prefix." in screen_text(app)
        await pilot.click("#discard")
        await until(pilot, lambda: isinstance(app.screen, PluginsScreen))
        # The form shows the daemon's settings as last heard: the edit gone, theirs in.
        assert (prefix.value, greeting.value) == ("Echo", "yo")
        info = await other.request("plugins.get", name="echo")
        assert info["settings"]["prefix"] == "Echo"  # nothing was sent


async def test_save_from_the_prompt_stores_then_goes_on(
    start_daemon: StartDaemon, configured: Config
) -> None:
    await start_daemon(cfg=configured)
    app = make_app(configured, plugin="echo")
    async with (
        app.run_test(size=(80, 24)) as pilot,
        await Client.connect(configured.socket_path) as other,
    ):
        screen = await settings_ready(pilot, app)
        field(app, screen, "prefix").value = "Kept"
        screen.set_focus(None)
        await pilot.press("e")
        await prompt_shown(pilot, app)
        await pilot.press("s")
        await until(pilot, lambda: app.current_mode == "events")
        info = await other.request("plugins.get", name="echo")
        assert info["settings"]["prefix"] == "Kept"

        # A save the form refuses (a value the field cannot hold) stays on the form.
        app.action_show_plugins()
        screen = app.open_settings("echo")
        await until(pilot, lambda: app.screen is screen and screen.form is not None)
        await until(pilot, lambda: screen.form is not None and screen.form.ready)
        field(app, screen, "retries").value = "1.5"
        screen.set_focus(None)
        await pilot.press("a")
        await prompt_shown(pilot, app)
        assert "Changed: retries." in screen_text(app)
        await pilot.press("s")
        await until(pilot, lambda: "must be a whole number" in screen_text(app))
        assert app.screen is screen and app.current_mode == "plugins"


async def test_a_typed_secret_is_never_shown_and_is_emptied_on_discard(
    start_daemon: StartDaemon, configured: Config
) -> None:
    await start_daemon(cfg=configured)
    app = make_app(configured, plugin="echo")
    typed = "n3w-" + TOKEN
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await settings_ready(pilot, app)
        token = field(app, screen, "token")
        await type_into(pilot, token, typed[:3])
        token.value = typed  # the rest at once: a keypress each is slow under load
        await pilot.press("escape")
        prompt = await prompt_shown(pilot, app)
        assert "Changed: token." in screen_text(app)
        for text in (screen_text(app), app.export_screenshot()):
            assert typed not in text and TOKEN not in text
        for widget in prompt.walk_children(Widget):
            assert TOKEN not in str(widget.render())
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, PluginsScreen))
        assert token.value == ""  # the typed secret does not linger in the widget


async def test_quit_asks_first_but_sigterm_exits_without_asking(
    start_daemon: StartDaemon, configured: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    await start_daemon(cfg=configured)
    monkeypatch.setattr(hangup, "signalled", 0)  # put back after the test
    # tui/leaving.py ends a process whose app has not left GRACE s after the signal: a slow
    # machine must not end the test run itself.
    monkeypatch.setenv(leaving.GRACE_ENV, "3600")
    app = make_app(configured, plugin="echo")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await settings_ready(pilot, app)
        field(app, screen, "prefix").value = "Unsaved"
        screen.set_focus(None)
        for key in ("q", "ctrl+q"):
            await pilot.press(key)
            prompt = await prompt_shown(pilot, app)
            assert "then quit" in screen_text(app)
            prompt.action_choose("keep")
            await until(pilot, lambda: app.screen is screen)
        assert app.return_code is None  # still running

        # With the prompt up, too: a `kill` is never held by a question nobody may answer.
        await pilot.press("q")
        await prompt_shown(pilot, app)
        with leave_on_signals(app):
            signal.raise_signal(signal.SIGTERM)
            deadline = time.monotonic() + 60
            while app.return_code is None:
                assert time.monotonic() < deadline, "the app did not exit on SIGTERM"
                await asyncio.sleep(0.01)
    assert app.return_code == 128 + signal.SIGTERM
