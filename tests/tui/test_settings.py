"""The settings screen: saving, inline errors (ours and the daemon's), secrets, enable/disable."""

from __future__ import annotations

from textual.widget import Widget
from textual.widgets import Input, Static

from harness.client import Client
from harness.config import Config
from tests.conftest import StartDaemon
from tests.tui.conftest import TOKEN, make_app, screen_text, until
from tui.app import HarnessApp
from tui.screens.confirm import ConfirmScreen
from tui.screens.settings import SettingsScreen
from tui.widgets.connection_status import ConnectionStatus
from tui.widgets.setting_field import SettingRow


def row(app: HarnessApp, name: str) -> SettingRow:
    return app.screen.query_one(f"#field-{name}", SettingRow)


def error_text(app: HarnessApp, name: str) -> str:
    error = row(app, name).query_one("#error", Static)
    return str(error.render()) if error.has_class("-shown") else ""


async def ready_form(app: HarnessApp, pilot: object) -> SettingsScreen:
    screen = app.screen
    assert isinstance(screen, SettingsScreen)
    await until(pilot, lambda: screen.form is not None and screen.form.ready)  # type: ignore[arg-type]
    return screen


async def test_save_reaches_the_daemon_and_sends_only_changes(
    start_daemon: StartDaemon, configured: Config
) -> None:
    await start_daemon(cfg=configured)
    app = make_app(configured, plugin="echo")
    async with (
        app.run_test(size=(100, 30)) as pilot,
        await Client.connect(configured.socket_path) as other,
    ):
        await until(pilot, lambda: app.link.online)
        await ready_form(app, pilot)
        assert app.screen.form is not None  # type: ignore[attr-defined]
        # Another client changes "greeting"; we change "prefix" only: theirs must survive.
        prefix = row(app, "prefix").query_one(Input)
        prefix.value = "Saved"
        assert app.screen.form.collect() == ({"prefix": "Saved"}, {})  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        await until(
            pilot,
            lambda: (
                app.plugins["echo"].info is not None
                and app.plugins["echo"].info.settings["prefix"] == "Saved"
            ),
        )
        info = await other.request("plugins.get", name="echo")
        assert info["settings"]["prefix"] == "Saved"
        assert info["settings"]["retries"] == 3
        status = app.screen.query_one(ConnectionStatus)
        await until(pilot, lambda: "Connected as SavedBot#0001" in status.text)
        assert not app.screen.form.dirty  # type: ignore[attr-defined]


async def test_daemon_validation_error_shows_inline(
    start_daemon: StartDaemon, configured: Config
) -> None:
    """retries=99 passes the client's integer check; the daemon's range check rejects it and
    its per-field message is shown under the field. Nothing is stored."""
    await start_daemon(cfg=configured)
    app = make_app(configured, plugin="echo")
    async with (
        app.run_test(size=(100, 30)) as pilot,
        await Client.connect(configured.socket_path) as other,
    ):
        await until(pilot, lambda: app.link.online)
        await ready_form(app, pilot)
        row(app, "retries").query_one(Input).value = "99"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "must be at most 10" in error_text(app, "retries"))
        assert "✖ must be at most 10" in screen_text(app)
        info = await other.request("plugins.get", name="echo")
        assert info["settings"]["retries"] == 3
        # Fixing the value clears the error as soon as the user types.
        row(app, "retries").query_one(Input).value = "5"
        await until(pilot, lambda: error_text(app, "retries") == "")


async def test_client_side_integer_check_sends_nothing(
    start_daemon: StartDaemon, configured: Config
) -> None:
    await start_daemon(cfg=configured)
    app = make_app(configured, plugin="echo")
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.link.online)
        screen = await ready_form(app, pilot)
        row(app, "retries").query_one(Input).value = "-"
        row(app, "prefix").query_one(Input).value = "NotSent"
        events_before = app.stream.events_received
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "must be a whole number" in error_text(app, "retries"))
        assert screen.form is not None and screen.form.dirty
        await pilot.pause(0.2)
        assert app.stream.events_received == events_before  # no settings event: not sent


async def test_secret_is_write_only_and_never_drawn(
    start_daemon: StartDaemon, config: Config
) -> None:
    """Echo starts without a token (not configured). Typing one and saving connects it; the
    token is never on screen, neither while typed nor after saving."""
    await start_daemon(cfg=config)
    app = make_app(config, plugin="echo")
    async with (
        app.run_test(size=(100, 30)) as pilot,
        await Client.connect(config.socket_path) as other,
    ):
        await until(pilot, lambda: app.link.online)
        await ready_form(app, pilot)
        status = app.screen.query_one(ConnectionStatus)
        await until(pilot, lambda: "Not configured" in status.text)
        # Read off the screen once laid out: the form is ready (mounted) a layout before the
        # compositor has placed its rows, which the screen's next update does.
        await until(pilot, lambda: "○ not set" in screen_text(app))
        secret_input = row(app, "token").query_one(Input)
        assert secret_input.password
        secret_input.focus()
        await pilot.press(*TOKEN)
        assert secret_input.value == TOKEN
        await pilot.pause(0.05)
        assert TOKEN not in screen_text(app)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "Connected as EchoBot#0001" in status.text)
        await until(pilot, lambda: "● set" in screen_text(app))
        assert secret_input.value == ""  # the typed secret does not linger in the widget
        info = await other.request("plugins.get", name="echo")
        assert info["settings"]["token"] == {"set": True}
        for text in (screen_text(app), app.export_screenshot()):
            assert TOKEN not in text
        # Nor in any widget's own rendering, visible or scrolled away.
        for widget in app.screen.walk_children(Widget):
            assert TOKEN not in str(widget.render())

        # "Clear" unsets it: the plugin is not configured again.
        await pilot.click("#field-token #clear")
        await until(pilot, lambda: "will be cleared" in screen_text(app))
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "Not configured" in status.text)
        info = await other.request("plugins.get", name="echo")
        assert info["settings"]["token"] == {"set": False}


async def test_enable_disable_asks_first(start_daemon: StartDaemon, configured: Config) -> None:
    await start_daemon(cfg=configured)
    app = make_app(configured, plugin="echo")
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.link.online)
        settings = await ready_form(app, pilot)
        status = settings.query_one(ConnectionStatus)
        await until(pilot, lambda: "Connected as" in status.text)

        await pilot.press("ctrl+t")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "Disable echo?" in screen_text(app)
        await pilot.press("n")  # cancelled: nothing changes
        await until(pilot, lambda: app.screen is settings)
        await pilot.pause(0.1)
        assert app.plugins["echo"].enabled

        await pilot.press("ctrl+t")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: not app.plugins["echo"].enabled)
        await until(pilot, lambda: "Stopped" in status.text)
        assert app.plugins["echo"].status == "disabled"
        await until(pilot, lambda: "✘ disabled" in screen_text(app))

        await pilot.press("ctrl+t")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: "Connected as" in status.text)
        assert app.plugins["echo"].enabled


async def test_form_is_read_only_while_offline(
    start_daemon: StartDaemon, configured: Config
) -> None:
    daemon = await start_daemon(cfg=configured)
    app = make_app(configured, plugin="echo")
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.link.online)
        screen = await ready_form(app, pilot)
        await daemon.stop()
        await until(pilot, lambda: not app.link.online)
        assert screen.form is not None and screen.form.read_only
        assert all(r.control is not None and r.control.disabled for r in screen.query(SettingRow))
        assert "Read-only: the daemon is offline" in screen_text(app)
        # The cached schema keeps the form (values last seen), the secret still only "set".
        assert "● set" in screen_text(app)
