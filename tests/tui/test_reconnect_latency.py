"""After a reconnect without a daemon restart the TUI shows the bot's current latency at once:
the TUI's own reconnect (the daemon's live health is current, and its ``plugins.list`` answer
carries it) and the bot's reconnect to the gateway (its first heartbeat is timed). Only a
latency heard before a daemon *restart* is not current (tests/tui/test_restart_latency.py).
The real bot (discord.py) against the local gateway, a real daemon, the app through its pilot."""

# ruff: noqa: F811  (pytest fixtures imported from test_discord_plugin are parameters here)
from __future__ import annotations

import re
from typing import Any, ClassVar

from harness.config import Config
from harness.discord_emulator import LocalDiscordGateway
from harness.plugin import Plugin, PluginContext
from harness.plugins.discord import DiscordPlugin
from harness.protocol import Health
from tests.conftest import StartDaemon
from tests.test_discord_plugin import (  # noqa: F401  (fixtures used by name)
    _restore_discord_urls,
    discord_config,
    gateway,
)
from tests.tui.conftest import make_app, open_settings, screen_text, until
from tui.app import HarnessApp
from tui.widgets.connection_status import ConnectionStatus

LATENCY = re.compile(r"HarnessBot#\d+ · \d+ ms")


def _latency(app: HarnessApp) -> float | None:
    health = app.plugins["discord"].health
    return health.latency_ms if health is not None else None


def latency_shown(app: HarnessApp) -> bool:
    return bool(LATENCY.search(screen_text(app)))


async def test_a_plain_reconnect_shows_the_current_latency_at_once(
    start_daemon: StartDaemon, config: Config, gateway: LocalDiscordGateway
) -> None:
    """The health the TUI holds at the moment its new stream goes online (before any event of
    that stream is handled, so before any later heartbeat could bring one) is the daemon's."""
    gateway.heartbeat_interval = 60_000  # the latency is the first heartbeat's, after HELLO
    cfg = discord_config(config, gateway)
    await start_daemon(plugins={"discord": DiscordPlugin}, cfg=cfg)
    app = make_app(cfg)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.link.online and latency_shown(app))
        stream = app.stream
        at_online: list[object] = []
        set_online = stream.set_online

        def noted(*args: Any, **kwargs: Any) -> None:
            at_online.append(app.plugins["discord"].health)
            set_online(*args, **kwargs)

        stream.set_online = noted  # type: ignore[method-assign]
        client = stream.client
        assert client is not None
        await client.close()  # the connection drops; the daemon runs on, not restarted
        await until(pilot, lambda: bool(at_online) and app.link.online)
        health = at_online[0]
        assert isinstance(health, Health) and health.latency_ms is not None, at_online
        await pilot.pause()
        assert latency_shown(app), screen_text(app)


async def test_the_bots_own_reconnect_shows_its_latency_at_once(
    start_daemon: StartDaemon, config: Config, gateway: LocalDiscordGateway
) -> None:
    """The gateway drops the bot; it resumes on the same daemon. The heartbeat discord.py
    sends right after HELLO is timed, so the new link has its latency within a round trip,
    not a whole heartbeat interval later (a minute here: no keep-alive beat comes during the
    test, so only that first heartbeat can give one). Before: none until the next beat."""
    gateway.heartbeat_interval = 60_000
    cfg = discord_config(config, gateway)
    await start_daemon(plugins={"discord": DiscordPlugin}, cfg=cfg)
    app = make_app(cfg)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_settings(pilot, "discord")
        status = screen.query_one(ConnectionStatus)
        await until(pilot, lambda: LATENCY.search(status.text) is not None)
        await gateway.drop(4000)
        await until(pilot, lambda: "reconnected" in status.text)
        await until(pilot, lambda: LATENCY.search(status.text) is not None)
        # The live health too (the plugins table's latency): the first heartbeat's health
        # may come before READY, while the bot is still connecting; it is kept for then.
        await until(pilot, lambda: _latency(app) is not None)


class Linking(Plugin):
    """Connects when told; the test drives its connection and its health."""

    name = "linking"
    instance: ClassVar[Linking | None] = None

    def __init__(self) -> None:
        self.ctx: PluginContext | None = None
        Linking.instance = self

    async def start(self, ctx: PluginContext) -> None:
        self.ctx = ctx
        await ctx.set_connection("connecting")


async def test_a_health_heard_before_connected_is_shown_once_connected(
    start_daemon: StartDaemon, config: Config
) -> None:
    """As the daemon keeps it (harness.live_health): a heartbeat's health published while the
    link is still connecting shows once it is connected; a later non-connected state ends
    it. Before, the TUI dropped it, and a bot whose first heartbeat came before READY showed
    no latency until the next heartbeat (a whole interval)."""
    await start_daemon(plugins={"linking": Linking}, cfg=config)
    plugin = Linking.instance
    assert plugin is not None and plugin.ctx is not None
    ctx = plugin.ctx
    app = make_app(config)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.link.online and "linking" in app.plugins)
        ctx.publish_health(Health(latency_ms=7.0))
        await ctx.set_connection("connected", username="Link#1")
        await until(pilot, lambda: "Link#1 · 7 ms" in screen_text(app))
        health = app.plugins["linking"].health
        assert health is not None and health.latency_ms == 7.0
        # Heard before a drop: ended by it, not shown when connected again.
        ctx.publish_health(Health(latency_ms=9.0))
        await ctx.set_connection("disconnected", reason="x")
        await ctx.set_connection("connected", username="Link#2")
        await until(pilot, lambda: "Link#2" in screen_text(app))
        await pilot.pause()
        assert app.plugins["linking"].health is None
        assert "ms" not in screen_text(app).split("Link#2")[1].split("\n")[0]
