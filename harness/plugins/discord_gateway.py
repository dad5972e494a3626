"""How the Discord plugin talks to discord.py's gateway internals, and how it names what went
wrong: one place that knows the private parts it relies on (checked by
tests/test_discord_internals.py) and one table of causes in words for an operator."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Self

import aiohttp
import discord
import discord.gateway

# The discord.py internals this module relies on; the pin in pyproject.toml and
# tests/test_discord_internals.py keep them honest.
ReconnectWebSocket = discord.gateway.ReconnectWebSocket
DiscordWebSocket = discord.gateway.DiscordWebSocket

# Gateway close codes (Discord's "Gateway Close Event Codes"): the meaning in words, whether the
# session survives it (RESUME) and, for the ones an operator must act on, what to do.
_TOKEN_HELP = "set a new one with `harness plugins set discord bot_token=-`"
_INTENTS_HELP = (
    "turn them on in the Discord developer portal (Bot → Privileged Gateway Intents) or switch "
    "them off with `harness plugins set discord members_intent=false "
    "message_content_intent=false`"
)


@dataclass(frozen=True)
class CloseCode:
    meaning: str
    resume: bool = True  # the session may be resumed
    fatal: str | None = None  # needs the operator: what to do


CLOSE_CODES: dict[int, CloseCode] = {
    4000: CloseCode("unknown error, resuming"),
    4001: CloseCode("unknown opcode, resuming"),
    4002: CloseCode("decode error, resuming"),
    4003: CloseCode("not authenticated, resuming"),
    4004: CloseCode("token rejected", resume=False, fatal=_TOKEN_HELP),
    4005: CloseCode("already authenticated, resuming"),
    4007: CloseCode("invalid sequence, identifying again", resume=False),
    4008: CloseCode("rate limited by the gateway, resuming"),
    4009: CloseCode("session timed out", resume=False),
    4010: CloseCode(
        "invalid shard", resume=False, fatal="check the shard settings, then enable the plugin"
    ),
    4011: CloseCode(
        "sharding required",
        resume=False,
        fatal="the bot is in too many guilds for one connection: shard it with "
        "`harness plugins set discord shards=auto`",
    ),
    4012: CloseCode(
        "invalid API version", resume=False, fatal="update harness (its discord.py is too old)"
    ),
    4013: CloseCode(
        "invalid intents", resume=False, fatal="check the intent settings, then save them again"
    ),
    4014: CloseCode("disallowed intents", resume=False, fatal=_INTENTS_HELP),
}


@dataclass(frozen=True)
class Cause:
    """Why a connection ended or an attempt failed, as the connection object will carry it."""

    reason: str
    code: int | None = None
    resume: bool = True  # a RESUME may follow (else a fresh IDENTIFY)
    fatal: bool = False  # stop retrying: only the operator can fix this
    wait: float | None = None  # a wait Discord dictated (rate limit), instead of the backoff
    identify_again: bool = False  # op 9 d=false: `connecting` while we wait to IDENTIFY


def close_cause(code: int | None) -> Cause:
    """A cause for a gateway close frame with ``code``."""
    if code is None:
        return Cause("connection to the gateway lost")
    known = CLOSE_CODES.get(code)
    if known is None:
        return Cause(f"{code} gateway closed the connection, resuming", code=code)
    if known.fatal:
        return Cause(f"{known.meaning} ({code}): {known.fatal}", code=code, fatal=True)
    return Cause(f"{code} {known.meaning}", code=code, resume=known.resume)


def _os_words(exc: OSError) -> str:
    if exc.errno == errno.ECONNREFUSED:
        return "connection refused"
    if exc.errno is not None:
        return os.strerror(exc.errno).lower()
    return "network error"


def connect_cause(exc: BaseException, what: str = "the gateway") -> Cause:
    """A cause for an attempt to open a connection that failed with ``exc``; never a class
    name, so an operator reads what happened rather than how Python spelled it."""
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        return Cause(f"cannot reach {what}: HTTP {exc.status}", code=exc.status)
    if isinstance(exc, aiohttp.ClientResponseError):
        return Cause(f"cannot reach {what}: HTTP {exc.status}", code=exc.status)
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return Cause(f"cannot reach {what}: its name does not resolve")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return Cause(f"cannot reach {what}: {_os_words(exc.os_error)}")
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return Cause(f"{what} did not answer in time")
    if isinstance(exc, discord.ConnectionClosed):
        return close_cause(exc.code)
    if isinstance(exc, ReconnectWebSocket):
        return Cause(f"{what} closed the connection during the handshake")
    if isinstance(exc, discord.HTTPException):
        return Cause(f"cannot reach {what}: HTTP {exc.status}", code=exc.status)
    if isinstance(exc, OSError):
        return Cause(f"cannot reach {what}: {_os_words(exc)}")
    if isinstance(exc, aiohttp.ClientError):
        return Cause(f"connection to {what} failed")
    return Cause("unexpected failure in the Discord plugin (details in the daemon log)")


class Handshake:
    """How far one gateway handshake got (websocket open, HELLO read), so that an attempt the
    plugin abandons at its timeout says where the gateway stopped answering."""

    def __init__(self) -> None:
        self.opened = False  # the HTTP upgrade was answered: a websocket is open
        self.hello = False  # the gateway's HELLO (op 10) was read

    def timed_out(self, seconds: float) -> Cause:
        within = f"within {seconds:g} s"
        if not self.opened:
            return Cause(f"the gateway did not answer the handshake {within}")
        if not self.hello:
            return Cause(f"the gateway opened the websocket but sent no HELLO {within}")
        return Cause(f"the gateway handshake did not finish {within} (after HELLO)")


# The handshake under way in this task: discord.py builds the socket inside from_client, so
# this is how the new socket finds the progress object of the attempt that opened it.
_HANDSHAKE: ContextVar[Handshake | None] = ContextVar("discord_handshake", default=None)


class GatewaySocket(DiscordWebSocket):
    """discord.py's gateway websocket, noting the last small payload's op so the supervisor can
    name why a connection ended (op 7 and op 9 otherwise look alike from outside)."""

    last_op: int | None = None
    last_data: Any = None
    closed_by_us: str | None = None  # set before we close it ourselves: the cause to report
    # The heartbeat clock, kept on the loop. discord.py's keep-alive thread stamps _last_send
    # only once it wakes after the send, often after a fast ACK was already read: the beat
    # then looks unanswered (a false zombie) and its latency spans the whole interval.
    beat_sent: float | None = None  # perf_counter just before the last heartbeat went out
    beat_acked: float | None = None  # perf_counter of the last HEARTBEAT_ACK read

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._handshake = _HANDSHAKE.get()
        if self._handshake is not None:
            self._handshake.opened = True  # discord.py makes the socket once the upgrade is in

    @classmethod
    async def from_client(  # type: ignore[override]
        cls, client: Any, *, progress: Handshake | None = None, **kwargs: Any
    ) -> Self:
        """discord.py's own (open, read HELLO, IDENTIFY or RESUME), noting in ``progress``
        how far it got."""
        token = _HANDSHAKE.set(progress)
        try:
            return await super().from_client(client, **kwargs)
        finally:
            _HANDSHAKE.reset(token)

    async def send_heartbeat(self, data: Any) -> None:
        self.beat_sent = time.perf_counter()
        await super().send_heartbeat(data)

    async def send_as_json(self, data: Any) -> None:
        # discord.py sends two heartbeats this way, not through send_heartbeat: the one right
        # after HELLO and the one the gateway asks for (op 1). Unstamped, a (re)connected
        # link had no latency until the keep-alive thread's first beat, up to a whole interval
        # (41 s on Discord) later: the TUI showed none after every reconnect.
        if isinstance(data, dict) and data.get("op") == 1:
            self.beat_sent = time.perf_counter()
        await super().send_as_json(data)

    def round_trip(self) -> float | None:
        """The last heartbeat's round trip in seconds, by the loop's clock (None: none yet)."""
        if self.beat_sent is None or self.beat_acked is None or self.beat_acked < self.beat_sent:
            return None
        return self.beat_acked - self.beat_sent

    def log_receive(self, msg: Any, /) -> None:
        # Called by received_message with the decoded text of every payload, before parsing.
        # Control payloads (ops 1, 7, 9, 11) are tiny; dispatches can be megabytes and are
        # parsed once only, by discord.py.
        if isinstance(msg, str) and len(msg) < 512:
            try:
                payload = json.loads(msg)
            except ValueError:
                return
            if isinstance(payload, dict):
                self.last_op = payload.get("op")
                self.last_data = payload.get("d")
                if self.last_op == 11:
                    self.beat_acked = time.perf_counter()
                elif self.last_op == 10 and self._handshake is not None:
                    self._handshake.hello = True
        else:
            self.last_op = 0

    def heartbeat(self) -> Any:
        """discord.py's keep-alive thread state (None before HELLO)."""
        return self._keep_alive

    def drop_reason(self) -> Cause:
        """Why discord.py raised ReconnectWebSocket out of received_message."""
        if self.last_op == 7:
            return Cause("Discord asked us to reconnect (op 7)")
        if self.last_op == 9:
            if self.last_data is True:
                return Cause("session invalidated (op 9), resuming")
            return Cause(
                "session invalidated (op 9): identifying again", resume=False, identify_again=True
            )
        return Cause("connection to the gateway lost")


@dataclass
class HeartbeatWatch:
    """Zombie detection as Discord prescribes: a heartbeat still unacknowledged when the next
    one falls due means the connection is dead; close it (not with 1000) and resume. Also says
    when an ACK is overdue, for the indicator."""

    warn_after: float
    pending_since: float | None = None  # perf_counter of the first unacknowledged beat
    warned: bool = False

    def check(self, ws: GatewaySocket, now: float) -> tuple[str, float]:
        """``("ok"|"overdue"|"zombie", seconds until the next check matters)``."""
        beat = ws.heartbeat()
        interval = float(getattr(beat, "interval", None) or 41.25)
        sent, acked = ws.beat_sent, ws.beat_acked
        if sent is None or (acked is not None and acked >= sent):
            self.pending_since = None
            self.warned = False
            return "ok", min(1.0, interval / 8)
        if self.pending_since is None or (acked is not None and acked >= self.pending_since):
            self.pending_since = sent
        age = now - self.pending_since
        if age >= interval:
            return "zombie", 0.0
        if age >= min(self.warn_after, interval / 2):
            return "overdue", min(1.0, interval - age)
        return "pending", min(1.0, min(self.warn_after, interval / 2) - age, interval - age)


def perf_to_epoch(perf: float) -> float:
    """A ``time.perf_counter()`` reading (discord.py's heartbeat clock) as epoch seconds."""
    return time.time() - (time.perf_counter() - perf)


class GuildCounts:
    """How many guilds each shard serves, and whether its guilds have all streamed in after
    READY, without discord.py building a single Guild object.

    The plugin needs a count per shard and nothing else about a guild, but discord.py builds
    and caches a Guild object for every guild, twice over at start (one from READY's list, then
    again from its GUILD_CREATE): about 1.3 KB and 200 µs each for the local gateway's empty
    guilds, far more for real ones (channels, roles, members). So the READY, GUILD_CREATE and
    GUILD_DELETE parsers are wrapped: READY goes to discord.py without its guild list (it still
    sets the user and the session), and guild payloads stop here as ids per shard.

    The cost: the client holds no guild, so discord.py ignores a guild's events (updates,
    members, messages) and never fires ``on_ready``/``on_shard_ready`` with guilds; the plugin
    decides when a shard's guilds are in itself (``pending`` and ``quiet_for``). Right for a
    plugin that reports the connection; a bot that acts in its guilds would need the cache."""

    def __init__(self, client: discord.Client, *, sharded: bool) -> None:
        self._state: Any = client._connection  # discord.py's ConnectionState
        self._sharded = sharded
        self._ids: dict[int | None, set[int]] = {}  # shard -> its guild ids
        self._pending: dict[int | None, set[int]] = {}  # listed unavailable in READY, not in yet
        self._last: dict[int | None, float] = {}  # shard -> monotonic of its last guild payload
        parsers = self._state.parsers  # event name -> parser; every socket reads this dict
        parse_ready = parsers["READY"]

        def ready(data: Any) -> None:
            shard = data["shard"][0] if sharded and data.get("shard") else None
            guilds = data.get("guilds") or []
            self._ids[shard] = {int(g["id"]) for g in guilds}
            self._pending[shard] = {int(g["id"]) for g in guilds if g.get("unavailable")}
            self._last[shard] = time.monotonic()
            parse_ready({**data, "guilds": []})

        parsers["READY"] = ready
        parsers["GUILD_CREATE"] = self._guild_create
        parsers["GUILD_DELETE"] = self._guild_delete

    def shard_of(self, guild_id: int) -> int | None:
        """Discord's routing, ``(guild_id >> 22) % shard_count``; None unsharded."""
        if not self._sharded:
            return None
        return (guild_id >> 22) % max(1, int(self._state.shard_count or 1))

    def count(self, shard_id: int | None) -> int:
        return len(self._ids.get(shard_id, ()))

    def pending(self, shard_id: int | None) -> int:
        """Guilds READY listed as unavailable that have not streamed in yet."""
        return len(self._pending.get(shard_id, ()))

    def quiet_for(self, shard_id: int | None) -> float:
        """Seconds since the shard's READY or last guild payload."""
        return time.monotonic() - self._last.get(shard_id, 0.0)

    def cached(self) -> int:
        """Guild objects discord.py holds (none, unless something else built them)."""
        return len(self._state._guilds)

    def _guild_create(self, data: Any) -> None:
        guild_id = int(data["id"])
        shard = self.shard_of(guild_id)
        self._ids.setdefault(shard, set()).add(guild_id)
        if data.get("unavailable") is not True:
            self._pending.get(shard, set()).discard(guild_id)
        self._last[shard] = time.monotonic()

    def _guild_delete(self, data: Any) -> None:
        if data.get("unavailable"):
            return  # an outage: still the bot's guild
        guild_id = int(data["id"])
        shard = self.shard_of(guild_id)
        self._ids.get(shard, set()).discard(guild_id)
        self._pending.get(shard, set()).discard(guild_id)
