"""A cause's code is said once, the same way in the TUI's indicator and the CLI: "4009 session
timed out" as it is, "session timed out (code 4009)" when the words do not name it (a real
daemon on a real socket, the real app under its pilot, the real CLI)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import Config
from harness.plugin import Plugin, PluginContext
from tests.conftest import StartDaemon, run_cli, subprocess_env
from tests.tui.conftest import make_app, until
from tui.widgets.connection_status import ConnectionStatus


class Dropped(Plugin):
    """Reports one disconnected state whose reason the class says."""

    name = "dropped"
    version = "0.1"
    reason: str = ""

    async def start(self, ctx: PluginContext) -> None:
        await ctx.set_connection("disconnected", reason=self.reason, code=4009, attempt=2)


class NamesCode(Dropped):
    reason = "4009 session timed out"


class Plain(Dropped):
    reason = "session timed out"


@pytest.mark.parametrize(
    ("plugin", "said"),
    [(NamesCode, "4009 session timed out"), (Plain, "session timed out (code 4009)")],
)
async def test_the_code_is_said_once_in_tui_and_cli(
    start_daemon: StartDaemon, config: Config, state_dir: Path, plugin: type[Dropped], said: str
) -> None:
    await start_daemon(plugins={"dropped": plugin})
    app = make_app(config, plugin="dropped")
    async with app.run_test(size=(80, 24)) as pilot:
        indicator = app.screen.query_one(ConnectionStatus)
        await until(pilot, lambda: "Disconnected" in indicator.text)
        text = indicator.text
        assert said in text.splitlines(), text
        assert text.count("4009") == 1, text
    env = subprocess_env(state_dir)
    for argv in (("status",), ("plugins", "show", "dropped")):
        result = await run_cli(*argv, "--socket", str(config.socket_path), env=env)
        assert result.rc == 0, result
        lines = [line for line in result.out.splitlines() if "disconnected" in line]
        assert lines and all(line.count("4009") == 1 for line in lines), result.out
        assert any(said in line for line in lines), result.out
