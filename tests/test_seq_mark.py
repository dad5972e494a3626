"""No seq is handed out twice, even by a daemon that died while storage was failing: real
`harness run` subprocesses on a database capped by ``HARNESS_DB_MAX_PAGES`` (SQLITE_FULL, as on
a full disk), killed with SIGKILL (or stopped with SIGTERM) while events it published were not
stored, then started again with room; a client resumes with ``harness events --since``. And the
mark file itself (harness/seq_mark.py): torn or foreign contents, one write per reservation."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
from pathlib import Path

import pytest

from harness.seq_mark import STEP, SeqMark, path_for
from harness.store import MAX_PAGES_ENV
from tests import ext_plugins
from tests.conftest import HANG_GUARD, REPO_ROOT, SpawnDaemon, run_cli, subprocess_env, write_config


def stored_seqs(db: Path) -> list[tuple[int, str, dict[str, object]]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT seq, name, data FROM events ORDER BY seq").fetchall()
    return [(s, n, json.loads(d)) for s, n, d in rows]


async def wait_for_file(path: Path, timeout: float = 60.0) -> str:
    async with asyncio.timeout(timeout):
        while not path.exists():  # noqa: ASYNC110 - a file, not an event, is the signal
            await asyncio.sleep(0.02)
    return path.read_text()


async def fill_then_stop(
    spawn_daemon: SpawnDaemon, state_dir: Path, how: signal.Signals
) -> tuple[Path, Path, dict[str, str], int]:
    """A daemon whose storage fills up publishes pulses it cannot store, then ends by ``how``.
    Returns the config, the database, the environment and the last pulse's seq."""
    site = ext_plugins.install(state_dir / "site", fill="tests.ext_plugins:Fill")
    config = write_config(state_dir)
    db = state_dir / "state" / "state.db"
    trigger = state_dir / "fill"
    env = subprocess_env(state_dir, PYTHONPATH=f"{site}{os.pathsep}{REPO_ROOT}")
    full = dict(env, FILL_TRIGGER=str(trigger), **{MAX_PAGES_ENV: "64"})
    first = await spawn_daemon(config, env=full)
    trigger.write_text("go")
    last_pulse = int(await wait_for_file(Path(f"{trigger}.done")))
    # The pulses were published (a client could have seen them) and not stored.
    assert last_pulse > max(s for s, _, _ in stored_seqs(db))
    first.proc.send_signal(how)
    await first.wait(HANG_GUARD)
    return config, db, env, last_pulse


async def test_a_daemon_killed_while_storage_fails_never_hands_its_seqs_out_again(
    spawn_daemon: SpawnDaemon, state_dir: Path
) -> None:
    config, db, env, last_pulse = await fill_then_stop(spawn_daemon, state_dir, signal.SIGKILL)
    stored_before = max(s for s, _, _ in stored_seqs(db))

    await spawn_daemon(config, env=env)  # room again: no cap
    # A client that saw the last pulse live resumes after it: it must get what the new daemon
    # did since (its start, the plugin's connection), with seqs after the pulse, and the gap.
    resumed = await run_cli(
        "events", "--since", str(last_pulse), "--json", "--config", str(config), env=env, timeout=60
    )
    assert resumed.rc == 0, resumed
    events = [json.loads(line) for line in resumed.out.splitlines()]
    assert events, "nothing after the last pulse: the new daemon reused its seqs"
    assert all(e["seq"] > last_pulse for e in events), events
    gap = events[0]
    assert gap["event"] == "daemon:storage" and gap["data"]["state"] == "recovered", events
    assert gap["data"]["cause"] == "disk full"
    assert gap["data"]["first_unpersisted"] == stored_before + 1
    assert gap["data"]["last_unpersisted"] >= last_pulse
    assert gap["data"]["restarted"]
    assert any(e["event"] == "fill:connection" for e in events[1:]), events
    # Every seq in the database is unique and the new ones come after the whole lost range.
    rows = stored_seqs(db)
    after = [s for s, _, _ in rows if s > stored_before]
    assert after and min(after) > gap["data"]["last_unpersisted"]
    assert gap["data"]["last_unpersisted"] < last_pulse + STEP + 2  # a reservation, no more


async def test_a_clean_stop_while_storage_fails_records_the_exact_gap(
    spawn_daemon: SpawnDaemon, state_dir: Path
) -> None:
    config, db, env, last_pulse = await fill_then_stop(spawn_daemon, state_dir, signal.SIGTERM)
    stored_before = max(s for s, _, _ in stored_seqs(db))
    await spawn_daemon(config, env=env)
    resumed = await run_cli(
        "events", "daemon:storage", "--since", str(last_pulse), "--json", "--config",
        str(config), env=env, timeout=60,
    )  # fmt: skip
    assert resumed.rc == 0, resumed
    (gap,) = [json.loads(line) for line in resumed.out.splitlines()]
    # The stop published each plugin's "stopped" after the pulses: unstored too, and counted.
    assert gap["data"]["first_unpersisted"] == stored_before + 1
    assert last_pulse < gap["data"]["last_unpersisted"] < last_pulse + 10
    assert gap["seq"] == gap["data"]["last_unpersisted"] + 1

    # Once the gap is on record the mark is cleared: a later restart skips nothing.
    mark = SeqMark.open(db)
    try:
        assert mark.lost(0) is None
    finally:
        mark.close()


def test_a_torn_or_foreign_mark_is_started_anew(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    path_for(db).write_bytes(b"not a mark")
    mark = SeqMark.open(db)
    try:
        assert mark.lost(0) is None
        assert path_for(db).stat().st_size == 128  # written whole: later writes are in place
    finally:
        mark.close()


def test_one_write_per_reservation_and_the_file_never_grows(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    mark = SeqMark.open(db)
    try:
        writes = 0
        real = os.pwrite

        def counting(fd: int, data: bytes, offset: int) -> int:
            nonlocal writes
            writes += 1
            return real(fd, data, offset)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(os, "pwrite", counting)
            for seq in range(10, 10 + 2 * STEP):
                mark.cover(seq, 10, 1.0, "disk full")
        assert writes == 2
        assert path_for(db).stat().st_size == 128
    finally:
        mark.close()
    reopened = SeqMark.open(db)
    try:
        lost = reopened.lost(9)
        assert lost is not None and (lost.first, lost.last) == (10, 10 + 2 * STEP - 1)
        assert reopened.lost(10 + 2 * STEP) is None  # the database has it all: nothing lost
    finally:
        reopened.close()


def test_a_failure_before_the_last_range_is_on_record_keeps_that_range_whole(
    tmp_path: Path,
) -> None:
    """The start's own gap record not stored (storage fails again at once): the mark goes on
    covering from the previous daemon's first unstored seq, not from the new failure's."""
    db = tmp_path / "state.db"
    mark = SeqMark.open(db)
    mark.cover(11, 11, 100.0, "disk full")  # the previous daemon: 11.. unstored
    mark.close()
    mark = SeqMark.open(db)
    try:
        lost = mark.lost(10)
        assert lost is not None and (lost.first, lost.last) == (11, 10 + STEP)
        mark.cover(lost.last + 1, lost.last + 1, 200.0, "I/O error")  # its gap record
    finally:
        mark.close()
    mark = SeqMark.open(db)
    try:
        again = mark.lost(10)
        assert again is not None and (again.first, again.last) == (11, 10 + 2 * STEP)
        assert again.failed_since == 100.0
    finally:
        mark.close()
