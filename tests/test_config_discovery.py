"""Where the configuration comes from: --config, then $HARNESS_CONFIG, then the user config
file (platformdirs), then defaults; `harness config` says which; a bad file creates nothing."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from harness import config as config_mod
from tests.conftest import run_cli, subprocess_env, write_config


@pytest.fixture
def xdg(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = state_dir / "xdg-config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    monkeypatch.delenv(config_mod.ENV_CONFIG, raising=False)
    return home


def test_precedence_flag_then_env_then_user_file_then_defaults(
    xdg: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert config_mod.locate() == (None, "default")
    assert config_mod.load().source == ""
    user = xdg / "harness" / "config.toml"
    user.parent.mkdir(parents=True)
    user.write_text('[daemon]\nlog_level = "debug"\n')
    assert config_mod.user_config_file() == user
    assert config_mod.locate() == (user, "discovered")
    assert config_mod.load().daemon.log_level == "debug"
    env_file = state_dir / "env.toml"
    env_file.write_text('[daemon]\nlog_level = "warning"\n')
    monkeypatch.setenv(config_mod.ENV_CONFIG, str(env_file))
    assert config_mod.load().daemon.log_level == "warning"
    flag_file = state_dir / "flag.toml"
    flag_file.write_text('[daemon]\nlog_level = "error"\n')
    assert config_mod.load(flag_file).daemon.log_level == "error"
    assert config_mod.locate(flag_file) == (flag_file, "flag")


def test_log_level_is_read_in_any_case(state_dir: Path) -> None:
    path = state_dir / "upper.toml"
    path.write_text('[daemon]\nlog_level = "DEBUG"\n')
    assert config_mod.load(path).daemon.log_level == "debug"
    path.write_text('[daemon]\nlog_level = "LOUD"\n')
    with pytest.raises(
        config_mod.ConfigError, match="expected one of debug, error, info, warning, got 'LOUD'"
    ):
        config_mod.load(path)


def test_metrics_listen_is_checked(state_dir: Path) -> None:
    bad = state_dir / "bad.toml"
    bad.write_text('[metrics]\nlisten = "9464"\n')
    with pytest.raises(config_mod.ConfigError, match=r"metrics\.listen: expected HOST:PORT"):
        config_mod.load(bad)
    assert config_mod.parse_listen("[::1]:9464") == ("::1", 9464)


def harness_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """The command line in this process (it only reads files: no daemon, no event loop)."""
    from harness.cli import main

    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_harness_config_says_where_each_value_came_from(
    xdg: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(state_dir))
    user = xdg / "harness" / "config.toml"
    user.parent.mkdir(parents=True)
    user.write_text(
        '[daemon]\nlog_level = "debug"\n\n[metrics]\nlisten = "127.0.0.1:9464"\n\n'
        '[plugins.discord]\nbot_token = "cfg-Secret-Tok3n"\nstatus_text = "on duty"\n'
    )
    rc, out, _ = harness_cli(capsys, "config", "--json")
    assert rc == 0
    report = msgspec.json.decode(out)
    assert report["file"] == str(user) and report["file_origin"] == "discovered"
    values = report["values"]
    assert values["daemon.log_level"] == {"value": "debug", "source": "file"}
    assert values["daemon.stop_timeout"] == {"value": 10.0, "source": "default"}
    assert values["metrics.listen"]["source"] == "file"
    assert values["socket_path"]["source"] == "env"  # XDG_RUNTIME_DIR decides it
    assert values["plugins.discord.bot_token"] == {"value": {"set": True}, "source": "file"}
    assert "cfg-Secret-Tok3n" not in out
    _, flagged, _ = harness_cli(capsys, "--socket", "/tmp/x.sock", "config", "--json")
    assert msgspec.json.decode(flagged)["values"]["socket_path"] == {
        "value": "/tmp/x.sock",
        "source": "flag",
        "detail": "--socket",
    }
    rc, human, _ = harness_cli(capsys, "config")
    assert rc == 0 and f"config file: {user} (found in the user config directory)" in human
    row = next(line for line in human.splitlines() if line.startswith("daemon.log_level"))
    assert row.split() == ["daemon.log_level", "debug", "file"]
    assert "cfg-Secret-Tok3n" not in human and "(set)" in human


def test_harness_config_lists_alerts_with_their_urls_redacted(
    xdg: Path, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """README and docs/operations.md say `harness config` lists every key: [alerts] was left
    out. Targets and the heartbeat URL carry the receiver's token, so they are redacted."""
    user = xdg / "harness" / "config.toml"
    user.parent.mkdir(parents=True)
    user.write_text(
        "[alerts]\n"
        'targets = {hook = "json://127.0.0.1:19000/hook?token=Hook-Secret-1",'
        ' tg = "tgram://123456:Tg-Secret-2/987"}\n'
        'heartbeat_url = "https://hc-ping.com/Beat-Secret-3"\n'
        'send_timeout = "10s"\n\n'
        '[alerts.rules.down]\nfor = "30s"\ntargets = ["hook"]\n'
    )
    rc, out, _ = harness_cli(capsys, "config", "--json")
    assert rc == 0
    values = msgspec.json.decode(out)["values"]
    assert values["alerts.send_timeout"] == {"value": "10s", "source": "file"}
    assert values["alerts.retry_max"] == {"value": "5m", "source": "default"}
    assert values["alerts.targets.hook"] == {"value": "json://127.0.0.1/…", "source": "file"}
    assert values["alerts.targets.tg"] == {"value": "tgram://…", "source": "file"}
    assert values["alerts.heartbeat_url"] == {"value": "https://hc-ping.com/…", "source": "file"}
    assert values["alerts.rules.down.for"] == {"value": "30s", "source": "file"}
    assert values["alerts.rules.down.send_resolved"] == {"value": True, "source": "default"}
    rc, human, _ = harness_cli(capsys, "config")
    assert rc == 0 and "alerts.rules.down.targets" in human
    for secret in ("Hook-Secret-1", "Tg-Secret-2", "Beat-Secret-3"):
        assert secret not in out and secret not in human


async def test_a_bad_plugin_table_is_refused_before_anything_is_created(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Found by discovery (no --config): the daemon reads the user config file by itself.
    (state_dir / "xdg-config" / "harness").mkdir(parents=True)
    cfg = write_config(
        state_dir,
        plugins={"discord": {"max_backoff": "abc"}},
        name="xdg-config/harness/config.toml",
    )
    result = await run_cli("run", env=subprocess_env(state_dir))
    assert result.rc == 2, result
    assert f"{cfg}: plugins.discord.max_backoff: expected a whole number" in result.err
    # No socket directory, no lock, no database: nothing on disk.
    assert not (state_dir / "run").exists() and not (state_dir / "state").exists()
    rc, _, err = harness_cli(capsys, "config", "--config", str(cfg))
    assert rc == 2 and "plugins.discord.max_backoff" in err


def test_the_tui_reads_the_user_config_file_too(
    xdg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tui.app import main

    user = xdg / "harness" / "config.toml"
    user.parent.mkdir(parents=True)
    user.write_text("[daemon]\nno_such_key = 1\n")
    assert main([]) == 2  # refused before Textual starts, naming the file it found
    assert f"harness-tui: {user}: daemon.no_such_key: unknown key" in capsys.readouterr().err
