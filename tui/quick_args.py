"""``harness-tui``'s command line, parsed without argparse when it is a plain one.

Why: importing argparse (with gettext), the CLI's option table (``harness.cli``) and building
the parser cost ``harness-tui`` about 10 ms of CPU before its first frame, which a minimal
Textual app does not pay (docs/benchmarks.md, "tui"). The same reasoning as the CLI's
``harness/cli/quick_parse.py``.

What is parsed here: no words, or the TUI's options each spelled in full, each value a
separate word that does not start with ``-`` (``--config FILE``, ``--plugin NAME``,
``--demo-control URL``, ``--host``, ``--context``, ``--remote-harness``) and ``--fleet``.
Anything else (``-h``, ``--version``, an abbreviation, ``--flag=value``, a value starting
with ``-``, a stray word) gives None, and the caller hands the command line to argparse, which
parses it or reports the error as always. So this can only agree with argparse or step aside:
``tests/tui/test_quick_args.py`` checks that on generated command lines.

The namespace has the attributes argparse makes for the same command line, with the same
values."""

from __future__ import annotations

from types import SimpleNamespace

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

# Flag -> dest, for the options that take a value (tui.app.parse_args declares them).
VALUED = {
    "--config": "config",
    "--plugin": "plugin",
    "--demo-control": "demo_control",
    "--host": "host",
    "--context": "context",
    "--remote-harness": "remote_harness",
}
SWITCHES = {"--fleet": "fleet"}


def parse(argv: Sequence[str]) -> SimpleNamespace | None:
    """The namespace argparse would make of ``argv``, or None: let argparse do it."""
    values: dict[str, object] = dict.fromkeys(VALUED.values())
    values.update(dict.fromkeys(SWITCHES.values(), False))
    i, n = 0, len(argv)
    while i < n:
        word = argv[i]
        if word in SWITCHES:
            values[SWITCHES[word]] = True
            i += 1
            continue
        dest = VALUED.get(word)
        if dest is None or i + 1 >= n or argv[i + 1].startswith("-"):
            return None  # help, version, an abbreviation, a stray word, a missing value...
        values[dest] = argv[i + 1]
        i += 2
    return SimpleNamespace(**values)
