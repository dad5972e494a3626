"""The settings screen's layout does not move when its body starts or stops scrolling: the
scrollbar's column is kept either way (a form that fits the screen almost exactly used to get
a scrollbar for a frame while its rows mounted, and every box shifted a column when it went)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from textual.containers import VerticalScroll
from textual.events import Mount
from textual.pilot import Pilot
from textual.widgets import Collapsible

from harness.config import Config
from tests.conftest import StartDaemon
from tests.tui.conftest import make_app, open_settings, screen_text
from tests.tui.conftest import until as until_within
from tui.widgets.connection_status import ConnectionStatus


async def until(pilot: Pilot[Any], predicate: Callable[[], object]) -> None:
    """conftest's wait with a deadline for a loaded CI machine (5 s was met late at load 20)."""
    await until_within(pilot, predicate, timeout=60.0)


async def test_boxes_keep_their_width_whether_or_not_the_body_scrolls(
    start_daemon: StartDaemon, configured: Config
) -> None:
    await start_daemon(cfg=configured)
    app = make_app(configured, plugin="echo")
    async with app.run_test(size=(100, 40)) as pilot:
        screen = await open_settings(pilot, "echo")
        body = screen.query_one("#settings-body", VerticalScroll)
        box = screen.query_one(ConnectionStatus)
        await until(pilot, lambda: screen.first_paint_ready() and "Connected" in box.text)
        await pilot.pause()
        assert body.max_scroll_y == 0, "at 100x40 the echo form fits: no scrolling"
        fits = box.region.width
        # Shorter: the same content scrolls now, a scrollbar is drawn, and nothing moves.
        await pilot.resize_terminal(100, 16)
        await until(pilot, lambda: body.max_scroll_y > 0)
        await pilot.pause()
        assert body.show_vertical_scrollbar
        assert box.region.width == fits
        await pilot.resize_terminal(100, 40)
        await until(pilot, lambda: body.max_scroll_y == 0)
        await pilot.pause()
        assert box.region.width == fits


async def test_the_folded_rows_are_never_laid_out(
    start_daemon: StartDaemon, configured: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The advanced group is folded from its first layout on. Collapsible folds itself only
    when mounted, so a layout before that counted the folded rows: the demo's body at 100x30
    was laid out 16 rows taller, and its first frame showed a scrollbar thumb until the
    restyle after the mount laid it out again (50-380 ms later). Whether such a layout falls
    before the mount is timing; what decides it is whether the folded rows are displayed
    when the group mounts, which is checked here."""
    shown_at_mount: list[bool] = []
    mount = Collapsible._on_mount

    def on_mount(collapsible: Collapsible, event: Mount) -> None:
        contents = collapsible.query_one(Collapsible.Contents)
        shown_at_mount.append(contents.display and collapsible.collapsed)
        mount(collapsible, event)

    monkeypatch.setattr(Collapsible, "_on_mount", on_mount)
    await start_daemon(cfg=configured)
    app = make_app(configured, plugin="echo")
    async with app.run_test(size=(100, 40)) as pilot:
        screen = await open_settings(pilot, "echo")
        await until(pilot, lambda: screen.first_paint_ready() and "Advanced" in screen_text(app))
        assert shown_at_mount == [False], "folded rows displayed until the group mounted"
        # Unfolding still works: the class is Collapsible's own.
        collapsible = screen.query_one(Collapsible)
        collapsible.collapsed = False
        await until(pilot, lambda: "greeting" in screen_text(app))
