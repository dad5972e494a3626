"""SVG snapshots of every screen and indicator state, at 100x30 and 80x24.

snap_compare only runs in synchronous tests, so these use no live daemon: the database is
prepared on disk, the clock is frozen, and states arrive through the same Stream methods the
live path uses (seed from SQLite, apply_infos, on_event). The offline case is the real path:
the stream finds no socket, seeds from the database and marks the app offline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from textual.pilot import Pilot

from harness import settings as harness_settings
from harness.config import Config
from harness.protocol import Event, PluginInfo
from harness.store import Store
from tests.sample_plugins import Echo
from tests.tui.conftest import TOKEN, make_app, until
from tui.app import HarnessApp
from tui.screens.events import EventsScreen
from tui.screens.settings import SettingsScreen
from tui.widgets.history import ConnectionHistory

T0 = 1_767_258_000.0  # 2026-01-01 09:00:00 UTC
NOW = T0 + 7260.0  # 11:01, a minute after the stored "stopped"
SIZES = [pytest.param((100, 30), id="100x30"), pytest.param((80, 24), id="80x24")]

# The stored history: connected, a one-minute drop, connected again, stopped at shutdown.
HISTORY: list[tuple[float, dict[str, Any]]] = [
    (T0, {"state": "connecting"}),
    (T0 + 2, {"state": "connected", "username": "EchoBot#0001"}),
    (T0 + 3600, {"state": "disconnected", "attempt": 1, "reason": "gateway closed (4000)"}),
    (T0 + 3660, {"state": "connected", "username": "EchoBot#0001"}),
    (T0 + 7200, {"state": "stopped", "reason": "daemon shut down"}),
]


def prepare_database(config: Config) -> None:
    """Write a database as a daemon would have left it (the daemon is down)."""

    async def write() -> None:
        store = await Store.open(config.database_path)
        try:
            await store.ensure_plugins(["echo"])
            for seq, (ts, data) in enumerate(HISTORY, start=1):
                conn = {**data, "seq": seq, "since": ts}
                await store.append_event(
                    Event(seq=seq, ts=ts, event="echo:connection", data=conn),
                    plugin="echo",
                    metadata_key="connection",
                )
        finally:
            await store.close()

    asyncio.run(write())


@pytest.fixture
def prepared(config: Config) -> Config:
    prepare_database(config)
    return config


def echo_info(
    *, token: bool = True, status: str = "running", reason: str | None = None
) -> PluginInfo:
    schema = Echo.settings_schema
    values = harness_settings.effective(schema, {"token": TOKEN if token else None})
    return PluginInfo(
        name="echo",
        version=Echo.version,
        description=Echo.description,
        enabled=True,
        status=status,
        reason=reason,
        settings=harness_settings.public(schema, values),
        metadata={},
        schema=list(schema),
        updated_at=NOW,
    )


def snapshot_app(config: Config, **kwargs: Any) -> HarnessApp:
    kwargs.setdefault("stream", False)
    return make_app(config, clock=lambda: NOW, **kwargs)


def live(info: PluginInfo, **connection: Any) -> Callable[[Pilot[Any]], Awaitable[None]]:
    """run_before: seed from the database, go online, then stream one newer connection event
    (seq 6, a minute ago) and wait until the settings screen shows it."""

    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, HarnessApp)
        await app.stream.seed()
        app.stream.apply_infos([info])
        app.stream.set_online(5)
        conn = {**connection, "seq": 6, "since": NOW - 60}
        app.stream.on_event(Event(seq=6, ts=NOW - 60, event="echo:connection", data=conn))
        await until(pilot, lambda: app.plugins["echo"].seq == 6)
        await settled(pilot)

    return run_before


async def settled(pilot: Pilot[Any]) -> None:
    """Wait until the screen has everything it will show (form mounted, history loaded)."""
    app = pilot.app
    assert isinstance(app, HarnessApp)
    screen = app.screen
    if isinstance(screen, SettingsScreen):
        history = screen.query_one(ConnectionHistory)
        await until(pilot, lambda: history.loaded)
        if app.link.online or (app.plugins.get("echo") and app.plugins["echo"].info):
            await until(pilot, lambda: screen.form is not None and screen.form.ready)

        def still() -> bool:
            # The reload that going online starts has ended, the history has drawn what it
            # holds, and no layout or repaint is pending (a snapshot taken between the
            # history's repaint and the layout it asks for drew the scrollbar's thumb a row
            # off, under load).
            loading = any(w.node is history and not w.is_finished for w in app.workers)
            return (
                not loading
                and history._drawn == history._text(app.clock()).plain
                and history.size.height == history._drawn.count("\n") + 1
                and not screen._layout_required
                and not screen._dirty_widgets
                and not history._layout_required
                and not history._repaint_required
            )

        await until(pilot, still)
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES)
def test_plugins_screen(snap_compare: Any, prepared: Config, size: tuple[int, int]) -> None:
    app = snapshot_app(prepared)
    assert snap_compare(
        app,
        terminal_size=size,
        run_before=live(echo_info(), state="connected", username="EchoBot#0001"),
    )


@pytest.mark.parametrize("size", SIZES)
def test_settings_connected(snap_compare: Any, prepared: Config, size: tuple[int, int]) -> None:
    app = snapshot_app(prepared, plugin="echo")
    assert snap_compare(
        app,
        terminal_size=size,
        run_before=live(echo_info(), state="connected", username="EchoBot#0001"),
    )


@pytest.mark.parametrize("size", SIZES)
def test_settings_disconnected(snap_compare: Any, prepared: Config, size: tuple[int, int]) -> None:
    app = snapshot_app(prepared, plugin="echo")
    assert snap_compare(
        app,
        terminal_size=size,
        run_before=live(
            echo_info(),
            state="disconnected",
            attempt=3,
            username="EchoBot#0001",
            reason="4009 session timed out",
            code=4009,
            retry_at=NOW + 12,
        ),
    )


@pytest.mark.parametrize("size", SIZES)
def test_settings_error(snap_compare: Any, prepared: Config, size: tuple[int, int]) -> None:
    app = snapshot_app(prepared, plugin="echo")
    reason = "authentication failed (4004): check the token"
    assert snap_compare(
        app,
        terminal_size=size,
        run_before=live(echo_info(status="running"), state="error", reason=reason),
    )


@pytest.mark.parametrize("size", SIZES)
def test_settings_not_configured(
    snap_compare: Any, prepared: Config, size: tuple[int, int]
) -> None:
    app = snapshot_app(prepared, plugin="echo")
    assert snap_compare(
        app,
        terminal_size=size,
        run_before=live(echo_info(token=False), state="not_configured", reason="no token"),
    )


@pytest.mark.parametrize("size", SIZES)
def test_settings_offline(snap_compare: Any, prepared: Config, size: tuple[int, int]) -> None:
    """The real stream: no socket, so it seeds from the database and marks the app offline."""
    app = snapshot_app(prepared, plugin="echo", stream=True)

    async def run_before(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: app.link.changed_at > 0 and "echo" in app.plugins)
        await settled(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_events_screen(snap_compare: Any, prepared: Config, size: tuple[int, int]) -> None:
    app = snapshot_app(prepared)

    async def run_before(pilot: Pilot[Any]) -> None:
        await app.stream.seed()
        app.stream.set_online(5)
        samples: list[tuple[str, dict[str, Any]]] = [
            ("plugin:settings", {"plugin": "echo", "changed": ["prefix"]}),
            ("echo:connection", {"state": "stopped", "reason": "restarting with new settings"}),
            ("echo:connection", {"state": "connecting"}),
            ("echo:connection", {"state": "connected", "username": "NewBot#0001"}),
            ("plugin:status", {"plugin": "echo", "status": "running", "reason": None}),
            # The newest: at 80 columns its row is cut, the detail pane shows it whole.
            (
                "echo:connection",
                {
                    "state": "disconnected",
                    "username": "NewBot#0001",
                    "attempt": 3,
                    "reason": "gateway closed the connection (1006), retrying in 4 s",
                },
            ),
        ]
        for i, (name, data) in enumerate(samples):
            seq, ts = 6 + i, NOW - 30 + i * 0.25
            if name.endswith(":connection"):
                data = {**data, "seq": seq, "since": ts}
            app.stream.on_event(Event(seq=seq, ts=ts, event=name, data=data))
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, EventsScreen))
        screen = app.screen
        assert isinstance(screen, EventsScreen)
        await until(pilot, lambda: len(screen.kept) == len(samples))
        await settled(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_settings_parts(snap_compare: Any, prepared: Config, size: tuple[int, int]) -> None:
    """A connection of 12 parts, one down and retrying: the table under the indicator, its
    header in place, scrolling inside its fixed height."""
    parts = [
        {"id": str(n), "state": "connected", "since": T0 + 2, "latency_ms": 40.0 + n, "guilds": n}
        for n in range(12)
    ]
    parts[4] = {
        "id": "4",
        "state": "disconnected",
        "since": NOW - 20,
        "reason": "4000 unknown error",
        "attempt": 2,
        "retry_at": NOW + 12,
        "guilds": 4,
    }
    app = snapshot_app(prepared, plugin="echo")
    assert snap_compare(
        app,
        terminal_size=size,
        run_before=live(
            echo_info(),
            state="connecting",
            reason="degraded: 11/12 parts connected",
            username="EchoBot#0001",
            parts=parts,
        ),
    )
