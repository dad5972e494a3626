"""Leaving on SIGTERM/SIGHUP for sure, even when the app's event loop is wedged.

The first SIGTERM or SIGHUP asks the running loop to exit the app as ``q`` does (clean: the
terminal restored by Textual, exit 128 + the signal, ``harness demo`` cleans up after it;
harness/hangup.py says why the signal is recorded rather than raised). A loop that is wedged
(a bug blocking it, a terminal that stopped reading our output) never runs that request, and
`kill` alone then did nothing: only SIGKILL ended the monitor, leaving the terminal in the
alternate screen with the mouse captured.

So the first signal also starts a deadline (:data:`GRACE` seconds; ``$HARNESS_TUI_LEAVE_GRACE``
sets another), and a SIGTERM after it ends it at once (someone sent `kill` again: they mean
it). A SIGHUP after it does not: a terminal that closes often sends SIGHUP twice (the shell
passes its own on), and that repeat must not cut short an exit that is going well; a wedged
loop still ends at the deadline. Either way, if the app has not left by itself, the process
restores the terminal as best it can without the loop (the termios settings from before the
app started; the escape sequences that leave the alternate screen, show the cursor, stop mouse
and paste reporting), then ends with the same status, 128 + the first signal, through
``os._exit`` (nothing else can leave a process whose main thread does not return). The restore
is written from a thread given :data:`WRITE_WAIT` seconds: a terminal that no longer reads
must not hold the exit.

A terminal that hangs up without a SIGHUP reaching us (the kernel sends it to the session
leader only; one that ignores it passes nothing on) is noticed by the same watcher thread,
which polls the terminal for the hang-up alone, and sends the process the SIGHUP it missed:
Textual itself never notices, and its input thread spun on the hung-up terminal for good.

None of this runs in the signal handler (harness/hangup.py says why): the handler asks the loop
to exit (``call_soon_threadsafe``) and writes the signal's number down a pipe to a thread that
was started with the app; that thread keeps the deadline, tells a repeat from an insistence,
and forces the exit (the demo's clean-up of its children included). Both threads, the watcher
and the restore's writer, are started before the app runs: a new thread must take a lock of
the threading module before it runs anything, and a main thread wedged while holding it (it
holds it while it starts a thread) would keep a thread started then from ever running."""

from __future__ import annotations

import contextlib
import math
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

GRACE = 5.0  # seconds a signalled app has to leave by itself
GRACE_ENV = "HARNESS_TUI_LEAVE_GRACE"  # seconds, instead of GRACE


def grace() -> float:
    """:data:`GRACE`, or ``$HARNESS_TUI_LEAVE_GRACE`` seconds when that is a number > 0."""
    try:
        value = float(os.environ.get(GRACE_ENV, ""))
    except ValueError:
        return GRACE
    return value if 0 < value < float("inf") else GRACE


_POLL_MAX_MS = 2**31 - 1  # the longest timeout poll() takes (a C int of milliseconds)
WRITE_WAIT = 1.0  # seconds the forced exit waits for the terminal to take the restore
# What Textual's driver writes when it stops (textual/drivers/linux_driver.py): mouse and
# bracketed paste off, line wrap on, Kitty keyboard protocol popped, alternate screen left,
# cursor shown, focus reporting off.
_before_forced: list[Callable[[], object]] = []


def before_forced_exit(clean_up: Callable[[], object]) -> None:
    """Run ``clean_up`` (quick, blocking nothing) before a forced exit: `harness demo` removes
    its state directory (its children end with it: they die with their parent)."""
    _before_forced.append(clean_up)


RESTORE = (
    b"\x1b[?1000l\x1b[?1003l\x1b[?1015l\x1b[?1006l\x1b[?2004l\x1b[?7h"
    b"\x1b[<u\x1b[?1049l\x1b[?25h\x1b[?1004l"
)


class Leaving:
    """The signal listener of a running app (see the module docstring). ``ask(code)`` asks the
    loop to exit the app (from the signal handler: keep it to ``call_soon_threadsafe``);
    :meth:`start` before the app runs, :meth:`done` once it has returned; ``exit`` is
    ``os._exit`` but in tests."""

    def __init__(
        self,
        ask: Callable[[int], None],
        *,
        deadline: float | None = None,
        exit: Callable[[int], object] = os._exit,
    ) -> None:
        self._ask = ask
        self._grace = grace() if deadline is None else deadline
        self._exit = exit
        self._left = threading.Event()
        # Taken by done() and by a forced exit as each decides: the one that comes second sees
        # the first's decision (see _force).
        self._deciding = threading.Lock()
        self._forcing = False
        self._code = 0
        self._terminal = _saved_terminal()
        # The handler's only way to the watcher: one byte per signal (its number; 0 = done).
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._watcher = threading.Thread(target=self._watch, name="leave-watch", daemon=True)
        self._go = threading.Event()  # the writer's: write the restore (or, once left, end)
        self._written = threading.Event()
        self._writer = threading.Thread(target=self._write, name="leave-restore", daemon=True)

    def start(self) -> None:
        self._watcher.start()
        self._writer.start()

    def __call__(self, code: int, signum: int) -> None:
        # In the signal handler: record, ask the loop, wake the watcher; nothing that blocks.
        if not self._code:
            self._code = code
            self._ask(code)
        self._wake(signum)

    def done(self) -> None:
        with self._deciding:
            self._left.set()
            forcing = self._forcing
        if not forcing:
            # The writer ends: nothing to restore. Not when a forced exit decided first: it
            # has the writer write the restore, and ends the process (it waits for nothing
            # else: the app's own exit had restored the terminal already, which is harmless).
            self._go.set()
        self._wake(0)
        if self._watcher.is_alive():
            self._watcher.join()  # it only reads the pipe until it sees the 0: at once
        os.close(self._wake_w)
        os.close(self._wake_r)

    def _wake(self, byte: int) -> None:
        # A full pipe (thousands of signals unread) loses nothing the watcher needs: any byte
        # wakes it, and it has the first signal's code already.
        with contextlib.suppress(OSError):
            os.write(self._wake_w, bytes((byte,)))

    def _watch(self) -> None:
        """The watcher thread: the first signal starts the deadline, a later SIGTERM or the
        deadline forces the exit, a later SIGHUP changes nothing; a 0 (:meth:`done`) ends it."""
        until: float | None = None
        poll = select.poll()  # not select(): a descriptor over 1023 is fine
        poll.register(self._wake_r, select.POLLIN)
        terminal = self._terminal[0]
        if terminal >= 0:
            # No events asked for: poll() reports a hang-up (and errors) whatever is asked, and
            # nothing else. Keys stay unread for Textual's input thread.
            poll.register(terminal, 0)
        while True:
            wait = None if until is None else max(0, math.ceil((until - time.monotonic()) * 1000))
            if wait is not None:
                wait = min(wait, _POLL_MAX_MS)  # poll() takes an int: a grace of weeks overflows
            ready = poll.poll(wait)
            if not ready:
                self._force()  # the grace is over
                return
            if any(fd == terminal for fd, _ in ready):
                poll.unregister(terminal)  # a hang-up stays reported: once is enough
                if any(fd == terminal and mask & _HUNG_UP for fd, mask in ready):
                    _hung_up()
                if all(fd == terminal for fd, _ in ready):
                    continue
            for signum in os.read(self._wake_r, 512):
                if signum == 0 or self._left.is_set():
                    return
                if until is None:
                    until = time.monotonic() + self._grace
                elif signum == signal.SIGTERM:
                    self._force()  # `kill` again: now
                    return

    def _force(self) -> None:
        with self._deciding:
            if self._left.is_set():
                return  # the app left by itself meanwhile: its own exit goes on
            # Decided under the lock done() takes: a done() racing this no longer ends the
            # writer before the restore is asked of it (the forced exit then waited out
            # WRITE_WAIT and ended without writing it).
            self._forcing = True
        self._restore()
        for clean_up in _before_forced:
            with contextlib.suppress(Exception):
                clean_up()
        self._exit(self._code)

    def _restore(self) -> None:
        fd, attrs = self._terminal
        if fd < 0:
            return
        if attrs is not None:
            import termios

            with contextlib.suppress(Exception):
                termios.tcsetattr(fd, termios.TCSANOW, attrs)
        self._want_restore = True
        self._go.set()
        self._written.wait(WRITE_WAIT)

    _want_restore = False

    def _write(self) -> None:
        """The writer thread: the escape sequences, when :meth:`_restore` asks for them."""
        self._go.wait()
        if not self._want_restore:
            return
        out = _output_fd()
        if out >= 0:
            _write_all(out, RESTORE)
        self._written.set()


_HUNG_UP = select.POLLHUP | select.POLLERR


def _hung_up() -> None:
    """The terminal hung up (its other side closed) and no SIGHUP came: the session leader
    that the kernel sends it to ignores it, or passes nothing on (a `nohup` wrapper, a shell
    started with SIGHUP ignored). Textual's input thread does not notice: it reads the
    hung-up terminal's end of input again and again (~60 % of a core, for good). So the
    process sends itself the SIGHUP it missed: the handler (harness/hangup.py) runs in the
    main thread beside the running loop, and the exit is the one a real SIGHUP starts (the
    terminal restored as far as it still can be, `harness demo`'s clean-up, the deadline)."""
    with contextlib.suppress(OSError):
        os.kill(os.getpid(), signal.SIGHUP)


def _saved_terminal() -> tuple[int, list[Any] | None]:
    """stdin's descriptor and termios settings now, before Textual changes them."""
    try:
        fd = sys.__stdin__.fileno() if sys.__stdin__ is not None else -1
    except (OSError, ValueError):
        return -1, None
    if fd < 0 or not os.isatty(fd):
        return -1, None
    try:
        import termios

        return fd, termios.tcgetattr(fd)
    except Exception:
        return fd, None


def _output_fd() -> int:
    """Where Textual draws (its driver writes to ``sys.__stderr__``)."""
    stream = sys.__stderr__
    try:
        fd = stream.fileno() if stream is not None else -1
    except (OSError, ValueError):
        return -1
    return fd if fd >= 0 and os.isatty(fd) else -1


def _write_all(fd: int, data: bytes) -> None:
    with contextlib.suppress(OSError):
        while data:
            data = data[os.write(fd, data) :]


@contextlib.contextmanager
def leaving(ask: Callable[[int], None]) -> Iterator[Leaving]:
    """A started :class:`Leaving` whose :meth:`~Leaving.done` is called when the block ends."""
    leave = Leaving(ask)
    leave.start()
    try:
        yield leave
    finally:
        leave.done()
