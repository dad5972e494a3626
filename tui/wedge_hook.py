"""A test-only hook: keys that wedge the app's event loop, as a bug blocking it would.

With ``$HARNESS_TUI_TEST_WEDGE`` set to a path, ``harness-tui`` binds F12 to write its pid
there and then block its loop for good (``time.sleep`` in a loop: signal handlers still run
between the sleeps, as they do in a real wedge in Python code). Tests use it to check that
SIGTERM still ends a wedged monitor (tui/leaving.py). Unset, nothing of this is loaded.

Two more keys put a signal where it is hardest to take (tests/tui/test_leaving_signals.py):

- F11 wedges the loop as F12 does, but while holding the lock of the threading module that a
  thread takes as it starts (``threading._active_limbo_lock``): the main thread holds it
  while it starts a thread, so a signal can land then. A thread started after that (by the
  old signal handler: the deadline's) never runs. Does nothing on a Python without that lock.
- F10 makes the app's next exit (``q``, or the one a signal asks for) hold the loop until a
  file ``PATH.release`` exists, writing ``leaving N`` to the path meanwhile (N: the signals
  received so far): a clean exit that is slow, with the signals that come during it."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, TypeVar

from textual.app import App
from textual.binding import Binding

from harness import hangup

ENV = "HARNESS_TUI_TEST_WEDGE"

A = TypeVar("A", bound=App[Any])


def wedgeable(app_class: type[A]) -> type[A]:
    """``app_class`` with the wedge key, when the hook is asked for; else itself."""
    where = Path(os.environ.get(ENV) or "")
    if where == Path():
        return app_class

    class Wedgeable(app_class):  # type: ignore[valid-type,misc]
        BINDINGS = [
            Binding("f12", "test_wedge", show=False),
            Binding("f11", "test_hold_thread_lock", show=False),
            Binding("f10", "test_hold_exit", show=False),
        ]
        _hold_exit = False

        def action_test_wedge(self) -> None:
            where.write_text(str(os.getpid()))
            while True:
                time.sleep(0.05)

        def action_test_hold_thread_lock(self) -> None:
            lock = getattr(threading, "_active_limbo_lock", None)
            if lock is None:
                return
            with lock:
                self.action_test_wedge()

        def action_test_hold_exit(self) -> None:
            self._hold_exit = True
            where.write_text(str(os.getpid()))

        def exit(self, *args: Any, **kwargs: Any) -> None:
            release = where.with_name(where.name + ".release")
            while self._hold_exit and not release.exists():
                where.write_text(f"leaving {hangup.received}")
                time.sleep(0.05)
            super().exit(*args, **kwargs)

    return Wedgeable
