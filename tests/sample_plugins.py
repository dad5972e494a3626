"""Small real plugins for tests: they follow the same contract as any third-party plugin."""

from __future__ import annotations

import asyncio

from harness.plugin import Plugin, PluginContext
from harness.protocol import SettingField


class Echo(Plugin):
    """Connects at once as ``{prefix}Bot``; settings of every type; applies ``greeting`` live."""

    name = "echo"
    version = "1.2.3"
    description = "A test plugin with one field of each type."
    settings_schema = (
        SettingField("token", "secret", required=True, description="API token"),
        SettingField("prefix", "string", default="Echo", description="Name prefix"),
        SettingField("retries", "integer", default=3, minimum=0, maximum=10),
        SettingField("verbose", "boolean", default=False),
        SettingField("mode", "select", default="fast", options=("fast", "safe")),
        SettingField("greeting", "string", default="hi", advanced=True),
    )

    async def start(self, ctx: PluginContext) -> None:
        if not ctx.settings["token"]:
            await ctx.set_connection("not_configured", reason="no token")
            return
        await ctx.set_connection("connecting")
        await ctx.set_connection("connected", username=f"{ctx.settings['prefix']}Bot#0001")

    async def stop(self, ctx: PluginContext) -> None:
        await ctx.set_connection("stopped")

    async def apply_settings(self, ctx: PluginContext, changed: frozenset[str]) -> bool:
        return changed <= {"greeting"}


class Crashy(Plugin):
    """Raises in start."""

    name = "crashy"
    version = "0.1"

    async def start(self, ctx: PluginContext) -> None:
        await ctx.set_connection("connecting")
        raise RuntimeError("boom at start")


class Forgetful(Plugin):
    """Connects, and never reports a stop: the host must record ``stopped`` for it."""

    name = "forgetful"
    version = "0.1"

    async def start(self, ctx: PluginContext) -> None:
        await ctx.set_connection("connected", username="Forgetful#1")


class Stuck(Plugin):
    """Its stop never returns; its background task fails when told to."""

    name = "stuck"
    version = "0.1"
    settings_schema = (SettingField("fail", "boolean", default=False),)

    async def start(self, ctx: PluginContext) -> None:
        async def work() -> None:
            if ctx.settings["fail"]:
                raise ValueError("task gave up")
            await asyncio.Event().wait()

        ctx.create_task(work(), name="work")

    async def stop(self, ctx: PluginContext) -> None:
        await asyncio.Event().wait()

    async def apply_settings(self, ctx: PluginContext, changed: frozenset[str]) -> bool:
        return False
