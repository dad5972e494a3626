"""The discord.py internals the Discord plugin runs the gateway on. If a new discord.py moves
any of them, this fails and says what changed, before the plugin misbehaves in production."""

from __future__ import annotations

import inspect
from importlib.metadata import version

import discord
import discord.client
import discord.gateway
import discord.http
import discord.state

from harness.plugins.discord_gateway import DiscordWebSocket, GatewaySocket


def params(func: object) -> list[str]:
    return list(inspect.signature(func).parameters)  # type: ignore[arg-type]


def test_the_pinned_version_is_the_tested_one() -> None:
    assert version("discord.py").startswith("2.7."), (
        f"discord.py {version('discord.py')} is outside the tested 2.7.x: re-check this file's "
        "internals and the plugin's supervisor, then move the pin in pyproject.toml"
    )


def test_from_client_takes_what_the_supervisor_passes() -> None:
    got = params(DiscordWebSocket.from_client.__func__)  # type: ignore[attr-defined]
    for name in ("client", "initial", "gateway", "shard_id", "session", "sequence", "resume"):
        assert name in got, f"DiscordWebSocket.from_client lost the {name!r} argument: {got}"


def test_the_websocket_attributes_the_supervisor_reads_exist() -> None:
    src = inspect.getsource(DiscordWebSocket)
    for attr in (
        "self.sequence",
        "self.session_id",
        "self.gateway",
        "self._keep_alive",
        "self.socket",
        "self._max_heartbeat_timeout",
    ):
        assert attr in src, f"DiscordWebSocket no longer has {attr}"
    assert "self.log_receive(msg)" in inspect.getsource(DiscordWebSocket.received_message), (
        "received_message no longer hands the decoded payload to log_receive: GatewaySocket "
        "cannot tell op 7 from op 9 any more"
    )
    assert params(DiscordWebSocket.received_message)[:2] == ["self", "msg"]
    assert issubclass(GatewaySocket, DiscordWebSocket)


def test_keep_alive_handler_fields_used_for_zombie_detection() -> None:
    src = inspect.getsource(discord.gateway.KeepAliveHandler)
    for attr in ("self.interval", "def stop"):
        assert attr in src, f"KeepAliveHandler no longer has {attr}: zombie detection is blind"
    assert "self.ws.send_heartbeat(" in src, (
        "KeepAliveHandler no longer sends through ws.send_heartbeat: GatewaySocket's heartbeat "
        "clock never starts and zombie detection is blind"
    )
    assert "perf_counter" in src, "KeepAliveHandler's clock changed: perf_to_epoch is wrong"


def test_reconnect_signal_and_url_overrides() -> None:
    assert "resume" in params(discord.gateway.ReconnectWebSocket.__init__)
    assert hasattr(discord.http.Route, "BASE"), "Route.BASE gone: api_base_url cannot apply"
    assert hasattr(DiscordWebSocket, "DEFAULT_GATEWAY"), "DEFAULT_GATEWAY gone: gateway_url"
    assert params(discord.Client.before_identify_hook)[1:] == ["shard_id", "initial"]
    src = inspect.getsource(discord.Client.close)
    assert "self.ws" in src, "Client.close no longer closes self.ws: the supervisor sets it"


def test_ready_is_delayed_for_guilds_as_the_plugin_expects() -> None:
    src = inspect.getsource(discord.state.ConnectionState.parse_ready)
    assert "_delay_ready" in src and "self.dispatch('connect')" in src


def test_ready_task_cancelled_at_close() -> None:
    src = inspect.getsource(discord.state.ConnectionState)
    assert "self._ready_task" in src, (
        "ConnectionState._ready_task gone: the plugin can no longer cancel discord.py's guild "
        "wait at close, and a stop soon after READY may leave a crashing task behind"
    )


def test_sharded_state_the_plugin_relies_on() -> None:
    """Sharded, the plugin uses AutoShardedClient for its per-shard state only: READY of one
    shard must not clear the others' guilds, shard_ready is dispatched per shard, and the
    shard count and ids are plain attributes the plugin sets before connecting."""
    import discord.shard

    state = inspect.getsource(discord.state.AutoShardedConnectionState.parse_ready)
    assert "data['shard']" in state or 'data["shard"]' in state, (
        "AutoShardedConnectionState.parse_ready no longer reads READY's shard: re-check the "
        "sharded path of the Discord plugin"
    )
    assert "self.clear(" not in state, "a shard's READY now clears every guild"
    delay = inspect.getsource(discord.state.AutoShardedConnectionState._delay_shard_ready)
    assert "'shard_ready'" in delay or '"shard_ready"' in delay, "shard_ready is no longer sent"
    launch = inspect.getsource(discord.shard.AutoShardedClient.launch_shards)
    for attr in ("self._connection.shard_count", "self._connection.shard_ids"):
        assert attr in launch, f"AutoShardedClient no longer sets {attr}: the plugin sets it"
    assert "shard" in inspect.getsource(DiscordWebSocket.identify)


def test_the_parsers_guild_counts_wraps() -> None:
    """GuildCounts (harness/plugins/discord_gateway.py) replaces the READY, GUILD_CREATE and
    GUILD_DELETE entries of the state's ``parsers`` dict, which every socket reads as
    ``_discord_parsers``, and hands READY on without its guild list."""
    state_src = inspect.getsource(discord.state.ConnectionState)
    for attr in ("self.parsers", "self._guilds", "self.shard_count"):
        assert attr in state_src, f"ConnectionState no longer has {attr}: GuildCounts is blind"
    for parser in ("parse_ready", "parse_guild_create", "parse_guild_delete"):
        assert hasattr(discord.state.ConnectionState, parser), f"{parser} is gone"
    assert "ws._discord_parsers = client._connection.parsers" in inspect.getsource(
        DiscordWebSocket.from_client
    ), "sockets no longer read the state's parsers dict: GuildCounts' wrappers are skipped"
    for cls in (discord.state.ConnectionState, discord.state.AutoShardedConnectionState):
        ready = inspect.getsource(cls.parse_ready)
        assert "data['guilds']" in ready, f"{cls.__name__}.parse_ready reads guilds elsewhere"
    assert "data['shard']" in inspect.getsource(
        discord.state.AutoShardedConnectionState.parse_ready
    )
