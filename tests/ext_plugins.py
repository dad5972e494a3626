"""Plugins that a real `harness run` subprocess loads the way it loads any third-party plugin:
through the ``harness.plugins`` entry-point group, from a dist-info written into a temp dir
(see :func:`install`)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from harness.plugin import Plugin, PluginContext


class Hang(Plugin):
    """Blocks the whole event loop with ``time.sleep`` (as a buggy plugin would) when the file
    named by ``$HANG_TRIGGER`` appears; it holds the seconds to block. Before blocking it writes
    ``<trigger>.blocked`` with the wall-clock time the block ends."""

    name = "hang"
    version = "0.1"

    async def start(self, ctx: PluginContext) -> None:
        ctx.create_task(self._watch(Path(os.environ["HANG_TRIGGER"])), name="watch")
        await ctx.set_connection("connected", username="Hang#1")

    async def _watch(self, trigger: Path) -> None:
        while not trigger.exists():  # noqa: ASYNC110 - a file, not an event, is the trigger
            await asyncio.sleep(0.02)
        seconds = float(trigger.read_text())
        until = time.time() + seconds
        Path(f"{trigger}.blocked").write_text(repr(until))
        time.sleep(seconds)  # noqa: ASYNC251 - the point: a hung event loop


def install(site: Path, **plugins: str) -> Path:
    """Write a dist-info under ``site`` whose entry points name ``plugins`` (name ->
    ``module:Class``); put ``site`` on PYTHONPATH and the daemon discovers them."""
    info = site / "harness_test_plugins-0.1.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: harness-test-plugins\nVersion: 0.1\n"
    )
    lines = ["[harness.plugins]", *(f"{name} = {target}" for name, target in plugins.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return site


class Beat(Plugin):
    """Connects at once (with the round trip ``$CONNECT_MS`` measured at connect, when set)
    and, when ``$BEAT_MS`` is set, publishes live heartbeat health with that latency every
    0.1 s, as a gateway plugin does with each heartbeat ACK."""

    name = "beat"
    version = "0.1"

    async def start(self, ctx: PluginContext) -> None:
        at_connect = os.environ.get("CONNECT_MS")
        await ctx.set_connection(
            "connected", username="Beat#1", latency_ms=float(at_connect) if at_connect else None
        )
        if latency := os.environ.get("BEAT_MS"):
            ctx.create_task(self._beat(ctx, float(latency)), name="beat")

    async def _beat(self, ctx: PluginContext, latency: float) -> None:
        from harness.protocol import Health

        while True:
            ctx.publish_health(Health(latency_ms=latency))
            await asyncio.sleep(0.1)

    async def stop(self, ctx: PluginContext) -> None:
        await ctx.set_connection("stopped")


class Fill(Plugin):
    """Fills storage when the file named by ``$FILL_TRIGGER`` appears (the daemon runs with
    ``HARNESS_DB_MAX_PAGES``, so the cap is what fills), as a busy plugin on a full disk would:
    events of ever smaller size until one is no longer stored, then ``$FILL_PULSES`` (default 5)
    ``test:pulse`` events, all published unstored; then ``<trigger>.done`` holds the last
    pulse's seq. A daemon started again without the cap has room again."""

    name = "fill"
    version = "0.1"

    async def start(self, ctx: PluginContext) -> None:
        if trigger := os.environ.get("FILL_TRIGGER"):
            ctx.create_task(self._watch(ctx, Path(trigger)), name="watch")
        await ctx.set_connection("connected", username="Fill#1")

    async def _watch(self, ctx: PluginContext, trigger: Path) -> None:
        while not trigger.exists():  # noqa: ASYNC110 - a file, not an event, is the trigger
            await asyncio.sleep(0.02)
        recorder = ctx._recorder  # the event itself says whether it was stored
        full = False
        for size in (4000, 1000, 250, 60, 1):
            for _ in range(1000):
                if not (await recorder.record("test:filler", {"x": "f" * size})).persisted:
                    full = True
                    break
            if full:
                break
        last = 0
        for n in range(int(os.environ.get("FILL_PULSES", "5"))):
            event = await recorder.record("test:pulse", {"n": n})
            assert not event.persisted, "the cap did not hold"
            last = event.seq
        Path(f"{trigger}.done").write_text(str(last))

    async def stop(self, ctx: PluginContext) -> None:
        await ctx.set_connection("stopped")


class Slow(Plugin):
    """Takes as long to stop as the test wants, with the event loop running all along: its
    stop writes ``$SLOW_DIR/stopping`` and waits (asleep, not blocking) for
    ``$SLOW_DIR/release``."""

    name = "slow"
    version = "0.1"

    async def start(self, ctx: PluginContext) -> None:
        await ctx.set_connection("connected", username="Slow#1")

    async def stop(self, ctx: PluginContext) -> None:
        where = Path(os.environ["SLOW_DIR"])
        (where / "stopping").write_text("")
        while not (where / "release").exists():  # noqa: ASYNC110 - a file is the trigger
            await asyncio.sleep(0.02)
        await ctx.set_connection("stopped")
