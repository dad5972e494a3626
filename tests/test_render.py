"""harness.render: the words every client uses for a connection, and when they next change."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest

from harness import render
from harness.protocol import Connection, Health, Part, PartHealth

UTC = dt.UTC
T = 1_700_000_000.0
STEP = render.STEP_EPSILON


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
    # Just past the second the shown age changes at (15 s -> 16 s), not on it.
    assert render.next_change(conn, T + 114.25, health, short_form=True) == 0.75 + STEP


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
    assert render.next_change(conn, T + 0.25, short_form=True) == 0.75 + STEP
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


def test_span_change_lands_just_past_each_step_of_the_text() -> None:
    """Every value of a countdown and an age, every 0.1 s over 3 h: the booked redraw shows a
    new text, and no text changes before it."""
    for tenths in range(1, 3 * 36000, 7):
        x = tenths / 10
        for growing, sign in ((True, 1), (False, -1)):
            step = render.span_change(x, growing=growing)
            if step is None:
                continue
            after = x + sign * step
            before = x + sign * (step - 2 * STEP)
            assert render.span(after) != render.span(x), (x, growing, step)
            assert render.span(before) == render.span(x), (x, growing, step)
    assert render.span_change(0.0, growing=False) is None


def test_a_parts_overdue_ack_is_on_its_row_and_in_every_form() -> None:
    parts = [
        Part(id="0", state="connected", since=T, latency_ms=40.0),
        Part(id="1", state="connected", since=T, latency_ms=41.0),
        Part(id="2", state="disconnected", since=T, reason="lost", retry_at=T + 130),
    ]
    conn = Connection(
        state="connecting", seq=3, since=T, reason="degraded: 2/3 parts connected", parts=parts
    )
    health = Health(
        ack_overdue_since=T + 90,  # the aggregate: part 2's old link, not connected now
        parts=[
            PartHealth(id="0", latency_ms=40.0),
            PartHealth(id="1", latency_ms=41.0, ack_overdue_since=T + 100),
            PartHealth(id="2", ack_overdue_since=T + 90),
        ],
    )
    now = T + 114
    assert render.parts_overdue(conn, health) == {"1": T + 100}
    assert render.part_row(parts[1], now, UTC, T + 100)[-1] == "no heartbeat reply: 14 s"
    assert render.part_row(parts[0], now, UTC, None)[-1] == ""
    # A part that is down has no link to be late: its row says why it is down.
    assert render.part_row(parts[2], now, UTC, T + 90)[-1] == "retrying in 16 s · lost"
    assert render.part_next_change(parts[1], now + 0.25, T + 100) == 0.75 + STEP
    assert render.part_next_change(parts[0], now, None) is None
    # Degraded, the indicator, the table cell and the CLI line name the late part.
    said = "no heartbeat reply for 14 s (part 1)"
    assert said in render.long(conn, now, UTC, health)
    assert said in render.short(conn, now, UTC, health)
    assert said in render.line(conn, now, UTC, health=health)
    # Every part down: the health says nothing of now.
    down = msgspec.structs.replace(
        conn,
        state="disconnected",
        parts=[msgspec.structs.replace(p, state="disconnected") for p in parts],
    )
    assert "heartbeat" not in render.line(down, now, UTC, health=health)
    # A plugin with parts whose health has no per-part entries: its aggregate is still said.
    whole = Health(ack_overdue_since=T + 100)
    assert "no heartbeat reply for 14 s" in render.line(conn, now, UTC, health=whole)
    assert "(part" not in render.line(conn, now, UTC, health=whole)


def test_the_identify_budgets_reset_is_counted_down_while_new_sessions_wait() -> None:
    budget = {"total": 1000, "remaining": 988, "resets_at": T + 5 * 3600, "floor": 50}
    conn = Connection(state="connected", seq=1, since=T, extra={"identify_budget": budget})
    assert not render.budget_held(conn, T)
    assert render.identify_budget(conn, T) == "identifies left: 988/1000, resets in 5 h"
    held = msgspec.structs.replace(conn, extra={"identify_budget": {**budget, "remaining": 50}})
    assert render.budget_held(held, T)
    assert not render.budget_held(held, T + 5 * 3600)  # the reset has come
    # "5 h" until 4 h 59 min 59 s... is "5 h" down to 4 h, then "4 h".
    assert render.budget_next_change(held, T) == 3600 + STEP
    assert (
        render.identify_budget(held, T + 3600 + STEP) == "identifies left: 50/1000, resets in 4 h"
    )
    assert render.budget_next_change(held, T + 5 * 3600 - 0.5) == 0.5 + STEP
    # A plugin that does not say its floor: the count, no claim that sessions wait.
    old = {k: v for k, v in budget.items() if k != "floor"}
    assert not render.budget_held(
        msgspec.structs.replace(conn, extra={"identify_budget": {**old, "remaining": 1}}), T
    )


def test_an_attempt_under_way_is_said_with_its_age_in_every_form() -> None:
    """Once the wait is over and an attempt has begun, what it does and for how long, counting
    up (not "retrying now" for as long as it hangs); the cause before it stays, as such."""
    conn = Connection(
        state="disconnected",
        seq=9,
        since=T,
        reason="cannot reach the gateway: connection refused",
        attempt=6,
        attempt_started=T + 30,
        attempt_step="connecting to the gateway",
    )
    assert render.long(conn, T + 33.5, UTC) == [
        "○ Disconnected — connecting to the gateway (attempt 6, 3 s)",
        "last failure: cannot reach the gateway: connection refused",
        "since 22:13 (33 s)",
    ]
    assert render.short(conn, T + 33.5, UTC) == (
        "○ disconnected  since 22:13  connecting to the gateway (3 s) · attempt 6"
    )
    assert render.short_pieces(conn, T + 33.5, UTC).brief_health == "trying 3 s"
    assert render.line(conn, T + 33.5, UTC).endswith(
        "· connecting to the gateway (attempt 6, 3 s) (started 22:13:50) since 2023-11-14 22:13:20"
    )
    # The age's next change is booked (3 s -> 4 s, rounded down as "since (33 s)" is),
    # not a countdown's "retrying now" recheck.
    assert render.next_change(conn, T + 33.5, short_form=True) == pytest.approx(0.5 + STEP)
    # A retry scheduled again (the attempt failed) ends it: the countdown is back.
    waiting = msgspec.structs.replace(conn, retry_at=T + 40, attempt=7)
    assert render.headline(waiting, T + 35) == "○ Disconnected — retrying in 5 s · attempt 7"
    part = Part(id="2", state="connecting", since=T, attempt=3, attempt_started=T + 30)
    part = msgspec.structs.replace(part, attempt_step="connecting to the gateway")
    assert render.part_row(part, T + 31.2, UTC)[-1] == "connecting to the gateway (attempt 3, 1 s)"
    assert render.part_next_change(part, T + 31.2) == pytest.approx(0.8 + STEP)
    # Never older than the outage it is part of: the attempt began 0.9 s after the drop.
    late = msgspec.structs.replace(conn, attempt_started=T + 0.9)
    assert render.long(late, T + 6.95, UTC)[0].endswith("(attempt 6, 6 s)")
    assert render.long(late, T + 6.95, UTC)[-1] == "since 22:13 (6 s)"
    # Under a second it is "1 s" (published after a 0.5 s grace), until 2 s.
    assert render.next_change(late, T + 1.2, short_form=True) == pytest.approx(1.7 + STEP)


def test_last_known_latency_is_the_last_heartbeats_or_says_it_is_the_connects() -> None:
    conn = Connection(state="connected", seq=4, since=T, username="Bot#1", latency_ms=12.0)
    beat = Health(latency_ms=40.0, ack_overdue_since=T + 50, heartbeat_interval=41.0)
    kept = render.kept_health(beat)
    assert kept == Health(latency_ms=40.0)  # an overdue ACK's age is of a live link only
    assert render.headline(conn, T + 60, kept, stale=True) == "● Connected as Bot#1 · 40 ms"
    assert render.headline(conn, T + 60, None, stale=True) == (
        "● Connected as Bot#1 · 12 ms at connect"
    )
    assert render.kept_health(Health(ack_overdue_since=T)) is None
    # Live, the stored figure is the fresh one of a link just up: no label.
    assert render.headline(conn, T + 1) == "● Connected as Bot#1 · 12 ms"
