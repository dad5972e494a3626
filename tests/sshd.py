"""A real OpenSSH server on 127.0.0.1 for the fleet tests: throwaway host and user keys, a free
port, the current user (root here, hence PermitRootLogin), and an ssh client config that trusts
exactly that host key. Skipped with a reason where sshd cannot run."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import HANG_GUARD

VENV_BIN = Path(sys.executable).parent


def _sshd_binary() -> str | None:
    found = shutil.which("sshd") or shutil.which("sshd", path="/usr/sbin:/usr/local/sbin")
    return found if found and shutil.which("ssh") and shutil.which("ssh-keygen") else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "harness-test", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )


@dataclass
class Sshd:
    """The server, and the files a client needs to reach it."""

    dir: Path
    port: int
    proc: subprocess.Popen[bytes]
    user: str
    client_config: Path  # for `ssh -F`
    user_key: Path
    authorized_keys: Path

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}"

    @property
    def ssh_env(self) -> str:
        """``$HARNESS_SSH``: the operator's ssh with this test's config."""
        return f"ssh -F {self.client_config}"

    def authorize(self, env: dict[str, str] | None = None, key: Path | None = None) -> None:
        """(Re)write authorized_keys: ``key`` (default: the user key) may log in, with ``env``
        set in its session (sshd's PermitUserEnvironment)."""
        pub = (key or self.user_key).with_suffix(".pub").read_text().strip()
        env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", **(env or {})}
        opts = ",".join(f'environment="{k}={v}"' for k, v in env.items())
        self.authorized_keys.write_text(f"{opts} {pub}\n")

    def sessions(self) -> list[int]:
        """pids of sshd's per-connection children (killing them drops the links)."""
        out: list[int] = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.proc.pid:
                out.append(int(entry.name))
        return out

    def drop_links(self) -> int:
        """Kill every live session, as a network cut would; the listener stays up."""
        pids = self.sessions()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(pids)


@contextlib.contextmanager
def running_sshd() -> Iterator[Sshd]:
    binary = _sshd_binary()
    if binary is None:
        pytest.skip("OpenSSH (sshd, ssh, ssh-keygen) is not installed; .ci/run installs it")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
    base = Path(tempfile.mkdtemp(prefix="harness-sshd-"))
    os.chmod(base, 0o700)
    try:
        _keygen(base / "host_key")
        _keygen(base / "user_key")
        port = _free_port()
        user = (
            os.environ.get("USER")
            or subprocess.run(
                ["id", "-un"], capture_output=True, text=True, check=True
            ).stdout.strip()
        )
        authorized = base / "authorized_keys"
        (base / "sshd_config").write_text(
            f"""Port {port}
ListenAddress 127.0.0.1
HostKey {base / "host_key"}
PidFile none
AuthorizedKeysFile {authorized}
PermitRootLogin yes
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitUserEnvironment yes
MaxStartups 100
MaxSessions 100
LogLevel ERROR
"""
        )
        host_pub = (base / "host_key.pub").read_text().split()
        (base / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
        client_config = base / "ssh_config"
        client_config.write_text(
            f"""Host *
  IdentityFile {base / "user_key"}
  IdentitiesOnly yes
  IdentityAgent none
  UserKnownHostsFile {base / "known_hosts"}
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  LogLevel ERROR
"""
        )
        proc = subprocess.Popen(
            [binary, "-D", "-e", "-f", str(base / "sshd_config")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(base / "sshd.log", "wb"),
        )
        server = Sshd(base, port, proc, user, client_config, base / "user_key", authorized)
        server.authorize()
        deadline = time.monotonic() + HANG_GUARD
        while True:
            if proc.poll() is not None:
                log = (base / "sshd.log").read_text(errors="replace")
                pytest.skip(f"sshd could not start here: {log.strip()[-300:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline:
                proc.kill()
                pytest.skip(f"sshd did not listen within {HANG_GUARD:g} s")
            time.sleep(0.02)
        try:
            yield server
        finally:
            for pid in server.sessions():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    finally:
        shutil.rmtree(base, ignore_errors=True)
