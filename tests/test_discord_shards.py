"""Sharding, end to end: the real daemon, the real discord.py (AutoShardedClient state, our
supervisor per shard) and the emulator routing guilds by ``(guild_id >> 22) % shard_count``.
Each shard has its own state in ``parts``; the connection is the aggregate (docs/protocol.md)."""

# ruff: noqa: F811  (pytest fixtures imported from test_discord_plugin are parameters here)
from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from harness import render
from harness.config import Config
from harness.discord_emulator import LocalDiscordGateway
from harness.plugins.discord_shards import IdentifyGate, parse_shards
from harness.protocol import Connection, Part, aggregate_parts
from tests.conftest import run_cli, subprocess_env
from tests.test_discord_plugin import (  # noqa: F401  (fixtures used by name)
    BOT,
    TOKEN,
    FastDiscord,
    Watcher,
    _restore_discord_urls,
    assert_seqs_increase,
    discord_config,
    stored_connection,
    watcher,
)


class FastShards(FastDiscord):
    identify_interval = 0.05  # Discord's 5 s per bucket, shortened


@pytest.fixture
async def gateway() -> AsyncIterator[LocalDiscordGateway]:
    async with LocalDiscordGateway(
        tokens={TOKEN}, guilds=40, max_guilds_per_shard=10, recommended_guilds_per_shard=10
    ) as gw:
        yield gw


async def start(start_daemon: Any, cfg: Config) -> Any:
    return await start_daemon(plugins={"discord": FastShards}, cfg=cfg)


def all_up(n: int) -> Any:
    def check(d: dict[str, Any]) -> bool:
        parts = d.get("parts") or []
        return (
            d["state"] == "connected"
            and len(parts) == n
            and all(p["state"] == "connected" for p in parts)
        )

    return check


async def test_four_shards_connect_then_one_drop_is_degraded_and_resumed(
    config: Config,
    state_dir: Path,
    gateway: LocalDiscordGateway,
    start_daemon: Any,
    watcher: Any,
) -> None:
    cfg = discord_config(config, gateway, shards="4")
    await start(start_daemon, cfg)
    w: Watcher = await watcher(cfg)
    up = await w.until(all_up(4), timeout=20)
    assert up["username"] == BOT
    assert [p["id"] for p in up["parts"]] == ["0", "1", "2", "3"]
    # The emulator routes 40 guilds as (id >> 22) % 4: ten per shard, each shard counted.
    assert [p["guilds"] for p in up["parts"]] == [10, 10, 10, 10]
    assert sorted(s for _, s in gateway.identify_times) == [0, 1, 2, 3]
    assert gateway.shard_connections() == {0: 1, 1: 1, 2: 1, 3: 1}
    budget = up["extra"]["identify_budget"]
    assert budget["total"] == 1000 and budget["max_concurrency"] == 1
    before = {p["id"]: p["since"] for p in up["parts"]}
    w.reset()

    shown = await run_cli(
        "plugins",
        "show",
        "discord",
        "--socket",
        str(cfg.socket_path),
        env=subprocess_env(state_dir),
    )
    assert shown.rc == 0, shown.err
    assert "parts       4/4 parts connected" in shown.out
    assert "identifies left: 996/1000" in shown.out
    rows = [ln.split() for ln in shown.out.splitlines() if ln.startswith("    ") and "●" in ln]
    assert [(r[0], r[2], r[-1]) for r in rows] == [(str(n), "connected", "10") for n in range(4)]

    await gateway.drop_shard(2, 4000)
    down = await w.until(lambda d: d["state"] != "connected")
    assert down["state"] == "connecting"
    assert down["reason"].startswith("degraded: 3/4 shards connected · shard 2: 4000")
    part2 = down["parts"][2]
    assert part2["state"] == "disconnected" and part2["code"] == 4000
    assert part2["attempt"] == 1 and "retry_at" in part2
    back = await w.until(all_up(4))
    assert "reason" not in back
    # Only shard 2 moved: the others kept their since, and it resumed (no new IDENTIFY).
    assert {p["id"]: p["since"] for p in back["parts"] if p["id"] != "2"} == {
        k: v for k, v in before.items() if k != "2"
    }
    assert gateway.resume_count == 1 and gateway.identify_count == 4
    assert all(e.data["parts"][i]["state"] == "connected" for e in w.events for i in (0, 1, 3))
    assert_seqs_increase(w.events)
    assert stored_connection(cfg) == back


async def test_sharding_required_with_auto_reshards_by_itself(
    config: Config, gateway: LocalDiscordGateway, start_daemon: Any, watcher: Any
) -> None:
    gateway.guilds = 10  # one shard is enough at first
    cfg = discord_config(config, gateway, shards="auto")
    await start(start_daemon, cfg)
    w: Watcher = await watcher(cfg)
    await w.until(all_up(1), timeout=20)
    w.reset()
    # The bot grows past one shard's limit; its next IDENTIFY is refused with 4011.
    gateway.guilds = 30
    await gateway.drop(4009)  # session timed out: a new IDENTIFY follows
    up = await w.until(all_up(3), timeout=20)
    assert [p["guilds"] for p in up["parts"]] == [10, 10, 10]
    assert "error" not in w.states(), [e.data for e in w.events]
    assert gateway.shard_connections() == {0: 1, 1: 1, 2: 1}


async def test_fixed_shard_count_too_small_says_which_setting_to_change(
    config: Config, gateway: LocalDiscordGateway, start_daemon: Any, watcher: Any
) -> None:
    cfg = discord_config(config, gateway, shards="2")  # 40 guilds need 4
    await start(start_daemon, cfg)
    w: Watcher = await watcher(cfg)
    err = await w.state("error", timeout=20)
    assert err["code"] == 4011
    assert "2 shard(s) are too few" in err["reason"]
    assert "shards=auto" in err["reason"]


async def test_shards_changed_live_reshards_without_a_daemon_restart(
    config: Config, gateway: LocalDiscordGateway, start_daemon: Any, watcher: Any
) -> None:
    cfg = discord_config(config, gateway, shards="4")
    await start(start_daemon, cfg)
    w: Watcher = await watcher(cfg)
    await w.until(all_up(4), timeout=20)
    info = await w.client.request(
        "plugins.update_settings", name="discord", settings={"shards": "8"}
    )
    assert info["settings"]["shards"] == "8"
    up = await w.until(all_up(8), timeout=20)
    assert [p["guilds"] for p in up["parts"]] == [5] * 8
    await gateway.wait_for(lambda g: g.shard_connections() == {n: 1 for n in range(8)})


async def test_bad_shards_setting_is_an_error_that_says_what_to_set(
    config: Config, gateway: LocalDiscordGateway, start_daemon: Any, watcher: Any
) -> None:
    cfg = discord_config(config, gateway, shards="lots")
    await start(start_daemon, cfg)
    w: Watcher = await watcher(cfg)
    err = await w.state("error")
    assert "shards='lots'" in err["reason"] and "shards=auto" in err["reason"]
    assert gateway.connection_count == 0


async def test_identify_budget_at_its_floor_stops_identifying_but_resumes_go_on(
    config: Config, gateway: LocalDiscordGateway, start_daemon: Any, watcher: Any
) -> None:
    gateway.session_start_total = 100
    gateway.session_start_remaining = 6  # floor: 5% of 100; one IDENTIFY left above it
    gateway.session_start_reset_after = 1000  # ms: Discord's reset, shortened
    cfg = discord_config(config, gateway, shards="4")
    await start(start_daemon, cfg)
    w: Watcher = await watcher(cfg)

    def held(d: dict[str, Any]) -> bool:
        parts = d.get("parts") or []
        return (
            len(parts) == 4
            and parts[0]["state"] == "connected"
            and all("identify budget at its floor" in (p.get("reason") or "") for p in parts[1:])
        )

    low = await w.until(held, timeout=20)
    assert low["state"] == "connecting" and low["reason"].startswith("degraded: 1/4 shards")
    reason = low["parts"][1]["reason"]
    assert "5/100 left (floor 5, identify_floor=5%)" in reason and "resumes go on" in reason
    assert low["parts"][1]["retry_at"] > low["parts"][1]["since"]
    assert gateway.identify_count == 1
    # A resume is not an IDENTIFY: shard 0 comes back while the others wait.
    await gateway.drop_shard(0, 4000)
    await w.until(lambda d: d["parts"][0]["state"] != "connected")
    await w.until(lambda d: d["parts"][0]["state"] == "connected" and held(d))
    assert gateway.resume_count == 1 and gateway.identify_count == 1
    # Discord resets the budget: the waiting shards identify.
    gateway.reset_session_starts()
    up = await w.until(all_up(4), timeout=20)
    assert up["extra"]["identify_budget"]["remaining"] == 97
    assert gateway.identify_count == 4


# -- the pure rules --------------------------------------------------------------------------


def test_aggregate_parts() -> None:
    up = Part(id="0", state="connected")
    down = Part(id="1", state="disconnected", reason="4000 unknown error, resuming")
    assert aggregate_parts([up, up], "shards") == ("connected", None)
    assert aggregate_parts([up, down], "shards") == (
        "connecting",
        "degraded: 1/2 shards connected · shard 1: 4000 unknown error, resuming",
    )
    assert aggregate_parts([down, down], "shards")[0] == "disconnected"
    bad = Part(id="3", state="error", reason="token rejected")
    assert aggregate_parts([up, bad], "shards") == (
        "error",
        "1/2 shards connected · shard 3: token rejected",
    )
    assert aggregate_parts([], "shards")[0] == "connecting"


def test_parts_in_words() -> None:
    conn = Connection(
        state="connecting",
        parts=[
            Part(id="0", state="connected", since=1.0, latency_ms=41.6, guilds=10),
            Part(
                id="1",
                state="disconnected",
                since=1.0,
                reason="4000 unknown error, resuming",
                attempt=2,
                retry_at=112.0,
            ),
        ],
        extra={"identify_budget": {"total": 1000, "remaining": 988, "resets_at": 100 + 5 * 3600}},
    )
    assert render.parts_summary(conn) == "1/2 parts connected · 1 disconnected"
    row = render.part_row(conn.parts[1], 100.0, None)
    assert row[1] == "○ disconnected"
    assert row[-1] == "4000 unknown error, resuming · retrying in 12 s · attempt 2"
    assert render.part_row(conn.parts[0], 100.0, None)[3:5] == ("42 ms", "10")
    assert render.identify_budget(conn, 100.0) == "identifies left: 988/1000, resets in 5 h"
    assert render.parts_summary(Connection(state="connected")) is None


def test_parse_shards() -> None:
    assert parse_shards("off") is None and parse_shards("") is None
    assert parse_shards("auto") == "auto" and parse_shards(" 16 ") == 16
    for bad in ("-1", "lots", "99999"):
        with pytest.raises(ValueError, match="shards=auto"):
            parse_shards(bad)


async def test_identify_gate_spaces_each_bucket() -> None:
    gate = IdentifyGate(2, 0.01)
    for shard in range(4):  # buckets 0,1 now, then 0,1 again one interval later
        await gate.wait(shard)
    slots = gate._next
    assert set(slots) == {0, 1}
    # Each bucket has booked two slots: its next free one is two intervals after its first.
    assert abs(slots[0] - slots[1]) < 0.01
