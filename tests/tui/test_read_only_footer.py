"""A read-only context's settings screen offers no save and no enable/disable: the footer left
out ^s and ^t, and the Save and Disable buttons are disabled, with a note that says why (they
were offered, and refused when used). A real daemon, the real app through its pilot."""

from __future__ import annotations

import msgspec
import pytest
from textual.widgets import Button, Static

from harness import transport
from harness.config import Config
from tests.conftest import StartDaemon
from tests.sample_plugins import Echo
from tests.tui.conftest import make_app, screen_text, until
from tui.widgets.footer import KeysFooter


@pytest.mark.parametrize("read_only", [True, False])
async def test_a_read_only_context_offers_no_save_or_toggle(
    start_daemon: StartDaemon, config: Config, read_only: bool
) -> None:
    cfg = msgspec.structs.replace(config, plugins={"echo": {"token": "t0ken-ro"}})
    await start_daemon(plugins={"echo": Echo}, cfg=cfg)
    target = transport.Target(name="prod", socket=cfg.socket_path, read_only=read_only)
    app = make_app(cfg, target=target)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.link.online and "echo" in app.plugins)
        screen = app.open_settings("echo")
        await until(pilot, lambda: app.screen is screen and bool(screen.query("#save")))
        await until(pilot, lambda: screen.form is not None and screen.form.ready)
        footer = screen.query_one(KeysFooter)
        save, toggle = screen.query_one("#save", Button), screen.query_one("#toggle", Button)

        def shown() -> str:
            return screen_text(app).splitlines()[-1]  # the footer's line as drawn

        note = screen.query_one("#form-note", Static)
        if read_only:
            await until(pilot, lambda: "refused" in str(note.render()))
            keys = {key.display for key in footer._keys().keys}
            assert "^s" not in keys and "^t" not in keys
            assert "^s" not in shown() and "^t" not in shown()
            assert save.disabled and toggle.disabled
            assert "prod" in str(note.render())
        else:  # the same screen in a context that may change things offers both
            await until(pilot, lambda: "^s" in shown() and "^t" in shown())
            assert not save.disabled and not toggle.disabled
