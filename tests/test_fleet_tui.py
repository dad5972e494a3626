"""Fleet, in the TUI: over ``--host`` with the seed and history from the daemon, a link killed
mid-stream, context switches, read-only refusals, and the fleet overview with live, killed and
slow daemons (real daemons, real sockets, a real sshd)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest

from harness import contexts, liveness, transport
from harness.config import Config
from harness.daemon import Daemon
from tests.conftest import SpawnDaemon, StartDaemon, write_config
from tests.sample_plugins import Echo
from tests.sshd import Sshd, running_sshd
from tests.tui.conftest import make_app, screen_text, until
from tui.commands import HarnessCommands
from tui.screens import fleet as fleet_mod
from tui.screens.fleet import FleetRow, FleetScreen
from tui.screens.plugins import PluginsScreen
from tui.widgets.history import ConnectionHistory

TOKEN = "fleet-tui-t0ken"


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    with running_sshd() as server:
        yield server


@pytest.fixture
def configured(config: Config) -> Config:
    return msgspec.structs.replace(config, plugins={"echo": {"token": TOKEN}})


@pytest.fixture
async def daemon(start_daemon: StartDaemon, configured: Config) -> Daemon:
    return await start_daemon(plugins={"echo": Echo}, cfg=configured)


@pytest.fixture
def remote(sshd: Sshd, state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Sshd:
    sshd.authorize(env={"HARNESS_CONFIG": str(write_config(state_dir, name="remote.toml"))})
    monkeypatch.setenv(transport.ENV_SSH, sshd.ssh_env)
    return sshd


def ssh_children() -> set[int]:
    """Our own live ssh children (the ssh the TUI starts is a direct child)."""
    me = str(os.getpid())
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        if comm == "ssh" and fields[1] == me and fields[0] != "Z":
            found.add(int(entry.name))
    return found


async def test_tui_over_ssh_seeds_and_reads_history_from_the_daemon(
    daemon: Daemon,
    remote: Sshd,
    configured: Config,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Pings an hour apart: only the link's end can mark it offline below (its reason names
    # ssh), so that wait is a hang guard, not the 2 s wall-clock bound it was.
    monkeypatch.setenv(liveness.ENV_INTERVAL, "3600")
    # No database on this side at all: the seed and the history can only come over ssh.
    local = msgspec.structs.replace(
        configured,
        daemon=msgspec.structs.replace(configured.daemon, database=str(tmp_path / "none.db")),
    )
    before = ssh_children()
    target = contexts.resolve(local, host=remote.url)
    app = make_app(local, target=target)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.link.online)
        assert app.stream.history_from_daemon and app.stream.seeds == 1
        assert not Path(local.database_path).exists()  # seeded over ssh, no file read
        await until(pilot, lambda: "echo" in app.plugins and app.plugins["echo"].seq > 0)
        assert app.plugins["echo"].connection is not None
        text = screen_text(app)
        assert "No database" not in text and "no database" not in text
        assert f"@ {remote.url}" in text
        screen = app.open_settings("echo")
        await until(pilot, lambda: bool(screen.query(ConnectionHistory)))
        history = screen.query_one(ConnectionHistory)
        await until(pilot, lambda: history.loaded and len(history.transitions) >= 2)
        drawn = history.render().plain  # the widget's own text: it may sit below the fold
        assert "uptime" in drawn and "connected" in drawn
        assert "no stored history" not in drawn and "waiting" not in drawn
        assert ssh_children() - before  # the stream's ssh

        # The link is cut (the server's side dies): offline, from the link's end, then back.
        assert remote.drop_links() >= 1
        await until(pilot, lambda: not app.link.online)
        assert "ssh" in app.link.detail or "closed" in app.link.detail
        await until(pilot, lambda: app.link.online)
    # Quit: no ssh process of ours is left running.
    await asyncio.sleep(0)
    assert not (ssh_children() - before)


async def test_read_only_context_refuses_in_the_tui(daemon: Daemon, configured: Config) -> None:
    target = transport.Target(name="prod", socket=configured.socket_path, read_only=True)
    app = make_app(configured, target=target)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.link.online)
        screen = app.open_settings("echo")
        await until(pilot, lambda: screen.is_mounted and app.plugins.get("echo") is not None)
        notes: list[str] = []
        app.notify = lambda message, **kw: notes.append(str(message))  # type: ignore[method-assign]
        # Not offered (tests/tui/test_read_only_footer.py): a key or the palette runs nothing.
        await screen.run_action("toggle_enabled")
        assert screen.check_action("toggle_enabled", ()) is False
        # Reached some other way, it is refused all the same.
        screen.action_toggle_enabled()
        await until(pilot, lambda: bool(notes))
        assert "read-only" in notes[0] and "prod" in notes[0]
        assert app.screen is screen  # refused before the confirmation dialog
        # The client refuses too, before anything is sent.
        with pytest.raises(Exception, match="read-only"):
            await app.stream.request("plugins.set_enabled", name="echo", enabled=False)
    assert daemon.orchestrator is not None
    assert (await daemon.orchestrator.info("echo")).enabled


async def test_palette_switches_context(
    daemon: Daemon, configured: Config, state_dir: Path
) -> None:
    cfg = msgspec.structs.replace(
        configured,
        contexts={
            "same": {"socket": str(configured.socket_path)},
            "void": {"socket": str(state_dir / "void.sock")},
        },
    )
    app = make_app(cfg)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.link.online)
        provider = HarnessCommands(app.screen)
        titles = {title: call for title, call, _ in provider._commands()}
        assert "Switch context void" in titles and "Show fleet" in titles
        titles["Switch context void"]()
        await until(pilot, lambda: app.target.name == "void" and app.link.changed_at > 0)
        assert not app.link.online and "does not exist" in app.link.detail
        assert app.plugins == {}  # nothing of the other daemon is shown as this one's
        titles = {title: call for title, call, _ in provider._commands()}
        titles["Switch context same"]()
        await until(pilot, lambda: app.target.name == "same" and app.link.online)
        await until(pilot, lambda: "echo" in app.plugins)
        # The same socket as the config's: the same daemon, so its database is ours to read.
        assert app.stream.database_path == cfg.database_path


class SilentServer:
    """A socket that accepts and then never says a word: the slow daemon."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(16)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="hfleet-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def silent(short_dir: Path) -> AsyncIterator[SilentServer]:
    server = SilentServer(short_dir / "slow.sock")
    yield server
    server.sock.close()


async def test_fleet_overview_live_killed_and_slow(
    daemon: Daemon,
    configured: Config,
    spawn_daemon: SpawnDaemon,
    short_dir: Path,
    silent: SilentServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fleet_mod, "HANDSHAKE_TIMEOUT", 1.0)
    doomed_cfg = write_config(
        short_dir,
        name="doomed.toml",
        socket=str(short_dir / "d.sock"),
        database=str(short_dir / "d.db"),
    )
    doomed = await spawn_daemon(doomed_cfg, socket_path=short_dir / "d.sock")
    cfg = msgspec.structs.replace(
        configured,
        contexts={
            "live": {"socket": str(configured.socket_path)},
            "doomed": {"socket": str(short_dir / "d.sock")},
            "slow": {"socket": str(silent.path)},
        },
    )
    app = make_app(cfg, fleet=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, FleetScreen))
        screen = app.screen
        assert isinstance(screen, FleetScreen)
        members = screen.members
        # The slow one hangs in its handshake; the others are live regardless.
        # Hang guards only: a 1 s handshake may time out on a loaded machine, and is retried.
        await until(pilot, lambda: members["live"].online and members["doomed"].online)
        assert not members["slow"].online
        await until(pilot, lambda: "echo" in members["live"].connections)
        text = screen_text(app)
        assert "live" in text and "echo" in text and "▲" in text
        # Killed: offline, with the reason and the last known state kept.
        known = dict(members["doomed"].connections)
        doomed.proc.send_signal(signal.SIGKILL)
        await until(pilot, lambda: not members["doomed"].online)
        assert members["doomed"].connections == known
        assert members["doomed"].reason
        await until(pilot, lambda: not members["slow"].online and members["slow"].changed_at)
        assert "not responding" in members["slow"].reason
        # The rows are painted after the members change: wait for the frame, do not race it.
        await until(
            pilot,
            lambda: all(s in screen_text(app) for s in ("▼ doomed", "▼ slow", "not responding")),
        )
        assert members["live"].online
        # "offline just now" ages by a timer booked for the moment it reads "offline 5 s";
        # the live row books none (no fixed 5 s interval wakes an idle fleet screen).
        assert screen.rows["doomed"]._ages._timer is not None
        assert screen.rows["live"]._ages._timer is None
        # A change on the live daemon reaches its row.
        assert daemon.orchestrator is not None
        await daemon.orchestrator.set_enabled("echo", False)
        await until(pilot, lambda: members["live"].connections["echo"].state == "stopped")
        await until(pilot, lambda: "■ stopped" in screen_text(app))
        # Enter on a row opens that context's plugins.
        screen.select(screen.rows["live"])
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, PluginsScreen))
        assert app.target.name == "live"


async def test_fleet_of_twenty_scrolls_at_80x24(configured: Config, short_dir: Path) -> None:
    cfg = msgspec.structs.replace(
        configured,
        contexts={f"srv{i:02d}": {"socket": str(short_dir / f"{i}.sock")} for i in range(20)},
    )
    app = make_app(cfg, fleet=True, stream=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, FleetScreen))
        screen = app.screen
        assert isinstance(screen, FleetScreen)
        assert len(screen.rows) == 21  # default + 20
        await until(pilot, lambda: all(m.changed_at for m in screen.members.values()))
        for key in ("down", "down", "end", "up", "down"):
            await pilot.press(key)
        chosen = screen.selected
        assert isinstance(chosen, FleetRow) and chosen.member.target.name == "srv19"
        await until(pilot, lambda: "srv19" in screen_text(app))
        assert "default" not in screen_text(app).split("\n", 3)[-1]  # scrolled past the top
        with contextlib.suppress(Exception):
            await pilot.press("escape")


async def test_fleet_over_ssh_names_why_a_context_is_unreachable(
    daemon: Daemon, remote: Sshd, configured: Config
) -> None:
    before = ssh_children()
    cfg = msgspec.structs.replace(
        configured,
        contexts={
            "good": {"host": remote.url},
            "nokey": {"host": f"ssh://ghost@127.0.0.1:{remote.port}"},
            "noharness": {"host": remote.url, "remote_harness": "/nonexistent/harness"},
        },
    )
    app = make_app(cfg, fleet=True, stream=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, FleetScreen))
        screen = app.screen
        assert isinstance(screen, FleetScreen)
        m = screen.members
        await until(pilot, lambda: m["good"].online and "echo" in m["good"].connections, 15)
        await until(pilot, lambda: bool(m["nokey"].changed_at and m["noharness"].changed_at), 15)
        assert "Permission denied (publickey) for ghost@127.0.0.1" in m["nokey"].reason
        assert "harness not found on the remote PATH" in m["noharness"].reason
        text = screen_text(app)
        assert "▲ good" in text and "▼ nokey" in text and "Permission denied" in text
        assert ssh_children() - before  # the live context's ssh
    await asyncio.sleep(0)
    assert not (ssh_children() - before)  # the screen's streams took their ssh with them


async def test_no_database_note_while_the_daemon_is_online(
    daemon: Daemon, configured: Config, tmp_path: Path
) -> None:
    """The TUI's config names a database file that is not there (another machine, another
    user): once the daemon answers, the seed and history come from it and no note says
    "no database"."""
    elsewhere = msgspec.structs.replace(
        configured,
        daemon=msgspec.structs.replace(configured.daemon, database=str(tmp_path / "gone.db")),
    )
    app = make_app(elsewhere)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.link.online and "echo" in app.plugins)
        await until(pilot, lambda: app.plugins["echo"].seq > 0)
        text = screen_text(app)
        assert "No database" not in text and "no database" not in text, text
        assert app.link.database
