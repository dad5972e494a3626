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
from collections.abc import Awaitable
from typing import Any, ClassVar, TypeVar

import aiohttp
import discord
import discord.gateway
import discord.http
import msgspec
import yarl

from harness import __version__
from harness.plugin import Plugin, PluginContext
from harness.plugins.discord_gateway import (
    Cause,
    GatewaySocket,
    GuildCounts,
    Handshake,
    HeartbeatWatch,
    ReconnectWebSocket,
    close_cause,
    connect_cause,
    perf_to_epoch,
)
from harness.plugins.discord_shards import MAX_SHARDS, IdentifyGate, ShardMode, parse_shards
from harness.protocol import (
    Health,
    IdentifyBudget,
    Part,
    PartHealth,
    SettingField,
    aggregate_parts,
)

DISCORD_API = "https://discord.com/api/v10"
DISCORD_GATEWAY = "wss://gateway.discord.gg/"

_LOGIN_TIMEOUT = 15.0
# A 429 without Discord's rate-limit headers comes from Cloudflare: the IP may be banned, and
# every further invalid request makes it worse. Never sooner than this.
_BANNED_WAIT = 900.0

_T = TypeVar("_T")
STATUS_TEXT_MAX = 128  # characters in a bot activity's name (the status text)


class _Bot(discord.Client):
    """One client per configured token: logged in once, its gateway run by the supervisor."""

    def __init__(self, plugin: DiscordPlugin, ctx: PluginContext, **options: Any) -> None:
        super().__init__(**options)
        self._plugin = plugin
        self._ctx = ctx

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        # discord.py calls this just before the IDENTIFY goes out: Discord's concurrency rule.
        await self._plugin._before_identify(shard_id)


class _ShardedBot(discord.AutoShardedClient):
    """The sharded client: discord.py's AutoShardedClient for its per-shard state (READY of one
    shard does not clear the others' state; IDENTIFY carries the shard), its shards run by our
    supervisor, one per shard; its own launcher (``connect``) is never called."""

    def __init__(self, plugin: DiscordPlugin, ctx: PluginContext, **options: Any) -> None:
        super().__init__(**options)
        self._plugin = plugin
        self._ctx = ctx

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        # discord.py calls this just before the IDENTIFY goes out: Discord's concurrency rule.
        await self._plugin._before_identify(shard_id)


class _Shard:
    """One gateway session's truth for the supervisor: its own attempt counter, outage start,
    socket and health. ``id`` None is the unsharded connection (and the login, which comes
    before any shard)."""

    def __init__(self, shard_id: int | None) -> None:
        self.id = shard_id
        self.attempt = 0  # real attempts made in the current outage
        self.outage_started: float | None = None  # monotonic; None while connected
        self.connected = False
        self.awaiting_ready = False  # READY came with guilds: connected once they streamed in
        self.ws: GatewaySocket | None = None
        self.health = Health()
        # The last failure and the state it was reported in: an attempt that starts after it
        # is published with them (the state and cause hold until the attempt says otherwise).
        self.cause: Cause | None = None
        self.waiting_state = "disconnected"
        self.part = Part(
            id=str(shard_id), state="connecting", since=time.time(), reason="waiting to identify"
        )


class _Reshard(Exception):
    """A shard was closed with 4011 while ``shards=auto``: start again with Discord's count."""


class _Stop(Exception):
    """The supervisor ends: the connection is in ``error``, for the operator."""


class DiscordPlugin(Plugin):
    name = "discord"
    version = __version__
    description = "A Discord bot (discord.py); reports its gateway connection live."
    settings_schema: ClassVar[tuple[SettingField, ...]] = (
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
            # Discord's bound on an activity's name (JDA's MAX_ACTIVITY_NAME_LENGTH, and what
            # bots such as Red cap it at): a longer one is not shown.
            max_length=STATUS_TEXT_MAX,
            description="Shown under the bot's name as 'Playing …'; empty for none; at most "
            f"{STATUS_TEXT_MAX} characters (Discord's limit). Live.",
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
            "reconnecting; less than two heartbeat intervals (about 41 s each on Discord) "
            "counts as two. A "
            "missed heartbeat reply is caught sooner, when the next heartbeat falls due.",
        ),
    )

    settings_schema = (
        *settings_schema,
        SettingField(
            "shards",
            "string",
            label="Shards",
            default="off",
            max_length=8,
            keywords=("off", "auto"),
            minimum=1,
            maximum=MAX_SHARDS,
            advanced=True,
            description="Gateway shards: off (one connection), auto (Discord's recommended "
            f"count; a 'sharding required' close re-shards by itself) or a number 1..{MAX_SHARDS}. "
            "Needed past ~2,500 servers.",
        ),
        SettingField(
            "identify_floor",
            "integer",
            label="Identify floor (%)",
            default=5,
            minimum=0,
            maximum=100,
            advanced=True,
            description="Stop starting new gateway sessions (IDENTIFY) when fewer than this "
            "share of Discord's daily budget is left; resumes go on. Discord resets a token "
            "that exceeds the budget.",
        ),
    )

    # Timing knobs that tests and the benchmark shorten; not settings an operator needs.
    # After READY, how long without a GUILD_CREATE before the listed guilds still missing are
    # taken as unavailable and the shard as connected (discord.py's own wait, kept by the plugin
    # now that guild payloads stop at GuildCounts).
    guild_ready_timeout: ClassVar[float] = 2.0
    identify_wait: ClassVar[tuple[float, float]] = (1.0, 5.0)  # after op 9 d=false (Discord: 1-5 s)
    ack_warn_after: ClassVar[float] = 5.0  # an ACK this late is shown as overdue
    # One gateway handshake (upgrade, HELLO, IDENTIFY/RESUME sent): @discordjs/ws's default too.
    connect_timeout: ClassVar[float] = 30.0
    # An attempt still under way after this long is published as such (_attempt).
    attempt_grace: ClassVar[float] = 0.5
    # The backoff: attempt n waits min(max_backoff, backoff_base * 2**(n-1)) x U(0.5, 1), so the
    # first retry comes within 0.25 s (a resume after a drop is near-immediate, as discord.py's
    # was) and the wait doubles to the cap.
    backoff_base: ClassVar[float] = 0.25
    # Presence updates share the gateway's send budget (discord.py holds to 110 a minute and
    # then blocks): at most one per this many seconds; saves in between coalesce into the next.
    presence_interval: ClassVar[float] = 2.0
    # Discord lets each max_concurrency bucket IDENTIFY once per this many seconds.
    identify_interval: ClassVar[float] = 5.0
    # Added to it: Discord times an IDENTIFY when it reads it, and two sent exactly 5 s apart
    # can be read closer than that (the first one delayed on the way, the next one not): one
    # too soon costs an op 9 and a 1-5 s wait. Seen on the local gateway under load.
    identify_margin: ClassVar[float] = 0.25

    def __init__(self) -> None:
        self._client: _Bot | _ShardedBot | None = None
        self._guilds: GuildCounts | None = None  # per-shard guild counts of self._client
        self._supervisor: asyncio.Task[None] | None = None
        self._presence: asyncio.Task[None] | None = None
        self._presence_wake = asyncio.Event()
        self._token: str | None = None  # the token the running client logged in with
        self._main = _Shard(None)  # the login, and the gateway when not sharded
        self._shards: dict[int, _Shard] = {}  # when sharded
        self._mode: ShardMode = None
        self._publish_lock = asyncio.Lock()  # parts are published in the order they change
        self._budget_lock = asyncio.Lock()
        self._budget: dict[str, Any] | None = None  # session_start_limit, as last read
        self._budget_read_at = 0.0
        self._floor_pct = 5
        self._gate: IdentifyGate | None = None
        self._presence_text: str | None = None  # what Discord shows now (None: unknown)
        self._identify_text: str | None = None  # what the client's IDENTIFY sends
        self._health = Health()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, ctx: PluginContext) -> None:
        if not ctx.settings["bot_token"]:
            await ctx.set_connection("not_configured", reason="no bot token set", username=None)
            return
        try:
            self._mode = parse_shards(ctx.settings["shards"])
        except ValueError as exc:
            await ctx.set_connection("error", reason=str(exc), username=None)
            return
        self._main = _Shard(None)
        self._shards = {}
        self._budget = None  # read anew by every start
        self._floor_pct = int(ctx.settings["identify_floor"])  # a change restarts the plugin
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

    @property
    def _connected(self) -> bool:
        if self._mode is None:
            return self._main.connected
        return bool(self._shards) and all(sh.connected for sh in self._shards.values())

    async def _supervise(self, ctx: PluginContext) -> None:
        """Log in, then keep the gateway connected until stopped. Every failure of any kind
        goes through ``_retry``: one counter, one backoff, one log line per attempt — per shard
        when sharded. A 4011 under ``shards=auto`` starts over with Discord's new count."""
        s = ctx.settings
        # discord.py has no per-client base URLs; these class attributes are its way in (stable
        # since 2.0, checked by tests/test_discord_internals.py), and one Discord plugin runs
        # per daemon.
        discord.http.Route.BASE = s["api_base_url"].rstrip("/")
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(s["gateway_url"])
        at_least = 1
        while True:
            try:
                await self._run_client(ctx, at_least)
                return
            except _Stop:
                return
            except _Reshard:
                at_least = len(self._shards) + 1
                ctx.logger.warning("discord: sharding required (4011): re-sharding")
                await self._close_client()

    async def _run_client(self, ctx: PluginContext, at_least: int) -> None:
        s = ctx.settings
        intents = discord.Intents.default()
        intents.members = s["members_intent"]
        intents.message_content = s["message_content_intent"]
        options: dict[str, Any] = {
            "intents": intents,
            "activity": self._activity(ctx),
            "heartbeat_timeout": float(s["heartbeat_timeout"]),
            "guild_ready_timeout": self.guild_ready_timeout,
        }
        client: _Bot | _ShardedBot
        if self._mode is None:
            client = _Bot(self, ctx, **options)
        else:
            client = _ShardedBot(self, ctx, shard_count=1, **options)
        self._client = client
        self._guilds = GuildCounts(client, sharded=self._mode is not None)
        self._token = s["bot_token"]
        self._identify_text = self._presence_text = s["status_text"]  # IDENTIFY carries it
        try:
            async with client:
                await self._login(ctx, client)
                if self._mode is None:
                    # One session still has Discord's budget and its 5 s between IDENTIFYs.
                    _recommended, concurrency = await self._read_gateway_bot(ctx, client)
                    self._gate = IdentifyGate(concurrency, self._identify_spacing, self._gate)
                    await self._run_gateway(ctx, client, self._main)
                    return
                count, concurrency = await self._plan_shards(ctx, client, at_least)
                assert isinstance(client, _ShardedBot)
                client.shard_count = count
                client._connection.shard_count = count
                client._connection.shard_ids = list(range(count))
                self._gate = IdentifyGate(concurrency, self._identify_spacing, self._gate)
                self._shards = {n: _Shard(n) for n in range(count)}
                await self._publish_parts(ctx, None)
                ctx.logger.info(
                    "discord: starting %d shard(s), %d at a time every %.2f s",
                    count,
                    concurrency,
                    self._identify_spacing,
                )
                try:
                    async with asyncio.TaskGroup() as group:
                        for shard in self._shards.values():
                            group.create_task(self._run_gateway(ctx, client, shard))
                except* _Reshard:
                    raise _Reshard from None
                except* _Stop:
                    raise _Stop from None
        finally:
            _cancel_ready(client)

    async def _read_gateway_bot(
        self, ctx: PluginContext, client: discord.Client
    ) -> tuple[int, int]:
        """``/gateway/bot``: Discord's recommended shard count and how many sessions may
        IDENTIFY at once; notes the identify budget (``session_start_limit``) on the way."""
        while True:
            try:
                async with asyncio.timeout(_LOGIN_TIMEOUT):
                    recommended, _url, limit = await self._attempt(
                        ctx,
                        self._main,
                        "asking Discord's API for the gateway",
                        client.http.get_bot_gateway(),
                    )
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._retry(ctx, self._main, connect_cause(exc, "Discord's API"))
        self._note_budget(dict(limit))
        return int(recommended), max(1, int(limit.get("max_concurrency", 1) or 1))

    async def _plan_shards(
        self, ctx: PluginContext, client: discord.Client, at_least: int
    ) -> tuple[int, int]:
        """How many shards, and how many may IDENTIFY at once."""
        recommended, concurrency = await self._read_gateway_bot(ctx, client)
        if self._mode == "auto":
            return max(int(recommended), at_least), concurrency
        assert isinstance(self._mode, int)
        return self._mode, concurrency

    def _note_budget(self, limit: dict[str, Any]) -> None:
        self._budget = limit
        self._budget_read_at = time.time()

    async def _login(self, ctx: PluginContext, client: discord.Client) -> None:
        token = ctx.settings["bot_token"]
        while True:
            step = "logging in to Discord's API"
            cause = await self._attempt(ctx, self._main, step, self._login_once(ctx, client, token))
            if cause is None:
                return
            await self._retry(ctx, self._main, cause)

    async def _login_once(
        self, ctx: PluginContext, client: discord.Client, token: str
    ) -> Cause | None:
        cause = await self._probe_rest(ctx, token)
        if cause is not None:
            return cause
        try:
            async with asyncio.timeout(_LOGIN_TIMEOUT):
                await client.login(token)
            return None
        except discord.LoginFailure:
            return _token_rejected(401)
        except Exception as exc:
            cause = connect_cause(exc, "Discord's API")
            if cause.reason.startswith("unexpected"):
                ctx.logger.exception("discord: login failed unexpectedly")
            return cause

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

    async def _run_gateway(self, ctx: PluginContext, client: discord.Client, shard: _Shard) -> None:
        session: str | None = None
        sequence: int | None = None
        gateway: yarl.URL | None = None
        initial = True
        while True:
            resume = session is not None
            if not resume:
                await self._within_budget(ctx, client, shard)
                if self._budget is not None:  # booked before the gate: no burst past the floor
                    self._budget["remaining"] = max(0, int(self._budget["remaining"]) - 1)
                if self._gate is not None:
                    # Discord's concurrency rule: one IDENTIFY per bucket per identify_interval;
                    # the booking here orders the start, _before_identify holds the send.
                    await self._gate.wait(shard.id)
            step = "connecting to the gateway" + (" to resume" if resume else "")
            progress = Handshake()
            # Ours, not discord.py's: its own waits for the upgrade and HELLO are a minute or
            # none. A gateway that takes the TCP connection and then says nothing (stopped,
            # overloaded) is abandoned after connect_timeout, with where it stopped answering.
            deadline = asyncio.timeout(self.connect_timeout)
            try:
                # asyncio.timeout, never wait_for, in this plugin: on Python 3.11 wait_for loses a
                # cancellation that lands as the awaited call completes, and this loop then ran
                # on after a stop, forever (a stop that never ends; docs/plugins.md).
                async with deadline:
                    ws = await self._attempt(
                        ctx,
                        shard,
                        step,
                        GatewaySocket.from_client(
                            client,
                            progress=progress,
                            initial=initial,
                            gateway=gateway if resume else None,
                            shard_id=shard.id,
                            session=session,
                            sequence=sequence,
                            resume=resume,
                        ),
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if isinstance(exc, TimeoutError) and deadline.expired():
                    cause = progress.timed_out(self.connect_timeout)
                else:
                    cause = connect_cause(exc)
                if cause.reason.startswith("unexpected"):
                    ctx.logger.exception("discord: gateway connect failed unexpectedly")
                if not cause.resume:
                    session = sequence = gateway = None
                await self._retry(ctx, shard, cause)
                continue
            initial = False
            shard.ws = ws
            if shard.id is None:
                client.ws = ws  # type: ignore[assignment]  # what Client.connect would do
            try:
                cause = await self._read(ctx, shard, ws, resumed=resume)
            except BaseException:
                # A stop, a re-shard or a crash: nothing resumes this session, so end it with a
                # normal close and Discord shows the bot offline now, not after the session
                # times out (a stale "online" is the lie the indicator exists to avoid).
                shard.ws = None
                await _shut(ws, code=1000)
                raise
            shard.ws = None
            if ws.session_id is not None:
                session, sequence, gateway = ws.session_id, ws.sequence, ws.gateway
            if not cause.resume:
                session = sequence = gateway = None
            # Report first: the close handshake below may take a round-trip (or its timeout
            # on a dead link), and the indicator must not wait for it.
            try:
                delay = await self._report(ctx, shard, cause)
            finally:
                await _shut(ws)
            await asyncio.sleep(delay)

    async def _read(
        self, ctx: PluginContext, shard: _Shard, ws: GatewaySocket, *, resumed: bool
    ) -> Cause:
        """Read the gateway until it ends; return why. RESUMED/READY are reported from here
        (READY with guilds once they have streamed in), heartbeat health between payloads."""
        watch = HeartbeatWatch(self.ack_warn_after)
        silent_limit = float(ctx.settings["heartbeat_timeout"])
        last_recv = time.monotonic()
        state = "pending"
        while True:
            beat = ws.heartbeat()
            wait = 1.0
            if beat is not None:
                # A gateway that only ACKs is silent for most of each heartbeat interval: a
                # limit below two intervals would drop a healthy link at every pause, forever.
                floor = 2.0 * float(beat.interval or 0)
                if silent_limit < floor:
                    silent_limit = beat.heartbeat_timeout = floor  # discord.py's thread too
                new_state, wait = watch.check(ws, time.perf_counter())
                if new_state == "zombie":
                    ws.closed_by_us = "no heartbeat acknowledged"
                    return Cause("no heartbeat acknowledged")
                if new_state != state and new_state in ("ok", "overdue"):
                    state = new_state
                    self._publish_health(ctx, shard, beat, watch)
            ready_in = await self._guilds_in(ctx, shard)
            if ready_in is not None:
                wait = min(wait, ready_in)
            silent = time.monotonic() - last_recv
            if silent >= silent_limit:
                return Cause(f"gateway silent for {silent:.0f} s")
            try:
                if _queued(ws):
                    msg = await ws.socket.receive()  # one is already in: no timer to arm
                else:
                    msg = await ws.socket.receive(
                        timeout=max(0.05, min(wait, silent_limit - silent))
                    )
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
                    watch.check(ws, time.perf_counter())
                    state = "ok"
                    self._publish_health(ctx, shard, beat, watch)
                elif op == 0 and not shard.connected:
                    await self._after_dispatch(ctx, shard, ws, resumed=resumed)
            elif msg.type is aiohttp.WSMsgType.ERROR:
                return Cause("connection to the gateway lost")
            else:  # CLOSE / CLOSING / CLOSED
                if ws.closed_by_us:
                    return Cause(ws.closed_by_us)
                return close_cause(ws.socket.close_code)

    async def _after_dispatch(
        self, ctx: PluginContext, shard: _Shard, ws: GatewaySocket, *, resumed: bool
    ) -> None:
        client = self._client
        if client is None or shard.awaiting_ready:
            return
        if resumed and ws.session_id is not None and client.user is not None:
            # RESUMED or a replayed dispatch: the session is back. discord.py sets nothing we
            # can read for RESUMED alone, but any dispatch after a RESUME means it was accepted.
            await self._report_connected(ctx, shard, None)
            return
        if not resumed and ws.session_id is not None and client.user is not None:
            self._presence_text = self._identify_text  # what IDENTIFY told Discord
            unavailable = self._guilds.pending(shard.id) if self._guilds is not None else 0
            if unavailable:
                shard.awaiting_ready = True
                await self._set(
                    ctx,
                    shard,
                    "connecting",
                    reason=f"receiving {unavailable} guild(s) from Discord",
                    username=str(client.user),
                    code=None,
                    retry_at=None,
                    attempt=self._next_attempt(shard),
                )
                return
            await self._report_connected(ctx, shard, str(client.user))

    async def _guilds_in(self, ctx: PluginContext, shard: _Shard) -> float | None:
        """While a shard receives the guilds READY listed: report it connected once they are all
        in, or once none came for ``guild_ready_timeout`` (Discord may keep some unavailable,
        as discord.py's own wait assumes). Returns how long until that wait ends (None: not
        waiting)."""
        guilds = self._guilds
        client = self._client
        if not shard.awaiting_ready or guilds is None or client is None:
            return None
        left = self.guild_ready_timeout - guilds.quiet_for(shard.id)
        if guilds.pending(shard.id) and left > 0:
            return left
        shard.awaiting_ready = False
        await self._report_connected(ctx, shard, str(client.user))
        return None

    @property
    def _identify_spacing(self) -> float:
        return self.identify_interval + self.identify_margin

    async def _before_identify(self, shard_id: int | None) -> None:
        gate = self._gate
        if gate is not None:
            await gate.sending(shard_id)

    async def _retry(self, ctx: PluginContext, shard: _Shard, cause: Cause) -> None:
        """Report ``cause``, wait, and return for the next attempt; raise _Stop if fatal."""
        await asyncio.sleep(await self._report(ctx, shard, cause))

    def _sharding_cause(self, cause: Cause) -> Cause:
        """4011 in words that say which setting to change (or, with ``auto``, a re-shard)."""
        if self._mode == "auto":
            raise _Reshard
        if self._mode is None:
            return cause  # the close code table says to shard, and how
        return Cause(
            f"sharding required (4011): {self._mode} shard(s) are too few for this bot: set "
            "`harness plugins set discord shards=auto` or a larger number",
            code=4011,
            fatal=True,
        )

    async def _report(self, ctx: PluginContext, shard: _Shard, cause: Cause) -> float:
        """Publish ``cause`` with the next attempt and its time; return the wait before it.
        Raise _Stop if the cause is fatal (_Reshard for a 4011 under ``shards=auto``)."""
        if cause.code == 4011:
            cause = self._sharding_cause(cause)
        was_connected = shard.connected
        shard.connected = False
        shard.awaiting_ready = False
        shard.health = Health()  # a dead link's round-trip is no longer true
        if shard.id is not None and self._health.parts:
            # Said now, not at the next ACK of another shard or of this shard's next link: an
            # overdue ACK of this link is over, in the aggregate and in what the daemon answers.
            self._publish_shards_health(ctx, self._health.heartbeat_interval)
        if shard.outage_started is None:
            shard.outage_started = time.monotonic()
        if not was_connected and cause is not None:
            shard.attempt += 1  # an attempt that failed (a drop of a live link is not one)
        label = "" if shard.id is None else f"shard {shard.id}: "
        if cause.fatal:
            ctx.logger.error("discord: %s%s", label, cause.reason)
            # A rejected token is not the bot we knew: its name must not stay on the error.
            identity = {"username": None} if cause.code in (401, 4004) else {}
            if shard.id is not None:
                # One shard's fatal cause ends them all: the others are stopped with it.
                for other in self._shards.values():
                    if other is not shard:
                        other.part = _part(
                            other.part, "stopped", reason=f"stopped with shard {shard.id}"
                        )
                shard.part = _part(shard.part, "error", reason=cause.reason, code=cause.code)
            await ctx.set_connection(
                "error",
                reason=cause.reason,
                code=cause.code,
                attempt=None,
                retry_at=None,
                **identity,
                **self._parts_fields(),
            )
            raise _Stop
        n = shard.attempt + 1
        if cause.wait is not None:
            delay = cause.wait
        elif cause.identify_again:
            delay = random.uniform(*self.identify_wait)
        else:
            cap = float(ctx.settings["max_backoff"])
            delay = min(cap, self.backoff_base * 2.0 ** min(n - 1, 24)) * random.uniform(0.5, 1)
        retry_at = time.time() + delay
        ctx.logger.warning(
            "discord: %s%s%s; attempt %d in %.1f s",
            label,
            cause.reason,
            f" (code {cause.code})" if cause.code else "",
            n,
            delay,
        )
        state = "connecting" if cause.identify_again else "disconnected"
        shard.cause, shard.waiting_state = cause, state
        await self._set(
            ctx,
            shard,
            state,
            reason=cause.reason,
            code=cause.code,
            attempt=n,
            retry_at=retry_at,
            latency_ms=None,
            drop_ms=None,
        )
        return delay

    async def _attempt(
        self, ctx: PluginContext, shard: _Shard, step: str, work: Awaitable[_T]
    ) -> _T:
        """Run one attempt of ``shard``'s outage (``work``) and return what it returns. One
        still under way after ``attempt_grace`` is said, with its number, start and ``step``
        (what it does): until it ends that is the truth, where the countdown to it, run out,
        said "retrying now" for as long as the attempt hung (up to its timeout). A quick one
        says nothing: "retrying now" was true, and a flapping link adds no events. The attempt
        runs in a task of its own so that this is said in order, between the wait's report
        and the attempt's outcome, from the supervisor itself."""
        started = time.time()
        task = asyncio.ensure_future(work)
        try:
            if shard.outage_started is not None and shard.cause is not None:
                done, _ = await asyncio.wait({task}, timeout=self.attempt_grace)
                if not done:
                    await self._attempting(ctx, shard, step, started)
            return await task
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
            if not task.cancelled():
                # Retrieved also when this was cancelled just as the attempt failed: an
                # abandoned attempt's end is moot, and asyncio would log it as never retrieved.
                task.exception()

    async def _attempting(
        self, ctx: PluginContext, shard: _Shard, step: str, started: float
    ) -> None:
        cause = shard.cause
        assert cause is not None
        await self._set(
            ctx,
            shard,
            shard.waiting_state,
            reason=cause.reason,
            code=cause.code,
            attempt=shard.attempt + 1,
            retry_at=None,
            latency_ms=None,
            drop_ms=None,
            attempt_started=round(started, 3),
            attempt_step=step,
        )

    def _next_attempt(self, shard: _Shard) -> int | None:
        return shard.attempt + 1 if shard.outage_started is not None else None

    async def _report_connected(
        self, ctx: PluginContext, shard: _Shard, username: str | None
    ) -> None:
        was_all = self._connected
        shard.connected = True
        drop_ms = None
        if shard.outage_started is not None:
            drop_ms = round((time.monotonic() - shard.outage_started) * 1000, 1)
        shard.outage_started = None
        shard.attempt = 0
        shard.cause = None
        latency = self._latency_ms(shard)
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
            "discord: %sconnected as %s%s",
            "" if shard.id is None else f"shard {shard.id}: ",
            username or (ctx.connection.username if ctx.connection else None),
            f" after a {drop_ms:.0f} ms drop" if drop_ms is not None else "",
        )
        await self._set(ctx, shard, "connected", **fields)
        if self._connected and not was_all and self._presence_text != ctx.settings["status_text"]:
            self._presence_wake.set()

    async def _set(self, ctx: PluginContext, shard: _Shard, state: str, **fields: Any) -> None:
        """Report one shard's change: the connection itself when unsharded; else that shard's
        part, and the aggregate of all parts (docs/protocol.md)."""
        if shard.id is None:
            await ctx.set_connection(state, **fields, **self._parts_fields())
            return
        guilds = None
        if self._guilds is not None and state == "connected":
            guilds = self._guilds.count(shard.id)
        shard.part = _part(
            shard.part,
            state,
            reason=fields.get("reason"),
            code=fields.get("code"),
            attempt=fields.get("attempt"),
            retry_at=fields.get("retry_at"),
            latency_ms=fields.get("latency_ms"),
            guilds=guilds if guilds is not None else shard.part.guilds,
            attempt_started=fields.get("attempt_started"),
            attempt_step=fields.get("attempt_step"),
        )
        identity = {"username": fields["username"]} if "username" in fields else {}
        await self._publish_parts(ctx, identity)

    async def _publish_parts(self, ctx: PluginContext, identity: dict[str, Any] | None) -> None:
        async with self._publish_lock:
            parts = [sh.part for sh in self._shards.values()]
            state, reason = aggregate_parts(parts, "shards")
            waiting = [p for p in parts if p.retry_at is not None]
            first = min(waiting, key=lambda p: p.retry_at or 0.0) if waiting else None
            # With none waiting: the attempt under way that began first, for the headline.
            trying = [p for p in parts if p.attempt_started is not None]
            oldest = min(trying, key=lambda p: p.attempt_started or 0.0) if trying else None
            under_way = oldest if first is None else None
            latencies = [p.latency_ms for p in parts if p.latency_ms is not None]
            await ctx.set_connection(
                state,
                reason=reason,
                retry_at=first.retry_at if first is not None else None,
                attempt=first.attempt
                if first is not None
                else (under_way.attempt if under_way is not None else None),
                attempt_started=under_way.attempt_started if under_way is not None else None,
                attempt_step=under_way.attempt_step if under_way is not None else None,
                latency_ms=round(sum(latencies) / len(latencies), 1) if latencies else None,
                **(identity or {}),
                **self._parts_fields(),
            )

    def _parts_fields(self) -> dict[str, Any]:
        """The parts and the identify budget, for every connection the plugin publishes."""
        out: dict[str, Any] = {}
        if self._shards:
            out["parts"] = [sh.part for sh in self._shards.values()]
        if self._budget is not None:
            out["extra"] = {"identify_budget": msgspec.to_builtins(self._budget_view())}
        return out

    async def _within_budget(
        self, ctx: PluginContext, client: discord.Client, shard: _Shard
    ) -> None:
        """Return when this shard may IDENTIFY: while the budget is at its floor, say why and
        until when, and wait for Discord's reset (a RESUME never comes here)."""
        while self._budget is not None:
            view = self._budget_view()
            pct, floor = self._floor_pct, view.floor
            if floor is None or view.remaining > floor:
                return
            now = time.time()
            if now >= view.resets_at:
                read_at = self._budget_read_at
                async with self._budget_lock:  # one shard reads it anew for all
                    if self._budget_read_at != read_at:
                        continue
                    try:
                        async with asyncio.timeout(_LOGIN_TIMEOUT):
                            _n, _url, limit = await client.http.get_bot_gateway()
                        self._note_budget(dict(limit))
                        continue
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        # Read it again in a minute.
                        self._budget["reset_after"] = 60_000
                        self._budget_read_at = now
                        view = self._budget_view()
            until = view.resets_at
            reason = (
                f"identify budget at its floor: {view.remaining}/{view.total} left "
                f"(floor {floor}, identify_floor={pct}%); no new session until "
                f"{time.strftime('%H:%M', time.localtime(until))}, resumes go on"
            )
            ctx.logger.warning(
                "discord: %s%s", "" if shard.id is None else f"shard {shard.id}: ", reason
            )
            await self._set(
                ctx,
                shard,
                "disconnected",
                reason=reason,
                code=None,
                attempt=None,
                retry_at=until,
                latency_ms=None,
                drop_ms=None,
            )
            await asyncio.sleep(max(0.05, min(until - now, 3600.0)))

    def _budget_view(self) -> IdentifyBudget:
        b = self._budget or {}
        reset_after = float(b.get("reset_after", 0) or 0) / 1000
        total = int(b.get("total", 0) or 0)
        return IdentifyBudget(
            total=total,
            remaining=int(b.get("remaining", 0) or 0),
            resets_at=round(self._budget_read_at + reset_after, 3),
            max_concurrency=int(b.get("max_concurrency", 1) or 1),
            # Said with the budget, so a client can tell when new sessions wait for the reset.
            floor=-(-total * self._floor_pct // 100),
        )

    def _latency_ms(self, shard: _Shard) -> float | None:
        ws = shard.ws
        latency = ws.round_trip() if ws is not None else None
        return round(latency * 1000, 1) if latency is not None else None

    def _publish_health(
        self, ctx: PluginContext, shard: _Shard, beat: Any, watch: HeartbeatWatch
    ) -> None:
        overdue = watch.pending_since if watch.pending_since is not None else None
        health = Health(
            latency_ms=self._latency_ms(shard),
            ack_overdue_since=round(perf_to_epoch(overdue), 3)
            if overdue is not None and (shard.ws is None or (shard.ws.beat_acked or 0) < overdue)
            else None,
            heartbeat_interval=float(beat.interval) if beat.interval else None,
        )
        shard.health = health
        if shard.id is not None:
            self._publish_shards_health(ctx, health.heartbeat_interval)
        elif health != self._health:
            self._health = health
            ctx.publish_health(health)

    def _publish_shards_health(self, ctx: PluginContext, interval: float | None) -> None:
        """Each shard's own health, live, in `parts`; on top, one for the plugin's headline:
        the mean round-trip, the oldest overdue heartbeat. Published when it changes."""
        healths = [sh.health for sh in self._shards.values()]
        lat = [h.latency_ms for h in healths if h.latency_ms is not None]
        overdue_at = [h.ack_overdue_since for h in healths if h.ack_overdue_since is not None]
        health = Health(
            latency_ms=round(sum(lat) / len(lat), 1) if lat else None,
            ack_overdue_since=min(overdue_at) if overdue_at else None,
            heartbeat_interval=interval,
            parts=[
                PartHealth(
                    id=str(sh.id),
                    latency_ms=sh.health.latency_ms,
                    ack_overdue_since=sh.health.ack_overdue_since,
                )
                for sh in self._shards.values()
            ],
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
            client = self._client
            shards = [self._main] if self._mode is None else list(self._shards.values())
            sockets = [sh.ws for sh in shards]
            if text == self._presence_text or not self._connected or client is None:
                continue  # sent after the next connect (see _report_connected)
            failed = False
            for ws in sockets:
                if ws is None:
                    failed = True
                    continue
                try:
                    # Each shard's socket carries its own presence; discord.py's Client sends
                    # on client.ws, which a sharded client does not have.
                    send = client.change_presence if self._mode is None else ws.change_presence
                    async with asyncio.timeout(10):
                        await send(activity=self._activity(ctx))
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failed = True
                    cause = connect_cause(exc)
                    ctx.logger.warning(
                        "discord: status text not applied (%s); reconnecting to apply it",
                        cause.reason,
                    )
                    if not ws.socket.closed:
                        ws.closed_by_us = "reconnecting to apply the new status text"
                        await _shut(ws)
            if failed:
                continue
            self._presence_text = text
            ctx.logger.info("discord: status text applied")
            await asyncio.sleep(self.presence_interval)

    # -- helpers -----------------------------------------------------------------------------

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        _cancel_ready(client)
        if not client.is_closed():
            # Bounded: a gateway that never answers our close must not hold up a stop.
            with contextlib.suppress(Exception, TimeoutError):
                async with asyncio.timeout(2.0):
                    await client.close()
        # Again: a READY read while close() ran starts a new wait, and once closed its
        # dispatch finds no loop and leaves a coroutine never awaited.
        _cancel_ready(client)

    def _activity(self, ctx: PluginContext) -> discord.BaseActivity | None:
        text = ctx.settings["status_text"]
        return discord.Game(name=text) if text else None


def _queued(ws: GatewaySocket) -> bool:
    """Whether aiohttp already holds a received message for this socket. A receive with a
    timeout arms and cancels a timer each time, about half the read loop's cost while
    thousands of GUILD_CREATEs stream in; with a message waiting, none is needed. aiohttp's
    private queue: if it is ever renamed this says False, and every receive is timed as before."""
    reader = getattr(ws.socket, "_reader", None)
    return bool(getattr(reader, "_buffer", None))


def _cancel_ready(client: discord.Client) -> None:
    """discord.py's wait for guilds after READY outlives close(); left running it wakes on a
    closed client and crashes into the log ("Task exception was never retrieved")."""
    state = getattr(client, "_connection", None)
    ready = getattr(state, "_ready_task", None)
    if ready is not None:
        ready.cancel()
    for task in list(getattr(state, "_ready_tasks", {}).values()):  # sharded: one per shard
        task.cancel()


def _part(part: Part, state: str, **fields: Any) -> Part:
    """``part`` in ``state``: ``since`` kept while the state is unchanged (one outage's attempts
    share it), every other field as given."""
    since = part.since if part.state == state else time.time()
    return Part(id=part.id, state=state, since=since, **fields)


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


async def _shut(ws: GatewaySocket, code: int = 4000) -> None:
    """Close a gateway socket, bounded: with 4000 to reconnect (1000 would end the session
    we mean to resume), with 1000 when the session is over (a stop)."""
    beat = ws.heartbeat()
    if beat is not None:
        beat.stop()
    ws._keep_alive = None
    if not ws.socket.closed:
        with contextlib.suppress(Exception, TimeoutError):
            async with asyncio.timeout(2.0):
                await ws.socket.close(code=code)
