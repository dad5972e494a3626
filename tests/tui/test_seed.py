"""Seed, then stream: stored state is on screen before any event, and with the daemon down."""

from __future__ import annotations

import sqlite3

from harness.config import Config
from tests.conftest import StartDaemon
from tests.tui.conftest import TOKEN, make_app, open_settings, screen_text, until
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
        # The daemon described the plugin in its metadata: a read-only form of the last-known
        # values, the secret only as "set", and the version, all without the daemon.
        await until(pilot, lambda: "Read-only" in screen_text(app) and "● set" in screen_text(app))
        text = screen_text(app)
        assert TOKEN not in text
        assert "1.2.3" in text and "EchoBot" not in text.split("connection")[0]
        assert app.plugins["echo"].info is not None


async def test_offline_without_a_stored_description_explains_the_missing_form(
    start_daemon: StartDaemon, configured: Config
) -> None:
    """A database written by a daemon that did not describe its plugins: no schema, so no
    form, and a note that says why."""
    daemon = await start_daemon(cfg=configured)
    await daemon.stop()
    with sqlite3.connect(configured.database_path) as db:
        db.execute("UPDATE plugin_config SET metadata = json_remove(metadata, '$.plugin')")
    app = make_app(configured)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: "echo" in app.plugins and app.link.changed_at > 0)
        await open_settings(pilot, "echo")
        await until(pilot, lambda: "has not seen this plugin's settings schema" in screen_text(app))


async def test_no_database_yet(config: Config) -> None:
    app = make_app(config)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: not app.link.database and app.link.changed_at > 0)
        await until(pilot, lambda: "No database yet" in screen_text(app))
        assert "▼ daemon offline" in screen_text(app)
        assert not config.database_path.exists()  # the TUI never creates it
