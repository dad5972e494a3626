"""Where harness's files are: the config file to read (and why), the default socket and
database, the user state directory. Stdlib only (platformdirs off Linux): a client command
finds its files without importing :mod:`harness.config` (msgspec, tomllib), which re-exports
all of these."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV_CONFIG = "HARNESS_CONFIG"
APP = "harness"


class ConfigError(Exception):
    """A configuration problem, already phrased for the operator (file, key, what was expected).

    Defined here, with the paths, so that a client command can report one without importing
    :mod:`harness.config`; ``harness.config.ConfigError`` is this class."""


def beside(value: str, file: str | os.PathLike[str]) -> str:
    """A path from the config ``file``: a relative one is relative to the file's directory.

    Each process used to resolve it against its own working directory, so a daemon started in
    one directory and a client (or the TUI) run in another read the same ``socket = "h.sock"``
    as two different sockets. Empty (the default) and absolute paths (``~`` expanded) are left
    as they are."""
    if not value:
        return value
    path = Path(value).expanduser()
    if path.is_absolute():
        return value
    return str(Path(file).absolute().parent / path)


def runtime_dir() -> Path:
    """Where the socket lives: ``$XDG_RUNTIME_DIR/harness``, else a private dir in the temp dir."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and Path(base).is_dir():
        return Path(base) / "harness"
    import tempfile

    return Path(tempfile.gettempdir()) / f"harness-{os.getuid()}"


def default_socket() -> Path:
    return runtime_dir() / "harness.sock"


def default_database() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "harness" / "state.db"


def user_config_file() -> Path:
    """``$XDG_CONFIG_HOME/harness/config.toml`` (``~/.config/harness/config.toml``)."""
    found = _xdg("XDG_CONFIG_HOME", ".config")
    if found is None:
        import platformdirs

        return platformdirs.user_config_path(APP) / "config.toml"
    return found / "config.toml"


def user_state_dir() -> Path:
    """``$XDG_STATE_HOME/harness`` (``~/.local/state/harness``): the current context's file."""
    found = _xdg("XDG_STATE_HOME", ".local/state")
    if found is None:
        import platformdirs

        return Path(platformdirs.user_state_dir(APP))
    return found


def _xdg(variable: str, default: str) -> Path | None:
    """platformdirs' answer for harness on Linux in the plain case, without importing it:
    importing platformdirs (it brings tempfile, shutil, bz2, lzma and random) cost a one-shot
    command as much as its request (docs/benchmarks.md, "cli").

    The plain case: Linux, not an Android app, and the variable set to an absolute path or
    else an absolute $HOME. There platformdirs' rule is the XDG one: the variable, else
    ``~/<default>``, then the app's name. Anything else (macOS, Windows, a relative $HOME or
    variable, no $HOME at all) gives None and platformdirs answers.
    ``tests/test_client_config.py`` compares the two."""
    if sys.platform != "linux" or hasattr(sys, "getandroidapilevel"):
        return None
    if os.environ.get("ANDROID_DATA") or os.environ.get("ANDROID_ROOT"):
        return None  # platformdirs looks further for an Android app: let it
    base = os.environ.get(variable, "")
    if base.startswith("/"):
        return Path(os.path.join(base, APP))
    home = os.environ.get("HOME", "")
    if not home.startswith("/"):
        return None
    return Path(os.path.join(os.path.expanduser("~/" + default), APP))


def locate(path: str | os.PathLike[str] | None = None) -> tuple[Path | None, str]:
    """Which file to read and why: ``flag`` (``--config``), ``env`` (``$HARNESS_CONFIG``),
    ``discovered`` (the user config file, when it exists), or ``(None, "default")``."""
    if path is not None:
        return Path(path).expanduser(), "flag"
    if env := os.environ.get(ENV_CONFIG):
        return Path(env).expanduser(), "env"
    found = user_config_file()
    if found.is_file():
        return found, "discovered"
    return None, "default"
