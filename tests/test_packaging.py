"""Install as a tool: the wheel built from this tree installs into a fresh venv, carries its
licence, unit files and example config, and both commands run from it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

from tests.conftest import REPO_ROOT


def run(*argv: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"{argv}: {result.stdout}\n{result.stderr}"
    return result.stdout


def test_the_wheel_installs_into_a_fresh_venv_and_both_commands_run(tmp_path: Path) -> None:
    # One test, everything in tmp_path: the tree is copied first, because a build writes
    # build/ and *.egg-info next to the sources. No build isolation: the build backend comes
    # with the test extras, which saves setting up a build environment on every run.
    source = tmp_path / "src"
    shutil.copytree(
        REPO_ROOT,
        source,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            "venv",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            ".*_cache",
            "tests",
            "snapshot_report.html",
        ),
    )
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        tmp_path,
        source,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("harness_daemon-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
    assert {
        "harness/data/config.example.toml",
        "harness/data/systemd/harness.service",
        "harness/data/systemd/harness-user.service",
        "tui/app.tcss",
    } <= names
    assert not any(n.startswith("tests/") for n in names)

    # A fresh venv with the wheel and nothing else; its dependencies are borrowed from this
    # interpreter's site-packages (appended by a .pth file, so the wheel's own copy of harness
    # comes first) rather than downloaded again.
    fresh = tmp_path / "venv"
    venv.create(fresh, with_pip=False)
    python = fresh / "bin" / "python"
    site = Path(
        run(
            python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path
        ).strip()
    )
    (site / "borrowed-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--no-deps",
        "-q",
        wheel,
        cwd=tmp_path,
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HARNESS_CONFIG")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    where = run(
        python,
        "-c",
        "import harness, tui; print(harness.__file__, tui.__file__)",
        cwd=tmp_path,
        env=env,
    )
    assert all(path.startswith(str(fresh)) for path in where.split()), where

    bin_dir = fresh / "bin"
    assert run(bin_dir / "harness", "--version", cwd=tmp_path, env=env).startswith("harness ")
    assert run(bin_dir / "harness-tui", "--version", cwd=tmp_path, env=env).startswith(
        "harness-tui "
    )
    assert "service" in run(bin_dir / "harness", "--help", cwd=tmp_path, env=env)
    example = run(bin_dir / "harness", "config", "--example", cwd=tmp_path, env=env)
    assert example == (REPO_ROOT / "config.example.toml").read_text()
    unit = run(bin_dir / "harness", "service", "install", "--print", cwd=tmp_path, env=env)
    assert f'ExecStart="{bin_dir / "harness"}" "run"' in unit
