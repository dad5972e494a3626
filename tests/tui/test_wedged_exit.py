"""A `harness-tui` whose event loop is wedged still ends on SIGTERM (tui/leaving.py): a real
process on a real pseudo-terminal, wedged on purpose by the test-only F12 key
(``$HARNESS_TUI_TEST_WEDGE``, tui/wedge_hook.py). Its terminal output is read all along, and
the terminal is left restored: out of the alternate screen, cursor shown, mouse off."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import signal
import struct
import sys
import termios
from collections.abc import AsyncIterator
from pathlib import Path

from tests.conftest import REPO_ROOT, subprocess_env, write_config
from tui.leaving import GRACE_ENV, RESTORE
from tui.wedge_hook import ENV

F12 = b"\x1b[24~"


class Terminal:
    """The master side of the pty the TUI runs on, read continuously into :attr:`seen`."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.seen = bytearray()
        self.changed = asyncio.Event()
        self.closed = False
        os.set_blocking(master, False)
        asyncio.get_running_loop().add_reader(master, self._read)

    def _read(self) -> None:
        try:
            data = os.read(self.master, 1 << 16)
        except BlockingIOError:
            return
        except OSError:  # EIO: the process closed its end (it ended)
            data = b""
        if not data:
            self.closed = True
            asyncio.get_running_loop().remove_reader(self.master)
        self.seen += data
        self.changed.set()

    async def shows(self, want: bytes, start: int = 0) -> None:
        while want not in self.seen[start:]:
            if self.closed:
                raise AssertionError(f"the terminal closed before {want!r}: {bytes(self.seen)!r}")
            self.changed.clear()
            await self.changed.wait()

    def close(self) -> None:
        if not self.closed:
            asyncio.get_running_loop().remove_reader(self.master)
        os.close(self.master)


@contextlib.asynccontextmanager
async def tui_in_a_pty(
    state_dir: Path, grace: str, *argv: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, Terminal, Path]]:
    """``harness-tui`` (or ``argv``) on an 80x24 pty, with the wedge key armed."""
    wedge = state_dir / "wedged"
    if not argv:  # no daemon: the monitor opens all the same
        argv = ("-m", "tui.app", "--config", str(write_config(state_dir)))
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = subprocess_env(
        state_dir,
        TERM="xterm-256color",
        TMPDIR=str(state_dir),
        **{ENV: str(wedge), GRACE_ENV: grace},
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *argv,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=REPO_ROOT,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    terminal = Terminal(master)
    try:
        yield proc, terminal, wedge
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        terminal.close()


async def wedged(proc: asyncio.subprocess.Process, terminal: Terminal, wedge: Path) -> int:
    """Wait for the first screen, press F12, wait until the loop is wedged; returns where the
    terminal's output stood then."""
    async with asyncio.timeout(60):
        await terminal.shows(b"\x1b[?1049h")  # in the alternate screen: the app runs
        os.write(terminal.master, F12)
        # Written just before the loop blocks (existing, it may not hold the pid yet).
        while not (wedge.exists() and wedge.read_text()):  # noqa: ASYNC110 - a file
            await asyncio.sleep(0.02)
        assert wedge.read_text() == str(proc.pid)
    return len(terminal.seen)


async def until_it_ends(proc: asyncio.subprocess.Process, sig: signal.Signals) -> int:
    """Send ``sig`` again and again until the process ends: two signals sent back to back may
    reach it as one (pending signals of a kind do not queue), so "a second signal" is any one
    that arrives after the first was taken. No timing is asserted: it ends, or the test
    fails at its deadline."""
    async with asyncio.timeout(60):
        while True:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                async with asyncio.timeout(0.5):
                    return await proc.wait()
            except TimeoutError:
                continue


async def test_a_second_sigterm_ends_a_wedged_monitor_and_restores_the_terminal(
    state_dir: Path,
) -> None:
    # The deadline out of the way: only a second signal can end it.
    async with tui_in_a_pty(state_dir, grace="3600") as (proc, terminal, wedge):
        at = await wedged(proc, terminal, wedge)
        rc = await until_it_ends(proc, signal.SIGTERM)
        async with asyncio.timeout(60):
            await terminal.shows(RESTORE, at)
    assert rc == 128 + signal.SIGTERM, bytes(terminal.seen[-2000:])


async def test_one_sigterm_ends_a_wedged_monitor_after_the_grace(state_dir: Path) -> None:
    """No second signal: the deadline (tui.leaving.GRACE, 5 s; 0.2 s here) ends it, with the
    same status."""
    async with tui_in_a_pty(state_dir, grace="0.2") as (proc, terminal, wedge):
        at = await wedged(proc, terminal, wedge)
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            rc = await proc.wait()
            await terminal.shows(RESTORE, at)
    assert rc == 128 + signal.SIGTERM, bytes(terminal.seen[-2000:])


async def test_sighup_of_a_wedged_monitor_says_sighup(state_dir: Path) -> None:
    """A dropped SSH link (SIGHUP, which a shell may send more than once) ends it by the
    deadline (a repeated SIGHUP does not force: tests/tui/test_leaving_signals.py), with
    SIGHUP's status. (Not SIGHUP then SIGTERM: sent back to back to a process with several
    threads, either may be taken first.)"""
    async with tui_in_a_pty(state_dir, grace="0.2") as (proc, terminal, wedge):
        at = await wedged(proc, terminal, wedge)
        rc = await until_it_ends(proc, signal.SIGHUP)
        async with asyncio.timeout(60):
            await terminal.shows(RESTORE, at)
    assert rc == 128 + signal.SIGHUP


async def test_a_wedged_demo_ends_on_a_second_sigterm_and_cleans_up(state_dir: Path) -> None:
    """`harness demo` runs the monitor in its own process: forced out, it still stops its
    daemon and gateway and removes its state directory, as its clean exit does."""
    argv = ("-m", "harness", "demo", "--flap-every", "0")
    async with tui_in_a_pty(state_dir, "3600", *argv) as (proc, terminal, wedge):
        async with asyncio.timeout(60):
            await terminal.shows(b"; starting the daemon")
        m = re.search(rb"state in (\S+);", terminal.seen)
        assert m, bytes(terminal.seen)
        state = Path(m[1].decode())
        assert state.parent == state_dir
        await wedged(proc, terminal, wedge)
        rc = await until_it_ends(proc, signal.SIGTERM)
    assert rc == 128 + signal.SIGTERM, bytes(terminal.seen[-2000:])
    assert not state.exists(), sorted(p.name for p in state.iterdir())
    left = [p for p in (state_dir).iterdir() if p.name.startswith("harness-demo-")]
    assert not left, left
