"""The stream benchmark treats both sides alike: turns at going first, and server processes
started with the same hashing and allocator settings (harness/bench/stream.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.bench import stream
from harness.bench.stream import ServerProcess, server_env, turns


def test_raw_and_daemon_take_turns_at_going_first() -> None:
    assert turns(1) == [("raw", "daemon")]
    rounds = turns(4)
    assert [first for first, _ in rounds].count("raw") == 2
    assert [first for first, _ in rounds].count("daemon") == 2
    assert all(sorted(r) == ["daemon", "raw"] for r in rounds)


def test_every_server_process_starts_with_the_same_hashing_and_malloc_settings(
    tmp_path: Path,
) -> None:
    wanted = server_env({})
    assert wanted["PYTHONHASHSEED"] == "0"
    assert {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"} <= set(wanted)
    server = ServerProcess("raw", tmp_path)
    server.start()
    try:
        environ = Path(f"/proc/{server.proc.pid}/environ").read_bytes().split(b"\0")
        got = dict(e.decode().split("=", 1) for e in environ if b"=" in e)
        assert {k: got.get(k) for k in wanted} == wanted
    finally:
        server.stop()


def test_a_run_whose_subscriber_was_cut_off_under_load_is_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a loaded machine the reader process can starve until either server cuts it off
    (16 MiB behind): that run measures the load, so it is made again once the server has
    finished publishing; a third cut-off in a row still fails the benchmark."""
    server = ServerProcess("raw", tmp_path)
    server.start()
    try:
        calls: list[int] = []

        def flaky(s: ServerProcess, subscribers: int, count: int, rate: int) -> dict[str, Any]:
            calls.append(count)
            if len(calls) == 1:
                raise stream.CutOff("raw: a subscriber missed events: [5]")
            return {"counts": [count]}

        monkeypatch.setattr(stream, "measure", flaky)
        assert stream.measure_kept_up(server, 1, 10) == {"counts": [10]}
        assert calls == [10, 10]
        assert "cut off under load; made again" in capsys.readouterr().out

        def always(s: ServerProcess, subscribers: int, count: int, rate: int) -> dict[str, Any]:
            raise stream.CutOff("raw: a subscriber missed events: [5]")

        monkeypatch.setattr(stream, "measure", always)
        with pytest.raises(stream.CutOff):
            stream.measure_kept_up(server, 1, 10)
    finally:
        server.stop()
