"""SVG snapshots of the fleet overview at 100x30 and 80x24: one context live, one unreachable
with its last known state, one still connecting. States are set on the rows directly (no
streams), the clock is frozen, so the picture is deterministic."""

from __future__ import annotations

from typing import Any

import pytest
from textual.events import Mount
from textual.pilot import Pilot

from harness.config import Config, DaemonConfig
from harness.protocol import Connection
from tests.tui.conftest import make_app, until
from tui.app import HarnessApp
from tui.screens.fleet import FleetList, FleetScreen

T0 = 1_767_258_000.0  # 2026-01-01 09:00:00 UTC
NOW = T0 + 7260.0
SIZES = [pytest.param((100, 30), id="100x30"), pytest.param((80, 24), id="80x24")]


class StillFleet(FleetScreen):
    """The fleet screen with its rows filled in by hand instead of by streams."""

    def on_mount(self, event: Mount) -> None:
        event.prevent_default()  # no streams: FleetScreen.on_mount would start them
        m = self.members
        m["default"].online = m["default"].ever_online = True
        m["default"].changed_at = NOW - 600
        m["default"].connections = {
            "discord": Connection(state="connected", seq=7, since=T0, latency_ms=42.0),
            "echo": Connection(state="disconnected", seq=9, since=NOW - 30, attempt=2),
        }
        m["prod"].changed_at = NOW - 180
        m["prod"].ever_online = True
        m["prod"].reason = (
            "ssh: Permission denied (publickey) for ops@prod.example.com: check the user, "
            "the key and the agent (ssh-add -l)"
        )
        m["prod"].connections = {"discord": Connection(state="connected", seq=3, since=T0)}
        for row in self.rows.values():
            row.refresh(layout=True)
        self.select(self.rows["default"])
        self.query_one(FleetList).focus()


def fleet_app() -> HarnessApp:
    config = Config(
        daemon=DaemonConfig(socket="/nonexistent/harness.sock", database="/nonexistent/s.db"),
        contexts={
            "prod": {"host": "ssh://ops@prod.example.com", "read_only": True},
            "staging": {"host": "ssh://staging:2222"},
        },
    )
    return make_app(config, stream=False, clock=lambda: NOW)


async def show_fleet(pilot: Pilot[Any]) -> None:
    app = pilot.app
    app.push_screen(StillFleet())
    await until(pilot, lambda: isinstance(app.screen, StillFleet) and app.screen.is_mounted)
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES)
def test_fleet_screen(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(fleet_app(), terminal_size=size, run_before=show_fleet)
