"""The systemd unit files shipped with harness, filled in with this installation's paths."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

UNIT_NAME = "harness.service"


def template(system: bool) -> str:
    name = "harness.service" if system else "harness-user.service"
    return resources.files("harness.data").joinpath("systemd", name).read_text()


# systemd refuses an executable path with a quote, a backslash or a control character in it
# ("Executable name contains special characters"); env runs such a path given as an argument.
_ENV = "/usr/bin/env"
_REFUSED_IN_EXECUTABLE = frozenset("'\"\\") | {chr(c) for c in range(32)} | {chr(127)}


def command(config: str | None = None) -> list[str]:
    """The command systemd runs: this installation's ``harness`` script when it sits beside
    the interpreter (a venv, ``pipx``, ``uv tool``), else this interpreter with ``-m harness``."""
    script = Path(sys.executable).parent / "harness"
    argv = [str(script)] if script.is_file() else [sys.executable, "-m", "harness"]
    argv.append("run")
    if config:
        argv += ["--config", str(Path(config).expanduser().resolve())]
    return argv


def exec_start(config: str | None = None) -> str:
    """``command()`` as an ``ExecStart=`` value, quoted by systemd's rules, not a shell's:
    systemd knows no ``'"'"'`` and reads ``%`` as a specifier and ``$`` as a variable."""
    argv = command(config)
    if _REFUSED_IN_EXECUTABLE.intersection(argv[0]):
        argv = [_ENV, *argv]
    # The executable is neither expanded ($) nor allowed to hold what needs a backslash.
    return " ".join([_quote(argv[0], executable=True), *(_quote(a) for a in argv[1:])])


def _quote(arg: str, *, executable: bool = False) -> str:
    """One word of an ExecStart line, double-quoted (see systemd.service, "Command lines")."""
    out = []
    for ch in arg:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "%":
            out.append("%%")  # a specifier otherwise (%h, %u, ...)
        elif ch == "$" and not executable:
            out.append("$$")  # a variable otherwise ($HOME, ${X})
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def render(*, system: bool, config: str | None = None) -> str:
    return template(system).replace("@EXEC_START@", exec_start(config))


def user_unit_path() -> Path:
    """``$XDG_CONFIG_HOME/systemd/user/harness.service``, where the user manager looks."""
    import platformdirs

    return platformdirs.user_config_path("systemd") / "user" / UNIT_NAME


SYSTEM_UNIT_PATH = Path("/etc/systemd/system") / UNIT_NAME
