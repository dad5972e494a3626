"""A receiver that takes longer than apprise's own 4 s default to answer, within
`send_timeout`: the send counts as delivered, once. A real daemon, apprise posting over real
HTTP to an aiohttp receiver that holds its answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from harness.client import Client
from harness.config import Config
from tests.alerts_receiver import free_port
from tests.conftest import StartDaemon
from tests.sample_plugins import Manual
from tests.test_alerts import alerts_config

Connect = Callable[..., Awaitable[Client]]
HOLD = 5.0  # seconds the receiver takes: over apprise's default read timeout (4 s)


@pytest.fixture
async def slow_receiver() -> AsyncIterator[tuple[int, list[float]]]:
    posts: list[float] = []

    async def post(request: web.Request) -> web.Response:
        await request.read()
        posts.append(asyncio.get_running_loop().time())
        await asyncio.sleep(HOLD)  # the fault: a webhook that is slow to answer
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/{tail:.*}", post)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port, posts
    finally:
        await runner.cleanup()


async def test_a_receiver_slower_than_4_s_within_send_timeout_is_delivered_once(
    start_daemon: StartDaemon,
    config: Config,
    connect: Connect,
    slow_receiver: tuple[int, list[float]],
) -> None:
    port, posts = slow_receiver
    cfg = alerts_config(
        config, targets={"slow": f"json://127.0.0.1:{port}/hook"}, send_timeout="60s"
    )
    Manual.ctx = None
    await start_daemon(plugins={"manual": Manual}, cfg=cfg)
    client = await connect()
    result = await client.request("alerts.test", target="slow")
    # Before: "A Connection error occurred" after 4 s, though the receiver had the post (a
    # notification so sent was counted as failed and retried, arriving again each time).
    assert result["sent"], result
    assert len(posts) == 1
