"""``harness events``: show, replay and follow the event stream."""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
import time
from typing import Any

import msgspec

from harness.cli.common import EXIT_OK, count, with_client

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Since(msgspec.Struct, frozen=True):
    """A point in the stream: after an event ``seq``, or from a Unix time ``ts``."""

    seq: int | None = None
    ts: float | None = None


def parse_point(text: str, now: float | None = None) -> Since:
    """``1042`` (a seq), ``10m``/``2h``/``1d``/``30s`` (that long ago), ``2026-11-25T10:00`` or
    ``10:00`` (local time; a bare time is today)."""
    now = time.time() if now is None else now
    text = text.strip()
    if text.isdigit():
        return Since(seq=int(text))
    if m := _DURATION.match(text):
        return Since(ts=now - float(m.group(1)) * _UNIT[m.group(2)])
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        try:
            clock = dt.time.fromisoformat(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a seq (1042), a duration (10m, 2h, 1d) or a local time "
                f"(2026-11-25T10:00, 10:00), got {text!r}"
            ) from None
        moment = dt.datetime.combine(dt.datetime.fromtimestamp(now).date(), clock)
    if moment.tzinfo is None:
        moment = moment.astimezone()  # local time, as the operator reads a clock
    return Since(ts=moment.timestamp())


def cmd_events(args: argparse.Namespace) -> int:
    import collections

    from harness.cli.output import event_text

    patterns = args.patterns or ["*"]
    since: Since | None = args.since
    until: Since | None = args.until

    def after_until(event: Any) -> bool:
        if until is None:
            return False
        if until.seq is not None:
            return bool(event.seq > until.seq)
        return bool(event.ts > (until.ts or 0))

    def show(event: Any) -> None:
        if args.json:
            sys.stdout.buffer.write(msgspec.json.encode(event) + b"\n")
        else:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.ts))
            print(f"{event.seq:>8} {stamp} {event.event:<24} {event_text(event.data, event.seq)}")
        sys.stdout.flush()

    async def body(client: Any) -> int:
        from harness.protocol import Replayed

        head = client.welcome.seq
        if since is None:
            start = max(0, head - args.scan)
        elif since.seq is not None:
            start = since.seq
        else:
            start = 0  # the stream is addressed by seq: replay all, keep those after the time
        await client.subscribe(patterns, since=start)
        # Without --since only the newest --lines are shown, as `tail` would.
        backlog: collections.deque[Any] = collections.deque(
            maxlen=None if since is not None else args.lines
        )
        while not isinstance(frame := await client.next_frame(), Replayed):
            if since is not None and since.ts is not None and frame.ts < since.ts:
                continue
            if after_until(frame):
                continue
            backlog.append(frame)
        for event in backlog:
            show(event)
        while args.follow:
            event = await client.next_event()
            if after_until(event):
                break
            show(event)
        return EXIT_OK

    return with_client(args, body)


def register(sub: Any, parents: Any) -> None:
    events = sub.add_parser(
        "events",
        parents=[parents.client],
        help="show (and follow) events",
        description="Stored events, then (with -f) live ones. --since and --until take a "
        "seq (1042), a duration ago (30s, 10m, 2h, 1d) or a local time "
        "(2026-11-25T10:00, 10:00 today).",
    )
    events.add_argument(
        "patterns",
        nargs="*",
        metavar="PATTERN",
        help="glob on event names, e.g. '*:connection' (default: all)",
    )
    events.add_argument("-f", "--follow", action="store_true", help="keep printing live events")
    events.add_argument(
        "--since",
        type=parse_point,
        metavar="WHEN",
        help="every stored event after a seq, or from a time or duration ago",
    )
    events.add_argument(
        "--until",
        type=parse_point,
        metavar="WHEN",
        help="stop at this seq or time (with -f: stop following once it passes)",
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
