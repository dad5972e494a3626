"""Keys and polish from the operations issue: `p` everywhere it is shown, `?` key help, the
theme kept between runs, the events filter (highlighted) and NDJSON export, the detail pane at
80x24, and integer fields that refuse what they cannot hold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import HelpPanel, Input, Log

from harness.config import Config
from harness.protocol import Event
from tests.tui.conftest import make_app, open_settings, screen_text, until
from tests.tui.test_snapshots import NOW, echo_info, live, prepared  # noqa: F401
from tui.app import HarnessApp
from tui.screens.events import EventsScreen
from tui.screens.plugins import PluginsScreen
from tui.screens.settings import SettingsScreen
from tui.ui_state import UiState

SAMPLES: list[tuple[str, dict[str, Any]]] = [
    ("echo:connection", {"state": "connected", "username": "EchoBot#0001"}),
    ("plugin:settings", {"plugin": "echo", "changed": ["prefix"]}),
    (
        "echo:connection",
        {
            "state": "disconnected",
            "username": "EchoBot#0001",
            "attempt": 3,
            "reason": "gateway closed the connection (1006), retrying in 4 s",
        },
    ),
    ("plugin:status", {"plugin": "echo", "status": "running"}),
]


async def events_screen(app: HarnessApp, pilot: Pilot[Any]) -> EventsScreen:
    app.stream.set_online(5)
    for i, (name, data) in enumerate(SAMPLES):
        seq, ts = 10 + i, NOW - 30 + i
        if name.endswith(":connection"):
            data = {**data, "seq": seq, "since": ts}
        app.stream.on_event(Event(seq=seq, ts=ts, event=name, data=data))
    await pilot.press("e")
    await until(pilot, lambda: isinstance(app.screen, EventsScreen))
    screen = app.screen
    assert isinstance(screen, EventsScreen)
    await until(pilot, lambda: len(screen.kept) == len(SAMPLES))
    return screen


async def test_p_on_the_settings_screen_goes_to_the_plugins_list(config: Config) -> None:
    app = make_app(config, stream=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_settings(pilot, "echo")
        await until(pilot, lambda: "p Plugins" in screen_text(app))
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, PluginsScreen))
        # From the events screen too.
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, EventsScreen))
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, PluginsScreen))


async def test_question_mark_toggles_the_key_help(config: Config) -> None:
    app = make_app(config, stream=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("question_mark")
        await until(pilot, lambda: bool(app.screen.query(HelpPanel)))
        await pilot.press("question_mark")
        await until(pilot, lambda: not app.screen.query(HelpPanel))
        await open_settings(pilot, "echo")
        await pilot.press("question_mark")
        await until(pilot, lambda: bool(app.screen.query(HelpPanel)))
        assert isinstance(app.screen, SettingsScreen)


async def test_the_chosen_theme_is_kept_for_the_next_run(config: Config, tmp_path: Path) -> None:
    state = tmp_path / "config" / "harness" / "tui.json"
    app = make_app(config, stream=False, ui_state=UiState.load(state))
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.theme == "textual-dark"
        app.theme = "nord"
        await until(pilot, lambda: state.exists())
    assert msgspec.json.decode(state.read_bytes()) == {"theme": "nord"}
    again = make_app(config, stream=False, ui_state=UiState.load(state))
    assert again.theme == "nord"
    state.write_text("not json")  # a damaged file is a fresh start, not a crash
    assert make_app(config, stream=False, ui_state=UiState.load(state)).theme == "textual-dark"


async def test_filter_highlights_matches_and_ctrl_e_exports_them(
    config: Config, tmp_path: Path
) -> None:
    app = make_app(config, stream=False, export_dir=tmp_path, clock=lambda: NOW)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await events_screen(app, pilot)
        log = screen.query_one(Log)
        await pilot.press("slash")
        assert screen.query_one("#filter", Input).has_focus
        await pilot.press(*"gateway", "enter")
        await until(pilot, lambda: len(log.lines) == 1)
        assert "reason=gateway closed" in log.lines[0]
        styled = log.highlighter(Text(log.lines[0]))
        marked = [styled.plain[s.start : s.end] for s in styled.spans if "reverse" in str(s.style)]
        assert marked == ["gateway"]

        await pilot.press("ctrl+e")
        await until(pilot, lambda: any(tmp_path.glob("harness-events-*.ndjson")))
        (path,) = tmp_path.glob("harness-events-*.ndjson")
        rows = [msgspec.json.decode(line, type=Event) for line in path.read_bytes().splitlines()]
        assert [(e.seq, e.event) for e in rows] == [(12, "echo:connection")]
        assert rows[0].data["attempt"] == 3
        messages = [n.message for n in app._notifications]
        assert any(str(path) in m and "1 event matching 'gateway'" in m for m in messages)

        # Globs still filter names, and are highlighted too.
        screen.query_one("#filter", Input).value = "plugin:*"
        await until(pilot, lambda: len(log.lines) == 2)
        assert all(" plugin:" in line for line in log.lines)


async def test_detail_pane_shows_attempt_and_reason_at_80x24(config: Config) -> None:
    app = make_app(config, stream=False, clock=lambda: NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await events_screen(app, pilot)
        await pilot.press("k")  # the newest is plugin:status; one older is the drop
        await until(pilot, lambda: screen.selected is not None)
        text = screen_text(app)
        assert "attempt=3" in text and "reason=gateway closed the connection (1006)" in text
        await pilot.press("G")
        await until(pilot, lambda: "status=running" in screen_text(app))


async def test_integer_field_refuses_a_fraction_inline(prepared: Config) -> None:  # noqa: F811
    app = make_app(prepared, stream=False, plugin="echo", clock=lambda: NOW)
    async with app.run_test(size=(100, 30)) as pilot:
        await live(echo_info(), state="connected", username="EchoBot#0001")(pilot)
        screen = app.screen
        assert isinstance(screen, SettingsScreen)
        await until(pilot, lambda: screen.form is not None and screen.form.ready)
        field = screen.query_one("#field-retries")
        control = field.query_one(Input)
        control.focus()
        control.value = ""
        await pilot.press("1", ".", "5")
        assert control.value == "1.5"  # shown as typed, not silently "15"
        await until(pilot, lambda: "has a fraction" in screen_text(app))
        assert "must be a whole number (1.5 has a fraction)" in screen_text(app)
        assert screen.form is not None
        _, errors = screen.form.collect()
        assert "retries" in errors
