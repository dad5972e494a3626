"""harness-tui reads its config as every client does: only the parts it uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness import config as config_mod
from harness.config import Config
from harness.config_paths import ConfigError
from tests.conftest import write_config
from tests.sample_plugins import Echo
from tests.test_client_config import DAEMONS_OWN  # mistakes only `harness run` looks at
from tests.tui.conftest import make_app, screen_text, until
from tui.app import main, parse_args, read_config


async def test_a_mistake_in_the_daemons_sections_does_not_stop_the_tui(
    start_daemon: Any, config: Config, state_dir: Path
) -> None:
    await start_daemon(plugins={"echo": Echo})
    database = state_dir / "elsewhere" / "kept.db"
    path = write_config(state_dir, socket=str(config.socket_path), database=str(database))
    path.write_text(path.read_text() + DAEMONS_OWN)
    with pytest.raises(ConfigError):
        config_mod.load(path)  # what `harness run` reads: refused
    client_config, target = read_config(parse_args(["--config", str(path)]))
    assert target.socket == config.socket_path and not target.remote
    assert client_config.database_path == database  # the stored state it shows when offline
    app = make_app(client_config, target=target)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.first_frame_released and "echo" in screen_text(app))
        assert "daemon online" in screen_text(app)


@pytest.mark.parametrize(
    ("daemon", "said"),
    [
        ("database = 5", "daemon.database: expected text"),
        ('sokcet = "/x"', "daemon.sokcet: unknown key"),
    ],
)
def test_a_mistake_in_the_tuis_own_part_exits_2_and_says_where(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], daemon: str, said: str
) -> None:
    path = tmp_path / "harness.toml"
    path.write_text(f"[daemon]\n{daemon}\n")
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"harness-tui: {path}: ") and said in err, err
