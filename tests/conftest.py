"""Shared fixtures: a daemon on a private temp directory, with a real socket and SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import pytest

from harness import logs
from harness.client import Client, DaemonUnavailable
from harness.config import Config, DaemonConfig
from harness.daemon import Daemon
from harness.plugin import Plugin
from harness.protocol import PROTOCOL_VERSION, Event
from tests import hang_dump
from tests.sample_plugins import Echo

T = TypeVar("T")

# Snapshot determinism (see shared notes): these change every snapshot.
os.environ.pop("NO_COLOR", None)
os.environ.pop("TEXTUAL_THEME", None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    # Near pytest-timeout's limit, print what each asyncio task awaits (tests/hang_dump.py).
    timer = hang_dump.arm(item)
    try:
        return (yield)
    finally:
        if timer is not None:
            timer.cancel()


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # Not tmp_path: a Unix socket path must stay under ~107 bytes, and pytest's are long.
    path = Path(tempfile.mkdtemp(prefix="harness-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def config(state_dir: Path) -> Config:
    return Config(
        daemon=DaemonConfig(
            socket=str(state_dir / "run" / "harness.sock"),
            database=str(state_dir / "state" / "state.db"),
            stop_timeout=2.0,
        )
    )


# Teardown waits have deadlines: a stop that never ends must fail the test that caused it,
# loudly, not hang the suite (pytest-timeout, set in pyproject.toml, is only the last resort).
TEARDOWN_TIMEOUT = 30.0

# The deadline of a wait whose condition is expected to come: it only guards a hang, so it is
# generous. At load average 14 on 2 cores, `python -m harness run` with a bad config took 14 s
# of wall time for 0.7 s of CPU; 5 s and 15 s deadlines failed tests that would have passed.
HANG_GUARD = 60.0


@contextlib.asynccontextmanager
async def deadline(what: str, seconds: float = TEARDOWN_TIMEOUT) -> AsyncIterator[None]:
    """Fail with ``what`` named if the block has not finished within ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        pytest.fail(f"{what} did not finish within {seconds:g} s", pytrace=False)


StartDaemon = Callable[..., Awaitable[Daemon]]


@pytest.fixture
async def start_daemon(config: Config) -> AsyncIterator[StartDaemon]:
    """``await start_daemon(plugins={...})`` runs an in-process daemon until the test ends."""
    running: list[Daemon] = []

    async def start(
        plugins: Mapping[str, type[Plugin]] | None = None, cfg: Config | None = None
    ) -> Daemon:
        daemon = Daemon(cfg or config, dict(plugins) if plugins is not None else {"echo": Echo})
        await daemon.start()
        running.append(daemon)
        return daemon

    yield start
    for daemon in reversed(running):
        # A daemon's stop ends within stop_timeout + 1 s whatever its plugins do.
        async with deadline("teardown: Daemon.stop()"):
            await daemon.stop()


@pytest.fixture
async def connect(config: Config) -> AsyncIterator[Callable[..., Awaitable[Client]]]:
    clients: list[Client] = []

    async def make(cfg: Config | None = None) -> Client:
        c = await Client.connect((cfg or config).socket_path, client="test")
        clients.append(c)
        return c

    yield make
    for c in clients:
        async with deadline("teardown: Client.close()"):
            await c.close()


async def wait_until(
    predicate: Callable[[], bool], timeout: float = HANG_GUARD, interval: float = 0.005
) -> None:
    """Wait for a condition that has no event to await (state in another process or thread)."""
    async with asyncio.timeout(timeout):
        # Polling by design (ruff ASYNC110 wants an Event, which state elsewhere cannot set).
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(interval)


async def next_matching(
    client: Client, predicate: Callable[[Event], bool], timeout: float = HANG_GUARD
) -> Event:
    async with asyncio.timeout(timeout):
        while True:
            event = await client.next_event()
            if predicate(event):
                return event


async def collect(client: Client, count: int, timeout: float = HANG_GUARD) -> list[Event]:
    async with asyncio.timeout(timeout):
        return [await client.next_event() for _ in range(count)]


def conn_states(events: list[Event]) -> list[str]:
    return [e.data["state"] for e in events if e.event.endswith(":connection")]


# -- raw protocol access ------------------------------------------------------------------


class RawConnection:
    """The socket without harness.client: bytes in, decoded frames (plain dicts) out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, frame: dict[str, Any] | bytes) -> None:
        data = frame if isinstance(frame, bytes) else msgspec.json.encode(frame) + b"\n"
        self.writer.write(data)
        await self.writer.drain()

    async def recv(self, timeout: float = HANG_GUARD) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            line = await self.reader.readline()
        if not line:
            raise EOFError("the daemon closed the connection")
        value = msgspec.json.decode(line)
        assert isinstance(value, dict), line
        return value

    async def recv_type(self, type_: str, timeout: float = HANG_GUARD) -> dict[str, Any]:
        """The next frame of ``type_``, skipping events (a subscription may be live)."""
        async with asyncio.timeout(timeout):
            while (frame := await self.recv()).get("type") != type_:
                assert frame.get("type") == "event", f"expected {type_}, got {frame}"
        return frame

    async def hello(self) -> dict[str, Any]:
        await self.send({"type": "hello", "protocol": PROTOCOL_VERSION, "client": "raw-test"})
        welcome = await self.recv()
        assert welcome["type"] == "welcome", welcome
        return welcome

    async def request(self, id: int, method: str, **params: Any) -> dict[str, Any]:
        await self.send({"type": "request", "id": id, "method": method, "params": params})
        async with asyncio.timeout(HANG_GUARD):
            while True:
                frame = await self.recv()
                if frame.get("id") == id and frame["type"] in ("response", "error"):
                    return frame

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


@pytest.fixture
async def raw(config: Config) -> AsyncIterator[Callable[..., Awaitable[RawConnection]]]:
    """``await raw()`` opens a raw connection (no hello sent) to the daemon's socket."""
    opened: list[RawConnection] = []

    async def make(path: Path | None = None) -> RawConnection:
        reader, writer = await asyncio.open_unix_connection(
            str(path or config.socket_path), limit=4 * 1024 * 1024
        )
        conn = RawConnection(reader, writer)
        opened.append(conn)
        return conn

    yield make
    for conn in opened:
        async with deadline("teardown: a raw connection's close"):
            await conn.close()


# -- subprocesses: the real `python -m harness` --------------------------------------------

REPO_ROOT = Path(__file__).resolve().parent.parent


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return msgspec.json.encode(value).decode()  # a JSON string is a TOML basic string
    raise TypeError(f"no TOML for {value!r}")


def write_config(
    state_dir: Path,
    *,
    plugins: Mapping[str, Mapping[str, Any]] | None = None,
    name: str = "harness.toml",
    **daemon: Any,
) -> Path:
    """A TOML config with the socket and database under ``state_dir`` (overridable)."""
    daemon.setdefault("socket", str(state_dir / "run" / "harness.sock"))
    daemon.setdefault("database", str(state_dir / "state" / "state.db"))
    lines = ["[daemon]", *(f"{k} = {toml_value(v)}" for k, v in daemon.items())]
    for plugin, table in (plugins or {}).items():
        lines += ["", f"[plugins.{plugin}]", *(f"{k} = {toml_value(v)}" for k, v in table.items())]
    path = state_dir / name
    path.write_text("\n".join(lines) + "\n")
    return path


def subprocess_env(state_dir: Path, **extra: str) -> dict[str, str]:
    """The test's environment, sandboxed: defaults resolve under ``state_dir``."""
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_CONFIG"}
    env.update(
        XDG_RUNTIME_DIR=str(state_dir),
        XDG_STATE_HOME=str(state_dir / "xdg-state"),
        # No operator's ~/.config/harness/config.toml leaks into a test.
        XDG_CONFIG_HOME=str(state_dir / "xdg-config"),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class DaemonProcess:
    """``python -m harness run`` as a child process; stderr is collected as it comes."""

    def __init__(self, proc: asyncio.subprocess.Process, socket_path: Path) -> None:
        self.proc = proc
        self.socket_path = socket_path
        self._stderr = bytearray()
        assert proc.stderr is not None
        self._reader = asyncio.get_running_loop().create_task(self._drain(proc.stderr))

    async def _drain(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            self._stderr += chunk

    @property
    def stderr(self) -> str:
        return self._stderr.decode(errors="replace")

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def wait_ready(self, timeout: float = HANG_GUARD) -> None:
        """Until a client completes the handshake (or the process dies: then fail with why)."""
        async with asyncio.timeout(timeout):
            while True:
                if self.proc.returncode is not None:
                    await self.wait()
                    raise AssertionError(
                        f"daemon exited with {self.proc.returncode}:\n{self.stderr}"
                    )
                try:
                    # Listening but slow to answer (a loaded machine): wait, do not give up.
                    client = await Client.connect(self.socket_path, client="probe", timeout=10.0)
                except DaemonUnavailable:
                    await asyncio.sleep(0.02)
                    continue
                await client.close()
                return

    async def wait(self, timeout: float = HANG_GUARD) -> int:
        async with asyncio.timeout(timeout):
            rc = await self.proc.wait()
            await self._reader
        return rc

    def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()


SpawnDaemon = Callable[..., Awaitable[DaemonProcess]]


@pytest.fixture
async def spawn_daemon(state_dir: Path) -> AsyncIterator[SpawnDaemon]:
    """``await spawn_daemon(config_path)`` starts ``python -m harness run`` and, by default,
    waits until it answers. Every process started is killed when the test ends."""
    procs: list[DaemonProcess] = []

    async def spawn(
        config_path: Path | None,
        *,
        ready: bool = True,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        socket_path: Path | None = None,
    ) -> DaemonProcess:
        argv = [sys.executable, "-m", "harness", "run"]
        if config_path is not None:
            argv += ["--config", str(config_path)]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            cwd=REPO_ROOT,
            env=env or subprocess_env(state_dir),
        )
        daemon = DaemonProcess(proc, socket_path or state_dir / "run" / "harness.sock")
        procs.append(daemon)
        if ready:
            await daemon.wait_ready()
        return daemon

    try:
        yield spawn
    finally:
        for daemon in procs:
            daemon.kill()
            with contextlib.suppress(Exception):
                await daemon.wait(HANG_GUARD)


class CliResult(msgspec.Struct):
    rc: int
    out: str
    err: str


async def run_cli(
    *args: str,
    input: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = HANG_GUARD,
) -> CliResult:
    """Run ``python -m harness ARGS`` to completion without blocking the event loop (an
    in-process daemon keeps serving meanwhile)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "harness",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
        env=env,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate(input.encode() if input is not None else None)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return CliResult(proc.returncode, out.decode(), err.decode())


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def daemon_log() -> Iterator[io.StringIO]:
    """What the daemon's log output would say: a root handler set up as ``logs.setup`` does
    (secret-masking filter included), at DEBUG, for the duration of the test."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(logs.RedactSecrets())
    root = logging.getLogger()
    old_level = root.level
    # First in line, as it would be alone in the daemon: a handler before it (pytest's) would
    # format and cache an exception's text before the filter could mask it.
    root.handlers.insert(0, handler)
    root.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
