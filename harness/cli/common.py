"""What every client command shares: exit codes, error and JSON output, one daemon connection."""

from __future__ import annotations

import sys
from pathlib import Path

# typing, collections.abc and argparse only for the type checker: a one-shot command pays for
# each import (argparse is not needed for the forms harness/cli/quick_parse.py parses).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Awaitable, Callable
    from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_DAEMON = 0, 1, 2, 3
# The socket (its directory, or the process behind it) may be another user's: nothing was sent.
# A setup the operator must fix (the message says how), so a usage/config error: the documented
# codes are 0-3, and a script that knows them must not meet a fifth.
EXIT_UNTRUSTED = EXIT_USAGE


def err(message: str) -> None:
    print(f"harness: {message}", file=sys.stderr)


def fail(
    args: argparse.Namespace,
    exit_code: int,
    code: str,
    message: str,
    *,
    hint: str = "",
    words: str | None = None,
    details: dict[str, Any] | None = None,
) -> int:
    """Say a failure and return ``exit_code``: in words on stderr (``message``, then
    ``hint``: what to do), and, with ``--json``, also on stdout as one line, so that a
    consumer in a pipe reads why instead of nothing (docs/operations.md, "Errors with --json"):
    ``{"error": {"code": ..., "message": ..., "exit_code": ..., "details"?: {...}}}``.
    ``words``: what stderr says instead of ``message`` + ``hint``.

    Not once a command's stdout has become a stream of events (``args.stdout_streaming``,
    set by ``harness events`` once subscribed): what follows stays events only, and the
    failure is said on stderr."""
    # A command that can be carried on from where it stopped says how (harness events).
    err((message + hint if words is None else words) + getattr(args, "resume_hint", ""))
    if getattr(args, "json", False) and not getattr(args, "stdout_streaming", False):
        print_json_error(exit_code, code, message, details)
    return exit_code


def print_json_error(
    exit_code: int, code: str, message: str, details: dict[str, Any] | None = None
) -> None:
    """The error object of :func:`fail`, one line on stdout."""
    import json

    error: dict[str, Any] = {"code": code, "message": message, "exit_code": exit_code}
    if details:
        error["details"] = details
    try:
        sys.stdout.write(json.dumps({"error": error}, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        quiet_broken_pipe()


def count(text: str) -> int:
    """argparse type: a whole number >= 0 (a negative count is a usage error, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise _type_error(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise _type_error(f"must be 0 or more, got {value}")
    return value


def history_limit(text: str) -> int:
    """argparse type of ``alerts history --limit``: 1 to 1000, as the daemon accepts (said
    as a usage error, exit 2, not the daemon's refusal of a request, exit 1)."""
    value = count(text)
    if not 1 <= value <= 1000:
        raise _type_error(f"expected 1 to 1000, got {value}")
    return value


def seq(text: str) -> int:
    """argparse type: an event seq, 0 .. 2**63-1 (what the daemon accepts as ``since``)."""
    value = count(text)
    if value > 2**63 - 1:
        raise _type_error(f"must be at most 2**63-1, got {value}")
    return value


def _type_error(message: str) -> Exception:
    """argparse's "bad value" error (argparse imported only then: the quick parser calls
    these types too, see harness/cli/quick_parse.py)."""
    import argparse

    return argparse.ArgumentTypeError(message)


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


def with_connection(
    args: argparse.Namespace,
    body: Callable[[Any], int],
    *,
    prepare: Callable[[], object] | None = None,
) -> int:
    """Like :func:`with_client` for one-shot commands, on a blocking stdlib connection
    (:mod:`harness.cli.oneshot`): no event loop to start, frames streamed as they come. The
    socket is verified exactly as the asyncio client does it, and failures are reported the
    same way (:func:`_reporting`).

    ``prepare``: what ``body`` will import, run while ssh connects (``--host``), time that is
    otherwise spent waiting for the server; locally, body imports it when it gets there."""
    from harness import __version__
    from harness.cli.oneshot import Connection, NoDaemon, Refused, TooLarge
    from harness.socket_trust import (
        DaemonUnavailable,
        FrameTooLarge,
        verify_peer,
        verify_socket_path,
    )

    if _targeted(args):
        return _with_target_connection(args, body, prepare)
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


def _targeted(args: argparse.Namespace) -> bool:
    """A context or --host may be in play: resolve it (harness.contexts) instead of the
    fast path that only knows --socket and the config. Checked without importing
    harness.contexts (it brings asyncio), so the plain one-shot path stays light."""
    import os

    if getattr(args, "host", None) or getattr(args, "context", None):
        return True
    if args.socket:
        return False
    if os.environ.get("HARNESS_CONTEXT"):  # harness.contexts.ENV_CONTEXT
        return True
    from harness.config_paths import user_state_dir

    # harness.contexts.state_file(): `harness context use` has chosen one.
    return (user_state_dir() / "context").exists()


def _resolve_target(args: argparse.Namespace) -> Any:
    """The daemon the options name (``--host``/``--socket``/``--context``/the config), as a
    ``harness.contexts`` target; None after reporting a config error. The config is read as
    a client reads it (:mod:`harness.client_config`).

    ``--host`` or ``--socket`` without ``--config``/``$HARNESS_CONFIG``: nothing in a config
    could change the answer, so none is read (and msgspec is not imported), as
    :func:`socket_path` does; a config named on purpose is still checked."""
    import os

    from harness import contexts

    host = getattr(args, "host", None)
    try:
        if not args.config and not os.environ.get("HARNESS_CONFIG"):
            target = contexts.direct(
                host=host,
                socket=args.socket,
                remote_harness=getattr(args, "remote_harness", None),
            )
            if target is not None:
                return target
        from harness import client_config

        return contexts.resolve(
            client_config.load(args.config),  # only what a client reads of it
            host=host,
            socket=args.socket,
            context=getattr(args, "context", None),
            remote_harness=getattr(args, "remote_harness", None),
        )
    except Exception as exc:
        from harness.config_paths import ConfigError

        if not isinstance(exc, ConfigError):
            raise
        fail(args, EXIT_USAGE, "config", str(exc))
        return None


def _with_target_connection(
    args: argparse.Namespace, body: Callable[[Any], int], prepare: Callable[[], object] | None
) -> int:
    """:func:`with_connection` for a context or ``--host``: a local socket the same way, or
    ssh running ``harness dial-stdio`` on one end of a socket pair; a read-only context
    refuses writes before sending."""
    from harness import __version__, contexts, transport
    from harness.cli.oneshot import Connection, NoDaemon, Refused, TooLarge
    from harness.socket_trust import (
        DaemonUnavailable,
        FrameTooLarge,
        verify_peer,
        verify_socket_path,
    )

    target = _resolve_target(args)
    if target is None:
        return EXIT_USAGE
    client = f"harness-cli/{__version__}"

    def guard(conn: Any) -> Any:
        if target.read_only:
            from harness.protocol import E_READ_ONLY, WRITE_METHODS  # msgspec: only here

            request = conn.request

            def refusing(method: str, **params: Any) -> Any:
                if method in WRITE_METHODS:
                    raise Refused(
                        {"code": E_READ_ONLY, "message": contexts.read_only_message(target)}
                    )
                return request(method, **params)

            conn.request = refusing
        return conn

    def run() -> int:
        try:
            if target.ssh is None:
                assert target.socket is not None
                path = target.socket
                verify_socket_path(path)
                with Connection(path, client=client, verify=lambda s: verify_peer(s, path)) as c:
                    return body(guard(c))
            ours, link = transport.ssh_socketpair(target)
            try:
                if prepare is not None:
                    prepare()  # while ssh connects
                with Connection(
                    str(target.ssh), client=client, sock=ours, timeout=transport.SSH_TIMEOUT
                ) as c:
                    return body(guard(c))
            except NoDaemon as exc:
                raise DaemonUnavailable(transport.blocking_failure(target, link)) from exc
            finally:
                transport.end_blocking(link)
        except TooLarge as exc:
            raise FrameTooLarge(str(exc)) from exc
        except NoDaemon as exc:
            raise DaemonUnavailable(str(exc), not_running=exc.not_running) from exc

    return _reporting(args, run, refused=Refused)


def socket_path(args: argparse.Namespace) -> Path | None:
    """The socket named by ``--socket``, else by the config (None: a config error, reported)."""
    import os

    if args.socket and not args.config and not os.environ.get("HARNESS_CONFIG"):
        # Nothing else in the config matters to a client: skip reading it (and tomllib).
        return Path(args.socket).expanduser()
    from harness import client_config
    from harness.config_paths import ConfigError

    try:
        # Only what a client reads of the file (harness.client_config): a mistake elsewhere
        # in it is for `harness config` and `harness run` to report.
        cfg = client_config.load(args.config)
    except ConfigError as exc:
        fail(args, EXIT_USAGE, "config", str(exc))
        return None
    return Path(args.socket).expanduser() if args.socket else cfg.socket_path


def with_client(args: argparse.Namespace, body: Callable[[Any], Awaitable[int]]) -> int:
    """Connect to the daemon named by ``--host``/``--socket``/``--context``/``--config``, run
    ``body(client)``, and map failures to exit codes with a message saying what to do."""
    import asyncio

    from harness import __version__, contexts, liveness, transport
    from harness.client import ClientError

    target = _resolve_target(args)
    if target is None:
        return EXIT_USAGE

    async def go() -> int:
        client = await transport.connect(target, client=f"harness-cli/{__version__}")
        if target.read_only:
            client.read_only = contexts.read_only_message(target)
        try:
            # A daemon that stops answering ends the command (exit 3), never a silent wait.
            return await liveness.unless_silent(client, body(client), target.where)
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
        return fail(args, EXIT_UNTRUSTED, "untrusted_socket", str(exc))
    except FrameTooLarge as exc:
        return fail(args, EXIT_FAILED, "frame_too_large", str(exc))
    except DaemonUnavailable as exc:
        if exc.not_running:
            command = getattr(args, "command", "") or ""
            hint = (
                "\n  start it: harness run   (as a service: systemctl --user start harness)"
                f"\n  or point at it: harness --socket PATH {command}".rstrip()
                + "\n  a socket forwarded over ssh -L? the tunnel may be down: start it again"
            )
        else:
            hint = ""  # it is running (or was): saying "start it" would mislead
        return fail(
            args,
            EXIT_NO_DAEMON,
            "no_daemon",
            str(exc),
            hint=hint,
            details={"not_running": exc.not_running},
        )
    except refused as exc:
        fields = exc.details.get("fields", {})  # type: ignore[attr-defined]
        message = exc.message  # type: ignore[attr-defined]
        # The daemon's message ends with the same problems as `fields`: say each once.
        joined = "; ".join(f"{k}: {v}" for k, v in fields.items())
        if fields and message.endswith(joined):
            message = message[: -len(joined)].rstrip(": ") + ":"
        listed = "".join(f"\n  {field}: {problem}" for field, problem in fields.items())
        return fail(
            args,
            EXIT_FAILED,
            exc.code or "refused",  # type: ignore[attr-defined]
            exc.message,  # type: ignore[attr-defined]
            words=message + listed,
            details=exc.details,  # type: ignore[attr-defined]
        )
    except KeyboardInterrupt:
        return 130
