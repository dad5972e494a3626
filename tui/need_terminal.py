"""The full-screen monitor needs a terminal: refuse to start without one.

Textual reads keys from stdin and draws on stderr. Run from a pipe, a cron job or a tool that
captures output, it drew its screen into the pipe and waited for a `q` that could never come: one
such `harness demo` hung its caller for ten minutes. So ``harness-tui`` and ``harness demo`` check
first and exit 2, pointing at the commands that do work without a terminal.

``HARNESS_TUI_ANY_TERMINAL=1`` skips the check; the tests that drive the real program without a
terminal (and know to stop it themselves) set it.
"""

from __future__ import annotations

import os

OVERRIDE = "HARNESS_TUI_ANY_TERMINAL"

_STREAMS = (("stdin", 0), ("stdout", 1), ("stderr", 2))

INSTEAD = "without one, use `harness status` (or `harness events -f` to follow the events)"


def not_terminals() -> list[str]:
    """The standard streams that are not a terminal (none when the override is set)."""
    if os.environ.get(OVERRIDE) == "1":
        return []
    missing = []
    for name, fd in _STREAMS:
        try:
            tty = os.isatty(fd)
        except OSError:  # closed
            tty = False
        if not tty:
            missing.append(name)
    return missing


def refusal(program: str) -> str | None:
    """The message to exit 2 with when a stream is not a terminal, else None."""
    missing = not_terminals()
    if not missing:
        return None
    which = ", ".join(missing)
    verb = "is" if len(missing) == 1 else "are"
    return (
        f"{program}: the monitor is a full-screen program and needs a terminal ({which} {verb} not"
        f" one); {INSTEAD}. Set {OVERRIDE}=1 to start it anyway."
    )
