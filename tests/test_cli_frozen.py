"""One-shot commands against a daemon that stops answering with its socket open (SIGSTOP of a
real `harness run` subprocess): never silent for ever. `harness events --since` without
``-f`` warns on stderr, waits, says when the daemon answers again and finishes its replay, as
``-f`` does; a request (`harness plugins disable`, the path `status` and `plugins show` take
too) ends with exit 3 and says why. Every pipe of every child is read to its end."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from harness import liveness
from tests import ext_plugins, stored_history
from tests.conftest import (
    HANG_GUARD,
    REPO_ROOT,
    SpawnDaemon,
    subprocess_env,
    write_config,
)
from tests.test_cli_liveness import cli, stopped


async def test_a_replay_without_follow_warns_about_a_stopped_daemon_and_finishes(
    spawn_daemon: SpawnDaemon, state_dir: Path
) -> None:
    """As tests/test_cli_liveness.py's replay test: a 6 MB replay, of which only the first line
    is read before the stop, so the command cannot have reached its end; from the stop on, its
    output is read continuously (a child blocked writing to a full pipe could say nothing)."""
    last = await stored_history.seed(
        state_dir / "state" / "state.db", stored_history.padded(3000, 2000)
    )
    daemon = await spawn_daemon(write_config(state_dir))
    env = subprocess_env(state_dir, **{liveness.ENV_INTERVAL: "0.3"})
    socket = str(state_dir / "run" / "harness.sock")
    async with cli("events", "--socket", socket, "--since", "0", "--json", env=env) as child:
        await child.out('"seq":1,', timeout=60)
        with stopped(daemon.pid):
            to_the_end = asyncio.create_task(child.out(f'"seq":{last},', timeout=60.0))
            try:
                said = await child.stderr("not responding", timeout=60)
                assert "still waiting for the replay" in said and "Ctrl-C" in said
                assert child.proc.returncode is None  # it waits
                assert not to_the_end.done()  # stopped in the middle of the replay
            except BaseException:
                to_the_end.cancel()
                with contextlib.suppress(BaseException):
                    await to_the_end
                raise
        assert "responding again; replaying" in await child.stderr("responding again", timeout=60)
        await to_the_end
        assert child.proc.stdout is not None
        await child.proc.stdout.read()  # and then it ends, as a one-shot replay does
        assert await asyncio.wait_for(child.proc.wait(), 30) == 0, child.err


async def test_a_request_to_a_daemon_that_stops_answering_exits_3(
    spawn_daemon: SpawnDaemon, state_dir: Path
) -> None:
    """`plugins disable` waits while the daemon's loop runs (the plugin takes its time to
    stop, and the daemon answers the pings meanwhile); stopped in the middle, the daemon
    answers nothing: the command gives up, exit 3, saying why and that the change may still
    be made."""
    site = ext_plugins.install(state_dir / "site", slow="tests.ext_plugins:Slow")
    slow = state_dir / "slow"
    slow.mkdir()
    env = subprocess_env(state_dir, PYTHONPATH=f"{site}{os.pathsep}{REPO_ROOT}", SLOW_DIR=str(slow))
    daemon = await spawn_daemon(write_config(state_dir), env=env)
    socket = str(state_dir / "run" / "harness.sock")
    env = subprocess_env(state_dir, **{liveness.ENV_INTERVAL: "0.3"})
    try:
        async with cli("plugins", "disable", "slow", "--socket", socket, env=env) as child:
            async with asyncio.timeout(HANG_GUARD):
                while not (slow / "stopping").exists():  # noqa: ASYNC110 - a file, not an event
                    await asyncio.sleep(0.02)
            with stopped(daemon.pid):
                assert child.proc.stdout is not None and child.proc.stderr is not None
                out, err = await asyncio.wait_for(
                    asyncio.gather(child.proc.stdout.read(), child.proc.stderr.read()), 60
                )
                rc = await asyncio.wait_for(child.proc.wait(), 30)
    finally:
        (slow / "release").write_text("")
    text = err.decode()
    assert rc == 3, (rc, out, text)
    assert "not responding" in text and "plugins.set_enabled" in text, text
    assert "may still be made" in text, text
    assert "Traceback" not in text
    # The daemon carries on once it runs again: the change it was making is made.
    await daemon.wait_ready(60)


async def test_an_asyncio_command_to_a_daemon_that_stops_answering_exits_3(
    spawn_daemon: SpawnDaemon, state_dir: Path
) -> None:
    """`harness alerts test` (the asyncio client, as `silence`): the daemon is sending the test
    notice to a receiver that takes the request and never answers; stopped meanwhile, the
    daemon answers neither the command nor a ping: exit 3, saying why."""
    arrived = asyncio.Event()
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # read, never answered
        arrived.set()
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass

    receiver = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = receiver.sockets[0].getsockname()[1]
    config = write_config(state_dir)
    config.write_text(
        config.read_text()
        + f'\n[alerts]\ntargets = {{ ops = "json://127.0.0.1:{port}/hook" }}\n'
        + 'send_timeout = "60s"\n'
    )
    daemon = await spawn_daemon(config)
    env = subprocess_env(state_dir, **{liveness.ENV_INTERVAL: "0.3"})
    try:
        async with cli("alerts", "test", "ops", "--config", str(config), env=env) as child:
            async with asyncio.timeout(HANG_GUARD):
                await arrived.wait()  # the daemon is in the middle of the request
            with stopped(daemon.pid):
                assert child.proc.stdout is not None and child.proc.stderr is not None
                out, err = await asyncio.wait_for(
                    asyncio.gather(child.proc.stdout.read(), child.proc.stderr.read()), 60
                )
                rc = await asyncio.wait_for(child.proc.wait(), 30)
    finally:
        for writer in held:
            writer.close()
        receiver.close()
        await receiver.wait_closed()
    text = err.decode()
    assert rc == 3, (rc, out, text)
    assert "not responding" in text and "gave up waiting" in text, text
    assert "Traceback" not in text
