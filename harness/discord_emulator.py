"""A Discord emulator: a local REST API and gateway (v10, JSON, optional zlib-stream) that the
real discord.py client can use, with controls for every fault the plugin must survive.

Runtime code, not a test helper: ``harness demo`` runs it, and tests and benchmarks use it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import secrets
import signal
import sys
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from aiohttp import WSMsgType, web

__all__ = ["LocalDiscordGateway", "main"]

log = logging.getLogger(__name__)

API_PREFIX = "/api/v10"
# How long stop() waits for its close handshakes (each is bounded by the websocket's own 5 s).
_STOP_CLOSE_WAIT = 10.0
BOT_USER_ID = "1100000000000000001"
OWNER_USER_ID = "1100000000000000002"

# Intents Discord only grants to bots that enabled them in the developer portal.
PRIVILEGED_INTENTS = (1 << 1) | (1 << 8) | (1 << 15)  # members, presences, message_content

# Gateway opcodes (https://discord.com/developers/docs/topics/opcodes-and-status-codes).
OP_DISPATCH = 0
OP_HEARTBEAT = 1
OP_IDENTIFY = 2
OP_RESUME = 6
OP_RECONNECT = 7
OP_INVALID_SESSION = 9
OP_HELLO = 10
OP_HEARTBEAT_ACK = 11
# Client opcodes a real gateway accepts after authentication; this one accepts and ignores them.
IGNORED_CLIENT_OPS = frozenset({3, 4, 8, 31})  # presence, voice state, request members, soundboard

CLOSE_REASONS = {
    1000: "Normal closure",
    1001: "Going away",
    4000: "Unknown error",
    4001: "Unknown opcode",
    4002: "Decode error",
    4003: "Not authenticated",
    4004: "Authentication failed",
    4005: "Already authenticated",
    4007: "Invalid seq",
    4008: "Rate limited",
    4009: "Session timed out",
    4010: "Invalid shard",
    4011: "Sharding required",
    4012: "Invalid API version",
    4013: "Invalid intent(s)",
    4014: "Disallowed intent(s)",
}
# Discord's documented effect of each close code on the session: after these the session is
# gone (a RESUME gets op 9 d=false); after the others in 4000-4009 it may be resumed.
SESSION_ENDING_CLOSES = frozenset({4004, 4007, 4009, 4010, 4011, 4012, 4013, 4014})
GUILD_ID_BASE = 1200000000000000000


@dataclass
class _Session:
    session_id: str
    token: str
    seq: int = 0
    shard: tuple[int, int] | None = None


@dataclass(eq=False)
class _Connection:
    number: int
    ws: web.WebSocketResponse
    request: web.Request
    session: _Session | None = None
    # How this side ended the connection, for the log: the close code a client echoes back
    # (ws.close_code afterwards) need not be the one we sent.
    ended_by: str | None = None
    # One zlib stream per connection (compress=zlib-stream), flushed after each payload.
    compressor: Any = None
    last_heartbeat: float = 0.0
    tasks: set[asyncio.Task[None]] | None = None
    shard: tuple[int, int] | None = None  # [shard_id, shard_count] from IDENTIFY, if sharded


def _shard_of(guild_id: str, shard_count: int) -> int:
    return (int(guild_id) >> 22) % shard_count


def _parse_shard(value: Any) -> tuple[int, int] | None:
    """IDENTIFY's ``shard``: [id, count] with 0 <= id < count; None when absent or invalid."""
    if (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        and 0 <= value[0] < value[1]
    ):
        return (value[0], value[1])
    return None


def _json_response(status: int, payload: Any) -> web.Response:
    # discord.py parses a body as JSON only when Content-Type is exactly "application/json";
    # web.json_response would append "; charset=utf-8" and login() would then get a str.
    return web.Response(
        status=status, body=json.dumps(payload).encode(), content_type="application/json"
    )


def _error(status: int, text: str) -> web.Response:
    return _json_response(status, {"message": f"{status}: {text}", "code": 0})


def _parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


class LocalDiscordGateway:
    """Enough of Discord's REST API and gateway for discord.py to log in and stay connected.

    Every control method acts on the live gateway websockets and returns once the action was
    taken. Counters (``identify_count``, ``resume_count``, ``heartbeat_count``,
    ``connection_count``) count payloads and connections received, accepted or not;
    ``wait_for`` blocks until a condition on them holds.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        tokens: Iterable[str] = (),
        *,
        bot_name: str = "HarnessBot",
        discriminator: str = "1234",
        heartbeat_interval: int = 41250,
        require_privileged_intents: bool = False,
        control_api: bool = False,
        guilds: int = 0,
        guild_stream_delay: float = 0.0,
        missed_heartbeat_grace: float | None = None,
        max_guilds_per_shard: int = 2500,
        recommended_guilds_per_shard: int = 1000,
        session_start_total: int = 1000,
        max_concurrency: int = 1,
        identify_window: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port
        self.bot_name = bot_name
        self.discriminator = discriminator
        # Milliseconds, sent in HELLO; changing it affects connections opened afterwards.
        self.heartbeat_interval = heartbeat_interval
        self.require_privileged_intents = require_privileged_intents
        self.heartbeat_acks_paused = False
        self.heartbeat_acks_paused_shards: set[int] = set()  # these shards' beats go unanswered
        # READY lists this many guilds as unavailable, then one GUILD_CREATE streams per guild,
        # ``guild_stream_delay`` seconds apart, as a real gateway does for a bot in guilds.
        self.guilds = guilds
        self.guild_stream_delay = guild_stream_delay
        # The last this-many guilds of each READY stay unavailable (a Discord outage): listed,
        # never streamed.
        self.withheld_guilds = 0
        # A client that sends no heartbeat for interval + grace seconds is closed with 4009
        # (None: never, which keeps slow test machines from tripping it by accident).
        self.missed_heartbeat_grace = missed_heartbeat_grace
        # Sharding as Discord does it: a session whose shard would hold more than
        # ``max_guilds_per_shard`` guilds is closed with 4011; /gateway/bot recommends one shard
        # per ``recommended_guilds_per_shard`` guilds, and counts IDENTIFYs against a budget.
        self.max_guilds_per_shard = max_guilds_per_shard
        self.recommended_guilds_per_shard = recommended_guilds_per_shard
        self.session_start_total = session_start_total
        self.session_start_remaining = session_start_total
        self.session_start_reset_after = 86_400_000  # ms, as Discord sends it
        self.max_concurrency = max_concurrency
        # Discord's concurrency rule: shards share a rate-limit key ``shard_id % max_concurrency``
        # (an unsharded session is shard 0), and each key may IDENTIFY once per
        # ``identify_window`` seconds. One more within the window is answered, as Discord
        # documents, with op 9 Invalid Session (d=false): no session starts, none is counted.
        self.identify_window = identify_window
        self._key_last_identify: dict[int, float] = {}  # rate-limit key -> monotonic
        self.identify_times: list[tuple[float, int | None]] = []  # accepted: (monotonic, shard)
        # IDENTIFYs refused for coming too soon on their key: (monotonic, shard_id).
        self.identify_rate_limited: list[tuple[float, int | None]] = []
        # Faults that leave the port open: the gateway answers its HTTP upgrade with this status
        # (REST keeps working), and REST answers with ``rest_status`` (5xx) or a rate limit.
        self.gateway_http_status: int | None = None
        self.rest_status: int | None = None
        self._rate_limit_until = 0.0
        self._rate_limit_pending: float | None = None  # seconds from the next REST request
        self._rate_limit_global = False
        self._rate_limit_headers = True
        self.rest_429_count = 0
        self.compressed_connections = 0  # gateway connections served as a zlib stream
        self.presence_updates: list[Any] = []  # the ``d`` of every op 3 received, in order
        self.login_count = 0  # GET /users/@me: one per client login, accepted or not
        self.resumed_at = 0.0
        self.identify_count = 0
        self.resume_count = 0
        self.heartbeat_count = 0
        self.connection_count = 0
        # The codes clients closed their sockets with, in order (Discord ends the session on
        # 1000/1001, so a bot that goes away with them shows offline at once).
        self.client_close_codes: list[int | None] = []
        self._tokens = frozenset(tokens)
        self._control_api = control_api
        self._sessions: dict[str, _Session] = {}
        self._connections: set[_Connection] = set()
        self._connection_numbers = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._reopen_task: asyncio.Task[None] | None = None
        self._state_changed = asyncio.Event()

    # ----------------------------------------------------------------- lifecycle

    @property
    def api_base_url(self) -> str:
        """The value for ``discord.http.Route.BASE``."""
        return f"http://{self.host}:{self.port}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        """The value for ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` (as a yarl.URL)."""
        return f"ws://{self.host}:{self.port}/"

    @property
    def active_sessions(self) -> int:
        """Number of gateway websockets currently open."""
        return len(self._connections)

    @property
    def refusing(self) -> bool:
        """True while ``refuse_connections`` keeps the port closed."""
        return self._runner is not None and self._site is None

    async def start(self) -> None:
        """Bind the port (``self.port`` becomes the real one when 0 was asked for)."""
        app = web.Application(middlewares=[self._close_after_response])
        app.router.add_get("/", self._gateway)
        app.router.add_get(f"{API_PREFIX}/users/@me", self._users_me)
        app.router.add_get(f"{API_PREFIX}/oauth2/applications/@me", self._application_me)
        app.router.add_get(f"{API_PREFIX}/gateway", self._get_gateway)
        app.router.add_get(f"{API_PREFIX}/gateway/bot", self._get_gateway_bot)
        if self._control_api:
            self._add_control_routes(app)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        await self._bind()
        log.info("listening on http://%s:%d", self.host, self.port)

    async def stop(self) -> None:
        """Close every gateway websocket (1001) and release the port."""
        if self._reopen_task is not None:
            self._reopen_task.cancel()
            self._reopen_task = None
        try:
            # Bounded: a client that stopped reading (or never answers our close) must not
            # hold up a stop; what is left is aborted, as a network failure would.
            async with asyncio.timeout(_STOP_CLOSE_WAIT):
                await self._close_all(1001, "server stopping")
        except TimeoutError:
            log.warning("stop: %d websocket(s) did not close in time", len(self._connections))
            for conn in list(self._connections):
                if conn.request.transport is not None:
                    conn.request.transport.abort()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None
        self._changed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def run_forever(self) -> None:
        """Serve (starting first if needed) until SIGINT/SIGTERM or cancellation, then stop."""
        if self._runner is None:
            await self.start()
        stop_requested = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop_requested.set)
        try:
            await stop_requested.wait()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            await self.stop()

    async def _bind(self) -> None:
        assert self._runner is not None
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self._site = site
        if self.port == 0:
            # Re-binds after refuse_connections reuse this port, so clients' URLs stay valid.
            self.port = self._runner.addresses[0][1]

    # ------------------------------------------------------------------ controls

    def set_tokens(self, tokens: Iterable[str]) -> None:
        """Replace the accepted tokens; live sessions stay up until they IDENTIFY/RESUME again."""
        self._tokens = frozenset(tokens)
        log.info("control: accepted tokens replaced (%d token(s))", len(self._tokens))

    def reject_all_tokens(self) -> None:
        """Make every token invalid, as if the bot's token was reset."""
        self.set_tokens(())

    @property
    def recommended_shards(self) -> int:
        return max(1, -(-self.guilds // self.recommended_guilds_per_shard))

    def reset_session_starts(self) -> None:
        """Discord's daily reset of the identify budget."""
        self.session_start_remaining = self.session_start_total
        self._changed()

    def guild_ids(self, shard: tuple[int, int] | None = None) -> list[str]:
        """The bot's guilds (those of ``shard`` = (id, count) if given): snowflakes one
        creation-time unit apart, so that Discord's routing ``(guild_id >> 22) % shard_count``
        spreads them over shards. Guild n has ``(id >> 22) = (GUILD_ID_BASE >> 22) + n``, so a
        shard's guilds are every count-th n: computed directly, not by filtering all of them
        (320,000 guilds filtered per IDENTIFY held the loop for long enough to misdate the
        IDENTIFYs behind it)."""
        if shard is None:
            return [str(GUILD_ID_BASE + (n << 22)) for n in range(self.guilds)]
        shard_id, count = shard
        first = (shard_id - (GUILD_ID_BASE >> 22)) % count
        return [str(GUILD_ID_BASE + (n << 22)) for n in range(first, self.guilds, count)]

    def shard_connections(self) -> dict[int, int]:
        """shard_id -> open connections that identified or resumed as that shard."""
        out: dict[int, int] = {}
        for conn in self._connections:
            if conn.shard is not None:
                out[conn.shard[0]] = out.get(conn.shard[0], 0) + 1
        return out

    def _serving(self, guild_id: str) -> list[_Connection]:
        """The live sessions a guild's events go to: its shard's, or the unsharded ones."""
        out = []
        for conn in self._connections:
            if conn.session is None:
                continue
            if conn.shard is None or _shard_of(guild_id, conn.shard[1]) == conn.shard[0]:
                out.append(conn)
        return out

    async def join_guild(self) -> str:
        """The bot joins one more guild: GUILD_CREATE to the session serving it; its id."""
        self.guilds += 1
        guild_id = self.guild_ids()[-1]
        log.info("control: bot joins guild %s", guild_id)
        for conn in self._serving(guild_id):
            await self._dispatch(conn, "GUILD_CREATE", self._guild(guild_id, self.guilds - 1))
        return guild_id

    async def leave_guild(self) -> str:
        """The bot leaves (is removed from) its newest guild: GUILD_DELETE; its id."""
        guild_id = self.guild_ids()[-1]
        self.guilds -= 1
        log.info("control: bot leaves guild %s", guild_id)
        for conn in self._serving(guild_id):
            await self._dispatch(conn, "GUILD_DELETE", {"id": guild_id})
        return guild_id

    async def drop_shard(self, shard_id: int, code: int = 4000) -> None:
        """Close only the connections of one shard with ``code`` (the others stay up)."""
        conns = [c for c in self._connections if c.shard is not None and c.shard[0] == shard_id]
        log.info("control: drop shard %d code=%d (%d connection(s))", shard_id, code, len(conns))
        for conn in conns:
            if code in SESSION_ENDING_CLOSES and conn.session is not None:
                self._sessions.pop(conn.session.session_id, None)
        await asyncio.gather(*(self._close(c, code, CLOSE_REASONS.get(code, "")) for c in conns))

    async def drop(self, code: int = 4000) -> None:
        """Close every gateway websocket with ``code``, with its documented effect: codes in
        ``SESSION_ENDING_CLOSES`` also forget the session, so only a new IDENTIFY works."""
        log.info("control: drop code=%d (%d session(s))", code, self.active_sessions)
        if code in SESSION_ENDING_CLOSES:
            for conn in self._connections:
                if conn.session is not None:
                    self._sessions.pop(conn.session.session_id, None)
        await self._close_all(code, CLOSE_REASONS.get(code, "Closed by harness"))

    async def abort(self) -> None:
        """Abort every gateway TCP connection without a close frame, like a network failure."""
        log.info("control: abort (%d session(s))", self.active_sessions)
        for conn in list(self._connections):
            conn.ended_by = "aborted by server"
            if conn.request.transport is not None:
                conn.request.transport.abort()

    async def send_reconnect(self) -> None:
        """Send op 7 RECONNECT; the client closes and resumes."""
        log.info("control: reconnect (%d session(s))", self.active_sessions)
        await self._broadcast(OP_RECONNECT, None)

    async def send_invalid_session(self, resumable: bool) -> None:
        """Send op 9 INVALID_SESSION; a non-resumable one also forgets the sessions server-side."""
        log.info(
            "control: invalid_session resumable=%s (%d session(s))", resumable, self.active_sessions
        )
        if not resumable:
            for conn in self._connections:
                if conn.session is not None:
                    self._sessions.pop(conn.session.session_id, None)
        await self._broadcast(OP_INVALID_SESSION, resumable)

    def expire_sessions(self) -> None:
        """Forget every session so the next RESUME gets op 9 d=false (like a long outage)."""
        log.info("control: expire %d session(s)", len(self._sessions))
        self._sessions.clear()

    async def request_heartbeat(self) -> None:
        """Send op 1 HEARTBEAT: the client must answer with a heartbeat at once."""
        log.info("control: heartbeat requested (%d session(s))", self.active_sessions)
        await self._broadcast(OP_HEARTBEAT, None)

    def refuse_gateway(self, status: int | None = 503) -> None:
        """Answer gateway upgrades with HTTP ``status`` (None: accept again); REST stays up."""
        log.info("control: gateway upgrades answered with %s", status or "101 (accepting)")
        self.gateway_http_status = status
        self._changed()

    def fail_rest(self, status: int | None = 503) -> None:
        """Answer every REST call with HTTP ``status`` (None: serve normally again)."""
        log.info("control: REST answers %s", status or "normally")
        self.rest_status = status
        self._changed()

    def rate_limit_rest(
        self,
        seconds: float,
        *,
        global_: bool = False,
        discord_headers: bool = True,
        from_next_request: bool = False,
    ) -> None:
        """Answer REST with 429 for ``seconds``. With Discord's headers: ``retry_after`` (body)
        and ``Retry-After``/``X-RateLimit-*`` (headers), ``global`` as asked. Without them: a
        bare 429 as Cloudflare sends when it has banned the IP. ``from_next_request``: the
        ``seconds`` start at the next REST request, not now (a test that starts a bot after
        arming the limit then gets the whole window, however long the start takes)."""
        log.info(
            "control: REST rate limited for %.2fs%s (global=%s, discord headers=%s)",
            seconds,
            " from the next request" if from_next_request else "",
            global_,
            discord_headers,
        )
        self._rate_limit_pending = seconds if from_next_request else None
        self._rate_limit_until = 0.0 if from_next_request else time.monotonic() + seconds
        self._rate_limit_global = global_
        self._rate_limit_headers = discord_headers
        self._changed()

    async def pause_heartbeat_acks(self, paused: bool = True, shard: int | None = None) -> None:
        """Stop (or resume) answering HEARTBEAT with HEARTBEAT_ACK: on every connection, or,
        with ``shard``, only on the connections of that shard (one shard's link going bad)."""
        log.info(
            "control: heartbeat acks %s%s",
            "paused" if paused else "resumed",
            "" if shard is None else f" on shard {shard}",
        )
        if shard is None:
            self.heartbeat_acks_paused = paused
        elif paused:
            self.heartbeat_acks_paused_shards.add(shard)
        else:
            self.heartbeat_acks_paused_shards.discard(shard)
        self._changed()

    async def refuse_connections(self, seconds: float) -> None:
        """Close the listening socket for ``seconds``: new REST and gateway connections fail.

        Open gateway websockets stay up (drop them to force a reconnect). ``seconds <= 0`` ends a
        refusal early. With the control API, the port is closed for it too until the refusal ends.
        """
        if seconds <= 0:
            await self.accept_connections()
            return
        if self._reopen_task is not None:
            self._reopen_task.cancel()
        if self._site is not None:
            await self._site.stop()
            self._site = None
        log.info("control: refusing connections for %.2fs", seconds)
        self._reopen_task = asyncio.create_task(self._reopen_after(seconds))
        self._changed()

    async def outage(self, seconds: float, code: int = 4000) -> None:
        """Refuse connections for ``seconds`` and drop the live ones: the client retries into a
        closed port until the outage ends. One call, because in process mode the control API
        shares the port and cannot be reached once the refusal has begun."""
        await self.refuse_connections(seconds)
        await self.drop(code)

    async def accept_connections(self) -> None:
        """End a refusal now: re-open the listening socket on the same port."""
        if self._reopen_task is not None:
            self._reopen_task.cancel()
            self._reopen_task = None
        if self.refusing:
            await self._bind()
            log.info("control: accepting connections again")
            self._changed()

    async def _reopen_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        # Clear first: accept_connections would otherwise cancel this very task.
        self._reopen_task = None
        await self.accept_connections()

    # ------------------------------------------------------------- observability

    def state(self) -> dict[str, Any]:
        """Counters and switches as a JSON-ready dict."""
        return {
            "login_count": self.login_count,
            "identify_count": self.identify_count,
            "identify_rate_limited": len(self.identify_rate_limited),
            "resume_count": self.resume_count,
            "heartbeat_count": self.heartbeat_count,
            "connection_count": self.connection_count,
            "active_sessions": self.active_sessions,
            "refusing": self.refusing,
            "heartbeat_acks_paused": self.heartbeat_acks_paused,
            "heartbeat_acks_paused_shards": sorted(self.heartbeat_acks_paused_shards),
            "require_privileged_intents": self.require_privileged_intents,
            "gateway_http_status": self.gateway_http_status,
            "rest_status": self.rest_status,
            "rest_rate_limited": self._rate_limit_pending is not None
            or self._rate_limit_until > time.monotonic(),
            "rest_429_count": self.rest_429_count,
        }

    # A timeout argument (not a caller-side asyncio.timeout) keeps test waits one short line.
    async def wait_for(
        self,
        predicate: Callable[[LocalDiscordGateway], bool],
        timeout: float = 5.0,
    ) -> None:
        """Return once ``predicate(self)`` holds; raise ``TimeoutError`` after ``timeout`` s."""
        async with asyncio.timeout(timeout):
            while not predicate(self):
                await self._state_changed.wait()

    def _changed(self) -> None:
        # Wake every waiter and hand later ones a fresh event: no lock needed, no missed wake-ups.
        self._state_changed.set()
        self._state_changed = asyncio.Event()

    # ----------------------------------------------------------------------- REST

    @web.middleware
    async def _close_after_response(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        fault = self._rest_fault(request)
        response = fault if fault is not None else await handler(request)
        if not isinstance(response, web.WebSocketResponse):
            # No idle keep-alive connections: a pooled one would slip past refuse_connections.
            response.force_close()
        return response

    def _rest_fault(self, request: web.Request) -> web.Response | None:
        if not request.path.startswith(API_PREFIX):
            return None
        if request.path == f"{API_PREFIX}/users/@me":
            self.login_count += 1  # counted here too: a refused login is still an attempt
            self._changed()
        if self._rate_limit_pending is not None:
            self._rate_limit_until = time.monotonic() + self._rate_limit_pending
            self._rate_limit_pending = None
        remaining = self._rate_limit_until - time.monotonic()
        if remaining > 0:
            self.rest_429_count += 1
            self._changed()
            if not self._rate_limit_headers:
                return web.Response(status=429, text="error code: 1015", content_type="text/plain")
            body = {
                "message": "You are being rate limited.",
                "retry_after": round(remaining, 3),
                "global": self._rate_limit_global,
            }
            response = _json_response(429, body)
            response.headers["Retry-After"] = str(max(1, round(remaining)))
            response.headers["X-RateLimit-Limit"] = "5"
            response.headers["X-RateLimit-Remaining"] = "0"
            response.headers["X-RateLimit-Reset-After"] = f"{remaining:.3f}"
            response.headers["X-RateLimit-Bucket"] = "emulator"
            response.headers["X-RateLimit-Scope"] = "global" if self._rate_limit_global else "user"
            if self._rate_limit_global:
                response.headers["X-RateLimit-Global"] = "true"
            return response
        if self.rest_status is not None:
            return _error(self.rest_status, "Service Unavailable")
        return None

    def _rest_authorized(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        ok = scheme == "Bot" and token in self._tokens
        log.info(
            "REST %s %s: %s", request.method, request.path, "token ok" if ok else "token rejected"
        )
        return ok

    def _bot_user(self) -> dict[str, Any]:
        return {
            "id": BOT_USER_ID,
            "username": self.bot_name,
            "discriminator": self.discriminator,
            "global_name": None,
            "avatar": None,
            "bot": True,
        }

    async def _users_me(self, request: web.Request) -> web.Response:
        if not self._rest_authorized(request):
            return _error(401, "Unauthorized")
        return _json_response(200, self._bot_user())

    async def _application_me(self, request: web.Request) -> web.Response:
        if not self._rest_authorized(request):
            return _error(401, "Unauthorized")
        owner = {
            "id": OWNER_USER_ID,
            "username": "HarnessOwner",
            "discriminator": "0",
            "global_name": None,
            "avatar": None,
        }
        # A bot's application id equals its user id on Discord.
        return _json_response(
            200,
            {
                "id": BOT_USER_ID,
                "name": self.bot_name,
                "description": "",
                "icon": None,
                "bot_public": False,
                "bot_require_code_grant": False,
                "owner": owner,
                "verify_key": "0" * 64,
                "flags": 0,
            },
        )

    async def _get_gateway(self, request: web.Request) -> web.Response:
        return _json_response(200, {"url": self.gateway_url.rstrip("/")})

    async def _get_gateway_bot(self, request: web.Request) -> web.Response:
        if not self._rest_authorized(request):
            return _error(401, "Unauthorized")
        limit = {
            "total": self.session_start_total,
            "remaining": self.session_start_remaining,
            "reset_after": self.session_start_reset_after,
            "max_concurrency": self.max_concurrency,
        }
        return _json_response(
            200,
            {
                "url": self.gateway_url.rstrip("/"),
                "shards": self.recommended_shards,
                "session_start_limit": limit,
            },
        )

    async def _not_found(self, request: web.Request) -> web.Response:
        return _error(404, "Not Found")

    # -------------------------------------------------------------------- gateway

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        # timeout bounds how long a close waits for the client's closing frame.
        ws = web.WebSocketResponse(timeout=5.0)
        if self.gateway_http_status is not None:
            self.connection_count += 1
            self._changed()
            return _error(self.gateway_http_status, "gateway unavailable")
        if not ws.can_prepare(request).ok:
            return _error(400, "Bad Request")
        await ws.prepare(request)
        conn = _Connection(number=next(self._connection_numbers), ws=ws, request=request)
        self._connections.add(conn)
        self.connection_count += 1
        self._changed()
        log.info("gateway #%d: connected from %s", conn.number, request.remote)
        try:
            await self._serve(conn)
        finally:
            self._connections.discard(conn)
            if conn.ended_by is None:
                self.client_close_codes.append(ws.close_code)
                if ws.close_code in (1000, 1001) and conn.session is not None:
                    # As Discord: a normal close ends the session; it cannot be resumed.
                    self._sessions.pop(conn.session.session_id, None)
            self._changed()
            log.info(
                "gateway #%d: closed (%s)",
                conn.number,
                conn.ended_by or f"by client, code {ws.close_code}",
            )
        return ws

    async def _serve(self, conn: _Connection) -> None:
        query = conn.request.query
        if query.get("v", "10") != "10":
            await self._close(conn, 4012)
            return
        if query.get("encoding", "json") != "json":
            await self._close(conn, 4002)
            return
        # As real Discord: with compress=zlib-stream every payload goes out as binary frames of
        # one zlib stream per connection. Other compressions (zstd-stream) are sent as text.
        if query.get("compress") == "zlib-stream":
            conn.compressor = zlib.compressobj()
            self.compressed_connections += 1
        conn.last_heartbeat = time.monotonic()
        await self._send(conn, OP_HELLO, {"heartbeat_interval": self.heartbeat_interval})
        watchdog = None
        if self.missed_heartbeat_grace is not None:
            watchdog = asyncio.create_task(self._heartbeat_watchdog(conn))
        try:
            await self._receive(conn)
        finally:
            if watchdog is not None:
                watchdog.cancel()
            for task in list(conn.tasks or ()):
                task.cancel()

    async def _heartbeat_watchdog(self, conn: _Connection) -> None:
        assert self.missed_heartbeat_grace is not None
        limit = self.heartbeat_interval / 1000 + self.missed_heartbeat_grace
        while not conn.ws.closed:
            late = conn.last_heartbeat + limit - time.monotonic()
            if late <= 0:
                log.info("gateway #%d: no heartbeat for %.1fs: closing 4009", conn.number, limit)
                if conn.session is not None:
                    self._sessions.pop(conn.session.session_id, None)
                await self._close(conn, 4009)
                return
            await asyncio.sleep(late)

    async def _receive(self, conn: _Connection) -> None:
        async for msg in conn.ws:
            if msg.type is not WSMsgType.TEXT:
                await self._close(conn, 4002)
                return
            try:
                payload = json.loads(msg.data)
                op = payload["op"]
                data = payload.get("d")
            except (ValueError, KeyError, TypeError):
                await self._close(conn, 4002)
                return
            await self._handle(conn, op, data)

    async def _handle(self, conn: _Connection, op: Any, data: Any) -> None:
        if op == OP_HEARTBEAT:
            conn.last_heartbeat = time.monotonic()
            self.heartbeat_count += 1
            self._changed()
            paused = self.heartbeat_acks_paused or (
                conn.shard is not None and conn.shard[0] in self.heartbeat_acks_paused_shards
            )
            if not paused:
                await self._send(conn, OP_HEARTBEAT_ACK, None)
        elif op == OP_IDENTIFY:
            await self._identify(conn, data)
        elif op == OP_RESUME:
            await self._resume(conn, data)
        elif op in IGNORED_CLIENT_OPS:
            if conn.session is None:
                await self._close(conn, 4003)
            elif op == 3:
                self.presence_updates.append(data)
                self._changed()
        else:
            await self._close(conn, 4001)

    async def _identify(self, conn: _Connection, data: Any) -> None:
        now = time.monotonic()
        self.identify_count += 1
        self._changed()
        if conn.session is not None:
            await self._close(conn, 4005)
            return
        if not isinstance(data, dict) or not isinstance(data.get("intents", 0), int):
            await self._close(conn, 4002)
            return
        shard = _parse_shard(data.get("shard"))
        if "shard" in data and shard is None:
            await self._close(conn, 4010)
            return
        shard_id = shard[0] if shard else None
        key = (shard_id or 0) % max(1, self.max_concurrency)
        last = self._key_last_identify.get(key)
        if last is not None and now - last < self.identify_window:
            log.info(
                "gateway #%d: IDENTIFY of shard %s %.3f s after the last on rate-limit key %d "
                "(window %.3f s): invalid session",
                conn.number,
                shard_id,
                now - last,
                key,
                self.identify_window,
            )
            self.identify_rate_limited.append((now, shard_id))
            self._changed()
            await self._send(conn, OP_INVALID_SESSION, False)
            return
        self._key_last_identify[key] = now
        self.session_start_remaining = max(0, self.session_start_remaining - 1)
        self.identify_times.append((now, shard_id))
        count = shard[1] if shard else 1
        if -(-self.guilds // count) > self.max_guilds_per_shard:
            log.info(
                "gateway #%d: %d guild(s) need more than %d shard(s)",
                conn.number,
                self.guilds,
                count,
            )
            await self._close(conn, 4011)
            return
        conn.shard = shard
        token = data.get("token")
        if token not in self._tokens:
            log.info("gateway #%d: IDENTIFY token rejected", conn.number)
            await self._close(conn, 4004)
            return
        intents = data.get("intents", 0)
        if self.require_privileged_intents and intents & PRIVILEGED_INTENTS:
            log.info(
                "gateway #%d: IDENTIFY token ok, privileged intents %#x refused",
                conn.number,
                intents,
            )
            await self._close(conn, 4014)
            return
        session = _Session(session_id=secrets.token_hex(16), token=token)
        self._sessions[session.session_id] = session
        session.shard = shard
        conn.session = session
        log.info("gateway #%d: IDENTIFY token ok, new session %s", conn.number, session.session_id)
        guild_ids = self.guild_ids(shard)
        ready: dict[str, Any] = {
            "v": 10,
            "user": self._bot_user(),
            "guilds": [{"id": g, "unavailable": True} for g in guild_ids],
            "session_id": session.session_id,
            "resume_gateway_url": self.gateway_url,
            "application": {"id": BOT_USER_ID, "flags": 0},
        }
        # A sharded client's READY parser reads [shard_id, shard_count] back from here.
        if "shard" in data:
            ready["shard"] = data["shard"]
        await self._dispatch(conn, "READY", ready)
        streamed = guild_ids[: max(0, len(guild_ids) - self.withheld_guilds)]
        if streamed:
            task = asyncio.create_task(self._stream_guilds(conn, streamed))
            conn.tasks = conn.tasks or set()
            conn.tasks.add(task)
            task.add_done_callback(conn.tasks.discard)

    async def _stream_guilds(self, conn: _Connection, guild_ids: list[str]) -> None:
        for n, guild_id in enumerate(guild_ids):
            await asyncio.sleep(self.guild_stream_delay)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._dispatch(conn, "GUILD_CREATE", self._guild(guild_id, n))

    def _guild(self, guild_id: str, n: int) -> dict[str, Any]:
        return {
            "id": guild_id,
            "name": f"Emulated guild {n + 1}",
            "unavailable": False,
            "owner_id": OWNER_USER_ID,
            "member_count": 2,
            "large": False,
            "features": [],
            "roles": [],
            "emojis": [],
            "stickers": [],
            "channels": [],
            "threads": [],
            "members": [],
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "joined_at": "2026-01-01T00:00:00+00:00",
        }

    async def _resume(self, conn: _Connection, data: Any) -> None:
        self.resume_count += 1
        self._changed()
        if not isinstance(data, dict):
            await self._close(conn, 4002)
            return
        if data.get("token") not in self._tokens:
            log.info("gateway #%d: RESUME token rejected", conn.number)
            await self._close(conn, 4004)
            return
        session = self._sessions.get(str(data.get("session_id")))
        if session is None or session.token != data["token"]:
            log.info("gateway #%d: RESUME token ok, unknown session: invalid session", conn.number)
            await self._send(conn, OP_INVALID_SESSION, False)
            return
        conn.session = session
        conn.shard = session.shard
        log.info(
            "gateway #%d: RESUME token ok, session %s resumed", conn.number, session.session_id
        )
        # Nothing is replayed: this gateway produces no events between READY and a disconnect.
        await self._dispatch(conn, "RESUMED", {})
        self.resumed_at = time.monotonic()  # for latency benchmarks: when RESUMED was sent

    async def _dispatch(self, conn: _Connection, event: str, data: Any) -> None:
        assert conn.session is not None
        conn.session.seq += 1
        await self._write(
            conn, json.dumps({"op": OP_DISPATCH, "t": event, "s": conn.session.seq, "d": data})
        )

    async def _send(self, conn: _Connection, op: int, data: Any) -> None:
        await self._write(conn, json.dumps({"op": op, "t": None, "s": None, "d": data}))

    async def _write(self, conn: _Connection, text: str) -> None:
        if conn.compressor is None:
            await conn.ws.send_str(text)
            return
        body = conn.compressor.compress(text.encode()) + conn.compressor.flush(zlib.Z_SYNC_FLUSH)
        await conn.ws.send_bytes(body)

    async def _broadcast(self, op: int, data: Any) -> None:
        # A websocket closing while we send is not an error: the client is already reconnecting.
        # Bounded: a client that stopped reading must not hold up a control call.
        for conn in list(self._connections):
            with contextlib.suppress(ConnectionError, RuntimeError, TimeoutError):
                async with asyncio.timeout(5.0):  # not wait_for: it can lose a cancel (3.11)
                    await self._send(conn, op, data)

    async def _close(self, conn: _Connection, code: int, reason: str | None = None) -> None:
        conn.ended_by = conn.ended_by or f"closed by server, code {code}"
        await conn.ws.close(code=code, message=(reason or CLOSE_REASONS.get(code, "")).encode())

    async def _close_all(self, code: int, reason: str) -> None:
        await asyncio.gather(*(self._close(conn, code, reason) for conn in list(self._connections)))

    # -------------------------------------------------------------- control API

    def _add_control_routes(self, app: web.Application) -> None:
        app.router.add_post("/_control/drop", self._control_drop)
        app.router.add_post("/_control/abort", self._control_simple(self.abort))
        app.router.add_post("/_control/reconnect", self._control_simple(self.send_reconnect))
        app.router.add_post("/_control/invalid_session", self._control_invalid_session)
        app.router.add_post("/_control/heartbeat_acks", self._control_heartbeat_acks)
        app.router.add_post("/_control/refuse", self._control_refuse)
        app.router.add_post("/_control/outage", self._control_outage)
        app.router.add_post("/_control/heartbeat", self._control_simple(self.request_heartbeat))
        app.router.add_post("/_control/gateway_status", self._control_gateway_status)
        app.router.add_post("/_control/rest_status", self._control_rest_status)
        app.router.add_post("/_control/rate_limit", self._control_rate_limit)
        app.router.add_get("/_control/state", self._control_state)

    async def _control_gateway_status(self, request: web.Request) -> web.Response:
        # ?status=503 refuses gateway upgrades; no status (or 0) accepts them again.
        try:
            status = int(request.query.get("status", "0")) or None
        except ValueError:
            return _error(400, "status must be an integer")
        self.refuse_gateway(status)
        return _json_response(200, self.state())

    async def _control_rest_status(self, request: web.Request) -> web.Response:
        try:
            status = int(request.query.get("status", "0")) or None
        except ValueError:
            return _error(400, "status must be an integer")
        self.fail_rest(status)
        return _json_response(200, self.state())

    async def _control_rate_limit(self, request: web.Request) -> web.Response:
        try:
            seconds = float(request.query.get("seconds", "5"))
            global_ = _parse_bool(request.query.get("global", "false"))
            headers = _parse_bool(request.query.get("discord_headers", "true"))
        except ValueError:
            return _error(400, "seconds must be a number; global and discord_headers booleans")
        self.rate_limit_rest(seconds, global_=global_, discord_headers=headers)
        return _json_response(200, self.state())

    def _control_simple(
        self, action: Callable[[], Awaitable[None]]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            await action()
            return _json_response(200, self.state())

        return handler

    async def _control_drop(self, request: web.Request) -> web.Response:
        try:
            code = int(request.query.get("code", "4000"))
        except ValueError:
            return _error(400, "code must be an integer")
        await self.drop(code)
        return _json_response(200, self.state())

    async def _control_invalid_session(self, request: web.Request) -> web.Response:
        try:
            resumable = _parse_bool(request.query.get("resumable", "false"))
        except ValueError:
            return _error(400, "resumable must be true or false")
        await self.send_invalid_session(resumable)
        return _json_response(200, self.state())

    async def _control_heartbeat_acks(self, request: web.Request) -> web.Response:
        try:
            paused = _parse_bool(request.query.get("paused", "true"))
        except ValueError:
            return _error(400, "paused must be true or false")
        raw = request.query.get("shard")
        if raw is not None and not (raw.isascii() and raw.isdigit() and len(raw) <= 4):
            return _error(400, "shard must be a shard id (0..9999)")
        await self.pause_heartbeat_acks(paused, None if raw is None else int(raw))
        return _json_response(200, self.state())

    async def _control_refuse(self, request: web.Request) -> web.Response:
        try:
            seconds = float(request.query.get("seconds", "5"))
        except ValueError:
            return _error(400, "seconds must be a number")
        # Only the listening socket closes, so this response still goes out on its connection.
        await self.refuse_connections(seconds)
        return _json_response(200, self.state())

    async def _control_outage(self, request: web.Request) -> web.Response:
        try:
            seconds = float(request.query.get("seconds", "5"))
            code = int(request.query.get("code", "4000"))
        except ValueError:
            return _error(400, "seconds must be a number and code a whole number")
        await self.outage(seconds, code)
        return _json_response(200, self.state())

    async def _control_state(self, request: web.Request) -> web.Response:
        return _json_response(200, self.state())


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m harness.discord_emulator",
        description=(
            "Run a local Discord REST + gateway stand-in with a control API under /_control/. "
            'Prints "listening on http://HOST:PORT" to stdout once bound.'
        ),
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=8765,
        help="port to bind, 0 for any free one (default: %(default)s)",
    )
    parser.add_argument(
        "--token", action="append", required=True, help="a bot token to accept; repeat for several"
    )
    parser.add_argument(
        "--bot-name", default="HarnessBot", help="the bot user's name (default: %(default)s)"
    )
    parser.add_argument(
        "--discriminator",
        default="1234",
        help="the bot user's discriminator (default: %(default)s)",
    )
    parser.add_argument(
        "--heartbeat-interval",
        type=int,
        default=41250,
        help="HELLO heartbeat interval in ms (default: %(default)s)",
    )
    parser.add_argument(
        "--require-privileged-intents",
        action="store_true",
        help="close with 4014 when IDENTIFY asks for members, presences or message_content",
    )
    parser.add_argument(
        "--identify-window",
        type=float,
        default=5.0,
        help="seconds each rate-limit key (shard_id %% max_concurrency) must wait between "
        "IDENTIFYs; one sooner gets op 9 (default: %(default)s, Discord's)",
    )
    return parser.parse_args(argv)


async def _run_process(args: argparse.Namespace) -> None:
    gateway = LocalDiscordGateway(
        args.host,
        args.port,
        args.token,
        bot_name=args.bot_name,
        discriminator=args.discriminator,
        heartbeat_interval=args.heartbeat_interval,
        require_privileged_intents=args.require_privileged_intents,
        control_api=True,
        identify_window=args.identify_window,
    )
    await gateway.start()
    # The one line on stdout: callers that asked for port 0 read the real port from it.
    print(f"listening on http://{gateway.host}:{gateway.port}", flush=True)
    await gateway.run_forever()


def main(argv: Sequence[str] | None = None) -> None:
    """Process entry point: serve until SIGINT/SIGTERM."""
    args = _parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    asyncio.run(_run_process(args))


if __name__ == "__main__":
    main()
