"""The stream benchmark treats both sides alike: turns at going first, and server processes
started with the same hashing and allocator settings (harness/bench/stream.py)."""

from __future__ import annotations

from pathlib import Path

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
