"""Live presence updates never block control (issue 9, item 7): a storm of ``status_text``
saves coalesces (the last value wins), ``plugins.set_enabled`` still answers, and SIGTERM still
finishes with ``stopped`` recorded. A real daemon process, the real discord.py, the emulator."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from harness.client import Client, DaemonUnavailable
from harness.config import Config, DaemonConfig
from harness.discord_emulator import LocalDiscordGateway
from tests.conftest import HANG_GUARD, wait_until
from tests.test_discord_plugin import TOKEN, stored_connection

STOP_TIMEOUT = 3.0


def last_status(cfg: Config) -> dict[str, object]:
    """The discord plugin's last recorded ``plugin:status`` event."""
    with sqlite3.connect(cfg.database_path) as db:
        rows = db.execute("SELECT data FROM events WHERE name = 'plugin:status'").fetchall()
    statuses = [json.loads(r[0]) for r in rows]
    return [d for d in statuses if d["plugin"] == "discord"][-1]


async def test_presence_storm_leaves_control_responsive_and_sigterm_prompt(
    state_dir: Path,
) -> None:
    async with LocalDiscordGateway(tokens={TOKEN}) as gw:
        path = state_dir / "harness.toml"
        path.write_text(
            "[daemon]\n"
            f'socket = "{state_dir}/run/harness.sock"\n'
            f'database = "{state_dir}/state/state.db"\n'
            f"stop_timeout = {STOP_TIMEOUT}\n"
            "[plugins.discord]\n"
            f'bot_token = "{TOKEN}"\n'
            f'api_base_url = "{gw.api_base_url}"\n'
            f'gateway_url = "{gw.gateway_url}"\n'
        )
        cfg = Config(
            daemon=DaemonConfig(
                socket=str(state_dir / "run/harness.sock"),
                database=str(state_dir / "state/state.db"),
            )
        )
        proc = subprocess.Popen(  # noqa: ASYNC220  (a real daemon process, as in production)
            [sys.executable, "-m", "harness", "run", "--config", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=(state_dir / "daemon.log").open("w"),
        )
        try:
            await wait_until(lambda: stored_connection(cfg).get("state") == "connected")
            client = await Client.connect(cfg.socket_path, client="storm")

            def storm(tag: str) -> asyncio.Future[list[object]]:
                return asyncio.gather(
                    *(
                        client.request(
                            "plugins.update_settings",
                            name="discord",
                            settings={"status_text": f"{tag} {i}"},
                        )
                        for i in range(130)
                    ),
                    return_exceptions=True,
                )

            # 1. During a storm, set_enabled answers, and nothing it waited for was Discord's
            # send budget: few presence updates went out before its answer (by cause, not a
            # deadline: one update sent per save had this wait on discord.py's 110 a minute).
            before = len(gw.presence_updates)
            saves = storm("first")
            await asyncio.sleep(0)  # the storm's frames are written first
            async with asyncio.timeout(HANG_GUARD):
                info = await client.request("plugins.set_enabled", name="discord", enabled=False)
            assert len(gw.presence_updates) - before < 10, "control waited on presence updates"
            assert info["enabled"] is False and info["status"] == "disabled"
            results = await saves
            assert not [r for r in results if isinstance(r, BaseException)]
            await wait_until(lambda: stored_connection(cfg).get("state") == "stopped")

            # 2. Back on: the last value wins, and far fewer updates reach Discord than saves.
            await client.request("plugins.set_enabled", name="discord", enabled=True)
            await wait_until(lambda: stored_connection(cfg).get("state") == "connected")
            before = len(gw.presence_updates)
            await storm("second")
            await gw.wait_for(
                lambda g: (
                    bool(g.presence_updates)
                    and g.presence_updates[-1]["activities"][0]["name"] == "second 129"
                ),
                timeout=HANG_GUARD,
            )
            assert len(gw.presence_updates) - before < 10, "saves in a burst coalesce"

            # 3. SIGTERM in the middle of a storm: the plugin stops by itself, with `stopped`
            # recorded. Prompt by cause, not by wall time (a loaded machine's seconds mean
            # nothing): a stop held up by the storm runs into stop_timeout, and the daemon
            # then records the plugin as "error: did not stop within 3 s".
            saves = storm("third")
            await asyncio.sleep(0)
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(proc.wait, HANG_GUARD)
            await asyncio.gather(saves, return_exceptions=True)
            assert code == 0
            assert stored_connection(cfg)["state"] == "stopped"
            status = last_status(cfg)
            assert (status["status"], status["reason"]) == ("stopped", None), status
            try:
                await client.close()
            except DaemonUnavailable:
                pass
        except BaseException:
            print((state_dir / "daemon.log").read_text()[-5000:])
            raise
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(HANG_GUARD)
