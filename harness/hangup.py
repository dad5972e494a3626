"""SIGTERM and SIGHUP, recorded rather than raised, for the processes that own a terminal.

`kill` and a dropped SSH link must leave `harness demo` and `harness-tui` through their normal
exit, so the terminal is restored and the demo removes its state directory. A Python handler
that raises SystemExit does not do that reliably: the exception lands between any two bytecodes,
and when those are a finaliser's (an asyncio transport's ``__del__`` during garbage collection)
Python prints "Exception ignored" and carries on: the demo then ran on for good after a `kill`.
So the handler only records the exit status (128 + the signal) and calls whoever asked to hear
of it; code that blocks looks at :data:`signalled` at the points where leaving is safe."""

from __future__ import annotations

import signal
from collections.abc import Callable

signalled = 0
"""128 + the first SIGTERM or SIGHUP received since :func:`install`, or 0."""

_listeners: list[Callable[[int], None]] = []


def _on_signal(signum: int, frame: object) -> None:
    global signalled
    if not signalled:
        signalled = 128 + signum
    for listener in list(_listeners):
        listener(signalled)


def install() -> None:
    """Record SIGTERM and SIGHUP from now on (the main thread only, as Python requires)."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)


def on_signal(listener: Callable[[int], None]) -> None:
    """Call ``listener(status)`` from the signal handler on each signal; at once if one came
    already. It runs between two bytecodes of the main thread: keep it to a flag or a
    ``call_soon_threadsafe``."""
    _listeners.append(listener)
    if signalled:
        listener(signalled)
