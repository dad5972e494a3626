"""A terminal that closes without a SIGHUP reaching the monitor (tui/leaving.py): the kernel
sends SIGHUP to the terminal's session leader only, and a leader that ignores it passes
nothing on. Textual's input thread never noticed: it read the hung-up terminal's end of input
again and again, the monitor spinning at ~60 % of a core for good. A real `harness-tui` on a
real pseudo-terminal whose session leader ignores SIGHUP; the test closes the master side."""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import struct
import sys
import termios
from pathlib import Path

import pytest

from tests.conftest import HANG_GUARD, REPO_ROOT, subprocess_env, write_config
from tests.tui.test_wedged_exit import Terminal

# The session leader: the pty becomes its controlling terminal, SIGHUP is ignored, and the
# monitor runs as its child (in the terminal's foreground process group, as from a shell).
LEADER = """
import fcntl, signal, subprocess, sys, termios
fcntl.ioctl(0, termios.TIOCSCTTY, 0)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
child = subprocess.Popen(sys.argv[1:])
print("child", child.pid, file=open(sys.argv[0] + ".pid", "w"), flush=True)
sys.exit(child.wait())
"""


def processes_using(directory: Path) -> list[int]:
    """pids of the other processes with ``directory`` on their command line or a file in it
    open (the demo's daemon has its config there, its gateway its log)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            named = str(directory).encode() in (entry / "cmdline").read_bytes()
            held = any(
                os.readlink(fd).startswith(str(directory)) for fd in (entry / "fd").iterdir()
            )
        except OSError:  # gone meanwhile, or not ours to look at
            continue
        if named or held:
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize("program", ["harness-tui", "harness demo"])
async def test_a_terminal_closed_without_a_sighup_ends_the_monitor(
    state_dir: Path, program: str
) -> None:
    leader = state_dir / "leader.py"
    leader.write_text(LEADER)
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    # The demo makes its state directory (its daemon's config, socket, database) in TMPDIR.
    env = subprocess_env(state_dir, TERM="xterm-256color", TMPDIR=str(state_dir))
    if program == "harness demo":
        argv = ("-m", "harness", "demo", "--flap-every", "0")
    else:  # no daemon: the monitor opens all the same
        argv = ("-m", "tui.app", "--config", str(write_config(state_dir)))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(leader),
        sys.executable,
        *argv,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=REPO_ROOT,
        env=env,
        start_new_session=True,  # a session of its own: the leader takes the pty as its terminal
    )
    os.close(slave)
    terminal = Terminal(master)
    try:
        async with asyncio.timeout(HANG_GUARD):
            await terminal.shows(b"\x1b[?1049h")  # in the alternate screen: the app runs
        terminal.close()  # the terminal window closes: its side of the pty goes
        async with asyncio.timeout(HANG_GUARD):
            rc = await proc.wait()  # before the fix: never (the monitor spun)
    finally:
        if proc.returncode is None:
            pid_file = Path(str(leader) + ".pid")
            if pid_file.exists():
                os.kill(int(pid_file.read_text().split()[1]), signal.SIGKILL)
            proc.kill()
            await proc.wait()
    # The monitor's own status, passed on by the leader: it left as a SIGHUP makes it leave.
    assert rc == 128 + signal.SIGHUP
    # The demo cleaned up after itself: its state directory is gone, and so are its daemon
    # and gateway.
    assert not list(state_dir.glob("harness-demo-*"))
    assert not processes_using(state_dir)
