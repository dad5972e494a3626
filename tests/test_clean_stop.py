"""What a subscriber sees when the daemon stops cleanly (docs/protocol.md, "When the daemon
stops"): each plugin's `stopped`, then end of stream; no error frame, no close code."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

from tests.conftest import HANG_GUARD, SpawnDaemon, write_config


async def test_a_clean_stop_sends_stopped_then_end_of_stream(
    state_dir: Path, spawn_daemon: SpawnDaemon
) -> None:
    daemon = await spawn_daemon(write_config(state_dir))
    reader, writer = await asyncio.open_unix_connection(str(daemon.socket_path), limit=2**21)
    try:
        writer.write(b'{"type":"hello","protocol":1,"client":"stop-test"}\n')
        writer.write(b'{"type":"subscribe","id":1,"events":["*"]}\n')
        await writer.drain()
        assert json.loads(await reader.readline())["type"] == "welcome"
        assert json.loads(await reader.readline())["type"] == "ack"
        daemon.proc.send_signal(signal.SIGTERM)
        frames = []
        async with asyncio.timeout(HANG_GUARD):
            while line := await reader.readline():  # b"": the end of the stream
                frames.append(json.loads(line))
    finally:
        writer.close()
    assert await daemon.wait() == 0, daemon.stderr
    assert [f["type"] for f in frames] == ["event"] * len(frames), frames
    by_name = {f["event"]: f["data"] for f in frames}
    assert by_name["discord:connection"]["state"] == "stopped"
    assert by_name["discord:connection"]["reason"] == "daemon shut down"
    assert by_name["plugin:status"]["status"] == "stopped"
    names = [f["event"] for f in frames]
    assert names.index("discord:connection") < names.index("plugin:status")
