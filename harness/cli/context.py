"""``harness context list|use|show``: the named daemons of the config and the current one."""

from __future__ import annotations

import argparse
from typing import Any

from harness.cli.common import EXIT_OK, EXIT_USAGE, err, print_json


def cmd_context(args: argparse.Namespace) -> int:
    from harness import config as config_mod
    from harness import contexts

    try:
        cfg = config_mod.load(args.config)
        targets = contexts.all_targets(cfg)
    except config_mod.ConfigError as exc:
        err(str(exc))
        return EXIT_USAGE
    current = contexts.current_name()
    if args.action == "list":
        rows = [{**contexts.describe(t), "current": n == current} for n, t in targets.items()]
        if args.json:
            print_json(rows)
            return EXIT_OK
        width = max(len(n) for n in targets)
        for row in rows:
            mark = "*" if row["current"] else " "
            ro = "  (read-only)" if row["read_only"] else ""
            print(f"{mark} {row['name']:<{width}}  {row['host'] or row['socket']}{ro}")
        if current not in targets:
            err(f"the current context {current!r} is not in the config")
        return EXIT_OK
    name = args.name if args.action == "use" else (args.name or current)
    if name not in targets:
        err(f"no context named {name!r}; known: {', '.join(targets)}")
        return EXIT_USAGE
    if args.action == "use":
        path = contexts.set_current(name)
        if args.json:
            print_json({"current": name, "state_file": str(path)})
        else:
            print(f"current context: {name} ({targets[name].where})")
        return EXIT_OK
    info = {**contexts.describe(targets[name]), "current": name == current}
    if args.json:
        print_json(info)
    else:
        for key, value in info.items():
            if value is not None:
                print(f"{key:<15} {value}")
    return EXIT_OK


def register(sub: Any, parents: Any) -> None:
    p = sub.add_parser(
        "context",
        help="list, show or choose the daemon client commands talk to",
        description="Contexts are [contexts.NAME] tables in the config: host = "
        '"ssh://user@server" or socket = "/path", optional read_only = true and '
        "remote_harness. `default` is the config's own daemon.",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    common = [parents.common]
    ls = actions.add_parser("list", parents=common, help="every context; * marks the current one")
    use = actions.add_parser("use", parents=common, help="make NAME the current context")
    use.add_argument("name", metavar="NAME")
    show = actions.add_parser("show", parents=common, help="one context (default: the current one)")
    show.add_argument("name", metavar="NAME", nargs="?")
    for q in (ls, use, show):
        q.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_context)
