"""Found by an outsider's second pass (round 2, fourth session): each test is one thing that
went wrong through the public interfaces (the real CLI or TUI as a subprocess, a real daemon,
the real TUI through its pilot)."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import msgspec

from harness.client import Client
from harness.config import Config
from tests.conftest import (
    HANG_GUARD,
    REPO_ROOT,
    DaemonProcess,
    StartDaemon,
    run_cli,
    subprocess_env,
    write_config,
)
from tests.sample_plugins import Echo

# -- 1. the monitor without a terminal ----------------------------------------------------------


async def test_the_demo_without_a_terminal_says_so_and_exits_2(state_dir: Path) -> None:
    """`harness demo` from a pipe drew its screen into the pipe and waited for ever for a key
    (it hung a caller for ten minutes). It refuses at once, starting nothing."""
    env = subprocess_env(state_dir, TMPDIR=str(state_dir))
    result = await run_cli("demo", "--flap-every", "0", env=env, timeout=30)
    assert result.rc == 2, result
    assert "needs a terminal" in result.err and "harness status" in result.err, result.err
    assert "harness events -f" in result.err, result.err
    assert "HARNESS_TUI_ANY_TERMINAL=1" in result.err, result.err
    assert result.err.startswith("harness demo: "), result.err
    assert "state in" not in result.err, "the demo started its daemon and gateway first"


async def test_harness_tui_without_a_terminal_says_so_and_exits_2(state_dir: Path) -> None:
    cfg = write_config(state_dir)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from tui.app import main; sys.exit(main())",  # as the console script
        "--config",
        str(cfg),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
        env=subprocess_env(state_dir),
    )
    try:
        async with asyncio.timeout(HANG_GUARD):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 2, (out, err)
    text = err.decode()
    assert text.startswith("harness-tui: ") and "needs a terminal" in text, text
    assert "stdin, stdout, stderr are not one" in text, text
    assert out == b"", out


async def test_on_a_terminal_the_check_lets_the_monitor_start(state_dir: Path) -> None:
    """The other side: with all three streams on a terminal (a pty, as the paint benchmark
    runs the TUI) nothing is refused."""
    master, slave = os.openpty()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "from tui.need_terminal import refusal; print(repr(refusal('x')))",
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=REPO_ROOT,
            env=subprocess_env(state_dir),
        )
        os.close(slave)
        slave = -1
        seen = bytearray()
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(HANG_GUARD):
            while b"None" not in seen and proc.returncode is None:
                try:
                    chunk = await loop.run_in_executor(None, os.read, master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                seen.extend(chunk)
            await proc.wait()
        assert b"None" in seen, bytes(seen)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)


# -- 2. an --until before the --since ----------------------------------------------------------


async def test_events_with_the_end_before_the_start_is_refused(state_dir: Path) -> None:
    """`harness events --since 10m --until 20m` printed nothing and exited 0, as if nothing
    had happened. It is a usage error naming both times, on both parsers (the quick one and
    argparse, which `--since=10m` takes), with or without a daemon."""
    env = subprocess_env(state_dir)
    sock = str(state_dir / "none.sock")
    for argv in (
        ("events", "--since", "10m", "--until", "20m", "--socket", sock),  # quick_parse
        ("events", "--since=10m", "--until=20m", "--socket", sock),  # argparse
    ):
        result = await run_cli(*argv, env=env)
        assert result.rc == 2, (argv, result)
        m = re.search(
            r"--until \((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\) is not after --since "
            r"\((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\)",
            result.err,
        )
        assert m and m[1] < m[2], (argv, result.err)
        assert result.out == "", result.out
    result = await run_cli("events", "--since", "12", "--until", "7", "--socket", sock, env=env)
    assert result.rc == 2 and "--until (seq 7) is not after --since (seq 12)" in result.err, result


async def test_events_with_the_end_after_the_start_still_runs(state_dir: Path) -> None:
    """The right way round passes the check (and, with no daemon there, says so: exit 3)."""
    sock = str(state_dir / "none.sock")
    for argv in (
        ("events", "--since", "20m", "--until", "10m", "--socket", sock),
        ("events", "--since", "7", "--until", "12", "--socket", sock),
    ):
        result = await run_cli(*argv, env=subprocess_env(state_dir))
        assert result.rc == 3, (argv, result)


# -- 3. relative paths in the config ------------------------------------------------------------


async def test_relative_paths_in_the_config_are_the_files_not_each_processs(
    state_dir: Path,
) -> None:
    """`socket = "run/h.sock"` was resolved against each process's working directory: the
    daemon started in one directory and `harness status` run in another looked at two
    different sockets. Both (and a context's socket) now read it beside the config file."""
    conf_dir = state_dir / "conf"
    conf_dir.mkdir()
    cfg = conf_dir / "harness.toml"
    cfg.write_text(
        '[daemon]\nsocket = "run/h.sock"\ndatabase = "data/state.db"\n\n'
        '[contexts.here]\nsocket = "run/h.sock"\n'
    )
    daemon_cwd = state_dir / "daemon-cwd"
    daemon_cwd.mkdir()
    env = subprocess_env(state_dir)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "harness",
        "run",
        "--config",
        str(cfg),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        cwd=daemon_cwd,
        env=env,
    )
    daemon = DaemonProcess(proc, conf_dir / "run" / "h.sock")
    try:
        await daemon.wait_ready()
        assert (conf_dir / "data" / "state.db").exists()
        assert not (daemon_cwd / "run").exists() and not (daemon_cwd / "data").exists()
        # The client runs in another directory (the repository): it finds the same daemon.
        status = await run_cli("--config", str(cfg), "status", "--json", env=env)
        assert status.rc == 0, status
        assert f'"{conf_dir / "run" / "h.sock"}"' in status.out, status.out
        via_context = await run_cli(
            "--config", str(cfg), "status", "--context", "here", "--json", env=env
        )
        assert via_context.rc == 0, via_context
        shown = await run_cli("--config", str(cfg), "config", "--json", env=env)
        assert shown.rc == 0 and str(conf_dir / "data" / "state.db") in shown.out, shown
    finally:
        daemon.kill()
        await daemon.wait()


# -- 4. a save that changes nothing -------------------------------------------------------------


async def test_plugins_set_that_changes_nothing_says_so(
    start_daemon: StartDaemon, config: Config, state_dir: Path
) -> None:
    """`harness plugins set echo retries=` with retries already at its default said "echo:
    saved retries" though the daemon's plugin:settings event said changed=[]."""
    cfg = msgspec.structs.replace(config, plugins={"echo": {"token": "t-0123456789"}})
    await start_daemon(plugins={"echo": Echo}, cfg=cfg)
    env = subprocess_env(state_dir)
    sock = str(cfg.socket_path)
    async with await Client.connect(cfg.socket_path) as watcher:
        await watcher.subscribe(["plugin:settings"])
        result = await run_cli("plugins", "set", "echo", "retries=", "--socket", sock, env=env)
        assert result.rc == 0, result
        assert result.out.strip() == "Nothing changed for echo: retries already had that value."
        async with asyncio.timeout(HANG_GUARD):
            event = await watcher.next_event()
        assert event.data["changed"] == [], event
        # Only what really changed is named as saved.
        result = await run_cli(
            "plugins", "set", "echo", "retries=3", "prefix=New", "--socket", sock, env=env
        )
        assert result.rc == 0, result
        assert result.out.startswith("echo: saved prefix; plugin running"), result.out
        # A secret given a value counts as changed: its view ({"set": true}) cannot tell.
        result = await run_cli(
            "plugins", "set", "echo", "token=-", "--socket", sock, input="t-9876543210\n", env=env
        )
        assert result.rc == 0 and result.out.startswith("echo: saved token;"), result
