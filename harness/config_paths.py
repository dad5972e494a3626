"""Where harness's files are: the config file to read (and why), the default socket and
database. Stdlib and platformdirs only: a client command that needs no more than the default
socket finds it without importing :mod:`harness.config` (msgspec, tomllib), which re-exports
all of these."""

from __future__ import annotations

import os
from pathlib import Path

ENV_CONFIG = "HARNESS_CONFIG"


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
    import platformdirs

    return platformdirs.user_config_path("harness") / "config.toml"


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
