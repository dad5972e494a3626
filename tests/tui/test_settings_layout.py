"""The settings screen's layout does not move when its body starts or stops scrolling: the
scrollbar's column is kept either way (a form that fits the screen almost exactly used to get
a scrollbar for a frame while its rows mounted, and every box shifted a column when it went)."""

from __future__ import annotations

from textual.containers import VerticalScroll

from harness.config import Config
from tests.conftest import StartDaemon
from tests.tui.conftest import make_app, open_settings, until
from tui.widgets.connection_status import ConnectionStatus


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
