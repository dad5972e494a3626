"""The ``harness`` command line: ``run`` the daemon, ``demo``, and clients that talk to it.

One module per command (``harness/cli/<command>.py``), each with ``register(sub, parents)`` that
adds its parser and sets ``func``. Command modules import asyncio, the client and the daemon
inside their functions, so ``--help`` and the parser stay cheap.

Exit codes: 0 success; 1 the operation failed (the daemon said no, a database problem, a daemon
already running); 2 usage or configuration error; 3 no daemon to talk to; 4 the socket is not
trustworthy (its directory, the socket or the process listening belongs to another user), so
nothing was sent to it.
"""

from __future__ import annotations

import argparse
import sys

from harness import __version__
from harness.cli import (
    alerts,
    config_cmd,
    context,
    demo,
    dial_stdio,
    events,
    plugins,
    run,
    service,
    silence,
    status,
)
from harness.cli.common import (
    EXIT_FAILED,
    EXIT_NO_DAEMON,
    EXIT_OK,
    EXIT_USAGE,
    quiet_broken_pipe,
)

__all__ = ["EXIT_FAILED", "EXIT_NO_DAEMON", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

# The order of ``harness --help``.
COMMANDS = (
    run,
    demo,
    status,
    events,
    plugins,
    alerts,
    silence,
    context,
    config_cmd,
    service,
    dial_stdio,
)


def _add_global_options(parser: argparse.ArgumentParser, default: object) -> None:
    # harness.config.ENV_CONFIG, spelled out: importing the config module (msgspec, tomllib)
    # would cost ``--help`` more than the rest of it.
    ENV_CONFIG = "HARNESS_CONFIG"
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=default,
        help=f"config file (default: ${ENV_CONFIG}, else ~/.config/harness/config.toml "
        "if it exists, else built-in defaults)",
    )
    parser.add_argument(
        "--socket", metavar="PATH", default=default, help="daemon socket (overrides the config)"
    )


class Parents:
    """Option groups shared by the commands: ``common`` (all), ``client`` (those that talk to
    the daemon). The same options are accepted before the command (``harness --socket X
    status``); here they default to SUPPRESS so that, given after it, they override the value
    given before, and not given, they leave it alone."""

    def __init__(self) -> None:
        self.common = argparse.ArgumentParser(add_help=False)
        _add_global_options(self.common, argparse.SUPPRESS)
        self.client = argparse.ArgumentParser(add_help=False, parents=[self.common])
        add_target_options(self.client, argparse.SUPPRESS)


def add_target_options(parser: argparse.ArgumentParser, default: object = None) -> None:
    """--host / --context / --remote-harness: for the client commands (before or after the
    command, like --socket) and harness-tui."""
    parser.add_argument(
        "--host",
        metavar="ssh://[USER@]SERVER[:PORT]",
        default=default,
        help="talk to the daemon on SERVER through your own ssh (runs `harness dial-stdio`)",
    )
    parser.add_argument(
        "--context",
        metavar="NAME",
        default=default,
        help="a [contexts.NAME] from the config (see `harness context`)",
    )
    parser.add_argument(
        "--remote-harness",
        metavar="CMD",
        default=default,
        help="the harness command on the server, if not `harness` on its PATH",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness",
        description="A plugin-hosting daemon with a Unix-socket event stream.",
        epilog=(
            "exit codes: 0 ok, 1 failed, 2 usage or config error, 3 no daemon running, "
            "4 socket not trusted (another user's)"
        ),
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    _add_global_options(parser, None)
    add_target_options(parser, None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parents = Parents()
    for command in COMMANDS:
        command.register(sub, parents)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:
        # Commands that do not go through with_client (`harness config | head -1`) too.
        return quiet_broken_pipe()


if __name__ == "__main__":
    sys.exit(main())
