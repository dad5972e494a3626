"""``harness dial-stdio``: bridge stdin/stdout to the local daemon's socket (what ``--host
ssh://`` runs on the server, like ``docker system dial-stdio``).

Kept to the standard library and a plain ``selectors`` loop: it starts once per remote command,
so its start-up time is part of every ``harness --host ssh://… status``.
"""

from __future__ import annotations

import argparse
import os
import socket

from harness.cli.common import (
    EXIT_NO_DAEMON,
    EXIT_OK,
    EXIT_UNTRUSTED,
    EXIT_USAGE,
    err,
    socket_path,
)

CHUNK = 256 * 1024


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def bridge(sock: socket.socket, fd_in: int = 0, fd_out: int = 1) -> None:
    """Copy both ways until the daemon closes (the client's EOF is passed on as a half-close)."""
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ, "sock")
    sel.register(fd_in, selectors.EVENT_READ, "in")
    while True:
        for key, _ in sel.select():
            if key.data == "sock":
                data = sock.recv(CHUNK)
                if not data:
                    return  # the daemon closed: so do we
                _write_all(fd_out, data)
            else:
                data = os.read(fd_in, CHUNK)
                if not data:
                    sel.unregister(fd_in)
                    sock.shutdown(socket.SHUT_WR)  # the client is done; let replies finish
                    continue
                sock.sendall(data)


def cmd_dial_stdio(args: argparse.Namespace) -> int:
    # The config is read as for any client command: not at all for --socket alone, and not
    # for the default socket when there is no config file (harness.config means msgspec).
    found = socket_path(args)
    if found is None:
        return EXIT_USAGE  # a bad config, already reported
    # socket_trust, not harness.client: the same checks without importing asyncio and msgspec
    # on every remote command (`--host` pays for this start-up on the server).
    from harness.socket_trust import UntrustedSocket, verify_peer, verify_socket_path

    path = str(found)
    # The checks a local client makes, before and after connecting: the socket, its directory
    # and the process listening must be this user's (or root's); nothing is sent otherwise.
    try:
        verify_socket_path(path)
    except UntrustedSocket as exc:
        err(str(exc))
        return EXIT_UNTRUSTED
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except FileNotFoundError:
        err(f"no daemon: the socket {path} does not exist (is `harness run` running?)")
        return EXIT_NO_DAEMON
    except ConnectionRefusedError:
        err(f"no daemon: nothing is listening on {path} (the daemon is not running)")
        return EXIT_NO_DAEMON
    except OSError as exc:
        err(f"cannot connect to {path}: {exc.strerror or exc}")
        return EXIT_NO_DAEMON
    try:
        verify_peer(sock, path)
    except UntrustedSocket as exc:
        sock.close()
        err(str(exc))
        return EXIT_UNTRUSTED
    try:
        bridge(sock)
    except (BrokenPipeError, ConnectionResetError):
        pass  # one side went away: nothing more to carry
    except KeyboardInterrupt:
        return 130
    finally:
        sock.close()
    return EXIT_OK
