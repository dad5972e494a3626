"""``harness events``: show, replay and follow the event stream."""

from __future__ import annotations

import collections
import sys
import time

from harness.cli.common import EXIT_OK, with_connection

# argparse, datetime, re and typing only when needed: ``events --since 1042 --json`` is a
# one-shot command that pays for each import (docs/benchmarks.md, "cli").
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator
    from typing import Any

_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}

# A point in the stream: after an event ``seq``, or from a Unix time ``ts``. (A named tuple:
# immutable and compared by value, like the frozen dataclass it was, without dataclasses.)
Since = collections.namedtuple("Since", ["seq", "ts"], defaults=[None, None])


def parse_point(text: str, now: float | None = None) -> Since:
    """``1042`` (a seq), ``10m``/``2h``/``1d``/``30s`` (that long ago), ``2026-11-25T10:00`` or
    ``10:00`` (local time; a bare time is today)."""
    now = time.time() if now is None else now
    text = text.strip()
    if text.isdigit():
        return Since(seq=int(text))
    import re

    if m := re.match(r"^(\d+(?:\.\d+)?)([smhd])$", text):
        return Since(ts=now - float(m.group(1)) * _UNIT[m.group(2)])
    import datetime as dt

    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        try:
            clock = dt.time.fromisoformat(text)
        except ValueError:
            import argparse

            raise argparse.ArgumentTypeError(
                f"expected a seq (1042), a duration (10m, 2h, 1d) or a local time "
                f"(2026-11-25T10:00, 10:00), got {text!r}"
            ) from None
        moment = dt.datetime.combine(dt.datetime.fromtimestamp(now).date(), clock)
    if moment.tzinfo is None:
        moment = moment.astimezone()  # local time, as the operator reads a clock
    return Since(ts=moment.timestamp())


# The daemon encodes every frame with its ``type`` first (msgspec's tag field), so an event
# line is known by its first bytes; anything else is decoded to see what it is.
EVENT_PREFIX = b'{"type":"event"'


def _pinger(where: str, doing: list[str]) -> Any:
    """A daemon that stops answering (SIGSTOP, a blocked loop) is said on stderr, once, and
    waited for, as ``tail -f`` waits for a file; its return is said too. From the subscription
    on, with or without ``-f``: a replay is a stream too, partly printed already (one-shot
    requests give up instead: harness/cli/oneshot.py, ``_request_pinger``).
    ``doing[0]`` is what the command is at: "replaying", then "following"."""
    from harness import liveness
    from harness.cli.common import err
    from harness.cli.oneshot import Pinger

    def silent(seconds: float) -> None:
        at = (
            f"following {where}"
            if doing[0] == "following"
            else f"waiting for the replay from {where}"
        )
        err(f"{liveness.not_responding(seconds)}; still {at} (Ctrl-C to stop)")

    def back() -> None:
        err(f"the daemon is responding again; {doing[0]}")

    after, timeout = liveness.intervals()
    return Pinger(after, timeout, silent, back)


def _point_text(point: Since) -> str:
    if point.seq is not None:
        return f"seq {point.seq}"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(point.ts))


def empty_range(since: Since | None, until: Since | None) -> str | None:
    """Why ``--since``/``--until`` cannot match any event (the end not after the start), or
    None. Said instead of printing nothing and exiting 0, which reads as "nothing happened".
    A seq and a time cannot be compared here: that range is left to the events."""
    if since is None or until is None:
        return None
    if since.seq is not None and until.seq is not None:
        # --since N is "after event N", --until N "up to event N": N..N holds nothing.
        empty = until.seq <= since.seq
    elif since.ts is not None and until.ts is not None:
        empty = until.ts < since.ts
    else:
        return None
    if not empty:
        return None
    return (
        f"--until ({_point_text(until)}) is not after --since ({_point_text(since)}): no event"
        " can be in that range; give the earlier point to --since and the later to --until"
    )


def cmd_events(args: argparse.Namespace) -> int:
    import json

    from harness.cli.common import EXIT_USAGE, fail
    from harness.cli.oneshot import NoDaemon, Refused

    patterns = args.patterns or ["*"]
    since: Since | None = args.since
    until: Since | None = args.until
    # Both parsers (harness/cli/quick_parse.py and argparse) come here: checked once for both.
    if (empty := empty_range(since, until)) is not None:
        return fail(args, EXIT_USAGE, "usage", empty)
    out = sys.stdout.buffer
    # --json without a time filter prints each event line as the daemon sent it (the same
    # bytes ``msgspec.json.encode(event)`` gives), without decoding it: then msgspec, the
    # protocol and the renderer are not even imported.
    by_time = (since is not None and since.ts is not None) or until is not None
    if by_time or not args.json:
        import msgspec

        from harness.cli.output import event_text
        from harness.protocol import Event

        decode = msgspec.json.Decoder(Event).decode

    def kind_of(line: bytes) -> str:
        if line.startswith(EVENT_PREFIX):
            return "event"
        frame = json.loads(line)
        return str(frame.get("type")) if isinstance(frame, dict) else "?"

    def after_until(event: Any) -> bool:
        if until is None:
            return False
        if until.seq is not None:
            return bool(event.seq > until.seq)
        return bool(event.ts > (until.ts or 0))

    # The last event line (or block of them) written: where a resume starts (resume_hint).
    shown = [b""]

    def show(line: bytes, event: Any) -> None:
        shown[0] = line
        if args.json:
            out.write(line + b"\n")
            return
        event = event or decode(line)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.ts))
        text = f"{event.seq:>8} {stamp} {event.event:<24} {event_text(event.data, event.seq)}\n"
        out.write(text.encode())

    started_at = [0]  # the seq the subscription replays after

    def body(conn: Any) -> int:
        try:
            return stream(conn)
        except NoDaemon:
            if getattr(args, "stdout_streaming", False):
                # The stream ended under us (daemon stopped or crashed, link dropped): say
                # where to carry on from, after the failure's words (harness.cli.common.fail).
                args.resume_hint = resume_hint(args, last_seq(shown[0]), started_at[0])
            raise

    def stream(conn: Any) -> int:
        if since is None:
            # The newest --scan events: the head seq comes with the welcome (a round trip
            # before the subscribe, which --since does not wait for).
            start = max(0, conn.welcome["seq"] - args.scan)
        elif since.seq is not None:
            start = since.seq
        else:
            start = 0  # the stream is addressed by seq: replay all, keep those after the time
        doing = ["replaying"]
        # Replaying or following, a frozen daemon is said on stderr and waited for (a ping's
        # answer is a frame like any other: skipped below). The pinger is made while the
        # daemon starts the replay.
        started_at[0] = start
        conn.subscribe(patterns, since=start, keepalive=lambda: _pinger(conn.path, doing))
        # From here stdout is a stream of events: a failure is said on stderr only.
        args.stdout_streaming = True
        # Output is flushed whenever we would wait for the daemon: frames show as they come.
        lines = conn.lines(before_wait=out.flush)
        # With --since each replayed event is printed as it arrives (constant memory);
        # without, only the newest --lines are, as `tail` would.
        backlog: collections.deque[tuple[bytes, Any]] | None = (
            None if since is not None else collections.deque(maxlen=args.lines)
        )
        # --json --since without a time filter: an event line goes straight out (what the
        # general path below does with it too, minus two calls per event).
        passthrough = args.json and not by_time and backlog is None

        def write(block: bytes) -> None:
            out.write(block)
            shown[0] = block

        def replay() -> Iterator[bytes]:
            # With passthrough, runs of event lines are copied out by the connection in
            # whole blocks as they arrive; only the other lines come through here.
            while True:
                if passthrough:
                    conn.copy_lines(EVENT_PREFIX, write, before_wait=out.flush)
                line = next(lines, None)
                if line is None:
                    return
                yield line

        for line in replay():
            if passthrough and line.startswith(EVENT_PREFIX):
                write(line + b"\n")  # one write: stdout may be unbuffered (python -u)
                continue
            kind = kind_of(line)
            if kind == "replayed":
                break
            if kind == "event":
                event = decode(line) if by_time else None
                if event is not None:
                    if since is not None and since.ts is not None and event.ts < since.ts:
                        continue
                    if after_until(event):
                        continue
                if backlog is None:
                    show(line, event)
                else:
                    backlog.append((line, event))
            elif kind == "lagged":
                raise NoDaemon("cut off by the daemon: it could not send fast enough")
            elif kind == "error":  # the replay failed inside the daemon
                raise Refused(json.loads(line))
        else:
            raise NoDaemon("the daemon closed the connection during the replay")
        for line, event in backlog or ():
            show(line, event)
        out.flush()
        if args.follow:
            doing[0] = "following"
            for line in lines:
                kind = kind_of(line)
                if kind == "event":
                    event = decode(line) if until is not None else None
                    if event is not None and after_until(event):
                        break
                    show(line, event)
                elif kind == "lagged":
                    raise NoDaemon("cut off by the daemon: this terminal could not keep up")
                elif _reader_gone(out):
                    # A ping's answer: nothing was printed for a while. A reader that left
                    # (`| head -1`) is otherwise noticed only at the next event's write, and
                    # a quiet daemon then kept this (and the shell's pipeline) waiting.
                    raise BrokenPipeError
            else:
                raise NoDaemon("the daemon closed the connection")
        out.flush()
        return EXIT_OK

    return with_connection(args, body)


_SEQ_AT = EVENT_PREFIX + b',"seq":'


def last_seq(written: bytes) -> int | None:
    """The seq of the last event line in ``written`` (lines as the daemon sends them: the
    seq right after the type; the line's start, since an event's data may hold the same
    bytes), or None."""
    end = len(written.rstrip(b"\n"))
    line = written[written.rfind(b"\n", 0, end) + 1 : end]
    if not line.startswith(_SEQ_AT):
        return None
    digits = line[len(_SEQ_AT) : len(_SEQ_AT) + 20].split(b",", 1)[0]
    return int(digits) if digits.isdigit() else None


def resume_hint(args: argparse.Namespace, seq: int | None, start: int) -> str:
    """Where to carry on after the stream ended: the last event shown, or, none shown, where
    this one started; the same command from there (its connection options, ``--until``, ``-n``
    and patterns too). ``start``: the seq the subscription replayed after."""
    import shlex

    since: Since | None = getattr(args, "since", None)
    until: Since | None = getattr(args, "until", None)
    words = ["harness"]
    for option in ("config", "socket", "host", "context", "remote_harness"):
        if value := getattr(args, option, None):
            words += ["--" + option.replace("_", "-"), str(value)]
    words.append("events")
    if seq is not None:
        words += ["--since", str(seq)]
    elif since is not None:
        # Nothing shown: from the same point, a seq or a time (a time's replay starts at seq 0
        # and keeps the events after it: "--since 0" would show every stored event).
        words += ["--since", _point_word(since) if since.seq is None else str(start)]
    elif getattr(args, "lines", 20) != 20:
        words += ["-n", str(args.lines)]  # no --since, nothing shown: the newest, again
    if until is not None:
        words += ["--until", _point_word(until)]
    if args.follow:
        words.append("-f")
    if args.json:
        words.append("--json")
    words += args.patterns or []
    said = f"the last event shown was seq {seq}" if seq is not None else "no event was shown"
    return f"\n  {said}; to carry on from there: {shlex.join(words)}"


def _reader_gone(out: Any) -> bool:
    """Whether nobody reads ``out`` any more: a pipe whose reading end is closed (poll says
    POLLERR for it; a terminal or a file never says so unless it failed)."""
    import select

    try:
        poll = select.poll()
        poll.register(out.fileno(), 0)  # no events asked: errors and hang-ups only
        return bool(poll.poll(0))
    except (OSError, ValueError):
        return False


def _point_word(point: Since) -> str:
    """``point`` as ``--since``/``--until`` read it back: a seq, or the local time to the
    microsecond (what ``10m`` meant when the command started, not ten minutes before now)."""
    if point.seq is not None:
        return str(point.seq)
    import datetime as dt

    return dt.datetime.fromtimestamp(point.ts).isoformat(timespec="microseconds")
