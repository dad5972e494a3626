"""A stop always ends, whatever a plugin's tasks do with their cancellation.

The suite hung in a teardown (test_a_client_identifying_too_fast_gets_invalid_session): a
Discord shard task lost its cancel to Python 3.11's ``asyncio.wait_for`` (a cancel landing as
the awaited connect completed) and went on retrying, and the host waited for it forever. The
plugin no longer uses wait_for; these tests hold the host to its bound with tasks that lose
their cancellation on purpose: once (re-cancelled, a clean stop) or always (left behind, the
stop ends all the same and says so)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any, ClassVar

from harness.config import Config
from harness.plugin import Plugin, PluginContext
from harness.protocol import SettingField
from tests.conftest import StartDaemon, deadline


class Deaf(Plugin):
    """Its task swallows cancellation: ``once``, or ``always`` until the test releases it."""

    name = "deaf"
    version = "0.1"
    settings_schema = (
        SettingField("swallow", "select", default="once", options=("once", "always")),
    )
    release: ClassVar[asyncio.Event]
    swallowed: ClassVar[int] = 0
    task: ClassVar[asyncio.Task[Any] | None] = None

    async def start(self, ctx: PluginContext) -> None:
        always = ctx.settings["swallow"] == "always"

        async def work() -> None:
            while not Deaf.release.is_set():
                try:
                    await asyncio.sleep(0.01)
                except asyncio.CancelledError:
                    Deaf.swallowed += 1
                    if not always and Deaf.swallowed > 1:
                        raise
                    asyncio.current_task().uncancel()  # type: ignore[union-attr]

        Deaf.task = ctx.create_task(work(), name="work")
        await ctx.set_connection("connected", username="Deaf#1")


def deaf_config(config: Config, swallow: str) -> Config:
    import msgspec

    daemon = msgspec.structs.replace(config.daemon, stop_timeout=0.2)
    return msgspec.structs.replace(config, daemon=daemon, plugins={"deaf": {"swallow": swallow}})


async def released() -> None:
    Deaf.release.set()
    if Deaf.task is not None:
        async with deadline("the deaf task's exit", 5.0):
            await asyncio.wait([Deaf.task])


async def test_a_task_that_loses_one_cancel_is_cancelled_again_and_the_stop_is_clean(
    start_daemon: StartDaemon, connect: Any, config: Config
) -> None:
    Deaf.release, Deaf.swallowed, Deaf.task = asyncio.Event(), 0, None
    cfg = deaf_config(config, "once")
    await start_daemon(plugins={"deaf": Deaf}, cfg=cfg)
    client = await connect(cfg)
    try:
        async with deadline("a stop of a plugin whose task lost one cancel", 10.0):
            info = await client.request("plugins.set_enabled", name="deaf", enabled=False)
    finally:
        await released()
    assert Deaf.swallowed == 2  # lost the first cancel, took the second
    assert Deaf.task is not None and Deaf.task.done()
    assert info["status"] == "disabled", info
    assert info["metadata"]["connection"]["state"] == "stopped"


async def test_a_task_deaf_to_cancellation_is_left_behind_and_the_stop_ends(
    start_daemon: StartDaemon, connect: Any, config: Config
) -> None:
    Deaf.release, Deaf.swallowed, Deaf.task = asyncio.Event(), 0, None
    cfg = deaf_config(config, "always")
    daemon = await start_daemon(plugins={"deaf": Deaf}, cfg=cfg)
    client = await connect(cfg)
    try:
        async with deadline("a stop of a plugin whose task ignores cancellation", 10.0):
            info = await client.request("plugins.set_enabled", name="deaf", enabled=False)
        assert Deaf.swallowed >= 2  # cancelled again, in vain
        assert info["status"] == "error"
        assert info["reason"] == "stopped; task(s) deaf:work ignored cancellation"
        assert info["metadata"]["connection"]["state"] == "stopped"
        # The daemon's own stop is bounded the same way (its lock wait + the cancel wait).
        async with deadline("Daemon.stop() with a deaf plugin task", 10.0):
            await daemon.stop()
    finally:
        await released()


def test_nothing_in_harness_awaits_with_asyncio_wait_for() -> None:
    # Python 3.11's wait_for can lose a cancellation (the hang above); asyncio.timeout cannot.
    # Every package of harness/: plugins, the daemon, clients, transport, emulator, benchmarks.
    package = Path(__file__).resolve().parent.parent / "harness"
    found = {
        f"{path.relative_to(package)}:{n}"
        for path in package.rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\basyncio\.wait_for\(", line)
    }
    assert found == set(), f"use `async with asyncio.timeout(...)` instead: {sorted(found)}"
