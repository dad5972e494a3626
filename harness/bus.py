"""The event bus: the daemon-wide seq counter and fan-out of encoded frames to subscribers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Protocol

import msgspec

from harness.protocol import Event, encode

log = logging.getLogger(__name__)

_Token = str | tuple[bool, frozenset[str], tuple[tuple[str, str], ...]] | None
_STAR, _ANY = None, ""  # tokens: a literal character, `?`, `*`, or a `[...]` class


def _parse_glob(pattern: str) -> tuple[_Token, ...]:
    """fnmatch's syntax (``*``, ``?``, ``[seq]``, ``[!seq]``) as a list of tokens. A ``[``
    without its ``]`` is a literal, as in fnmatch."""
    tokens: list[_Token] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            if not tokens or tokens[-1] is not _STAR:  # `**` is `*`
                tokens.append(_STAR)
        elif c == "?":
            tokens.append(_ANY)
        elif c == "[":
            j = i + 1 if i < n and pattern[i] == "!" else i
            if j < n and pattern[j] == "]":
                j += 1  # a `]` first in the class is a member
            end = pattern.find("]", j)
            if end < 0:
                tokens.append("[")
                continue
            negate = pattern[i] == "!"
            body = pattern[i + 1 if negate else i : end]
            if "-" not in body:  # the usual class: a set of characters, built in C
                tokens.append((negate, frozenset(body), ()))
                i = end + 1
                continue
            chars: set[str] = set()
            ranges: list[tuple[str, str]] = []
            k = 0
            while k < len(body):
                if k + 2 < len(body) and body[k + 1] == "-":
                    ranges.append((body[k], body[k + 2]))
                    k += 3
                else:
                    chars.add(body[k])
                    k += 1
            tokens.append((negate, frozenset(chars), tuple(ranges)))
            i = end + 1
        else:
            tokens.append(c)
    return tuple(tokens)


def _one(token: _Token, ch: str) -> bool:
    if token == _ANY:
        return True
    if isinstance(token, str):
        return token == ch
    assert token is not None
    negate, chars, ranges = token
    inside = ch in chars or any(lo <= ch <= hi for lo, hi in ranges)
    return inside != negate


def _glob_match(tokens: tuple[_Token, ...], name: str) -> bool:
    """Greedy matching that backtracks only to the last ``*``: at most len(tokens) x len(name)
    steps, with no regex compiled, cached or kept."""
    t = s = 0
    star_t, star_s = -1, 0
    while s < len(name):
        if t < len(tokens) and tokens[t] is not _STAR and _one(tokens[t], name[s]):
            t += 1
            s += 1
        elif t < len(tokens) and tokens[t] is _STAR:
            star_t, star_s = t, s
            t += 1
        elif star_t >= 0:
            star_s += 1
            t, s = star_t + 1, star_s
        else:
            return False
    while t < len(tokens) and tokens[t] is _STAR:
        t += 1
    return t == len(tokens)


def _split_match(segments: tuple[str, ...], name: str) -> bool:
    """A pattern whose only wildcard is ``*``, split on it: the first piece is a prefix, the last
    a suffix, and the ones between are found in order, leftmost first (str.find, in C)."""
    first, last = segments[0], segments[-1]
    if len(name) < len(first) + len(last) or not name.startswith(first):
        return False
    if not name.endswith(last):
        return False
    pos, end = len(first), len(name) - len(last)
    for piece in segments[1:-1]:
        if piece:
            found = name.find(piece, pos, end)
            if found < 0:
                return False
            pos = found + len(piece)
    return True


class Patterns:
    """Glob patterns over event names (``*:connection``, ``plugin:*``), memoised per name.

    Not ``fnmatch``: it compiles each pattern into a regex kept in process-wide caches, so what
    one client subscribed to would cost memory (and a pathological pattern, time) long after
    it left. Here nothing outlives the subscription. A plain name is a set lookup, a pattern
    with only ``*`` is split once and matched with ``str.find``, and only ``?``/``[...]``
    patterns go through the small token matcher; the protocol's MAX_SUBSCRIBE_PATTERNS and
    MAX_PATTERN_CHARS bound what any of it can cost."""

    __slots__ = ("_exact", "_globs", "_memo", "_splits", "match_all", "patterns")

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(dict.fromkeys(patterns)) or ("*",)
        self.match_all = "*" in self.patterns
        exact: list[str] = []
        splits: list[tuple[str, ...]] = []
        globs: list[tuple[_Token, ...]] = []
        for p in self.patterns:
            if "[" in p or "?" in p:
                globs.append(_parse_glob(p))
            elif "*" in p:
                splits.append(tuple(p.split("*")))
            else:
                exact.append(p)
        self._exact = frozenset(exact)
        self._splits = tuple(splits)
        self._globs = tuple(globs)
        self._memo: dict[str, bool] = {}

    def __call__(self, name: str) -> bool:
        if self.match_all:
            return True
        hit = self._memo.get(name)
        if hit is None:
            if len(self._memo) > 4096:  # event names are few; this only bounds a pathology
                self._memo.clear()
            hit = self._memo[name] = (
                name in self._exact
                or any(_split_match(s, name) for s in self._splits)
                or any(_glob_match(g, name) for g in self._globs)
            )
        return hit


class Subscriber(Protocol):
    patterns: Patterns

    def deliver(self, frame: bytes, event: Event) -> None:
        """Take one event without blocking (queue it, or give up on the subscriber)."""


Write = Callable[[bytes | bytearray], object]


class StreamSubscriber:
    """A subscriber that takes frames already joined: one :meth:`receive` per loop iteration
    with every matching frame published in it, shared by all the subscribers with the same
    patterns. The daemon's socket clients are these: fan-out then costs one encoding per event
    and one ``write`` per client per loop iteration, not one per event.

    The buffer handed over is the bus's no longer: the bus never writes to it again, so it
    may be kept (held during a replay, queued while a transport is paused) without a copy."""

    patterns: Patterns
    group: _Group | None = None  # set by the bus while subscribed

    def receive(self, joined: bytes | bytearray, frames: int) -> None:
        """Take ``frames`` encoded frames joined into one buffer, without blocking; ``frames``
        is -1 (not counted) while the bus's ``count_frames`` is off."""
        raise NotImplementedError

    def direct_write(self) -> Write | None:
        """A callable the bus may hand joined frames to in place of :meth:`receive` (a
        transport's ``write``: one call per client per iteration, as a raw server makes), or
        None. Asked again whenever the subscriber calls :meth:`Bus.redirect`; it must be None
        whenever :meth:`receive` would do anything but write (a replay, a paused transport)."""
        return None


# A group whose frames in one loop iteration reach this many bytes keeps a scratch buffer
# (see _Group); one whose frames fall far below it again gives the scratch up. Above the
# maximum the buffer is fresh again, to bound memory: a scratch costs up to about 6x an
# iteration's frames (under 2 MiB at the maximum).
_SCRATCH_MIN = 16 * 1024
_SCRATCH_MAX = 256 * 1024


class _Group:
    """The stream subscribers with one set of patterns, and the frames pending for them:
    encoded straight into ``buf``, handed over whole at the flush. Frames are counted only when
    someone needs the count (a subscriber on its slow path): a frame is one line, and msgspec
    escapes every newline inside JSON strings, so the newlines in ``buf`` are its frames.

    ``buf[base:]`` holds this iteration's frames while ``pending``. A quiet group has
    ``base == 0`` and hands ``buf`` itself over, taking a new empty one. A busy group (tens of
    kilobytes per iteration) instead keeps one ``buf`` whose first ``base`` bytes are
    never-sent room, hands over a copy of the frames and writes the next iteration's first
    frame at ``base`` again. Why: a bytearray that starts empty reaches 40 KiB through some
    thirty reallocs, and glibc moves it (a copy of all of it so far) whenever the memory after
    it is taken, which in the daemon's heap it was for a third of them (callgrind: 1,049
    moving reallocs per 20,000 events, against 313 in a raw server). CPython shrinks a
    bytearray (a realloc) whenever its size falls under half its allocation, so the room must
    stay at least as large as the frames of one iteration; one copy of the frames per
    iteration then replaces every realloc."""

    __slots__ = ("_plan", "base", "buf", "key", "members", "patterns", "pending", "size")

    def __init__(self, patterns: Patterns) -> None:
        self.key = patterns.patterns
        self.patterns = patterns
        # Insertion-ordered; each member's direct write, or None to go through its receive().
        self.members: dict[StreamSubscriber, Write | None] = {}
        self.size = 0  # len(members), kept so that publish reads an attribute, not calls len()
        self.base = 0
        self.buf = bytearray()
        self.pending = False  # frames in buf[base:] wait for the flush
        self._plan: tuple[tuple[Write, ...], tuple[StreamSubscriber, ...]] | None = None

    def take(self) -> bytearray:
        """This iteration's frames, as a buffer that is never written to again (a transport
        may keep a view of it); the group is left with none pending."""
        self.pending = False
        buf, base = self.buf, self.base
        if base:
            joined = buf[base:]  # a copy; the next iteration's first frame overwrites these
        else:
            joined, self.buf = buf, bytearray()
        size = len(joined)
        if (size >= _SCRATCH_MIN) if not base else (size > base >> 1 or size < base >> 5):
            self._rebase(size)
        return joined

    def _rebase(self, size: int) -> None:
        """Room for two to four times ``size`` bytes of frames, or none when ``size`` is under
        _SCRATCH_MIN or over _SCRATCH_MAX. Twice at least: the buffer's allocation grows to
        1.5x what it holds (msgspec asks that much) and, with CPython's overallocation, the
        room must stay over half of it, or the next iteration's first frame shrinks it."""
        base = 1 << (size.bit_length() + 1) if _SCRATCH_MIN <= size <= _SCRATCH_MAX else 0
        if base != self.base:
            self.base = base
            self.buf = bytearray(base)

    def set(self, member: StreamSubscriber, write: Write | None) -> None:
        self.members[member] = write
        self.size = len(self.members)
        self._plan = None

    def remove(self, member: StreamSubscriber) -> None:
        self.members.pop(member, None)
        self.size = len(self.members)
        self._plan = None

    def plan(self) -> tuple[tuple[Write, ...], tuple[StreamSubscriber, ...]]:
        """The direct writes and the members that go through receive(), as two tuples: built
        again only after a change, so a flush to N clients is N calls and nothing more. Being
        copies, a member that leaves or pauses during a flush changes the next one."""
        if self._plan is None:
            items = self.members.items()
            self._plan = (
                tuple(w for _, w in items if w is not None),
                tuple(m for m, w in items if w is None),
            )
        return self._plan


_MAX_ROUTES = 4096  # event names are few; this only bounds a pathology
_COLD = bytearray()  # the hot lane's buffer while it has none; never written to
# How every event frame starts (msgspec writes the tag, then the fields in order): the hot
# lane's last seq is read back from its last frame (Bus.published_seq).
_SEQ_AT = b'{"type":"event","seq":'


class Bus:
    def __init__(self, last_seq: int = 0) -> None:
        self.last_seq = last_seq  # highest seq assigned
        self._published_seq = last_seq  # see published_seq
        self._subscribers: list[Subscriber] = []  # per-event (in-process) subscribers
        self._groups: dict[tuple[str, ...], _Group] = {}
        # Event name -> the groups and the in-process subscribers whose patterns match it,
        # worked out once per name and forgotten whenever either set changes: publishing does
        # no matching at all.
        self._routes: dict[str, tuple[tuple[_Group, ...], tuple[Subscriber, ...]]] = {}
        # Every name routed so far -> its one group when the route is exactly one group and no
        # in-process subscriber wants the name (the short path of publish: one subscript to
        # the buffer), else None (the wide path). A name not in it is new: it is routed once.
        # The daemon always has in-process subscribers (its live health; metrics), each for
        # some names only: the others, most events, still take the short path.
        self._single: dict[str, _Group | None] = {}
        self._pending: list[_Group] = []  # groups with frames to flush, in order of first frame
        # Whether a flush counts the frames of a joined buffer for the members that take it
        # through receive() (a paused transport, a replay). A count is a scan of the whole
        # buffer (2.2 % of the server's CPU at 10 subscribers on uvloop when they fall behind);
        # the server turns it off while its frame bound cannot bind before its byte bound.
        self.count_frames = True
        self._flush_scheduled = False
        # The same encoding as protocol.encode (a plain msgspec JSON encoder), into a buffer.
        self._encode_into = msgspec.json.Encoder().encode_into
        # The hot lane: the name of the last event that took the short path to a group which
        # still has this iteration's frames pending, that group's buffer and its size. The
        # next event of that name (a flood is mostly one name) is one string compare away
        # from its buffer: no route lookup, no pending check, as a raw server's publish. Only
        # ever set while its group is pending and its route unchanged: whatever flushes the
        # group, changes its members or forgets routes cools it first (_cool).
        self._hot_name: str | None = None
        self._hot_group: _Group | None = None
        self._hot_buf = _COLD
        self._hot_size = 0

    @property
    def published_seq(self) -> int:
        """The seq of the last event published (the highest: seqs only grow). Events on the
        hot lane do not store theirs one by one, as a raw server keeps no such count: while
        a name is hot, the last event published is the last frame in its buffer, and its seq
        is read from there; cooling the lane stores it."""
        if self._hot_group is None:
            return self._published_seq
        return self._hot_seq()

    def _hot_seq(self) -> int:
        group = self._hot_group
        assert group is not None
        buf, base = self._hot_buf, group.base
        end = len(buf) - 1  # the newline that ends the last frame
        start = max(buf.rfind(b"\n", base, end) + 1, base)
        if buf.startswith(_SEQ_AT, start):
            at = start + len(_SEQ_AT)
            return int(buf[at : buf.index(b",", at)])
        return msgspec.json.decode(buf[start:end], type=Event).seq  # not how Event encodes

    def next_seq(self) -> int:
        self.last_seq += 1
        return self.last_seq

    def subscribe(self, subscriber: Subscriber | StreamSubscriber) -> None:
        if not isinstance(subscriber, StreamSubscriber):
            self._subscribers.append(subscriber)
            self._forget_routes()
            return
        group = self._groups.get(subscriber.patterns.patterns)
        if group is None:
            group = self._groups[subscriber.patterns.patterns] = _Group(subscriber.patterns)
            self._forget_routes()
        # Frames already pending were published before this subscriber came: not its own.
        self.flush_group(group)
        group.set(subscriber, subscriber.direct_write())
        subscriber.group = group

    def redirect(self, subscriber: StreamSubscriber) -> None:
        """Ask ``subscriber`` again where its frames go (its :meth:`direct_write` changed)."""
        group = subscriber.group
        if group is not None and subscriber in group.members:
            write = subscriber.direct_write()
            if group.members[subscriber] != write:
                group.set(subscriber, write)

    def unsubscribe(self, subscriber: Subscriber | StreamSubscriber) -> None:
        if isinstance(subscriber, StreamSubscriber):
            group = subscriber.group
            if group is None:
                return
            # What was published while it was subscribed is still its own: deliver it first.
            self.flush_group(group)
            group.remove(subscriber)
            subscriber.group = None
            if not group.members:
                self._groups.pop(group.key, None)
                self._forget_routes()
            return
        try:
            self._subscribers.remove(subscriber)
        except ValueError:
            pass
        self._forget_routes()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers) + sum(len(g.members) for g in self._groups.values())

    def _forget_routes(self) -> None:
        self._routes.clear()
        self._single.clear()
        self._cool()

    def _cool(self) -> None:
        """Forget the hot lane (see __init__), keeping the seq of its last event: the next
        event takes the long way round."""
        if self._hot_group is not None:
            self._published_seq = self._hot_seq()
            self._hot_name = self._hot_group = None
            self._hot_buf = _COLD

    def _route(self, name: str) -> tuple[tuple[_Group, ...], tuple[Subscriber, ...]]:
        if len(self._routes) >= _MAX_ROUTES:
            self._forget_routes()
        groups = tuple(g for g in self._groups.values() if g.patterns(name))
        subs = tuple(sub for sub in self._subscribers if sub.patterns(name))
        route = self._routes[name] = (groups, subs)
        self._single[name] = groups[0] if len(groups) == 1 and not subs else None
        return route

    def _pend(self, group: _Group) -> None:
        """``group`` has its first frame of this iteration: flush it at the end of it."""
        group.pending = True
        self._pending.append(group)
        if self._flush_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): the caller flushes now
            return
        self._flush_scheduled = True
        loop.call_soon(self.flush)

    def publish(self, event: Event) -> int:
        """Deliver to every matching subscriber; returns how many got it. Encodes once.

        Stream subscribers get the frame at the end of this loop iteration, joined with every
        other frame published in it (:meth:`flush`); a subscriber that writes something of its
        own first calls :meth:`flush_group`, so nothing ever overtakes an event.

        Kept to the steps a raw server takes (append the encoded frame to the pending buffer)
        for every event but the first of its name in an iteration: one string compare finds
        the hot lane's buffer. The first one, a new name and the wide routes go elsewhere."""
        if event.event == self._hot_name:
            buf = self._hot_buf
            try:
                self._encode_into(event, buf, -1)
            except BaseException:
                self._failed(event)  # nothing half-encoded is ever sent
                raise
            buf += b"\n"
            return self._hot_size
        return self._publish_short(event)

    def _failed(self, event: Event, *, cut: bool = True) -> None:
        """An event of the hot lane could not be encoded. Its frame is cut off (unless the
        caller knew where it started and cut it already), and its seq still counts as
        published (as on every other path, where it is stored first), so the lane cools with
        it."""
        group = self._hot_group
        assert group is not None
        if cut:
            _cut_partial(self._hot_buf, group.base, event)
        self._hot_name = self._hot_group = None  # cooled; no need to read its last seq
        self._hot_buf = _COLD
        self._published_seq = event.seq

    def _publish_short(self, event: Event) -> int:
        """The route of a name not in the hot lane: one group (the short path, which makes
        the name hot) or the wide path; a name not seen since the groups changed is routed."""
        try:
            group = self._single[event.event]
        except KeyError:  # a name not seen since the groups last changed
            self._route(event.event)
            return self._publish_short(event)
        if group is not None and group is self._hot_group:
            # Another name for the hot lane's group: the same buffer, so this name is hot now
            # (names that take turns in one subscription cost no more than before).
            self._hot_name = event.event
            buf = self._hot_buf
            start = len(buf)
            try:
                self._encode_into(event, buf, -1)
            except BaseException:
                # Where its frame started is known: cut there. Looking for it again would not
                # find it and drop every good frame pending for the subscription.
                del buf[start:]
                self._failed(event, cut=False)
                raise
            buf += b"\n"
            return self._hot_size
        self._cool()  # its seq stored, so the one below is the last
        self._published_seq = event.seq
        if group is None:
            return self._publish_widely(event)
        if not group.pending:
            self._publish_first(group, event)
        else:
            buf = group.buf
            start = len(buf)
            try:
                self._encode_into(event, buf, -1)
            except BaseException:
                del buf[start:]
                raise
            buf += b"\n"
        if group.pending:  # not flushed at once (no running loop): the name is hot
            self._hot_name, self._hot_group = event.event, group
            self._hot_buf, self._hot_size = group.buf, group.size
        return group.size

    def _publish_first(self, group: _Group, event: Event) -> int:
        """The first frame for ``group`` in this loop iteration: the flush is scheduled here
        (or, with no running loop, done before returning)."""
        self._pend(group)
        buf, base = group.buf, group.base
        try:
            # At ``base``: what follows it is the last iteration's frames, already handed over.
            self._encode_into(event, buf, base)
        except BaseException:
            del buf[base:]
            group.pending = False
            raise
        buf += b"\n"
        if not self._flush_scheduled:
            self.flush()
        return group.size

    def _publish_widely(self, event: Event) -> int:
        """Several groups, none, or in-process subscribers: encoded once, then copied."""
        route = self._routes.get(event.event)
        if route is None:  # forgotten since publish looked (a subscriber left meanwhile)
            route = self._route(event.event)
        groups, subs = route
        if not groups and not subs:
            return 0  # nobody listens: not even encoded
        frame = encode(event)
        count = 0
        for group in groups:
            if not group.pending:
                self._pend(group)
                del group.buf[group.base :]  # the last iteration's frames, handed over
            group.buf += frame
            count += group.size
        if self._pending and not self._flush_scheduled:
            self.flush()
        # A tuple, so a copy: a subscriber that overflows unsubscribes itself during delivery.
        for sub in subs:
            sub.deliver(frame, event)
            count += 1
        return count

    def flush(self) -> None:
        """Hand every group its pending frames: one buffer per group, one call per member."""
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        for group in pending:
            self.flush_group(group)

    def flush_group(self, group: _Group) -> None:
        if not group.pending:
            return
        if group is self._hot_group:
            self._cool()  # its buffer is handed over (or written over) below
        # Taken before delivering: a member that leaves meanwhile finds nothing pending, and
        # the buffer handed over is never written to again (a transport may keep a view of it).
        joined = group.take()
        direct, slow = group.plan()
        for write in direct:
            write(joined)
        if slow:
            frames = joined.count(b"\n") if self.count_frames else -1
            for member in slow:
                member.receive(joined, frames)


def _frame_head(event: Event) -> bytes | None:
    """The bytes that every encoding of ``event`` starts with: the tag and the fields before
    its data, as msgspec writes them (tag first, then the fields in order); None if one of
    those fields cannot be encoded."""
    try:
        seq, ts, name = (_head_encoder.encode(v) for v in (event.seq, event.ts, event.event))
    except Exception:
        return None
    return b"".join((_SEQ_AT, seq, b',"ts":', ts, b',"event":', name, b',"data":'))


_head_encoder = msgspec.json.Encoder()


def _cut_partial(buf: bytearray, base: int, event: Event) -> None:
    """Cut off the frame of ``event`` that a failed ``encode_into`` left half-written at the
    end of ``buf`` (whose frames start at ``base``): publishing keeps no length per event to
    cut back to, as a raw server's publish keeps none.

    msgspec leaves the buffer as long as the room it grew it to: the part of the frame that
    it wrote, then whatever that room held before (older frames, newlines and all). So the
    cut is found from the front: the half frame starts a line, as every frame does, and it
    starts as this event's encoding does (:func:`_frame_head`: what it wrote before the data,
    where a plugin's bad value sits), which no complete frame of this iteration does, as
    their seq, time or name differ (one could match only if the same Event were published
    twice in one iteration, the second time with data that no longer encodes)."""
    head = _frame_head(event)
    start, end = base, len(buf)
    while head is not None and start < end:
        if buf.startswith(head, start):
            del buf[start:]
            return
        newline = buf.find(b"\n", start, end)
        if newline < 0:
            break
        start = newline + 1
    # Its seq or time cannot be encoded (never so for the daemon's own events), or msgspec
    # ran out of memory before it wrote its head: where the half frame starts is not known,
    # and every frame of this iteration for this subscription goes rather than a broken one.
    log.error(
        "event seq %r could not be encoded and its frame not be found; %d bytes of frames "
        "for one subscription were dropped",
        event.seq,
        end - base,
    )
    del buf[base:]


class QueueSubscriber:
    """An in-process subscriber with a bounded queue, for tests and tools."""

    def __init__(self, patterns: Iterable[str] = ("*",), maxsize: int = 100_000) -> None:
        self.patterns = Patterns(patterns)
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.dropped = 0

    def deliver(self, frame: bytes, event: Event) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
