"""Live presence updates never block control (issue 9, item 7): a storm of ``status_text``
saves coalesces (the last value wins), ``plugins.set_enabled`` still answers, and SIGTERM still
finishes with ``stopped`` recorded. A real daemon process, the real discord.py, the emulator."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.client import Client, DaemonUnavailable
from harness.config import Config, DaemonConfig
from harness.discord_emulator import LocalDiscordGateway
from tests.conftest import wait_until
from tests.test_discord_plugin import TOKEN, stored_connection

STOP_TIMEOUT = 3.0


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
            await wait_until(lambda: stored_connection(cfg).get("state") == "connected", 20)
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

            # 1. During a storm, set_enabled answers (generous deadline: a loaded machine).
            saves = storm("first")
            await asyncio.sleep(0)  # the storm's frames are written first
            info = await asyncio.wait_for(
                client.request("plugins.set_enabled", name="discord", enabled=False), 10
            )
            assert info["enabled"] is False and info["status"] == "disabled"
            results = await saves
            assert not [r for r in results if isinstance(r, BaseException)]
            await wait_until(lambda: stored_connection(cfg).get("state") == "stopped", 10)

            # 2. Back on: the last value wins, and far fewer updates reach Discord than saves.
            await client.request("plugins.set_enabled", name="discord", enabled=True)
            await wait_until(lambda: stored_connection(cfg).get("state") == "connected", 20)
            before = len(gw.presence_updates)
            await storm("second")
            await gw.wait_for(
                lambda g: (
                    bool(g.presence_updates)
                    and g.presence_updates[-1]["activities"][0]["name"] == "second 129"
                ),
                timeout=10,
            )
            assert len(gw.presence_updates) - before < 10, "saves in a burst coalesce"

            # 3. SIGTERM in the middle of a storm: out within stop_timeout + 1 s (plus slack
            # for a loaded machine), with `stopped` recorded.
            saves = storm("third")
            await asyncio.sleep(0)
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(proc.wait, STOP_TIMEOUT + 6)
            took = time.monotonic() - sent
            await asyncio.gather(saves, return_exceptions=True)
            assert code == 0
            assert took < STOP_TIMEOUT + 6, took
            assert stored_connection(cfg)["state"] == "stopped"
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
                proc.wait(5)
