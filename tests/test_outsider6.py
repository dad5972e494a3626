"""What an operator saw from outside (the sixth outsider's pass), each through the public
interface: a real daemon on a real SQLite file and the real socket."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Awaitable, Callable
from typing import ClassVar

import msgspec
from textual.widgets import Input

from harness import render
from harness.client import Client
from harness.config import Config
from harness.plugin import Plugin, PluginContext
from harness.protocol import STORAGE_EVENT, Connection, Health
from tests.conftest import StartDaemon, next_matching
from tests.test_storage_faults import Link, fill_up
from tests.tui.conftest import make_app, screen_text, until
from tui.screens.fleet import FleetScreen
from tui.screens.settings import SettingsScreen
from tui.widgets.setting_field import SettingRow

Connect = Callable[..., Awaitable[Client]]


async def test_answers_tell_the_live_connection_while_storage_fails(
    start_daemon: StartDaemon, connect: Connect
) -> None:
    """Seen in tmux: with the database's disk full and the gateway killed, the TUI said
    "○ Disconnected" but `harness status` and `plugins show` said "● connected ... since" the
    last state that was stored: the request answers read metadata.connection from the file.
    They must tell what was published (the plugin's current state), as the stream does; and
    once space is back, the same."""
    Link.contexts.clear()
    daemon = await start_daemon(plugins={"link": Link})
    (ctx,) = Link.contexts
    await fill_up(daemon)  # failing from here on (it asserts so)
    client: Client = await connect()
    await client.subscribe([STORAGE_EVENT])  # from now: the filling's own flaps are behind

    live = msgspec.to_builtins(await ctx.set_connection("disconnected", reason="gateway gone"))
    status = await client.request("status")
    assert status["storage"]["ok"] is False
    (plugin,) = [p for p in status["plugins"] if p["name"] == "link"]
    assert plugin["connection"] == live
    (listed,) = [p for p in await client.request("plugins.list") if p["name"] == "link"]
    assert listed["metadata"]["connection"] == live
    got = await client.request("plugins.get", name="link")
    assert got["metadata"]["connection"] == live
    # What a remote TUI and the fleet read first (they have no database of their own).
    snapshot = await client.request("connections.snapshot")
    (snapped,) = [p for p in snapshot["plugins"] if p["name"] == "link"]
    assert snapped["metadata"]["connection"] == live

    # Space comes back: the stored state catches up, and the answers say the same.
    assert daemon.store is not None
    await daemon.store.limit_pages(1_000_000)
    await next_matching(client, lambda e: e.data.get("state") == "recovered")
    got = await client.request("plugins.get", name="link")
    assert got["metadata"]["connection"] == live


def test_an_overdue_heartbeat_does_not_bring_back_the_latency_of_the_connect() -> None:
    """Seen in tmux with the gateway SIGSTOPped: "● Connected as HarnessBot#1234 · 1 ms", then,
    as the ACK went overdue, "· 12 ms" (the round trip measured when the link came up, minutes
    before) beside "no heartbeat reply for 3 s". While a beat is unanswered the live health has
    no round trip; the one stored with the state is old and must not stand in as current."""
    t = 1_700_000_000.0
    conn = Connection(state="connected", seq=4, since=t, username="Bot#1", latency_ms=12.0)
    overdue = Health(ack_overdue_since=t + 100, heartbeat_interval=5.0)
    now = t + 103
    assert render.headline(conn, now, overdue) == "● Connected as Bot#1"
    assert "12 ms" not in render.short(conn, now, dt.UTC, overdue)
    assert "no heartbeat reply for 3 s" in render.short(conn, now, dt.UTC, overdue)
    assert "12 ms" not in render.line(conn, now, dt.UTC, health=overdue)
    # Without live health (a daemon that publishes none) the stored figure is all there is.
    assert render.headline(conn, now).endswith("· 12 ms")
    assert render.headline(conn, now, Health(latency_ms=1.0)).endswith("· 1 ms")


class Beat(Plugin):
    """Connected with the round trip of its first beat; the test publishes its live health."""

    name = "beat"
    version = "0.1"
    contexts: ClassVar[list[PluginContext]] = []

    async def start(self, ctx: PluginContext) -> None:
        Beat.contexts.append(ctx)
        await ctx.set_connection("connected", username="Beat#0001", latency_ms=12.0)

    async def stop(self, ctx: PluginContext) -> None:
        await ctx.set_connection("stopped")


async def test_fleet_rows_follow_the_live_health_and_count_down(
    start_daemon: StartDaemon, config: Config
) -> None:
    """Seen in tmux on `harness-tui --fleet`: the watched context's indicator said "· 1 ms",
    then "no heartbeat reply for 4 s", while its fleet row kept "· 12 ms" (the round trip of
    the first beat, minutes old) and said nothing until the link was dropped; and a fleet row's
    "retrying in 5 s" stood still for the whole five seconds (the indicator counted down)."""
    Beat.contexts.clear()
    await start_daemon(plugins={"beat": Beat})
    (ctx,) = Beat.contexts
    cfg = msgspec.structs.replace(config, contexts={"live": {"socket": str(config.socket_path)}})
    app = make_app(cfg, fleet=True)
    # 100 columns: at 80 the overdue words of a connected row are cut (a known defect).
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, FleetScreen))
        screen = app.screen
        assert isinstance(screen, FleetScreen)
        await until(pilot, lambda: "beat" in screen.members["live"].connections)
        await until(pilot, lambda: "Beat#0001 · 12 ms" in screen_text(app))

        ctx.publish_health(Health(latency_ms=1.0, heartbeat_interval=5.0))
        await until(pilot, lambda: "Beat#0001 · 1 ms" in screen_text(app))

        ctx.publish_health(Health(ack_overdue_since=time.time() - 3, heartbeat_interval=5.0))
        await until(pilot, lambda: "no heartbeat reply for" in screen_text(app))
        assert "12 ms" not in screen_text(app)

        # Dropped: the health ends with the link, and the countdown ticks on its own.
        await ctx.set_connection(
            "disconnected", reason="gone", attempt=2, retry_at=time.time() + 30
        )
        # Each figure stands for one second only: a loaded machine may never draw "30 s" (or
        # "29 s"), so the test reads the first one drawn and waits for any later one.
        counting = re.compile(r"retrying in (\d+) s")

        def left() -> int | None:
            found = counting.search(screen_text(app))
            return int(found.group(1)) if found else None

        await until(pilot, lambda: left() is not None)
        first = left()
        assert first is not None and first <= 30
        assert "heartbeat" not in screen_text(app)

        def ticked() -> bool:
            n = left()
            return (n is not None and n < first) or "retrying now" in screen_text(app)

        await until(pilot, ticked)


async def test_a_refused_field_is_named_and_brought_into_view_at_80x24(
    start_daemon: StartDaemon, config: Config
) -> None:
    """Seen in tmux at 80x24: a value the daemon refused in the advanced group ("Max retry
    delay" -5, a 5,000-character status) gave a toast "Not saved: 1 field(s) need fixing." (or
    "the daemon rejected 1 field(s).") while the field's error line sat below the fold: which
    field, and why, took scrolling to find. The toast names the field and the reason, and the
    first field in error is scrolled into view."""
    cfg = msgspec.structs.replace(config, plugins={"echo": {"token": "tok-outsider6"}})
    await start_daemon(cfg=cfg)
    app = make_app(cfg, plugin="echo")
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.link.online)
        screen = app.screen
        assert isinstance(screen, SettingsScreen)
        await until(pilot, lambda: screen.form is not None and screen.form.ready)
        greeting = screen.query_one("#field-greeting", SettingRow).query_one(Input)
        greeting.value = "g" * 5000  # over the daemon's 4 KiB bound for text
        await pilot.press("ctrl+s")

        def toasts() -> list[str]:
            return [str(n.message) for n in app._notifications]

        await until(pilot, lambda: any("greeting: too long" in t for t in toasts()))
        await until(pilot, lambda: "✖ too long" in screen_text(app))

        # The client's own check: the same words, before anything is sent.
        greeting.value = "hi"
        retries = screen.query_one("#field-retries", SettingRow).query_one(Input)
        retries.value = "many"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: any("retries: " in t for t in toasts()))
        await until(pilot, lambda: "✖ " in screen_text(app))


async def test_the_storage_warning_keeps_its_time_at_80_columns(
    start_daemon: StartDaemon, config: Config
) -> None:
    """Seen in tmux at 80x24 on a plugin's settings screen with the disk full: the header read
    "harness > Plugins > discord ▲ online · ⚠ storage failing: disk full since" and the time
    was cut off (worse in the demo, whose header also names its keys). The warning is read
    whole; the breadcrumb's extras give way."""
    cfg = msgspec.structs.replace(config, plugins={"echo": {"token": "tok-outsider6"}})
    daemon = await start_daemon(cfg=cfg)
    app = make_app(cfg, plugin="echo", demo_control="http://127.0.0.1:9/")
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.link.online)
        await fill_up(daemon)
        await until(pilot, lambda: "storage failing" in screen_text(app))
        await until(
            pilot,
            lambda: re.search(r"disk full since \d\d:\d\d", screen_text(app).splitlines()[0]),
        )
        assert "Plugins > echo" in screen_text(app).splitlines()[0]
