"""What `harness run` says first when it cannot start, through the real command line: a second
daemon on a socket that has one (with the metrics endpoint on, whose port is busy too), and a
socket path longer than a Unix socket path can be; a client pointed at such a path too."""

from __future__ import annotations

from pathlib import Path

import msgspec

from harness.config import Config, MetricsConfig
from tests.conftest import StartDaemon, run_cli, subprocess_env, write_config


async def test_a_second_run_with_metrics_on_says_a_daemon_is_running(
    start_daemon: StartDaemon, config: Config, state_dir: Path
) -> None:
    daemon = await start_daemon(
        cfg=msgspec.structs.replace(config, metrics=MetricsConfig(listen="127.0.0.1:0"))
    )
    assert daemon.metrics is not None and daemon.metrics.address is not None
    path = write_config(state_dir, socket=config.daemon.socket, database=config.daemon.database)
    path.write_text(
        path.read_text() + f'\n[metrics]\nlisten = "127.0.0.1:{daemon.metrics.address[1]}"\n'
    )
    result = await run_cli("run", "--config", str(path), env=subprocess_env(state_dir))
    # Before: exit 2, "metrics.listen: cannot listen on 127.0.0.1:PORT: Address already in use".
    assert result.rc == 1, result
    assert "a harness daemon is already running" in result.err, result
    assert "metrics.listen" not in result.err, result


async def test_a_socket_path_too_long_is_a_usage_error_and_creates_nothing(
    state_dir: Path,
) -> None:
    where = state_dir / "fresh"
    long_socket = where / ("s" * 120 + ".sock")
    path = write_config(state_dir, socket=str(long_socket), database=str(where / "state.db"))
    result = await run_cli("run", "--config", str(path), env=subprocess_env(state_dir))
    # Before: exit 1, "harness: AF_UNIX path too long", a lock file and a database left behind.
    assert result.rc == 2, result
    assert "daemon.socket: the socket path" in result.err, result
    assert "at most 108" in result.err and "Choose a shorter one" in result.err, result
    assert not where.exists(), sorted(str(p) for p in where.rglob("*"))


async def test_a_client_given_a_socket_path_too_long_says_so(state_dir: Path) -> None:
    long_socket = state_dir / ("s" * 120 + ".sock")
    result = await run_cli("status", "--socket", str(long_socket), env=subprocess_env(state_dir))
    assert result.rc == 3, result
    # Before: "no daemon at PATH: AF_UNIX path too long", and nothing on what to do.
    assert "longer than the 108 bytes a Unix socket path can have" in result.err, result
    assert "use a shorter --socket PATH" in result.err, result
