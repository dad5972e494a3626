"""Connection.copy_lines (harness/cli/oneshot.py): the event lines of a replay are passed on in
whole received blocks, byte for byte, and whatever is not an event line is left, in order, for
Connection.lines, however the frames are cut into reads."""

from __future__ import annotations

import random
import socket
import threading

import pytest

from harness.cli.oneshot import MAX_FRAME_BYTES, Connection, TooLarge

PREFIX = b'{"type":"event"'


def event(seq: int, text: str = "x") -> bytes:
    # The data may hold the prefix itself (a nested object) and escaped newlines.
    return PREFIX + b',"seq":%d,"data":{"v":{"type":"event"},"t":"%s\\n"}}' % (seq, text.encode())


def serve(chunks: list[bytes]) -> Connection:
    """A connection whose daemon sends the welcome, then ``chunks`` one write each, then
    closes (a socket pair: the server's side written from a thread)."""
    ours, theirs = socket.socketpair()

    def daemon() -> None:
        with theirs:
            theirs.recv(4096)  # the hello
            theirs.sendall(b'{"type":"welcome","protocol":1,"server":"t","seq":0,"pid":1}\n')
            for chunk in chunks:
                theirs.sendall(chunk)

    threading.Thread(target=daemon, daemon=True).start()
    conn = Connection("pair", client="test", sock=ours)
    assert conn.welcome["type"] == "welcome"
    return conn


def run(stream: bytes, cuts: list[int]) -> tuple[bytes, list[bytes]]:
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    conn = serve([c for c in chunks if c])
    out = bytearray()
    rest: list[bytes] = []
    with conn:
        lines = conn.lines()
        while True:  # as harness events does: copy, then one other line, until the end
            conn.copy_lines(PREFIX, out.extend)
            line = next(lines, None)
            if line is None:
                break
            rest.append(line)
    return bytes(out), rest


def test_event_lines_are_copied_and_the_rest_kept_in_order_however_it_is_cut() -> None:
    events = [event(i, "é" * (i % 7)) for i in range(200)]
    other = [b'{"type":"replayed","id":1,"count":100}', b'{"type":"ack","id":2,"seq":5}']
    stream = b"".join(line + b"\n" for line in events[:100])
    stream += other[0] + b"\n" + b"\n".join(events[100:150]) + b"\n"
    stream += other[1] + b"\n" + b"\n".join(events[150:]) + b"\n"
    expected = b"".join(line + b"\n" for line in events)
    rng = random.Random(10)
    for _ in range(40):
        cuts = sorted(rng.sample(range(1, len(stream)), rng.randint(0, 60)))
        out, rest = run(stream, cuts)
        assert out == expected and rest == other, cuts
    out, rest = run(stream, list(range(1, len(stream))))  # one byte at a time
    assert out == expected and rest == other


def test_a_frame_over_the_limit_is_refused_by_copy_lines_too() -> None:
    conn = serve([event(1) + b"\n" + PREFIX + b"x" * (MAX_FRAME_BYTES + 10)])
    out = bytearray()
    with conn, pytest.raises(TooLarge):
        conn.copy_lines(PREFIX, out.extend)
    assert out == event(1) + b"\n"
