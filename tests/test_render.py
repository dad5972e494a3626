"""harness.render: the words every client uses for a connection, and when they next change."""

from __future__ import annotations

import datetime as dt

from harness import render
from harness.protocol import Connection, Health

UTC = dt.UTC
T = 1_700_000_000.0


def test_connected_shows_name_and_latency_then_a_recent_drop_fades() -> None:
    conn = Connection(
        state="connected", seq=5, since=T, username="Bot#1234", latency_ms=42.2, drop_ms=9.0
    )
    assert render.headline(conn, T + 3) == "● Connected as Bot#1234 · 42 ms"
    lines = render.long(conn, T + 6, UTC)
    assert lines[1] == "reconnected 6 s ago after a 9 ms drop"
    assert "reconnected" not in " ".join(render.long(conn, T + render.RECENT_DROP_S, UTC))
    # The live health wins over the latency stored with the state.
    assert render.headline(conn, T, Health(latency_ms=7.0)).endswith("· 7 ms")


def test_overdue_ack_is_said_and_counts_up() -> None:
    conn = Connection(state="connected", seq=1, since=T, username="B#1")
    health = Health(latency_ms=40.0, ack_overdue_since=T + 100)
    assert "no heartbeat reply for 14 s" in render.long(conn, T + 114, UTC, health)
    assert "no heartbeat reply for 14 s" in render.short(conn, T + 114, UTC, health)
    assert render.next_change(conn, T + 114.25, health, short_form=True) == 0.75


def test_disconnected_counts_down_to_the_next_attempt() -> None:
    conn = Connection(
        state="disconnected",
        seq=2,
        since=T,
        reason="4009 session timed out",
        code=4009,
        attempt=3,
        retry_at=T + 12,
    )
    assert render.headline(conn, T) == "○ Disconnected — retrying in 12 s · attempt 3"
    assert render.long(conn, T, UTC)[1] == "4009 session timed out"  # the code once
    assert render.headline(conn, T + 11.8) == "○ Disconnected — retrying now · attempt 3"
    assert "retrying in 12 s · attempt 3" in render.short(conn, T, UTC)
    line = render.line(conn, T, UTC)
    # The reason names its code already: the CLI says it once (issue 7's "shown twice").
    assert "4009 session timed out · retrying in 12 s · attempt 3 (at" in line
    # The countdown changes at the next whole second; nothing after the retry has passed but
    # the age.
    assert render.next_change(conn, T + 0.25, short_form=True) == 0.75
    assert render.next_change(conn, T + 20, short_form=True) is None


def test_no_connection_and_final_states() -> None:
    assert render.headline(None, T) == "? No connection reported yet"
    assert render.line(None, T) == "-"
    err = Connection(state="error", seq=1, since=T, reason="token rejected: set a new one")
    assert render.short(err, T, UTC).endswith("token rejected: set a new one")
    assert render.next_change(err, T + 4000, short_form=True) is None


def test_spans() -> None:
    assert render.span(0.2) == "1 s"
    assert render.span(89) == "89 s"
    assert render.span(900) == "15 min"
    assert render.drop_span(2300) == "2.3 s"
