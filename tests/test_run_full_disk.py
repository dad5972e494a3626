"""`harness run` where no file can grow (a full disk; here a file-size limit of 0 on the real
command, which fails a write the same way without needing a file system of its own to fill):
the error names the file it could not write."""

from __future__ import annotations

import asyncio
import resource
import sys
from pathlib import Path

from tests.conftest import HANG_GUARD, REPO_ROOT, subprocess_env, write_config


def no_file_may_grow() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # CPython ignores SIGXFSZ: EFBIG instead


async def test_a_lock_file_that_cannot_be_written_is_named(state_dir: Path) -> None:
    path = write_config(state_dir)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "harness",
        "run",
        "--config",
        str(path),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
        env=subprocess_env(state_dir),
        preexec_fn=no_file_may_grow,
    )
    try:
        async with asyncio.timeout(HANG_GUARD):
            _, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = err.decode()
    assert proc.returncode == 1, text
    # Before: "harness: cannot start: File too large", with no file named.
    lock = state_dir / "run" / "harness.sock.lock"
    assert f"cannot start: {lock}: File too large" in text, text
    assert "Traceback" not in text
