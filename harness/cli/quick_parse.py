"""The most common one-shot command lines, parsed without argparse.

Why: ``harness status --json`` spent about a quarter of its time in argparse: importing it
(with gettext), building the parser of every command, and gettext looking up translations on
each of its dozens of ``_()`` calls. A stdlib client doing the same request pays for none of
that (docs/benchmarks.md, "cli").

What is parsed here: ``status`` and ``events`` with their options and the client options
(``--config``, ``--socket``, ``--host``, ``--context``, ``--remote-harness``, before or after
the command), each flag spelled in full and each value a separate word that does not start
with ``-``. Anything else (``-h``, ``--version``, an abbreviation, ``--flag=value``, a value
starting with ``-``, a bad value, another command, a stray word) gives None, and the caller
hands the command line to argparse, which parses it or reports the error as always. So this
can only ever agree with argparse or step aside: ``tests/test_quick_parse.py`` checks that on
many generated command lines, hostile ones included.

The namespace matches what argparse makes for the same command line, attribute by attribute
(``func`` included)."""

from __future__ import annotations

from types import SimpleNamespace

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence
    from typing import Any


class Impl:
    """``args.func``: imports the command's module only when it is called."""

    __slots__ = ("function", "module")

    def __init__(self, where: str) -> None:
        self.module, _, self.function = where.partition(":")

    def __call__(self, args: argparse.Namespace) -> int:
        import importlib

        return int(getattr(importlib.import_module(self.module), self.function)(args))

    def __repr__(self) -> str:
        return f"Impl({self.module}:{self.function})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Impl):
            return NotImplemented
        return (self.module, self.function) == (other.module, other.function)

    def __hash__(self) -> int:
        return hash((self.module, self.function))


# The client options (harness/cli/commands.py: global_args, target_args) by flag: their dest.
CLIENT = {
    "--config": "config",
    "--socket": "socket",
    "--host": "host",
    "--context": "context",
    "--remote-harness": "remote_harness",
}


def _since(text: str) -> Any:
    from harness.cli.events import parse_point

    return parse_point(text)


def _count(text: str) -> int:
    from harness.cli.common import count

    return count(text)


class Spec:
    """One command as harness/cli/commands.py declares it: its flags (dest, and a type for
    those that take a value, None for store_true), its defaults and the positional list (if
    any) that collects the remaining words."""

    __slots__ = ("defaults", "flags", "func", "positional")

    def __init__(
        self,
        run: str,
        flags: dict[str, tuple[str, Callable[[str], Any] | None]],
        defaults: dict[str, Any],
        positional: str | None = None,
    ) -> None:
        self.func = Impl(run)
        self.flags = flags
        self.defaults = defaults
        self.positional = positional


COMMANDS: dict[str, Spec] = {
    "status": Spec("harness.cli.status:cmd_status", {"--json": ("json", None)}, {"json": False}),
    "events": Spec(
        "harness.cli.events:cmd_events",
        {
            "-f": ("follow", None),
            "--follow": ("follow", None),
            "--since": ("since", _since),
            "--until": ("until", _since),
            "-n": ("lines", _count),
            "--lines": ("lines", _count),
            "--scan": ("scan", _count),
            "--json": ("json", None),
        },
        {
            "follow": False,
            "since": None,
            "until": None,
            "lines": 20,
            "scan": 5000,
            "json": False,
        },
        positional="patterns",
    ),
}


def _value(argv: Sequence[str], at: int) -> str | None:
    """The word after a flag, if argparse would surely take it as that flag's value."""
    if at >= len(argv):
        return None
    value = argv[at]
    return None if value.startswith("-") else value


def parse(argv: Sequence[str]) -> SimpleNamespace | None:
    """The namespace argparse would make of ``argv``, or None: let argparse do it."""
    values: dict[str, Any] = dict.fromkeys(CLIENT.values())
    i, n = 0, len(argv)
    while i < n and argv[i] in CLIENT:  # client options before the command
        value = _value(argv, i + 1)
        if value is None:
            return None
        values[CLIENT[argv[i]]] = value
        i += 2
    if i >= n or argv[i] not in COMMANDS:
        return None
    command = argv[i]
    spec = COMMANDS[command]
    values.update(spec.defaults)
    words: list[str] | None = None  # the positional words, once a run of them has been read
    i += 1
    while i < n:
        word = argv[i]
        known = spec.flags.get(word) or ((CLIENT[word], str) if word in CLIENT else None)
        if known is not None:
            dest, kind = known
            if kind is None:  # store_true
                values[dest] = True
                i += 1
                continue
            value = _value(argv, i + 1)
            if value is None:
                return None
            try:
                values[dest] = kind(value)
            except Exception:  # argparse says what is wrong with it
                return None
            i += 2
            continue
        if word.startswith("-") or spec.positional is None or words is not None:
            # An option we do not know, a word where the command takes none, or a second
            # run of words (argparse takes the first run only and refuses the rest).
            return None
        words = []
        while i < n and not argv[i].startswith("-"):
            words.append(argv[i])
            i += 1
    if spec.positional is not None:
        values[spec.positional] = words or []
    return SimpleNamespace(command=command, func=spec.func, **values)
