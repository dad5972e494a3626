"""The CLI says what the TUI says about a live link: an overdue heartbeat ACK (live health,
never stored, so the daemon answers with its latest) and a fatal close code said once. A real
daemon, the real discord.py against the emulator, the CLI as a subprocess in a pipe."""

# ruff: noqa: F811  (pytest fixtures imported from test_discord_plugin are parameters here)
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from harness.config import Config
from harness.discord_emulator import LocalDiscordGateway
from tests.conftest import HANG_GUARD, run_cli, subprocess_env
from tests.test_discord_plugin import (  # noqa: F401  (fixtures used by name)
    TOKEN,
    _restore_discord_urls,
    discord_config,
    start,
    watcher,
)


@pytest.fixture
async def gateway() -> AsyncIterator[LocalDiscordGateway]:
    # The warning shows 0.3 s after an unanswered beat; a whole interval after it the link is
    # a zombie (closed, resumed) and the warning ends: 6 s leaves a CLI time to ask.
    async with LocalDiscordGateway(tokens={TOKEN}, heartbeat_interval=6_000) as gw:
        yield gw


async def cli(cfg: Config, state_dir: Path, *args: str) -> str:
    result = await run_cli(*args, "--socket", str(cfg.socket_path), env=subprocess_env(state_dir))
    assert result.rc == 0, result
    return result.out


async def test_an_overdue_heartbeat_ack_is_shown_by_status_and_plugins_show(
    config: Config,
    state_dir: Path,
    gateway: LocalDiscordGateway,
    start_daemon: Any,
    watcher: Any,
    connect: Any,
) -> None:
    cfg = discord_config(config, gateway, max_backoff=2)
    await start(start_daemon, cfg)
    w = await watcher(cfg)
    await w.state("connected")
    health = await connect(cfg)
    await health.subscribe(["discord:health"])
    await gateway.pause_heartbeat_acks(True)
    # Each unanswered beat warns, then ends in a resume; ask during a warning. Under load a
    # CLI can be slower than one warning lasts, so the next warning is another chance.
    for _ in range(4):
        async with asyncio.timeout(HANG_GUARD):
            while "ack_overdue_since" not in (await health.next_event()).data:
                pass
        shown, table = await asyncio.gather(
            cli(cfg, state_dir, "plugins", "show", "discord"), cli(cfg, state_dir, "status")
        )
        if "no heartbeat reply" in shown and "no heartbeat reply" in table:
            break
    line = next(x for x in shown.splitlines() if x.strip().startswith("connection"))
    assert "connected as" in line and "· no heartbeat reply for " in line, line
    assert "no heartbeat reply for " in table, table


async def test_a_fatal_close_code_is_said_once(
    config: Config, state_dir: Path, gateway: LocalDiscordGateway, start_daemon: Any, watcher: Any
) -> None:
    cfg = discord_config(config, gateway, max_backoff=2)
    await start(start_daemon, cfg)
    w = await watcher(cfg)
    await w.state("connected")
    await gateway.drop(4004)
    await w.state("error")
    for out in (
        await cli(cfg, state_dir, "status"),
        await cli(cfg, state_dir, "plugins", "show", "discord"),
    ):
        assert "token rejected (4004)" in out, out
        assert out.count("4004") == 1, out


def test_the_daemon_keeps_a_health_while_a_part_is_still_connected() -> None:
    """What `status` answers with (harness.live_health): one shard down leaves the others' live
    health standing; every part down ends it, as a plain connection's drop does."""
    import msgspec

    from harness.live_health import LiveHealth
    from harness.protocol import Connection, Event, Health, Part, PartHealth

    live = LiveHealth()

    def publish(name: str, data: object) -> None:
        live.deliver(b"", Event(seq=1, ts=0.0, event=name, data=msgspec.to_builtins(data)))

    health = Health(parts=[PartHealth(id="0", ack_overdue_since=5.0), PartHealth(id="1")])
    publish("bot:health", health)
    degraded = Connection(
        state="connecting",
        parts=[Part(id="0", state="connected"), Part(id="1", state="disconnected")],
    )
    publish("bot:connection", degraded)
    assert live.of("bot") == health
    down = Connection(
        state="disconnected",
        parts=[Part(id="0", state="disconnected"), Part(id="1", state="disconnected")],
    )
    publish("bot:connection", down)
    assert live.of("bot") is None
