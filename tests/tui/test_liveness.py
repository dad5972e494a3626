"""A daemon that stops answering while its socket stays open (SIGSTOP): the TUI says so within
the ping interval, stops claiming the connection as current, and comes back by itself on
SIGCONT or on a new daemon (a real `harness run` subprocess, the real app under its pilot)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from textual.widgets import Static

from harness import config as config_mod
from harness import contexts, liveness, transport
from harness.client import Client, DaemonUnavailable
from tests import ext_plugins
from tests.conftest import REPO_ROOT, DaemonProcess, SpawnDaemon, subprocess_env, write_config
from tests.sshd import Sshd, running_sshd
from tests.tui.conftest import make_app, screen_text, until
from tui.screens.fleet import FleetScreen
from tui.widgets.connection_status import ConnectionStatus

TOKEN = "liveness-t0ken"
PING = "0.3"  # seconds: the test's ping interval (the default is 5 s)


@contextlib.contextmanager
def stopped(daemon: DaemonProcess) -> Iterator[None]:
    """The daemon frozen (SIGSTOP) inside the block, resumed (SIGCONT) however it ends."""
    os.kill(daemon.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):  # killed meanwhile
            os.kill(daemon.pid, signal.SIGCONT)


@pytest.fixture
def daemon_env(state_dir: Path) -> dict[str, str]:
    site = ext_plugins.install(state_dir / "site", echo="tests.sample_plugins:Echo")
    return subprocess_env(state_dir, PYTHONPATH=f"{site}{os.pathsep}{REPO_ROOT}")


@pytest.fixture
def config_path(state_dir: Path) -> Path:
    return write_config(state_dir, plugins={"echo": {"token": TOKEN}})


async def test_stopped_daemon_is_shown_as_not_responding_then_recovers(
    spawn_daemon: SpawnDaemon,
    daemon_env: dict[str, str],
    config_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(liveness.ENV_INTERVAL, PING)
    daemon = await spawn_daemon(config_path, env=daemon_env)
    config = config_mod.load(config_path)
    app = make_app(config, plugin="echo")
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.link.online)
        indicator = app.screen.query_one(ConnectionStatus)
        await until(pilot, lambda: indicator.text.startswith("● Connected as EchoBot"))

        with stopped(daemon):
            await until(pilot, lambda: not app.link.responding)
            await until(pilot, lambda: "daemon not responding" in screen_text(app))
            assert "daemon online" not in screen_text(app)
            assert not app.link.online  # so nothing offers to change settings meanwhile
            # The indicator no longer states "Connected" as the truth of now, and says why
            # and since when in words (the dimming is not all there is).
            text = indicator.text
            assert text.startswith("? last known: ● Connected as EchoBot"), text
            assert "daemon not responding — last known" in text
            assert "not responding" in app.link.detail
            note = app.screen.query_one("#form-note", Static)
            await until(pilot, lambda: "daemon is not responding" in str(note.render()))
            # A new connection meanwhile is told the same, not "no daemon".
            with pytest.raises(
                DaemonUnavailable, match=r"the daemon at .* is not responding \(no welcome within"
            ):
                await Client.connect(config.socket_path, timeout=0.3)

        # SIGCONT: the same connection answers again, and is live (a change arrives).
        await until(pilot, lambda: app.link.online and app.link.responding)
        await until(pilot, lambda: "daemon online" in screen_text(app))
        assert indicator.text.startswith("● Connected as EchoBot")
        client = await Client.connect(config.socket_path)
        try:
            await client.request("plugins.update_settings", name="echo", settings={"prefix": "Re"})
        finally:
            await client.close()
        await until(pilot, lambda: indicator.text.startswith("● Connected as ReBot"))


async def test_stopped_then_killed_daemon_goes_offline_and_a_new_one_is_picked_up(
    spawn_daemon: SpawnDaemon,
    daemon_env: dict[str, str],
    config_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(liveness.ENV_INTERVAL, PING)
    daemon = await spawn_daemon(config_path, env=daemon_env)
    app = make_app(config_mod.load(config_path))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.link.online)
        with stopped(daemon):
            await until(pilot, lambda: not app.link.responding)
            daemon.kill()  # SIGKILL reaches a stopped process
            await daemon.wait()
        # The connection closes: an ordinary outage from here, aged from the last word heard.
        await until(pilot, lambda: app.link.responding and not app.link.online)
        await until(pilot, lambda: "daemon offline" in screen_text(app))
        await spawn_daemon(config_path, env=daemon_env)
        await until(pilot, lambda: app.link.online)
        await until(pilot, lambda: "daemon online" in screen_text(app))


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    with running_sshd() as server:
        yield server


async def test_over_ssh_a_stopped_daemon_is_not_responding_then_recovers(
    spawn_daemon: SpawnDaemon,
    daemon_env: dict[str, str],
    config_path: Path,
    sshd: Sshd,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The server side (`harness dial-stdio` under sshd) reads the daemon's config; this side
    # has no database of its own: everything comes over ssh.
    sshd.authorize(env={"HARNESS_CONFIG": str(config_path)})
    monkeypatch.setenv(transport.ENV_SSH, sshd.ssh_env)
    monkeypatch.setenv(liveness.ENV_INTERVAL, PING)
    daemon = await spawn_daemon(config_path, env=daemon_env)
    local = config_mod.load(config_path)
    local = msgspec.structs.replace(
        local, daemon=msgspec.structs.replace(local.daemon, database=str(tmp_path / "none.db"))
    )
    app = make_app(local, target=contexts.resolve(local, host=sshd.url), plugin="echo")
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.link.online)
        indicator = app.screen.query_one(ConnectionStatus)
        await until(pilot, lambda: indicator.text.startswith("● Connected as EchoBot"))
        with stopped(daemon):
            await until(pilot, lambda: not app.link.responding)
            await until(pilot, lambda: "daemon not responding" in screen_text(app))
            assert indicator.text.startswith("? last known: ● Connected as EchoBot")
        await until(pilot, lambda: app.link.online and app.link.responding)
        await until(pilot, lambda: "daemon online" in screen_text(app))


async def test_fleet_shows_a_stopped_daemon_as_not_responding_then_live(
    spawn_daemon: SpawnDaemon,
    daemon_env: dict[str, str],
    config_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(liveness.ENV_INTERVAL, PING)
    daemon = await spawn_daemon(config_path, env=daemon_env)
    config = config_mod.load(config_path)
    config = msgspec.structs.replace(
        config, contexts={"frozen": {"socket": str(config.socket_path)}}
    )
    app = make_app(config, fleet=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, FleetScreen))
        screen = app.screen
        assert isinstance(screen, FleetScreen)
        member = screen.members["frozen"]
        await until(pilot, lambda: member.online and "echo" in member.connections, 15)
        with stopped(daemon):
            await until(pilot, lambda: not member.responding)
            await until(pilot, lambda: "? frozen  not responding" in screen_text(app))
            assert "not responding" in member.reason and not member.online
        await until(pilot, lambda: member.online and member.responding)
        await until(pilot, lambda: "▲ frozen  online" in screen_text(app))
