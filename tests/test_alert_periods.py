"""A reminder or heartbeat period that is a typo ("1ms" for "1m") is refused at load, with the
file and the key: it would send a thousand notifications or pings a second."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import config as config_mod
from tests.conftest import write_config

TARGET = '[alerts]\ntargets = ["json://127.0.0.1:9/x"]\n'


def load(state_dir: Path, toml: str) -> config_mod.Config:
    path = write_config(state_dir)
    path.write_text(path.read_text() + "\n" + toml)
    return config_mod.load(path)


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            TARGET + '[alerts.rules.down]\nremind_every = "1ms"\n',
            "alerts.rules.down.remind_every: expected 0 (never) or at least 0.1s (it repeats), "
            "got '1ms'",
        ),
        (
            '[alerts]\nheartbeat_url = "http://127.0.0.1:9/p"\nheartbeat_every = "0.000001s"\n',
            "alerts.heartbeat_every: expected at least 0.1s (it repeats), got '0.000001s'",
        ),
    ],
)
def test_a_period_too_short_is_refused(state_dir: Path, toml: str, expected: str) -> None:
    # Before: both loaded; the daemon then sent as fast as it could.
    with pytest.raises(config_mod.ConfigError, match=None) as info:
        load(state_dir, toml)
    assert expected in str(info.value)


def test_never_and_short_real_periods_still_load(state_dir: Path) -> None:
    cfg = load(state_dir, TARGET + '[alerts.rules.down]\nremind_every = "0"\n')
    assert cfg.alerts.rules["down"].remind_every == "0"
    load(state_dir, TARGET + '[alerts.rules.down]\nremind_every = "0.1s"\n')
