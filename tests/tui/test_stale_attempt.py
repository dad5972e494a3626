"""An attempt under way is said with its age ("connecting to the gateway (attempt 2, 4 s)"),
counting up from its start while the daemon reports it. With the daemon away nobody reports it:
the attempt has ended one way or another (its handshake times out in 30 s), so an age still
counting up ("attempt 2, 46 s", or hours for a database left by a daemon killed mid-attempt)
says what cannot be true. The last known attempt is said without an age."""

from __future__ import annotations

import time

from harness.config import Config
from harness.protocol import Event
from harness.store import Store
from tests.tui.conftest import make_app, screen_text, until
from tui.widgets.connection_status import ConnectionStatus


async def _killed_mid_attempt(config: Config, started: float) -> None:
    """The database a daemon killed during an attempt under way leaves behind."""
    store = await Store.open(config.database_path)
    try:
        await store.ensure_plugins(["echo"])
        conn = {
            "state": "disconnected",
            "seq": 1,
            "since": started - 5,
            "reason": "no heartbeat acknowledged",
            "attempt": 2,
            "attempt_started": started,
            "attempt_step": "connecting to the gateway",
        }
        await store.append_event(
            Event(seq=1, ts=started, event="echo:connection", data=conn),
            plugin="echo",
            metadata_key="connection",
        )
    finally:
        await store.close()


async def test_an_attempt_last_known_does_not_keep_ageing(config: Config) -> None:
    await _killed_mid_attempt(config, time.time() - 3 * 3600)
    app = make_app(config, plugin="echo")
    async with app.run_test(size=(80, 24)) as pilot:
        indicator = app.screen.query_one(ConnectionStatus)
        await until(pilot, lambda: "last known" in indicator.text)
        headline = indicator.text.splitlines()[0]
        # Before: "? last known: ○ Disconnected — connecting to the gateway (attempt 2, 3 h)".
        assert headline == (
            "? last known: ○ Disconnected — connecting to the gateway (attempt 2)"
        ), indicator.text


def test_a_stale_attempt_books_no_redraw_of_its_own() -> None:
    """Nothing of the stale attempt changes by itself: no redraw is booked for its age (the
    indicator's "since" and "last known" ages book their own, by the minute after a minute)."""
    from harness import render
    from harness.protocol import Connection

    t = 1_700_000_000.0
    conn = Connection(
        state="disconnected",
        seq=3,
        since=t - 7200,
        attempt=2,
        attempt_started=t - 600,
        attempt_step="connecting to the gateway",
    )
    assert render.next_change(conn, t, short_form=True) is not None  # live: the age ticks
    assert render.next_change(conn, t, short_form=True, stale=True) is None


async def test_the_plugins_table_says_a_last_known_attempt_without_an_age(config: Config) -> None:
    await _killed_mid_attempt(config, time.time() - 3 * 3600)
    app = make_app(config)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: "connecting to the gateway" in screen_text(app))
        row = next(line for line in screen_text(app).splitlines() if "echo" in line)
        # Before: "○ disconnected  since 15:37  connecting to the gateway (4 h)".
        assert "connecting to the gateway" in row and " h)" not in row, row


def test_the_fleets_last_known_attempt_has_no_age() -> None:
    """The fleet screen's row of a daemon that is away (``(last known)``) is ``render.short``
    with ``stale``: no attempt age there either (it read "(3 h)" for a stored attempt)."""
    from harness import render
    from harness.protocol import Connection

    t = 1_700_000_000.0
    conn = Connection(
        state="disconnected",
        seq=3,
        since=t - 3 * 3600 - 5,
        attempt=2,
        attempt_started=t - 3 * 3600,
        attempt_step="connecting to the gateway",
    )
    assert render.short(conn, t, None).endswith("connecting to the gateway (3 h) · attempt 2")
    assert render.short(conn, t, None, stale=True).endswith("connecting to the gateway · attempt 2")
