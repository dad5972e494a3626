"""A client command reads only its part of the config (harness/client_config.py): the daemon's
socket and the contexts, checked with the daemon's own words; a mistake elsewhere in the file
is for `harness run` and `harness config` to report, and no longer stops `harness status`."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import platformdirs
import pytest

from harness import client_config, config_paths
from harness import config as config_mod
from harness.config import Config, DaemonConfig
from tests.conftest import StartDaemon, run_cli, subprocess_env, write_config
from tests.sample_plugins import Echo

# Mistakes in the sections a client does not read: each one stops `harness run`.
DAEMONS_OWN = """
[alerts]
no_such_key = 1

[plugins.nope]
x = 1

[metrics]
listen = "9464"
"""


async def test_a_mistake_in_the_daemons_sections_does_not_stop_a_client(
    start_daemon: StartDaemon, config: Config, state_dir: Path
) -> None:
    await start_daemon(plugins={"echo": Echo})
    path = write_config(state_dir, socket=str(config.socket_path), log_level="loud")
    path.write_text(path.read_text() + DAEMONS_OWN + '\n[contexts.here]\nsocket = "/nowhere"\n')
    with pytest.raises(config_mod.ConfigError):
        config_mod.load(path)  # what `harness run` reads: refused
    env = subprocess_env(state_dir)
    status = await run_cli("status", "--json", "--config", str(path), env=env)
    assert status.rc == 0 and msgspec.json.decode(status.out)["pid"] == os.getpid(), status
    listed = await run_cli("--config", str(path), "plugins", "list", "--json", env=env)
    assert listed.rc == 0 and "echo" in listed.out, listed
    contexts = await run_cli("--config", str(path), "context", "list", "--json", env=env)
    assert contexts.rc == 0, contexts
    assert [c["name"] for c in msgspec.json.decode(contexts.out)] == ["default", "here"]
    # `harness config` checks the whole file as `harness run` does: exit 2, and it says what.
    for args in ((), ("--json",)):
        checked = await run_cli("--config", str(path), "config", *args, env=env)
        assert checked.rc == 2, checked
        assert f"{path}: " in checked.err and "fix the file" in checked.err, checked
        if args:  # --json: the error object on stdout too (docs/operations.md)
            error = msgspec.json.decode(checked.out)["error"]
            assert error["code"] == "config" and error["exit_code"] == 2, checked
        else:
            assert checked.out == "", checked


# Files with one problem in a client's part: the client says what the daemon's loader says.
BAD = [
    '[deamon]\nsocket = "/x"\n',
    'source = "/x"\n',
    "daemon = 1\n",
    "[daemon]\nsocket = 1\n",
    "[daemon]\nsocket = true\n",
    "[daemon]\nsocket = 1.5\n",
    '[daemon]\nsocket = ["/x"]\n',
    "[daemon]\nsocket = 1979-05-27\n",
    "[daemon]\nsocket = 1979-05-27T07:32:00\n",
    "[daemon]\nsocket = 07:32:00\n",
    "[daemon.socket]\nx = 1\n",
    '[daemon]\nsokcet = "/x"\n',
    "contexts = 1\n",
    '[contexts]\nprod = "x"\n',
    "[contexts]\nprod = 5\n",
    "[daemon\n",
    'a = "\\q"\n',
]


def test_a_client_words_a_problem_in_its_part_as_the_daemon_does(tmp_path: Path) -> None:
    for number, text in enumerate(BAD):
        path = tmp_path / f"bad{number}.toml"
        path.write_text(text)
        with pytest.raises(config_mod.ConfigError) as full:
            config_mod.load(path)
        with pytest.raises(config_mod.ConfigError) as client:
            client_config.load(path)
        assert str(client.value) == str(full.value), text
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[daemon]\nsocket = "/caf\xe9"\n')
    with pytest.raises(config_mod.ConfigError) as full:
        config_mod.load(path)
    with pytest.raises(config_mod.ConfigError) as client:
        client_config.load(path)
    assert str(client.value) == str(full.value)
    with pytest.raises(config_mod.ConfigError, match="cannot read the config file"):
        client_config.load(tmp_path / "missing.toml")


def test_a_client_reads_the_socket_and_contexts_the_daemon_reads(tmp_path: Path) -> None:
    path = tmp_path / "h.toml"
    path.write_text(
        '[daemon]\nsocket = "~/h.sock"\nlog_level = "debug"\n\n'
        '[contexts.prod]\nhost = "ssh://ops@prod"\nread_only = true\n'
    )
    full, client = config_mod.load(path), client_config.load(path)
    assert client.socket_path == full.socket_path == Path("~/h.sock").expanduser()
    assert client.contexts == full.contexts and client.source == full.source == str(path)
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert client_config.load(empty).socket_path == config_mod.load(empty).socket_path


def test_the_client_knows_the_daemons_sections_and_keys() -> None:
    assert set(client_config.SECTIONS) == set(Config.__struct_fields__) - {"source"}
    assert client_config.DAEMON_KEYS == DaemonConfig.__struct_fields__


async def test_a_bad_socket_value_still_stops_a_client_with_exit_2(state_dir: Path) -> None:
    path = write_config(state_dir, socket=5)
    result = await run_cli("status", "--json", "--config", str(path), env=subprocess_env(state_dir))
    assert result.rc == 2, result
    assert f"harness: {path}: daemon.socket: expected text, got a whole number" in result.err


@pytest.mark.parametrize("variable", ["XDG_CONFIG_HOME", "XDG_STATE_HOME"])
def test_the_xdg_rule_is_platformdirs_rule(
    variable: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """config_paths follows platformdirs' rule on Linux without importing it (or asks it)."""
    home = str(tmp_path / "home")
    for value in (None, "", "relative/dir", "/abs/dir", "/abs/dir/", "/", "~/x"):
        for home_value in (None, home, home + "/", "/", "relative-home"):
            for android in (None, "/data"):
                for name, setting in (
                    (variable, value),
                    ("HOME", home_value),
                    ("ANDROID_DATA", android),
                    ("ANDROID_ROOT", android and "/system"),
                ):
                    if setting is None:
                        monkeypatch.delenv(name, raising=False)
                    else:
                        monkeypatch.setenv(name, setting)
                try:
                    theirs: object = (
                        platformdirs.user_config_path("harness") / "config.toml",
                        Path(platformdirs.user_state_dir("harness")),
                    )
                except RuntimeError as exc:  # no home directory it can find
                    theirs = type(exc)
                try:
                    ours: object = (config_paths.user_config_file(), config_paths.user_state_dir())
                except RuntimeError as exc:
                    ours = type(exc)
                assert ours == theirs, (variable, value, home_value, android)
