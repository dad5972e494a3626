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

from harness.protocol import STATE_GLYPHS, Connection, Health, Part

UNKNOWN_GLYPH = "?"
# How long "reconnected 3 s ago after a 9 ms drop" stays shown after a short drop.
RECENT_DROP_S = 60.0


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
    return conn.latency_ms


def _retry(conn: Connection, now: float) -> str | None:
    """ "retrying in 12 s · attempt 3" while a retry is scheduled."""
    if conn.retry_at is None:
        return f"attempt {conn.attempt}" if conn.attempt else None
    left = conn.retry_at - now
    when = f"retrying in {span(left)}" if left > 0.5 else "retrying now"
    return f"{when} · attempt {conn.attempt}" if conn.attempt else when


def _overdue(health: Health | None, now: float) -> str | None:
    if health is None or health.ack_overdue_since is None:
        return None
    return f"no heartbeat reply for {span(now - health.ack_overdue_since)}"


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


def headline(conn: Connection | None, now: float, health: Health | None = None) -> str:
    """The indicator's first line: a glyph and words (never colour alone)."""
    if conn is None:
        return f"{UNKNOWN_GLYPH} No connection reported yet"
    g = glyph(conn.state)
    if conn.state == "connected":
        text = f"{g} Connected as {conn.username}" if conn.username else f"{g} Connected"
        latency = _latency(conn, health)
        return text + (f" · {latency:.0f} ms" if latency is not None else "")
    if conn.state == "connecting":
        text = f"{g} Connecting"
        if conn.reason:
            text += f": {conn.reason}"
        retry = _retry(conn, now) if conn.retry_at is not None else None
        return text + (f" · {retry}" if retry else "…" if not conn.reason else "")
    if conn.state == "disconnected":
        retry = _retry(conn, now)
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
    conn: Connection | None, now: float, tz: dt.tzinfo | None, health: Health | None = None
) -> list[str]:
    """The indicator: headline, then what else is true now (the cause, a heartbeat warning, a
    recent drop), then since when."""
    lines = [headline(conn, now, health)]
    if conn is None:
        return lines
    if conn.state == "disconnected" and conn.reason:
        lines.append(with_code(conn.reason, conn.code))
    if conn.state == "connected":
        for extra in (_overdue(health, now), _recent_drop(conn, now)):
            if extra:
                lines.append(extra)
    if conn.since:
        age = ago(now - conn.since).removesuffix(" ago")
        lines.append(f"since {clock_time(conn.since, tz)} ({age})")
    return lines


def short(
    conn: Connection | None, now: float, tz: dt.tzinfo | None, health: Health | None = None
) -> str:
    """One table cell: "● connected  since 12:03  Bot#1 · 42 ms". The time comes before the
    detail so that, in a narrow terminal, a long reason is what gets cut."""
    if conn is None:
        return f"{UNKNOWN_GLYPH} no connection reported"
    parts = [f"{glyph(conn.state)} {state_word(conn.state)}"]
    if conn.since:
        parts.append(f"since {clock_time(conn.since, tz)}")
    if conn.state == "connected":
        detail = conn.username or ""
        latency = _latency(conn, health)
        if latency is not None:
            detail += f" · {latency:.0f} ms"
        overdue = _overdue(health, now)
        if overdue:
            detail += f" · {overdue}"
        if detail:
            parts.append(detail.removeprefix(" · "))
    elif conn.state == "disconnected":
        retry = _retry(conn, now)
        if retry:
            parts.append(retry)
        elif conn.reason:
            parts.append(conn.reason)
    elif conn.reason:
        parts.append(conn.reason)
    return "  ".join(parts)


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
        overdue = _overdue(health, now)
        if overdue:
            text += f" · {overdue}"
        if conn.drop_ms is not None:
            text += f" (after a {drop_span(conn.drop_ms)} drop)"
    if conn.reason:
        text += f": {conn.reason}"
    if conn.code and not _names_code(conn.reason, conn.code):
        text += f" (code {conn.code})"
    retry = _retry(conn, now) if conn.state in ("disconnected", "connecting") else None
    if retry:
        text += f" · {retry}"
        if conn.retry_at is not None:
            text += f" (at {clock_time(conn.retry_at, tz, seconds=True)})"
    if conn.since and show_since:
        when = dt.datetime.fromtimestamp(conn.since, tz).strftime("%Y-%m-%d %H:%M:%S")
        text += f" since {when}"
    return text


def next_change(
    conn: Connection | None, now: float, health: Health | None = None, *, short_form: bool = False
) -> float | None:
    """Seconds until ``long`` (or ``short``) would read differently with no new event (a
    countdown ticking, an age crossing a unit, a recent drop fading); None if it is final."""
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
        left = conn.retry_at - now
        # span() rounds up: the text changes when `left` crosses a whole second (or minute).
        unit = 1.0 if left < 90 else 60.0
        times.append((left % unit) or unit)
    if health is not None and health.ack_overdue_since is not None:
        times.append(1.0 - ((now - health.ack_overdue_since) % 1.0))
    return max(0.05, min(times)) if times else None


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


def part_row(part: Part, now: float, tz: dt.tzinfo | None) -> tuple[str, ...]:
    """One part as table cells (PART_COLUMNS): glyph and word, never colour alone."""
    detail = ""
    if part.state in ("disconnected", "connecting") and part.retry_at is not None:
        left = part.retry_at - now
        detail = f"retrying in {span(left)}" if left > 0.5 else "retrying now"
        if part.attempt:
            detail += f" · attempt {part.attempt}"
    if part.reason:
        detail = f"{part.reason}" + (f" · {detail}" if detail else "")
    return (
        part.id,
        f"{glyph(part.state)} {state_word(part.state)}",
        clock_time(part.since, tz, seconds=True) if part.since else "",
        f"{part.latency_ms:.0f} ms" if part.latency_ms is not None else "",
        str(part.guilds) if part.guilds is not None else "",
        detail,
    )


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


def identify_budget(conn: Connection | None, now: float, *, with_reset: bool = True) -> str | None:
    """ "identifies left: 988/1000, resets in 5 h" from a plugin's ``extra.identify_budget``
    (total, remaining, resets_at epoch s); None when the plugin reports none. Without
    ``with_reset`` the countdown is left out: for a title that is not redrawn as it ages."""
    if conn is None:
        return None
    budget = conn.extra.get("identify_budget")
    if not isinstance(budget, dict):
        return None
    try:
        total, remaining = int(budget["total"]), int(budget["remaining"])
        resets_at = float(budget.get("resets_at") or 0.0)
    except (KeyError, TypeError, ValueError):
        return None
    text = f"identifies left: {remaining}/{total}"
    if with_reset and resets_at > now:
        text += f", resets in {span(resets_at - now)}"
    return text
