"""A save that changes nothing says so (found by an outsider's pass): emptying an integer
field already at its default was toasted "Saved echo: retries." while the daemon's
plugin:settings event said changed=[]."""

from __future__ import annotations

import asyncio

from textual.widgets import Input

from harness.client import Client
from harness.config import Config
from tests.conftest import HANG_GUARD, StartDaemon
from tests.tui.conftest import make_app, until
from tests.tui.test_settings import ready_form, row


async def test_emptying_a_field_at_its_default_says_nothing_changed(
    start_daemon: StartDaemon, configured: Config
) -> None:
    await start_daemon(cfg=configured)
    app = make_app(configured, plugin="echo")
    async with (
        app.run_test(size=(100, 30)) as pilot,
        await Client.connect(configured.socket_path) as other,
    ):
        await other.subscribe(["plugin:settings"])
        await until(pilot, lambda: app.link.online)
        screen = await ready_form(app, pilot)
        assert screen.form is not None
        retries = row(app, "retries").query_one(Input)
        assert retries.value == "3"  # the default, shown as the value
        retries.value = ""
        assert screen.form.collect() == ({"retries": None}, {})
        await pilot.press("ctrl+s")
        async with asyncio.timeout(HANG_GUARD):
            event = await other.next_event()
        assert event.event == "plugin:settings" and event.data["changed"] == [], event

        def messages() -> list[str]:
            return [n.message for n in app._notifications]

        await until(pilot, lambda: any("echo" in m for m in messages()))
        assert "Nothing changed for echo: retries already had that value." in messages()
        assert not any(m.startswith("Saved") for m in messages()), messages()

        # A real change is still reported as saved.
        retries.value = "5"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: any(m.startswith("Saved echo: retries.") for m in messages()))
