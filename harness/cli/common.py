"""What every client command shares: exit codes, error and JSON output, one daemon connection."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
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
    # stdlib json: the values are decoded JSON already, and msgspec would cost a one-shot
    # command more to import than the whole request.
    import json

    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def with_connection(args: argparse.Namespace, body: Callable[[Any], int]) -> int:
    """Like :func:`with_client` for one-shot commands, on a blocking stdlib connection
    (:mod:`harness.cli.oneshot`): no event loop to start, frames streamed as they come. The
    socket is verified exactly as the asyncio client does it, and failures are reported the
    same way (:func:`_reporting`)."""
    from harness import __version__
    from harness.cli.oneshot import Connection, NoDaemon, Refused, TooLarge
    from harness.socket_trust import (
        DaemonUnavailable,
        FrameTooLarge,
        verify_peer,
        verify_socket_path,
    )

    path = socket_path(args)
    if path is None:
        return EXIT_USAGE

    def run() -> int:
        verify_socket_path(path)
        try:
            with Connection(
                path, client=f"harness-cli/{__version__}", verify=lambda s: verify_peer(s, path)
            ) as conn:
                return body(conn)
        except TooLarge as exc:
            raise FrameTooLarge(str(exc)) from exc
        except NoDaemon as exc:
            raise DaemonUnavailable(str(exc), not_running=exc.not_running) from exc

    return _reporting(args, run, refused=Refused)


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
    from harness.client import Client, ClientError

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

    return _reporting(args, lambda: asyncio.run(go()), refused=ClientError)


def _reporting(
    args: argparse.Namespace, run: Callable[[], int], *, refused: type[Exception]
) -> int:
    """Run a client command and map its failures to exit codes, with a message saying what
    to do (shared by the asyncio and the one-shot connections). ``refused``: the connection's
    "the daemon answered with an error" exception (``code``, ``message``, ``details``)."""
    from harness.socket_trust import DaemonUnavailable, FrameTooLarge, UntrustedSocket

    try:
        return run()
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
    except refused as exc:
        fields = exc.details.get("fields", {})  # type: ignore[attr-defined]
        message = exc.message  # type: ignore[attr-defined]
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
