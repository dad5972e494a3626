"""A benchmark plugin that floods events through the plugin API, so they are persisted exactly
as a real plugin's are, inside a real ``harness run`` process.

It is not registered with the package: :func:`daemon_env` writes a throw-away ``.dist-info``
that declares it under the ``harness.plugins`` entry-point group and returns the environment
for a ``harness run`` subprocess that sees it (the same discovery any third-party plugin uses).
A flood starts when its settings change (``plugins.update_settings`` with a new ``go``)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from harness.plugin import Plugin, PluginContext
from harness.protocol import SettingField

PAYLOAD = {"state": "connected", "username": "HarnessBot#1234", "since": 1764100000.0}


class FloodPlugin(Plugin):
    name = "flood"
    version = "1.0"
    description = "benchmark: broadcasts flood:tick events on request"
    settings_schema = (
        SettingField("count", "integer", default=0, minimum=0, maximum=100_000_000),
        SettingField("rate", "integer", default=0, minimum=0, maximum=10_000_000),  # 0: flat out
        SettingField("go", "integer", default=0),
    )

    async def start(self, ctx: PluginContext) -> None:
        await ctx.set_connection("connected", username="Flood#0")

    async def apply_settings(self, ctx: PluginContext, changed: frozenset[str]) -> bool:
        if "go" in changed and ctx.settings["count"]:
            ctx.create_task(_flood(ctx, ctx.settings["count"], ctx.settings["rate"]), name="flood")
        return True


async def _flood(ctx: PluginContext, count: int, rate: int) -> None:
    start = time.monotonic()
    for n in range(1, count + 1):
        # Stamped before the call: the latency measured includes the commit.
        await ctx.broadcast("tick", {**PAYLOAD, "n": n, "t": time.monotonic()})
        if rate:
            ahead = start + n / rate - time.monotonic()
            if ahead > 0.0005:
                await asyncio.sleep(ahead)
    await ctx.broadcast("done", {"n": count})


def daemon_env(directory: Path) -> dict[str, str]:
    """Declare the plugin under ``directory`` and return an environment that finds it."""
    info = directory / "harness_bench_flood-1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: harness-bench-flood\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(
        "[harness.plugins]\nflood = harness.bench.flood:FloodPlugin\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(directory), env.get("PYTHONPATH", "")) if p)
    return env


def daemon_command(config: Path) -> list[str]:
    return [sys.executable, "-m", "harness", "run", "--config", str(config)]
