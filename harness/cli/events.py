"""``harness events``: show, replay and follow the event stream."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from harness.cli.common import EXIT_OK, count, seq, with_client


def cmd_events(args: argparse.Namespace) -> int:
    import collections

    import msgspec

    patterns = args.patterns or ["*"]

    def show(event: Any) -> None:
        if args.json:
            sys.stdout.buffer.write(msgspec.json.encode(event) + b"\n")
        else:
            stamp = time.strftime("%H:%M:%S", time.localtime(event.ts))
            data = msgspec.json.encode(event.data).decode()
            print(f"{event.seq:>8} {stamp} {event.event:<24} {data}")
        sys.stdout.flush()

    async def body(client: Any) -> int:
        from harness.protocol import Replayed

        head = client.welcome.seq
        since = args.since if args.since is not None else max(0, head - args.scan)
        await client.subscribe(patterns, since=since)
        # Without --since only the newest --lines are shown, as `tail` would.
        backlog: collections.deque[Any] = collections.deque(
            maxlen=None if args.since is not None else args.lines
        )
        while not isinstance(frame := await client.next_frame(), Replayed):
            backlog.append(frame)
        for event in backlog:
            show(event)
        while args.follow:
            show(await client.next_event())
        return EXIT_OK

    return with_client(args, body)


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
        "--since", type=seq, metavar="SEQ", help="replay every stored event after SEQ"
    )
    events.add_argument(
        "-n",
        "--lines",
        type=count,
        default=20,
        metavar="N",
        help="without --since: how many of the newest to show (default 20)",
    )
    events.add_argument("--scan", type=count, default=5000, help=argparse.SUPPRESS)
    events.add_argument("--json", action="store_true", help="one JSON event per line")
    events.set_defaults(func=cmd_events)
