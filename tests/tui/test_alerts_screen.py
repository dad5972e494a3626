"""The alerts panel, toasts on alert events, silences from the TUI, and the uptime that leaves
maintenance out: a real daemon with a real receiver behind apprise's json:// scheme."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from harness.config import Config
from tests.alerts_receiver import Receiver
from tests.conftest import StartDaemon, wait_until
from tests.sample_plugins import Manual
from tests.test_alerts import alerts_config, rule
from tests.tui.conftest import make_app, open_settings, screen_text, until
from tui.screens.alerts import AlertsScreen, SilenceDialog
from tui.widgets.history import ConnectionHistory, uptime

SECRET = "hook-s3cret-path-0123456789"


def db_statuses(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT status FROM alert_outbox ORDER BY id").fetchall()
    conn.close()
    return [r[0] for r in rows]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


def test_uptime_leaves_maintenance_out() -> None:
    now = 1_000_000.0
    down_for_maintenance = [(now - 7200, "connected"), (now - 3600, "disconnected")]
    assert uptime(down_for_maintenance, now) == (0.5, 7200.0)
    # The hour down was a maintenance window: what is left was all connected.
    assert uptime(down_for_maintenance, now, excluded=[(now - 3600, now)]) == (1.0, 3600.0)
    # Overlapping windows count once; a window outside the history changes nothing.
    assert uptime(
        down_for_maintenance,
        now,
        excluded=[(now - 3600, now - 1800), (now - 2700, now - 900), (now - 9e5, now - 8e5)],
    ) == (3600 / 4500, 4500.0)


async def test_alerts_screen_toasts_and_silence_from_the_tui(
    start_daemon: StartDaemon, config: Config, receiver: Receiver
) -> None:
    cfg = alerts_config(
        config,
        targets={"ops": f"json://127.0.0.1:{receiver.port}/{SECRET}"},
        rules={"down": rule(**{"for": 0})},
    )
    Manual.ctx = None
    await start_daemon(plugins={"manual": Manual}, cfg=cfg)
    assert Manual.ctx is not None
    ctx = Manual.ctx
    await ctx.set_connection("connected", username="Manual#1")
    app = make_app(cfg)
    notes: list[tuple[str, str]] = []

    def notify(message: str, *, title: str = "", **_: Any) -> None:
        notes.append((title, str(message)))

    app.notify = notify  # type: ignore[method-assign,assignment]
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.link.online and "manual" in app.plugins)
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, AlertsScreen))
        screen = app.screen
        assert isinstance(screen, AlertsScreen)
        await until(pilot, lambda: screen.data is not None)
        text = screen_text(app)
        assert "rule down: manual" in text and "target ops json://127.0.0.1/…" in text
        assert "no alert firing" in text

        await ctx.set_connection("disconnected", reason="gateway gone")
        await until(pilot, lambda: ("Alert", "manual is disconnected: gateway gone") in notes)
        await until(pilot, lambda: "FIRING manual disconnected" in screen_text(app))
        # The history row: once the daemon has marked it sent, `r` shows it so.
        await wait_until(lambda: db_statuses(cfg.database_path) == ["sent"])
        await pilot.press("r")
        await until(pilot, lambda: "sent" in screen_text(app))

        # A maintenance window from the TUI: the dialog, then the daemon has it.
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, SilenceDialog))
        await pilot.press(*"manual")
        await pilot.press("tab", "tab", *"deploy", "enter")
        await until(pilot, lambda: app.silenced("manual") is not None)
        await until(pilot, lambda: any(t == "Maintenance" for t, _ in notes))
        await until(pilot, lambda: "maintenance" in screen_text(app))
        silence = app.silenced("manual")
        assert silence is not None and silence.reason == "deploy"

        await ctx.set_connection("connected")
        await until(pilot, lambda: any(t == "Resolved" for t, _ in notes))
        settings = await open_settings(pilot, "manual")
        history = settings.query_one(ConnectionHistory)
        await until(pilot, lambda: history.loaded and len(history.transitions) >= 3)
        text = str(history.render())
        assert "maintenance until" in text and "deploy" in text
        assert "maintenance excluded" in text

        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, AlertsScreen))
        await pilot.press("x")
        await until(pilot, lambda: app.silenced("manual") is None)
        await until(pilot, lambda: any(t == "Maintenance over" for t, _ in notes))
        assert SECRET not in screen_text(app)
        assert all(SECRET not in m for _, m in notes)
    # The resolve was held back by the silence: the receiver has the firing only.
    await wait_until(lambda: len(receiver.posts) >= 1)
    assert receiver.kinds() == ["fired"]
