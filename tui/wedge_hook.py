"""A test-only hook: a key that wedges the app's event loop, as a bug blocking it would.

With ``$HARNESS_TUI_TEST_WEDGE`` set to a path, ``harness-tui`` binds F12 to write its pid
there and then block its loop for good (``time.sleep`` in a loop: signal handlers still run
between the sleeps, as they do in a real wedge in Python code). Tests use it to check that
SIGTERM still ends a wedged monitor (tui/leaving.py). Unset, nothing of this is loaded."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, TypeVar

from textual.app import App
from textual.binding import Binding

ENV = "HARNESS_TUI_TEST_WEDGE"

A = TypeVar("A", bound=App[Any])


def wedgeable(app_class: type[A]) -> type[A]:
    """``app_class`` with the wedge key, when the hook is asked for; else itself."""
    where = Path(os.environ.get(ENV) or "")
    if where == Path():
        return app_class

    class Wedgeable(app_class):  # type: ignore[valid-type,misc]
        BINDINGS = [Binding("f12", "test_wedge", show=False)]

        def action_test_wedge(self) -> None:
            where.write_text(str(os.getpid()))
            while True:
                time.sleep(0.05)

    return Wedgeable
