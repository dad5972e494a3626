"""`harness events -f | head -1` ends quietly with status 0, as README says: it did only once
the daemon published another event (the write after `head` left failed); on a quiet daemon it
waited for ever, and the shell with it. A follower that hears nothing for the ping interval
now also looks whether anyone still reads its output. A real daemon, the real CLI as a
subprocess whose stdout is a pipe the test closes, as `head` does."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from harness import liveness
from harness.client import Client
from tests.conftest import (
    HANG_GUARD,
    REPO_ROOT,
    SpawnDaemon,
    next_matching,
    subprocess_env,
    write_config,
)


async def test_follow_ends_quietly_once_its_reader_is_gone(
    spawn_daemon: SpawnDaemon, state_dir: Path
) -> None:
    daemon = await spawn_daemon(write_config(state_dir))
    socket = str(state_dir / "run" / "harness.sock")
    # The daemon's start events all out (its plugin's status last): nothing follows them.
    client = await Client.connect(daemon.socket_path, client="test")
    try:
        await client.subscribe(["*"], since=0)
        await next_matching(client, lambda e: e.event == "plugin:status")
    finally:
        await client.close()
    read, write = os.pipe()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "harness", "--socket", socket, "events", "-f", "-n", "1"),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=write,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
        env=subprocess_env(state_dir, **{liveness.ENV_INTERVAL: "0.2"}),
    )
    os.close(write)
    assert proc.stderr is not None
    errors = asyncio.ensure_future(proc.stderr.read())  # drained as it comes
    try:
        with os.fdopen(read, "rb") as reader:
            # `head -1`: one line (the newest, the only one shown), then the reader goes.
            first = await asyncio.wait_for(asyncio.to_thread(reader.readline), HANG_GUARD)
            assert first, "ended before the first event"
        # Nothing more is published: before, the follower never noticed.
        rc = await asyncio.wait_for(proc.wait(), HANG_GUARD)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    err = (await errors).decode()
    assert rc == 0, err
    assert "Traceback" not in err
