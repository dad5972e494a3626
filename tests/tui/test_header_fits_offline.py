"""The header's link text is read whole at 80 columns when the daemon is away, with the demo's
keys in the breadcrumb too: the demo's `? daemon not` (SIGSTOP) and `▼ daemon offline (3 s)
· r` (killed) were cut mid-phrase, the breadcrumb's extras kept. They give way first now, as
they already did for an ssh link down, a cause, or failing storage (tui/widgets/link_status.py).
A real `harness run` subprocess, the real app under its pilot."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from harness import config as config_mod
from harness import liveness
from tests import ext_plugins
from tests.conftest import REPO_ROOT, SpawnDaemon, subprocess_env, write_config
from tests.tui.conftest import make_app, screen_text, until

PING = "0.3"  # seconds: the test's ping interval (the default is 5 s)


@pytest.mark.parametrize("fault", ["stopped", "killed"])
async def test_the_link_text_is_whole_at_80_columns_beside_the_demo_keys(
    spawn_daemon: SpawnDaemon, state_dir: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    monkeypatch.setenv(liveness.ENV_INTERVAL, PING)
    site = ext_plugins.install(state_dir / "site", echo="tests.sample_plugins:Echo")
    env = subprocess_env(state_dir, PYTHONPATH=f"{site}{os.pathsep}{REPO_ROOT}")
    path = write_config(state_dir, plugins={"echo": {"token": "header-t0ken"}})
    daemon = await spawn_daemon(path, env=env)
    config = config_mod.load(path)
    # The demo's keys in the header (the control URL is never asked here).
    app = make_app(config, plugin="echo", demo_control="http://127.0.0.1:1")
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.link.online)

        def header() -> str:
            return screen_text(app).splitlines()[0]

        await until(pilot, lambda: "demo keys" in header() and "daemon online" in header())
        if fault == "stopped":
            os.kill(daemon.pid, signal.SIGSTOP)
            try:
                await until(pilot, lambda: not app.link.responding)
                # Before: "... · demo keys: f flap, o outage ? daemon not"
                await until(pilot, lambda: "? daemon not responding (" in header())
            finally:
                os.kill(daemon.pid, signal.SIGCONT)
        else:
            daemon.kill()
            await daemon.wait()
            await until(pilot, lambda: not app.link.online)
            await until(pilot, lambda: "▼ daemon offline (" in header())
            assert header().rstrip().endswith("· retrying"), header()
        assert header().startswith(" harness > "), header()
