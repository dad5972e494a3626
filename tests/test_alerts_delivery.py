"""The outbox drains side by side (bounded, each lane in order) and a failing notification is
reported on the stream once, its retries in the log and the metrics. A real in-process daemon,
apprise posting to real HTTP receivers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator

import msgspec
import pytest
from aiohttp import web

from harness.alerts.delivery import SEND_CONCURRENCY
from harness.config import Config, MetricsConfig
from tests.alerts_receiver import Receiver, fields, free_port
from tests.conftest import HANG_GUARD, StartDaemon, wait_until
from tests.test_alerts import Connect, alerts_config, rule, start_manual
from tests.test_metrics import scrape, value

LANES = 6  # rules on one plugin: one firing each, to the same target


class Gathering:
    """A receiver that holds each request until ``want`` are open at once: sends made one
    after another never get there (and the test waiting for it fails at its hang guard).

    No deadline of its own: with one (3 s, under apprise's 4 s read timeout) a loaded machine
    that started the sends more than 3 s apart let the first ones go before the last came,
    and side-by-side sends looked sequential. The sends are told to wait as long (``url``)."""

    def __init__(self, want: int) -> None:
        self.want = want
        self.port = free_port()
        self.open = 0
        self.most_open = 0
        self.posts: list[dict[str, str]] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    async def _post(self, request: web.Request) -> web.Response:
        payload = await request.json()
        async with self._changed:
            self.open += 1
            self.most_open = max(self.most_open, self.open)
            self._changed.notify_all()
            await self._changed.wait_for(lambda: self.most_open >= self.want)
            self.open -= 1
        self.posts.append(fields(payload.get("message", "")))
        return web.json_response({"ok": True})

    def url(self) -> str:
        # apprise's read timeout (4 s) raised to the hang guard: a held send must not give up.
        return f"json://127.0.0.1:{self.port}/hook?rto={HANG_GUARD:g}"

    async def __aenter__(self) -> Gathering:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._post)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


@pytest.fixture
async def gathering() -> AsyncIterator[Gathering]:
    async with Gathering(want=min(4, SEND_CONCURRENCY)) as g:
        yield g


async def test_the_outbox_sends_side_by_side_and_each_lane_in_order(
    start_daemon: StartDaemon, config: Config, gathering: Gathering
) -> None:
    rules = {f"r{n}": rule(**{"for": 0}) for n in range(LANES)}
    cfg = alerts_config(
        config, targets=[gathering.url()], rules=rules, send_timeout=f"{HANG_GUARD:g}s"
    )
    _, ctx = await start_manual(start_daemon, cfg)
    await ctx.set_connection("disconnected", reason="outage")
    await wait_until(lambda: gathering.most_open >= gathering.want)
    await wait_until(lambda: len(gathering.posts) == LANES)
    await ctx.set_connection("connected")
    await wait_until(lambda: len(gathering.posts) == 2 * LANES)
    assert gathering.most_open <= SEND_CONCURRENCY
    for name in rules:  # within a lane: the firing, then its resolve
        kinds = [p["kind"] for p in gathering.posts if p["rule"] == name]
        assert kinds == ["fired", "resolved"], (name, gathering.posts)


async def test_a_failing_notification_is_reported_once_and_its_retries_logged_and_counted(
    start_daemon: StartDaemon,
    config: Config,
    connect: Connect,
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = Receiver()  # never started: connection refused at every attempt
    cfg = alerts_config(config, targets={"flaky": down.url()}, rules={"down": rule(**{"for": 0})})
    cfg = msgspec.structs.replace(cfg, metrics=MetricsConfig(listen="127.0.0.1:0"))
    caplog.set_level(logging.WARNING, logger="harness.alerts.delivery")
    daemon, ctx = await start_manual(start_daemon, cfg)
    client = await connect()
    await ctx.set_connection("disconnected", reason="outage")

    async def attempts() -> int:
        listing = await client.request("alerts.list")
        return int(next(t for t in listing["targets"] if t["name"] == "flaky")["attempts"] or 0)

    async with asyncio.timeout(HANG_GUARD):
        while True:
            if await attempts() >= 4:
                break
            await asyncio.sleep(0.05)
    with sqlite3.connect(cfg.database_path) as db:
        stored = db.execute("SELECT data FROM events WHERE name = 'alert:failed'").fetchall()
    assert len(stored) == 1, stored  # once for the notification, not once per retry
    failed = msgspec.json.decode(stored[0][0])
    assert failed["target"] == "flaky" and failed["attempts"] == 1 and failed["error"]
    retries = [r for r in caplog.records if "failed (attempt" in r.getMessage()]
    assert len(retries) >= 4, [r.getMessage() for r in retries]  # every retry in the log
    assert daemon.metrics is not None and daemon.metrics.address is not None
    samples = await asyncio.to_thread(scrape, daemon.metrics.address[1])
    counted = value(samples, "harness_alert_send_failures_total", target="flaky")
    assert counted is not None and counted >= 4, counted
