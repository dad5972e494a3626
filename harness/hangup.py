"""SIGTERM and SIGHUP, recorded rather than raised, for the processes that own a terminal.

`kill` and a dropped SSH link must leave `harness demo` and `harness-tui` through their normal
exit, so the terminal is restored and the demo removes its state directory. A Python handler
that raises SystemExit does not do that reliably: the exception lands between any two bytecodes,
and when those are a finaliser's (an asyncio transport's ``__del__`` during garbage collection)
Python prints "Exception ignored" and carries on: the demo then ran on for good after a `kill`.
So the handler only records the exit status (128 + the signal) and calls whoever asked to hear
of it; code that blocks looks at :data:`signalled` at the points where leaving is safe.

Nothing that can block runs in the handler: it runs in the main thread between two of its
bytecodes, and so possibly while the main thread holds a lock (starting a thread takes one,
and a thread started while it is held cannot run until it is let go). Work there that needs
another thread to get on (starting a thread and waiting for it, joining one, waiting for a
child to end) can end up waiting on the very thread it interrupted. Listeners only record and
wake: the loop with ``call_soon_threadsafe``, a thread of theirs with a byte down a pipe
(tui/leaving.py)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator

signalled = 0
"""128 + the first SIGTERM or SIGHUP received while recording, or 0."""
received = 0
"""How many SIGTERMs and SIGHUPs were received while recording (the first and its repeats)."""

SIGNALS = (signal.SIGTERM, signal.SIGHUP)
Listener = Callable[[int, int], None]
"""``listener(status, signum)``: 128 + the first signal, and the one received now."""
_listeners: list[Listener] = []


def _on_signal(signum: int, frame: object) -> None:
    global signalled, received
    received += 1
    if not signalled:
        signalled = 128 + signum
    for listener in list(_listeners):
        listener(signalled, signum)


def install() -> None:
    """Record SIGTERM and SIGHUP from now on, for the rest of the process (the main thread
    only, as Python requires): for a command whose process ends with it (`harness demo`)."""
    for sig in SIGNALS:
        signal.signal(sig, _on_signal)


@contextlib.contextmanager
def recording(listener: Listener) -> Iterator[None]:
    """Record SIGTERM and SIGHUP inside the block and call ``listener(status, signum)`` from
    the handler on each (at once if one came already); the handlers from before come back
    after it, so a process that goes on (a test calling `harness-tui`'s main) keeps its own.
    The listener runs between two bytecodes of the main thread, maybe while it holds a lock:
    keep it to a flag, a ``call_soon_threadsafe`` or an ``os.write`` to a pipe (the module's
    docstring says why)."""
    before = {sig: signal.signal(sig, _on_signal) for sig in SIGNALS}
    _listeners.append(listener)
    try:
        if signalled:
            listener(signalled, signalled - 128)
        yield
    finally:
        _listeners.remove(listener)
        for sig, handler in before.items():
            # None: a handler not installed from Python, which cannot be put back as it was.
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
