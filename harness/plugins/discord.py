"""The Discord plugin: a discord.py bot whose gateway connection is reported, live and
persisted, through ``ctx.set_connection``."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, ClassVar

import aiohttp
import discord
import discord.gateway
import discord.http
import yarl

from harness import __version__
from harness.plugin import Plugin, PluginContext
from harness.protocol import SettingField

DISCORD_API = "https://discord.com/api/v10"
DISCORD_GATEWAY = "wss://gateway.discord.gg/"

# Close codes after which retrying cannot help until an operator changes something.
_FATAL_CLOSE = {
    4004: "Discord rejected the bot token (it may have been reset or revoked); set a new bot_token",
    4010: "Discord rejected the shard configuration",
    4011: "Discord requires sharding for this bot",
    4012: "Discord rejected the gateway API version",
    4013: "Discord rejected the requested intents",
}
_INTENTS_REASON = (
    "privileged intents are not enabled for this bot: turn them on in the Discord developer "
    "portal (Bot → Privileged Gateway Intents) or switch them off here"
)


class _DropReconnectTracebacks(logging.Filter):
    """discord.py logs every reconnect with a full traceback at ERROR; this plugin reports each
    one itself (a line, plus the connection event). Everything else discord.py logs, errors in
    our own event handlers included, still goes through."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Attempting a reconnect")


logging.getLogger("discord.client").addFilter(_DropReconnectTracebacks())


class _Fatal(Exception):
    """Stop retrying; the message is the connection's ``reason``."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot reach Discord ({exc.os_error.strerror or exc.os_error})"
    if isinstance(exc, discord.ConnectionClosed):
        return f"gateway closed the connection (code {exc.code})"
    if isinstance(exc, discord.HTTPException):
        return f"Discord API error {exc.status}"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "timed out talking to Discord"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Bot(discord.Client):
    """One client per attempt (discord.py 2.7 cannot reuse a client after some failures)."""

    def __init__(self, plugin: DiscordPlugin, ctx: PluginContext, **options: Any) -> None:
        super().__init__(**options)
        self._plugin = plugin
        self._ctx = ctx

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        delay = self._plugin.identify_delay
        if delay is None:
            await super().before_identify_hook(shard_id, initial=initial)
        elif delay > 0:
            await asyncio.sleep(delay)

    async def on_ready(self) -> None:
        await self._plugin._connected(self._ctx, str(self.user))

    async def on_resumed(self) -> None:
        await self._plugin._connected(self._ctx, None)

    async def on_disconnect(self) -> None:
        # After close() the client is already closed: that is us stopping, not an outage.
        if not self.is_closed():
            await self._plugin._disconnected(self._ctx, "connection to the gateway lost")


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
            description="Cap on the wait between attempts when login or connect fails.",
        ),
        SettingField(
            "heartbeat_timeout",
            "integer",
            label="Heartbeat timeout (s)",
            default=60,
            minimum=1,
            maximum=600,
            advanced=True,
            description="How long a silent gateway is trusted before reconnecting; keep it "
            "above the gateway's heartbeat interval (about 41 s on Discord).",
        ),
    )

    # Timing knobs of discord.py that tests shorten; not settings an operator needs.
    guild_ready_timeout: ClassVar[float] = 2.0
    identify_delay: ClassVar[float | None] = None  # None: discord.py's own 5 s pause

    def __init__(self) -> None:
        self._client: _Bot | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._attempt = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, ctx: PluginContext) -> None:
        if not ctx.settings["bot_token"]:
            await ctx.set_connection("not_configured", reason="no bot token set")
            return
        self._attempt = 0
        await ctx.set_connection("connecting")
        self._supervisor = ctx.create_task(self._supervise(ctx), name="supervisor")

    async def stop(self, ctx: PluginContext) -> None:
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            # wait(), not `await supervisor` under suppress(CancelledError): that would also
            # swallow a cancellation of stop() itself, and the host's stop_timeout with it.
            await asyncio.wait([supervisor])
        await self._close_client()
        await ctx.set_connection("stopped", reason=None, attempt=None)

    async def apply_settings(self, ctx: PluginContext, changed: frozenset[str]) -> bool:
        if changed != {"status_text"}:
            return False  # anything else needs a new client
        client = self._client
        if client is not None and client.is_ready() and not client.is_closed():
            await client.change_presence(activity=self._activity(ctx))
        return True

    # -- the supervisor ----------------------------------------------------------------------

    async def _supervise(self, ctx: PluginContext) -> None:
        """Run clients until stopped. discord.py retries a running connection itself; this
        loop covers what it does not: a failing login, the first-connect bug of 2.7.1, and any
        other exit that is not fatal. It never spins: every retry waits a jittered backoff."""
        log = ctx.logger
        while True:
            try:
                await self._run_client(ctx)
                return  # the client was closed: we are stopping
            except _Fatal as exc:
                log.error("discord: %s", exc)
                await ctx.set_connection("error", reason=str(exc), attempt=None)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = _describe(exc)
            await self._close_client()
            await self._disconnected(ctx, reason)
            delay = self._backoff(ctx)
            log.info("discord: retrying in %.1f s (attempt %d)", delay, self._attempt + 1)
            await asyncio.sleep(delay)
            await ctx.set_connection("connecting", attempt=self._attempt + 1, reason=None)

    async def _run_client(self, ctx: PluginContext) -> None:
        s = ctx.settings
        # discord.py has no per-client base URLs; these class attributes are its documented
        # way in (stable since 2.0), and one Discord plugin runs per daemon.
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
        try:
            async with client:
                await client.start(s["bot_token"], reconnect=True)
        except discord.LoginFailure:
            raise _Fatal(
                "Discord rejected the bot token (401 Unauthorized); check bot_token"
            ) from None
        except discord.PrivilegedIntentsRequired:
            raise _Fatal(_INTENTS_REASON) from None
        except discord.ConnectionClosed as exc:
            if exc.code in _FATAL_CLOSE:
                raise _Fatal(_FATAL_CLOSE[exc.code]) from None
            raise

    def _backoff(self, ctx: PluginContext) -> float:
        cap = float(ctx.settings["max_backoff"])
        return min(cap, 2.0 ** min(self._attempt - 1, 16)) * random.uniform(0.5, 1.0)

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None and not client.is_closed():
            await client.close()

    def _activity(self, ctx: PluginContext) -> discord.BaseActivity | None:
        text = ctx.settings["status_text"]
        return discord.Game(name=text) if text else None

    # -- reports (called from the client's event handlers) -----------------------------------

    async def _connected(self, ctx: PluginContext, username: str | None) -> None:
        self._attempt = 0
        fields: dict[str, Any] = {"reason": None, "attempt": None}
        if username is not None:
            fields["username"] = username
        ctx.logger.info(
            "discord: connected as %s",
            username or (ctx.connection and ctx.connection.get("username")),
        )
        await ctx.set_connection("connected", **fields)

    async def _disconnected(self, ctx: PluginContext, reason: str) -> None:
        self._attempt += 1
        ctx.logger.warning("discord: disconnected (%s); attempt %d", reason, self._attempt)
        await ctx.set_connection("disconnected", attempt=self._attempt, reason=reason)
