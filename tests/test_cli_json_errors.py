"""Reported from outside (round 2, sixth session), each driving the real CLI as a subprocess:
a ``--json`` command that fails says why on stdout as one JSON object, not only on stderr (a
consumer in a pipe read nothing and had to guess), and ``harness events -f`` that ends under
the operator says where to carry on from (docs/operations.md, "Errors with --json")."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from harness import liveness
from tests import stored_history
from tests.conftest import HANG_GUARD, SpawnDaemon, run_cli, subprocess_env, write_config
from tests.test_cli_liveness import cli, stopped


def the_error(out: str) -> dict[str, object]:
    """stdout holds exactly one line: the error object."""
    lines = out.splitlines()
    assert len(lines) == 1, out
    frame = json.loads(lines[0])
    assert set(frame) == {"error"}, frame
    error = frame["error"]
    assert isinstance(error, dict)
    return error


JSON_COMMANDS = [
    ("status", "--json"),
    ("plugins", "list", "--json"),
    ("plugins", "show", "echo", "--json"),
    ("events", "--json"),
    ("events", "--since", "0", "--json"),
    ("events", "-f", "--json"),
    ("alerts", "--json"),
    ("silence", "list", "--json"),
]


@pytest.mark.parametrize("argv", JSON_COMMANDS, ids=" ".join)
async def test_every_json_command_says_no_daemon_on_stdout(
    state_dir: Path, argv: tuple[str, ...]
) -> None:
    missing = state_dir / "none" / "harness.sock"
    result = await run_cli("--socket", str(missing), *argv, env=subprocess_env(state_dir))
    assert result.rc == 3, result
    error = the_error(result.out)
    assert error["code"] == "no_daemon" and error["exit_code"] == 3, error
    assert error["details"] == {"not_running": True}, error
    # The same words as stderr's first line (stderr keeps its hints for a person).
    assert result.err.splitlines()[0] == f"harness: {error['message']}", result.err
    assert str(missing) in str(error["message"]) and "start it: harness run" in result.err


async def test_usage_and_config_errors_with_json_are_json_too(state_dir: Path) -> None:
    env = subprocess_env(state_dir)
    bogus = await run_cli("status", "--json", "--bogus", env=env)
    assert bogus.rc == 2, bogus
    error = the_error(bogus.out)
    assert error["code"] == "usage" and "--bogus" in str(error["message"]), error
    assert "usage: harness" in bogus.err  # argparse's usage, on stderr as before

    empty = await run_cli("events", "--since", "5", "--until", "3", "--json", env=env)
    assert empty.rc == 2 and the_error(empty.out)["code"] == "usage", empty

    bad = state_dir / "bad.toml"
    bad.write_text("[daemon\n")
    for argv in (("config", "--json"), ("status", "--json"), ("context", "list", "--json")):
        result = await run_cli("--config", str(bad), *argv, env=env)
        assert result.rc == 2, (argv, result)
        error = the_error(result.out)
        assert error["code"] == "config" and str(bad) in str(error["message"]), (argv, error)


async def test_a_refusal_and_a_stopped_daemon_with_json(
    spawn_daemon: SpawnDaemon, state_dir: Path
) -> None:
    daemon = await spawn_daemon(write_config(state_dir))
    env = subprocess_env(state_dir, **{liveness.ENV_INTERVAL: "0.2"})
    socket = str(state_dir / "run" / "harness.sock")
    refused = await run_cli("--socket", socket, "plugins", "show", "nope", "--json", env=env)
    assert refused.rc == 1, refused
    error = the_error(refused.out)
    assert error["code"] not in ("", "refused") and "nope" in str(error["message"]), error

    with stopped(daemon.pid):
        frozen = await run_cli("--socket", socket, "status", "--json", env=env)
    assert frozen.rc == 3, frozen
    error = the_error(frozen.out)
    assert error["code"] == "no_daemon" and "not responding" in str(error["message"]), error
    assert error["details"] == {"not_running": False}, error


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "text"])
async def test_follow_ended_by_a_crash_says_the_since_to_resume_from(
    spawn_daemon: SpawnDaemon, state_dir: Path, as_json: bool
) -> None:
    """`harness events -f` ended (here: the daemon killed) with only "the daemon closed the
    connection": the operator had to find the last seq in the output to carry on. stderr now
    names it, as a command; with --json stdout stays events only."""
    daemon = await spawn_daemon(write_config(state_dir))
    socket = str(state_dir / "run" / "harness.sock")
    argv = ["--socket", socket, "events", "-f", "--since", "0"] + (["--json"] if as_json else [])
    async with cli(*argv, env=subprocess_env(state_dir)) as child:
        stdout, stderr = child.proc.stdout, child.proc.stderr
        assert stdout is not None and stderr is not None
        read = b""
        async with asyncio.timeout(HANG_GUARD):
            # The daemon's own start events (the discord plugin, not configured, says so).
            while b"discord" not in read:
                line = await stdout.readline()
                assert line, "ended before the first events"
                read += line
        os.kill(daemon.pid, signal.SIGKILL)
        async with asyncio.timeout(HANG_GUARD):
            rest, err = await asyncio.gather(stdout.read(), stderr.read())
            rc = await child.proc.wait()
    err_text = err.decode()
    assert rc == 3, err_text
    lines = [line for line in (read + rest).decode().splitlines() if line]
    if as_json:
        assert all(json.loads(line)["type"] == "event" for line in lines), lines
        last = json.loads(lines[-1])["seq"]
    else:
        last = int(lines[-1].split()[0])
    assert f"the last event shown was seq {last}" in err_text, err_text
    again = f"harness --socket {socket} events --since {last} -f" + (" --json" if as_json else "")
    assert again in err_text, err_text
    assert "Traceback" not in err_text


async def test_a_json_replay_is_the_daemons_lines_byte_for_byte(
    spawn_daemon: SpawnDaemon, state_dir: Path
) -> None:
    """`events --since 0 --json` passes the event lines on as received, in blocks (issue 10):
    its stdout is exactly what a plain stdlib client (the benchmark's baseline) passes on."""
    from harness.bench.cli import STDLIB_EVENTS

    last = await stored_history.seed(
        state_dir / "state" / "state.db", stored_history.padded(3000, 300)
    )
    await spawn_daemon(write_config(state_dir))
    socket = str(state_dir / "run" / "harness.sock")
    env = subprocess_env(state_dir)
    harness = await run_cli("--socket", socket, "events", "--since", "0", "--json", env=env)
    assert harness.rc == 0, harness.err
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        textwrap.dedent(STDLIB_EVENTS),
        socket,
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    async with asyncio.timeout(HANG_GUARD):
        plain, _ = await proc.communicate()
    assert proc.returncode == 0
    # The replay ends where the stored history and the daemon's own start events end.
    assert f'"seq":{last},'.encode() in plain
    assert harness.out.encode() == plain


async def test_pipes_and_bad_values_found_in_a_pass_over_every_command(
    spawn_daemon: SpawnDaemon, state_dir: Path
) -> None:
    """`plugins list | head -1` read an empty line (the table began with one, meant to set it
    apart under `status`'s lines); `alerts history --limit 0` was sent, refused by the daemon
    with msgspec's words, exit 1 (a usage error: 2); a silence too long was refused as "at
    most 2.592e+06 s"."""
    await spawn_daemon(write_config(state_dir))
    env = subprocess_env(state_dir)
    socket = ("--socket", str(state_dir / "run" / "harness.sock"))
    listed = await run_cli(*socket, "plugins", "list", env=env)
    assert listed.rc == 0 and listed.out.splitlines()[0].startswith("PLUGIN"), listed
    status = await run_cli(*socket, "status", env=env)
    assert status.rc == 0 and "\n\nPLUGIN " in status.out, status  # still apart there

    for bad in ("0", "1001", "x"):
        limit = await run_cli(*socket, "alerts", "history", "--limit", bad, env=env)
        assert limit.rc == 2, limit
        assert "--limit" in limit.err, limit
        assert "1 to 1000" in limit.err or bad == "x", limit

    long = await run_cli(*socket, "silence", "add", "discord", "40d", env=env)
    assert long.rc == 2 and "at most 30 days" in long.err, long


def test_the_resume_point_is_the_last_lines_own_seq() -> None:
    """An event's data may hold an object that looks like an event line's start: the seq
    to resume from is the last line's own, read at the line's start."""
    from harness.cli.events import last_seq

    nested = b'{"type":"event","seq":13,"data":{"x":{"type":"event","seq":99}}}'
    assert last_seq(b'{"type":"event","seq":12,"data":{}}\n' + nested + b"\n") == 13
    assert last_seq(nested) == 13  # one line as shown, without its newline
    assert last_seq(b"") is None and last_seq(b'{"type":"ack","id":1}\n') is None
