"""What an operator saw from outside (the sixth outsider's pass), each through the public
interface: a real daemon on a real SQLite file and the real socket."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable

import msgspec

from harness import render
from harness.client import Client
from harness.protocol import STORAGE_EVENT, Connection, Health
from tests.conftest import StartDaemon, next_matching
from tests.test_storage_faults import Link, fill_up

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
    await next_matching(client, lambda e: e.data.get("state") == "recovered", timeout=10)
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
