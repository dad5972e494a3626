"""What `harness alerts` and the log say when the outgoing heartbeat fails, against real
receivers on 127.0.0.1: one that answers 500, one that never answers, a port nobody has."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from harness.alerts.heartbeat import Heartbeat
from tests.alerts_receiver import free_port
from tests.conftest import wait_until

SECRET = "uuid-5f4e3d2c1b0a"


async def failing_with(url: str) -> str:
    beat = Heartbeat(url, every=0.2, timeout=0.2)
    beat.start()
    try:
        await wait_until(lambda: beat.last_error is not None)
    finally:
        await beat.stop()
    assert beat.last_error is not None and SECRET not in beat.last_error
    return beat.last_error


@pytest.fixture
async def answering_500() -> AsyncIterator[int]:
    async def get(request: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    app = web.Application()
    app.router.add_get("/{tail:.*}", get)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield port
    await runner.cleanup()


async def test_a_500_is_said_as_the_servers_answer(answering_500: int) -> None:
    why = await failing_with(f"http://127.0.0.1:{answering_500}/ping/{SECRET}")
    # Before: "RuntimeError: HTTP 500".
    assert why == "the server answered HTTP 500 Internal Server Error"


async def test_no_answer_is_said_with_the_time_waited() -> None:
    held: list[asyncio.StreamWriter] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        why = await failing_with(f"http://127.0.0.1:{port}/ping/{SECRET}")
    finally:
        for w in held:
            w.close()
        server.close()
    # Before: "TimeoutError: " and nothing after it.
    assert why == "no answer within 0.2 s"


async def test_a_refused_connection_is_said_so() -> None:
    why = await failing_with(f"http://127.0.0.1:{free_port()}/ping/{SECRET}")
    assert why.startswith("cannot connect: "), why
    assert "Error" not in why.split(":")[0], why
