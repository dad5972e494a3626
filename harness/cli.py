"""The ``harness`` command line: ``run`` the daemon, ``demo``, and clients that talk to it.

Exit codes: 0 success; 1 the operation failed (the daemon said no, a database problem, a daemon
already running); 2 usage or configuration error; 3 no daemon to talk to.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from harness import __version__, protocol
from harness import config as config_mod
from harness.protocol import STATE_GLYPHS

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_DAEMON = 0, 1, 2, 3


def err(message: str) -> None:
    print(f"harness: {message}", file=sys.stderr)


def describe_connection(conn: dict[str, Any] | None) -> str:
    """One line, glyph and words (never colour alone): ``● connected as Bot#1 since 12:03:04``."""
    if not conn:
        return "-"
    state = conn.get("state", "?")
    text = f"{STATE_GLYPHS.get(state, '?')} {state.replace('_', ' ')}"
    if state == "connected" and conn.get("username"):
        text += f" as {conn['username']}"
    if conn.get("attempt"):
        text += f" (attempt {conn['attempt']})"
    if conn.get("reason"):
        text += f": {conn['reason']}"
    if conn.get("since"):
        text += f" since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(conn['since']))}"
    return text


def _json(value: Any) -> None:
    sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(value)) + b"\n")
    sys.stdout.flush()


# -- talking to the daemon ------------------------------------------------------------------


def _with_client(args: argparse.Namespace, body: Callable[[Any], Awaitable[int]]) -> int:
    from harness.client import Client, ClientError, DaemonUnavailable

    try:
        cfg = config_mod.load(args.config)
    except config_mod.ConfigError as exc:
        err(str(exc))
        return EXIT_USAGE
    path = Path(args.socket).expanduser() if args.socket else cfg.socket_path

    async def go() -> int:
        client = await Client.connect(path, client=f"harness-cli/{__version__}")
        try:
            return await body(client)
        finally:
            await client.close()

    try:
        return asyncio.run(go())
    except DaemonUnavailable as exc:
        err(f"{exc}\n  start it with `harness run`, or pass --socket/--config to find it")
        return EXIT_NO_DAEMON
    except ClientError as exc:
        err(exc.message)
        for field, problem in exc.details.get("fields", {}).items():
            print(f"  {field}: {problem}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def cmd_status(args: argparse.Namespace) -> int:
    async def body(client: Any) -> int:
        st = await client.request("status")
        if args.json:
            _json(st)
            return EXIT_OK
        up = int(st["uptime"])
        print(
            f"{st['server']} running: pid {st['pid']}, up {up // 3600}h {up % 3600 // 60}m "
            f"{up % 60}s, seq {st['seq']}, {st['clients']} client(s)"
        )
        print(f"  socket    {st['socket']}\n  database  {st['database']}")
        storage = st.get("storage")
        health = None if storage is None else msgspec.convert(storage, protocol.StorageHealth)
        print(f"  storage   {protocol.describe_storage(health)}")
        _plugin_table(st["plugins"])
        return EXIT_OK

    return _with_client(args, body)


def _plugin_table(plugins: list[dict[str, Any]]) -> None:
    if not plugins:
        print("no plugins installed")
        return
    width = max(6, *(len(p["name"]) for p in plugins))
    print(f"\n{'PLUGIN':<{width}}  ENABLED  STATUS    CONNECTION")
    for p in plugins:
        status = p["status"] + (f" ({p['reason']})" if p.get("reason") else "")
        conn = p.get("connection") or p.get("metadata", {}).get("connection")
        print(
            f"{p['name']:<{width}}  {'yes' if p['enabled'] else 'no':<7}  {status:<8}  "
            f"{describe_connection(conn)}"
        )


def cmd_events(args: argparse.Namespace) -> int:
    patterns = args.patterns or ["*"]

    def show(event: Any) -> None:
        if args.json:
            sys.stdout.buffer.write(msgspec.json.encode(event) + b"\n")
        else:
            stamp = time.strftime("%H:%M:%S", time.localtime(event.ts))
            data = msgspec.json.encode(event.data).decode()
            print(f"{event.seq:>8} {stamp} {event.event:<24} {data}")
        sys.stdout.flush()

    async def body(client: Any) -> int:
        from harness.protocol import Replayed

        head = client.welcome.seq
        since = args.since if args.since is not None else max(0, head - args.scan)
        await client.subscribe(patterns, since=since)
        # Without --since only the newest --lines are shown, as `tail` would.
        backlog: collections.deque[Any] = collections.deque(
            maxlen=None if args.since is not None else args.lines
        )
        while not isinstance(frame := await client.next_frame(), Replayed):
            backlog.append(frame)
        for event in backlog:
            show(event)
        while args.follow:
            show(await client.next_event())
        return EXIT_OK

    return _with_client(args, body)


def cmd_plugins(args: argparse.Namespace) -> int:
    async def body(client: Any) -> int:
        action = args.action
        if action == "list":
            plugins = await client.request("plugins.list")
            if args.json:
                _json(plugins)
            else:
                _plugin_table(plugins)
            return EXIT_OK
        if action == "show":
            info = await client.request("plugins.get", name=args.name)
            if args.json:
                _json(info)
            else:
                _show_plugin(info)
            return EXIT_OK
        if action in ("enable", "disable"):
            info = await client.request(
                "plugins.set_enabled", name=args.name, enabled=action == "enable"
            )
            print(f"{args.name}: {'enabled' if info['enabled'] else 'disabled'}, {info['status']}")
            return EXIT_OK
        info = await client.request("plugins.get", name=args.name)
        try:
            values = parse_assignments(args.assignments, info["schema"])
        except ValueError as exc:
            err(str(exc))
            return EXIT_USAGE
        info = await client.request("plugins.update_settings", name=args.name, settings=values)
        print(f"{args.name}: saved {', '.join(sorted(values))}; status {info['status']}")
        return EXIT_OK

    return _with_client(args, body)


def _show_plugin(info: dict[str, Any]) -> None:
    print(f"{info['name']} {info['version']}: {info['description']}")
    print(f"  enabled     {'yes' if info['enabled'] else 'no'}")
    reason = f" ({info['reason']})" if info.get("reason") else ""
    print(f"  status      {info['status']}{reason}")
    print(f"  connection  {describe_connection(info['metadata'].get('connection'))}")
    if info["schema"]:
        print("  settings:")
    for field in info["schema"]:
        value = info["settings"].get(field["name"])
        if field["type"] == "secret":
            shown = "(set)" if value and value.get("set") else "(not set)"
        else:
            shown = msgspec.json.encode(value).decode()
        mark = " *" if field.get("required") else ""
        print(
            f"    {field['name']}{mark} = {shown}    [{field['type']}] "
            f"{field.get('description', '')}"
        )


def parse_assignments(items: list[str], schema: list[dict[str, Any]]) -> dict[str, Any]:
    """``KEY=VALUE`` strings into typed values by the schema. ``KEY=`` unsets. A secret is never
    taken from the command line (it would sit in shell history): ``KEY=-`` reads stdin,
    ``KEY=@FILE`` reads a file."""
    fields = {f["name"]: f for f in schema}
    values: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"expected KEY=VALUE, got {item!r}")
        field = fields.get(key)
        kind = field["type"] if field else "string"  # unknown keys: the daemon names them
        if kind == "secret":
            source = ""
            if raw == "-":
                source = "stdin"
                raw = sys.stdin.readline().rstrip("\r\n")
            elif raw.startswith("@"):
                source = raw[1:]
                try:
                    raw = Path(source).expanduser().read_text().strip()
                except OSError as exc:
                    raise ValueError(f"{key}: cannot read {source}: {exc.strerror}") from exc
            elif raw:
                raise ValueError(
                    f"{key} is a secret: pass {key}=- to read it from stdin or {key}=@FILE, "
                    "so it never lands in shell history"
                )
            if source and not raw:
                # Empty input (a script run without stdin, an empty file) would otherwise
                # unset the stored secret, which only ``KEY=`` should do.
                raise ValueError(
                    f"{key}: the secret read from {source} is empty; nothing was changed "
                    f"(to unset it, pass {key}=)"
                )
        if raw == "":
            values[key] = None
        elif kind == "integer":
            try:
                values[key] = int(raw)
            except ValueError:
                values[key] = raw  # the daemon's error names the field and the type
        elif kind == "boolean":
            lowered = raw.lower()
            truthy, falsy = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
            values[key] = True if lowered in truthy else False if lowered in falsy else raw
        else:
            values[key] = raw
    return values


# -- run and demo -----------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from harness import logs
    from harness.daemon import serve
    from harness.server import AlreadyRunning
    from harness.store import StoreError

    try:
        cfg = config_mod.load(args.config)
    except config_mod.ConfigError as exc:
        err(str(exc))
        return EXIT_USAGE
    logs.setup(args.log_level or cfg.daemon.log_level)
    try:
        return asyncio.run(serve(cfg))
    except config_mod.ConfigError as exc:
        err(str(exc))
        return EXIT_USAGE
    except (AlreadyRunning, StoreError, FileExistsError, PermissionError) as exc:
        err(str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def cmd_demo(args: argparse.Namespace) -> int:
    from harness.demo import run_demo

    return run_demo(keep=args.keep, flap_every=args.flap_every)


# -- argument parsing -----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="FILE",
        help=f"config file (default: ${config_mod.ENV_CONFIG}, else built-in defaults)",
    )
    client = argparse.ArgumentParser(add_help=False, parents=[common])
    client.add_argument("--socket", metavar="PATH", help="daemon socket (overrides the config)")

    parser = argparse.ArgumentParser(
        prog="harness",
        description="A plugin-hosting daemon with a Unix-socket event stream.",
        epilog="exit codes: 0 ok, 1 failed, 2 usage or config error, 3 no daemon running",
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", parents=[common], help="run the daemon in the foreground")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser(
        "demo", help="a throwaway daemon + local Discord gateway + the TUI, to watch it live"
    )
    demo.add_argument("--keep", action="store_true", help="keep the temporary state directory")
    demo.add_argument(
        "--flap-every",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="drop the gateway connection this often (0: never; keys f/o still work)",
    )
    demo.set_defaults(func=cmd_demo)

    status = sub.add_parser("status", parents=[client], help="daemon and plugin status")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)

    events = sub.add_parser("events", parents=[client], help="show (and follow) events")
    events.add_argument(
        "patterns",
        nargs="*",
        metavar="PATTERN",
        help="glob on event names, e.g. '*:connection' (default: all)",
    )
    events.add_argument("-f", "--follow", action="store_true", help="keep printing live events")
    events.add_argument(
        "--since", type=int, metavar="SEQ", help="replay every stored event after SEQ"
    )
    events.add_argument(
        "-n",
        "--lines",
        type=int,
        default=20,
        metavar="N",
        help="without --since: how many of the newest to show (default 20)",
    )
    events.add_argument("--scan", type=int, default=5000, help=argparse.SUPPRESS)
    events.add_argument("--json", action="store_true", help="one JSON event per line")
    events.set_defaults(func=cmd_events)

    plugins = sub.add_parser("plugins", help="list, inspect, enable, disable, configure plugins")
    psub = plugins.add_subparsers(dest="action", required=True, metavar="ACTION")
    plist = psub.add_parser("list", parents=[client], help="all plugins")
    plist.add_argument("--json", action="store_true")
    show = psub.add_parser("show", parents=[client], help="one plugin, its settings and state")
    show.add_argument("name")
    show.add_argument("--json", action="store_true")
    for action in ("enable", "disable"):
        p = psub.add_parser(action, parents=[client], help=f"{action} a plugin (applies live)")
        p.add_argument("name")
    pset = psub.add_parser(
        "set",
        parents=[client],
        help="change settings (applies live)",
        description="KEY=VALUE sets, KEY= unsets. Secrets: KEY=- reads stdin, KEY=@FILE a file.",
    )
    pset.add_argument("name")
    pset.add_argument("assignments", nargs="+", metavar="KEY=VALUE")
    plugins.set_defaults(func=cmd_plugins)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
