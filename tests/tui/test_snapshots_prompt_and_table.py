"""SVG snapshots: the unsaved-changes prompt, and the plugins table at 80, 100 and 60 columns
with the demo's long account name and a latency (set up as tests/tui/test_snapshots.py does:
a prepared database, the daemon down, a frozen clock, states through the Stream's methods)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input

from harness.config import Config
from tests.tui.conftest import TOKEN, screen_text
from tests.tui.conftest import until as until_within
from tests.tui.test_snapshots import echo_info, live, prepare_database, snapshot_app
from tui.app import HarnessApp
from tui.screens.discard import DiscardScreen
from tui.widgets.setting_field import SettingRow

SIZES = [pytest.param((100, 30), id="100x30"), pytest.param((80, 24), id="80x24")]


async def until(pilot: Pilot[Any], predicate: Callable[[], object]) -> None:
    """conftest's wait with a deadline for a loaded CI machine (5 s was met late at load 20)."""
    await until_within(pilot, predicate, timeout=60.0)


@pytest.fixture
def prepared(config: Config) -> Config:
    prepare_database(config)
    return config


def demo_like() -> Any:
    """Connected as the demo's bot, with a latency: the row that overflowed 80 columns."""
    return live(echo_info(), state="connected", username="HarnessBot#1234", latency_ms=42)


@pytest.mark.parametrize("size", SIZES)
def test_unsaved_changes_prompt(snap_compare: Any, prepared: Config, size: tuple[int, int]) -> None:
    """An edited prefix and a typed secret, then escape: the prompt names both fields, never
    the secret's value."""
    before = demo_like()

    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, HarnessApp)
        await before(pilot)
        screen = app.screen
        screen.query_one("#field-prefix", SettingRow).query_one(Input).value = "Zed"
        screen.query_one("#field-token", SettingRow).query_one(Input).value = TOKEN
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, DiscardScreen))
        await until(pilot, lambda: "Discard unsaved changes to echo?" in screen_text(app))
        assert TOKEN not in screen_text(app)
        await pilot.pause()

    app = snapshot_app(prepared, plugin="echo")
    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", [*SIZES, pytest.param((60, 20), id="60x20")])
def test_plugins_table_fits(snap_compare: Any, prepared: Config, size: tuple[int, int]) -> None:
    """State and latency readable, no horizontal scrollbar, down to 60 columns."""
    before = demo_like()

    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, HarnessApp)
        await before(pilot)
        table = app.screen.query_one(DataTable)
        await until(pilot, lambda: "42 ms" in screen_text(app))
        assert table.virtual_size.width <= table.size.width  # nothing to scroll sideways
        assert not table.show_horizontal_scrollbar

    app = snapshot_app(prepared)
    assert snap_compare(app, terminal_size=size, run_before=run_before)
