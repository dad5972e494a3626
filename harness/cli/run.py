"""``harness run``: the daemon in the foreground."""

from __future__ import annotations

import argparse
from typing import Any

from harness.cli.common import EXIT_FAILED, EXIT_USAGE, err


def cmd_run(args: argparse.Namespace) -> int:
    import asyncio

    from harness import config as config_mod
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


def register(sub: Any, parents: Any) -> None:
    run = sub.add_parser("run", parents=[parents.common], help="run the daemon in the foreground")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    run.set_defaults(func=cmd_run)
