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


class EarlyFail(Plugin):
    """Its background task fails while ``start`` is still running (start awaits after
    creating it): the host must still end up marking the plugin ``error``."""

    name = "earlyfail"
    version = "0.1"

    async def start(self, ctx: PluginContext) -> None:
        async def work() -> None:
            raise ValueError("task died young")

        ctx.create_task(work(), name="work")
        await ctx.set_connection("connecting")
        await asyncio.sleep(0)  # let the task run (and fail) before start returns
        await ctx.set_connection("connected", username="Early#1")


class Leaky(Plugin):
    """Careless with its secret: logs it, and fails to start with it in the message. The
    daemon's log output must mask it all the same."""

    name = "leaky"
    version = "0.1"
    settings_schema = (SettingField("api_key", "secret"),)

    async def start(self, ctx: PluginContext) -> None:
        key = ctx.settings["api_key"]
        ctx.logger.warning("starting with api_key=%s", key)
        if key:
            raise RuntimeError(f"the service rejected key {key}")


class Manual(Plugin):
    """Does nothing by itself: a test drives its context (``Manual.ctx``) directly."""

    name = "manual"
    version = "0.1"
    ctx: PluginContext | None = None

    async def start(self, ctx: PluginContext) -> None:
        type(self).ctx = ctx
