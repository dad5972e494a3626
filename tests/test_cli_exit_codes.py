"""Every command keeps to the documented exit codes (0 ok, 1 failed, 2 usage/config, 3 no
daemon) when the socket's place cannot be trusted: that is the operator's setup to fix, so 2,
with a message that says what to fix (real subprocesses)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli, subprocess_env

CLIENT_COMMANDS = (
    ("status",),
    ("events", "-n", "1"),
    ("plugins", "list"),
    ("plugins", "show", "discord"),
    ("alerts",),
    ("silence", "list"),
)


@pytest.mark.parametrize("command", CLIENT_COMMANDS, ids=lambda c: " ".join(c))
async def test_a_socket_in_a_directory_anyone_may_write_is_a_setup_error(
    state_dir: Path, command: tuple[str, ...]
) -> None:
    open_dir = state_dir / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)  # not sticky: anyone could have put a socket there
    socket = str(open_dir / "h.sock")
    result = await run_cli(*command, "--socket", socket, env=subprocess_env(state_dir))
    assert result.rc == 2, result
    assert "writable by every user" in result.err and "chmod 700" in result.err, result
    assert result.out == ""
