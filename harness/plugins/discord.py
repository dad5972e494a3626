"""The Discord plugin: a discord.py bot whose gateway connection the plugin runs itself, so
every attempt, wait and cause is known and reported through ``ctx.set_connection``.

discord.py's own reconnect loop (``Client.connect``) is not used: one supervisor here logs in
over REST with its own retry, opens the gateway with ``DiscordWebSocket.from_client`` (RESUME
when the session allows, else IDENTIFY), reads it, and decides every wait with one backoff."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Any, ClassVar

import aiohttp
import discord
import discord.gateway
import discord.http
import yarl

from harness import __version__
from harness.plugin import Plugin, PluginContext
from harness.plugins.discord_gateway import (
    Cause,
    GatewaySocket,
    HeartbeatWatch,
    ReconnectWebSocket,
    close_cause,
    connect_cause,
    perf_to_epoch,
)
from harness.protocol import Health, SettingField

DISCORD_API = "https://discord.com/api/v10"
DISCORD_GATEWAY = "wss://gateway.discord.gg/"

_LOGIN_TIMEOUT = 15.0
# A 429 without Discord's rate-limit headers comes from Cloudflare: the IP may be banned, and
# every further invalid request makes it worse. Never sooner than this.
_BANNED_WAIT = 900.0


class _Bot(discord.Client):
    """One client per configured token: logged in once, its gateway run by the supervisor."""

    def __init__(self, plugin: DiscordPlugin, ctx: PluginContext, **options: Any) -> None:
        super().__init__(**options)
        self._plugin = plugin
        self._ctx = ctx

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        return None  # every wait before an IDENTIFY is the supervisor's (op 9 included)

    async def on_ready(self) -> None:
        await self._plugin._ready(self._ctx, self)


class _Stop(Exception):
    """The supervisor ends: the connection is in ``error``, for the operator."""


class DiscordPlugin(Plugin):
    name = "discord"
    version = __version__
    description = "A Discord bot (discord.py); reports its gateway connection live."
    settings_schema = (
        SettingField(
            "bot_token",
            "secret",
            label="Bot token",
            required=True,
            description="From the Discord developer portal: Applications → Bot → Reset Token.",
        ),
        SettingField(
            "status_text",
            "string",
            label="Status text",
            default="",
            description="Shown under the bot's name as 'Playing …'; empty for none. Live.",
        ),
        SettingField(
            "members_intent",
            "boolean",
            label="Server members intent",
            default=False,
            description="Privileged: must also be enabled in the developer portal.",
        ),
        SettingField(
            "message_content_intent",
            "boolean",
            label="Message content intent",
            default=False,
            description="Privileged: must also be enabled in the developer portal.",
        ),
        SettingField(
            "api_base_url",
            "string",
            label="API base URL",
            default=DISCORD_API,
            advanced=True,
            description="Discord's REST API. Change only to use a local or proxy gateway.",
        ),
        SettingField(
            "gateway_url",
            "string",
            label="Gateway URL",
            default=DISCORD_GATEWAY,
            advanced=True,
            description="Discord's gateway websocket. As above.",
        ),
        SettingField(
            "max_backoff",
            "integer",
            label="Max retry delay (s)",
            default=60,
            minimum=1,
            maximum=3600,
            advanced=True,
            description="Cap on the wait between attempts, whatever failed (the first retry "
            "comes within 0.25 s; a rate limit Discord sets is waited as Discord says).",
        ),
        SettingField(
            "heartbeat_timeout",
            "integer",
            label="Heartbeat timeout (s)",
            default=60,
            minimum=1,
            maximum=600,
            advanced=True,
            description="How long a gateway that sends nothing at all is trusted before "
            "reconnecting; keep it above the heartbeat interval (about 41 s on Discord). A "
            "missed heartbeat reply is caught sooner, when the next heartbeat falls due.",
        ),
    )

    # Timing knobs that tests and the benchmark shorten; not settings an operator needs.
    guild_ready_timeout: ClassVar[float] = 2.0  # discord.py's wait for more GUILD_CREATEs
    identify_wait: ClassVar[tuple[float, float]] = (1.0, 5.0)  # after op 9 d=false (Discord: 1-5 s)
    ack_warn_after: ClassVar[float] = 5.0  # an ACK this late is shown as overdue
    connect_timeout: ClassVar[float] = 30.0  # one gateway handshake (HELLO + IDENTIFY/RESUME)
    # The backoff: attempt n waits min(max_backoff, backoff_base * 2**(n-1)) x U(0.5, 1), so the
    # first retry comes within 0.25 s (a resume after a drop is near-immediate, as discord.py's
    # was) and the wait doubles to the cap.
    backoff_base: ClassVar[float] = 0.25
    # Presence updates share the gateway's send budget (discord.py holds to 110 a minute and
    # then blocks): at most one per this many seconds; saves in between coalesce into the next.
    presence_interval: ClassVar[float] = 2.0

    def __init__(self) -> None:
        self._client: _Bot | None = None
        self._ws: GatewaySocket | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._presence: asyncio.Task[None] | None = None
        self._presence_wake = asyncio.Event()
        self._token: str | None = None  # the token the running client logged in with
        self._attempt = 0  # real attempts made in the current outage
        self._outage_started: float | None = None  # monotonic; None while connected
        self._connected = False
        self._awaiting_ready = False  # READY came with guilds: connected once they streamed in
        self._presence_text: str | None = None  # what Discord shows now (None: unknown)
        self._identify_text: str | None = None  # what the client's IDENTIFY sends
        self._health = Health()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, ctx: PluginContext) -> None:
        if not ctx.settings["bot_token"]:
            await ctx.set_connection("not_configured", reason="no bot token set", username=None)
            return
        self._attempt = 0
        self._outage_started = None
        self._connected = False
        # The stored name may be another token's bot: unknown until this one identifies.
        await ctx.set_connection("connecting", reason="logging in to Discord", username=None)
        self._supervisor = ctx.create_task(self._supervise(ctx), name="supervisor")
        self._presence = ctx.create_task(self._presence_loop(ctx), name="presence")

    async def stop(self, ctx: PluginContext) -> None:
        for task in (self._supervisor, self._presence):
            if task is not None:
                task.cancel()
                # wait(), not `await task` under suppress(CancelledError): that would also
                # swallow a cancellation of stop() itself, and the host's stop_timeout with it.
                await asyncio.wait([task])
        self._supervisor = self._presence = None
        await self._close_client()
        # The host records `stopped` with its own reason; a new token also ends the identity.
        if self._token is not None and self._token != ctx.settings["bot_token"]:
            await ctx.set_connection("stopped", reason="restarting with a new token", username=None)

    async def apply_settings(self, ctx: PluginContext, changed: frozenset[str]) -> bool:
        if changed != {"status_text"}:
            return False  # anything else needs a new client
        # Never applied here: the host holds the plugin's lock while this runs, and a presence
        # update may wait on Discord's rate limit. The presence task sends the latest value as
        # soon as the connection allows (saves in a burst coalesce: the last one wins).
        self._presence_wake.set()
        return True

    # -- the supervisor ----------------------------------------------------------------------

    async def _supervise(self, ctx: PluginContext) -> None:
        """Log in, then keep the gateway connected until stopped. Every failure of any kind
        goes through ``_retry``: one counter, one backoff, one log line per attempt."""
        s = ctx.settings
        # discord.py has no per-client base URLs; these class attributes are its way in (stable
        # since 2.0, checked by tests/test_discord_internals.py), and one Discord plugin runs
        # per daemon.
        discord.http.Route.BASE = s["api_base_url"].rstrip("/")
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(s["gateway_url"])
        intents = discord.Intents.default()
        intents.members = s["members_intent"]
        intents.message_content = s["message_content_intent"]
        client = _Bot(
            self,
            ctx,
            intents=intents,
            activity=self._activity(ctx),
            heartbeat_timeout=float(s["heartbeat_timeout"]),
            guild_ready_timeout=self.guild_ready_timeout,
        )
        self._client = client
        self._token = s["bot_token"]
        self._identify_text = self._presence_text = s["status_text"]  # IDENTIFY carries it
        try:
            async with client:
                await self._login(ctx, client)
                await self._run_gateway(ctx, client)
        except _Stop:
            return

    async def _login(self, ctx: PluginContext, client: _Bot) -> None:
        token = ctx.settings["bot_token"]
        while True:
            cause = await self._probe_rest(ctx, token)
            if cause is None:
                try:
                    await asyncio.wait_for(client.login(token), _LOGIN_TIMEOUT)
                    return
                except discord.LoginFailure:
                    cause = _token_rejected(401)
                except Exception as exc:
                    cause = connect_cause(exc, "Discord's API")
                    if cause.reason.startswith("unexpected"):
                        ctx.logger.exception("discord: login failed unexpectedly")
            await self._retry(ctx, cause)

    async def _probe_rest(self, ctx: PluginContext, token: str) -> Cause | None:
        """One GET /users/@me of our own before discord.py's login, which would retry 5xx and
        429 by itself, unseen: here each answer becomes a cause with its exact wait."""
        url = f"{ctx.settings['api_base_url'].rstrip('/')}/users/@me"
        headers = {"Authorization": f"Bot {token}", "User-Agent": f"harness/{__version__}"}
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=_LOGIN_TIMEOUT)) as http,
                http.get(url, headers=headers) as response,
            ):
                status = response.status
                if status < 400:
                    return None
                if status == 401:
                    return _token_rejected(401)
                if status == 429:
                    return await _rate_limit_cause(response)
                return Cause(f"cannot reach Discord's API: HTTP {status}", code=status)
        except Exception as exc:
            return connect_cause(exc, "Discord's API")

    async def _run_gateway(self, ctx: PluginContext, client: _Bot) -> None:
        session: str | None = None
        sequence: int | None = None
        gateway: yarl.URL | None = None
        initial = True
        while True:
            resume = session is not None
            try:
                ws = await asyncio.wait_for(
                    GatewaySocket.from_client(
                        client,
                        initial=initial,
                        gateway=gateway if resume else None,
                        session=session,
                        sequence=sequence,
                        resume=resume,
                    ),
                    self.connect_timeout,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                cause = connect_cause(exc)
                if cause.reason.startswith("unexpected"):
                    ctx.logger.exception("discord: gateway connect failed unexpectedly")
                if not cause.resume:
                    session = sequence = gateway = None
                await self._retry(ctx, cause)
                continue
            initial = False
            self._ws = ws
            client.ws = ws  # type: ignore[assignment]  # what Client.connect would do
            try:
                cause = await self._read(ctx, ws, resumed=resume)
            except BaseException:
                self._ws = None
                await _shut(ws)
                raise
            self._ws = None
            if ws.session_id is not None:
                session, sequence, gateway = ws.session_id, ws.sequence, ws.gateway
            if not cause.resume:
                session = sequence = gateway = None
            # Report first: the close handshake below may take a round-trip (or its timeout
            # on a dead link), and the indicator must not wait for it.
            try:
                delay = await self._report(ctx, cause)
            finally:
                await _shut(ws)
            await asyncio.sleep(delay)

    async def _read(self, ctx: PluginContext, ws: GatewaySocket, *, resumed: bool) -> Cause:
        """Read the gateway until it ends; return why. RESUMED/READY are reported from here
        (and from on_ready when guilds stream in), heartbeat health between payloads."""
        watch = HeartbeatWatch(self.ack_warn_after)
        silent_limit = float(ctx.settings["heartbeat_timeout"])
        last_recv = time.monotonic()
        state = "pending"
        while True:
            beat = ws.heartbeat()
            wait = 1.0
            if beat is not None:
                new_state, wait = watch.check(beat, time.perf_counter())
                if new_state == "zombie":
                    ws.closed_by_us = "no heartbeat acknowledged"
                    return Cause("no heartbeat acknowledged")
                if new_state != state and new_state in ("ok", "overdue"):
                    state = new_state
                    self._publish_health(ctx, beat, watch)
            silent = time.monotonic() - last_recv
            if silent >= silent_limit:
                return Cause(f"gateway silent for {silent:.0f} s")
            try:
                msg = await ws.socket.receive(timeout=max(0.05, min(wait, silent_limit - silent)))
            except TimeoutError:
                continue
            last_recv = time.monotonic()
            if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                try:
                    await ws.received_message(msg.data)
                except ReconnectWebSocket:
                    return ws.drop_reason()
                except discord.ConnectionClosed as exc:
                    return close_cause(exc.code)
                except (aiohttp.ClientError, OSError, RuntimeError):
                    return Cause("connection to the gateway lost")
                op = ws.last_op
                if op == 11 and beat is not None:  # HEARTBEAT_ACK: a fresh round-trip time
                    watch.check(beat, time.perf_counter())
                    state = "ok"
                    self._publish_health(ctx, beat, watch)
                elif op == 0 and not self._connected:
                    await self._after_dispatch(ctx, ws, resumed=resumed)
            elif msg.type is aiohttp.WSMsgType.ERROR:
                return Cause("connection to the gateway lost")
            else:  # CLOSE / CLOSING / CLOSED
                if ws.closed_by_us:
                    return Cause(ws.closed_by_us)
                return close_cause(ws.socket.close_code)

    async def _after_dispatch(
        self, ctx: PluginContext, ws: GatewaySocket, *, resumed: bool
    ) -> None:
        client = self._client
        if client is None or self._awaiting_ready:
            return
        if resumed and ws.session_id is not None and client.user is not None:
            # RESUMED or a replayed dispatch: the session is back. discord.py sets nothing we
            # can read for RESUMED alone, but any dispatch after a RESUME means it was accepted.
            await self._report_connected(ctx, None)
            return
        if not resumed and ws.session_id is not None and client.user is not None:
            self._presence_text = self._identify_text  # what IDENTIFY told Discord
            unavailable = [g for g in client.guilds if g.unavailable]
            if unavailable:
                self._awaiting_ready = True
                await ctx.set_connection(
                    "connecting",
                    reason=f"receiving {len(unavailable)} guild(s) from Discord",
                    username=str(client.user),
                    code=None,
                    retry_at=None,
                    attempt=self._next_attempt(),
                )
                return
            await self._report_connected(ctx, str(client.user))

    async def _ready(self, ctx: PluginContext, client: _Bot) -> None:
        """discord.py's on_ready: after READY, once the guilds it listed have streamed in."""
        if self._awaiting_ready:
            self._awaiting_ready = False
            await self._report_connected(ctx, str(client.user))

    async def _retry(self, ctx: PluginContext, cause: Cause) -> None:
        """Report ``cause``, wait, and return for the next attempt; raise _Stop if fatal."""
        await asyncio.sleep(await self._report(ctx, cause))

    async def _report(self, ctx: PluginContext, cause: Cause) -> float:
        """Publish ``cause`` with the next attempt and its time; return the wait before it.
        Raise _Stop if the cause is fatal."""
        was_connected = self._connected
        self._connected = False
        self._awaiting_ready = False
        if self._outage_started is None:
            self._outage_started = time.monotonic()
        if not was_connected and cause is not None:
            self._attempt += 1  # an attempt that failed (a drop of a live link is not one)
        if cause.fatal:
            ctx.logger.error("discord: %s", cause.reason)
            # A rejected token is not the bot we knew: its name must not stay on the error.
            identity = {"username": None} if cause.code in (401, 4004) else {}
            await ctx.set_connection(
                "error",
                reason=cause.reason,
                code=cause.code,
                attempt=None,
                retry_at=None,
                **identity,
            )
            raise _Stop
        n = self._attempt + 1
        if cause.wait is not None:
            delay = cause.wait
        elif cause.identify_again:
            delay = random.uniform(*self.identify_wait)
        else:
            cap = float(ctx.settings["max_backoff"])
            delay = min(cap, self.backoff_base * 2.0 ** min(n - 1, 24)) * random.uniform(0.5, 1)
        retry_at = time.time() + delay
        ctx.logger.warning(
            "discord: %s%s; attempt %d in %.1f s",
            cause.reason,
            f" (code {cause.code})" if cause.code else "",
            n,
            delay,
        )
        state = "connecting" if cause.identify_again else "disconnected"
        await ctx.set_connection(
            state,
            reason=cause.reason,
            code=cause.code,
            attempt=n,
            retry_at=retry_at,
            latency_ms=None,
            drop_ms=None,
        )
        return delay

    def _next_attempt(self) -> int | None:
        return self._attempt + 1 if self._outage_started is not None else None

    async def _report_connected(self, ctx: PluginContext, username: str | None) -> None:
        self._connected = True
        drop_ms = None
        if self._outage_started is not None:
            drop_ms = round((time.monotonic() - self._outage_started) * 1000, 1)
        self._outage_started = None
        self._attempt = 0
        latency = self._latency_ms()
        fields: dict[str, Any] = {
            "reason": None,
            "code": None,
            "attempt": None,
            "retry_at": None,
            "latency_ms": latency,
            "drop_ms": drop_ms,
        }
        if username is not None:
            fields["username"] = username
        ctx.logger.info(
            "discord: connected as %s%s",
            username or (ctx.connection.username if ctx.connection else None),
            f" after a {drop_ms:.0f} ms drop" if drop_ms is not None else "",
        )
        await ctx.set_connection("connected", **fields)
        if self._presence_text != ctx.settings["status_text"]:
            self._presence_wake.set()

    def _latency_ms(self) -> float | None:
        ws = self._ws
        beat = ws.heartbeat() if ws is not None else None
        if beat is None or beat.latency == float("inf"):
            return None
        return round(beat.latency * 1000, 1)

    def _publish_health(self, ctx: PluginContext, beat: Any, watch: HeartbeatWatch) -> None:
        overdue = watch.pending_since if watch.pending_since is not None else None
        health = Health(
            latency_ms=self._latency_ms(),
            ack_overdue_since=round(perf_to_epoch(overdue), 3)
            if overdue is not None and beat._last_ack < overdue
            else None,
            heartbeat_interval=float(beat.interval) if beat.interval else None,
        )
        if health != self._health:
            self._health = health
            ctx.publish_health(health)

    # -- presence (status_text): coalesced, outside the host's lock ------------------------------

    async def _presence_loop(self, ctx: PluginContext) -> None:
        """Send the latest ``status_text`` whenever it differs from what Discord shows and the
        connection is up. A failed send on a live socket falls back to a reconnect (the text
        is sent again once connected), never to an ``error``."""
        while True:
            await self._presence_wake.wait()
            self._presence_wake.clear()
            text = ctx.settings["status_text"]
            client, ws = self._client, self._ws
            if text == self._presence_text or not self._connected or client is None or ws is None:
                continue  # sent after the next connect (see _report_connected)
            try:
                await asyncio.wait_for(client.change_presence(activity=self._activity(ctx)), 10)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                cause = connect_cause(exc)
                ctx.logger.warning(
                    "discord: status text not applied (%s); reconnecting to apply it", cause.reason
                )
                if self._ws is ws and not ws.socket.closed:
                    ws.closed_by_us = "reconnecting to apply the new status text"
                    await _shut(ws)
                continue
            self._presence_text = text
            ctx.logger.info("discord: status text applied")
            await asyncio.sleep(self.presence_interval)

    # -- helpers -----------------------------------------------------------------------------

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None and not client.is_closed():
            # Bounded: a gateway that never answers our close must not hold up a stop.
            with contextlib.suppress(Exception, TimeoutError):
                await asyncio.wait_for(client.close(), 2.0)

    def _activity(self, ctx: PluginContext) -> discord.BaseActivity | None:
        text = ctx.settings["status_text"]
        return discord.Game(name=text) if text else None


def _token_rejected(code: int) -> Cause:
    return Cause(
        "token rejected: set a new one with `harness plugins set discord bot_token=-`",
        code=code,
        fatal=True,
    )


async def _rate_limit_cause(response: aiohttp.ClientResponse) -> Cause:
    """A 429: Discord's (headers and a ``retry_after``) is waited exactly; one without Discord's
    headers is Cloudflare's, maybe an IP ban, and is waited at least 15 minutes."""
    discords = any(h.lower().startswith("x-ratelimit") for h in response.headers)
    retry_after: float | None = None
    is_global = False
    if discords:
        with contextlib.suppress(Exception):
            body = await response.json(content_type=None)
            if isinstance(body, dict):
                retry_after = float(body.get("retry_after"))  # type: ignore[arg-type]
                is_global = bool(body.get("global"))
        if retry_after is None:
            with contextlib.suppress(ValueError, TypeError):
                retry_after = float(response.headers.get("Retry-After", ""))
    if not discords or retry_after is None:
        minutes = _BANNED_WAIT / 60
        return Cause(
            f"HTTP 429 without Discord's rate-limit headers: this IP may be banned by "
            f"Cloudflare; waiting {minutes:.0f} min before trying again",
            code=429,
            wait=_BANNED_WAIT,
        )
    scope = " (global limit)" if is_global else ""
    return Cause(
        f"rate limited by Discord{scope}: retrying after {retry_after:g} s",
        code=429,
        wait=retry_after,
    )


async def _shut(ws: GatewaySocket) -> None:
    """Close a gateway socket with 4000 (never 1000: that would end the session), bounded."""
    beat = ws.heartbeat()
    if beat is not None:
        beat.stop()
    ws._keep_alive = None
    if not ws.socket.closed:
        with contextlib.suppress(Exception, TimeoutError):
            await asyncio.wait_for(ws.socket.close(code=4000), 2.0)
