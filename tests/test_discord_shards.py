"""Sharding, end to end: the real daemon, the real discord.py (AutoShardedClient state, our
supervisor per shard) and the emulator routing guilds by ``(guild_id >> 22) % shard_count``.
Each shard has its own state in ``parts``; the connection is the aggregate (docs/protocol.md)."""

# ruff: noqa: F811  (pytest fixtures imported from test_discord_plugin are parameters here)
from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from harness import render
from harness.client import ClientError
from harness.config import Config, ConfigError
from harness.discord_emulator import LocalDiscordGateway
from harness.plugins.discord import DiscordPlugin
from harness.plugins.discord_shards import MAX_SHARDS, IdentifyGate, parse_shards
from harness.protocol import Connection, Health, Part, aggregate_parts, to_connection
from harness.settings import check_value
from tests.conftest import HANG_GUARD, run_cli, subprocess_env
from tests.test_discord_plugin import (  # noqa: F401  (fixtures used by name)
    BOT,
    IDENTIFY_WINDOW,
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
    pass


@pytest.fixture
async def gateway() -> AsyncIterator[LocalDiscordGateway]:
    async with LocalDiscordGateway(
        tokens={TOKEN},
        guilds=40,
        max_guilds_per_shard=10,
        recommended_guilds_per_shard=10,
        identify_window=IDENTIFY_WINDOW,
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
    up = await w.until(all_up(4))
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
    await w.until(all_up(1))
    w.reset()
    # The bot grows past one shard's limit; its next IDENTIFY is refused with 4011.
    gateway.guilds = 30
    await gateway.drop(4009)  # session timed out: a new IDENTIFY follows
    up = await w.until(all_up(3))
    assert [p["guilds"] for p in up["parts"]] == [10, 10, 10]
    assert "error" not in w.states(), [e.data for e in w.events]
    assert gateway.shard_connections() == {0: 1, 1: 1, 2: 1}


async def test_fixed_shard_count_too_small_says_which_setting_to_change(
    config: Config, gateway: LocalDiscordGateway, start_daemon: Any, watcher: Any
) -> None:
    cfg = discord_config(config, gateway, shards="2")  # 40 guilds need 4
    await start(start_daemon, cfg)
    w: Watcher = await watcher(cfg)
    err = await w.state("error")
    assert err["code"] == 4011
    assert "2 shard(s) are too few" in err["reason"]
    assert "shards=auto" in err["reason"]


async def test_shards_changed_live_reshards_without_a_daemon_restart(
    config: Config, gateway: LocalDiscordGateway, start_daemon: Any, watcher: Any
) -> None:
    cfg = discord_config(config, gateway, shards="4")
    await start(start_daemon, cfg)
    w: Watcher = await watcher(cfg)
    await w.until(all_up(4))
    info = await w.client.request(
        "plugins.update_settings", name="discord", settings={"shards": "8"}
    )
    assert info["settings"]["shards"] == "8"
    up = await w.until(all_up(8))
    assert [p["guilds"] for p in up["parts"]] == [5] * 8
    await gateway.wait_for(
        lambda g: g.shard_connections() == {n: 1 for n in range(8)}, timeout=HANG_GUARD
    )


async def test_bad_shards_value_is_refused_at_save_and_the_bot_carries_on(
    config: Config,
    state_dir: Path,
    gateway: LocalDiscordGateway,
    start_daemon: Any,
    watcher: Any,
) -> None:
    # In the config file: the daemon refuses to start, naming the setting and what fits.
    with pytest.raises(ConfigError, match=r"plugins\.discord\.shards: must be off, auto or a"):
        await start(start_daemon, discord_config(config, gateway, shards="lots"))
    cfg = discord_config(config, gateway, shards="4")
    await start(start_daemon, cfg)
    w: Watcher = await watcher(cfg)
    up = await w.until(all_up(4))
    identifies = gateway.identify_count
    # Through the request API: refused with the field named, nothing stored.
    with pytest.raises(ClientError) as refused:
        await w.client.request(
            "plugins.update_settings", name="discord", settings={"shards": "lots"}
        )
    assert refused.value.code == "invalid_settings"
    assert refused.value.details["fields"] == {
        "shards": f"must be off, auto or a whole number from 1 to {MAX_SHARDS}; got 'lots'"
    }
    # Through the CLI: exit 1, the problem on stderr, for a count out of range both ways.
    for bad, got in (("0", "got 0"), (str(MAX_SHARDS + 1), f"got {MAX_SHARDS + 1}")):
        result = await run_cli(
            "plugins",
            "set",
            "discord",
            f"shards={bad}",
            "--socket",
            str(cfg.socket_path),
            env=subprocess_env(state_dir),
        )
        assert result.rc == 1, result.out
        assert f"shards: must be off, auto or a whole number from 1 to {MAX_SHARDS}; {got}" in (
            result.err
        )
    # The plugin carried on: still 4 shards up, none re-identified, the setting unchanged.
    info = await w.client.request("plugins.get", name="discord")
    assert info["settings"]["shards"] == "4" and info["status"] == "running"
    assert stored_connection(cfg) == up
    assert gateway.identify_count == identifies
    # And a good value in another case is taken.
    ok = await w.client.request(
        "plugins.update_settings", name="discord", settings={"shards": "AUTO"}
    )
    assert ok["settings"]["shards"] == "AUTO"
    await w.until(lambda d: d["state"] != "connected")
    await w.until(all_up(4))


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

    low = await w.until(held)
    assert low["state"] == "connecting" and low["reason"].startswith("degraded: 1/4 shards")
    reason = low["parts"][1]["reason"]
    assert "5/100 left (floor 5, identify_floor=5%)" in reason and "resumes go on" in reason
    # The budget says its floor, so a client can tell that new sessions wait for the reset.
    assert low["extra"]["identify_budget"]["floor"] == 5
    assert render.budget_held(to_connection(low), low["parts"][1]["since"])
    assert low["parts"][1]["retry_at"] > low["parts"][1]["since"]
    assert gateway.identify_count == 1
    # A resume is not an IDENTIFY: shard 0 comes back while the others wait.
    await gateway.drop_shard(0, 4000)
    await w.until(lambda d: d["parts"][0]["state"] != "connected")
    await w.until(lambda d: d["parts"][0]["state"] == "connected" and held(d))
    assert gateway.resume_count == 1 and gateway.identify_count == 1
    # Discord resets the budget: the waiting shards identify.
    gateway.reset_session_starts()
    up = await w.until(all_up(4))
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
    # What happens next first: the column is cut at the right (it hid the countdown at 80).
    assert row[-1] == "retrying in 12 s · attempt 2 · 4000 unknown error, resuming"
    assert render.part_row(conn.parts[0], 100.0, None)[3:5] == ("42 ms", "10")
    assert render.identify_budget(conn, 100.0) == "identifies left: 988/1000, resets in 5 h"
    assert render.parts_summary(Connection(state="connected")) is None


def test_parse_shards() -> None:
    assert parse_shards("off") is None and parse_shards("") is None
    assert parse_shards("auto") == "auto" and parse_shards(" 16 ") == 16
    for bad in ("-1", "lots", str(MAX_SHARDS + 1)):
        with pytest.raises(ValueError, match="shards=auto"):
            parse_shards(bad)


def test_parse_shards_takes_plain_digits_only() -> None:
    (field,) = (f for f in DiscordPlugin.settings_schema if f.name == "shards")
    # Python's int() also reads "1_0" as 10, "+4" as 4 and Arabic-Indic "٤" as 4: a typo or a
    # pasted digit must not start a different number of shards than the operator reads.
    for bad in ("1_0", "+4", "\u0664", "\uff14", "4.0"):
        with pytest.raises(ValueError, match="shards=auto"):
            parse_shards(bad)
        # ...and the same is refused when saved, not accepted there and failed at start.
        assert "must be off, auto or a whole number" in (check_value(field, bad) or "")
    assert check_value(field, " 16 ") is None
    # `shards = 4` in the config file: TOML makes it a number; the message says how to write it.
    assert check_value(field, 4) == 'expected text, got a whole number: write it in quotes, "4"'


async def test_identify_gate_holds_each_send_and_survives_a_restart() -> None:
    gate = IdentifyGate(1, 0.05)
    await gate.sending(None)
    first = gate._sent[0]
    await gate.sending(0)  # the same bucket: held one interval after the last send
    assert gate._sent[0] - first >= 0.05
    # A new gate for the next run (a new setting) keeps the rule: Discord's is per bot.
    again = IdentifyGate(1, 0.05, after=gate)
    assert again._sent == gate._sent
    wider = IdentifyGate(4, 0.05, after=gate)
    assert wider._sent == dict.fromkeys(range(4), gate._sent[0])


async def test_identify_gate_spaces_each_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    # The gate's clock stands still (its waits still sleep for real, briefly): the slots it
    # books are then exact, however late a loaded machine wakes it. (A real clock made this
    # test compare wake-up times: 28.8 ms apart once under load, against a 10 ms allowance.)
    from types import SimpleNamespace

    from harness.plugins import discord_shards

    start = 1000.0
    monkeypatch.setattr(discord_shards, "time", SimpleNamespace(monotonic=lambda: start))
    gate = IdentifyGate(2, 0.01)
    for shard in range(4):  # buckets 0,1 now, then 0,1 again one interval later
        await gate.wait(shard)
    # Each bucket has booked two slots: its next free one is two intervals after its first.
    assert gate._next == pytest.approx({0: start + 0.02, 1: start + 0.02}, abs=1e-9)


# -- Discord's concurrency rule, enforced by the local gateway --------------------------------


class PacedShards(FastShards):
    # Plugin-side interval twice the gateway's window: a loaded machine may deliver one
    # IDENTIFY late and the next on time, and that jitter must not read as a violation.
    identify_interval = 0.4


async def test_bucketed_start_never_trips_the_gateways_concurrency_rule(
    config: Config, start_daemon: Any, watcher: Any
) -> None:
    async with LocalDiscordGateway(
        tokens={TOKEN},
        guilds=40,
        max_guilds_per_shard=10,
        recommended_guilds_per_shard=10,
        max_concurrency=2,
        identify_window=0.2,
    ) as gw:
        cfg = discord_config(config, gw, shards="4")
        await start_daemon(plugins={"discord": PacedShards}, cfg=cfg)
        w: Watcher = await watcher(cfg)
        up = await w.until(all_up(4))
        assert up["extra"]["identify_budget"]["max_concurrency"] == 2
        assert gw.identify_rate_limited == []
        # Buckets in order: shards 0 and 1 (keys 0 and 1) before 2 and 3, each key once per
        # window.
        order = [s for _, s in sorted(gw.identify_times)]
        assert sorted(order[:2]) == [0, 1] and sorted(order[2:]) == [2, 3]
        by_key: dict[int, list[float]] = {}
        for t, s in gw.identify_times:
            by_key.setdefault((s or 0) % 2, []).append(t)
        for times in by_key.values():
            times.sort()
            assert all(b - a >= gw.identify_window for a, b in itertools.pairwise(times))


class UnpacedShards(FastShards):
    # A client that ignores the rule: every shard identifies at once.
    identify_interval = 0.0
    identify_margin = 0.0
    identify_wait = (0.5, 0.5)  # op 9 d=false: wait before identifying again (Discord: 1-5 s)


async def test_a_client_identifying_too_fast_gets_invalid_session(
    config: Config, start_daemon: Any, watcher: Any
) -> None:
    async with LocalDiscordGateway(
        tokens={TOKEN},
        guilds=40,
        max_guilds_per_shard=10,
        recommended_guilds_per_shard=10,
        identify_window=5.0,  # Discord's own: four shards at once cannot fit
    ) as gw:
        cfg = discord_config(config, gw, shards="4")
        await start_daemon(plugins={"discord": UnpacedShards}, cfg=cfg)
        w: Watcher = await watcher(cfg)
        limited = await w.until(
            lambda d: any(
                "session invalidated (op 9)" in (p.get("reason") or "")
                for p in d.get("parts") or []
            ),
        )
        assert gw.identify_rate_limited, "the gateway refused nothing"
        # One IDENTIFY on the only key was accepted; the others were refused, not counted.
        assert len(gw.identify_times) == 1
        assert gw.session_start_remaining == gw.session_start_total - 1
        assert limited["state"] != "connected"
        # Stopped while the gateway is still up: the plugin retries every 0.5 s meanwhile.
        await w.client.request("plugins.set_enabled", name="discord", enabled=False)
        await w.state("stopped")


async def test_unsharded_bot_reads_the_budget_and_holds_at_its_floor(
    config: Config,
    state_dir: Path,
    gateway: LocalDiscordGateway,
    start_daemon: Any,
    watcher: Any,
) -> None:
    gateway.guilds = 5
    gateway.session_start_total = 100
    gateway.session_start_remaining = 6  # floor: 5% of 100; one IDENTIFY left above it
    gateway.session_start_reset_after = 1000  # ms: Discord's reset, shortened
    cfg = discord_config(config, gateway)  # shards = off
    await start(start_daemon, cfg)
    w: Watcher = await watcher(cfg)
    up = await w.state("connected")
    assert "parts" not in up
    assert up["extra"]["identify_budget"]["remaining"] == 5
    assert up["extra"]["identify_budget"]["total"] == 100
    shown = await run_cli(
        "plugins",
        "show",
        "discord",
        "--socket",
        str(cfg.socket_path),
        env=subprocess_env(state_dir),
    )
    assert shown.rc == 0, shown.err
    assert "budget      identifies left: 5/100" in shown.out
    # A resume is not an IDENTIFY: allowed at the floor.
    await gateway.drop(4000)
    await w.state("disconnected")
    await w.state("connected")
    assert gateway.resume_count == 1 and gateway.identify_count == 1
    # The session ends (4009): a new one needs an IDENTIFY, and the budget is at its floor.
    w.reset()
    await gateway.drop(4009)
    held = await w.until(lambda d: "identify budget at its floor" in (d.get("reason") or ""))
    assert held["state"] == "disconnected"
    assert "5/100 left (floor 5, identify_floor=5%)" in held["reason"]
    assert "no new session until" in held["reason"] and "resumes go on" in held["reason"]
    assert held["retry_at"] > held["since"] - 1
    assert gateway.identify_count == 1
    # Discord resets the budget: the plugin reads it again and identifies.
    gateway.reset_session_starts()
    up = await w.state("connected")
    assert up["extra"]["identify_budget"]["remaining"] == 99
    assert gateway.identify_count == 2


# -- live health per part --------------------------------------------------------------------


async def test_each_shards_latency_is_live_in_health_events(
    config: Config, gateway: LocalDiscordGateway, start_daemon: Any, connect: Any
) -> None:
    gateway.heartbeat_interval = 300  # ms: ACKs come quickly
    cfg = discord_config(config, gateway, shards="4")
    await start(start_daemon, cfg)
    client = await connect(cfg)
    await client.subscribe(["discord:connection", "discord:health"], since=0)
    conn: dict[str, Any] = {}

    async def until(pred: Any) -> Any:
        async with asyncio.timeout(HANG_GUARD):
            while True:
                e = await client.next_event()
                if e.event == "discord:connection":
                    conn.clear()
                    conn.update(e.data)
                elif pred(e.data):
                    return e.data

    def every_part_measured(h: dict[str, Any]) -> bool:
        parts = h.get("parts") or []
        return len(parts) == 4 and all("latency_ms" in p for p in parts)

    health = await until(every_part_measured)
    assert [p["id"] for p in health["parts"]] == ["0", "1", "2", "3"]
    mean = sum(p["latency_ms"] for p in health["parts"]) / 4
    assert health["latency_ms"] == pytest.approx(mean, abs=0.06)
    # A shard that drops has no round-trip until it is back; the others keep theirs.
    await gateway.drop_shard(2, 4000)
    dropped = await until(
        lambda h: (
            len(h.get("parts") or []) == 4
            and "latency_ms" not in h["parts"][2]
            and all("latency_ms" in h["parts"][i] for i in (0, 1, 3))
        )
    )
    assert dropped["parts"][2] == {"id": "2"}
    back = await until(every_part_measured)
    # The parts table takes each connected part's latency from the live health.
    live = render.live_parts(to_connection(conn), msgspec.convert(back, Health))
    by_id = {p["id"]: p["latency_ms"] for p in back["parts"]}
    assert [p.latency_ms for p in live if p.state == "connected"] == [
        by_id[p.id] for p in live if p.state == "connected"
    ]


async def test_one_shards_overdue_ack_is_its_own_in_health_status_and_plugins_show(
    config: Config,
    state_dir: Path,
    gateway: LocalDiscordGateway,
    start_daemon: Any,
    watcher: Any,
    connect: Any,
) -> None:
    """Shard 2's gateway stops answering its heartbeats; the others' go on. The live health
    says which shard is late, `harness status` and `harness plugins show` say it on that
    shard, and when the late link is dropped (a zombie) its warning ends with it."""
    # The warning shows 0.3 s after an unanswered beat, and a whole interval after it the
    # link is a zombie (dropped, resumed): 6 s leaves a CLI time to ask.
    gateway.heartbeat_interval = 6_000
    cfg = discord_config(config, gateway, shards="4")
    await start(start_daemon, cfg)
    w: Watcher = await watcher(cfg)
    await w.until(all_up(4))
    live = await connect(cfg)
    await live.subscribe(["discord:health", "discord:connection"])
    await gateway.pause_heartbeat_acks(True, shard=2)

    def late(h: dict[str, Any]) -> list[str]:
        return [p["id"] for p in h.get("parts") or [] if "ack_overdue_since" in p]

    async def next_late() -> dict[str, Any]:
        async with asyncio.timeout(HANG_GUARD):
            while True:
                e = await live.next_event()
                if e.event == "discord:health" and late(e.data):
                    return e.data

    for _ in range(4):  # each warning lasts ~5.7 s; under load a CLI may miss one
        health = await next_late()
        assert late(health) == ["2"], health
        shown, status = await asyncio.gather(
            run_cli(
                "plugins",
                "show",
                "discord",
                "--socket",
                str(cfg.socket_path),
                env=subprocess_env(state_dir),
            ),
            run_cli("status", "--socket", str(cfg.socket_path), env=subprocess_env(state_dir)),
        )
        assert shown.rc == 0 and status.rc == 0, (shown, status)
        if "no heartbeat reply" in shown.out and "no heartbeat reply" in status.out:
            break
    line = next(x for x in status.out.splitlines() if x.startswith("discord"))
    assert "no heartbeat reply for " in line and "(part 2)" in line, line
    rows = {
        ln.split()[0]: ln for ln in shown.out.splitlines() if ln.startswith("    ") and "●" in ln
    }
    assert "no heartbeat reply: " in rows["2"], shown.out
    assert not any("heartbeat" in rows[i] for i in ("0", "1", "3")), shown.out

    # The late link ends as a zombie: its warning, and the plugin's aggregate one, are
    # withdrawn as the link is dropped, before the shard is reported down (not at the next
    # ACK of another shard, or of shard 2's next link).
    cleared: dict[str, Any] | None = None
    async with asyncio.timeout(HANG_GUARD):
        while True:
            e = await live.next_event()
            if e.event == "discord:health" and "2" not in late(e.data):
                cleared = e.data
            elif e.event == "discord:connection" and e.data["parts"][2]["state"] != "connected":
                break
    assert cleared is not None, "shard 2 was reported down with its warning still live"
    assert cleared["parts"][2] == {"id": "2"} and "ack_overdue_since" not in cleared
    await gateway.pause_heartbeat_acks(False, shard=2)


# -- guild counts without discord.py's guild cache -------------------------------------------


async def test_guild_counts_follow_joins_and_leaves_without_a_guild_cache(
    config: Config, gateway: LocalDiscordGateway, start_daemon: Any, watcher: Any
) -> None:
    cfg = discord_config(config, gateway, shards="4")
    daemon = await start(start_daemon, cfg)
    w: Watcher = await watcher(cfg)
    up = await w.until(all_up(4))
    assert [p["guilds"] for p in up["parts"]] == [10, 10, 10, 10]
    # The plugin keeps ids, not discord.py's Guild objects (the memory a big bot would spend).
    assert daemon.orchestrator is not None
    plugin = daemon.orchestrator._slots["discord"].plugin
    assert len(plugin._client.guilds) == 0  # type: ignore[attr-defined]
    # A join and a leave reach the count; a part publishes it with its next change (a resume).
    joined = await gateway.join_guild()
    shard = (int(joined) >> 22) % 4
    await gateway.drop_shard(shard, 4000)
    back = await w.until(lambda d: d["state"] == "connected" and d["parts"][shard]["guilds"] == 11)
    assert [p["guilds"] for p in back["parts"]].count(10) == 3
    assert len(plugin._client.guilds) == 0  # type: ignore[attr-defined]
    await gateway.leave_guild()
    await gateway.drop_shard(shard, 4000)
    await w.until(lambda d: d["state"] == "connected" and d["parts"][shard]["guilds"] == 10)
    assert gateway.identify_count == 4  # resumes only: no guild was re-sent


async def test_guilds_that_stay_unavailable_end_the_wait_after_the_ready_timeout(
    config: Config, gateway: LocalDiscordGateway, start_daemon: Any, watcher: Any
) -> None:
    gateway.guilds = 5
    gateway.withheld_guilds = 2  # an outage at Discord: listed in READY, never streamed
    cfg = discord_config(config, gateway)
    await start(start_daemon, cfg)
    w: Watcher = await watcher(cfg)
    up = await w.state("connected")
    assert w.states() == ["connecting", "connecting", "connected"]
    assert w.events[1].data["reason"] == "receiving 5 guild(s) from Discord"
    assert up["username"] == BOT


def test_the_gateway_lists_each_shards_guilds_by_discords_routing() -> None:
    gw = LocalDiscordGateway(guilds=1003)
    for count in (1, 3, 4, 16):
        for shard in range(count):
            listed = gw.guild_ids((shard, count))
            assert all((int(g) >> 22) % count == shard for g in listed)
        assert sum(len(gw.guild_ids((s, count))) for s in range(count)) == 1003


async def test_tui_form_shows_the_daemons_refusal_of_a_bad_shards_value(
    config: Config, gateway: LocalDiscordGateway, start_daemon: Any, connect: Any
) -> None:
    from textual.widgets import Input, Static

    from tests.tui.conftest import make_app, until
    from tui.screens.settings import SettingsScreen
    from tui.widgets.setting_field import SettingRow

    cfg = discord_config(config, gateway)
    await start(start_daemon, cfg)
    other = await connect(cfg)
    app = make_app(cfg, plugin="discord")
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.link.online)
        screen = app.screen
        assert isinstance(screen, SettingsScreen)
        await until(pilot, lambda: screen.form is not None and screen.form.ready)
        row = screen.query_one("#field-shards", SettingRow)
        row.query_one(Input).value = "lots"
        await pilot.press("ctrl+s")

        def error() -> str:
            shown = row.query_one("#error", Static)
            return str(shown.render()) if shown.has_class("-shown") else ""

        expected = f"must be off, auto or a whole number from 1 to {MAX_SHARDS}; got 'lots'"
        await until(pilot, lambda: expected in error())
    info = await other.request("plugins.get", name="discord")
    assert info["settings"]["shards"] == "off" and info["status"] == "running"
