"""Over ``--host ssh://…`` a failed ssh link is told from a daemon that is down
(tui/widgets/link_status.py, harness/transport.py): the header read "▼ daemon offline" when
the ssh client was killed or the server stopped taking connections, the cause only in the
tooltip. A real daemon behind a real sshd (one of this test's own, so it can be stopped), the
real app through its pilot, the ssh client killed for real."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from harness import contexts, liveness, transport
from harness.config import Config
from harness.daemon import Daemon
from harness.transport import explain_ssh_failure, link_failure_gist
from tests.conftest import StartDaemon, write_config
from tests.sample_plugins import Echo
from tests.sshd import Sshd, running_sshd
from tests.test_fleet_tui import ssh_children
from tests.tui.conftest import make_app, screen_text, until
from tui.widgets.link_status import LinkStatus


@pytest.fixture
def own_sshd(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sshd]:
    with running_sshd() as server:
        server.authorize(env={"HARNESS_CONFIG": str(write_config(state_dir, name="remote.toml"))})
        monkeypatch.setenv(transport.ENV_SSH, server.ssh_env)
        yield server


@pytest.fixture
async def daemon(start_daemon: StartDaemon, config: Config) -> Daemon:
    cfg = msgspec.structs.replace(config, plugins={"echo": {"token": "ssh-link-t0ken"}})
    return await start_daemon(plugins={"echo": Echo}, cfg=cfg)


@pytest.mark.parametrize("size", [(80, 24), (100, 30)], ids=["80x24", "100x30"])
async def test_a_killed_ssh_link_is_told_from_a_daemon_that_is_down(
    daemon: Daemon,
    own_sshd: Sshd,
    config: Config,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    size: tuple[int, int],
) -> None:
    monkeypatch.setenv(liveness.ENV_INTERVAL, "3600")  # only the link's end marks it offline
    local = msgspec.structs.replace(
        config,
        daemon=msgspec.structs.replace(config.daemon, database=str(tmp_path / "none.db")),
    )
    before = ssh_children()
    app = make_app(local, target=contexts.resolve(local, host=own_sshd.url))
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: app.link.online)
        ours = ssh_children() - before
        assert len(ours) == 1
        # The server goes (a reboot): no new connection is taken; then our ssh is killed.
        own_sshd.proc.terminate()
        own_sshd.proc.wait()
        os.kill(ours.pop(), signal.SIGKILL)
        header = app.screen.query_one(LinkStatus)

        def top() -> str:
            return screen_text(app).splitlines()[0]

        # The retries are refused by the stopped server: the header says that, and stays.
        await until(pilot, lambda: "connection refused" in top())
        assert "ssh link down: connection refused" in top()
        assert "daemon offline" not in top()
        assert "retrying" in top() or size[0] == 80  # "retrying" gives way first at 80
        assert app.link.ever_online and not app.link.online
        assert "Connection refused" in str(header.tooltip)  # ssh's whole sentence
        assert "ssh link down" in header.status_text()


def test_the_gist_of_what_ssh_said() -> None:
    host = transport.SshHost("server", user="ops")
    said = {
        (255, "Connection to server closed by remote host."): "closed by the server",
        (255, "ssh: connect to host server port 22: Connection refused"): "connection refused",
        (255, "Timeout, server server not responding."): "server not responding",
        (255, "ssh: Could not resolve hostname server: Name or service not known"): (
            "host not found"
        ),
        (-9, ""): "ssh was killed",
        (255, "Permission denied (publickey)."): "permission denied",
        (255, "kex_exchange_identification: Connection reset by peer"): "connection reset",
        (255, "something nobody foresaw happened here today"): "something nobody foresaw ha…",
    }
    for (code, line), gist in said.items():
        detail = explain_ssh_failure(host, code, [line] if line else [])
        assert link_failure_gist(detail) == gist, detail
    # Not the link: the daemon, or harness on the server.
    for code, line in ((3, "harness: no daemon: /run/h.sock does not exist"), (127, "")):
        assert link_failure_gist(explain_ssh_failure(host, code, [line])) is None
    assert link_failure_gist("the daemon closed the connection") is None
    assert link_failure_gist("handshake with ssh://ops@server failed: timed out") == "timed out"


async def test_silence_over_ssh_does_not_blame_the_daemon(
    daemon: Daemon,
    own_sshd: Sshd,
    config: Config,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ssh stopped (SIGSTOP; a link that stalls): nothing answers, and nothing tells whether
    the link or the daemon went quiet. The header said "daemon not responding"."""
    monkeypatch.setenv(liveness.ENV_INTERVAL, "0.5")
    local = msgspec.structs.replace(
        config,
        daemon=msgspec.structs.replace(config.daemon, database=str(tmp_path / "none.db")),
    )
    before = ssh_children()
    app = make_app(local, target=contexts.resolve(local, host=own_sshd.url))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.link.online)
        (ssh,) = ssh_children() - before
        os.kill(ssh, signal.SIGSTOP)
        try:
            await until(pilot, lambda: not app.link.responding)
            await until(pilot, lambda: "no answer over ssh" in screen_text(app).splitlines()[0])
            assert "daemon not responding" not in screen_text(app)
        finally:
            os.kill(ssh, signal.SIGCONT)
