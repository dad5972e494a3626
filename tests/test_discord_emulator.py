"""The real discord.py client against harness.discord_emulator.LocalDiscordGateway."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import discord
import discord.gateway
import discord.http
import pytest
import pytest_asyncio
import yarl

from harness.discord_emulator import LocalDiscordGateway
from tests.conftest import HANG_GUARD

pytestmark = pytest.mark.asyncio

TOKEN = "good-token"
REPO_ROOT = Path(__file__).resolve().parent.parent


class ProbeClient(discord.Client):
    """A plain discord.Client that counts lifecycle events and can wait on them."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("intents", discord.Intents.default())
        # on_ready otherwise waits 2 s for guilds that never come.
        options.setdefault("guild_ready_timeout", 0.05)
        super().__init__(**options)
        self.ready_count = 0
        self.resumed_count = 0
        self.disconnect_count = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        # The default sleeps 5 s before every non-initial IDENTIFY.
        return None

    async def on_ready(self) -> None:
        self.ready_count += 1
        self._poke()

    async def on_resumed(self) -> None:
        self.resumed_count += 1
        self._poke()

    async def on_disconnect(self) -> None:
        self.disconnect_count += 1
        self._poke()

    def _poke(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def launch(self, token: str = TOKEN) -> None:
        self._task = asyncio.create_task(self.start(token))
        self._task.add_done_callback(lambda _: self._poke())

    async def wait_until(
        self, predicate: Callable[[ProbeClient], bool], within: float = 5.0
    ) -> None:
        """Wait for predicate(self); fail at once if start() ended first."""
        assert self._task is not None
        async with asyncio.timeout(within):
            while not predicate(self):
                if self._task.done():
                    self._task.result()
                    raise AssertionError("client.start() returned before the condition held")
                await self._changed.wait()

    async def stopped(self, within: float = 5.0) -> BaseException | None:
        """Wait for start() to end on its own; return what it raised."""
        assert self._task is not None
        await asyncio.wait([self._task], timeout=within)
        assert self._task.done(), "client.start() did not end"
        return self._task.exception()

    async def shutdown(self) -> None:
        await self.close()
        if self._task is not None:
            await asyncio.wait([self._task], timeout=5.0)
            if self._task.done():
                # Retrieve it so asyncio does not warn; tests assert on errors themselves.
                self._task.exception()


class ProbeShardedClient(discord.AutoShardedClient):
    def __init__(self, **options: Any) -> None:
        super().__init__(intents=discord.Intents.default(), guild_ready_timeout=0.05, **options)
        self.ready = asyncio.Event()

    async def on_ready(self) -> None:
        self.ready.set()

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        return None


@pytest_asyncio.fixture
async def gateway(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[LocalDiscordGateway]:
    # identify_window=0: these raw clients re-identify at once; the concurrency rule is tested
    # with the plugin in tests/test_discord_shards.py.
    async with LocalDiscordGateway(
        tokens={TOKEN}, bot_name="HarnessBot", discriminator="1234", identify_window=0.0
    ) as gw:
        point_discord_at(monkeypatch, gw.host, gw.port)
        yield gw


def point_discord_at(monkeypatch: pytest.MonkeyPatch, host: str, port: int) -> None:
    # No Client option sets these URLs; monkeypatch restores both class attributes afterwards.
    monkeypatch.setattr(discord.http.Route, "BASE", f"http://{host}:{port}/api/v10")
    monkeypatch.setattr(
        discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(f"ws://{host}:{port}/")
    )


@pytest_asyncio.fixture
async def make_client() -> AsyncIterator[Callable[..., ProbeClient]]:
    clients: list[ProbeClient] = []

    def factory(**options: Any) -> ProbeClient:
        client = ProbeClient(**options)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.shutdown()


async def ready_client(make_client: Callable[..., ProbeClient], **options: Any) -> ProbeClient:
    client = make_client(**options)
    client.launch()
    await client.wait_until(lambda c: c.ready_count == 1)
    return client


async def test_ready_with_bot_identity(
    gateway: LocalDiscordGateway, make_client: Callable[..., ProbeClient]
) -> None:
    client = await ready_client(make_client)
    assert client.user is not None
    assert client.user.name == "HarnessBot"
    assert client.user.discriminator == "1234"
    assert client.user.bot
    assert client.application_id == client.user.id
    assert (gateway.identify_count, gateway.resume_count, gateway.active_sessions) == (1, 0, 1)


async def test_sharded_client_uses_gateway_bot_and_gets_shard_echoed(
    gateway: LocalDiscordGateway,
) -> None:
    # AutoShardedClient asks /gateway/bot for URL and shard count; its READY parser needs `shard`.
    client = ProbeShardedClient()
    task = asyncio.create_task(client.start(TOKEN))
    try:
        async with asyncio.timeout(HANG_GUARD):
            await client.ready.wait()
        assert client.shard_count == 1
        assert client.user is not None and client.user.name == "HarnessBot"
    finally:
        await client.close()
        await asyncio.wait([task], timeout=5)


@pytest.mark.parametrize(
    "disrupt",
    [
        pytest.param(lambda gw: gw.drop(4000), id="close-4000"),
        pytest.param(lambda gw: gw.drop(1000), id="close-1000"),
        pytest.param(lambda gw: gw.drop(1001), id="close-1001"),
        pytest.param(lambda gw: gw.abort(), id="tcp-abort"),
        pytest.param(lambda gw: gw.send_reconnect(), id="op7-reconnect"),
        pytest.param(lambda gw: gw.send_invalid_session(True), id="op9-resumable"),
    ],
)
async def test_disruption_is_resumed(
    gateway: LocalDiscordGateway,
    make_client: Callable[..., ProbeClient],
    disrupt: Callable[[LocalDiscordGateway], Awaitable[None]],
) -> None:
    client = await ready_client(make_client)
    await disrupt(gateway)
    await client.wait_until(lambda c: c.resumed_count == 1)
    assert client.disconnect_count == 1
    assert client.ready_count == 1
    assert client.user is not None and client.user.name == "HarnessBot"
    assert (gateway.identify_count, gateway.resume_count, gateway.connection_count) == (1, 1, 2)
    await gateway.wait_for(lambda gw: gw.active_sessions == 1, timeout=HANG_GUARD)


async def test_non_resumable_invalid_session_identifies_again(
    gateway: LocalDiscordGateway, make_client: Callable[..., ProbeClient]
) -> None:
    client = await ready_client(make_client)
    await gateway.send_invalid_session(False)
    await client.wait_until(lambda c: c.ready_count == 2)
    assert (gateway.identify_count, gateway.resume_count) == (2, 0)
    assert client.resumed_count == 0


async def test_resume_of_expired_session_falls_back_to_identify(
    gateway: LocalDiscordGateway, make_client: Callable[..., ProbeClient]
) -> None:
    client = await ready_client(make_client)
    gateway.expire_sessions()
    await gateway.drop(4000)
    await client.wait_until(lambda c: c.ready_count == 2)
    # The RESUME was tried, answered with op 9 d=false, then a fresh IDENTIFY followed.
    assert (gateway.identify_count, gateway.resume_count) == (2, 1)
    assert client.resumed_count == 0


async def test_reconnects_after_refusal_ends(
    gateway: LocalDiscordGateway, make_client: Callable[..., ProbeClient]
) -> None:
    client = await ready_client(make_client)
    refused_at = time.monotonic()
    await gateway.refuse_connections(1.0)
    assert gateway.refusing
    # REST is refused too, and not served over a pooled keep-alive connection.
    with pytest.raises(aiohttp.ClientConnectorError):
        await client.application_info()
    await gateway.drop(4000)
    # Backoff after a refused attempt is uniform(0, 2) s, then uniform(0, 4) s.
    await client.wait_until(lambda c: c.resumed_count == 1, within=20.0)
    assert time.monotonic() - refused_at >= 1.0
    assert not gateway.refusing
    # One on_disconnect for the drop, one per refused attempt.
    assert client.disconnect_count >= 2
    assert (gateway.identify_count, gateway.resume_count) == (1, 1)


async def test_accept_connections_ends_refusal_early(gateway: LocalDiscordGateway) -> None:
    await gateway.refuse_connections(60)
    await gateway.accept_connections()
    assert not gateway.refusing
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{gateway.api_base_url}/gateway") as response,
    ):
        assert response.status == 200


async def test_bad_token_raises_login_failure(
    gateway: LocalDiscordGateway, make_client: Callable[..., ProbeClient]
) -> None:
    client = make_client()
    client.launch("not-a-token")
    assert isinstance(await client.stopped(), discord.LoginFailure)
    assert gateway.connection_count == 0


async def test_privileged_intents_refused(
    gateway: LocalDiscordGateway, make_client: Callable[..., ProbeClient]
) -> None:
    gateway.require_privileged_intents = True
    intents = discord.Intents.default()
    intents.members = True
    client = make_client(intents=intents)
    client.launch()
    error = await client.stopped()
    assert isinstance(error, discord.PrivilegedIntentsRequired)
    assert gateway.identify_count == 1
    # discord.py raises this one without closing itself: the caller must close the client.
    assert not client.is_closed()


async def test_close_4004_raises_connection_closed(
    gateway: LocalDiscordGateway, make_client: Callable[..., ProbeClient]
) -> None:
    client = await ready_client(make_client)
    await gateway.drop(4004)
    error = await client.stopped()
    assert isinstance(error, discord.ConnectionClosed)
    assert error.code == 4004
    assert client.is_closed()
    assert gateway.resume_count == 0


async def test_revoked_token_fails_the_resume(
    gateway: LocalDiscordGateway, make_client: Callable[..., ProbeClient]
) -> None:
    client = await ready_client(make_client)
    gateway.reject_all_tokens()
    await gateway.drop(4000)
    error = await client.stopped()
    assert isinstance(error, discord.ConnectionClosed)
    assert error.code == 4004
    assert gateway.resume_count == 1


async def test_missing_acks_alone_do_not_trigger_reconnect(
    gateway: LocalDiscordGateway, make_client: Callable[..., ProbeClient]
) -> None:
    # discord.py 2.7.1 never compares ACKs with heartbeats; only silence longer than
    # heartbeat_timeout (default 60 s) counts, so unanswered beats go unnoticed for now.
    gateway.heartbeat_interval = 100
    client = await ready_client(make_client)
    await gateway.pause_heartbeat_acks()
    beats = gateway.heartbeat_count
    await gateway.wait_for(lambda gw: gw.heartbeat_count >= beats + 4, timeout=HANG_GUARD)
    assert client.disconnect_count == 0
    assert gateway.connection_count == 1


async def test_silence_past_heartbeat_timeout_reconnects(
    gateway: LocalDiscordGateway, make_client: Callable[..., ProbeClient]
) -> None:
    gateway.heartbeat_interval = 200
    client = await ready_client(make_client, heartbeat_timeout=1.0)
    await gateway.pause_heartbeat_acks()
    paused_at = time.monotonic()
    await client.wait_until(lambda c: c.resumed_count == 1)
    assert time.monotonic() - paused_at >= 0.8
    await gateway.pause_heartbeat_acks(False)
    assert client.disconnect_count == 1
    assert (gateway.identify_count, gateway.resume_count) == (1, 1)


async def test_rest_contract(gateway: LocalDiscordGateway) -> None:
    base = gateway.api_base_url
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"{base}/users/@me", headers={"Authorization": f"Bot {TOKEN}"}
        ) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "application/json"
            assert response.headers["Connection"] == "close"
        async with session.get(
            f"{base}/users/@me", headers={"Authorization": "Bot nope"}
        ) as response:
            assert response.status == 401
            assert await response.json() == {"message": "401: Unauthorized", "code": 0}
        async with session.get(
            f"{base}/gateway/bot", headers={"Authorization": f"Bot {TOKEN}"}
        ) as response:
            body = await response.json()
            assert body["url"] == f"ws://127.0.0.1:{gateway.port}"
            assert body["shards"] == 1
        async with session.get(f"{base}/channels/1/messages") as response:
            assert response.status == 404
            assert response.headers["Content-Type"] == "application/json"
        async with session.get(f"http://127.0.0.1:{gateway.port}/_control/state") as response:
            # The control API exists only when asked for (process mode).
            assert response.status == 404


async def test_wait_for_times_out(gateway: LocalDiscordGateway) -> None:
    with pytest.raises(TimeoutError):
        await gateway.wait_for(lambda gw: gw.identify_count > 0, timeout=0.05)


async def test_process_mode(
    monkeypatch: pytest.MonkeyPatch, make_client: Callable[..., ProbeClient]
) -> None:
    secret = "process-token-xyz"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "harness.discord_emulator",
        "--port",
        "0",
        "--token",
        secret,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        async with asyncio.timeout(HANG_GUARD):
            line = (await process.stdout.readline()).decode().strip()
        assert line.startswith("listening on http://127.0.0.1:")
        base = line.removeprefix("listening on ")
        port = yarl.URL(base).port
        assert port is not None
        point_discord_at(monkeypatch, "127.0.0.1", port)

        client = make_client()
        client.launch(secret)
        await client.wait_until(lambda c: c.ready_count == 1)
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{base}/_control/drop", params={"code": "4000"}) as response:
                assert response.status == 200
            await client.wait_until(lambda c: c.resumed_count == 1)
            async with session.get(f"{base}/_control/state") as response:
                state = await response.json()
            assert state["identify_count"] == 1
            assert state["resume_count"] == 1
            assert state["active_sessions"] == 1
            async with session.post(
                f"{base}/_control/heartbeat_acks", params={"paused": "maybe"}
            ) as response:
                assert response.status == 400
            # One shard's heartbeats go unanswered; a shard that is not an id is refused.
            async with session.post(
                f"{base}/_control/heartbeat_acks", params={"paused": "true", "shard": "2"}
            ) as response:
                assert response.status == 200
                assert (await response.json())["heartbeat_acks_paused_shards"] == [2]
            async with session.post(
                f"{base}/_control/heartbeat_acks", params={"paused": "false", "shard": "2"}
            ) as response:
                assert (await response.json())["heartbeat_acks_paused_shards"] == []
            async with session.post(
                f"{base}/_control/heartbeat_acks", params={"shard": "-1"}
            ) as response:
                assert response.status == 400
            # An outage in one request: the control API shares the port it closes.
            started = time.monotonic()
            async with session.post(
                f"{base}/_control/outage", params={"seconds": "0.5"}
            ) as response:
                assert response.status == 200
                assert (await response.json())["refusing"] is True
            await client.wait_until(lambda c: c.resumed_count == 2, within=15)
            assert time.monotonic() - started >= 0.5
        await client.shutdown()
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(HANG_GUARD):
            _, stderr = await process.communicate()
    assert process.returncode == 0
    logs = stderr.decode()
    assert "token ok" in logs
    assert "control: drop code=4000" in logs
    assert secret not in logs


async def test_client_missing_its_heartbeat_is_closed() -> None:
    """A raw client that never heartbeats is closed with 4009 once interval + grace pass, and
    its session is gone; frames come as one zlib stream when it asks for zlib-stream."""
    async with (
        LocalDiscordGateway(
            tokens={TOKEN}, heartbeat_interval=200, missed_heartbeat_grace=0.2
        ) as gw,
        aiohttp.ClientSession() as http,
    ):
        url = f"{gw.gateway_url}?v=10&encoding=json&compress=zlib-stream"
        async with http.ws_connect(url) as ws:
            hello = await ws.receive(timeout=HANG_GUARD)
            assert hello.type is aiohttp.WSMsgType.BINARY
            inflate = zlib.decompressobj()
            assert json.loads(inflate.decompress(hello.data))["op"] == 10
            closed = await ws.receive(timeout=HANG_GUARD)
            assert closed.type is aiohttp.WSMsgType.CLOSE and closed.data == 4009
        assert gw.compressed_connections == 1


async def test_rest_faults_answer_as_discord_and_cloudflare_do() -> None:
    async with LocalDiscordGateway(tokens={TOKEN}) as gw, aiohttp.ClientSession() as http:
        me = f"{gw.api_base_url}/users/@me"
        auth = {"Authorization": f"Bot {TOKEN}"}
        gw.fail_rest(503)
        async with http.get(me, headers=auth) as r:
            assert r.status == 503
        gw.fail_rest(None)
        gw.rate_limit_rest(2.0, global_=True)
        async with http.get(me, headers=auth) as r:
            body = await r.json(content_type=None)
            assert r.status == 429 and body["global"] is True and 0 < body["retry_after"] <= 2
            assert r.headers["X-RateLimit-Global"] == "true" and "Retry-After" in r.headers
        gw.rate_limit_rest(2.0, discord_headers=False)
        async with http.get(me, headers=auth) as r:
            assert r.status == 429
            assert not [h for h in r.headers if h.lower().startswith("x-ratelimit")]
        gw.rate_limit_rest(0)
        gw.refuse_gateway(503)
        async with http.get(me, headers=auth) as r:
            assert r.status == 200, "REST stays up while the gateway refuses"
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(gw.gateway_url)
        assert info.value.status == 503
