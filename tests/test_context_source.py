"""A context that does not exist, chosen by $HARNESS_CONTEXT or by `harness context use`: the
error says which chose it and a way out that works for that one, through the real CLI."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli, subprocess_env


async def test_an_unknown_context_names_what_chose_it(state_dir: Path) -> None:
    cfg = state_dir / "ctx.toml"
    cfg.write_text('[contexts.lab]\nsocket = "/run/lab.sock"\n')

    by_env = await run_cli(
        "status", "--config", str(cfg), env=subprocess_env(state_dir, HARNESS_CONTEXT="nope")
    )
    # Before: "(the current context ($HARNESS_CONTEXT or …/context))", and the advice
    # `harness context use default`, which changes nothing while $HARNESS_CONTEXT is set.
    assert by_env.rc == 2, by_env
    assert "no context named 'nope' (from $HARNESS_CONTEXT)" in by_env.err, by_env
    assert "unset HARNESS_CONTEXT" in by_env.err and "context use" not in by_env.err, by_env

    state = state_dir / "xdg-state" / "harness"
    state.mkdir(parents=True)
    (state / "context").write_text("gone\n")
    by_file = await run_cli("status", "--config", str(cfg), env=subprocess_env(state_dir))
    assert by_file.rc == 2, by_file
    assert "no context named 'gone' (from `harness context use`, in " in by_file.err, by_file
    assert "`harness context use default`" in by_file.err, by_file

    by_flag = await run_cli(
        "status", "--config", str(cfg), "--context", "zz", env=subprocess_env(state_dir)
    )
    assert by_flag.rc == 2 and "no context named 'zz' (from --context)" in by_flag.err, by_flag
