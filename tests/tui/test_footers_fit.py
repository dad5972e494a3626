"""Every screen's footer fits at 80x24 and 100x30 (tui/widgets/footer.py): each key it shows is
drawn whole, nothing scrolled off. At 80 columns the events screen's footer cut "Plugins" in
half and hid "? Keys" past the palette key; now the screen's shorter words come first, then
the keys to other screens (and the demo's, which the header names) give way."""

from __future__ import annotations

from typing import Any

import pytest
from textual.pilot import Pilot

from harness.config import Config
from tests.tui.conftest import make_app, screen_text, until
from tui.widgets.footer import KeysFooter, _key_width, _palette_width

SCREENS = ("plugins", "events", "alerts", "fleet", "settings")


async def drawn_footer(pilot: Pilot[Any], name: str) -> KeysFooter:
    """The footer of screen ``name`` once it has drawn its keys."""
    app = pilot.app
    await until(pilot, lambda: type(app.screen).__name__.lower().startswith(name))
    await until(pilot, lambda: bool(app.screen.query(KeysFooter)))
    footer = app.screen.query_one(KeysFooter)
    await until(pilot, lambda: footer._shown is not None)
    await pilot.pause()
    return footer


@pytest.mark.parametrize("demo", [False, True], ids=["plain", "demo"])
@pytest.mark.parametrize("size", [(80, 24), (100, 30)], ids=["80x24", "100x30"])
async def test_every_screens_footer_fits(config: Config, size: tuple[int, int], demo: bool) -> None:
    app = make_app(config, stream=False, demo_control="http://127.0.0.1:1" if demo else None)
    async with app.run_test(size=size) as pilot:
        for name in SCREENS:
            if name == "settings":
                app.open_settings("echo")
            elif name == "fleet":
                app.action_show_fleet()
            else:
                getattr(app, f"action_show_{name}")()
            footer = await drawn_footer(pilot, name)
            line = screen_text(app).splitlines()[-1]
            shown = footer._shown
            assert shown is not None and shown.palette is not None
            keys = shown.keys
            room = size[0] - _palette_width(shown.palette)
            assert sum(_key_width(key, footer.compact) for key in keys) <= room, (name, line)
            for key in keys:
                assert f" {key.display} {key.description} " in line, (name, line)
            assert "q Quit" in line and "? Keys" in line, (name, line)
            assert line.rstrip().endswith("▏^p palette"), (name, line)
            if name == "settings":
                await pilot.press("escape")
