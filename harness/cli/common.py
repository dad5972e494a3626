"""What every client command shares: exit codes, error and JSON output, one daemon connection."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_DAEMON = 0, 1, 2, 3
# The socket (its directory, or the process behind it) may be another user's: nothing was sent.
EXIT_UNTRUSTED = 4


def err(message: str) -> None:
    print(f"harness: {message}", file=sys.stderr)


def count(text: str) -> int:
    """argparse type: a whole number >= 0 (a negative count is a usage error, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def seq(text: str) -> int:
    """argparse type: an event seq, 0 .. 2**63-1 (what the daemon accepts as ``since``)."""
    value = count(text)
    if value > 2**63 - 1:
        raise argparse.ArgumentTypeError(f"must be at most 2**63-1, got {value}")
    return value


def quiet_broken_pipe() -> int:
    """The reader of our stdout went away (``| head -1``): that is how a pipe ends, not an
    error. Point stdout at /dev/null so the interpreter's last flush cannot complain either."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return EXIT_OK


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
    from harness.client import (
        ClientError,
        DaemonUnavailable,
        FrameTooLarge,
        UntrustedSocket,
    )

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
    except BrokenPipeError:
        return quiet_broken_pipe()
    except UntrustedSocket as exc:
        err(str(exc))
        return EXIT_UNTRUSTED
    except FrameTooLarge as exc:
        err(str(exc))
        return EXIT_FAILED
    except DaemonUnavailable as exc:
        if exc.not_running:
            command = getattr(args, "command", "") or ""
            err(
                f"{exc}\n  start it: harness run   (as a service: systemctl --user start harness)"
                f"\n  or point at it: harness --socket PATH {command}".rstrip()
                + "\n  a socket forwarded over ssh -L? the tunnel may be down: start it again"
            )
        else:
            err(str(exc))  # it is running (or was): saying "start it" would mislead
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
