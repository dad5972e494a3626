"""The systemd unit files shipped with harness, filled in with this installation's paths."""

from __future__ import annotations

import shlex
import sys
from importlib import resources
from pathlib import Path

UNIT_NAME = "harness.service"


def template(system: bool) -> str:
    name = "harness.service" if system else "harness-user.service"
    return resources.files("harness.data").joinpath("systemd", name).read_text()


def exec_start(config: str | None = None) -> str:
    """The command systemd runs: this installation's ``harness`` script when it sits beside
    the interpreter (a venv, ``pipx``, ``uv tool``), else this interpreter with ``-m harness``."""
    script = Path(sys.executable).parent / "harness"
    argv = [str(script)] if script.is_file() else [sys.executable, "-m", "harness"]
    argv.append("run")
    if config:
        argv += ["--config", str(Path(config).expanduser().resolve())]
    return shlex.join(argv)


def render(*, system: bool, config: str | None = None) -> str:
    return template(system).replace("@EXEC_START@", exec_start(config))


def user_unit_path() -> Path:
    """``$XDG_CONFIG_HOME/systemd/user/harness.service``, where the user manager looks."""
    import platformdirs

    return platformdirs.user_config_path("systemd") / "user" / UNIT_NAME


SYSTEM_UNIT_PATH = Path("/etc/systemd/system") / UNIT_NAME
