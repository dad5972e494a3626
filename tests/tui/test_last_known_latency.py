"""With the daemon gone (killed: no `stopped` reached anyone) the indicator shows the last
known connection; its round trip is the last heartbeat's, not the one measured when the link
came up, and a figure that can only be the connect-time one says so (a real `harness run`
subprocess, the real app under its pilot)."""

from __future__ import annotations

import os
from pathlib import Path

from harness import config as config_mod
from tests import ext_plugins
from tests.conftest import REPO_ROOT, SpawnDaemon, subprocess_env, write_config
from tests.tui.conftest import make_app, until
from tui.widgets.connection_status import ConnectionStatus


async def test_last_known_shows_the_last_heartbeats_latency_not_the_connects(
    spawn_daemon: SpawnDaemon, state_dir: Path
) -> None:
    site = ext_plugins.install(state_dir / "site", beat="tests.ext_plugins:Beat")
    path = write_config(state_dir, plugins={"beat": {}})
    env = subprocess_env(
        state_dir, PYTHONPATH=f"{site}{os.pathsep}{REPO_ROOT}", CONNECT_MS="12", BEAT_MS="40"
    )
    daemon = await spawn_daemon(path, env=env)
    config = config_mod.load(path)
    app = make_app(config, plugin="beat")
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.link.online)
        indicator = app.screen.query_one(ConnectionStatus)
        await until(pilot, lambda: indicator.text.startswith("● Connected as Beat#1 · 40 ms"))

        daemon.kill()
        await daemon.wait()
        await until(pilot, lambda: "daemon offline — last known" in indicator.text)
        headline = indicator.text.splitlines()[0]
        assert headline == "? last known: ● Connected as Beat#1 · 40 ms", indicator.text
        assert "12 ms" not in indicator.text

    # A monitor opened while the daemon is down has only the stored connection: its figure
    # is the one measured at connect, and it says so.
    app = make_app(config, plugin="beat")
    async with app.run_test(size=(80, 24)) as pilot:
        indicator = app.screen.query_one(ConnectionStatus)
        await until(pilot, lambda: "last known" in indicator.text)
        headline = indicator.text.splitlines()[0]
        assert headline == "? last known: ● Connected as Beat#1 · 12 ms at connect", headline
