"""Alerts end to end: a real in-process daemon, the Manual test plugin's connection driven by
the test, apprise posting to a real aiohttp receiver on 127.0.0.1 (``json://``)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from harness.alerts.rules import AlertsConfig
from harness.client import Client
from harness.config import Config
from harness.daemon import Daemon
from harness.plugin import PluginContext
from tests.alerts_receiver import Receiver
from tests.conftest import HANG_GUARD, StartDaemon, next_matching, wait_until
from tests.sample_plugins import Manual

Connect = Callable[..., Awaitable[Client]]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


def alerts_config(config: Config, **alerts: Any) -> Config:
    """The test's config with an ``[alerts]`` section (durations short)."""
    alerts.setdefault("retry_initial", "0.05s")
    alerts.setdefault("retry_max", "0.2s")
    alerts.setdefault("send_timeout", "5s")
    section = msgspec.convert(alerts, AlertsConfig)
    return msgspec.structs.replace(config, alerts=section)


def rule(**fields: Any) -> dict[str, Any]:
    fields.setdefault("plugins", ["manual"])
    fields.setdefault("for", "0.3s")
    return fields


async def start_manual(start_daemon: StartDaemon, cfg: Config) -> tuple[Daemon, PluginContext]:
    Manual.ctx = None
    daemon = await start_daemon(plugins={"manual": Manual}, cfg=cfg)
    assert Manual.ctx is not None
    await Manual.ctx.set_connection("connected", username="Manual#1")
    return daemon, Manual.ctx


async def received(r: Receiver, count: int, timeout: float = HANG_GUARD) -> list[dict[str, Any]]:
    await wait_until(lambda: len(r.posts) >= count, timeout)
    return r.posts


def outbox_rows(db: Path) -> list[tuple[str, str, str, int]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT dedup_key, kind, status, attempts FROM alert_outbox ORDER BY id"
        ).fetchall()
    conn.close()
    return rows


async def test_an_outage_longer_than_for_sends_one_notification_and_one_resolve(
    start_daemon: StartDaemon, config: Config, receiver: Receiver, connect: Connect
) -> None:
    cfg = alerts_config(config, targets=[receiver.url()], rules={"down": rule()})
    _, ctx = await start_manual(start_daemon, cfg)
    client = await connect()
    await client.subscribe(["alert:*"])
    went_down = time.time()
    await ctx.set_connection("disconnected", reason="gateway closed 1006")
    fired = await next_matching(client, lambda e: e.event == "alert:fired")
    assert fired.data["plugin"] == "manual" and fired.data["state"] == "disconnected"
    assert fired.data["targets"] == ["1"]

    (post,) = await received(receiver, 1)
    f = post["fields"]
    assert (f["plugin"], f["state"], f["reason"], f["kind"]) == (
        "manual",
        "disconnected",
        "gateway closed 1006",
        "fired",
    )
    assert f["rule"] == "down" and f["alert"].startswith("down/manual/")
    assert "manual is disconnected" in post["title"]
    assert post["type"] == "failure"
    # The time the outage began (not when the alert fired): the receiver can tell how long.
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(went_down))
    assert f["since"][:16] == stamp[:16]
    assert post["at"] - went_down >= 0.3  # `for` held before anything was sent

    await ctx.set_connection("connected")
    await next_matching(client, lambda e: e.event == "alert:resolved")
    await received(receiver, 2)
    # Each target delivers in order: a second "fired" would have arrived before the resolve.
    assert receiver.kinds() == ["fired", "resolved"]
    assert receiver.posts[1]["fields"]["state"] == "connected"
    assert receiver.posts[1]["type"] == "success"


async def test_a_short_flap_sends_nothing(
    start_daemon: StartDaemon, config: Config, receiver: Receiver
) -> None:
    cfg = alerts_config(config, targets=[receiver.url()], rules={"down": rule(**{"for": "1s"})})
    _, ctx = await start_manual(start_daemon, cfg)
    for _ in range(3):  # a 9 ms resume, three times: under `for`, and under the flap threshold
        await ctx.set_connection("disconnected", reason="blip")
        await ctx.set_connection("connected")
    await ctx.set_connection("disconnected", reason="the real one")
    await received(receiver, 1)
    # Had a blip fired, its notice would be first in this target's ordered queue.
    assert [p["fields"]["reason"] for p in receiver.posts] == ["the real one"]


async def test_reminders_while_it_stays_broken(
    start_daemon: StartDaemon, config: Config, receiver: Receiver, connect: Connect
) -> None:
    cfg = alerts_config(
        config,
        targets=[receiver.url()],
        rules={"down": rule(**{"for": 0, "remind_every": "0.3s"})},
    )
    _, ctx = await start_manual(start_daemon, cfg)
    client = await connect()
    await client.subscribe(["alert:fired", "alert:reminder"])
    await ctx.set_connection("error", reason="bad token")
    posts = await received(receiver, 3)
    assert receiver.kinds()[:3] == ["fired", "reminder", "reminder"]
    keys = [p["fields"]["alert"] for p in posts[:3]]
    firing = keys[0].removesuffix("#fired")
    assert keys[1:] == [f"{firing}#reminder1", f"{firing}#reminder2"]
    # Never early: reminder n is due n intervals after the firing, itself after the state went
    # bad (`since`). Checked on the daemon's own records; a receiver's arrival times would
    # measure the delivery queue, not the schedule. (0.01: the loop's timer resolution.)
    fired = await next_matching(client, lambda e: e.event == "alert:fired")
    first = await next_matching(client, lambda e: e.event == "alert:reminder")
    second = await next_matching(client, lambda e: e.event == "alert:reminder")
    since = fired.data["since"]
    assert first.ts - since >= 0.3 - 0.01 and second.ts - since >= 0.6 - 0.01
    await ctx.set_connection("connected")
    await wait_until(lambda: receiver.kinds()[-1:] == ["resolved"])
    assert receiver.kinds().count("fired") == 1


async def test_a_receiver_that_is_down_gets_it_once_when_back_and_blocks_no_other_target(
    start_daemon: StartDaemon, config: Config, receiver: Receiver, connect: Connect
) -> None:
    down = Receiver()  # not started yet: connection refused
    cfg = alerts_config(
        config,
        targets={"flaky": down.url(), "steady": receiver.url()},
        rules={"down": rule(**{"for": 0})},
    )
    _, ctx = await start_manual(start_daemon, cfg)
    client = await connect()
    await client.subscribe(["alert:failed"])
    await ctx.set_connection("disconnected", reason="outage")
    # The healthy target is not held up by the failing one.
    await received(receiver, 1)
    failed = await next_matching(client, lambda e: e.event == "alert:failed")
    assert failed.data["target"] == "flaky" and failed.data["kind"] == "fired"
    assert failed.data["error"]
    # It keeps retrying (reported once on the stream: tests/test_alerts_delivery.py).
    async with asyncio.timeout(HANG_GUARD):
        while True:
            listing = await client.request("alerts.list")
            flaky = next(t for t in listing["targets"] if t["name"] == "flaky")
            if flaky["attempts"] >= 3:
                break
            await asyncio.sleep(0.05)
    assert flaky["pending"] == 1 and flaky["last_error"]

    await down.start()
    try:
        await received(down, 1)
        await ctx.set_connection("connected")
        await received(down, 2)
        assert down.kinds() == ["fired", "resolved"]
        assert down.posts[0]["fields"]["reason"] == "outage"
    finally:
        await down.stop()


async def test_flapping_sends_one_notice_and_one_stable_again(
    start_daemon: StartDaemon, config: Config, receiver: Receiver, connect: Connect
) -> None:
    cfg = alerts_config(
        config,
        targets=[receiver.url()],
        rules={
            "down": rule(
                **{"for": "30s", "flap_changes": 3, "flap_window": "30s", "flap_quiet": "0.3s"}
            )
        },
    )
    _, ctx = await start_manual(start_daemon, cfg)
    client = await connect()
    await client.subscribe(["alert:*"])
    for _ in range(5):  # ten changes, far over the threshold of three
        await ctx.set_connection("disconnected", reason="flap")
        await ctx.set_connection("connected")
    await next_matching(client, lambda e: e.event == "alert:stable")
    await received(receiver, 2)
    assert receiver.kinds() == ["flapping", "stable"]
    assert receiver.posts[1]["fields"]["state"] == "connected"


async def test_a_silence_holds_everything_back_and_ends(
    start_daemon: StartDaemon, config: Config, receiver: Receiver, connect: Connect
) -> None:
    cfg = alerts_config(config, targets=[receiver.url()], rules={"down": rule(**{"for": 0})})
    daemon, ctx = await start_manual(start_daemon, cfg)
    client = await connect()
    await client.subscribe(["alert:*"])
    silence = await client.request("silences.add", plugin="manual", duration="1h", reason="deploy")
    assert silence["active"] and silence["reason"] == "deploy"
    ev = await next_matching(client, lambda e: e.event == "alert:silence")
    assert ev.data["id"] == silence["id"] and ev.data["change"] == "added"

    await ctx.set_connection("disconnected", reason="during maintenance")
    fired = await next_matching(client, lambda e: e.event == "alert:fired")
    assert fired.data["silenced"] == silence["id"]
    await ctx.set_connection("connected")
    await next_matching(client, lambda e: e.event == "alert:resolved")
    history = await client.request("alerts.history")
    assert [(h["kind"], h["status"]) for h in history] == [("fired", "silenced")]

    listed = await client.request("silences.list")
    assert [s["id"] for s in listed if s["active"]] == [silence["id"]]
    ended = await client.request("silences.end", id=silence["id"])
    assert not ended["active"]
    assert (await next_matching(client, lambda e: e.event == "alert:silence")).data[
        "change"
    ] == "ended"
    with pytest.raises(Exception, match="no running silence"):
        await client.request("silences.end", id=silence["id"])

    await ctx.set_connection("disconnected", reason="after maintenance")
    await received(receiver, 1)
    # Nothing from the silenced outage, neither its firing nor its resolve, came first.
    assert [p["fields"]["reason"] for p in receiver.posts] == ["after maintenance"]
    assert daemon.alerts is not None


async def test_a_silence_expires_by_itself_and_releases_a_firing_nobody_was_told_of(
    start_daemon: StartDaemon, config: Config, receiver: Receiver, connect: Connect
) -> None:
    cfg = alerts_config(config, targets=[receiver.url()], rules={"down": rule(**{"for": 0})})
    _, ctx = await start_manual(start_daemon, cfg)
    client = await connect()
    await client.subscribe(["alert:*"])
    await client.request("silences.add", plugin="man*", duration="0.5s")
    await ctx.set_connection("error", reason="still broken after the window")
    await next_matching(client, lambda e: e.event == "alert:fired")
    expired = await next_matching(
        client, lambda e: e.event == "alert:silence" and e.data["change"] == "expired"
    )
    assert not expired.data["active"]
    (post,) = await received(receiver, 1)
    assert post["fields"]["kind"] == "fired"
    assert post["fields"]["alert"].endswith("#fired-after-silence")


@pytest.mark.parametrize("bad", ["0", "-5m", "soon"])
async def test_silence_requests_with_bad_durations_are_refused(
    start_daemon: StartDaemon, config: Config, connect: Connect, bad: str
) -> None:
    await start_manual(start_daemon, alerts_config(config))
    client = await connect()
    with pytest.raises(Exception, match="duration"):
        await client.request("silences.add", plugin="manual", duration=bad)
    assert await client.request("silences.list") == []


async def test_a_restart_neither_refires_nor_forgets_to_resolve(
    start_daemon: StartDaemon, config: Config, receiver: Receiver
) -> None:
    cfg = alerts_config(config, targets=[receiver.url()], rules={"down": rule(**{"for": 0})})
    daemon, ctx = await start_manual(start_daemon, cfg)
    await ctx.set_connection("disconnected", reason="before restart")
    await received(receiver, 1)
    await daemon.stop()  # the plugin's shutdown `stopped` must not resolve it

    Manual.ctx = None
    await start_daemon(plugins={"manual": Manual}, cfg=cfg)
    assert Manual.ctx is not None
    await Manual.ctx.set_connection("disconnected", reason="still down")
    await Manual.ctx.set_connection("connected")
    await received(receiver, 2)
    assert receiver.kinds() == ["fired", "resolved"]
    db = cfg.database_path
    # The mark is committed just after the receiver answered.
    await wait_until(
        lambda: (
            [(k, s) for _, k, s, _ in outbox_rows(db)] == [("fired", "sent"), ("resolved", "sent")]
        )
    )


async def test_test_send_and_secrets_never_shown(
    start_daemon: StartDaemon,
    config: Config,
    receiver: Receiver,
    connect: Connect,
    daemon_log: Any,
) -> None:
    token = "s3cr3t-webhook-token-0123456789"
    url = f"json://127.0.0.1:{receiver.port}/{token}"
    dead = f"json://127.0.0.1:{receiver.port + 1 if receiver.port < 65535 else 1}/{token}x"
    cfg = alerts_config(config, targets={"ops": url, "dead": dead}, rules={"down": rule()})
    await start_manual(start_daemon, cfg)
    client = await connect()
    await client.subscribe(["*"], since=0)
    result = await client.request("alerts.test", target="ops")
    assert result["sent"] and result["url"] == "json://127.0.0.1/…"
    (post,) = await received(receiver, 1)
    assert post["path"] == f"/{token}" and "test" in post["title"]
    bad = await client.request("alerts.test", target="dead")
    assert not bad["sent"] and bad["error"]
    listing = await client.request("alerts.list")
    history = await client.request("alerts.history", limit=10)
    assert [h["status"] for h in history] == ["failed", "sent"]
    with pytest.raises(Exception, match="no alert target named 'nope'"):
        await client.request("alerts.test", target="nope")
    shown = msgspec.json.encode([listing, history, result, bad]).decode()
    assert token not in shown
    assert token not in daemon_log.getvalue()
    assert "json://127.0.0.1/…" in daemon_log.getvalue()  # the log names it, redacted


async def test_heartbeat_is_pinged_while_running_and_stops_with_the_daemon(
    start_daemon: StartDaemon, config: Config, receiver: Receiver
) -> None:
    cfg = alerts_config(
        config,
        heartbeat_url=f"http://127.0.0.1:{receiver.port}/ping/uuid-1234",
        heartbeat_every="0.1s",
    )
    daemon = await start_daemon(plugins={}, cfg=cfg)
    await wait_until(lambda: receiver.pings >= 3)
    assert daemon.alerts is not None and daemon.alerts.heartbeat is not None
    await daemon.stop()
    stopped_at = receiver.pings
    # A negative can only be shown by waiting: several periods pass with no ping.
    await asyncio.sleep(0.5)
    assert receiver.pings == stopped_at


async def test_a_hung_target_blocks_neither_the_others_nor_the_daemon(
    start_daemon: StartDaemon, config: Config, receiver: Receiver, connect: Connect
) -> None:
    held: list[asyncio.StreamWriter] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # reads nothing, answers nothing, keeps the connection open

    hung = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = hung.sockets[0].getsockname()[1]
    try:
        cfg = alerts_config(
            config,
            targets={"hung": f"json://127.0.0.1:{port}/x", "steady": receiver.url()},
            rules={"down": rule(**{"for": 0})},
            send_timeout="0.3s",
        )
        _, ctx = await start_manual(start_daemon, cfg)
        client = await connect()
        await client.subscribe(["alert:failed"])
        await ctx.set_connection("disconnected", reason="outage")
        failed = await next_matching(client, lambda e: e.data["target"] == "hung")
        assert "no answer within 0.3 s" in failed.data["error"]
        await received(receiver, 1)
        # The daemon still answers while the hung send occupies its target's thread.
        assert (await client.request("status"))["plugins"][0]["name"] == "manual"
        await ctx.set_connection("connected")
        await received(receiver, 2)
        assert receiver.kinds() == ["fired", "resolved"]
    finally:
        for w in held:
            w.close()
        hung.close()
        await hung.wait_closed()


async def test_a_firing_held_by_a_silence_is_still_owed_after_a_restart(
    start_daemon: StartDaemon, config: Config, receiver: Receiver, connect: Connect
) -> None:
    cfg = alerts_config(
        config,
        targets=[receiver.url()],
        rules={"down": rule(**{"for": 0, "remind_every": "0.1s"})},
    )
    daemon, ctx = await start_manual(start_daemon, cfg)
    client = await connect()
    silence = await client.request("silences.add", plugin="manual", duration="1h")
    await ctx.set_connection("error", reason="broken in maintenance")

    def reminders() -> int:
        with sqlite3.connect(cfg.database_path) as conn:
            row = conn.execute("SELECT max(reminders), max(notified) FROM alert_active").fetchone()
        conn.close()
        assert row[1] in (None, 0)  # a reminder held back by the silence tells nobody
        return int(row[0] or 0)

    await wait_until(lambda: reminders() >= 2)
    await client.close()
    await daemon.stop()

    Manual.ctx = None
    await start_daemon(plugins={"manual": Manual}, cfg=cfg)
    assert Manual.ctx is not None
    await Manual.ctx.set_connection("error", reason="still broken")
    client = await connect()
    await client.request("silences.end", id=silence["id"])
    post = (await received(receiver, 1))[0]
    assert post["fields"]["alert"].endswith("#fired-after-silence")
    assert post["fields"]["reason"] == "still broken"


async def test_a_reminder_due_just_after_a_silence_ended_sends_the_firing_it_held_back(
    start_daemon: StartDaemon, config: Config, receiver: Receiver, connect: Connect
) -> None:
    # Found through the test above failing under load: `silences.end` awaits the store and the
    # event before it queues the engine's check that releases held firings, and a reminder
    # already queued runs first; it went out as "reminder n" of a firing the receiver never
    # got, and the firing itself never. Here the silence ends without the check being queued
    # at all, so the next reminder is the one that must release the firing.
    cfg = alerts_config(
        config,
        targets=[receiver.url()],
        rules={"down": rule(**{"for": 0, "remind_every": "0.1s"})},
    )
    daemon, ctx = await start_manual(start_daemon, cfg)
    client = await connect()
    await client.subscribe(["alert:fired", "alert:reminder"])
    silence = await client.request("silences.add", plugin="manual", duration="1h")
    await ctx.set_connection("error", reason="broken in maintenance")
    await next_matching(client, lambda e: e.event == "alert:fired")
    assert daemon.alerts is not None
    assert await daemon.alerts.silences.end(silence["id"]) is not None
    posts = await received(receiver, 2)
    assert posts[0]["fields"]["alert"].endswith("#fired-after-silence")
    assert posts[0]["fields"]["reason"] == "broken in maintenance"
    # Later reminders are reminders again, of the firing now sent.
    assert posts[1]["fields"]["kind"] == "reminder"
    assert receiver.kinds().count("fired") == 1


async def test_notifications_for_a_removed_target_are_kept_as_dropped(
    start_daemon: StartDaemon, config: Config, receiver: Receiver, connect: Connect
) -> None:
    gone = Receiver()  # never started
    cfg = alerts_config(config, targets={"gone": gone.url()}, rules={"down": rule(**{"for": 0})})
    daemon, ctx = await start_manual(start_daemon, cfg)
    await ctx.set_connection("disconnected", reason="x")
    await wait_until(lambda: any(a >= 1 for *_, a in outbox_rows(cfg.database_path)))
    await daemon.stop()

    cfg = alerts_config(config, targets={"new": receiver.url()}, rules={"down": rule(**{"for": 0})})
    await start_manual(start_daemon, cfg)
    client = await connect()
    history = await client.request("alerts.history")
    oldest = history[-1]
    assert (oldest["target"], oldest["kind"], oldest["status"], oldest["url"]) == (
        "gone",
        "fired",
        "dropped",
        "(no longer configured)",
    )
    assert oldest["last_error"] == "target no longer configured"
    assert all(h["target"] == "new" for h in history[:-1])
