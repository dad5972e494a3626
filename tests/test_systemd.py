"""systemd: sd_notify from a real `harness run` to a real datagram socket, the watchdog that a
hung event loop silences, journald log lines, and the unit files."""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import logs, service
from harness.client import Client
from harness.systemd import Notifier, watchdog_interval
from tests import ext_plugins
from tests.conftest import HANG_GUARD, REPO_ROOT, SpawnDaemon, run_cli, subprocess_env, write_config


class NotifySocket:
    """The receiving end systemd would hold: an AF_UNIX datagram socket."""

    def __init__(self, path: Path | str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path) if isinstance(path, Path) else path)
        self.sock.setblocking(False)
        self.messages: list[tuple[float, str]] = []

    async def recv(self, timeout: float) -> str | None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                data = await loop.sock_recv(self.sock, 4096)
        except TimeoutError:
            return None
        text = data.decode()
        self.messages.append((time.time(), text))
        return text

    async def wait_for(self, line: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = await self.recv(left)
            if message is not None and line in message.splitlines():
                return message
        raise AssertionError(f"no {line!r} within {timeout}s; got {self.messages}")

    def drain(self) -> list[str]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify(state_dir: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(state_dir / "notify.sock")
    yield sock
    sock.close()


async def test_run_reports_ready_status_watchdog_and_stopping(
    spawn_daemon: SpawnDaemon, state_dir: Path, notify: NotifySocket
) -> None:
    cfg = write_config(state_dir)
    env = subprocess_env(
        state_dir, NOTIFY_SOCKET=str(state_dir / "notify.sock"), WATCHDOG_USEC="400000"
    )
    daemon = await spawn_daemon(cfg, ready=False, env=env)
    ready = await notify.wait_for("READY=1")
    # READY only once the socket serves: a client connects at once.
    client = await Client.connect(daemon.socket_path, client="after-ready", timeout=HANG_GUARD)
    await client.close()
    assert f"MAINPID={daemon.pid}" in ready.splitlines()
    status = next(line for line in ready.splitlines() if line.startswith("STATUS="))
    assert status.startswith("STATUS=running; discord ")  # each plugin's state, in words
    # Pings keep coming from the event loop (every 0.2 s here).
    await notify.wait_for("WATCHDOG=1")
    await notify.wait_for("WATCHDOG=1")
    daemon.proc.send_signal(signal.SIGTERM)
    stopping = await notify.wait_for("STOPPING=1")
    assert "STATUS=stopping" in stopping.splitlines()
    assert await daemon.wait() == 0
    # Plugins report `stopped` while the daemon stops: systemctl must not go back to "running".
    after = [line for m in notify.drain() for line in m.splitlines() if line.startswith("STATUS=")]
    assert after, "no STATUS= line while the plugins stopped"
    assert all(line.startswith("STATUS=stopping") for line in after), after


async def test_a_hung_event_loop_stops_the_watchdog_pings(
    spawn_daemon: SpawnDaemon, state_dir: Path, notify: NotifySocket
) -> None:
    site = ext_plugins.install(state_dir / "site", hang="tests.ext_plugins:Hang")
    trigger = state_dir / "hang"
    env = subprocess_env(
        state_dir,
        NOTIFY_SOCKET=str(state_dir / "notify.sock"),
        WATCHDOG_USEC="200000",  # a ping every 0.1 s
        PYTHONPATH=f"{site}{os.pathsep}{REPO_ROOT}",
        HANG_TRIGGER=str(trigger),
    )
    daemon = await spawn_daemon(write_config(state_dir), ready=False, env=env)
    await notify.wait_for("READY=1")
    await notify.wait_for("WATCHDOG=1")
    trigger.write_text("2.0")
    blocked = Path(f"{trigger}.blocked")
    deadline = time.monotonic() + HANG_GUARD
    while not blocked.exists() or not blocked.read_text():
        assert time.monotonic() < deadline, "the plugin never blocked"
        await asyncio.sleep(0.02)
    until = float(blocked.read_text())
    # Everything sent before the loop blocked is queued by now; from here until the block ends
    # nothing may arrive, because the pinging task cannot run.
    notify.drain()
    while (left := until - time.time() - 0.05) > 0:
        message = await notify.recv(left)
        assert message is None or "WATCHDOG=1" not in message, "pinged while the loop hung"
    # The loop is free again: the pings resume.
    await notify.wait_for("WATCHDOG=1")
    daemon.proc.send_signal(signal.SIGTERM)
    assert await daemon.wait() == 0


def test_abstract_namespace_socket_and_watchdog_settings() -> None:
    name = f"harness-test-{os.getpid()}-{time.monotonic_ns()}"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(b"\0" + name.encode())
    receiver.settimeout(5)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": f"@{name}"})
        notifier.status("two\nlines")
        assert receiver.recv(4096) == b"STATUS=two lines"  # one line: no injected assignment
        notifier.close()
    finally:
        receiver.close()
    assert not Notifier({}).enabled and not Notifier({}).send("READY=1")
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None


def test_journald_lines_carry_the_priority_and_no_timestamp(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import logging

    read, write = os.pipe()
    try:
        st = os.fstat(write)
        assert logs.journal_stream({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, fd=write)
        with open(os.devnull) as other:  # a redirected stderr is not the journal
            stream = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
            assert not logs.journal_stream(stream, fd=other.fileno())
        assert not logs.journal_stream({}, fd=write)
    finally:
        os.close(read)
        os.close(write)
    formatter = logs.JournalFormatter()
    warn = logging.LogRecord("harness.x", logging.WARNING, __file__, 1, "careful", None, None)
    info = logging.LogRecord("harness.x", logging.INFO, __file__, 1, "two\nlines", None, None)
    assert formatter.format(warn) == "<4>harness.x: careful"
    assert formatter.format(info) == "<6>harness.x: two\n<6>lines"


def test_voice_warnings_from_discord_py_are_not_shown_by_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.setup("info")
        logging.getLogger("discord.client").warning("PyNaCl is not installed, voice will NOT")
        logging.getLogger("discord.client").warning("davey is not installed, voice will NOT")
        logging.getLogger("discord.client").warning("a warning that matters")
        err = capsys.readouterr().err
        assert "not installed" not in err and "a warning that matters" in err
        logs.setup("debug")
        logging.getLogger("discord.client").warning("PyNaCl is not installed, voice will NOT")
        assert "PyNaCl" in capsys.readouterr().err
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


@pytest.mark.parametrize("system", [False, True], ids=["user", "system"])
def test_unit_files_pass_systemd_analyze_verify(state_dir: Path, system: bool) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here")
    unit = state_dir / "harness.service"
    text = service.render(system=system)
    assert "ExecStart=" in text and "@EXEC_START@" not in text
    # ExecStart must name an executable that exists: this interpreter, in the test copy.
    exec_line = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    unit.write_text(text.replace(exec_line, f"ExecStart={sys.executable} -m harness run"))
    if system:  # the user it names must exist for verify; root stands in for it here
        unit.write_text(
            unit.read_text()
            .replace("User=harness", "User=root")
            .replace("Group=harness", "Group=root")
        )
    result = subprocess.run(
        [analyze, "verify", *([] if system else ["--user"]), str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        # The user manager wants a runtime directory even to verify.
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning", "XDG_RUNTIME_DIR": str(state_dir)},
    )
    problems = [
        line for line in (result.stdout + result.stderr).splitlines() if "harness.service" in line
    ]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


async def test_service_install_writes_the_user_unit_with_this_installation(
    state_dir: Path,
) -> None:
    env = subprocess_env(state_dir)
    shown = await run_cli("service", "install", "--user", "--print", env=env)
    assert shown.rc == 0 and "Type=notify" in shown.out and "WatchdogSec=" in shown.out
    exec_start = next(line for line in shown.out.splitlines() if line.startswith("ExecStart="))
    # Plain paths here: systemd's double quotes then read as a shell's would.
    command = shlex.split(exec_start.removeprefix("ExecStart="))
    assert Path(command[0]).is_absolute() and Path(command[0]).exists()
    assert command[-1] == "run"
    done = await run_cli("service", "install", "--user", env=env)
    unit = state_dir / "xdg-config" / "systemd" / "user" / "harness.service"
    assert done.rc == 0 and f"wrote {unit}" in done.out
    assert "systemctl --user daemon-reload && systemctl --user enable --now harness" in done.out
    assert unit.read_text() == shown.out
    again = await run_cli("service", "install", "--user", env=env)
    assert again.rc == 2 and "already exists" in again.err and "--force" in again.err


def _systemd_word(text: str, *, executable: bool = False) -> str:
    """What systemd.service(5) says a double-quoted word must look like for ``text``."""
    text = text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return '"' + (text if executable else text.replace("$", "$$")) + '"'


@pytest.mark.parametrize(
    "venv",
    ["my venv 100% $HOME", 'it\'s "quoted"'],
    ids=["space-percent-dollar", "quotes"],
)
def test_service_install_quotes_odd_paths_for_systemd(state_dir: Path, venv: str) -> None:
    """`harness service install` from an installation, and with a config, at paths with
    spaces, quotes, % and $: the unit passes `systemd-analyze verify`, which also checks
    that the executable it read exists."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here")
    bindir = state_dir / venv / "bin"
    bindir.mkdir(parents=True)
    (bindir / "python").symlink_to(sys.executable)  # sys.executable is then this path
    script = bindir / "harness"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    conf_dir = state_dir / 'conf 50% $USER\'s "x"'
    conf_dir.mkdir()
    config = conf_dir / "config.toml"
    config.write_text('[daemon]\nlog_level = "info"\n')
    env = subprocess_env(
        state_dir,
        HARNESS_CONFIG=str(config),
        PYTHONPATH=os.pathsep.join(p for p in sys.path if p),  # the venv beside the link
    )
    done = subprocess.run(
        [str(bindir / "python"), "-m", "harness", "service", "install", "--user", "--print"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    text = done.stdout
    exec_line = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    unit = state_dir / "harness.service"
    unit.write_text(text)
    result = subprocess.run(
        [analyze, "verify", "--user", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning", "XDG_RUNTIME_DIR": str(state_dir)},
    )
    problems = [
        line for line in (result.stdout + result.stderr).splitlines() if "harness.service" in line
    ]
    assert result.returncode == 0 and not problems, exec_line + "\n" + result.stdout + result.stderr
    words = ["run", "--config", str(config)]
    if "'" in venv:  # systemd refuses such an executable path: env runs it
        expected = [_systemd_word("/usr/bin/env", executable=True), _systemd_word(str(script))]
    else:
        expected = [_systemd_word(str(script), executable=True)]
    assert exec_line == "ExecStart=" + " ".join(expected + [_systemd_word(w) for w in words])


def test_a_system_unit_with_a_config_it_cannot_see_is_warned_about(state_dir: Path) -> None:
    """ProtectHome and PrivateTmp hide /home, /root and /tmp from the system unit: a --config
    there made a unit that failed at every start, with a warning only for the executable."""
    config = state_dir / "config.toml"
    config.write_text('[daemon]\nlog_level = "info"\n')
    assert str(config).startswith(("/tmp/", "/root/", "/home/")), config  # pytest's tmp dir
    argv = [sys.executable, "-m", "harness", "service", "install", "--system", "--print"]
    env = subprocess_env(state_dir)
    done = subprocess.run(
        [*argv, "--config", str(config)], capture_output=True, text=True, timeout=30, env=env
    )
    assert done.returncode == 0, done.stderr
    assert f"the config file {config} is where the system unit cannot see it" in done.stderr
    assert done.stdout.startswith("# harness as a system service")  # the unit stays clean
    user = subprocess.run(
        [*argv[:-2], "--user", "--print", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert user.returncode == 0 and "cannot see it" not in user.stderr, user.stderr
