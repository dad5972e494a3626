"""``harness config``: the effective configuration and where each value came from."""

from __future__ import annotations

import argparse
import os
from typing import Any

from harness.cli.common import EXIT_OK, EXIT_USAGE, fail, print_json

# Where a value came from, in the words of `harness config` ("state": chosen with
# `harness context use`, kept in the user state directory).
DEFAULT, FILE, ENV, FLAG, STATE = "default", "file", "env", "flag", "state"
_ORIGIN_WORDS = {
    "flag": "from --config",
    "env": "from $HARNESS_CONFIG",
    "discovered": "found in the user config directory",
}


def explain(
    config_arg: str | None, socket_arg: str | None, context_arg: str | None = None
) -> dict[str, Any]:
    """The effective configuration, value by value, with its source. Raises ConfigError for
    a bad file, or plugin or context tables that do not fit."""
    import msgspec

    from harness import config as config_mod
    from harness import contexts
    from harness.orchestrator import check_plugin_tables
    from harness.plugins import discover

    file, origin = config_mod.locate(config_arg)
    cfg = config_mod.load(config_arg)
    plugins = discover()
    check_plugin_tables(cfg, plugins)  # the same check `harness run` makes before it starts
    raw = config_mod.load_raw(file) if file is not None else {}

    values: dict[str, dict[str, Any]] = {}

    def put(key: str, value: Any, source: str, detail: str = "") -> None:
        values[key] = {"value": value, "source": source, **({"detail": detail} if detail else {})}

    for section in ("daemon", "metrics"):
        table = raw.get(section) or {}
        for key, value in msgspec.to_builtins(getattr(cfg, section)).items():
            put(f"{section}.{key}", value, FILE if key in table else DEFAULT)

    # [alerts]: a target's URL and the heartbeat URL hold the receiver's token, so they are
    # shown as `harness alerts` shows them (scheme and server name only), never whole.
    alerts_raw = raw.get("alerts") or {}
    alerts = cfg.alerts
    for key, value in msgspec.to_builtins(alerts).items():
        if key in ("targets", "rules"):
            continue
        if key == "heartbeat_url" and value:
            from urllib.parse import urlsplit

            split = urlsplit(value)
            value = f"{split.scheme}://{split.hostname or ''}/…"
        put(f"alerts.{key}", value, FILE if key in alerts_raw else DEFAULT)
    if alerts.target_urls:
        from harness.alerts.targets import redact

        for name, url in alerts.target_urls.items():
            put(f"alerts.targets.{name}", redact(url), FILE)
    for rule_name, rule in alerts.rules.items():
        rule_raw = (alerts_raw.get("rules") or {}).get(rule_name) or {}
        for key, value in msgspec.to_builtins(rule).items():
            put(
                f"alerts.rules.{rule_name}.{key}",
                value,
                FILE if key in rule_raw else DEFAULT,
            )

    # The two paths everything depends on, resolved, with what decided them.
    if socket_arg:
        put("socket_path", socket_arg, FLAG, "--socket")
    elif cfg.daemon.socket:
        put("socket_path", str(cfg.socket_path), FILE, "daemon.socket")
    elif os.environ.get("XDG_RUNTIME_DIR"):
        put("socket_path", str(cfg.socket_path), ENV, "$XDG_RUNTIME_DIR")
    else:
        put("socket_path", str(cfg.socket_path), DEFAULT)
    if cfg.daemon.database:
        put("database_path", str(cfg.database_path), FILE, "daemon.database")
    elif os.environ.get("XDG_STATE_HOME"):
        put("database_path", str(cfg.database_path), ENV, "$XDG_STATE_HOME")
    else:
        put("database_path", str(cfg.database_path), DEFAULT)

    # Plugin defaults from the file; a secret is shown as set, never as its value.
    for name, table in sorted(cfg.plugins.items()):
        secrets = {f.name for f in plugins[name].settings_schema if f.type == "secret"}
        for key, value in table.items():
            shown = {"set": bool(value)} if key in secrets else value
            put(f"plugins.{name}.{key}", shown, FILE)

    # [contexts.NAME], checked as every client command checks them, then the one in use.
    targets = contexts.parse_contexts(cfg)
    for name in sorted(targets):
        table = cfg.contexts[name]
        ctx = msgspec.to_builtins(msgspec.convert(table, contexts.context_config()))
        for key, value in ctx.items():
            if key in table:
                put(f"contexts.{name}.{key}", value, FILE)
            elif key == "read_only":
                put(f"contexts.{name}.{key}", value, DEFAULT)
            elif key == "remote_harness" and table.get("host"):
                put(f"contexts.{name}.{key}", "harness", DEFAULT)  # `harness` on its PATH
    current = context_arg or contexts.current_name()
    known = current == contexts.DEFAULT or current in targets
    note = "" if known else "; not in the config: client commands will refuse it"
    if context_arg:
        put("context", current, FLAG, "--context" + note)
    elif os.environ.get(contexts.ENV_CONTEXT):
        put("context", current, ENV, f"${contexts.ENV_CONTEXT}{note}")
    elif current != contexts.DEFAULT:
        put("context", current, STATE, f"`harness context use`: {contexts.state_file()}{note}")
    else:
        put("context", current, DEFAULT)

    return {
        "file": str(file) if file is not None else None,
        "file_origin": origin,
        "user_config_file": str(config_mod.user_config_file()),
        "values": values,
    }


def cmd_config(args: argparse.Namespace) -> int:
    from harness import config as config_mod
    from harness.cli.output import table

    if args.example:
        from importlib import resources

        text = resources.files("harness.data").joinpath("config.example.toml").read_text()
        print(text, end="")
        return EXIT_OK
    try:
        report = explain(args.config, args.socket, getattr(args, "context", None))
    except config_mod.ConfigError as exc:
        # The same --config, or `harness config` would check another file than the one named.
        again = "harness config" + (f" --config {args.config}" if args.config else "")
        return fail(
            args,
            EXIT_USAGE,
            "config",
            str(exc),
            hint=f"\n  fix the file, then check again: {again}",
        )
    if args.json:
        print_json(report)
        return EXIT_OK
    if report["file"]:
        print(f"config file: {report['file']} ({_ORIGIN_WORDS[report['file_origin']]})")
    else:
        print(
            f"config file: none; built-in defaults (create {report['user_config_file']} "
            "to change them; config.example.toml lists every key)"
        )
    print()
    rows = []
    for key, entry in report["values"].items():
        value = entry["value"]
        if isinstance(value, dict) and set(value) == {"set"}:
            shown = "(set)" if value["set"] else "(not set)"
        elif isinstance(value, str):
            shown = value if value else '""'
        else:
            import msgspec

            shown = msgspec.json.encode(value).decode()
        source = entry["source"] + (f" ({entry['detail']})" if entry.get("detail") else "")
        rows.append([key, shown, source])
    table(["KEY", "VALUE", "SOURCE"], rows)
    return EXIT_OK
