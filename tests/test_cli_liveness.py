"""``harness events --follow`` against a daemon that stops answering (SIGSTOP) with its socket
open: a clear warning on stderr instead of silence, the command keeps following, says when the
daemon is back, and prints what comes next (a real `harness run` subprocess, locally and over
a real sshd)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from harness import liveness, transport
from harness.client import Client
from tests import ext_plugins, stored_history
from tests.conftest import REPO_ROOT, SpawnDaemon, subprocess_env, write_config
from tests.sshd import Sshd, running_sshd

TOKEN = "liveness-cli-t0ken"


class Follower:
    """``harness events -f`` as a child: its stdout and stderr read line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.err: list[str] = []

    async def line(self, stream: asyncio.StreamReader, want: str, timeout: float) -> str:
        async with asyncio.timeout(timeout):
            while True:
                raw = await stream.readline()
                if not raw:
                    raise AssertionError(f"ended before {want!r}; stderr: {self.err}")
                text = raw.decode()
                if stream is self.proc.stderr:
                    self.err.append(text)
                if want in text:
                    return text

    async def out(self, want: str, timeout: float = 15.0) -> str:
        assert self.proc.stdout is not None
        return await self.line(self.proc.stdout, want, timeout)

    async def stderr(self, want: str, timeout: float = 15.0) -> str:
        assert self.proc.stderr is not None
        return await self.line(self.proc.stderr, want, timeout)


@contextlib.asynccontextmanager
async def cli(*args: str, env: dict[str, str]) -> AsyncIterator[Follower]:
    """``harness ARGS`` as a child whose stdout and stderr are read to the end on the way out."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "harness",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
        env=env,
    )
    try:
        yield Follower(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
        # Read to the end: asyncio's wait() also waits for the pipes, and a reader holding
        # much unread output has paused reading them.
        for stream in (proc.stdout, proc.stderr):
            assert stream is not None
            await stream.read()
        await proc.wait()


def following(*args: str, env: dict[str, str]) -> contextlib.AbstractAsyncContextManager[Follower]:
    return cli("events", "-f", *args, env=env)


@contextlib.contextmanager
def stopped(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    with running_sshd() as server:
        yield server


async def _freeze_and_resume(
    spawn_daemon: SpawnDaemon, state_dir: Path, args: tuple[str, ...], env: dict[str, str]
) -> None:
    site = ext_plugins.install(state_dir / "site", echo="tests.sample_plugins:Echo")
    config = write_config(state_dir, plugins={"echo": {"token": TOKEN}})
    daemon = await spawn_daemon(
        config, env=subprocess_env(state_dir, PYTHONPATH=f"{site}{os.pathsep}{REPO_ROOT}")
    )
    async with following(*args, "*:connection", env=env) as follower:
        await follower.out("EchoBot")  # the backlog: it is following
        with stopped(daemon.pid):
            said = await follower.stderr("not responding")
            assert "still following" in said and "Ctrl-C" in said
            assert follower.proc.returncode is None  # it waits, as `tail -f` would
        await follower.stderr("responding again")
        client = await Client.connect(daemon.socket_path)
        try:
            await client.request("plugins.update_settings", name="echo", settings={"prefix": "Re"})
        finally:
            await client.close()
        await follower.out("ReBot")  # and what came next is printed
        assert follower.proc.returncode is None


async def test_follow_warns_about_a_stopped_daemon_and_carries_on(
    spawn_daemon: SpawnDaemon, state_dir: Path
) -> None:
    env = subprocess_env(state_dir, **{liveness.ENV_INTERVAL: "0.3"})
    socket = str(state_dir / "run" / "harness.sock")
    await _freeze_and_resume(spawn_daemon, state_dir, ("--socket", socket), env)


async def test_follow_over_ssh_warns_about_a_stopped_daemon(
    spawn_daemon: SpawnDaemon, state_dir: Path, sshd: Sshd
) -> None:
    sshd.authorize(env={"HARNESS_CONFIG": str(state_dir / "harness.toml")})
    env = subprocess_env(
        state_dir, **{liveness.ENV_INTERVAL: "0.3", transport.ENV_SSH: sshd.ssh_env}
    )
    await _freeze_and_resume(spawn_daemon, state_dir, ("--host", sshd.url), env)


async def test_follow_warns_about_a_daemon_stopped_during_the_replay(
    spawn_daemon: SpawnDaemon, state_dir: Path
) -> None:
    """Frozen before following starts, while the backlog is being replayed: the same warning
    (naming the replay), and the replay and then the following carry on once it answers.

    The replay (about 6 MB) is far larger than what the pipes and the daemon's buffers hold,
    and this test reads nothing of the follower's output after its first line until the daemon
    is stopped: the follower cannot have reached the end of the replay before the stop. From
    the stop on, its output is read as a terminal would read it: a follower blocked writing to
    a full pipe could not say anything (CI once stopped the daemon only after the follower had
    filled the pipe, and the warning never came)."""
    last = await stored_history.seed(
        state_dir / "state" / "state.db", stored_history.padded(3000, 2000)
    )
    site = ext_plugins.install(state_dir / "site", echo="tests.sample_plugins:Echo")
    config = write_config(state_dir, plugins={"echo": {"token": TOKEN}})
    daemon = await spawn_daemon(
        config, env=subprocess_env(state_dir, PYTHONPATH=f"{site}{os.pathsep}{REPO_ROOT}")
    )
    env = subprocess_env(state_dir, **{liveness.ENV_INTERVAL: "0.3"})
    socket = str(state_dir / "run" / "harness.sock")
    async with following("--socket", socket, "--since", "0", "--json", env=env) as follower:
        await follower.out('"seq":1,')  # replaying: now stop the daemon in the middle of it
        with stopped(daemon.pid):
            to_the_end = asyncio.create_task(follower.out(f'"seq":{last},', timeout=60.0))
            try:
                said = await follower.stderr("not responding")
                assert "still waiting for the replay" in said and "Ctrl-C" in said
                assert follower.proc.returncode is None
                assert not to_the_end.done()  # stopped in the middle of the replay
            except BaseException:
                to_the_end.cancel()
                with contextlib.suppress(BaseException):
                    await to_the_end
                raise
        assert "responding again; replaying" in await follower.stderr("responding again")
        await to_the_end  # the replay went on to its end
        client = await Client.connect(daemon.socket_path)
        try:
            await client.request("plugins.update_settings", name="echo", settings={"prefix": "Re"})
        finally:
            await client.close()
        await follower.out("ReBot")  # and following began
        assert follower.proc.returncode is None
