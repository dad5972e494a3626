"""``harness context list|use|show``: the named daemons of the config and the current one."""

from __future__ import annotations

import argparse

from harness.cli.common import EXIT_OK, EXIT_USAGE, err, fail, print_json


def cmd_context(args: argparse.Namespace) -> int:
    from harness import client_config, contexts
    from harness.config_paths import ConfigError

    try:
        # What a client reads of the file: [daemon].socket and [contexts] (not the daemon's
        # other sections: `harness config` checks those).
        cfg = client_config.load(args.config)
        targets = contexts.all_targets(cfg)
    except ConfigError as exc:
        return fail(args, EXIT_USAGE, "config", str(exc))
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
        known = ", ".join(targets)
        return fail(args, EXIT_USAGE, "usage", f"no context named {name!r}; known: {known}")
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
