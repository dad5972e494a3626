"""The header tells a failing database apart from a healthy daemon, at both supported sizes."""

from __future__ import annotations

import pytest

from harness.config import Config
from tests.conftest import StartDaemon
from tests.test_storage_faults import fill_up
from tui.widgets.link_status import LinkStatus

from .conftest import make_app, screen_text, until


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
async def test_header_shows_storage_failing_then_clears(
    start_daemon: StartDaemon, configured: Config, size: tuple[int, int]
) -> None:
    daemon = await start_daemon(cfg=configured)
    app = make_app(configured)
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: app.link.online and "echo" in app.plugins)
        assert "storage failing" not in screen_text(app)
        await fill_up(daemon)
        await until(pilot, lambda: "⚠ storage failing: disk full since " in screen_text(app))
        header = screen_text(app).splitlines()[0]
        assert "online" in header and "storage failing: disk full" in header
        assert app.screen.query_one(LinkStatus).has_class("-storage")

        assert daemon.store is not None
        await daemon.store.limit_pages(1_000_000)
        await until(pilot, lambda: "storage failing" not in screen_text(app))
        assert "▲ daemon online" in screen_text(app)
        await pilot.press("q")


async def test_a_tui_started_during_the_failure_shows_it(
    start_daemon: StartDaemon, configured: Config
) -> None:
    daemon = await start_daemon(cfg=configured)
    await fill_up(daemon)
    app = make_app(configured)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: "storage failing: disk full since " in screen_text(app))
        await pilot.press("q")
