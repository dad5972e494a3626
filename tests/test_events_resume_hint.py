"""`harness events` that ends under the operator names the command that carries on from the
last event shown (cli7). That command must be the same one from there: `--until` was dropped
(a `-f --until N` carried on as a follow with no end), as was `--remote-harness`; and with no
event shown, a `--since 10m` became `--since 0` (every stored event) and a plain `-f` the
`--since` of the 5000 events it had scanned (not the newest 20 it would show)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shlex
import signal
from pathlib import Path

import pytest

from harness.cli import parse_args
from harness.cli.events import parse_point, resume_hint
from tests.conftest import HANG_GUARD, SpawnDaemon, subprocess_env, write_config
from tests.test_cli_liveness import cli


def _carry_on(hint: str) -> list[str]:
    """The command the hint gives, as words."""
    return shlex.split(hint.split("to carry on from there: ", 1)[1])


async def test_a_follow_with_until_ended_by_a_crash_carries_on_with_its_until(
    spawn_daemon: SpawnDaemon, state_dir: Path
) -> None:
    daemon = await spawn_daemon(write_config(state_dir))
    socket = str(state_dir / "run" / "harness.sock")
    argv = ["--socket", socket, "events", "-f", "--since", "0", "--until", "1000000"]
    async with cli(*argv, env=subprocess_env(state_dir)) as child:
        stdout, stderr = child.proc.stdout, child.proc.stderr
        assert stdout is not None and stderr is not None
        read = b""
        async with asyncio.timeout(HANG_GUARD):
            while b"discord" not in read:  # the daemon's own start events
                line = await stdout.readline()
                assert line, "ended before the first events"
                read += line
        os.kill(daemon.pid, signal.SIGKILL)
        async with asyncio.timeout(HANG_GUARD):
            rest, err = await asyncio.gather(stdout.read(), stderr.read())
            rc = await child.proc.wait()
    assert rc == 3, err
    last = int([line for line in (read + rest).decode().splitlines() if line][-1].split()[0])
    words = _carry_on(err.decode())
    # Before: "harness --socket S events --since N -f": a follow that never ends.
    since = ["--since", str(last), "--until", "1000000", "-f"]
    assert words == ["harness", "--socket", socket, "events", *since], words


def test_the_command_to_carry_on_is_the_same_command_from_there() -> None:
    now = dt.datetime(2026, 11, 26, 18, 0, 0, 123456).timestamp()
    # A time --since and nothing shown yet: from that same moment, not from seq 0.
    args = parse_args(["events", "-f", "--since", "10m"])
    words = _carry_on(resume_hint(args, None, 0))
    at = words[words.index("--since") + 1]
    assert at != "0" and parse_point(at).ts == pytest.approx(args.since.ts, abs=1e-5), words
    # An --until (a seq or a time) is kept, as is --remote-harness.
    remote = ["--host", "ssh://ops@prod", "--remote-harness", "/opt/h/bin/harness"]
    until = dt.datetime.fromtimestamp(now).isoformat()
    args = parse_args([*remote, "events", "-f", "--until", until])
    words = _carry_on(resume_hint(args, 41, 0))
    assert words[:5] == ["harness", *remote], words
    assert words[words.index("--since") + 1] == "41"
    assert parse_point(words[words.index("--until") + 1]).ts == pytest.approx(now, abs=1e-5)
    # No --since, nothing shown: the same command again (the newest -n), not the --since of
    # the events it scanned for them.
    args = parse_args(["events", "-f", "-n", "7"])
    words = _carry_on(resume_hint(args, None, 4993))
    assert "--since" not in words and words[words.index("-n") + 1] == "7", words
