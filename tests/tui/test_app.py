"""The app shell: command line, key bindings, command palette, demo controls, navigation."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from harness.config import Config
from tests.conftest import StartDaemon
from tests.tui.conftest import make_app, screen_text, until
from tui import app as app_module
from tui.screens.confirm import ConfirmScreen
from tui.screens.events import EventsScreen
from tui.screens.plugins import PluginsScreen
from tui.screens.settings import SettingsScreen


def test_bad_config_exits_2_before_textual(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[daemon]\nsocket = 3\n")
    ran: list[object] = []
    monkeypatch.setattr(app_module.HarnessApp, "run", lambda self: ran.append(self))
    assert app_module.main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "harness-tui:" in err and "daemon.socket" in err
    assert not ran
    # $HARNESS_CONFIG is honoured the same way.
    monkeypatch.setenv("HARNESS_CONFIG", str(tmp_path / "missing.toml"))
    assert app_module.main([]) == 2
    assert "cannot read the config file" in capsys.readouterr().err


def test_help_and_options(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        app_module.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--config", "--plugin", "--demo-control"):
        assert option in out
    monkeypatch.delenv("HARNESS_CONFIG", raising=False)
    monkeypatch.setenv("HARNESS_TUI_ANY_TERMINAL", "1")  # no terminal under pytest; run is stubbed
    built: list[app_module.HarnessApp] = []
    monkeypatch.setattr(app_module.HarnessApp, "run", lambda self: built.append(self))
    assert app_module.main(["--plugin", "echo", "--demo-control", "http://127.0.0.1:1"]) == 0
    assert built[0].start_plugin == "echo"
    assert built[0].demo_control == "http://127.0.0.1:1"


def test_main_records_sigterm_only_while_the_app_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """harness-tui records SIGTERM and SIGHUP (harness.hangup) while its app runs, and puts the
    handlers from before back after it: main() called in a process that goes on (this one)
    left a handler that only records, and the process no longer ended on `kill`."""
    import signal

    monkeypatch.delenv("HARNESS_CONFIG", raising=False)
    monkeypatch.setenv("HARNESS_TUI_ANY_TERMINAL", "1")
    during: list[object] = []
    monkeypatch.setattr(
        app_module.HarnessApp, "run", lambda self: during.append(signal.getsignal(signal.SIGTERM))
    )
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)
    assert app_module.main(["--plugin", "echo"]) == 0
    assert during and during[0] not in before  # recorded while it ran
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)) == before


def test_no_heavy_imports() -> None:
    """The TUI never pulls in discord.py or aiohttp (start-up time, and no reason to)."""
    import subprocess
    import sys

    code = (
        "import sys, tui.app; print(sorted(m for m in ('discord', 'aiohttp') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(Path.cwd())},
    )
    assert out.stdout.strip() == "[]"


async def test_navigation_and_palette(start_daemon: StartDaemon, configured: Config) -> None:
    await start_daemon(cfg=configured)
    app = make_app(configured)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.link.online and "echo" in app.plugins)
        assert isinstance(app.screen, PluginsScreen)
        await until(
            pilot,
            lambda: (
                "● connected  since " in screen_text(app) and "EchoBot#0001" in screen_text(app)
            ),
        )
        footer = screen_text(app).splitlines()[-1]
        for key in ("⏎ Settings", "q Quit", "e Events"):
            assert key in footer
        assert "p Plugins" not in footer  # the screen already shown takes no footer room
        assert "Flap" not in footer  # demo keys only with --demo-control
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, SettingsScreen))
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, PluginsScreen))
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, EventsScreen))
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, PluginsScreen))

        # The command palette finds "Open plugin echo".
        await pilot.press("ctrl+p")
        await pilot.press(*"open plugin echo")
        await until(pilot, lambda: "Open plugin echo" in screen_text(app))
        await pilot.press("enter")
        await until(
            pilot, lambda: isinstance(app.screen, SettingsScreen) and app.screen.plugin == "echo"
        )
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, PluginsScreen))
        # The mouse works: clicking the (highlighted) row opens the plugin too.
        await pilot.click("#plugins-table", offset=(3, 1))
        await until(pilot, lambda: isinstance(app.screen, SettingsScreen))
        await pilot.press("escape")
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running)


async def test_demo_controls_post_to_the_gateway(config: Config) -> None:
    """f and o send the gateway's control POSTs (plain asyncio HTTP) and report the result."""
    seen: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        seen.append(request.split(b"\r\n", 1)[0].decode())
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    notes: list[str] = []
    app = make_app(config, stream=False, demo_control=f"http://127.0.0.1:{port}")
    app.notify = lambda message, **kw: notes.append(str(message))  # type: ignore[method-assign]
    async with server, app.run_test(size=(80, 24)) as pilot:
        assert "f Flap connection" in screen_text(app)
        await pilot.press("f")
        await until(pilot, lambda: len(notes) == 1)
        assert seen == ["POST /_control/drop?code=4000 HTTP/1.1"]
        assert "flap sent" in notes[0]
        await pilot.press("o")
        await until(pilot, lambda: len(notes) == 2)
        # One request: after "refuse" the gateway's port takes no second one.
        assert seen[1:] == ["POST /_control/outage?seconds=5&code=4000 HTTP/1.1"]
        assert "outage of 5 s sent" in notes[1]
    # Nobody listening: the failure is reported, not raised.
    app = make_app(config, stream=False, demo_control=f"http://127.0.0.1:{port}")
    app.notify = lambda message, **kw: notes.append(str(message))  # type: ignore[method-assign]
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f")
        await until(pilot, lambda: len(notes) == 3)
        assert "127.0.0.1" in notes[2]


async def test_palette_disable_asks_then_disables(
    start_daemon: StartDaemon, configured: Config
) -> None:
    await start_daemon(cfg=configured)
    app = make_app(configured)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.link.online and "echo" in app.plugins)
        await pilot.press("ctrl+p")
        await pilot.press(*"disable plugin echo")
        await until(pilot, lambda: "Disable plugin echo" in screen_text(app))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: not app.plugins["echo"].enabled)
        assert isinstance(app.screen, SettingsScreen) and app.screen.plugin == "echo"
