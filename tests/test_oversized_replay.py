"""An event over the 1 MiB frame limit that older code stored (before the limit was enforced
at publish time) no longer breaks every replay that reaches it: it is sent as a stand-in with
the same seq, time and name whose data says what happened, and the replay and the connection
go on (a real daemon on the seeded SQLite file, a real socket, the real CLI)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

from harness.client import Client
from harness.config import Config
from harness.protocol import MAX_FRAME_BYTES, Event, Replayed
from tests import stored_history
from tests.conftest import StartDaemon, run_cli, subprocess_env

BIG = MAX_FRAME_BYTES * 2


async def seeded(config: Config) -> int:
    """seq 1 small, seq 2 over the limit, seq 3 small; returns the last seq."""
    rows = [
        ("old:before", json.dumps({"n": 1})),
        ("old:blob", json.dumps({"pad": "x" * BIG})),
        ("old:after", json.dumps({"n": 3})),
    ]
    return await stored_history.seed(config.database_path, rows)


async def test_a_replay_sends_a_stand_in_for_an_oversized_stored_event_and_goes_on(
    start_daemon: StartDaemon, connect: Callable[..., Awaitable[Client]], config: Config
) -> None:
    assert await seeded(config) == 3
    await start_daemon(plugins={})
    client = await connect()
    await client.subscribe(["old:*"], since=0)
    got: list[Event] = []
    while not isinstance(frame := await client.next_frame(), Replayed):
        got.append(frame)
    assert [(e.seq, e.event) for e in got] == [(1, "old:before"), (2, "old:blob"), (3, "old:after")]
    assert got[0].data == {"n": 1} and got[2].data == {"n": 3}
    stand_in = got[1].data
    assert stand_in["size"] > MAX_FRAME_BYTES
    assert "over the" in stand_in["omitted"] and "frame limit" in stand_in["omitted"]
    # The connection is still whole: requests are answered.
    assert (await client.request("ping"))["seq"] == 3
    # The daemon's history request says the same instead of failing as too large.
    history = await client.request("events.history", name="old:blob")
    assert history["events"][0]["data"]["size"] == stand_in["size"]


async def test_events_since_prints_the_replay_past_an_oversized_stored_event(
    start_daemon: StartDaemon, config: Config, state_dir: Path
) -> None:
    await seeded(config)
    await start_daemon(plugins={})
    env = subprocess_env(state_dir)
    for extra in ((), ("--json",)):  # the decoded path and the block copy
        shown = await run_cli(
            "events", "--socket", str(config.socket_path), "--since", "0", *extra, env=env
        )
        assert shown.rc == 0, shown.err
        assert "old:before" in shown.out and "old:after" in shown.out
        assert "frame limit" in shown.out and "x" * 100 not in shown.out
