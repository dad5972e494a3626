"""done() racing the forced deadline (tui/leaving.py): the app leaves by itself just as the
deadline forces the exit. done() used to end the restore's writer thread while the forced exit
had already decided to go on, so the forced exit waited out WRITE_WAIT for a restore nobody
would write, and ended the process without it. Real threads, a real pty for the terminal; the
interleaving is made certain by holding the forced exit until done() has decided."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from tests.conftest import HANG_GUARD
from tui import leaving
from tui.leaving import RESTORE, Leaving


def test_done_racing_the_forced_deadline_still_has_the_restore_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    master, slave = os.openpty()
    monkeypatch.setattr(leaving, "_output_fd", lambda: slave)
    exits: list[tuple[int, bool]] = []
    leave: Leaving

    def exit(code: int) -> None:  # os._exit in real life: what had been written by then
        exits.append((code, leave._written.is_set()))

    leave = Leaving(lambda code: None, deadline=0.0, exit=exit)
    leave._terminal = (slave, None)  # a terminal to restore (its settings left alone)

    decided = threading.Event()  # done() has made its decision (it wakes the watcher next)
    wake = leave._wake

    def wake_and_tell(byte: int) -> None:
        wake(byte)
        if byte == 0:
            decided.set()

    leave._wake = wake_and_tell  # type: ignore[method-assign]
    restore = leave._restore
    finishing = threading.Thread(target=leave.done)
    racing = threading.Event()

    def restore_after_done_decided() -> None:
        # The forced exit has decided (past its look at "left"): now the app leaves too.
        finishing.start()
        racing.set()
        assert decided.wait(HANG_GUARD)
        if leave._go.is_set():  # done() told the writer to end: let it take that in first
            leave._writer.join(HANG_GUARD)
        restore()

    leave._restore = restore_after_done_decided  # type: ignore[method-assign]
    try:
        leave.start()
        leave(128 + signal.SIGTERM, signal.SIGTERM)  # the first: the deadline (0 s) starts
        assert racing.wait(HANG_GUARD)
        finishing.join(HANG_GUARD)
        assert not finishing.is_alive()
        assert exits == [(128 + signal.SIGTERM, True)]  # the restore written before the exit
        os.set_blocking(master, False)
        assert os.read(master, 4096).endswith(RESTORE)
    finally:
        os.close(master)
        os.close(slave)
