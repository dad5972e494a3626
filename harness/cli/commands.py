"""The command table: every command's name, help and arguments, and where its implementation
lives. ``harness/cli/__init__.py`` builds the argparse parser from it.

Why a table and not each module's own ``register``: a one-shot command pays for every import
before it prints anything. Building the parser from data imports no command module; a
command's parser is only filled in when argparse picks it (``LazyParser``), and its module is
only imported when it runs (``Impl``). ``harness --help`` reads nothing but the names and help
lines below.

A new command: a module with ``cmd_NAME(args) -> int`` and one :class:`Command` in
``COMMANDS``. (A module with the older ``register(sub, parents)`` still works when listed in
``harness.cli.COMMANDS``, but it is imported for every invocation.)
"""

from __future__ import annotations

import argparse

from harness.cli import quick_parse
from harness.cli.common import count, history_limit

# typing and collections.abc only for the type checker: a one-shot command pays for each import.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, NoReturn

SUPPRESS = argparse.SUPPRESS
COMMON, CLIENT = "common", "client"  # the shared option groups, see ``parent_args``


class Arg:
    """One ``add_argument``: its flags and keywords as argparse takes them. ``group``: a
    mutually exclusive group of the parser, by a name of our own."""

    __slots__ = ("flags", "group", "options")

    def __init__(self, *flags: str, group: str | None = None, **options: Any) -> None:
        self.flags = flags
        self.group = group
        self.options = options


class Command:
    """One command or action: what ``add_parser`` gets (help, description), its arguments,
    its own actions (``harness plugins list``), and ``run``: ``"module:function"`` called
    with the parsed arguments."""

    __slots__ = ("actions", "args", "defaults", "description", "help", "name", "parents", "run")
    # The dest and whether an action is required, for commands with actions.
    actions_required = True

    def __init__(
        self,
        name: str,
        run: str | None = None,
        *,
        help: str | None = None,
        description: str | None = None,
        parents: str | None = CLIENT,
        args: Sequence[Arg] = (),
        actions: Sequence[Command] = (),
        defaults: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.run = run
        self.help = help
        self.description = description
        self.parents = parents
        self.args = args
        self.actions = actions
        self.defaults = defaults or {}


class OptionalActions(Command):
    """A command whose actions may be left out (``harness alerts`` is ``harness alerts list``)."""

    __slots__ = ()
    actions_required = False


# ``args.func``: the command's module imported only when called. Defined with the quick
# parser, which makes the same namespace for the common one-shot commands.
Impl = quick_parse.Impl


def parse_point(text: str) -> Any:
    """argparse type of ``--since``/``--until`` (same name, so argparse's messages read the
    same); the parser lives with the events command."""
    from harness.cli.events import parse_point as parse

    return parse(text)


# The global options: accepted before the command (``harness --socket X status``, defaults
# None) and after it (defaults SUPPRESS, so that given after, they override the value given
# before, and not given, they leave it alone).
def global_args(default: object) -> tuple[Arg, ...]:
    # harness.config.ENV_CONFIG, spelled out: importing the config module (msgspec, tomllib)
    # would cost ``--help`` more than the rest of it.
    env_config = "HARNESS_CONFIG"
    return (
        Arg(
            "--config",
            metavar="FILE",
            default=default,
            help=f"config file (default: ${env_config}, else ~/.config/harness/config.toml "
            "if it exists, else built-in defaults)",
        ),
        Arg(
            "--socket", metavar="PATH", default=default, help="daemon socket (overrides the config)"
        ),
    )


def target_args(default: object) -> tuple[Arg, ...]:
    """--host / --context / --remote-harness: for the client commands and harness-tui."""
    return (
        Arg(
            "--host",
            metavar="ssh://[USER@]SERVER[:PORT]",
            default=default,
            help="talk to the daemon on SERVER through your own ssh (runs `harness dial-stdio`)",
        ),
        Arg(
            "--context",
            metavar="NAME",
            default=default,
            help="a [contexts.NAME] from the config (see `harness context`)",
        ),
        Arg(
            "--remote-harness",
            metavar="CMD",
            default=default,
            help="the harness command on the server, if not `harness` on its PATH",
        ),
    )


def parent_args(parents: str | None) -> tuple[Arg, ...]:
    if parents == COMMON:
        return global_args(SUPPRESS)
    if parents == CLIENT:
        return global_args(SUPPRESS) + target_args(SUPPRESS)
    return ()


_JSON = Arg("--json", action="store_true", help="machine-readable output")
# SUPPRESS: `harness alerts --json list` keeps the --json given before the action.
_JSON_AFTER = Arg("--json", action="store_true", default=SUPPRESS, help="machine-readable")

# The order of ``harness --help``.
COMMANDS: tuple[Command, ...] = (
    Command(
        "run",
        "harness.cli.run:cmd_run",
        parents=COMMON,
        help="run the daemon in the foreground",
        description="Run the daemon in the foreground until SIGTERM or SIGINT: host the "
        "plugins, keep state in SQLite, serve the Unix socket. Under systemd (Type=notify) it "
        "reports readiness and pings the watchdog; see `harness service install`.",
        args=(
            Arg(
                "--log-level",
                choices=["debug", "info", "warning", "error"],
                help="overrides daemon.log_level of the config",
            ),
            Arg(
                "--loop",
                choices=["auto", "asyncio", "uvloop"],
                default="auto",
                help="event loop: auto (the default) is uvloop where it is installed, else asyncio",
            ),
        ),
    ),
    Command(
        "demo",
        "harness.cli.demo:cmd_demo",
        parents=None,
        help="a throwaway daemon + local Discord gateway + the TUI, to watch it live",
        args=(
            Arg("--keep", action="store_true", help="keep the temporary state directory"),
            Arg(
                "--flap-every",
                type=float,
                default=20.0,
                metavar="SECONDS",
                help="drop the gateway connection this often (0: never; keys f/o still work)",
            ),
        ),
    ),
    Command(
        "status",
        "harness.cli.status:cmd_status",
        help="daemon and plugin status",
        description="The running daemon (pid, start time, socket, database) and each plugin's "
        "status and connection. Exit 3 when no daemon answers (a daemon that stops "
        "answering, SIGSTOP'd or its loop blocked, is given up on after 5-10 s).",
        args=(_JSON,),
    ),
    Command(
        "events",
        "harness.cli.events:cmd_events",
        help="show (and follow) events",
        description="Stored events, then (with -f) live ones. --since and --until take a "
        "seq (1042), a duration ago (30s, 10m, 2h, 1d) or a local time "
        "(2026-11-25T10:00, 10:00 today). A daemon that stops answering during the replay or "
        "while following is said on stderr after 5-10 s and waited for (Ctrl-C to stop).",
        args=(
            Arg(
                "patterns",
                nargs="*",
                metavar="PATTERN",
                help="glob on event names, e.g. '*:connection' (default: all)",
            ),
            Arg("-f", "--follow", action="store_true", help="keep printing live events"),
            Arg(
                "--since",
                type=parse_point,
                metavar="WHEN",
                help="every stored event after a seq, or from a time or duration ago",
            ),
            Arg(
                "--until",
                type=parse_point,
                metavar="WHEN",
                help="stop at this seq or time (with -f: stop following once it passes)",
            ),
            Arg(
                "-n",
                "--lines",
                type=count,
                default=20,
                metavar="N",
                help="without --since: how many of the newest to show (default 20)",
            ),
            Arg("--scan", type=count, default=5000, help=SUPPRESS),
            Arg("--json", action="store_true", help="one JSON event per line"),
        ),
    ),
    Command(
        "plugins",
        "harness.cli.plugins:cmd_plugins",
        help="list, inspect, enable, disable, configure plugins",
        description="List, inspect, enable, disable and configure plugins; changes apply live. "
        "Exit 3 when no daemon answers, or it stops answering for 5-10 s (a change asked for "
        "may still be made when it runs again).",
        actions=(
            Command("list", help="all plugins", args=(Arg("--json", action="store_true"),)),
            Command(
                "show",
                help="one plugin, its settings and state",
                args=(Arg("name"), Arg("--json", action="store_true")),
            ),
            Command("enable", help="enable a plugin (applies live)", args=(Arg("name"),)),
            Command("disable", help="disable a plugin (applies live)", args=(Arg("name"),)),
            Command(
                "set",
                help="change settings (applies live)",
                description="KEY=VALUE sets, KEY= unsets. Secrets: KEY=- reads stdin, "
                "KEY=@FILE a file.",
                args=(Arg("name"), Arg("assignments", nargs="+", metavar="KEY=VALUE")),
            ),
        ),
    ),
    OptionalActions(
        "alerts",
        "harness.cli.alerts:cmd_alerts",
        help="alert rules, targets and delivery state; history; test-send",
        description="Without an action: rules, targets (redacted) with what is pending or "
        "failing, alerts firing, silences and the heartbeat.",
        args=(_JSON,),
        actions=(
            Command("list", help="the overview (the default)", args=(_JSON_AFTER,)),
            Command(
                "history",
                help="notifications, newest first",
                args=(
                    Arg(
                        "--limit",
                        type=history_limit,
                        default=30,
                        help="how many (1-1000, default 30)",
                    ),
                    Arg("--target", help="only this target's"),
                    _JSON_AFTER,
                ),
            ),
            Command(
                "test",
                help="send a test notification to one target now",
                args=(
                    Arg("target", help="a target's name, as `harness alerts` lists it"),
                    _JSON_AFTER,
                ),
            ),
        ),
    ),
    Command(
        "silence",
        "harness.cli.silence:cmd_silence",
        parents=None,
        help="maintenance windows: no alerts for a plugin for a while",
        description="e.g. `harness silence add discord 30m --reason deploy`",
        actions=(
            Command(
                "add",
                help="silence a plugin (a name or glob)",
                args=(
                    Arg("plugin", help="plugin name, or a glob such as '*'"),
                    Arg("duration", help="how long: 30m, 2h, 90s"),
                    Arg("--reason", default="", help="shown with the silence"),
                    _JSON,
                ),
            ),
            Command("end", help="end a silence now", args=(Arg("id", type=int), _JSON)),
            Command("list", help="silences of the last 24 h", args=(_JSON,)),
        ),
    ),
    Command(
        "context",
        "harness.cli.context:cmd_context",
        parents=None,
        help="list, show or choose the daemon client commands talk to",
        description="Contexts are [contexts.NAME] tables in the config: host = "
        '"ssh://user@server" or socket = "/path", optional read_only = true and '
        "remote_harness. `default` is the config's own daemon.",
        actions=(
            Command(
                "list",
                parents=COMMON,
                help="every context; * marks the current one",
                args=(_JSON,),
            ),
            Command(
                "use",
                parents=COMMON,
                help="make NAME the current context",
                args=(Arg("name", metavar="NAME"), _JSON),
            ),
            Command(
                "show",
                parents=COMMON,
                help="one context (default: the current one)",
                args=(Arg("name", metavar="NAME", nargs="?"), _JSON),
            ),
        ),
    ),
    Command(
        "config",
        "harness.cli.config_cmd:cmd_config",
        help="show the effective configuration and where each value came from",
        description="The configuration harness would use here: which file (--config, "
        "$HARNESS_CONFIG, else ~/.config/harness/config.toml if it exists), and for each key "
        "its value and source (default, file, env, flag, state), [contexts] included. Checks "
        "the file as `harness run` would: exit 2 if it is bad.",
        args=(
            _JSON,
            Arg(
                "--example",
                action="store_true",
                help="print the example config (every key, its default and what it does) and exit",
            ),
        ),
    ),
    Command(
        "service",
        parents=None,
        help="install the systemd unit for this installation",
        description="Write a systemd unit whose ExecStart is this installation of harness.",
        actions=(
            Command(
                "install",
                "harness.cli.service:cmd_service",
                parents=COMMON,
                help="write the unit file (user: ~/.config/systemd/user/harness.service)",
                description="Write the systemd unit with this installation's absolute paths. "
                "--user (the default) for a user service, --system for /etc/systemd/system "
                "(as root). --print shows it instead.",
                args=(
                    Arg(
                        "--user",
                        group="scope",
                        dest="scope",
                        action="store_const",
                        const="user",
                        help="a user service",
                    ),
                    Arg(
                        "--system",
                        group="scope",
                        dest="scope",
                        action="store_const",
                        const="system",
                        help="a system service",
                    ),
                    Arg("--print", action="store_true", help="print the unit; write nothing"),
                    Arg("--force", action="store_true", help="replace an existing unit file"),
                ),
                defaults={"scope": "user"},
            ),
        ),
    ),
    Command(
        "dial-stdio",
        "harness.cli.dial_stdio:cmd_dial_stdio",
        parents=COMMON,
        help="bridge stdin/stdout to the daemon's socket (run by --host ssh://)",
        description="Copy bytes between stdin/stdout and the local daemon's socket. "
        "`--host ssh://server` runs this on the server through your own ssh.",
    ),
)


class Unmeasured(argparse.HelpFormatter):
    """The formatter argparse uses to check each argument as it is added (it formats it
    once): a fixed width, so that building a parser does not ask the terminal for its size
    (``shutil``, and through it bz2 and lzma). Help and errors get the real one."""

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        super().__init__(prog, indent_increment, max_help_position, width or 1000)


class LazyParser(argparse.ArgumentParser):
    """A command's parser, created with only what ``harness --help`` shows of it and filled
    in from its :class:`Command` the first time argparse hands it arguments (that is, when
    it is the command given). Arguments are added with :class:`Unmeasured` as formatter."""

    command: Command | None = None

    def __init__(self, **kwargs: Any) -> None:  # as argparse's add_parser calls it
        formatter = kwargs.pop("formatter_class", argparse.HelpFormatter)
        super().__init__(formatter_class=Unmeasured, **kwargs)  # adds -h
        self.formatter_class = formatter

    # Whether the command line being parsed asks for --json (set by harness.cli.parse_args):
    # a usage error is then also said on stdout, as every --json failure is.
    json_wanted = False

    def error(self, message: str) -> NoReturn:
        if LazyParser.json_wanted:
            from harness.cli.common import EXIT_USAGE, print_json_error

            print_json_error(EXIT_USAGE, "usage", f"{self.prog}: {message}")
        super().error(message)  # usage and message on stderr, exit 2

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self.command is not None:
            command, self.command = self.command, None
            fill(self, command)
        return super().parse_known_args(args, namespace)


def add_command(sub: Any, command: Command, *, eager: bool = False) -> argparse.ArgumentParser:
    """Add ``command`` to the subparsers ``sub``: a stub now, filled when used (``eager``:
    filled now, for whoever wants the whole parser)."""
    kwargs: dict[str, Any] = {}
    if command.help is not None:
        kwargs["help"] = command.help
    if command.description is not None:
        kwargs["description"] = command.description
    parser: LazyParser = sub.add_parser(command.name, **kwargs)
    if eager:
        fill(parser, command, eager=True)
    else:
        parser.command = command
    return parser


def fill(parser: argparse.ArgumentParser, command: Command, *, eager: bool = False) -> None:
    """Everything ``add_parser`` did not get: the shared options (as argparse's ``parents``
    would add them: after -h, before the command's own), the arguments, the actions."""
    formatter, parser.formatter_class = parser.formatter_class, Unmeasured
    try:
        _fill(parser, command, eager)
    finally:
        parser.formatter_class = formatter


def _fill(parser: argparse.ArgumentParser, command: Command, eager: bool) -> None:
    groups: dict[str, Any] = {}
    for arg in (*parent_args(command.parents), *command.args):
        target: Any = parser
        if arg.group is not None:
            target = groups.get(arg.group) or groups.setdefault(
                arg.group, parser.add_mutually_exclusive_group()
            )
        target.add_argument(*arg.flags, **arg.options)
    if command.actions:
        actions = parser.add_subparsers(
            dest="action",
            required=command.actions_required,
            metavar="ACTION",
            parser_class=LazyParser,
        )
        for action in command.actions:
            add_command(actions, action, eager=eager)
    defaults = dict(command.defaults)
    if command.run is not None:
        defaults["func"] = Impl(command.run)
    if defaults:
        parser.set_defaults(**defaults)
