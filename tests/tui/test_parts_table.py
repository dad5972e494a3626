"""The parts table: a connection of many parts shown generically under the indicator, at
80x24, scrolling for 100+ parts, one row updated in place when one part changes."""

from __future__ import annotations

from harness.client import Client
from harness.config import Config
from harness.plugin import Plugin, PluginContext
from harness.protocol import Health, Part, PartHealth, SettingField
from tests.conftest import StartDaemon
from tests.tui.conftest import make_app, open_settings, screen_text, until
from tui.widgets.connection_status import ConnectionStatus
from tui.widgets.parts_table import PartsTable

PARTS = 120


class Pool(Plugin):
    """A plugin whose connection is PARTS parts; ``down`` names one that is disconnected."""

    name = "pool"
    settings_schema = (SettingField("down", "integer", default=-1, minimum=-1, maximum=PARTS),)

    async def start(self, ctx: PluginContext) -> None:
        down = ctx.settings["down"]
        parts = [
            Part(
                id=str(n),
                state="disconnected" if n == down else "connected",
                since=1_700_000_000.0,
                reason="peer went away" if n == down else None,
                latency_ms=None if n == down else 40.0 + n % 7,
                guilds=n * 3,
            )
            for n in range(PARTS)
        ]
        up = PARTS - (0 <= down)
        state = "connected" if up == PARTS else "connecting"
        reason = None if up == PARTS else f"degraded: {up}/{PARTS} parts connected"
        await ctx.set_connection(state, reason=reason, username="Pool#1", parts=parts)

    async def apply_settings(self, ctx: PluginContext, changed: frozenset[str]) -> bool:
        await self.start(ctx)
        return True


async def test_many_parts_scroll_at_80x24_and_one_change_updates_one_row(
    start_daemon: StartDaemon, config: Config
) -> None:
    await start_daemon(plugins={"pool": Pool}, cfg=config)
    app = make_app(config, plugin="pool")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_settings(pilot, "pool")
        table = screen.query_one(PartsTable)
        await until(pilot, lambda: table.row_count == PARTS)
        assert table.display and table.border_title == f"{PARTS}/{PARTS} parts connected"
        assert table.max_scroll_y > 0, "120 rows must scroll inside the table"
        rows = table.row_texts()
        assert rows[5][:2] == ("5", "● connected") and rows[5][3:5] == ("45 ms", "15")
        # Drawn once laid out with the table shown (a condition: the layout follows the rows).
        await until(pilot, lambda: "part" in screen_text(app) and "● connected" in screen_text(app))
        status = screen.query_one(ConnectionStatus)
        assert "Connected as Pool#1" in status.text

        async with await Client.connect(config.socket_path) as other:
            await other.request("plugins.update_settings", name="pool", settings={"down": 77})
        await until(pilot, lambda: table.row_texts()[77][1] == "○ disconnected")
        assert table.row_texts()[77][-1] == "peer went away"
        assert table.row_count == PARTS and table.border_title.startswith(
            f"{PARTS - 1}/{PARTS} parts connected"
        )
        # Scrolled to the end, the last part is on screen.
        table.scroll_end(animate=False)
        await pilot.pause()
        assert str(PARTS - 1) in screen_text(app)


async def test_no_parts_no_table(start_daemon: StartDaemon, configured: Config) -> None:
    await start_daemon(cfg=configured)
    app = make_app(configured, plugin="echo")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_settings(pilot, "echo")
        status = screen.query_one(ConnectionStatus)
        await until(pilot, lambda: "Connected" in status.text)
        table = screen.query_one(PartsTable)
        assert not table.has_class("-has-parts") and table.row_count == 0


async def test_one_part_changed_draws_one_row_again(
    start_daemon: StartDaemon, config: Config
) -> None:
    """Parts on screen: a change to one part builds that part's line again and no other (the
    rest are kept, even when the title above changes and the table is repainted)."""
    await start_daemon(plugins={"pool": Pool}, cfg=config)
    app = make_app(config, plugin="pool")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_settings(pilot, "pool")
        table = screen.query_one(PartsTable)
        await until(pilot, lambda: table.row_count == PARTS and table.rows_drawn >= 8)
        await pilot.pause()
        drawn = table.rows_drawn
        async with await Client.connect(config.socket_path) as other:
            await other.request("plugins.update_settings", name="pool", settings={"down": 3})
            await until(pilot, lambda: "peer went away" in screen_text(app))
            assert table.rows_drawn == drawn + 1
            # Part 3 back up, part 4 down: two rows change, two lines are built.
            await other.request("plugins.update_settings", name="pool", settings={"down": 4})
            await until(pilot, lambda: table.row_texts()[4][1] == "○ disconnected")
            await until(pilot, lambda: table.rows_drawn >= drawn + 3)
            await pilot.pause()
            assert table.rows_drawn == drawn + 3
            assert table.row_texts()[3][1] == "● connected"


class LivePool(Plugin):
    """Four connected parts whose stored latency is 40 ms; ``live`` is published as each
    part's live heartbeat round-trip, and the connection carries an identify budget."""

    name = "livepool"
    settings_schema = (SettingField("live", "integer", default=0, minimum=0, maximum=10_000),)

    async def start(self, ctx: PluginContext) -> None:
        parts = [
            Part(id=str(n), state="connected", since=1_700_000_000.0, latency_ms=40.0)
            for n in range(4)
        ]
        budget = {"total": 1000, "remaining": 988, "resets_at": 4_000_000_000.0}
        await ctx.set_connection(
            "connected", username="Pool#1", parts=parts, extra={"identify_budget": budget}
        )
        await self.apply_settings(ctx, frozenset({"live"}))

    async def apply_settings(self, ctx: PluginContext, changed: frozenset[str]) -> bool:
        live = ctx.settings["live"]
        if live:
            ctx.publish_health(
                Health(
                    latency_ms=float(live),
                    parts=[PartHealth(id=str(n), latency_ms=float(live + n)) for n in range(4)],
                )
            )
        return True


async def test_each_parts_latency_follows_the_live_health_and_the_budget_is_under_the_table(
    start_daemon: StartDaemon, config: Config
) -> None:
    await start_daemon(plugins={"livepool": LivePool}, cfg=config)
    app = make_app(config, plugin="livepool")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_settings(pilot, "livepool")
        table = screen.query_one(PartsTable)
        await until(pilot, lambda: table.row_count == 4)
        assert [row[3] for row in table.row_texts()] == ["40 ms"] * 4
        # The count; no countdown while no session waits for the reset (test_part_health).
        assert table.border_title == "4/4 parts connected"
        assert table.border_subtitle == "identifies left: 988/1000"
        async with await Client.connect(config.socket_path) as other:
            await other.request("plugins.update_settings", name="livepool", settings={"live": 70})
            await until(pilot, lambda: table.row_texts()[3][3] == "73 ms")
        assert [row[3] for row in table.row_texts()] == ["70 ms", "71 ms", "72 ms", "73 ms"]
