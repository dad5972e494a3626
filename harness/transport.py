"""Where a client's bytes go: the local Unix socket, or `ssh … harness dial-stdio` on a server.

A :class:`Target` names one daemon. :func:`connect` opens a :class:`~harness.client.Client` to it.
For ``ssh://`` the operator's own ``ssh`` binary is run (so ``~/.ssh/config``, agents and jump
hosts work) with the remote ``harness dial-stdio`` bridging its stdin/stdout to the remote
daemon's socket; the protocol on top is unchanged. ssh's own failures are read from its stderr
and put into words the operator can act on.

asyncio is imported only by the asyncio half (:func:`connect`, :class:`SshLink`): the one-shot
commands (``harness --host ssh://… status``) use the blocking half at the end and should not pay
for it.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

TYPE_CHECKING = False  # typing itself is not imported at run time: see harness/cli/oneshot.py
if TYPE_CHECKING:
    import asyncio
    import subprocess
    from collections.abc import Callable

    from harness.client import Client

ENV_SSH = "HARNESS_SSH"  # the ssh command line, e.g. "ssh -F ~/.ssh/harness_config"
SSH_TIMEOUT = 15.0  # seconds for ssh to connect and the remote daemon to greet us
STDERR_LINES = 20  # of ssh's stderr, kept to explain a failure
_PR_SET_PDEATHSIG = 1
# ssh sends a keepalive every second and gives up after two unanswered: a dropped link is
# noticed in about 2 s even when no TCP reset arrives. BatchMode: a prompt would hang a TUI.
SSH_OPTIONS = (
    "-o",
    "BatchMode=yes",
    "-o",
    "ServerAliveInterval=1",
    "-o",
    "ServerAliveCountMax=2",
    "-o",
    "ConnectTimeout=10",
)


class TargetError(ValueError):
    """A ``--host`` value or context that cannot be used; the message says why."""


@dataclass(frozen=True)
class SshHost:
    host: str
    user: str | None = None
    port: int | None = None

    @property
    def display(self) -> str:
        """``user@host:port`` as given (a port left out of "ssh to root@127.0.0.1 failed"
        hid which of two daemons on one server was meant)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        where = f"{host}:{self.port}" if self.port else host
        return f"{self.user}@{where}" if self.user else where

    def __str__(self) -> str:
        return f"ssh://{self.display}"


@dataclass(frozen=True)
class Target:
    """One daemon to talk to: a local socket, or a server reached over ssh."""

    name: str  # the context's name, or "default" / the --host value
    socket: Path | None = None  # local; None for ssh
    ssh: SshHost | None = None
    remote_harness: str = "harness"  # the command run on the server
    read_only: bool = False

    @property
    def remote(self) -> bool:
        return self.ssh is not None

    @property
    def where(self) -> str:
        return str(self.ssh) if self.ssh else str(self.socket)


def parse_host(url: str) -> SshHost:
    """``ssh://[user@]server[:port]`` → :class:`SshHost`."""
    if not url.startswith("ssh://"):
        raise TargetError(f"--host {url!r}: only ssh://[user@]server[:port] is supported")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetError(f"--host {url!r}: {exc}") from None
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.password:
        raise TargetError(f"--host {url!r}: expected ssh://[user@]server[:port]")
    if parts.hostname.startswith("-") or (parts.username or "").startswith("-"):
        raise TargetError(f"--host {url!r}: a server or user may not start with '-'")
    return SshHost(host=parts.hostname, user=parts.username or None, port=port)


def ssh_command() -> list[str]:
    """The operator's ssh: ``$HARNESS_SSH`` (split like a shell would), else ``ssh``."""
    cmd = shlex.split(os.environ.get(ENV_SSH, "") or "ssh")
    return cmd or ["ssh"]


def ssh_argv(ssh: SshHost, remote_harness: str = "harness") -> list[str]:
    argv = [*ssh_command(), *SSH_OPTIONS]
    if ssh.user:
        argv += ["-l", ssh.user]
    if ssh.port:
        argv += ["-p", str(ssh.port)]
    # remote_harness is a command line ("/opt/harness/bin/harness --config /etc/h.toml");
    # re-quoted for the remote shell, so a quoted path with spaces survives.
    remote = [*(shlex.split(remote_harness) or ["harness"]), "dial-stdio"]
    return [*argv, "--", ssh.host, shlex.join(remote)]


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A pre-exec hook: if we die (even by SIGKILL), so does ssh. Linux only.

    The libc function is looked up here, in the parent: a dlopen in the child of a threaded
    process (the TUI has threads) could deadlock on the loader's lock."""
    import ctypes
    import signal

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the line above took effect
            os._exit(1)

    return hook


def explain_ssh_failure(ssh: SshHost, returncode: int | None, stderr: list[str]) -> str:
    """ssh's exit and stderr → one sentence naming the cause and the fix."""
    text = "\n".join(stderr)
    last = next((line for line in reversed(stderr) if line.strip()), "")
    if "Permission denied" in text:
        methods = text.split("Permission denied", 1)[1].split(")", 1)[0].strip(" (")
        how = f" ({methods})" if methods else ""
        return (
            f"ssh: Permission denied{how} for {ssh.display}: "
            "check the user, the key and the agent (ssh-add -l)"
        )
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text:
        return (
            f"ssh: host key changed for {ssh.host}: if the server was reinstalled, remove the "
            f"old key with `ssh-keygen -R {ssh.host}`; otherwise do not connect"
        )
    if "Host key verification failed" in text:
        return (
            f"ssh: host key of {ssh.host} not verified: connect once with `ssh {ssh.host}` "
            "to accept it (prompts are off here)"
        )
    if returncode == 127:
        return (
            f"harness not found on the remote PATH of {ssh.display}: install it there, or set "
            "--remote-harness / remote_harness to its full path"
        )
    if returncode == 3:  # dial-stdio: no daemon on the server
        said = last.removeprefix("harness: ").removeprefix("no daemon: ")
        return f"no daemon on {ssh.display}: {said or 'is `harness run` running there?'}"
    # dial-stdio: a config problem or an untrusted socket on the server (2; a server from
    # before exit codes were 0-3 said 4 for the latter).
    if returncode in (2, 4):
        return f"on {ssh.display}: {last.removeprefix('harness: ')}"
    if returncode == 255:
        return f"ssh to {ssh.display} failed: {last or 'exit 255'}"
    if returncode is not None and returncode < 0:  # ssh itself was killed: the link went
        import signal

        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"ssh to {ssh.display} failed: ssh was killed ({name})"
    if last:
        return f"{ssh.display}: {last}"
    return f"ssh to {ssh.display} ended (exit {returncode})"


# ssh's own last words -> a few of ours, for a header at 80 columns (the whole sentence is the
# header's tooltip). Matched case-insensitively, in this order.
_LINK_GISTS = (
    ("closed by remote host", "closed by the server"),
    ("connection refused", "connection refused"),
    ("not responding", "server not responding"),
    ("could not resolve hostname", "host not found"),
    ("name or service not known", "host not found"),
    ("no route to host", "no route to host"),
    ("network is unreachable", "network unreachable"),
    ("timed out", "timed out"),
    ("connection reset", "connection reset"),
    ("broken pipe", "connection reset"),
    ("ssh was killed", "ssh was killed"),
)
_GIST_MAX = 28  # characters of ssh's own words when none of the above match


def link_failure_gist(detail: str) -> str | None:
    """When ``detail`` (a connection's failure, as :func:`explain_ssh_failure` and
    :func:`connect` word it) says the ssh link itself failed, a few words naming why
    ("connection refused", "closed by the server", "permission denied"); None when the link
    is not what failed (no daemon on the server, harness not installed there, a problem in
    its config) or the failure is not an ssh one at all."""
    if detail.startswith("ssh: Permission denied"):
        return "permission denied"
    if detail.startswith("ssh: host key changed"):
        return "host key changed"
    if detail.startswith("ssh: host key of"):
        return "host key not verified"
    if detail.startswith("cannot run "):  # the ssh command itself (connect)
        return "cannot run ssh"
    if detail.startswith("handshake with ssh://"):  # ssh never got as far as the daemon
        said = detail.split(" failed: ", 1)[-1]
    elif detail.startswith("ssh to ") and " failed: " in detail:
        said = detail.split(" failed: ", 1)[1]
    else:
        return None
    lowered = said.lower()
    for words, gist in _LINK_GISTS:
        if words in lowered:
            return gist
    said = said.removeprefix("ssh: ").rstrip(".")
    return said if len(said) <= _GIST_MAX else said[: _GIST_MAX - 1] + "…"


class SshLink:
    """The ssh child of one connection: started, watched and always reaped."""

    def __init__(self, proc: asyncio.subprocess.Process, ssh: SshHost) -> None:
        import asyncio

        self.proc = proc
        self.ssh = ssh
        self.stderr: deque[str] = deque(maxlen=STDERR_LINES)
        assert proc.stderr is not None
        self._stderr_task = asyncio.get_running_loop().create_task(self._drain(proc.stderr))

    async def _drain(self, stream: asyncio.StreamReader) -> None:
        # Always read: a full stderr pipe would stall ssh. Bounded lines, bounded count.
        while line := await stream.readline():
            self.stderr.append(line[:500].decode("utf-8", "replace").rstrip())

    async def failure(self, timeout: float = 2.0) -> str:
        """Why the link ended (waits briefly for ssh to exit and say so)."""
        import asyncio

        # asyncio.timeout, not wait_for: Python 3.11's wait_for can lose a cancel that lands
        # as the awaited wait completes, and the caller (a client closing) then never ends.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.proc.wait()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            async with asyncio.timeout(0.5):
                await asyncio.shield(self._stderr_task)
        return explain_ssh_failure(self.ssh, self.proc.returncode, list(self.stderr))

    def terminate(self) -> None:
        """Signal ssh now, without awaiting: even a close that is itself cancelled half-way
        (an app shutting down) has stopped it."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()

    async def close(self) -> None:
        """Kill ssh (if still running) and reap it: no orphan, no zombie."""
        import asyncio

        if self.proc.returncode is None:
            self.terminate()
            try:
                async with asyncio.timeout(2.0):  # not wait_for: see failure()
                    await self.proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        self._stderr_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._stderr_task


async def connect(target: Target, *, client: str, timeout: float | None = None) -> Client:
    """A connected, greeted :class:`Client` for ``target``; DaemonUnavailable says why not."""
    import asyncio

    from harness.client import READ_LIMIT, Client, DaemonUnavailable

    if target.ssh is None:
        assert target.socket is not None
        return await Client.connect(target.socket, client=client, timeout=timeout or 5.0)
    argv = ssh_argv(target.ssh, target.remote_harness)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=READ_LIMIT,
            # Its own session: no controlling terminal to prompt on or to steal keys from.
            start_new_session=True,
            preexec_fn=_die_with_parent_hook(),
        )
    except OSError as exc:
        raise DaemonUnavailable(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
    link = SshLink(proc, target.ssh)
    assert proc.stdout is not None and proc.stdin is not None
    try:
        return await Client.handshake(
            proc.stdout,
            proc.stdin,
            path=str(target.ssh),
            client=client,
            timeout=timeout or SSH_TIMEOUT,
            link=link,
        )
    except DaemonUnavailable as exc:
        why = await link.failure() if proc.returncode is not None or _eof(proc) else str(exc)
        await link.close()
        raise DaemonUnavailable(why) from exc
    except BaseException:
        await link.close()
        raise


def _eof(proc: asyncio.subprocess.Process) -> bool:
    return proc.stdout is not None and proc.stdout.at_eof()


# -- the blocking variant, for the one-shot commands (harness.cli.oneshot) ----------------------


def ssh_socketpair(target: Target) -> tuple[socket.socket, subprocess.Popen[bytes]]:
    """ssh running ``harness dial-stdio`` with one end of a socket pair as its stdin and
    stdout; the other end is returned, ready for a blocking connection."""
    import subprocess

    assert target.ssh is not None
    ours, theirs = socket.socketpair()
    try:
        proc = subprocess.Popen(
            ssh_argv(target.ssh, target.remote_harness),
            stdin=theirs.fileno(),
            stdout=theirs.fileno(),
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_die_with_parent_hook(),
        )
    except OSError as exc:
        ours.close()
        from harness.socket_trust import DaemonUnavailable

        raise DaemonUnavailable(f"cannot run ssh: {exc.strerror or exc}") from exc
    finally:
        theirs.close()
    return ours, proc


def blocking_failure(target: Target, proc: subprocess.Popen[bytes]) -> str:
    """Why ssh ended, from its exit status and stderr (waits up to 2 s for it to exit)."""
    import subprocess

    assert target.ssh is not None
    try:
        proc.wait(2.0)
    except subprocess.TimeoutExpired:
        pass
    err = b""
    if proc.returncode is not None and proc.stderr is not None:
        err = proc.stderr.read(64 * 1024)
    lines = [ln[:500] for ln in err.decode("utf-8", "replace").splitlines()][-STDERR_LINES:]
    return explain_ssh_failure(target.ssh, proc.returncode, lines)


def end_blocking(proc: subprocess.Popen[bytes]) -> None:
    """Stop ssh and reap it."""
    import subprocess

    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(2.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stderr is not None:
        proc.stderr.close()
