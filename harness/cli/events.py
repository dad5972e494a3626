"""``harness events``: show, replay and follow the event stream."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from harness.cli.common import EXIT_OK, with_connection

# The daemon encodes every frame with its ``type`` first (msgspec's tag field), so an event
# line is known by its first bytes; anything else is decoded to see what it is.
EVENT_PREFIX = b'{"type":"event"'


def cmd_events(args: argparse.Namespace) -> int:
    import collections
    import json

    from harness.cli.oneshot import NoDaemon, Refused

    patterns = args.patterns or ["*"]
    out = sys.stdout.buffer

    def kind_of(line: bytes) -> str:
        if line.startswith(EVENT_PREFIX):
            return "event"
        frame = json.loads(line)
        return str(frame.get("type")) if isinstance(frame, dict) else "?"

    if args.json:

        def show(line: bytes) -> None:
            # As the daemon sent it: the same bytes ``msgspec.json.encode(event)`` gives.
            out.write(line)
            out.write(b"\n")

    else:
        import msgspec

        from harness.protocol import Event

        decode_event = msgspec.json.Decoder(Event).decode

        def show(line: bytes) -> None:
            event = decode_event(line)
            stamp = time.strftime("%H:%M:%S", time.localtime(event.ts))
            data = msgspec.json.encode(event.data).decode()
            out.write(f"{event.seq:>8} {stamp} {event.event:<24} {data}\n".encode())

    def body(conn: Any) -> int:
        head = conn.welcome["seq"]
        since = args.since if args.since is not None else max(0, head - args.scan)
        conn.subscribe(patterns, since=since)
        # Output is flushed whenever we would wait for the daemon: frames show as they come.
        lines = conn.lines(before_wait=out.flush)
        # With --since every replayed event is printed as it arrives (constant memory);
        # without, only the newest --lines are, as `tail` would.
        backlog: collections.deque[bytes] | None = (
            None if args.since is not None else collections.deque(maxlen=args.lines)
        )
        for line in lines:
            kind = kind_of(line)
            if kind == "replayed":
                break
            if kind == "event":
                if backlog is None:
                    show(line)
                else:
                    backlog.append(line)
            elif kind == "lagged":
                raise NoDaemon("cut off by the daemon: it could not send fast enough")
            elif kind == "error":  # the replay failed inside the daemon
                raise Refused(json.loads(line))
        else:
            raise NoDaemon("the daemon closed the connection during the replay")
        for line in backlog or ():
            show(line)
        out.flush()
        if args.follow:
            for line in lines:
                kind = kind_of(line)
                if kind == "event":
                    show(line)
                elif kind == "lagged":
                    raise NoDaemon("cut off by the daemon: this terminal could not keep up")
            raise NoDaemon("the daemon closed the connection")
        return EXIT_OK

    return with_connection(args, body)


def register(sub: Any, parents: Any) -> None:
    events = sub.add_parser("events", parents=[parents.client], help="show (and follow) events")
    events.add_argument(
        "patterns",
        nargs="*",
        metavar="PATTERN",
        help="glob on event names, e.g. '*:connection' (default: all)",
    )
    events.add_argument("-f", "--follow", action="store_true", help="keep printing live events")
    events.add_argument(
        "--since", type=int, metavar="SEQ", help="replay every stored event after SEQ"
    )
    events.add_argument(
        "-n",
        "--lines",
        type=int,
        default=20,
        metavar="N",
        help="without --since: how many of the newest to show (default 20)",
    )
    events.add_argument("--scan", type=int, default=5000, help=argparse.SUPPRESS)
    events.add_argument("--json", action="store_true", help="one JSON event per line")
    events.set_defaults(func=cmd_events)
