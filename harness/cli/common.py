"""What every client command shares: exit codes, error and JSON output, one daemon connection."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_DAEMON = 0, 1, 2, 3


def err(message: str) -> None:
    print(f"harness: {message}", file=sys.stderr)


def print_json(value: Any) -> None:
    import msgspec

    sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(value)) + b"\n")
    sys.stdout.flush()


def with_client(args: argparse.Namespace, body: Callable[[Any], Awaitable[int]]) -> int:
    """Connect to the daemon named by ``--host``/``--socket``/``--context``/``--config``, run
    ``body(client)``, and map failures to exit codes with a message saying what to do."""
    import asyncio

    from harness import __version__, contexts, transport
    from harness import config as config_mod
    from harness.client import ClientError, DaemonUnavailable

    try:
        cfg = config_mod.load(args.config)
        target = contexts.resolve(
            cfg,
            host=getattr(args, "host", None),
            socket=args.socket,
            context=getattr(args, "context", None),
            remote_harness=getattr(args, "remote_harness", None),
        )
    except config_mod.ConfigError as exc:
        err(str(exc))
        return EXIT_USAGE

    async def go() -> int:
        client = await transport.connect(target, client=f"harness-cli/{__version__}")
        if target.read_only:
            client.read_only = contexts.read_only_message(target)
        try:
            return await body(client)
        finally:
            await client.close()

    try:
        return asyncio.run(go())
    except DaemonUnavailable as exc:
        if target.remote:
            err(str(exc))  # ssh's own words, or "no daemon on ops@server: …"
            return EXIT_NO_DAEMON
        command = getattr(args, "command", "") or ""
        err(
            f"{exc}\n  start it: harness run   (as a service: systemctl --user start harness)"
            f"\n  or point at it: harness --socket PATH {command}".rstrip()
            + "\n  a socket forwarded over ssh -L? the tunnel may be down: start it again"
        )
        return EXIT_NO_DAEMON
    except ClientError as exc:
        fields = exc.details.get("fields", {})
        message = exc.message
        # The daemon's message ends with the same problems as `fields`: say each once.
        joined = "; ".join(f"{k}: {v}" for k, v in fields.items())
        if fields and message.endswith(joined):
            message = message[: -len(joined)].rstrip(": ") + ":"
        err(message)
        for field, problem in fields.items():
            print(f"  {field}: {problem}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
