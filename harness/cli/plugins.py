"""``harness plugins``: list, inspect, enable, disable and configure plugins."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from harness.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, err, print_json, with_connection
from harness.cli.output import describe_connection, fix_hints, plugin_table, prepare


def cmd_plugins(args: argparse.Namespace) -> int:
    def body(client: Any) -> int:
        action = args.action
        if action == "list":
            plugins = client.request("plugins.list")
            if args.json:
                print_json(plugins)
            else:
                plugin_table(plugins)
                _print_hints(plugins)
            return EXIT_OK
        if action == "show":
            info = client.request("plugins.get", name=args.name)
            if args.json:
                print_json(info)
            else:
                _show_plugin(info)
                _print_hints([info])
            return EXIT_OK
        if action in ("enable", "disable"):
            info = client.request("plugins.set_enabled", name=args.name, enabled=action == "enable")
            if not info["enabled"]:
                print(f"{args.name}: disabled (to undo: harness plugins enable {args.name})")
                return EXIT_OK
            reason = f": {info['reason']}" if info.get("reason") else ""
            print(f"{args.name}: enabled, {info['status']}{reason}")
            for hint in fix_hints([info]):
                print(f"  next: {hint}")
            return EXIT_OK
        info = client.request("plugins.get", name=args.name)
        try:
            values = parse_assignments(args.assignments, info["schema"])
        except ValueError as exc:
            err(f"{exc}; nothing was changed")
            return EXIT_USAGE
        before = info["settings"]
        info = client.request("plugins.update_settings", name=args.name, settings=values)
        from harness.settings_saved import really_changed, unchanged_message

        secrets = [f["name"] for f in info["schema"] if f.get("type") == "secret"]
        changed = really_changed(values, before, info["settings"], secrets)
        if not changed:  # e.g. an emptied field already at its default
            print(unchanged_message(args.name, values))
            _print_hints([info])
            return EXIT_OK
        saved = f"{args.name}: saved {', '.join(changed)}"
        conn = describe_connection(info["metadata"].get("connection"))
        if info["status"] == "error":
            # Stored, but the plugin did not come back: say so, and fail.
            err(f"{saved}, but the plugin is in error: {info.get('reason') or 'see the log'}")
            _print_hints([info])
            return EXIT_FAILED
        print(f"{saved}; plugin {info['status']}; connection {conn}")
        _print_hints([info])
        return EXIT_OK

    human = not getattr(args, "json", False)  # set (enable) or show/list without --json
    return with_connection(args, body, prepare=prepare if human else None)


def _print_hints(plugins: list[dict[str, Any]]) -> None:
    hints = fix_hints(plugins)
    if hints:
        print("\nnot configured; next:" if len(hints) == 1 else "\nnot configured; next, one of:")
        for hint in hints:
            print(f"  {hint}")


def _show_plugin(info: dict[str, Any]) -> None:
    print(f"{info['name']} {info['version']}: {info['description']}")
    print(f"  enabled     {'yes' if info['enabled'] else 'no'}")
    reason = f" ({info['reason']})" if info.get("reason") else ""
    print(f"  status      {info['status']}{reason}")
    conn = describe_connection(info["metadata"].get("connection"), info.get("health"))
    print(f"  connection  {conn}")
    _show_parts(info["metadata"].get("connection"), info.get("health"))
    if info["schema"]:
        print("  settings:")
    for field in info["schema"]:
        value = info["settings"].get(field["name"])
        if field["type"] == "secret":
            shown = "(set)" if value and value.get("set") else "(not set)"
        else:
            shown = _json_text(value)
        mark = " *" if field.get("required") else ""
        print(
            f"    {field['name']}{mark} = {shown}    [{field['type']}] "
            f"{field.get('description', '')}"
        )


def _show_parts(value: Any, health_value: Any = None) -> None:
    """A connection's parts (a Discord bot's shards), one line each, and its identify budget;
    with the live health the daemon answered, each connected part's latest round-trip and an
    overdue ACK on its line ("no heartbeat reply for 14 s"), as the TUI's table has them."""
    import time

    import msgspec

    from harness import render
    from harness.protocol import Health, to_connection

    conn = to_connection(value)
    try:
        health = msgspec.convert(health_value, Health) if isinstance(health_value, dict) else None
    except msgspec.ValidationError:
        health = None  # a newer daemon's shape: the stored parts still say enough
    now = time.time()
    budget = render.identify_budget(conn, now)
    if budget:
        print(f"  budget      {budget}")
    summary = render.parts_summary(conn)
    if conn is None or summary is None:
        return
    print(f"  parts       {summary}")
    late = render.parts_overdue(conn, health)
    parts = render.live_parts(conn, health)
    rows = [render.PART_COLUMNS, *(render.part_row(p, now, None, late.get(p.id)) for p in parts)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(render.PART_COLUMNS) - 1)]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)]
        print("    " + "  ".join([*cells, row[-1]]).rstrip())


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
                raw = _read_secret(key)
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
                    f"{key}: the secret read from {source} is empty (to unset it, pass {key}=)"
                )
        if raw == "":
            values[key] = None
        elif kind == "integer":
            try:
                values[key] = int(raw)
            except ValueError:
                raise ValueError(f"{key}: expected a whole number, got {raw!r}") from None
        elif kind == "boolean":
            lowered = raw.lower()
            truthy, falsy = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
            if lowered not in truthy + falsy:
                raise ValueError(f"{key}: expected true or false (yes/no, 1/0), got {raw!r}")
            values[key] = lowered in truthy
        else:
            values[key] = raw
    return values


def _read_secret(key: str) -> str:
    """One line from stdin; on a terminal, without echo (getpass) and with a prompt naming the
    setting, so the secret is neither shown nor left on the screen."""
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass(f"{key} (secret; what you type is not shown): ").strip()
    return sys.stdin.readline().rstrip("\r\n")


def _json_text(value: Any) -> str:
    import msgspec

    return msgspec.json.encode(value).decode()
