"""``harness run``: the daemon in the foreground."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from harness.cli.common import EXIT_FAILED, EXIT_USAGE, err


def cmd_run(args: argparse.Namespace) -> int:
    import asyncio

    from harness import config as config_mod
    from harness import logs
    from harness.daemon import serve
    from harness.metrics import MetricsError
    from harness.server import AlreadyRunning
    from harness.store import StoreError

    check = "harness config" + (f" --config {args.config}" if args.config else "")
    try:
        cfg = config_mod.load(args.config)
    except config_mod.ConfigError as exc:
        err(f"{exc}\n  fix it, then check it with: {check}")
        return EXIT_USAGE
    if args.socket:
        cfg.daemon.socket = args.socket
    logs.setup(args.log_level or cfg.daemon.log_level)
    try:
        loop_factory = _loop_factory(args.loop)
    except ImportError:
        err("--loop uvloop: uvloop is not installed; pip install 'harness-daemon[fast]'")
        return EXIT_USAGE
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(serve(cfg))
    except config_mod.ConfigError as exc:
        err(f"{exc}\n  fix it, then check it with: {check}")
        return EXIT_USAGE
    except AlreadyRunning as exc:
        err(f"{exc}\n  talk to it: harness status   (or stop it first)")
        return EXIT_FAILED
    except (StoreError, FileExistsError, PermissionError, MetricsError) as exc:
        err(str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def _loop_factory(choice: str) -> Callable[[], Any] | None:
    """None: the stdlib loop. uvloop only when asked for (the ``fast`` extra); see
    docs/benchmarks.md for what it changes here."""
    if choice == "asyncio":
        return None
    import uvloop

    return uvloop.new_event_loop  # type: ignore[no-any-return]
