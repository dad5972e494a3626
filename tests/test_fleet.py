"""Fleet, command line and protocol: ``--host ssh://`` through a real sshd, contexts, the
``connections.snapshot`` / ``events.history`` requests, read-only contexts, and no ssh left
behind."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest

from harness import contexts, transport
from harness.client import Client, ClientError
from harness.config import Config, ConfigError
from harness.daemon import Daemon
from harness.protocol import ConnectionsSnapshot, Event
from tests.conftest import (
    HANG_GUARD,
    REPO_ROOT,
    StartDaemon,
    next_matching,
    run_cli,
    subprocess_env,
    wait_until,
    write_config,
)
from tests.sample_plugins import Echo
from tests.sshd import Sshd, running_sshd

TOKEN = "fleet-t0ken-never-shown"


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    with running_sshd() as server:
        yield server


@pytest.fixture
async def daemon(start_daemon: StartDaemon, config: Config) -> Daemon:
    cfg = msgspec.structs.replace(config, plugins={"echo": {"token": TOKEN}})
    return await start_daemon(plugins={"echo": Echo}, cfg=cfg)


@pytest.fixture
def remote(sshd: Sshd, state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Sshd:
    """The sshd, with its sessions pointed at this test's daemon (as the server's own config
    would) and this process's ssh pointed at the test's client config."""
    sshd.authorize(env={"HARNESS_CONFIG": str(write_config(state_dir, name="remote.toml"))})
    monkeypatch.setenv(transport.ENV_SSH, sshd.ssh_env)
    return sshd


def env_for(state_dir: Path, sshd: Sshd, **extra: str) -> dict[str, str]:
    return subprocess_env(state_dir, HARNESS_SSH=sshd.ssh_env, **extra)


# -- targets and contexts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ssh://server", transport.SshHost("server")),
        ("ssh://ops@server:2222", transport.SshHost("server", "ops", 2222)),
        ("ssh://ops@10.0.0.1", transport.SshHost("10.0.0.1", "ops")),
    ],
)
def test_parse_host(url: str, expected: transport.SshHost) -> None:
    assert transport.parse_host(url) == expected


def test_an_ssh_failure_names_the_port_it_tried() -> None:
    """ "ssh to root@127.0.0.1 failed" left out the :1 of ssh://root@127.0.0.1:1: which of two
    daemons on one server was meant could not be told (outsider7)."""
    host = transport.parse_host("ssh://root@127.0.0.1:1")
    said = transport.explain_ssh_failure(host, 255, ["ssh: connect to host 127.0.0.1 port 1: x"])
    assert said.startswith("ssh to root@127.0.0.1:1 failed: "), said
    assert str(transport.parse_host("ssh://[::1]:2222")) == "ssh://[::1]:2222"
    assert str(transport.parse_host("ssh://ops@server")) == "ssh://ops@server"


@pytest.mark.parametrize(
    "url",
    ["server", "tcp://server", "ssh://", "ssh://-oProxyCommand=x", "ssh://a:b@c", "ssh://h/p"],
)
def test_parse_host_refuses_what_it_cannot_use(url: str) -> None:
    with pytest.raises(transport.TargetError):
        transport.parse_host(url)


def test_ssh_argv_quotes_the_remote_command() -> None:
    argv = transport.ssh_argv(
        transport.SshHost("srv", "ops", 2200), "'/opt/my harness/bin/harness' --config /etc/h.toml"
    )
    assert argv[-3:] == [
        "--",
        "srv",
        "'/opt/my harness/bin/harness' --config /etc/h.toml dial-stdio",
    ]
    assert (
        "BatchMode=yes" in argv and ["-l", "ops"] == argv[argv.index("-l") : argv.index("-l") + 2]
    )


def test_contexts_are_checked_with_the_key_named(config: Config) -> None:
    for table, problem in [
        ({"bad": {"host": "ssh://a", "socket": "/s"}}, "exactly one of host and socket"),
        ({"bad": {}}, "exactly one of host and socket"),
        ({"bad": {"host": "http://a"}}, "only ssh://"),
        ({"bad": {"socket": "/s", "colour": "red"}}, "colour"),
        ({"default": {"socket": "/s"}}, "context name"),
    ]:
        with pytest.raises(ConfigError, match=problem) as info:
            contexts.parse_contexts(msgspec.structs.replace(config, contexts=table))
        assert "contexts." in str(info.value)


def test_resolution_order(config: Config, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.delenv(contexts.ENV_CONTEXT, raising=False)
    cfg = msgspec.structs.replace(
        config,
        contexts={
            "a": {"socket": "/run/a.sock"},
            "b": {"host": "ssh://ops@b", "read_only": True, "remote_harness": "/opt/h"},
        },
    )
    assert contexts.resolve(cfg).name == "default"
    contexts.set_current("b")
    assert contexts.resolve(cfg).ssh == transport.SshHost("b", "ops")
    assert contexts.resolve(cfg).remote_harness == "/opt/h"
    monkeypatch.setenv(contexts.ENV_CONTEXT, "a")
    assert contexts.resolve(cfg).socket == Path("/run/a.sock")
    assert contexts.resolve(cfg, context="b").read_only
    assert contexts.resolve(cfg, socket="/x.sock").socket == Path("/x.sock")
    assert contexts.resolve(cfg, host="ssh://c").ssh == transport.SshHost("c")
    with pytest.raises(ConfigError, match="no context named 'zz'"):
        contexts.resolve(cfg, context="zz")
    with pytest.raises(ConfigError, match="pass one"):
        contexts.resolve(cfg, host="ssh://c", socket="/x")


async def test_context_command(state_dir: Path) -> None:
    cfg = state_dir / "ctx.toml"
    cfg.write_text(
        '[contexts.prod]\nhost = "ssh://ops@prod.example"\nread_only = true\n\n'
        '[contexts.lab]\nsocket = "/run/lab.sock"\n'
    )
    env = subprocess_env(state_dir)
    listed = await run_cli("context", "list", "--config", str(cfg), env=env)
    assert listed.rc == 0, listed.err
    assert listed.out.splitlines()[0].startswith("* default")
    assert "prod" in listed.out and "(read-only)" in listed.out
    used = await run_cli("context", "use", "prod", "--config", str(cfg), env=env)
    assert used.rc == 0 and "prod" in used.out
    shown = await run_cli("context", "show", "--json", "--config", str(cfg), env=env)
    info = msgspec.json.decode(shown.out)
    assert info["name"] == "prod" and info["read_only"] and info["current"]
    assert info["host"] == "ssh://ops@prod.example"
    missing = await run_cli("context", "use", "nope", "--config", str(cfg), env=env)
    assert missing.rc == 2 and "no context named 'nope'" in missing.err
    # The current context is a file under the state dir, and every client command honours it.
    assert (state_dir / "xdg-state" / "harness" / "context").read_text().strip() == "prod"
    bad = await run_cli("status", "--host", "tcp://x", env=env)
    assert bad.rc == 2 and "ssh://" in bad.err


# -- the new requests -------------------------------------------------------------------------


async def test_snapshot_and_history_requests(daemon: Daemon, config: Config) -> None:
    client = await Client.connect(config.socket_path)
    try:
        await client.subscribe(["echo:connection"])
        await wait_until(lambda: _stored_state(daemon) == "connected")
        snap = msgspec.convert(await client.request("connections.snapshot"), ConnectionsSnapshot)
        (echo,) = snap.plugins
        assert echo.name == "echo" and echo.enabled
        assert echo.metadata["connection"]["state"] == "connected"
        assert echo.metadata["connection"]["seq"] <= snap.seq
        assert TOKEN not in msgspec.json.encode(snap).decode()  # settings never travel here
        history = await client.request("events.history", name="echo:connection", limit=10)
        events = msgspec.convert(history["events"], list[Event])
        assert [e.data["state"] for e in events][:2] == ["connected", "connecting"]
        assert events == sorted(events, key=lambda e: -e.seq)  # newest first
        one = await client.request("events.history", name="echo:connection", limit=1)
        assert len(one["events"]) == 1
        late = await client.request("events.history", name="echo:connection", since_ts=2e9)
        assert late["events"] == []
        for bad in ({"limit": 0}, {"limit": 1001}, {"nme": "x"}):
            with pytest.raises(ClientError) as info:
                await client.request("events.history", **{"name": "x", **bad})
            assert info.value.code == "invalid_params"
    finally:
        await client.close()


def _stored_state(daemon: Daemon) -> str | None:
    import sqlite3

    db = sqlite3.connect(daemon.config.database_path)
    try:
        (meta,) = db.execute("SELECT metadata FROM plugin_config WHERE name='echo'").fetchone()
    finally:
        db.close()
    conn = msgspec.json.decode(meta).get("connection") or {}
    return conn.get("state")


# -- over a real sshd -------------------------------------------------------------------------


async def test_status_over_ssh(daemon: Daemon, remote: Sshd, state_dir: Path) -> None:
    env = env_for(state_dir, remote)
    result = await run_cli("status", "--json", "--host", remote.url, env=env)
    assert result.rc == 0, result.err
    status = msgspec.json.decode(result.out)
    assert status["pid"] == os.getpid()  # the in-process daemon, reached through ssh
    assert status["plugins"][0]["name"] == "echo"
    plain = await run_cli("plugins", "list", "--host", remote.url, env=env)
    assert plain.rc == 0 and "echo" in plain.out, plain.err


async def test_events_follow_over_ssh(daemon: Daemon, remote: Sshd, state_dir: Path) -> None:
    env = env_for(state_dir, remote)
    result = await run_cli("events", "--since", "0", "--json", "--host", remote.url, env=env)
    assert result.rc == 0, result.err
    assert "echo:connection" in result.out


async def test_wrong_key_is_named(daemon: Daemon, remote: Sshd, state_dir: Path) -> None:
    other = remote.dir / "other_key"
    if not other.exists():
        from tests.sshd import _keygen

        _keygen(other)
    remote.authorize(key=other)  # only another key may log in now
    result = await run_cli("status", "--host", remote.url, env=env_for(state_dir, remote))
    assert result.rc == 3
    assert f"ssh: Permission denied (publickey) for {remote.user}@127.0.0.1" in result.err


async def test_changed_host_key_is_named(daemon: Daemon, remote: Sshd, state_dir: Path) -> None:
    from tests.sshd import _keygen

    _keygen(state_dir / "imposter")
    pub = (state_dir / "imposter.pub").read_text().split()
    known = state_dir / "known_hosts"
    known.write_text(f"[127.0.0.1]:{remote.port} {pub[0]} {pub[1]}\n")
    config = state_dir / "ssh_config"
    config.write_text(
        remote.client_config.read_text().replace(str(remote.dir / "known_hosts"), str(known))
    )
    env = subprocess_env(state_dir, HARNESS_SSH=f"ssh -F {config}")
    result = await run_cli("status", "--host", remote.url, env=env)
    assert result.rc == 3
    assert "host key changed for 127.0.0.1" in result.err
    assert "ssh-keygen -R" in result.err


async def test_missing_remote_harness_is_named(
    daemon: Daemon, remote: Sshd, state_dir: Path
) -> None:
    env = env_for(state_dir, remote)
    result = await run_cli(
        "status", "--host", remote.url, "--remote-harness", "/nonexistent/harness", env=env
    )
    assert result.rc == 3
    assert "harness not found on the remote PATH" in result.err
    assert "remote_harness" in result.err


async def test_no_daemon_on_the_server(remote: Sshd, state_dir: Path) -> None:
    result = await run_cli("status", "--host", remote.url, env=env_for(state_dir, remote))
    assert result.rc == 3
    assert "no daemon on" in result.err and "does not exist" in result.err


async def test_read_only_context_refuses_writes(
    daemon: Daemon, remote: Sshd, state_dir: Path, config: Config
) -> None:
    cfg = state_dir / "contexts.toml"
    cfg.write_text(
        f'[contexts.prod]\nhost = "{remote.url}"\nread_only = true\n\n'
        f'[contexts.local]\nsocket = "{config.socket_path}"\nread_only = true\n'
    )
    env = env_for(state_dir, remote)
    # One write each way (ssh and a local socket): refused before sending, exit 1.
    writes = (
        ("prod", ("plugins", "disable", "echo")),
        ("local", ("plugins", "set", "echo", "prefix=X")),
        ("local", ("silence", "add", "echo", "30m", "--reason", "deploy")),
    )
    for ctx, args in writes:
        result = await run_cli(*args, "--context", ctx, "--config", str(cfg), env=env)
        assert result.rc == 1, result
        assert f"context {ctx!r} is read-only" in result.err
    ok = await run_cli("status", "--context", "prod", "--config", str(cfg), env=env)
    assert ok.rc == 0, ok.err  # reading is fine
    assert daemon.orchestrator is not None
    info = await daemon.orchestrator.info("echo")
    assert info.enabled and info.settings["prefix"] == "Echo"  # the default: nothing saved


async def test_a_dropped_link_is_noticed_and_explained(daemon: Daemon, remote: Sshd) -> None:
    target = contexts.resolve(daemon.config, host=remote.url)
    client = await transport.connect(target, client="test")
    try:
        await client.subscribe(["*"])
        assert remote.drop_links() >= 1
        with pytest.raises(Exception, match=r"ssh|closed") as info:
            # A hang guard: the link's end raises (waiting out the guard would not match).
            await next_matching(client, lambda e: False)
        assert "root@127.0.0.1" in str(info.value) or "closed" in str(info.value)
    finally:
        await client.close()
    proc = client._link.proc if client._link else None
    assert proc is not None and proc.returncode is not None  # reaped, not a zombie


@pytest.fixture
async def orphan_probe(state_dir: Path, remote: Sshd) -> AsyncIterator[Path]:
    script = state_dir / "probe.py"
    script.write_text(
        "import asyncio, os, sys\n"
        "from harness import contexts, config, transport\n"
        "async def main():\n"
        "    t = contexts.resolve(config.Config(), host=sys.argv[1])\n"
        "    c = await transport.connect(t, client='probe')\n"
        "    print(c._link.proc.pid, flush=True)\n"
        "    await asyncio.sleep(60)\n"
        "asyncio.run(main())\n"
    )
    yield script


async def test_killing_the_client_leaves_no_ssh(
    daemon: Daemon, remote: Sshd, state_dir: Path, orphan_probe: Path
) -> None:
    """SIGKILL gives the client no chance to clean up: the kernel's parent-death signal does."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(orphan_probe),
        remote.url,
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
        env=env_for(state_dir, remote),
    )
    assert proc.stdout is not None
    async with asyncio.timeout(HANG_GUARD):
        ssh_pid = int(await proc.stdout.readline())
    assert _alive(ssh_pid)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    await wait_until(lambda: not _alive(ssh_pid))  # PR_SET_PDEATHSIG: a hang guard only


def _alive(pid: int) -> bool:
    """Running (a zombie of an exited ssh counts as gone: it holds no connection)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
