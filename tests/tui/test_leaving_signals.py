"""SIGTERM and SIGHUP at the awkward moments (tui/leaving.py, harness/hangup.py): a real
`harness-tui` on a real pseudo-terminal, held where the test needs it by the test-only keys of
tui/wedge_hook.py.

- A repeated SIGHUP (a closing terminal often sends two) does not force an exit that is under
  way; a SIGTERM after it still does.
- A monitor wedged while holding the lock a new thread needs before it runs still ends on one
  SIGTERM: nothing that leaves is started from the signal handler."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from pathlib import Path

import pytest

from tests.tui.test_wedged_exit import Terminal, tui_in_a_pty, until_it_ends
from tui.leaving import RESTORE

F10 = b"\x1b[21~"  # hold the next exit until PATH.release exists
F11 = b"\x1b[23~"  # wedge the loop holding the lock a new thread takes
LEAVE_ALT_SCREEN = b"\x1b[?1049l"


async def pressed(terminal: Terminal, key: bytes, wedge: Path, pid: int) -> int:
    """Wait for the first screen, press ``key``, wait until the hook has taken it (it writes
    the pid); returns where the terminal's output stood then."""
    async with asyncio.timeout(60):
        await terminal.shows(b"\x1b[?1049h")  # in the alternate screen: the app runs
        os_write(terminal.master, key)
        while not (wedge.exists() and wedge.read_text()):  # noqa: ASYNC110 - a file
            await asyncio.sleep(0.02)
    assert wedge.read_text() == str(pid)
    return len(terminal.seen)


def os_write(fd: int, data: bytes) -> None:
    import os

    os.write(fd, data)


async def leaving_with(
    proc: asyncio.subprocess.Process, wedge: Path, sig: signal.Signals | None, received: int
) -> None:
    """Send ``sig`` (None: nothing) until the held exit says at least ``received`` signals
    came; fails if the process ends meanwhile (forced: only the test releases the hold)."""
    async with asyncio.timeout(60):
        while True:
            text = wedge.read_text()
            if text.startswith("leaving ") and int(text.split()[1]) >= received:
                return
            if sig is not None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)
            try:
                async with asyncio.timeout(0.1):
                    rc = await proc.wait()
            except TimeoutError:
                continue
            raise AssertionError(f"forced out while leaving cleanly (exit {rc}): {text!r}")


async def test_a_repeated_sighup_does_not_force_a_clean_exit_under_way(state_dir: Path) -> None:
    # The deadline out of the way: only a signal could force it.
    async with tui_in_a_pty(state_dir, grace="3600") as (proc, terminal, wedge):
        await pressed(terminal, F10, wedge, proc.pid)
        proc.send_signal(signal.SIGHUP)  # the exit starts, and is held by the hook
        await leaving_with(proc, wedge, None, received=1)
        await leaving_with(proc, wedge, signal.SIGHUP, received=3)  # the repeats: no force
        assert proc.returncode is None
        wedge.with_name(wedge.name + ".release").touch()
        async with asyncio.timeout(60):
            rc = await proc.wait()
            await terminal.shows(LEAVE_ALT_SCREEN)  # Textual's own restore
    assert rc == 128 + signal.SIGHUP, bytes(terminal.seen[-2000:])
    assert RESTORE not in terminal.seen  # not the forced exit's


async def test_a_sigterm_after_a_sighup_still_forces_a_held_exit(state_dir: Path) -> None:
    """`kill` during a slow exit: someone insists. The status stays the first signal's."""
    async with tui_in_a_pty(state_dir, grace="3600") as (proc, terminal, wedge):
        at = await pressed(terminal, F10, wedge, proc.pid)
        proc.send_signal(signal.SIGHUP)
        await leaving_with(proc, wedge, None, received=1)
        rc = await until_it_ends(proc, signal.SIGTERM)
        async with asyncio.timeout(60):
            await terminal.shows(RESTORE, at)
    assert rc == 128 + signal.SIGHUP, bytes(terminal.seen[-2000:])


@pytest.mark.skipif(
    not hasattr(threading, "_active_limbo_lock"), reason="CPython's threading lock, by name"
)
async def test_one_sigterm_ends_a_monitor_wedged_holding_the_thread_start_lock(
    state_dir: Path,
) -> None:
    """The handler used to start the deadline's thread itself: with the main thread holding
    the lock every new thread takes before it runs, that thread never ran, and one SIGTERM
    never ended the monitor (a second one forced it out without restoring the terminal: the
    restore's writer thread never ran either). Now both threads run from the start."""
    async with tui_in_a_pty(state_dir, grace="0.2") as (proc, terminal, wedge):
        at = await pressed(terminal, F11, wedge, proc.pid)
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            rc = await proc.wait()
            await terminal.shows(RESTORE, at)
    assert rc == 128 + signal.SIGTERM, bytes(terminal.seen[-2000:])
