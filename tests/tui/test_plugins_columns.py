"""The plugins table's columns at a width (tui/plugins_columns.py): what gives way first."""

from __future__ import annotations

from rich.cells import cell_len

from harness import render
from harness.protocol import Connection, Health
from harness.render import ShortPieces
from tests.tui.conftest import UTC
from tui.plugins_columns import CONNECTION_MIN, fit_connection, layout

NOW = 1_767_258_000.0
DEMO_ROW = ("discord", "0.1.0", "✔ yes", "running")
CONNECTED = ShortPieces("● connected", "11:42", "HarnessBot#1234", "1 ms")
RETRYING = ShortPieces("○ disconnected", "11:42", health="retrying in 12 s", note="attempt 2")
ERROR = ShortPieces("✖ error", "11:42", detail="login failed: improper token has been passed")


def test_the_full_text_is_short_when_it_fits() -> None:
    conn = Connection(state="connected", since=NOW - 60, username="HarnessBot#1234", latency_ms=7)
    pieces = render.short_pieces(conn, NOW, UTC)
    assert fit_connection(pieces, 200) == render.short(conn, NOW, UTC)
    assert render.short(conn, NOW, UTC) == "● connected  since 08:59  HarnessBot#1234 · 7 ms"
    retry = Connection(state="disconnected", since=NOW, retry_at=NOW + 12, attempt=2)
    assert render.short(retry, NOW, UTC).endswith("retrying in 12 s · attempt 2")


def test_at_80_columns_the_account_name_gives_way_before_time_and_latency() -> None:
    fitted = layout(80, [DEMO_ROW])
    assert fitted.keys == ("name", "version", "enabled", "status", "connection")
    width = fitted.width("connection")
    assert sum(fitted.widths) + 2 * len(fitted.widths) <= 80
    assert fit_connection(CONNECTED, width) == "● connected  since 11:42  HarnessB… · 1 ms"
    assert fit_connection(RETRYING, width) == "○ disconnected  11:42  retrying in 12 s"
    assert fit_connection(ERROR, width).startswith("✖ error  since 11:42  login failed")


def test_at_60_columns_the_version_column_goes_and_the_latency_stays() -> None:
    fitted = layout(60, [DEMO_ROW])
    assert "version" not in fitted.keys
    assert sum(fitted.widths) + 2 * len(fitted.widths) <= 60
    assert fit_connection(CONNECTED, fitted.width("connection")) == "● connected  since 11:42  1 ms"


def test_never_wider_than_its_room() -> None:
    for width in range(1, 90):
        for pieces in (CONNECTED, RETRYING, ERROR, ShortPieces("? no connection reported")):
            assert cell_len(fit_connection(pieces, width)) <= width, (width, pieces)
    for width in (20, 30, 45):
        assert layout(width, [DEMO_ROW]).width("connection") >= CONNECTION_MIN


def test_an_overdue_ack_and_a_countdown_are_said_in_fewer_words_rather_than_cut() -> None:
    """Long words give way to fewer before anything is cut; the full text where it fits."""
    conn = Connection(state="connected", since=NOW - 60, username="HarnessBot#1234", latency_ms=1)
    late = Health(latency_ms=1, ack_overdue_since=NOW - 14)
    pieces = render.short_pieces(conn, NOW, UTC, late)
    assert fit_connection(pieces, 200) == render.short(conn, NOW, UTC, late)
    assert render.short(conn, NOW, UTC, late).endswith("1 ms · no heartbeat reply for 14 s")
    at_80 = layout(80, [DEMO_ROW]).width("connection")
    assert fit_connection(pieces, at_80) == "● connected  08:59  1 ms · no ACK 14 s"
    at_60 = layout(60, [DEMO_ROW]).width("connection")
    assert fit_connection(pieces, at_60) == "● connected  1 ms · no ACK 14 s"
    retry = Connection(state="disconnected", since=NOW, retry_at=NOW + 12, attempt=2)
    assert fit_connection(render.short_pieces(retry, NOW, UTC), at_60) == (
        "○ disconnected  retry in 12 s"
    )
    for width in range(1, 90):
        for p in (pieces, render.short_pieces(retry, NOW, UTC)):
            assert cell_len(fit_connection(p, width)) <= width, (width, p)
