"""The one-widget footer (tui/widgets/footer.py): the keys Textual's Footer showed, as one line
that still works with the mouse. How it looks is pinned by the SVG snapshots (test_snapshots)."""

from __future__ import annotations

from typing import Any

import pytest
from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import CommandPalette
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Footer, HelpPanel, Static

from harness.config import Config
from tui.screens.events import EventsScreen
from tui.widgets.footer import KeysFooter

from .conftest import make_app, screen_text, until


def footer_line(app: App[Any]) -> str:
    return screen_text(app).splitlines()[-1]  # type: ignore[arg-type]


def backgrounds(app: App[Any], text: str) -> set[str]:
    """The background colours the footer draws ``text`` with."""
    strip = app.screen._compositor.render_strips()[-1]
    start = strip.text.index(text)
    found, x = set(), 0
    for segment in strip:
        end = x + len(segment.text)
        if x < start + len(text) and end > start and segment.style and segment.style.bgcolor:
            found.add(segment.style.bgcolor.name)
        x = end
    return found


async def footer_ready(pilot: Pilot[Any], *keys: str) -> KeysFooter:
    app = pilot.app
    await until(pilot, lambda: bool(app.screen.query(KeysFooter)))
    await until(pilot, lambda: all(key in footer_line(app) for key in keys))
    return app.screen.query_one(KeysFooter)


async def test_the_footer_is_one_widget_and_follows_a_change_of_keys(config: Config) -> None:
    app = make_app(config, stream=False)
    async with app.run_test(size=(100, 30)) as pilot:
        footer = await footer_ready(pilot, "⏎ Settings", "q Quit", "e Events", "^p palette")
        assert not footer.children  # no widget per key
        assert "Flap" not in footer_line(app)
        app.demo_control = "http://127.0.0.1:1"  # the demo keys appear
        app.refresh_bindings()
        await until(pilot, lambda: "f Flap connection" in footer_line(app))
        await pilot.press("e")  # another screen, its own keys
        await until(pilot, lambda: "space Pause" in footer_line(app))


async def test_a_click_on_a_key_presses_it(config: Config) -> None:
    app = make_app(config, stream=False)
    async with app.run_test(size=(80, 24)) as pilot:
        footer = await footer_ready(pilot, "e Events")
        await pilot.click(footer, offset=(footer_line(app).index("e Events") + 1, 0))
        await until(pilot, lambda: isinstance(app.screen, EventsScreen))
        footer = await footer_ready(pilot, "^p palette")
        await pilot.click(footer, offset=(footer_line(app).index("^p palette") + 3, 0))
        await until(pilot, lambda: isinstance(app.screen, CommandPalette))


async def test_the_key_under_the_mouse_is_highlighted_with_its_tooltip(config: Config) -> None:
    app = make_app(config, stream=False)
    async with app.run_test(size=(100, 30)) as pilot:
        footer = await footer_ready(pilot, "q Quit", "^p palette")
        plain = backgrounds(app, "q Quit")
        assert len(plain) == 1
        await pilot.hover(footer, offset=(footer_line(app).index("q Quit") + 1, 0))
        await until(pilot, lambda: backgrounds(app, "q Quit").isdisjoint(plain))
        assert backgrounds(app, "e Events") == plain  # only the key under the mouse
        assert footer.tooltip is None  # the app's keys have no tooltip, as in Textual's Footer
        await pilot.hover(footer, offset=(footer_line(app).index("^p palette") + 1, 0))
        await until(pilot, lambda: backgrounds(app, "q Quit") == plain)
        assert footer.tooltip == "Open the command palette"
        assert backgrounds(app, "^p palette").isdisjoint(plain)


async def test_keys_that_do_not_fit_scroll_into_view(config: Config) -> None:
    app = make_app(config, stream=False)
    # 60 columns: the events screen's keys do not fit even in their shorter words, with the
    # keys to other screens left out (at 80 they now do: test_footers_fit).
    async with app.run_test(size=(60, 24)) as pilot:
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, EventsScreen))
        footer = await footer_ready(pilot, "space Pause")
        assert "? Keys" not in footer_line(app)  # past the palette key's rule
        for _ in range(8):
            if "? Keys" in footer_line(app):
                break
            # As the terminal reports the wheel over the footer (Pilot has no wheel of its own).
            await pilot._post_mouse_events([events.MouseScrollDown], footer, offset=(5, 0))
        assert "? Keys" in footer_line(app)
        assert footer_line(app).endswith("▏^p palette ")  # the palette key stays put
        await pilot.click(footer, offset=(footer_line(app).index("? Keys") + 1, 0))
        await until(pilot, lambda: app.screen.query("HelpPanel"))


class DisabledKey(App[None]):
    """A key its screen disables: drawn dim, and a click on it only rings the bell."""

    BINDINGS = [Binding("x", "go", "Go"), Binding("y", "off", "Off")]

    def __init__(self) -> None:
        super().__init__()
        self.done: list[str] = []
        self.bells = 0

    def compose(self) -> ComposeResult:
        yield KeysFooter()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return None if action == "off" else True

    def action_go(self) -> None:
        self.done.append("go")

    def action_off(self) -> None:
        self.done.append("off")

    def bell(self) -> None:
        self.bells += 1


async def test_a_disabled_key_is_dim_and_only_rings_the_bell() -> None:
    app = DisabledKey()
    async with app.run_test(size=(60, 5)) as pilot:
        footer = await footer_ready(pilot, "x Go", "y Off")
        # Textual draws dim text in a colour nearer the background (its DimFilter).
        colour = {
            seg.text.strip(): seg.style and seg.style.color
            for seg in app.screen._compositor.render_strips()[-1]
        }
        assert colour["y"] != colour["x"] and colour["Off"] != colour["Go"]
        await pilot.click(footer, offset=(footer_line(app).index("y Off") + 1, 0))
        await until(pilot, lambda: app.bells == 1)
        await pilot.click(footer, offset=(footer_line(app).index("x Go") + 1, 0))
        await until(pilot, lambda: app.done == ["go"])
        assert app.bells == 1


class SameKeys(App[None]):
    """The same keys under one footer or the other: Textual's ``Footer`` or ``KeysFooter``."""

    BINDINGS = [
        Binding("x", "go", "Go"),
        Binding("y", "off", "Off"),  # disabled: drawn dim
        Binding("enter", "go", "Settings"),  # a second key for an action: not shown
        Binding("s", "settings", "Settings"),
        Binding("question_mark", "keys", "Keys"),
    ]

    def __init__(self, footer: Widget) -> None:
        super().__init__()
        self.footer = footer

    def compose(self) -> ComposeResult:
        yield Static("above")
        yield self.footer

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return None if action == "off" else True


Cells = list[tuple[str, str]]


async def footer_cells(footer: Widget, width: int, hover: str | None) -> tuple[str, Cells]:
    """The footer's line as drawn, cell by cell (character and style), with the mouse over
    the key whose text is ``hover``."""
    app = SameKeys(footer)
    async with app.run_test(size=(width, 5)) as pilot:
        await until(pilot, lambda: "Go" in footer_line(app))
        if hover is not None:
            await pilot.hover(offset=(footer_line(app).index(hover), 4))
        await pilot.pause()
        await pilot.pause()
        strip = app.screen._compositor.render_strips()[-1]
        return strip.text, [(ch, str(seg.style)) for seg in strip for ch in seg.text]


@pytest.mark.parametrize("compact", [False, True], ids=["regular", "compact"])
@pytest.mark.parametrize(("width", "hover"), [(80, None), (80, "Go"), (80, "palette"), (30, None)])
async def test_drawn_cell_for_cell_as_textuals_footer(
    compact: bool, width: int, hover: str | None
) -> None:
    """Every cell (character, colours, bold, dim) as Textual's Footer draws the same keys: in
    both styles, at a width where they fit and one where they are cut, with the mouse over a
    key or the palette key."""
    ours = await footer_cells(KeysFooter(compact=compact), width, hover)
    textuals = await footer_cells(Footer(compact=compact), width, hover)
    assert ours == textuals
    if hover is not None:  # the mouse was over a key: the line is not the one without it
        assert ours != await footer_cells(KeysFooter(compact=compact), width, None)


async def test_compact_is_a_reactive_and_clicks_still_press_keys(config: Config) -> None:
    app = make_app(config, stream=False)
    async with app.run_test(size=(100, 30)) as pilot:
        footer = await footer_ready(pilot, " ⏎ Settings  q Quit  e Events ")
        footer.compact = True  # as Textual's Footer.compact: redrawn, less room round keys
        await until(pilot, lambda: footer_line(app).startswith("⏎ Settings q Quit e Events "))
        await pilot.click(footer, offset=(footer_line(app).index("e Events"), 0))
        await until(pilot, lambda: isinstance(app.screen, EventsScreen))


async def test_the_keys_entry_opens_and_closes_the_key_panel(config: Config) -> None:
    app = make_app(config, stream=False)
    async with app.run_test(size=(100, 30)) as pilot:
        footer = await footer_ready(pilot, "? Keys")
        at = footer_line(app).index("? Keys") + 2
        await pilot.click(footer, offset=(at, 0))
        await until(pilot, lambda: bool(app.screen.query(HelpPanel)))
        await pilot.click(footer, offset=(at, 0))
        await until(pilot, lambda: not app.screen.query(HelpPanel))
