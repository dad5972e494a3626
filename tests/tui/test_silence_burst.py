"""Keys that arrive in one burst in the silence dialog (tmux `send-keys 'abc' Tab 'def'`, a
paste-like typist, a slow machine catching up) land in the fields they were typed for. Tab is
a binding that Textual looks at only once the key has gone to the focused field and bubbled
back to the app; the keys behind it had been handed to the old field meanwhile, so "def" went
into the plugin field. The real app through its pilot, the keys posted as the terminal driver
posts them: all at once."""

from __future__ import annotations

import msgspec
from textual import events
from textual.widgets import Input

from harness.config import Config
from tests.conftest import StartDaemon
from tests.sample_plugins import Echo
from tests.tui.conftest import make_app, open_settings, until
from tui.screens.alerts import SilenceDialog


def burst(app: object, *keys: str) -> None:
    """Keys posted back to back, as the driver's input thread posts a burst it read."""
    for key in keys:
        character = key if len(key) == 1 else None
        app.post_message(events.Key(key, character))  # type: ignore[attr-defined]


async def test_a_burst_with_tabs_fills_each_field_in_turn(config: Config) -> None:
    app = make_app(config, stream=False)
    async with app.run_test(size=(80, 24)) as pilot:
        dialog = SilenceDialog()
        await app.push_screen(dialog)
        plugin = dialog.query_one("#silence-plugin", Input)
        duration = dialog.query_one("#silence-duration", Input)
        reason = dialog.query_one("#silence-reason", Input)
        await until(pilot, lambda: app.focused is plugin)
        duration.value = ""
        burst(app, *"abc", "tab", *"2h", "tab", *"deploy", "shift+tab")
        fields = (plugin, duration, reason)
        await until(pilot, lambda: sum(len(field.value) for field in fields) >= 11)
        await until(pilot, lambda: app.focused is duration)  # back a field (shift+tab)
        assert (plugin.value, duration.value, reason.value) == ("abc", "2h", "deploy")


async def test_a_burst_with_a_tab_on_the_settings_form(
    start_daemon: StartDaemon, config: Config
) -> None:
    """The same on the settings form: the characters after Tab belong to the next field."""
    cfg = msgspec.structs.replace(config, plugins={"echo": {"token": "burst-t0ken"}})
    await start_daemon(plugins={"echo": Echo}, cfg=cfg)
    app = make_app(cfg)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.link.online and "echo" in app.plugins)
        screen = await open_settings(pilot, "echo")
        await until(pilot, lambda: screen.form is not None and screen.form.ready)
        prefix = screen.query_one("#field-prefix #control", Input)
        retries = screen.query_one("#field-retries #control", Input)
        prefix.focus()
        await until(pilot, lambda: app.focused is prefix)
        prefix.value, retries.value = "", ""
        burst(app, *"Ab", "tab", *"7")
        await until(pilot, lambda: len(prefix.value) + len(retries.value) >= 3)
        await until(pilot, lambda: app.focused is retries)
        assert (prefix.value, retries.value) == ("Ab", "7")
