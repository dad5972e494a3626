"""`harness config` shows [contexts] and the context in use, each with its source, in a pipe."""

from __future__ import annotations

from pathlib import Path

import msgspec

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
