"""Seed, then stream: stored state is on screen before any event, and with the daemon down."""

from __future__ import annotations

from harness.config import Config
from tests.conftest import StartDaemon
from tests.tui.conftest import make_app, open_settings, screen_text, until
from tui.widgets.connection_status import ConnectionStatus


async def test_stored_state_shows_before_any_event(
    start_daemon: StartDaemon, configured: Config
) -> None:
    """Echo is connected before the app starts and stays quiet: the indicator can only have
    got "Connected as EchoBot#0001" from the SQLite seed, not from a streamed event."""
    await start_daemon(cfg=configured)
    app = make_app(configured, plugin="echo")
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.link.online)
        status = app.screen.query_one(ConnectionStatus)
        await until(pilot, lambda: "Connected as EchoBot#0001" in status.text)
        assert app.stream.events_received == 0
        assert app.stream.seeds == 1
        assert "▲ daemon online" in screen_text(app)


async def test_offline_with_database_shows_last_known_state(
    start_daemon: StartDaemon, configured: Config
) -> None:
    """The daemon ran and stopped: the app still opens, shows the stored "stopped" state as
    last known, and says the daemon is offline."""
    daemon = await start_daemon(cfg=configured)
    await daemon.stop()
    app = make_app(configured)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: "echo" in app.plugins and app.link.changed_at > 0)
        assert not app.link.online
        await until(pilot, lambda: "■ stopped" in screen_text(app))
        text = screen_text(app)
        assert "▼ daemon offline" in text
        assert "last known state" in text
        await open_settings(pilot, "echo")
        status = app.screen.query_one(ConnectionStatus)
        await until(pilot, lambda: "Stopped" in status.text)
        assert "daemon offline — last known" in status.text
        assert status.has_class("-stale")
        # No schema was ever seen in this session: the form is replaced by a note.
        assert "has not seen this plugin's settings schema" in screen_text(app)


async def test_no_database_yet(config: Config) -> None:
    app = make_app(config)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: not app.link.database and app.link.changed_at > 0)
        await until(pilot, lambda: "No database yet" in screen_text(app))
        assert "▼ daemon offline" in screen_text(app)
        assert not config.database_path.exists()  # the TUI never creates it
