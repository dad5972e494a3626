"""`harness config` shows [contexts] and the context in use, each with its source, in a pipe."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from tests.conftest import run_cli, subprocess_env, write_config

CONTEXTS = """
[contexts.prod]
host = "ssh://ops@prod.example:2222"
read_only = true

[contexts.lab]
socket = "/run/lab/harness.sock"
"""


async def test_config_shows_contexts_with_their_source(state_dir: Path) -> None:
    path = write_config(state_dir)
    path.write_text(path.read_text() + CONTEXTS)
    env = subprocess_env(state_dir)
    result = await run_cli("--config", str(path), "config", "--json", env=env)
    assert result.rc == 0, result
    values = msgspec.json.decode(result.out)["values"]
    assert values["contexts.prod.host"] == {
        "value": "ssh://ops@prod.example:2222",
        "source": "file",
    }
    assert values["contexts.prod.read_only"] == {"value": True, "source": "file"}
    assert values["contexts.prod.remote_harness"] == {"value": "harness", "source": "default"}
    assert values["contexts.lab.socket"] == {"value": "/run/lab/harness.sock", "source": "file"}
    assert values["contexts.lab.read_only"] == {"value": False, "source": "default"}
    assert "contexts.lab.host" not in values and "contexts.lab.remote_harness" not in values
    assert values["context"] == {"value": "default", "source": "default"}

    # The context in use, and what chose it: --context, then $HARNESS_CONTEXT.
    flagged = await run_cli("--config", str(path), "config", "--json", "--context", "lab", env=env)
    assert msgspec.json.decode(flagged.out)["values"]["context"] == {
        "value": "lab",
        "source": "flag",
        "detail": "--context",
    }
    env_chosen = subprocess_env(state_dir, HARNESS_CONTEXT="prod")
    result = await run_cli("--config", str(path), "config", env=env_chosen)
    assert result.rc == 0, result
    rows = {line.split()[0]: line.split()[1:] for line in result.out.splitlines() if line.strip()}
    assert rows["contexts.prod.host"] == ["ssh://ops@prod.example:2222", "file"]
    assert rows["contexts.lab.socket"] == ["/run/lab/harness.sock", "file"]
    assert rows["context"] == ["prod", "env", "($HARNESS_CONTEXT)"]


async def test_a_bad_context_table_is_a_config_error(state_dir: Path) -> None:
    path = write_config(state_dir)
    path.write_text(path.read_text() + '\n[contexts.both]\nhost = "ssh://a"\nsocket = "/b"\n')
    result = await run_cli("--config", str(path), "config", env=subprocess_env(state_dir))
    assert result.rc == 2, result
    assert f"{path}: contexts.both: set exactly one of host and socket" in result.err


@pytest.mark.parametrize(
    ("table", "said"),
    [
        (
            "[contexts.prod]\nsocket = 5\n",
            "contexts.prod.socket: expected text, got a whole number",
        ),
        ('[contexts.prod]\nsockt = "/x"\n', "contexts.prod.sockt: unknown key"),
        (
            '[contexts.prod]\nsocket = "/x"\nread_only = "yes"\n',
            "contexts.prod.read_only: expected true or false, got text",
        ),
        ("[contexts]\nprod = 5\n", "contexts.prod: expected a table ([contexts.prod] with host"),
        (
            '[contexts.prod]\nhost = "http://a"\n',
            "contexts.prod.host: 'http://a': only ssh://",
        ),
    ],
)
async def test_context_errors_name_the_key_as_the_file_has_it(
    state_dir: Path, table: str, said: str
) -> None:
    # As every other config error does (daemon.max_clients: expected ...): the TOML path, in
    # the file's words, never msgspec's `contexts[...]` or `$.socket`.
    path = write_config(state_dir)
    path.write_text(path.read_text() + "\n" + table)
    env = subprocess_env(state_dir)
    commands = [("--context", "prod", "status")]
    if "socket = 5" in table:  # `harness config` checks the same way (it is slower: once)
        commands.append(("config",))
    for argv in commands:
        result = await run_cli("--config", str(path), *argv, env=env)
        assert result.rc == 2, result
        assert f"{path}: {said}" in result.err, result
        assert "[...]" not in result.err and "$." not in result.err and "Expected" not in result.err
