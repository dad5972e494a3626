"""One part's overdue heartbeat ACK on that part's row, and the identify budget's "resets in"
counting down while new sessions wait for it: the real app through its pilot, against a real
in-process daemon on a real socket, the live health taken from the daemon's answer when the TUI
connects (health is never stored) and ordered against the stream by its place in it."""

# ruff: noqa: F811  (pytest fixtures imported from test_discord_shards are parameters here)
from __future__ import annotations

import re
import time
from typing import Any, ClassVar

from harness.client import Client
from harness.config import Config
from harness.discord_emulator import LocalDiscordGateway
from harness.plugin import Plugin, PluginContext
from harness.protocol import Health, Part, PartHealth, SettingField
from tests.conftest import StartDaemon
from tests.test_discord_plugin import discord_config
from tests.test_discord_shards import (  # noqa: F401  (fixtures used by name)
    FastShards,
    _restore_discord_urls,
    gateway,
)
from tests.tui.conftest import make_app, open_settings, screen_text, until
from tui.widgets.connection_status import ConnectionStatus
from tui.widgets.parts_table import PartsTable

BUDGET_AT_FLOOR = {"total": 100, "remaining": 5, "floor": 5, "max_concurrency": 1}


class Shards(Plugin):
    """Four parts; ``held`` makes the last two wait for the identify budget's reset."""

    name = "shards"
    settings_schema = (SettingField("held", "boolean", default=False),)
    instance: ClassVar[Shards | None] = None

    def __init__(self) -> None:
        self.ctx: PluginContext | None = None
        Shards.instance = self

    async def start(self, ctx: PluginContext) -> None:
        self.ctx = ctx
        await self.connect(held=bool(ctx.settings["held"]))

    async def connect(self, *, held: bool = False, since: float = 1_700_000_000.0) -> None:
        assert self.ctx is not None
        now = time.time()
        resets_at = now + 60.0
        parts = [Part(id=str(n), state="connected", since=since, latency_ms=40.0) for n in range(4)]
        budget: dict[str, Any] = {"total": 100, "remaining": 50, "floor": 5, "resets_at": resets_at}
        if held:
            budget = {**BUDGET_AT_FLOOR, "resets_at": resets_at}
            for n in (2, 3):
                parts[n] = Part(
                    id=str(n),
                    state="disconnected",
                    since=now,
                    reason="identify budget at its floor",
                    retry_at=resets_at,
                )
        state = "connecting" if held else "connected"
        await self.ctx.set_connection(
            state, username="Shards#1", parts=parts, extra={"identify_budget": budget}
        )

    def overdue(self, part: str, since: float) -> None:
        """Publish live health: ``part``'s ACK overdue since ``since``, the others fine."""
        assert self.ctx is not None
        self.ctx.publish_health(
            Health(
                latency_ms=40.0,
                ack_overdue_since=since,
                parts=[
                    PartHealth(
                        id=str(n),
                        latency_ms=40.0,
                        ack_overdue_since=since if str(n) == part else None,
                    )
                    for n in range(4)
                ],
            )
        )

    async def apply_settings(self, ctx: PluginContext, changed: frozenset[str]) -> bool:
        await self.connect(held=bool(ctx.settings["held"]))
        return True


def details(table: PartsTable) -> list[str]:
    return [row[-1] for row in table.row_texts()]


async def test_an_overdue_ack_already_late_when_the_tui_connects_is_on_that_parts_row(
    start_daemon: StartDaemon, config: Config
) -> None:
    await start_daemon(plugins={"shards": Shards}, cfg=config)
    plugin = Shards.instance
    assert plugin is not None
    # Published before the TUI exists, and never again: only the daemon's answer has it.
    plugin.overdue("2", time.time() - 14.0)
    app = make_app(config, plugin="shards")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_settings(pilot, "shards")
        table = screen.query_one(PartsTable)
        await until(pilot, lambda: table.row_count == 4 and details(table)[2] != "")
        row = details(table)
        # 14 s, or more under load (22 s seen with the machine loaded 17 times over).
        late = re.fullmatch(r"no heartbeat reply: (\d+) s", row[2])
        assert late and int(late[1]) >= 14, row
        assert row[0] == row[1] == row[3] == ""
        assert table.get_row("2")[1] == "● connected"  # the state is the part's own
        status = screen.query_one(ConnectionStatus)
        assert "no heartbeat reply for " in status.text and "(part 2)" in status.text
        # The age grows with no event: a redraw is booked for the second it reads differently.
        first = row[2]
        await until(pilot, lambda: details(table)[2] != first)
        assert details(table)[2].startswith("no heartbeat reply: ")
        await until(pilot, lambda: "no heartbeat reply: " in screen_text(app))

        # The ACK comes: the row is plain again and nothing is left to age.
        assert plugin.ctx is not None
        plugin.ctx.publish_health(Health(latency_ms=41.0, parts=[PartHealth(id="2")]))
        await until(pilot, lambda: details(table)[2] == "")
        assert table._tick is None


async def test_one_parts_overdue_ack_shows_while_another_part_is_down(
    start_daemon: StartDaemon, config: Config
) -> None:
    """Degraded (two parts wait), the parts still up keep their live health."""
    await start_daemon(plugins={"shards": Shards}, cfg=config)
    plugin = Shards.instance
    assert plugin is not None
    app = make_app(config, plugin="shards")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_settings(pilot, "shards")
        table = screen.query_one(PartsTable)
        await until(pilot, lambda: table.row_count == 4)
        async with await Client.connect(config.socket_path) as other:
            await other.request("plugins.update_settings", name="shards", settings={"held": True})
        await until(pilot, lambda: table.get_row("3")[1] == "○ disconnected")
        plugin.overdue("1", time.time() - 3.0)
        await until(pilot, lambda: details(table)[1].startswith("no heartbeat reply: "))
        assert not any("heartbeat" in d for i, d in enumerate(details(table)) if i != 1)


async def test_health_read_before_the_answer_is_not_applied_over_it(
    start_daemon: StartDaemon, config: Config
) -> None:
    """Live health has no seq of its own: a health event that reached the TUI before the
    daemon's plugins.list answer is older than the health in that answer. Here a part's ACK was
    overdue, then every link dropped (which ends the health) and came back (new links, no
    warning yet), all before the answer was written: the old warning must not be shown on the
    new link, though the connection events that ended it are stale to the TUI's seed."""
    daemon = await start_daemon(plugins={"shards": Shards}, cfg=config)
    plugin = Shards.instance
    assert plugin is not None and daemon.server is not None
    answer = daemon.server.handlers["plugins.list"]
    flapped = False

    async def flap_then_answer(params: Any) -> Any:
        # Inside the daemon, between the TUI's subscribe and the answer to its plugins.list:
        # every event published here is written to the TUI before the answer.
        nonlocal flapped
        if not flapped:
            flapped = True
            plugin.overdue("2", time.time() - 3.0)
            assert plugin.ctx is not None
            down = [Part(id=str(n), state="disconnected", reason="lost") for n in range(4)]
            await plugin.ctx.set_connection("disconnected", reason="lost", parts=down)
            await plugin.connect(since=time.time())  # new links: no warning on them
        return await answer(params)

    daemon.server.handlers["plugins.list"] = flap_then_answer
    app = make_app(config, plugin="shards")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_settings(pilot, "shards")
        table = screen.query_one(PartsTable)
        await until(pilot, lambda: flapped and table.row_count == 4 and app.link.online)
        await until(pilot, lambda: app.stream.events_received >= 2)
        await pilot.pause(0.2)
        assert details(table) == ["", "", "", ""], details(table)
        assert "heartbeat" not in screen.query_one(ConnectionStatus).text
        # A warning published after the answer is news, and shown.
        plugin.overdue("0", time.time() - 2.0)
        await until(pilot, lambda: details(table)[0].startswith("no heartbeat reply: "))


async def test_the_identify_budgets_reset_counts_down_only_while_sessions_wait_for_it(
    start_daemon: StartDaemon, config: Config
) -> None:
    await start_daemon(plugins={"shards": Shards}, cfg=config)
    app = make_app(config, plugin="shards")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_settings(pilot, "shards")
        table = screen.query_one(PartsTable)
        await until(pilot, lambda: table.row_count == 4)
        # Above the floor: the count alone, and nothing on the table ages, so no timer.
        assert table.border_title == "4/4 parts connected"
        assert table.border_subtitle == "identifies left: 50/100"
        assert table._tick is None
        async with await Client.connect(config.socket_path) as other:
            await other.request("plugins.update_settings", name="shards", settings={"held": True})
        await until(pilot, lambda: "resets in" in str(table.border_subtitle))
        assert table.border_title == "2/4 parts connected · 2 disconnected"
        title = str(table.border_subtitle)
        assert title.startswith("identifies left: 5/100, resets in ")
        assert title.endswith(("resets in 60 s", "resets in 59 s", "resets in 58 s")), title
        # Counting down with no event: redrawn the moment the shown second changes.
        await until(pilot, lambda: str(table.border_subtitle) != title)
        assert "resets in 5" in str(table.border_subtitle)
        await until(pilot, lambda: "resets in" in screen_text(app))
        # Another screen in front (the events screen): the next timed redraw finds the table
        # hidden and books none, so nothing wakes the app for it; back, it catches up.
        await pilot.press("e")
        await until(pilot, lambda: table._asleep)
        assert table._tick is None
        ticks, shown = table.ticks, str(table.border_subtitle)
        app.switch_mode("plugins")
        await until(pilot, lambda: app.screen is screen and table._tick is not None)
        await until(pilot, lambda: str(table.border_subtitle) != shown)
        await until(pilot, lambda: table.ticks > ticks)  # counting down again
        assert "resets in" in screen_text(app)
        # Back above the floor: the countdown goes, and its timer with it.
        async with await Client.connect(config.socket_path) as other:
            await other.request("plugins.update_settings", name="shards", settings={"held": False})
        await until(pilot, lambda: "resets in" not in str(table.border_subtitle))
        assert table._tick is None


async def test_the_real_bots_late_shard_is_shown_on_its_row(
    start_daemon: StartDaemon, config: Config, gateway: LocalDiscordGateway
) -> None:
    """End to end: the local gateway stops answering shard 1's heartbeats; the real plugin
    (discord.py, our supervisor per shard) says so in its live health, and the table shows it
    on shard 1's row alone, then clears it when the late link is dropped and resumed."""
    gateway.heartbeat_interval = 4_000  # the warning 0.3 s after a beat, the zombie at 4 s
    cfg = discord_config(config, gateway, shards="4")
    await start_daemon(plugins={"discord": FastShards}, cfg=cfg)
    app = make_app(cfg, plugin="discord")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_settings(pilot, "discord")
        table = screen.query_one(PartsTable)
        up = "4/4 parts connected"
        await until(pilot, lambda: table.border_title == up)
        assert str(table.border_subtitle).startswith("identifies left: ")
        await gateway.pause_heartbeat_acks(True, shard=1)
        await until(pilot, lambda: details(table)[1].startswith("no heartbeat reply: "), 20)
        assert [d for i, d in enumerate(details(table)) if i != 1] == ["", "", ""]
        assert "(part 1)" in screen.query_one(ConnectionStatus).text
        await gateway.pause_heartbeat_acks(False, shard=1)
        await until(pilot, lambda: details(table)[1] == "" and table.border_title == up, 20)
