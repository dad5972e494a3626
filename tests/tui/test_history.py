"""ConnectionHistory: stored transitions, live appends, and the 24 h uptime figure."""

from __future__ import annotations

from harness.client import Client
from harness.config import Config
from tests.conftest import StartDaemon
from tests.tui.conftest import make_app, open_settings, until
from tui.widgets.history import WINDOW, ConnectionHistory, uptime


def test_uptime_counts_only_the_window_and_what_is_known() -> None:
    now = 1_000_000.0
    assert uptime([], now) is None
    # Connected for an hour, then down for an hour: half, over the two known hours.
    assert uptime([(now - 7200, "connected"), (now - 3600, "disconnected")], now) == (0.5, 7200.0)
    # Connected since before the window began: all of the window, and no more.
    assert uptime([(now - 3 * WINDOW, "connected")], now) == (1.0, WINDOW)
    # A repeat of the same state does not change the figure.
    assert uptime([(now - 100, "connected"), (now - 50, "connected")], now) == (1.0, 100.0)


async def test_history_loads_stored_transitions_then_appends_live_ones(
    start_daemon: StartDaemon, configured: Config
) -> None:
    await start_daemon(cfg=configured)
    app = make_app(configured)
    async with app.run_test(size=(100, 40)) as pilot:
        await until(pilot, lambda: app.link.online)
        screen = await open_settings(pilot, "echo")
        history = screen.query_one(ConnectionHistory)
        await until(pilot, lambda: history.loaded)
        assert [t[2] for t in history.transitions] == ["connecting", "connected"]
        text = str(history.render())
        assert "uptime" in text and "EchoBot#0001" in text

        client = await Client.connect(configured.socket_path, client="test")
        try:
            await client.request(
                "plugins.update_settings", name="echo", settings={"prefix": "Live"}
            )
        finally:
            await client.close()
        await until(
            pilot,
            lambda: (
                [t[2] for t in history.transitions][-1:] == ["connected"]
                and len(history.transitions) == 5
            ),
        )
        assert [t[2] for t in history.transitions] == [
            "connecting",
            "connected",
            "stopped",
            "connecting",
            "connected",
        ]
        assert "LiveBot#0001" in str(history.render())
