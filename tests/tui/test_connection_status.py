"""The connection indicator: live updates, the seq rule against races, offline and recovery."""

from __future__ import annotations

import time
from typing import Any

import msgspec
import pytest
from msgspec import to_builtins
from textual.message import Message

from harness import liveness
from harness.client import Client
from harness.config import Config
from harness.protocol import Connection, Event
from tests.conftest import StartDaemon
from tests.sample_plugins import Echo
from tests.tui.conftest import make_app, open_settings, screen_text, until
from tui.widgets.connection_status import ConnectionStatus


async def test_live_change_reaches_indicator(start_daemon: StartDaemon, configured: Config) -> None:
    """A settings change restarts echo under a new name; the indicator follows live."""
    await start_daemon(cfg=configured)
    app = make_app(configured, plugin="echo")
    async with app.run_test(size=(100, 30)) as pilot:
        status = app.screen.query_one(ConnectionStatus)
        await until(pilot, lambda: "Connected as EchoBot#0001" in status.text)
        async with await Client.connect(configured.socket_path) as other:
            await other.request("plugins.update_settings", name="echo", settings={"prefix": "Live"})
        await until(pilot, lambda: "Connected as LiveBot#0001" in status.text)
        assert app.stream.events_received > 0  # it came over the stream, not a re-seed
        assert app.stream.seeds == 1


async def test_event_older_than_seed_is_ignored(
    start_daemon: StartDaemon, configured: Config
) -> None:
    """Events published between the subscribe and the seed read are both queued on the
    stream and already in the seed. The seed wins; the queued copies are older or equal and
    must change nothing — through the real stream path and on the widget directly."""
    await start_daemon(cfg=configured)
    raced = False

    async def race() -> None:
        # Runs inside the stream worker after subscribing, before reading SQLite.
        nonlocal raced
        if raced:
            return
        raced = True
        async with await Client.connect(configured.socket_path) as other:
            # Returns once echo has restarted: stopped, connecting, connected are all stored
            # and published to our (already subscribed) stream by now.
            await other.request("plugins.update_settings", name="echo", settings={"prefix": "Race"})

    messages: list[Message] = []
    app = make_app(configured, plugin="echo", before_seed=race)
    async with app.run_test(size=(100, 30), message_hook=messages.append) as pilot:
        status = app.screen.query_one(ConnectionStatus)
        await until(pilot, lambda: "Connected as RaceBot#0001" in status.text)
        # The queued stopped / connecting / connected events were all at or below the seed.
        await until(pilot, lambda: app.stream.stale_ignored >= 3)
        # The widget shows a value as it applies it; its Changed message reaches the hook when
        # the widget's queue is next processed, which with a quick seed can be after the above.
        await until(pilot, lambda: any(isinstance(m, ConnectionStatus.Changed) for m in messages))
        seeded = status.connection
        assert seeded is not None
        # A bubbling message is seen once per node it passes: count each message once.
        posted = {id(m): m for m in messages if isinstance(m, ConnectionStatus.Changed)}
        changes = [m.connection for m in posted.values()]
        seqs = [c.seq for c in changes if c]
        assert seqs == sorted(set(seqs)), "the indicator went back in time"
        assert changes[-1] == seeded
        assert all(c and c.state == "connected" for c in changes)  # never "connecting"

        # The real path: an old event arriving now is counted as stale and changes nothing.
        old = Connection(state="connecting", seq=seeded.seq - 1, since=time.time())
        before = app.stream.stale_ignored
        app.stream.on_event(
            Event(seq=old.seq, ts=time.time(), event="echo:connection", data=to_builtins(old))
        )
        await pilot.pause(0.1)
        assert app.stream.stale_ignored == before + 1
        assert app.plugins["echo"].connection == seeded
        # The widget on its own applies the same rule.
        assert status.apply(old) is False
        assert status.apply(msgspec.structs.replace(seeded)) is False  # equal seq: not newer
        assert status.connection == seeded
        assert "Connected as RaceBot#0001" in status.text


async def test_daemon_down_goes_offline_fast_and_recovers(
    start_daemon: StartDaemon, configured: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "Fast": from the connection's end, not from a ping that goes unanswered. With pings an
    # hour apart nothing else can mark it offline, so the wait below is a hang guard, not a
    # wall-clock bound (1 s was: a loaded CI machine may take longer to run the loop).
    monkeypatch.setenv(liveness.ENV_INTERVAL, "3600")
    daemon = await start_daemon(cfg=configured)
    app = make_app(configured, plugin="echo")
    async with app.run_test(size=(100, 30)) as pilot:
        status = app.screen.query_one(ConnectionStatus)
        await until(pilot, lambda: app.link.online and "Connected as" in status.text)
        seeds = app.stream.seeds

        await daemon.stop()
        await until(pilot, lambda: "daemon offline" in status.text)
        assert status.has_class("-stale")
        assert "▼ daemon offline" in screen_text(app)
        # The last value is kept (the daemon wrote "stopped" as it shut down).
        assert "Stopped" in status.text

        await start_daemon(plugins={"echo": Echo}, cfg=configured)
        await until(pilot, lambda: app.link.online)
        await until(pilot, lambda: "Connected as EchoBot#0001" in status.text)
        assert app.stream.seeds > seeds  # re-seeded on reconnect
        assert not status.has_class("-stale")
        assert "daemon offline" not in status.text


def _conn(seq: int, state: str, **extra: Any) -> Connection:
    return Connection(state=state, seq=seq, since=1_700_000_000.0, **extra)


async def test_indicator_texts_for_every_state(config: Config) -> None:
    """Glyph + words for each state (no colour-only signal); applied only in seq order."""
    app = make_app(config, stream=False, clock=lambda: 1_700_000_060.0)
    async with app.run_test(size=(100, 30)) as pilot:
        app.stream.set_online(0)
        await open_settings(pilot, "echo")
        status = app.screen.query_one(ConnectionStatus)
        cases = [
            (_conn(1, "connecting"), "◌ Connecting…"),
            (_conn(2, "connected", username="EchoBot#0001"), "● Connected as EchoBot#0001"),
            (
                _conn(3, "disconnected", attempt=2, retry_at=1_700_000_072.0, reason="4009 x"),
                "○ Disconnected — retrying in 12 s · attempt 2",
            ),
            (_conn(4, "error", reason="bad token"), "✖ Error: bad token"),
            (_conn(5, "stopped"), "■ Stopped"),
            (_conn(6, "not_configured"), "… Not configured"),
        ]
        for conn, expected in cases:
            assert status.apply(conn)
            assert status.text.splitlines()[0].startswith(expected), status.text
            assert "since 22:13 (1 min)" in status.text
        assert not status.apply(_conn(3, "connected", username="Old"))
        assert status.text.startswith("… Not configured")


async def test_a_short_drop_stays_visible_and_the_countdown_ticks(config: Config) -> None:
    """A resume within milliseconds still shows ("reconnected 6 s ago after a 9 ms drop"), and
    a retry countdown redraws by itself as its text changes (no event needed)."""
    now = [1_700_000_006.0]
    app = make_app(config, stream=False, clock=lambda: now[0])
    async with app.run_test(size=(100, 30)) as pilot:
        app.stream.set_online(0)
        await open_settings(pilot, "echo")
        status = app.screen.query_one(ConnectionStatus)
        assert status.apply(_conn(1, "connected", username="EchoBot#0001", drop_ms=9.0))
        assert "reconnected 6 s ago after a 9 ms drop" in status.text
        down = _conn(2, "disconnected", attempt=2, retry_at=now[0] + 3, reason="4000 x")
        assert status.apply(down)
        await pilot.pause()
        assert "retrying in 3 s · attempt 2" in status.text
        now[0] += 1.0
        await until(pilot, lambda: "retrying in 2 s · attempt 2" in screen_text(app))


async def test_the_last_known_age_ticks_with_the_headers(config: Config) -> None:
    """Offline, "last known 17 s ago" is an age of its own: its redraw is booked for the moment
    it reads differently, as the header's "(17 s)" is (it stood still while the header went on
    to 18 s: the booking looked only at the connection's own countdowns and ages)."""
    now = [1_700_000_006.0]
    app = make_app(config, stream=False, clock=lambda: now[0])
    async with app.run_test(size=(100, 30)) as pilot:
        app.stream.set_online(0)
        screen = await open_settings(pilot, "echo")
        status = screen.query_one(ConnectionStatus)
        # Connected an hour ago: its own age ("(1 h)") moves once a minute, not in step.
        hour = Connection(state="connected", seq=1, since=now[0] - 3600.5, username="Bot#1")
        assert status.apply(hour)
        await pilot.pause()
        app.stream.set_offline("connection lost")
        now[0] += 17.0
        await until(pilot, lambda: "last known 17 s ago" in screen_text(app))
        await until(pilot, lambda: "(17 s)" in screen_text(app))
        now[0] += 1.0
        await until(pilot, lambda: "(18 s)" in screen_text(app))
        await until(pilot, lambda: "last known 18 s ago" in screen_text(app))


async def test_the_countdown_does_not_tick_while_its_screen_is_hidden(config: Config) -> None:
    """The retry countdown's timer finds the events screen in front: it books nothing more
    (no wake-ups while hidden); shown again, the indicator catches up at once and ticks on."""
    now = [1_700_000_006.0]
    app = make_app(config, stream=False, clock=lambda: now[0])
    async with app.run_test(size=(100, 30)) as pilot:
        app.stream.set_online(0)
        screen = await open_settings(pilot, "echo")
        status = screen.query_one(ConnectionStatus)
        timer = status._tick
        assert timer is not None
        down = _conn(2, "disconnected", attempt=2, retry_at=now[0] + 30, reason="4000 x")
        assert status.apply(down)
        await until(pilot, lambda: "retrying in 30 s" in status._drawn)
        await pilot.press("e")
        await until(pilot, lambda: app.screen is not screen)
        now[0] += 1.0
        await until(pilot, lambda: timer.asleep)  # it fired once, found it hidden
        fired = timer.fired
        now[0] += 5.0
        app.switch_mode("plugins")
        await until(pilot, lambda: app.screen is screen and not timer.asleep)
        await until(pilot, lambda: "retrying in 24 s" in screen_text(app))
        assert timer.fired == fired
        now[0] += 1.0
        await until(pilot, lambda: "retrying in 23 s" in screen_text(app))  # ticking again
        assert timer.fired > fired
