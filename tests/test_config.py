"""Configuration: TOML decoding with embedded defaults, and errors that name file, key and type —
both from load() and from `harness run --config BAD` (exit 2)."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest

from harness import config as config_mod
from harness.config import Config, ConfigError, DaemonConfig, load
from tests.conftest import run_cli, subprocess_env


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


# -- good files and defaults -------------------------------------------------------------------


def test_no_file_and_no_env_means_the_embedded_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HARNESS_CONFIG", raising=False)
    assert load() == Config()
    d = DaemonConfig()
    assert (d.log_level, d.stop_timeout, d.client_queue_frames) == ("info", 10.0, 10_000)


def test_a_full_file_is_decoded_into_typed_values(state_dir: Path) -> None:
    path = write(
        state_dir / "c.toml",
        """
[daemon]
socket = "~/h.sock"
database = "/var/tmp/h.db"
log_level = "debug"
stop_timeout = 3
event_retention_days = 0.5
event_retention_max = 10
client_queue_frames = 64

[plugins.discord]
status_text = "hi"
members_intent = true
""",
    )
    cfg = load(path)
    assert cfg.source == str(path)
    assert cfg.socket_path == Path.home() / "h.sock"
    assert cfg.database_path == Path("/var/tmp/h.db")
    assert cfg.daemon.stop_timeout == 3.0 and isinstance(cfg.daemon.stop_timeout, float)
    assert (cfg.daemon.log_level, cfg.daemon.client_queue_frames) == ("debug", 64)
    assert cfg.plugins == {"discord": {"status_text": "hi", "members_intent": True}}


def test_harness_config_env_is_read_when_no_path_is_given(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(state_dir / "env.toml", '[daemon]\nlog_level = "error"\n')
    monkeypatch.setenv("HARNESS_CONFIG", str(path))
    assert load().daemon.log_level == "error"
    assert load(None).source == str(path)


def test_default_paths_follow_xdg(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(state_dir))
    monkeypatch.setenv("XDG_STATE_HOME", str(state_dir / "st"))
    cfg = Config()
    assert cfg.socket_path == state_dir / "harness" / "harness.sock"
    assert cfg.database_path == state_dir / "st" / "harness" / "state.db"
    # A runtime dir that does not exist: a private directory of our own under the temp dir.
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(state_dir / "missing"))
    assert config_mod.runtime_dir() == Path(tempfile.gettempdir()) / f"harness-{os.getuid()}"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert Config().database_path == Path.home() / ".local" / "state" / "harness" / "state.db"


# -- errors ------------------------------------------------------------------------------------

BAD_FILES: list[tuple[str, str | bytes, list[str]]] = [
    ("invalid toml", "[daemon\nsocket = 1\n", ["not valid TOML", "line 1"]),
    ("not utf-8", b'[daemon]\nsocket = "\xff\xfe"\n', ["not valid TOML"]),
    ("unknown top-level key", 'colour = "red"\n', ["colour: unknown key"]),
    ("unknown daemon key", '[daemon]\nsockt = "/x"\n', ["daemon.sockt: unknown key"]),
    (
        "wrong type",
        '[daemon]\nstop_timeout = "soon"\n',
        ["daemon.stop_timeout: expected a number, got text"],
    ),
    (
        "wrong integer type",
        "[daemon]\nclient_queue_frames = 1.5\n",
        ["daemon.client_queue_frames: expected a whole number, got a number with a fraction"],
    ),
    ("bad log level", '[daemon]\nlog_level = "loud"\n', ["daemon.log_level", "'loud'"]),
    ("daemon not a table", "daemon = 5\n", ["daemon: expected a table, got a whole number"]),
    (
        "either of two types",
        "[alerts]\ntargets = 5\n",
        ["alerts.targets: expected a table or a list, got a whole number"],
    ),
    (
        "alerts setting of the wrong type",
        '[alerts]\nhistory_max = "lots"\n',
        ["alerts.history_max: expected a whole number, got text"],
    ),
    (
        "plugin table value of the wrong type",
        "[plugins]\ndiscord = 5\n",
        ["plugins.discord: expected a table of settings", "got a whole number"],
    ),
    ("plugins not a table", "plugins = [1]\n", ["plugins: expected a table, got a list"]),
    ("internal field as a key", 'source = "/etc/x"\n', ["source: unknown key"]),
]


@pytest.mark.parametrize(
    ("text", "words"), [(t, w) for _, t, w in BAD_FILES], ids=[b[0] for b in BAD_FILES]
)
def test_a_bad_file_names_the_file_and_the_problem(
    state_dir: Path, text: str | bytes, words: list[str]
) -> None:
    path = write(state_dir / "bad.toml", text)
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    for word in words:
        assert word in message, message


def test_a_missing_or_unreadable_file_is_named(state_dir: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file: No such file"):
        load(state_dir / "absent.toml")
    with pytest.raises(ConfigError, match="cannot read the config file: Is a directory"):
        load(state_dir)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_a_file_without_read_permission_is_named(state_dir: Path) -> None:
    path = write(state_dir / "secret.toml", "")
    path.chmod(0)
    with pytest.raises(ConfigError, match="Permission denied"):
        load(path)


# -- `harness run --config BAD` exits 2 with the message ----------------------------------------

RUN_ERRORS: list[tuple[str, str | None, list[str]]] = [
    ("missing file", None, ["cannot read the config file"]),
    ("invalid toml", "[daemon\n", ["not valid TOML"]),
    ("unknown key", '[daemon]\nsockt = "/x"\n', ["daemon.sockt: unknown key"]),
    (
        "wrong type",
        '[daemon]\nstop_timeout = "soon"\n',
        ["daemon.stop_timeout: expected a number, got text"],
    ),
    (
        "unknown plugin table",
        "[plugins.nope]\nx = 1\n",
        ["plugins.nope: no such plugin (installed: discord)"],
    ),
    (
        "plugin table of the wrong type",
        '[plugins]\ndiscord = "on"\n',
        ["plugins.discord: expected a table of settings ([plugins.discord]), got text"],
    ),
    (
        "plugin setting of the wrong type",
        '[plugins.discord]\nmax_backoff = "long"\n',
        ["plugins.discord.max_backoff: expected a whole number, got text"],
    ),
    (
        "plugin setting out of range",
        "[plugins.discord]\nmax_backoff = 0\n",
        ["plugins.discord.max_backoff: must be at least 1"],
    ),
    (
        "unknown plugin setting",
        '[plugins.discord]\ntokn = "x"\n',
        ["plugins.discord.tokn: unknown setting"],
    ),
]


def _paths(state_dir: Path) -> str:
    return f'[daemon]\nsocket = "{state_dir}/run/h.sock"\ndatabase = "{state_dir}/state/state.db"\n'


# Every error through --config; through $HARNESS_CONFIG one per stage (finding the file,
# reading it, the plugins' checks): either way config_paths.locate names the file and the same
# code loads and checks it, and each case is a `harness run` process of its own.
THROUGH_ENV = {"missing file", "invalid toml", "unknown plugin setting"}


@pytest.mark.parametrize(
    ("text", "words", "via"),
    [
        pytest.param(t, w, via, id=f"{name}-{via}")
        for name, t, w in RUN_ERRORS
        for via in ("option", "env")
        if via == "option" or name in THROUGH_ENV
    ],
)
async def test_run_with_a_bad_config_exits_2_with_the_message(
    state_dir: Path, text: str | None, words: list[str], via: str
) -> None:
    path = state_dir / "bad.toml"
    if text is not None:
        # Paths under state_dir, so a start that got further than it should stays sandboxed.
        body = text if text.startswith("[daemon") else _paths(state_dir) + text
        path.write_text(body)
    if via == "option":
        result = await run_cli("run", "--config", str(path), env=subprocess_env(state_dir))
    else:
        result = await run_cli("run", env=subprocess_env(state_dir, HARNESS_CONFIG=str(path)))
    assert result.rc == 2, result
    assert result.err.startswith(f"harness: {path}: "), result.err
    for word in words:
        assert word in result.err
    # Python's type names are not the file's words: "got str" meant "a quoted value".
    assert not re.search(r"got `?(str|int|float|bool|array|object)\b", result.err), result.err
    assert "Traceback" not in result.err
    assert not (state_dir / "run" / "h.sock").exists()
