"""After a daemon restart the plugins table showed the previous run's heartbeat latency as
current until the first heartbeat of the new run (found by an outsider's pass): live health
belongs to the stream it came on, so a new stream starts without it."""

from __future__ import annotations

import os
from pathlib import Path

from harness import config as config_mod
from tests import ext_plugins
from tests.conftest import REPO_ROOT, SpawnDaemon, subprocess_env, write_config
from tests.tui.conftest import make_app, screen_text, until
from tui.app import HarnessApp


def connected_seq(app: HarnessApp) -> int:
    state = app.plugins.get("beat")
    conn = state.connection if state else None
    return conn.seq if conn is not None and conn.state == "connected" else 0


async def test_a_latency_from_before_a_restart_is_not_shown_as_current(
    spawn_daemon: SpawnDaemon, state_dir: Path
) -> None:
    site = ext_plugins.install(state_dir / "site", beat="tests.ext_plugins:Beat")
    path = write_config(state_dir, plugins={"beat": {}})
    pythonpath = f"{site}{os.pathsep}{REPO_ROOT}"
    # The first run beats at 42 ms; it is killed (no `stopped` reaches the TUI, as with a
    # crash or kill -9) and the second run has not beaten yet.
    first = await spawn_daemon(
        path, env=subprocess_env(state_dir, PYTHONPATH=pythonpath, BEAT_MS="42")
    )
    app = make_app(config_mod.load(path))
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.link.online and connected_seq(app) > 0)
        await until(pilot, lambda: "42 ms" in screen_text(app))
        before = connected_seq(app)

        first.kill()
        await first.wait()
        await until(pilot, lambda: not app.link.online)
        await spawn_daemon(path, env=subprocess_env(state_dir, PYTHONPATH=pythonpath))
        await until(pilot, lambda: app.link.online and connected_seq(app) > before)
        await pilot.pause()
        assert "42 ms" not in screen_text(app), screen_text(app)
        assert app.plugins["beat"].health is None
