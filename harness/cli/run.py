"""``harness run``: the daemon in the foreground."""

from __future__ import annotations

import argparse
import gc
from collections.abc import Awaitable, Callable
from typing import Any

from harness.cli.common import EXIT_FAILED, EXIT_USAGE, err


def cmd_run(args: argparse.Namespace) -> int:
    import asyncio
    import logging

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
        loop_name, factory = loop_factory(args.loop)
    except ImportError:
        err(
            "--loop uvloop: uvloop is not installed here (it has no build for this platform "
            "or Python); pip install uvloop, or run with --loop asyncio"
        )
        return EXIT_USAGE
    logging.getLogger("harness.daemon").debug("event loop: %s", loop_name)
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(_serve(serve, cfg))
    except config_mod.ConfigError as exc:
        err(f"{exc}\n  fix it, then check it with: {check}")
        return EXIT_USAGE
    except AlreadyRunning as exc:
        err(f"{exc}\n  talk to it: harness status   (or stop it first)")
        return EXIT_FAILED
    except (StoreError, MetricsError) as exc:
        err(str(exc))
        return EXIT_FAILED
    except OSError as exc:
        # harness's own refusals (UnsafePath, "exists and is not a socket") carry a message
        # of their own; the file system's (a read-only mount, a file where a directory should
        # be, no space left) get the path and the cause, not a traceback.
        err(str(exc) if exc.strerror is None else cannot_start(exc, check))
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def cannot_start(exc: OSError, check: str) -> str:
    """What ``harness run`` says when the file system refuses a path it needs."""
    where = f"{exc.filename}: " if exc.filename else ""
    cause = exc.strerror or str(exc)
    if isinstance(exc, FileExistsError):
        cause = "exists and is not a directory"  # mkdir(exist_ok=True) met a file there
    return (
        f"cannot start: {where}{cause}\n"
        "  the socket and the database (and their .lock files) need a writable place; "
        f"see where they are with: {check}"
    )


LOOPS = ("auto", "asyncio", "uvloop")


def loop_factory(choice: str) -> tuple[str, Callable[[], Any] | None]:
    """The event loop ``harness run --loop`` asks for: its name and a factory for
    ``asyncio.Runner`` (None: the standard library's). ``auto`` is uvloop wherever it is
    installed (a dependency on Linux and macOS; docs/benchmarks.md says what it changes)
    and asyncio elsewhere; ``uvloop`` raises ImportError where it is missing."""
    if choice not in LOOPS:
        raise ValueError(f"unknown event loop {choice!r}")
    if choice == "asyncio":
        return "asyncio", None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise
        return "asyncio", None
    return "uvloop", uvloop.new_event_loop


async def _serve(serve: Callable[[Any], Awaitable[int]], cfg: Any) -> int:
    # Everything imported by now (the daemon, its plugins' modules once they load, the
    # libraries) lives as long as the process: frozen out of the collector once the daemon is
    # up, so no full collection walks it again (a full pass over it stalled the loop for
    # tens of ms under load). gc.freeze() needs no other care: new objects are tracked as
    # before.
    import asyncio

    loop = asyncio.get_running_loop()
    loop.call_later(STARTUP_SETTLE, freeze_startup_objects)
    return await serve(cfg)


STARTUP_SETTLE = 2.0  # seconds after start: plugins have loaded their modules by then


def freeze_startup_objects() -> None:
    """Move every object alive now out of the collector's reach (``gc.freeze``)."""
    gc.collect()
    gc.freeze()
