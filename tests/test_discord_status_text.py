"""The bot's status text is bounded by Discord's limit on an activity's name (128 characters),
not by the 4 KiB every text setting may have: a longer one is refused with the bound named, by
the request API and by the TUI's form before anything is sent; 128 is taken. The real daemon
with the real plugin against the emulator, the real app under its pilot."""

# ruff: noqa: F811  (pytest fixtures imported from test_discord_plugin are parameters here)
from __future__ import annotations

from typing import Any

import pytest
from textual.widgets import Input

from harness.client import ClientError
from harness.config import Config
from tests.test_discord_plugin import (  # noqa: F401  (fixtures used by name)
    FastDiscord,
    _restore_discord_urls,
    discord_config,
    gateway,
)
from tests.tui.conftest import make_app, screen_text, until
from tui.screens.settings import SettingsScreen
from tui.widgets.setting_field import SettingRow

BOUND = "too long: 129 characters; at most 128"


async def test_the_request_api_refuses_a_status_text_over_128_characters(
    start_daemon: Any, connect: Any, config: Config, gateway: Any
) -> None:
    cfg = discord_config(config, gateway)
    await start_daemon(plugins={"discord": FastDiscord}, cfg=cfg)
    client = await connect(cfg)
    with pytest.raises(ClientError) as refused:
        await client.request(
            "plugins.update_settings", name="discord", settings={"status_text": "x" * 129}
        )
    assert refused.value.code == "invalid_settings"
    assert refused.value.details["fields"]["status_text"] == BOUND
    got = await client.request("plugins.get", name="discord")
    assert got["settings"]["status_text"] == ""  # nothing lost, nothing half-applied
    await client.request(
        "plugins.update_settings", name="discord", settings={"status_text": "y" * 128}
    )
    got = await client.request("plugins.get", name="discord")
    assert got["settings"]["status_text"] == "y" * 128
    (field,) = [f for f in got["schema"] if f["name"] == "status_text"]
    assert field["max_length"] == 128 and "at most 128 characters" in field["description"]


async def test_the_form_refuses_129_characters_naming_the_bound_and_saves_128(
    start_daemon: Any, config: Config, gateway: Any
) -> None:
    cfg = discord_config(config, gateway)
    await start_daemon(plugins={"discord": FastDiscord}, cfg=cfg)
    app = make_app(cfg, plugin="discord")
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.link.online)
        screen = app.screen
        assert isinstance(screen, SettingsScreen)
        await until(pilot, lambda: screen.form is not None and screen.form.ready)
        text = screen.query_one("#field-status_text", SettingRow).query_one(Input)
        text.value = "x" * 129  # a paste: the field itself does not cut it short
        assert len(text.value) == 129
        await pilot.press("ctrl+s")

        def toasts() -> list[str]:
            return [str(n.message) for n in app._notifications]

        await until(pilot, lambda: any(f"Status text: {BOUND}" in t for t in toasts()))
        await until(pilot, lambda: f"✖ {BOUND}" in screen_text(app))
        assert app.plugins["discord"].info is not None
        assert app.plugins["discord"].info.settings["status_text"] == ""

        text.value = "y" * 128
        await pilot.press("ctrl+s")
        await until(
            pilot,
            lambda: (
                (info := app.plugins["discord"].info) is not None
                and info.settings["status_text"] == "y" * 128
            ),
        )
        assert f"✖ {BOUND}" not in screen_text(app)
