"""Events a plugin publishes are held to the stream's 1 MiB frame limit: one that would not
fit is a clear error to the plugin alone, nothing is stored or sent, and the daemon, its
subscribers and later replays carry on (a real daemon, a real socket, real subscribers)."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import msgspec
import pytest

from harness import protocol
from harness.client import Client
from harness.config import Config
from harness.plugin import Plugin, PluginContext
from harness.protocol import MAX_FRAME_BYTES, EventTooLarge, Health
from tests.conftest import StartDaemon, next_matching


class Big(Plugin):
    """Connects, and leaves its context where the test can publish through it."""

    name = "big"
    version = "0.1"
    contexts: ClassVar[list[PluginContext]] = []

    async def start(self, ctx: PluginContext) -> None:
        await ctx.set_connection("connected", username="Big#1")
        Big.contexts.append(ctx)


@pytest.fixture
async def ctx(start_daemon: StartDaemon) -> PluginContext:
    Big.contexts.clear()
    await start_daemon(plugins={"big": Big})
    return Big.contexts[-1]


def largest_blob(name: str) -> str:
    """The longest ``x`` for which ``{"x": x}`` under ``name`` is still accepted."""
    wrapper = len(b'{"x":""}') + len(msgspec.json.encode(name))
    return "a" * (MAX_FRAME_BYTES - protocol.EVENT_FRAME_OVERHEAD - wrapper)


async def test_an_oversized_broadcast_is_refused_to_the_plugin_alone(
    ctx: PluginContext, config: Config
) -> None:
    watcher = await Client.connect(config.socket_path)
    other = await Client.connect(config.socket_path)
    try:
        await watcher.subscribe(["*"])
        await other.subscribe(["big:*"])
        with pytest.raises(EventTooLarge) as refused:
            await ctx.broadcast("blob", {"x": "é" * (MAX_FRAME_BYTES // 2)})  # 2 bytes each
        said = str(refused.value)
        assert "big:blob" in said and "1 MiB" in said and "nothing was stored or sent" in said
        assert "1,048,576" in said and "split" in said

        # The largest event that fits arrives whole, and so does the one after it: neither
        # subscriber was cut off, and nothing of the refused event reached them.
        fits = largest_blob("big:blob")
        await ctx.broadcast("blob", {"x": fits})
        await ctx.broadcast("after", {"n": 1})
        for client in (watcher, other):
            got = await next_matching(client, lambda e: e.event.startswith("big:"))
            assert got.event == "big:blob" and got.data["x"] == fits
            assert len(protocol.encode(got)) - 1 <= MAX_FRAME_BYTES
            after = await next_matching(client, lambda e: e.event.startswith("big:"))
            assert after.event == "big:after"
        status = await other.request("status")
        assert status["plugins"][0]["connection"]["state"] == "connected"
    finally:
        await watcher.close()
        await other.close()

    # The history holds no poisoned frame: a replay from the start reads to the end.
    replayer = await Client.connect(config.socket_path)
    try:
        await replayer.subscribe(["big:*"], since=0)
        names = []
        while True:
            frame = await asyncio.wait_for(replayer.next_frame(), 10)
            if isinstance(frame, protocol.Replayed):
                break
            names.append(frame.event)
        assert names == ["big:connection", "big:blob", "big:after"]
    finally:
        await replayer.close()


async def test_set_connection_and_health_are_held_to_the_same_limit(
    ctx: PluginContext, config: Config
) -> None:
    huge = {"notes": "n" * MAX_FRAME_BYTES}
    with pytest.raises(EventTooLarge, match="big:connection"):
        await ctx.set_connection("connected", extra=huge)
    # Neither the plugin's view nor the stored state took the refused value.
    assert ctx.connection is not None and ctx.connection.extra == {}
    async with await Client.connect(config.socket_path) as client:
        info = await client.request("plugins.get", name="big")
        assert info["metadata"]["connection"].get("extra") is None
        assert info["metadata"]["connection"]["username"] == "Big#1"
    parts = [{"id": str(i) * 200, "latency_ms": 1.0} for i in range(6000)]
    with pytest.raises(EventTooLarge, match="big:health"):
        ctx.publish_health(msgspec.convert({"parts": parts}, Health))
    await ctx.set_connection("connected", reason="still here")  # the plugin carries on
    assert ctx.connection is not None and ctx.connection.reason == "still here"
