"""The ``harness`` command line: ``run`` the daemon, ``demo``, and clients that talk to it.

Every command's arguments are in one table (``harness/cli/commands.py``); its implementation is
a module of its own (``harness/cli/<command>.py``), imported only when that command runs, so
``--help`` and the one-shot commands stay cheap. Command modules import asyncio, the client and
the daemon inside their functions.

Exit codes: 0 success; 1 the operation failed (the daemon said no, a database problem, a daemon
already running); 2 usage or configuration error; 3 no daemon to talk to; 4 the socket is not
trustworthy (its directory, the socket or the process listening belongs to another user), so
nothing was sent to it.
"""

from __future__ import annotations

import sys

from harness.cli.common import (
    EXIT_FAILED,
    EXIT_NO_DAEMON,
    EXIT_OK,
    EXIT_USAGE,
    quiet_broken_pipe,
)

# argparse and the command table are imported only when argparse parses the command line:
# the common one-shot forms are parsed without them (harness/cli/quick_parse.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from harness.cli import commands

__all__ = ["EXIT_FAILED", "EXIT_NO_DAEMON", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

# The order of ``harness --help``: the table's commands (``harness.cli.commands.COMMANDS``). A
# module with the older ``register(sub, parents)`` may be listed here too (it is then
# imported on every run). None: the table's, read when the parser is built.
COMMANDS: tuple[Any, ...] | None = None


def _commands() -> tuple[Any, ...]:
    from harness.cli import commands

    return COMMANDS if COMMANDS is not None else commands.COMMANDS


class Parents:
    """Option groups shared by the commands, for modules with ``register(sub, parents)``:
    ``common`` (all), ``client`` (those that talk to the daemon), as argparse ``parents``."""

    def __init__(self) -> None:
        import argparse

        from harness.cli import commands

        self.common = argparse.ArgumentParser(add_help=False)
        _add(self.common, commands.parent_args(commands.COMMON))
        self.client = argparse.ArgumentParser(add_help=False)
        _add(self.client, commands.parent_args(commands.CLIENT))


def _add(parser: argparse.ArgumentParser, args: tuple[commands.Arg, ...]) -> None:
    for arg in args:
        parser.add_argument(*arg.flags, **arg.options)


def add_target_options(parser: argparse.ArgumentParser, default: object = None) -> None:
    """--host / --context / --remote-harness: for the client commands (before or after the
    command, like --socket) and harness-tui."""
    from harness.cli import commands

    _add(parser, commands.target_args(default))


def build_parser(*, eager: bool = False) -> argparse.ArgumentParser:
    """The whole parser. Each command's own parser is filled in only when argparse reaches it
    (``commands.LazyParser``); ``eager``: fill them all now (to inspect them)."""
    import argparse

    from harness import __version__
    from harness.cli import commands

    parser = commands.LazyParser(
        prog="harness",
        description="A plugin-hosting daemon with a Unix-socket event stream.",
        epilog=(
            "exit codes: 0 ok, 1 failed, 2 usage or config error, 3 no daemon running (or "
            "it stopped answering: a request gives up 5-10 s after its last word); "
            "a socket that is not trusted (another user's) is a config error: 2"
        ),
    )
    parser.formatter_class = commands.Unmeasured  # while arguments are added, see there
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    _add(parser, commands.global_args(None))
    add_target_options(parser, None)
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=commands.LazyParser
    )
    parser.formatter_class = argparse.HelpFormatter
    parents = None
    for command in _commands():
        if isinstance(command, commands.Command):
            commands.add_command(sub, command, eager=eager)
        else:
            parents = parents or Parents()
            command.register(sub, parents)
    return parser


# The one-shot commands: by the time they return they hold no thread, temporary file or
# child process (ssh is reaped), so the ``harness`` script ends them with os._exit once their
# output is flushed. Tearing down the interpreter (every module msgspec and the renderer
# brought in) took longer than the request itself.
QUICK_EXIT = frozenset({"status", "plugins", "events", "dial-stdio"})


def main(argv: list[str] | None = None) -> int:
    return _run(parse_args(argv))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, parsed: the common one-shot forms without argparse
    (:mod:`harness.cli.quick_parse`, which yields the same namespace), the rest by argparse,
    which also prints help and usage errors (exit 2) as always."""
    from harness.cli import quick_parse

    words = sys.argv[1:] if argv is None else argv
    quick = quick_parse.parse(words)
    if quick is not None:
        return quick  # type: ignore[return-value]  # the same attributes
    from harness.cli.commands import LazyParser

    LazyParser.json_wanted = "--json" in words
    return build_parser().parse_args(argv)


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args))
    except BrokenPipeError:
        # Commands that do not go through with_client (`harness config | head -1`) too.
        return quiet_broken_pipe()


def script() -> None:
    """The ``harness`` command (and ``python -m harness``): :func:`main`, then the exit."""
    args = parse_args()
    code = _run(args)
    if args.command not in QUICK_EXIT:
        sys.exit(code)
    import os

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:
            quiet_broken_pipe()  # the reader went away: how a pipe ends, as in _run
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    script()
