"""Hostile clients and a hostile machine (issue 9), driven by a stdlib client of this file's own
(``Wire``: asyncio streams and ``json``; not harness.client), against the real daemon.

Every daemon-side attack runs with a second subscriber connected before it that must still get
an event published after it: the daemon and its other clients carry on. Client-side attacks
(planted sockets, oversized frames) check that nothing is sent and the CLI says why."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import re
import resource
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import termios
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import logs, protocol
from harness.bus import Patterns
from harness.plugin import Plugin, PluginContext
from harness.protocol import SettingField
from tests.conftest import (
    HANG_GUARD,
    REPO_ROOT,
    StartDaemon,
    run_cli,
    subprocess_env,
    write_config,
)

MAX = protocol.MAX_FRAME_BYTES
NOBODY = 65534
needs_root = pytest.mark.skipif(os.getuid() != 0, reason="planting another user's files needs root")
# Login fails at once and locally: nothing here may reach the internet.
NOWHERE = {"api_base_url": "http://127.0.0.1:9/api", "gateway_url": "ws://127.0.0.1:9/"}


# -- the stdlib client ---------------------------------------------------------------------------


class Wire:
    """One raw connection: JSON objects or raw bytes out, decoded JSON objects in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self._ids = iter(range(1000, 10**9))

    @classmethod
    async def open(cls, path: Path, hello: bool = True) -> Wire:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=4 * MAX)
        wire = cls(reader, writer)
        if hello:
            await wire.send({"type": "hello", "protocol": 1, "client": "adversary"})
            welcome = await wire.frame()
            assert welcome["type"] == "welcome", welcome
        return wire

    async def send(self, frame: dict[str, Any] | bytes) -> None:
        data = frame if isinstance(frame, bytes) else json.dumps(frame).encode() + b"\n"
        self.writer.write(data)
        await self.writer.drain()

    async def frame(self, timeout: float = 10.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            line = await self.reader.readline()
        if not line:
            raise EOFError("closed by the daemon")
        assert len(line) <= MAX + 1, f"a frame of {len(line)} bytes broke the frame limit"
        value = json.loads(line)
        assert isinstance(value, dict)
        return value

    async def answer(self, frame_id: int, timeout: float = 10.0) -> dict[str, Any]:
        """The response or error to ``frame_id``, skipping events."""
        async with asyncio.timeout(timeout):
            while True:
                f = await self.frame()
                if f.get("id") == frame_id and f["type"] in ("response", "error", "ack"):
                    return f

    async def request(self, method: str, **params: Any) -> dict[str, Any]:
        frame_id = next(self._ids)
        await self.send({"type": "request", "id": frame_id, "method": method, "params": params})
        return await self.answer(frame_id)

    async def subscribe(self, events: list[str], since: int | None = None) -> dict[str, Any]:
        frame_id = next(self._ids)
        sub: dict[str, Any] = {"type": "subscribe", "id": frame_id, "events": events}
        if since is not None:
            sub["since"] = since
        await self.send(sub)
        return await self.answer(frame_id)

    def close(self) -> None:
        self.writer.close()


class Watcher:
    """The bystander: subscribed to everything before an attack, it must get what follows."""

    def __init__(self, wire: Wire, head: int) -> None:
        self.wire, self.head = wire, head

    @classmethod
    async def start(cls, path: Path) -> Watcher:
        wire = await Wire.open(path)
        ack = await wire.subscribe(["*"])
        assert ack["type"] == "ack", ack
        return cls(wire, ack["seq"])

    async def still_live(self, path: Path, poke: Wire | None = None) -> None:
        """Publish an event (a settings change) and see it arrive, seq after the attack's."""
        marker = f"after-{time.monotonic_ns()}"
        poke = poke or await Wire.open(path)
        try:
            answer = await poke.request(
                "plugins.update_settings", name="discord", settings={"status_text": marker}
            )
            assert answer["type"] == "response", answer
        finally:
            poke.close()
        async with asyncio.timeout(HANG_GUARD):
            while True:
                f = await self.wire.frame()
                assert f["type"] == "event", f"the bystander got {f}"
                if f["event"] == "plugin:settings" and f["seq"] > self.head:
                    return


async def admitted(path: Path) -> Wire:
    """A connection that got its welcome: a place freed by a client that left is free once the
    daemon has seen it go, which the leaver cannot wait for."""
    async with asyncio.timeout(HANG_GUARD):
        while True:
            wire = await Wire.open(path, hello=False)
            with contextlib.suppress(ConnectionError, EOFError):
                await wire.send({"type": "hello", "protocol": 1})
                if (await wire.frame())["type"] == "welcome":
                    return wire
            wire.close()
            await asyncio.sleep(0.02)


# -- daemons -------------------------------------------------------------------------------------


def _wait_listening(
    path: Path, proc: subprocess.Popen[bytes], log: Path, timeout: float = 20.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited {proc.returncode}: {log.read_text()}")
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(str(path))
            s.sendall(b'{"type":"hello","protocol":1}\n')
            if b"welcome" in s.recv(4096):
                return
        time.sleep(0.05)
    raise AssertionError("daemon did not come up")


class Spawned:
    def __init__(self, proc: subprocess.Popen[bytes], socket_path: Path, log: Path) -> None:
        self.proc, self.socket, self.log = proc, socket_path, log

    @property
    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def cpu_seconds(self) -> float:
        """utime + stime of the daemon, from /proc (no psutil)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def spawn(
    state_dir: Path,
    *,
    preexec: Callable[[], None] | None = None,
    args: tuple[str, ...] = (),
    **daemon: Any,
) -> Spawned:
    cfg = write_config(state_dir, plugins={"discord": dict(NOWHERE)}, **daemon)
    log = state_dir / "daemon.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness", "run", "--config", str(cfg), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=REPO_ROOT,
            env=subprocess_env(state_dir),
            preexec_fn=preexec,
        )
    spawned = Spawned(proc, state_dir / "run" / "harness.sock", log)
    try:
        _wait_listening(spawned.socket, proc, log)
    except BaseException:
        spawned.stop()
        raise
    return spawned


@pytest.fixture(scope="module")
def shared() -> Iterator[Spawned]:
    """One daemon for the attacks that do not need their own: each test checks it survived."""
    import tempfile

    state_dir = Path(tempfile.mkdtemp(prefix="harness-adv-"))
    d = spawn(state_dir)
    yield d
    d.stop()
    shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture
async def watcher(shared: Spawned) -> AsyncIterator[Watcher]:
    w = await Watcher.start(shared.socket)
    yield w
    await w.still_live(shared.socket)
    assert shared.proc.poll() is None, shared.stderr
    w.wire.close()


# -- 3. every client-supplied size is bounded ---------------------------------------------------


async def test_subscribe_bounds_are_named_and_the_largest_allowed_costs_little(
    shared: Spawned, watcher: Watcher
) -> None:
    wire = await Wire.open(shared.socket)
    n, chars = protocol.MAX_SUBSCRIBE_PATTERNS, protocol.MAX_PATTERN_CHARS
    too_many = await wire.subscribe(["x"] * (n + 1))
    assert too_many["code"] == "invalid_params" and f"at most {n}" in too_many["message"]
    too_long = await wire.subscribe(["a*" * 524_000])  # the 1 MiB freezer
    assert too_long["code"] == "invalid_params" and f"at most {chars}" in too_long["message"]
    assert len(too_long["message"]) < 300  # the pattern is not echoed back whole
    assert (await wire.subscribe([""]))["code"] == "invalid_params"
    # The largest subscribe accepted, pathological for a backtracking matcher: it is taken,
    # and another client is answered meanwhile.
    worst = ["a*" * (chars // 2)] * n
    assert (await wire.subscribe(worst))["type"] == "ack"
    other = await Wire.open(shared.socket)
    assert (await other.request("status"))["type"] == "response"
    other.close()
    wire.close()


def test_matching_keeps_no_regex_and_agrees_with_fnmatch() -> None:
    import fnmatch

    re.purge()
    fnmatch._compile_pattern.cache_clear()  # type: ignore[attr-defined]
    pats = Patterns(
        [f"{i}" + "a*" * 60 for i in range(30)]
        + ["*:conn?ction", "plug[a-z]n:*", "[!x]*:s*", "discord:connection", "*:*:*"]
    )
    assert len(re._cache) == 0  # type: ignore[attr-defined]  # nothing outlives the subscriber
    for name in ["discord:connection", "plugin:status", "x:status", "aaaa", "b:s", "a:b:c"]:
        want = any(fnmatch.fnmatchcase(name, p) for p in pats.patterns)
        assert pats(name) == want, name
    t0 = time.process_time()
    assert not Patterns(["a*" * 128 + "b"])("a" * 200)  # worst case: bounded, no blow-up
    assert time.process_time() - t0 < 1.0


async def test_oversized_settings_are_refused_naming_the_bound(
    shared: Spawned, watcher: Watcher
) -> None:
    wire = await Wire.open(shared.socket)
    big = await wire.request(
        "plugins.update_settings", name="discord", settings={"status_text": "x" * 1_000_000}
    )
    assert big["code"] == "invalid_settings"
    assert "at most 128" in big["details"]["fields"]["status_text"]  # Discord's limit
    secret = await wire.request(
        "plugins.update_settings", name="discord", settings={"bot_token": "t" * 5000}
    )
    assert "at most 1024" in secret["details"]["fields"]["bot_token"]
    # Names the client made up are cut, and only a few listed, whatever was sent.
    many = {f"k{i}": 1 for i in range(40_000)} | {"n" * 500_000: 1}
    unknown = await wire.request("plugins.update_settings", name="discord", settings=many)
    assert unknown["code"] == "invalid_settings"
    assert len(json.dumps(unknown)) < 8192
    assert any("more unknown settings" in v for v in unknown["details"]["fields"].values())
    name = await wire.request("plugins.get", name="p" * 900_000)
    assert name["code"] == "not_found" and len(name["message"]) < 300
    method = await wire.request("m" * 900_000)
    assert method["code"] == "unknown_method" and len(method["message"]) < 500
    odd_field = await wire.request("status", **{"f" * 900_000: 1})
    assert odd_field["code"] == "invalid_params" and len(odd_field["message"]) < 300
    await wire.send({"type": "t" * 900_000, "id": 77})
    odd_type = await wire.answer(77)
    assert odd_type["code"] == "bad_frame" and len(odd_type["message"]) < 300
    listing = await wire.request("plugins.list")  # nothing large was stored
    assert listing["type"] == "response"
    wire.close()


class Roomy(Plugin):
    """Two settings that together answer larger than a frame."""

    name = "roomy"
    version = "1"
    description = "oversized settings"
    settings_schema = (
        SettingField("a", "string", max_length=700_000),
        SettingField("b", "string", max_length=700_000),
    )

    async def start(self, ctx: PluginContext) -> None:
        pass

    async def stop(self, ctx: PluginContext) -> None:
        pass


async def test_an_answer_over_the_frame_limit_fails_clearly_and_the_connection_stays(
    start_daemon: StartDaemon,
) -> None:
    daemon = await start_daemon(plugins={"roomy": Roomy})
    path = daemon.config.socket_path
    watch = await Wire.open(path)
    head = (await watch.subscribe(["*"]))["seq"]
    wire = await Wire.open(path)
    for key in ("a", "b"):
        await wire.request("plugins.update_settings", name="roomy", settings={key: "z" * 300_000})
    # The answer carries the settings twice (and metadata.plugin): over 1 MiB.
    got = await wire.request("plugins.get", name="roomy")
    assert got["code"] == "response_too_large" and str(MAX) in got["message"]
    listing = await wire.request("plugins.list")
    assert listing["code"] == "response_too_large"
    # Still connected, and the way out works.
    unset = await wire.request(
        "plugins.update_settings", name="roomy", settings={"a": None, "b": None}
    )
    assert unset["type"] == "response"
    assert (await wire.request("plugins.get", name="roomy"))["type"] == "response"
    assert daemon.recorder is not None
    await daemon.recorder.record("x:after", {})
    async with asyncio.timeout(HANG_GUARD):
        while not ((f := await watch.frame())["event"] == "x:after" and f["seq"] > head):
            pass


async def test_deep_nesting_is_refused_and_the_request_after_it_in_the_same_write_is_answered(
    shared: Spawned, watcher: Watcher
) -> None:
    wire = await Wire.open(shared.socket)
    deep = b'{"type":"request","id":5,"method":"status","params":{"a":' + b"[" * 200_000
    deep += b"]" * 200_000 + b"}}\n"
    status = b'{"type":"request","id":6,"method":"status","params":{}}\n'
    await wire.send(deep + status)
    error = await wire.frame()
    assert error["type"] == "error" and error["code"] == "bad_json"
    assert f"more than {protocol.MAX_JSON_DEPTH}" in error["message"]
    assert (await wire.answer(6))["type"] == "response"
    just_over = "[" * (protocol.MAX_JSON_DEPTH + 1) + "]" * (protocol.MAX_JSON_DEPTH + 1)
    await wire.send(
        f'{{"type":"request","id":7,"method":"status","params":{{"a":{just_over}}}}}\n'.encode()
    )
    assert (await wire.frame())["code"] == "bad_json"
    wire.close()


async def test_bad_utf8_in_an_unknown_key_is_bad_json(shared: Spawned, watcher: Watcher) -> None:
    wire = await Wire.open(shared.socket, hello=False)
    await wire.send(b'{"type":"hello","protocol":1,"zz":"\xff\xfe"}\n')
    error = await wire.frame()
    assert error["code"] == "bad_json" and "UTF-8" in error["message"]
    await wire.send({"type": "hello", "protocol": 1})
    assert (await wire.frame())["type"] == "welcome"  # the connection carried on
    wire.close()


@pytest.mark.parametrize("since", [-(2**70), 2**70, 2**63, -1])
async def test_since_out_of_range_is_invalid_params(
    shared: Spawned, watcher: Watcher, since: int
) -> None:
    wire = await Wire.open(shared.socket)
    error = await wire.subscribe(["*"], since=since)
    assert error["code"] == "invalid_params" and "since" in error["message"]
    assert (await wire.subscribe(["*"], since=0))["type"] == "ack"
    wire.close()


# -- 6. resource limits --------------------------------------------------------------------------


async def test_max_clients_turns_the_next_away_with_an_error_frame(state_dir: Path) -> None:
    d = spawn(state_dir, max_clients=3)
    try:
        watch = await Watcher.start(d.socket)
        # admitted(): the start-up probe's connection counts until the daemon has seen it go.
        held = [await admitted(d.socket) for _ in range(2)]
        extra = await Wire.open(d.socket, hello=False)
        error = await extra.frame()
        assert error["code"] == "too_many_clients" and "max_clients" in error["message"]
        with pytest.raises(EOFError):
            await extra.frame()
        held.pop().close()
        await watch.still_live(d.socket, poke=await admitted(d.socket))
    finally:
        d.stop()


def _knock(path: Path) -> tuple[socket.socket, dict[str, Any]]:
    """Connect, say hello and return the first frame, on a plain blocking socket: unlike an
    asyncio transport, it still reads the error frame of a daemon that closed before the hello
    arrived (the send fails; what was sent to us stays readable)."""
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    sock.connect(str(path))
    with contextlib.suppress(OSError):
        sock.sendall(b'{"type":"hello","protocol":1}\n')
    data = b""
    while b"\n" not in data and (chunk := sock.recv(65536)):
        data += chunk
    return sock, json.loads(data.split(b"\n")[0])


async def test_at_the_fd_limit_clients_get_an_error_frame_and_the_daemon_does_not_spin(
    state_dir: Path,
) -> None:
    limit = 64

    def low_fd_limit() -> None:  # in the daemon's child: it can raise soft only up to this
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    d = spawn(state_dir, preexec=low_fd_limit)
    try:
        started = time.monotonic()
        watch = await Watcher.start(d.socket)
        opened: list[socket.socket] = []
        refusal: dict[str, Any] | None = None
        for _ in range(limit + 10):
            sock, first = await asyncio.to_thread(_knock, d.socket)
            opened.append(sock)
            if first["type"] == "error":
                refusal = first
                break
        assert refusal is not None and refusal["code"] == "too_many_clients"
        assert "file descriptors" in refusal["message"]
        # At the limit, with clients still knocking: no busy loop.
        cpu0, t0 = d.cpu_seconds(), time.monotonic()
        for _ in range(20):
            sock, first = await asyncio.to_thread(_knock, d.socket)
            sock.close()
            assert first["code"] == "too_many_clients"
        await asyncio.sleep(1.0)  # the window over which a spin would burn a whole core
        used, wall = d.cpu_seconds() - cpu0, time.monotonic() - t0
        assert used < 0.5 * wall, f"daemon used {used:.2f}s CPU in {wall:.2f}s at the fd limit"
        reports = d.stderr.count("out of file descriptors")  # once per 10 s, not per accept
        assert 1 <= reports <= 1 + (time.monotonic() - started) / 10, d.stderr
        assert "Traceback" not in d.stderr
        for sock in opened:
            sock.close()
        await watch.still_live(d.socket, poke=await admitted(d.socket))
    finally:
        d.stop()


async def test_a_burst_of_1000_connects_all_wait_in_the_backlog(state_dir: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 2048:
        pytest.skip(f"this process may open only {hard} files")
    # The kernel clamps any backlog to somaxconn; the daemon asks for at least 1024.
    burst = min(1000, int(Path("/proc/sys/net/core/somaxconn").read_text()))
    d = spawn(state_dir)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4096)), hard))
    socks: list[socket.socket] = []
    try:
        watch = await Watcher.start(d.socket)
        os.kill(d.proc.pid, signal.SIGSTOP)  # nobody accepts: only the backlog holds them
        try:
            for _ in range(burst):
                s = socket.socket(socket.AF_UNIX)
                s.setblocking(False)
                socks.append(s)
                s.connect(str(d.socket))  # BlockingIOError here would be a full backlog
        finally:
            os.kill(d.proc.pid, signal.SIGCONT)
        for s in socks:
            s.close()
        await watch.still_live(d.socket)
    finally:
        for s in socks:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        d.stop()


# -- 8. secrets ----------------------------------------------------------------------------------

ODD_VALID = 'tok"en\\with-quote.and.backslash+/=?&%'
ODD_INVALID = ["Zq9\x00Nul-Xw7", "Zq9\nNewline-Xw7", "Zq9 Space-Xw7", "Zq9\tTab-Xw7"]


async def test_odd_tokens_never_reach_the_debug_log_in_any_form(state_dir: Path) -> None:
    d = spawn(state_dir, args=("--log-level", "debug"))
    try:
        watch = await Watcher.start(d.socket)
        wire = await Wire.open(d.socket)
        saved = await wire.request(
            "plugins.update_settings", name="discord", settings={"bot_token": ODD_VALID}
        )
        assert saved["type"] == "response", saved
        for bad in ODD_INVALID:
            refused = await wire.request(
                "plugins.update_settings", name="discord", settings={"bot_token": bad}
            )
            assert refused["code"] == "invalid_settings", refused
            problem = refused["details"]["fields"]["bot_token"]
            assert re.search(r"(whitespace|unprintable character) \(U\+00(00|0A|20|09)\)", problem)
            assert "Xw7" not in json.dumps(refused)  # the value is never quoted back
        # The plugin tried (and failed) to log in with the valid one meanwhile.
        await wire.request("plugins.set_enabled", name="discord", enabled=True)
        await watch.still_live(d.socket)
        wire.close()
    finally:
        d.stop()
    text = d.stderr
    assert "discord" in text  # the log is there and says things
    for token in [ODD_VALID, *ODD_INVALID]:
        for form in logs.secret_forms(token):
            assert form not in text, f"{form!r} is in the daemon's log"


def test_every_form_of_a_secret_is_masked() -> None:
    import urllib.parse

    token = 'mask"me\\now/+x'
    logs.add_secrets({token})
    for form in (
        token,
        json.dumps(token),
        repr(token),
        urllib.parse.quote(token, safe=""),
        urllib.parse.quote_plus(token),
    ):
        assert token not in logs.mask(f"before {form} after")
        assert "***" in logs.mask(f"before {form} after")


# -- 1. clients verify before they speak ----------------------------------------------------------


class Listener(threading.Thread):
    """A fake daemon: records every byte any client sends it."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True)
        self.sock, self.received = sock, bytearray()
        self.accepted = 0

    def run(self) -> None:
        self.sock.settimeout(30)
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                self.accepted += 1
                conn.settimeout(5)
                with conn, contextlib.suppress(OSError):
                    conn.sendall(b'{"type":"welcome","protocol":1,"server":"x","seq":0,"pid":1}\n')
                    while data := conn.recv(65536):
                        self.received += data


TOKEN = "Planted-Listener-Must-Not-See-This-Token"


@needs_root
async def test_a_directory_planted_by_another_user_gets_no_token(
    state_dir: Path, shared: Spawned, watcher: Watcher
) -> None:
    tmp = state_dir / "tmp"
    tmp.mkdir(mode=0o1777)
    planted = tmp / f"harness-{os.getuid()}"  # the default socket dir without XDG_RUNTIME_DIR
    planted.mkdir(mode=0o700)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(planted / "harness.sock"))
    sock.listen()
    os.chown(planted / "harness.sock", NOBODY, NOBODY)
    os.chown(planted, NOBODY, NOBODY)
    listener = Listener(sock)
    listener.start()
    env = subprocess_env(state_dir, TMPDIR=str(tmp))
    env.pop("XDG_RUNTIME_DIR")
    try:
        result = await run_cli(
            "plugins", "set", "discord", "bot_token=-", input=TOKEN + "\n", env=env
        )
    finally:
        sock.close()
    assert result.rc == 2, result
    assert str(planted) in result.err and f"uid {NOBODY}" in result.err
    assert "Remove" in result.err
    assert listener.accepted == 0 and TOKEN.encode() not in listener.received


@needs_root
async def test_a_listener_running_as_another_user_gets_no_token(
    state_dir: Path, shared: Spawned, watcher: Watcher
) -> None:
    # Directory and socket file are root's: only the peer's uid (SO_PEERCRED) gives it away.
    run = state_dir / "fake"
    run.mkdir(mode=0o700)
    path = run / "harness.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    python = shutil.which("python3", path="/usr/bin:/bin")  # one that uid 65534 may run
    if python is None:
        pytest.skip("no system python3 for the other user")
    child = await asyncio.create_subprocess_exec(
        *[
            python,
            "-c",
            "import socket,sys\n"
            "s=socket.socket(fileno=int(sys.argv[1])); s.listen(); s.settimeout(30)\n"
            "print('listening', flush=True)\n"
            "c,_=s.accept(); c.settimeout(5); got=b''\n"
            "try:\n"
            ' c.sendall(b\'{"type":"welcome","protocol":1,"server":"x","seq":0,"pid":1}\\n\')\n'
            " while (d:=c.recv(65536)): got+=d\n"
            "except OSError: pass\n"
            "print(repr(got), flush=True)\n",
            str(sock.fileno()),
        ],
        pass_fds=(sock.fileno(),),
        user=NOBODY,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    sock.close()
    try:
        assert child.stdout is not None
        async with asyncio.timeout(HANG_GUARD):
            assert await child.stdout.readline() == b"listening\n"
        result = await run_cli(
            "plugins", "set", "discord", "bot_token=-", "--socket", str(path), input=TOKEN
        )
        assert result.rc == 2, result
        assert f"uid {NOBODY}" in result.err and str(path) in result.err
        async with asyncio.timeout(HANG_GUARD):
            out, err = await child.communicate()
        assert out.strip() == b"b''", (out, err)  # it was connected to, then sent not one byte
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()


async def test_a_socket_that_is_a_symlink_or_in_a_world_writable_directory_is_refused(
    state_dir: Path, shared: Spawned, watcher: Watcher
) -> None:
    link = state_dir / "link.sock"
    link.symlink_to(shared.socket)
    result = await run_cli("status", "--socket", str(link))
    assert result.rc == 2 and "not a socket" in result.err, result
    open_dir = state_dir / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(open_dir / "h.sock"))
    sock.listen()
    try:
        result = await run_cli("status", "--socket", str(open_dir / "h.sock"))
    finally:
        sock.close()
    assert result.rc == 2 and "writable by every user" in result.err, result


# -- 2. the daemon follows no link it did not create ----------------------------------------------


async def test_a_symlinked_default_directory_is_refused_and_its_target_left_alone(
    state_dir: Path,
) -> None:
    target = state_dir / "victim"
    target.mkdir(mode=0o755)
    target.chmod(0o755)
    xdg = state_dir / "xdg"
    xdg.mkdir(mode=0o700)
    (xdg / "harness").symlink_to(target)
    cfg = write_config(state_dir, socket="")
    result = await run_cli(
        "run", "--config", str(cfg), env=subprocess_env(state_dir, XDG_RUNTIME_DIR=str(xdg))
    )
    assert result.rc == 1 and "symbolic link" in result.err, result
    assert "Traceback" not in result.err
    assert stat.S_IMODE(target.stat().st_mode) == 0o755  # never chmod-ed through the link
    assert list(target.iterdir()) == []


async def test_a_planted_lock_symlink_is_not_written_through(state_dir: Path) -> None:
    shared_dir = state_dir / "shared"
    shared_dir.mkdir()
    shared_dir.chmod(0o1777)
    victim = state_dir / "precious.txt"
    victim.write_text("precious\n")
    (shared_dir / "h.sock.lock").symlink_to(victim)
    cfg = write_config(state_dir, socket=str(shared_dir / "h.sock"))
    result = await run_cli("run", "--config", str(cfg), env=subprocess_env(state_dir))
    assert result.rc == 1 and "symbolic link" in result.err, result
    assert victim.read_text() == "precious\n"
    assert not (shared_dir / "h.sock").exists()


# -- 4. clients read what they may receive --------------------------------------------------------


async def test_a_frame_over_1_mib_is_reported_as_such_not_as_no_daemon(state_dir: Path) -> None:
    path = state_dir / "big.sock"
    sent = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(b'{"type":"welcome","protocol":1,"server":"x","seq":0,"pid":1}\n')
        await reader.readline()
        writer.write(b'{"type":"response","id":1,"result":"' + b"x" * (2 * MAX) + b'"}\n')
        await writer.drain()
        sent.set()
        await reader.read()

    server = await asyncio.start_unix_server(handle, path=str(path))
    try:
        result = await run_cli("status", "--socket", str(path))
    finally:
        server.close()
    assert result.rc == 1, result
    assert "larger than 1 MiB" in result.err and "start it" not in result.err
    assert "running" in result.err


# -- 9. the CLI in pipes and with bad numbers -----------------------------------------------------


async def test_events_follow_into_head_exits_quietly_with_status_0(
    shared: Spawned, watcher: Watcher
) -> None:
    script = (
        f"{sys.executable} -m harness events -f --socket {shared.socket} | head -1; "
        'echo "harness-exit=${PIPESTATUS[0]}" >&2'
    )
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        script,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    waiting = asyncio.ensure_future(proc.communicate())
    poke = await Wire.open(shared.socket)
    try:
        async with asyncio.timeout(HANG_GUARD):
            while not waiting.done():  # events for `harness` to write into the closed pipe
                await poke.request(
                    "plugins.update_settings",
                    name="discord",
                    settings={"status_text": f"p{time.monotonic_ns()}"},
                )
                await asyncio.wait([waiting], timeout=0.2)
    finally:
        poke.close()
    out, err = waiting.result()
    assert len(out.decode().splitlines()) == 1
    assert "harness-exit=0" in err.decode(), err
    assert "Exception" not in err.decode() and "Traceback" not in err.decode(), err


async def test_a_negative_count_is_a_usage_error(shared: Spawned) -> None:
    result = await run_cli("events", "-n", "-5", "--socket", str(shared.socket))
    assert result.rc == 2 and "must be 0 or more" in result.err, result
    assert "Traceback" not in result.err


# -- 8. the CLI reads a secret without echo --------------------------------------------------------


async def test_a_secret_typed_on_a_terminal_is_not_echoed(
    shared: Spawned, watcher: Watcher
) -> None:
    master, slave = pty.openpty()

    def controlling_tty() -> None:
        os.setsid()
        import fcntl

        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    token = "Typed-On-A-Terminal-Token-42"
    proc = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "harness", "plugins", "set", "discord", "bot_token=-"],
        *["--socket", str(shared.socket)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=REPO_ROOT,
        preexec_fn=controlling_tty,
    )
    os.close(slave)
    seen = bytearray()

    def read_until(needle: bytes) -> None:
        deadline = time.monotonic() + HANG_GUARD
        while needle not in seen and (left := deadline - time.monotonic()) > 0:
            if not select.select([master], [], [], left)[0]:
                return
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child has gone and the terminal with it
                return
            if not chunk:
                return
            seen.extend(chunk)

    try:
        await asyncio.to_thread(read_until, b"not shown")
        assert b"bot_token" in seen, seen
        os.write(master, token.encode() + b"\n")
        await asyncio.to_thread(read_until, b"saved")
        async with asyncio.timeout(HANG_GUARD):
            rc = await proc.wait()
        await asyncio.to_thread(read_until, b"\0")  # whatever is left, up to EOF
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        os.close(master)
    assert rc == 0, seen
    assert token.encode() not in seen
