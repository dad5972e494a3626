"""A grace of weeks ($HARNESS_TUI_LEAVE_GRACE=3000000: "never force by the deadline") keeps
the watcher of tui/leaving.py alive, so a second SIGTERM still forces the exit. (poll() takes
its timeout as a C int of milliseconds: the watcher died of OverflowError at the first signal,
and nothing forced a wedged monitor out any more but SIGKILL.)"""

from __future__ import annotations

import signal
import time

from tests.conftest import HANG_GUARD
from tui.leaving import Leaving


def test_a_second_sigterm_forces_the_exit_under_a_grace_of_weeks() -> None:
    exited: list[int] = []
    leave = Leaving(lambda code: None, deadline=3_000_000.0, exit=exited.append)
    leave.start()
    try:
        code = 128 + signal.SIGTERM
        leave(code, signal.SIGTERM)  # the first: asks the loop, starts the deadline
        leave(code, signal.SIGTERM)  # `kill` again: now
        deadline = time.monotonic() + HANG_GUARD
        while not exited:
            assert leave._watcher.is_alive() or exited, "the watcher died"
            assert time.monotonic() < deadline, "a second SIGTERM did not force the exit"
            time.sleep(0.01)
        assert exited == [code]
    finally:
        leave.done()
