"""A read-only context's alerts screen offers no silence to start or end: `s` opened the
dialog, the operator typed a plugin, a duration and a reason, and Silence was then refused
("read-only context"); `x` was refused the same way, and the command palette offered "Silence
plugin NAME" and "Disable plugin NAME" (which asked first, then was refused). As on the
settings screen (whose ^s and ^t a read-only context leaves out), none is offered. A real
daemon, the real app through its pilot."""

from __future__ import annotations

import msgspec
import pytest

from harness import transport
from harness.config import Config
from tests.conftest import StartDaemon
from tests.sample_plugins import Echo
from tests.tui.conftest import make_app, screen_text, until
from tui.commands import HarnessCommands
from tui.screens.alerts import AlertsScreen, SilenceDialog


@pytest.mark.parametrize("read_only", [True, False])
async def test_a_read_only_context_offers_no_silence(
    start_daemon: StartDaemon, config: Config, read_only: bool
) -> None:
    cfg = msgspec.structs.replace(config, plugins={"echo": {"token": "t0ken-ro"}})
    await start_daemon(plugins={"echo": Echo}, cfg=cfg)
    target = transport.Target(name="prod", socket=cfg.socket_path, read_only=read_only)
    app = make_app(cfg, target=target)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.link.online and "echo" in app.plugins)
        app.action_show_alerts()
        await until(pilot, lambda: isinstance(app.screen, AlertsScreen))
        screen = app.screen

        def footer() -> str:
            lines = screen_text(app).splitlines()  # none before the first frame
            return lines[-1] if lines else ""

        await until(pilot, lambda: "r Refresh" in footer())
        # The command palette's entries: no silence, enable or disable either.
        titles = [title for title, _, _ in HarnessCommands(screen)._commands()]
        writes = [t for t in titles if t.startswith(("Silence", "Disable", "Enable"))]
        assert "Open plugin echo" in titles
        assert bool(writes) is not read_only, titles
        await pilot.press("s")
        await pilot.pause()
        if read_only:
            assert "s Silence" not in footer() and "x End silence" not in footer(), footer()
            assert not isinstance(app.screen, SilenceDialog)  # before: the dialog opened
            # Not only not yet open one frame later: refused where Textual looks (a press of
            # `s` runs the action only if the screen's check_action allows it).
            assert screen.check_action("silence", ()) is not True
            assert app.screen is screen
        else:  # a context that may change things offers both, and s opens the dialog
            assert "s Silence" in footer() and "x End silence" in footer(), footer()
            await until(pilot, lambda: isinstance(app.screen, SilenceDialog))
