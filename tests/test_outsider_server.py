"""Found by holding connections open on a watched daemon (round 2, fourth session): a client
that never completes its hello held one of max_clients for ever, so enough silent (or
byte-a-second) connections turned every `harness status` away."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from harness import server
from harness.client import Client
from harness.config import Config
from tests.conftest import RawConnection, StartDaemon
from tests.sample_plugins import Echo

Raw = Callable[..., Awaitable[RawConnection]]


async def test_a_connection_that_never_says_hello_is_closed_and_its_place_freed(
    start_daemon: StartDaemon, config: Config, raw: Raw, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "HELLO_TIMEOUT", 0.3)
    config.daemon.max_clients = 3
    await start_daemon(plugins={"echo": Echo})
    polite = await raw()  # opened first: its deadline passes before the others'
    await polite.hello()
    silent = await raw()
    slow = await raw()
    await slow.send(b'{"type":"hel')  # a hello that never ends (slow-loris)
    for conn in (silent, slow):
        frame = await conn.recv(timeout=10)
        assert frame["type"] == "error" and frame["code"] == "protocol_error", frame
        assert "no hello within 0.3 s" in frame["message"], frame
        with pytest.raises(EOFError):
            await conn.recv(timeout=10)
    # The client that said hello in time is not cut once its deadline has passed.
    answer = await polite.request(1, "status")
    assert answer["type"] == "response", answer
    # The two places are free again: an ordinary client gets in.
    async with await Client.connect(config.socket_path) as client:
        assert (await client.request("status"))["clients"] == 2


async def test_max_clients_connections_arriving_together_are_all_taken(
    start_daemon: StartDaemon, config: Config, raw: Raw
) -> None:
    """With max_clients = 3 and clients arriving back to back, the third was turned away
    ("already serves 3 clients" while it served 2): a connection was counted both as set up
    and as still being set up for a loop step."""
    config.daemon.max_clients = 3
    await start_daemon(plugins={"echo": Echo})
    first = await raw()
    await first.hello()
    second, third = await raw(), await raw()  # accepted in quick succession
    for conn in (second, third):
        welcome = await conn.hello()
        assert welcome["type"] == "welcome", welcome
    fourth = await raw()
    refused = await fourth.recv()
    assert refused["code"] == "too_many_clients", refused
