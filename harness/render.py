"""A connection in words: the one place that says what a ``Connection`` (and its live
``Health``) means to a reader, in a long form (the indicator), a short form (a table cell) and a
line (the CLI), so every client says the same thing as states grow.

Every function takes ``now`` (epoch seconds) instead of reading a clock, so that callers decide
when to redraw: ``next_change`` says when the text would next read differently."""

from __future__ import annotations

import datetime as dt
import math
import re

import msgspec

from harness.protocol import (
    STATE_GLYPHS,
    Connection,
    Health,
    IdentifyBudget,
    Part,
    keeps_health,
)

UNKNOWN_GLYPH = "?"
# How long "reconnected 3 s ago after a 9 ms drop" stays shown after a short drop.
RECENT_DROP_S = 60.0
# A redraw booked for the moment a text changes lands this far past it, so the new text is drawn.
STEP_EPSILON = 0.01


def glyph(state: str) -> str:
    return STATE_GLYPHS.get(state, UNKNOWN_GLYPH)


def state_word(state: str) -> str:
    return state.replace("_", " ")


def clock_time(ts: float, tz: dt.tzinfo | None, *, seconds: bool = False) -> str:
    """HH:MM (or HH:MM:SS) in ``tz`` (None: the local zone)."""
    return dt.datetime.fromtimestamp(ts, tz).strftime("%H:%M:%S" if seconds else "%H:%M")


def ago(seconds: float) -> str:
    """A short human age: "just now", "42 s ago", "3 min ago", "5 h ago", "2 d ago"."""
    s = max(0.0, seconds)
    if s < 5:
        return "just now"
    if s < 60:
        return f"{int(s)} s ago"
    if s < 3600:
        return f"{int(s // 60)} min ago"
    if s < 86400:
        return f"{int(s // 3600)} h ago"
    return f"{int(s // 86400)} d ago"


def span(seconds: float) -> str:
    """A duration to come or gone: "12 s", "3 min", "2 h" (whole units, rounded up)."""
    s = max(0, math.ceil(seconds))
    if s < 90:
        return f"{s} s"
    if s < 5400:
        return f"{math.ceil(s / 60)} min"
    return f"{math.ceil(s / 3600)} h"


def span_change(seconds: float, *, growing: bool) -> float | None:
    """Seconds until ``span(seconds)`` reads differently, as ``seconds`` grows (an age) or
    shrinks (a countdown); None for a countdown at its end. Exact at every unit ("89 s" ->
    "2 min" -> "90 min" -> "2 h"), so a redraw booked for it is never one that changes nothing."""
    s = max(0, math.ceil(seconds))
    if growing:
        # The text is a function of s = ceil(seconds): it stays while s <= top, the last s
        # that reads the same (the end of this unit, or of this form: 89 s, 90 min).
        if s < 90:
            top = s
        elif s < 5400:
            top = min(60 * math.ceil(s / 60), 5399)
        else:
            top = 3600 * math.ceil(s / 3600)
        return max(0.0, top - seconds) + STEP_EPSILON
    if s <= 0:
        return None
    if s < 90:
        below = s - 1.0
    elif s < 5400:
        below = max(60.0 * (math.ceil(s / 60) - 1), 89.0)
    else:
        below = max(3600.0 * (math.ceil(s / 3600) - 1), 5399.0)
    return max(0.0, seconds - below) + STEP_EPSILON


def drop_span(ms: float) -> str:
    """How long a drop lasted: "9 ms", "2.3 s", "4 min"."""
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    return span(ms / 1000)


def _latency(conn: Connection, health: Health | None) -> float | None:
    if health is not None and health.latency_ms is not None:
        return health.latency_ms
    if health is not None and health.ack_overdue_since is not None:
        # A beat unanswered: no round trip now. The one stored with the state (measured when
        # the link came up) is not shown as current; the overdue words say what is.
        return None
    return conn.latency_ms


def under_way(conn: Connection | Part) -> bool:
    """Whether an attempt is under way (its wait over, no outcome yet): ``attempt_started``
    and no retry scheduled."""
    return conn.attempt_started is not None and conn.retry_at is None


def _attempt_age(conn: Connection | Part, now: float) -> str:
    # Rounded down, as the outage's "since 12:03 (6 s)" beside it (``ago``): rounded up it read
    # "(attempt 1, 7 s)" above "(6 s)" for an attempt that began after the outage did.
    age = max(0.0, now - (conn.attempt_started or now))
    if age < 60:
        return f"{max(1, int(age))} s"
    return ago(age).removesuffix(" ago")


def attempt_text(conn: Connection | Part, now: float, *, stale: bool = False) -> str:
    """The attempt under way: "connecting to the gateway (attempt 6, 4 s)", the age counting
    up from its start. ``stale`` (the daemon away): no age, "connecting to the gateway
    (attempt 6)": nobody reports the attempt, which has ended one way or another since (a
    handshake times out), so an age still counting up would say what cannot be true."""
    step = conn.attempt_step or "attempting to connect"
    if stale:
        return f"{step} (attempt {conn.attempt})" if conn.attempt else step
    n = f"attempt {conn.attempt}, " if conn.attempt else ""
    return f"{step} ({n}{_attempt_age(conn, now)})"


def kept_health(health: Health | None) -> Health | None:
    """What of a plugin's live health still holds once the daemon is away: the round trip the
    last heartbeat measured, as last known. An overdue ACK's age counts on a live link only."""
    if health is None or health.latency_ms is None:
        return None
    return Health(latency_ms=health.latency_ms)


def _latency_words(conn: Connection, health: Health | None, *, stale: bool) -> str:
    """ " · 12 ms", or nothing. ``stale`` (the daemon away): a figure with no live health
    behind it is the one measured when the link came up, and says so (" · 12 ms at connect")
    beside the last heartbeat's, which needs no label."""
    latency = _latency(conn, health)
    if latency is None:
        return ""
    measured = health is not None and health.latency_ms is not None
    return f" · {latency:.0f} ms" + (" at connect" if stale and not measured else "")


def _retry(conn: Connection, now: float, *, brief: bool = False, stale: bool = False) -> str | None:
    """ "retrying in 12 s · attempt 3" while a retry is scheduled, the attempt under way once
    it has begun ("connecting to the gateway (attempt 3, 4 s)"); ``brief``: "retry in 12 s
    · attempt 3", for a narrow table."""
    if under_way(conn):
        return attempt_text(conn, now, stale=stale)
    if conn.retry_at is None:
        return f"attempt {conn.attempt}" if conn.attempt else None
    left = conn.retry_at - now
    verb = "retry" if brief else "retrying"
    when = f"{verb} in {span(left)}" if left > 0.5 else f"{verb} now"
    return f"{when} · attempt {conn.attempt}" if conn.attempt else when


def parts_overdue(conn: Connection | None, health: Health | None) -> dict[str, float]:
    """Each connected part whose heartbeat ACK is overdue, by id: since when (epoch s), from
    the live health's ``parts``. A part that is not connected has no live link to be late."""
    if conn is None or health is None or not health.parts:
        return {}
    late = {h.id: h.ack_overdue_since for h in health.parts if h.ack_overdue_since is not None}
    return {p.id: late[p.id] for p in conn.parts if p.state == "connected" and p.id in late}


def _overdue_since(conn: Connection, health: Health | None) -> tuple[float, list[str]] | None:
    """When the oldest heartbeat still waiting for its ACK was sent, and which parts wait (none
    for a single connection); None when no ACK is overdue or the health says nothing of now."""
    if health is None or not keeps_health(conn.state, (p.state for p in conn.parts)):
        return None
    if conn.parts and health.parts:
        late = parts_overdue(conn, health)
        return (min(late.values()), list(late)) if late else None
    # A single connection, or a plugin whose health has no per-part entries: the aggregate.
    if health.ack_overdue_since is None:
        return None
    return health.ack_overdue_since, []


def _overdue(
    conn: Connection, health: Health | None, now: float, *, brief: bool = False
) -> str | None:
    """ "no heartbeat reply for 14 s", and for a connection of parts which: "(part 2)";
    ``brief``: "no ACK 14 s (part 2)", for a narrow table."""
    found = _overdue_since(conn, health)
    if found is None:
        return None
    since, ids = found
    late = span(now - since)
    text = f"no ACK {late}" if brief else f"no heartbeat reply for {late}"
    if ids:
        named = ", ".join(ids[:3]) + (f" +{len(ids) - 3}" if len(ids) > 3 else "")
        text += f" ({'part' if len(ids) == 1 else 'parts'} {named})"
    return text


def _names_code(reason: str | None, code: int) -> bool:
    """Whether a reason already says its code ("token rejected (4004): …", "4009 session timed
    out"): then " (code 4004)" after it would say it twice."""
    return reason is not None and re.search(rf"(?<!\d){code}(?!\d)", reason) is not None


def with_code(reason: str | None, code: int | None) -> str:
    """A cause with its code, each said once: "session timed out (code 4009)", but "4009
    session timed out" as it is. The one rule for every form (long, line)."""
    text = reason or ""
    if code and not _names_code(reason, code):
        text += f" (code {code})" if text else f"code {code}"
    return text


def _recent_drop(conn: Connection, now: float) -> str | None:
    if conn.state != "connected" or conn.drop_ms is None or now - conn.since >= RECENT_DROP_S:
        return None
    return f"reconnected {ago(now - conn.since)} after a {drop_span(conn.drop_ms)} drop"


def headline(
    conn: Connection | None, now: float, health: Health | None = None, *, stale: bool = False
) -> str:
    """The indicator's first line: a glyph and words (never colour alone). ``stale``: the
    daemon is away, ``health`` is what was last heard (``kept_health``)."""
    if conn is None:
        return f"{UNKNOWN_GLYPH} No connection reported yet"
    g = glyph(conn.state)
    if conn.state == "connected":
        text = f"{g} Connected as {conn.username}" if conn.username else f"{g} Connected"
        return text + _latency_words(conn, health, stale=stale)
    if conn.state == "connecting":
        text = f"{g} Connecting"
        if conn.reason:
            text += f": {conn.reason}"
        waiting = conn.retry_at is not None or under_way(conn)
        retry = _retry(conn, now, stale=stale) if waiting else None
        return text + (f" · {retry}" if retry else "…" if not conn.reason else "")
    if conn.state == "disconnected":
        retry = _retry(conn, now, stale=stale)
        return f"{g} Disconnected — {retry}" if retry else f"{g} Disconnected"
    if conn.state == "error":
        return f"{g} Error: {conn.reason or 'unknown'}"
    if conn.state == "stopped":
        return f"{g} Stopped" + (f" — {conn.reason}" if conn.reason else "")
    if conn.state == "not_configured":
        return f"{g} Not configured" + (f" — {conn.reason}" if conn.reason else "")
    return f"{UNKNOWN_GLYPH} Unknown state {conn.state!r}"


def last_known(headline_text: str) -> str:
    """A headline that is no longer known to be true (the daemon is offline or not
    responding): "? last known: ● Connected as Bot#1"."""
    return f"{UNKNOWN_GLYPH} last known: {headline_text}"


def long(
    conn: Connection | None,
    now: float,
    tz: dt.tzinfo | None,
    health: Health | None = None,
    *,
    stale: bool = False,
) -> list[str]:
    """The indicator: headline, then what else is true now (the cause, a heartbeat warning, a
    recent drop), then since when. ``stale``: as ``headline``'s."""
    lines = [headline(conn, now, health, stale=stale)]
    if conn is None:
        return lines
    if conn.state == "disconnected" and conn.reason:
        cause = with_code(conn.reason, conn.code)
        # While an attempt is under way the cause is the one before it, not news of it.
        lines.append(f"last failure: {cause}" if under_way(conn) else cause)
    # An overdue ACK also while a connection of parts is degraded: the parts still up have it.
    for extra in (_overdue(conn, health, now), _recent_drop(conn, now)):
        if extra:
            lines.append(extra)
    if conn.since:
        age = ago(now - conn.since).removesuffix(" ago")
        lines.append(f"since {clock_time(conn.since, tz)} ({age})")
    return lines


class ShortPieces(msgspec.Struct, frozen=True):
    """A table cell's pieces (``short`` joins them), so a narrow table can drop or elide the
    least important first (tui/plugins_columns.py): ``state`` "● connected", ``since`` the
    clock time, ``who`` the account connected as, ``health`` "42 ms" and an overdue ACK, or
    the retry countdown, ``note`` the attempt, ``detail`` the reason. ``brief_health``: the
    health in fewer words ("no ACK 14 s", "retry in 12 s") for a table too narrow for them
    whole, or "" when there are none fewer."""

    state: str
    since: str = ""
    who: str = ""
    health: str = ""
    note: str = ""
    detail: str = ""
    brief_health: str = ""


def short_pieces(
    conn: Connection | None,
    now: float,
    tz: dt.tzinfo | None,
    health: Health | None = None,
    *,
    stale: bool = False,
) -> ShortPieces:
    """``short``'s text, in pieces. ``stale``: the daemon is away (an attempt under way is
    said without an age, as ``attempt_text`` says why)."""
    if conn is None:
        return ShortPieces(f"{UNKNOWN_GLYPH} no connection reported")
    state = f"{glyph(conn.state)} {state_word(conn.state)}"
    since = clock_time(conn.since, tz) if conn.since else ""
    if conn.state == "connected":
        latency = _latency(conn, health)
        live = [f"{latency:.0f} ms"] if latency is not None else []
        if overdue := _overdue(conn, health, now):
            brief = " · ".join([*live, _overdue(conn, health, now, brief=True) or ""])
            live.append(overdue)
            return ShortPieces(
                state, since, conn.username or "", " · ".join(live), brief_health=brief
            )
        return ShortPieces(state, since, conn.username or "", " · ".join(live))
    if overdue := _overdue(conn, health, now):  # degraded: before the reason, which is long
        brief = _overdue(conn, health, now, brief=True) or ""
        return ShortPieces(
            state, since, health=overdue, detail=conn.reason or "", brief_health=brief
        )
    if conn.state in ("disconnected", "connecting") and under_way(conn):
        # "connecting to the gateway (4 s) · attempt 6"; narrow: "trying 4 s · attempt 6"
        step = conn.attempt_step or "attempting to connect"
        age = _attempt_age(conn, now)
        return ShortPieces(
            state,
            since,
            health=step if stale else f"{step} ({age})",
            note=f"attempt {conn.attempt}" if conn.attempt else "",
            detail=(conn.reason or "") if conn.state == "connecting" else "",
            brief_health="trying" if stale else f"trying {age}",
        )
    if conn.state == "disconnected":
        if conn.retry_at is not None or conn.attempt:  # _retry's "retrying in 3 s · attempt 2"
            retry, _, attempt = (_retry(conn, now) or "").partition(" · ")
            brief = (_retry(conn, now, brief=True) or "").partition(" · ")[0]
            return ShortPieces(
                state, since, health=retry, note=attempt, brief_health=brief * (brief != retry)
            )
        return ShortPieces(state, since, detail=conn.reason or "")
    return ShortPieces(state, since, detail=conn.reason or "")


def join_short(p: ShortPieces, *, since_word: bool = True) -> str:
    """The cell's text from its pieces: "● connected  since 12:03  Bot#1 · 42 ms"."""
    parts = [p.state]
    if p.since:
        parts.append(f"since {p.since}" if since_word else p.since)
    if p.who or p.health or p.note:
        parts.append(" · ".join(x for x in (p.who, p.health, p.note) if x))
    if p.detail:
        parts.append(p.detail)
    return "  ".join(parts)


def short(
    conn: Connection | None,
    now: float,
    tz: dt.tzinfo | None,
    health: Health | None = None,
    *,
    stale: bool = False,
) -> str:
    """One table cell: "● connected  since 12:03  Bot#1 · 42 ms". The time comes before the
    detail so that, in a narrow terminal, a long reason is what gets cut. ``stale``: as
    ``short_pieces``'."""
    return join_short(short_pieces(conn, now, tz, health, stale=stale))


def line(
    conn: Connection | None,
    now: float,
    tz: dt.tzinfo | None = None,
    *,
    show_since: bool = True,
    health: Health | None = None,
) -> str:
    """The CLI's line: everything, with absolute times, e.g. ``○ disconnected: session timed
    out (code 4009) · retrying in 3 s · attempt 2 (at 12:03:07) since 2026-11-26 12:03:01``.
    ``health``: the live heartbeat health the daemon last had (the latency, an overdue ACK in
    the indicator's words)."""
    if conn is None:
        return "-"
    text = f"{glyph(conn.state)} {state_word(conn.state)}"
    if conn.state == "connected":
        if conn.username:
            text += f" as {conn.username}"
        latency = _latency(conn, health)
        if latency is not None:
            text += f" · {latency:.0f} ms"
        overdue = _overdue(conn, health, now)
        if overdue:
            text += f" · {overdue}"
        if conn.drop_ms is not None:
            text += f" (after a {drop_span(conn.drop_ms)} drop)"
    if conn.reason:
        text += f": {conn.reason}"
    if conn.code and not _names_code(conn.reason, conn.code):
        text += f" (code {conn.code})"
    if conn.state != "connected" and (overdue := _overdue(conn, health, now)):
        text += f" · {overdue}"  # degraded: the parts still connected may be late too
    retry = _retry(conn, now) if conn.state in ("disconnected", "connecting") else None
    if retry:
        text += f" · {retry}"
        if conn.retry_at is not None:
            text += f" (at {clock_time(conn.retry_at, tz, seconds=True)})"
        elif under_way(conn) and conn.attempt_started is not None:
            text += f" (started {clock_time(conn.attempt_started, tz, seconds=True)})"
    if conn.since and show_since:
        when = dt.datetime.fromtimestamp(conn.since, tz).strftime("%Y-%m-%d %H:%M:%S")
        text += f" since {when}"
    return text


def next_change(
    conn: Connection | None,
    now: float,
    health: Health | None = None,
    *,
    short_form: bool = False,
    stale: bool = False,
) -> float | None:
    """Seconds until ``long`` (or ``short``) would read differently with no new event (a
    countdown ticking, an age crossing a unit, a recent drop fading); None if it is final.
    ``stale``: as ``long``'s (an attempt under way has no age then)."""
    if conn is None:
        return None
    times: list[float] = []
    if conn.since and not short_form:
        times.append(_age_step(now - conn.since))
        if conn.drop_ms is not None and conn.state == "connected":
            fade = conn.since + RECENT_DROP_S - now
            if fade > 0:
                times.append(fade)
    if conn.retry_at is not None and conn.retry_at > now:
        times.append(_countdown_change(conn.retry_at - now))
    if under_way(conn) and conn.state in ("disconnected", "connecting") and not stale:
        times.append(_attempt_change(conn, now))
    overdue = _overdue_since(conn, health)
    if overdue is not None:
        times.append(span_change(now - overdue[0], growing=True) or 1.0)
    return max(0.05, min(times)) if times else None


def _attempt_change(conn: Connection | Part, now: float) -> float:
    """Seconds until the age of the attempt under way (``_attempt_age``) reads differently."""
    age = max(0.0, now - (conn.attempt_started or now))
    if age < 60:
        return max(2.0, math.floor(age) + 1.0) - age + STEP_EPSILON  # "1 s" until 2 s
    return _age_step(age)


def _countdown_change(left: float) -> float:
    """Seconds until "retrying in {span(left)}" (or "retrying now" under 0.5 s) changes."""
    if left <= 0.5:
        return 1.0  # "retrying now": final until a new value comes; a slow recheck at most
    step = span_change(left, growing=False) or 1.0
    return min(step, left - 0.5 + STEP_EPSILON)


def _age_step(age: float) -> float:
    """Seconds until ``ago(age)`` reads differently."""
    age = max(0.0, age)
    if age < 5:
        return 5 - age
    if age < 60:
        return 1 - (age % 1)
    if age < 3600:
        return 60 - (age % 60)
    if age < 86400:
        return 3600 - (age % 3600)
    return 86400 - (age % 86400)


# -- parts (a connection of several: a Discord bot's shards) -----------------------------------


def parts_summary(conn: Connection | None) -> str | None:
    """ "3/4 parts connected · 1 disconnected" for a connection with parts; None without."""
    if conn is None or not conn.parts:
        return None
    counts: dict[str, int] = {}
    for part in conn.parts:
        counts[part.state] = counts.get(part.state, 0) + 1
    up = counts.pop("connected", 0)
    text = f"{up}/{len(conn.parts)} parts connected"
    rest = [f"{n} {state_word(s)}" for s, n in sorted(counts.items())]
    return text + (" · " + ", ".join(rest) if rest else "")


PART_COLUMNS = ("part", "state", "since", "latency", "guilds", "detail")


def part_row(
    part: Part,
    now: float,
    tz: dt.tzinfo | None,
    overdue_since: float | None = None,
    *,
    stale: bool = False,
) -> tuple[str, ...]:
    """One part as table cells (PART_COLUMNS): glyph and word, never colour alone.
    ``overdue_since``: when the heartbeat this connected part still waits an ACK for was sent
    (``parts_overdue``); the detail then says so, with its age ("no heartbeat reply: 14 s")."""
    detail = ""
    if part.state in ("disconnected", "connecting") and under_way(part):
        detail = attempt_text(part, now, stale=stale)  # stale: no age (the daemon is away)
    elif part.state in ("disconnected", "connecting") and part.retry_at is not None:
        left = part.retry_at - now
        detail = f"retrying in {span(left)}" if left > 0.5 else "retrying now"
        if part.attempt:
            detail += f" · attempt {part.attempt}"
    if part.reason:
        # What happens next first, the cause after it: the detail column is cut at the right,
        # and a reason first hid the countdown at 80 and 100 columns ("4000 unknown error · r").
        detail = (f"{detail} · " if detail else "") + part.reason
    if part.state == "connected" and overdue_since is not None:
        # Short, with the age in it, so the table's detail column holds it whole at 80
        # columns (an ACK is late for at most one heartbeat interval: "41 s").
        late = f"no heartbeat reply: {span(now - overdue_since)}"
        detail = late + (f" · {detail}" if detail else "")
    return (
        part.id,
        f"{glyph(part.state)} {state_word(part.state)}",
        clock_time(part.since, tz, seconds=True) if part.since else "",
        f"{part.latency_ms:.0f} ms" if part.latency_ms is not None else "",
        str(part.guilds) if part.guilds is not None else "",
        detail,
    )


def part_next_change(
    part: Part, now: float, overdue_since: float | None = None, *, stale: bool = False
) -> float | None:
    """Seconds until ``part_row`` would read differently with no new event (its countdown,
    its attempt's age or its overdue ACK's age); None if it is final."""
    times = []
    if part.state in ("disconnected", "connecting") and under_way(part) and not stale:
        times.append(_attempt_change(part, now))
    if part.state in ("disconnected", "connecting") and part.retry_at is not None:
        if part.retry_at - now > 0.5:
            times.append(_countdown_change(part.retry_at - now))
    if part.state == "connected" and overdue_since is not None:
        times.append(span_change(now - overdue_since, growing=True) or 1.0)
    return max(0.05, min(times)) if times else None


def live_parts(conn: Connection | None, health: Health | None) -> list[Part]:
    """The connection's parts with each connected part's latency taken from the live
    ``{plugin}:health`` (its ``parts``) when there is one: the stored part keeps the round-trip
    of the moment it connected, the health event the latest."""
    parts = list(conn.parts) if conn is not None else []
    if health is None or not health.parts:
        return parts
    live = {h.id: h.latency_ms for h in health.parts if h.latency_ms is not None}
    return [
        msgspec.structs.replace(p, latency_ms=live[p.id])
        if p.state == "connected" and p.id in live
        else p
        for p in parts
    ]


def budget_of(conn: Connection | None) -> IdentifyBudget | None:
    """The connection's identify budget, or None when the plugin reports none (or a shape
    that does not fit)."""
    raw = conn.extra.get("identify_budget") if conn is not None else None
    if not isinstance(raw, dict):
        return None
    try:
        return msgspec.convert(raw, IdentifyBudget, strict=False)
    except msgspec.ValidationError:
        return None


def budget_held(conn: Connection | None, now: float) -> bool:
    """Whether new sessions wait for the budget's reset: it is at its floor, the reset to come."""
    b = budget_of(conn)
    return b is not None and b.floor is not None and b.remaining <= b.floor and b.resets_at > now


def identify_budget(conn: Connection | None, now: float, *, with_reset: bool = True) -> str | None:
    """ "identifies left: 988/1000, resets in 5 h" from a plugin's ``extra.identify_budget``;
    None when the plugin reports none. Without ``with_reset`` the countdown is left out: for a
    place that redraws it only while new sessions wait for it (``budget_held``)."""
    b = budget_of(conn)
    if b is None:
        return None
    text = f"identifies left: {b.remaining}/{b.total}"
    if with_reset and b.resets_at > now:
        text += f", resets in {span(b.resets_at - now)}"
    return text


def budget_next_change(conn: Connection | None, now: float) -> float | None:
    """Seconds until the "resets in" of ``identify_budget`` reads differently; None when there
    is no reset to come."""
    b = budget_of(conn)
    if b is None or b.resets_at <= now:
        return None
    # At the reset the countdown goes: the text changes then too.
    return span_change(b.resets_at - now, growing=False) or (b.resets_at - now + STEP_EPSILON)
