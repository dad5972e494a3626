"""What every client command shares: exit codes, error and JSON output, one daemon connection."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_DAEMON = 0, 1, 2, 3


def err(message: str) -> None:
    print(f"harness: {message}", file=sys.stderr)


def print_json(value: Any) -> None:
    # stdlib json: the values are decoded JSON already, and msgspec would cost a one-shot
    # command more to import than the whole request.
    import json

    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def with_connection(args: argparse.Namespace, body: Callable[[Any], int]) -> int:
    """Like :func:`with_client` for one-shot commands, on a blocking stdlib connection
    (:mod:`harness.cli.oneshot`): no asyncio, no msgspec, so they start fast."""
    from harness import __version__
    from harness.cli.oneshot import Connection, NoDaemon, Refused

    path = socket_path(args)
    if path is None:
        return EXIT_USAGE
    try:
        with Connection(path, client=f"harness-cli/{__version__}") as conn:
            return body(conn)
    except NoDaemon as exc:
        err(f"{exc}\n  start it with `harness run`, or pass --socket/--config to find it")
        return EXIT_NO_DAEMON
    except Refused as exc:
        err(exc.message)
        for field, problem in exc.details.get("fields", {}).items():
            print(f"  {field}: {problem}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:
        # The reader went away (``| head``): not an error of ours; keep Python quiet about it.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        return 130


def socket_path(args: argparse.Namespace) -> Path | None:
    """The socket named by ``--socket``, else by the config (None: a config error, reported)."""
    import os

    if args.socket and not args.config and not os.environ.get("HARNESS_CONFIG"):
        # Nothing else in the config matters to a client: skip loading it (and msgspec).
        return Path(args.socket).expanduser()
    from harness import config as config_mod

    try:
        cfg = config_mod.load(args.config)
    except config_mod.ConfigError as exc:
        err(str(exc))
        return None
    return Path(args.socket).expanduser() if args.socket else cfg.socket_path


def with_client(args: argparse.Namespace, body: Callable[[Any], Awaitable[int]]) -> int:
    """Connect to the daemon named by ``--socket``/``--config``, run ``body(client)``, and map
    failures to exit codes with a message saying what to do."""
    import asyncio

    from harness import __version__
    from harness import config as config_mod
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
