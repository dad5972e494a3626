"""The alerts listing of a plugin that is flapping but connected right now: the time it shows
is when it came back, not when it last broke (read as "connected since", in `harness alerts`
and the TUI's alerts screen). A real in-process daemon, the Manual plugin driven by the test."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from harness.client import Client
from harness.config import Config
from tests.conftest import StartDaemon, next_matching
from tests.test_alerts import alerts_config, rule, start_manual

Connect = Callable[..., Awaitable[Client]]


async def test_a_flapping_plugin_that_is_up_is_listed_with_the_time_it_came_back(
    start_daemon: StartDaemon, config: Config, connect: Connect
) -> None:
    cfg = alerts_config(
        config,
        targets=["json://127.0.0.1:9/nobody"],  # nothing is sent here that the test reads
        rules={"down": rule(**{"for": "1h", "flap_changes": 3, "flap_quiet": "1h"})},
    )
    _, ctx = await start_manual(start_daemon, cfg)
    client = await connect()
    await client.subscribe(["alert:*", "manual:connection"])
    for _ in range(3):
        await ctx.set_connection("disconnected", reason="flap")
        await ctx.set_connection("connected")
    await next_matching(client, lambda e: e.event == "alert:flapping")
    await ctx.set_connection("disconnected", reason="flap")
    down = await next_matching(
        client, lambda e: e.event == "manual:connection" and e.data["state"] == "disconnected"
    )
    await ctx.set_connection("connected")
    up = await next_matching(
        client, lambda e: e.event == "manual:connection" and e.data["state"] == "connected"
    )
    listing = await client.request("alerts.list")
    (active,) = listing["active"]
    assert (active["status"], active["state"]) == ("flapping", "connected")
    # Before: the time it last broke, shown as "FLAPPING manual connected since <then>".
    assert active["since"] == up.data["since"] != down.data["since"]
