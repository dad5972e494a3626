"""Shared fixtures: a daemon on a private temp directory, with a real socket and SQLite file."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest

from harness.client import Client
from harness.config import Config, DaemonConfig
from harness.daemon import Daemon
from harness.plugin import Plugin
from harness.protocol import Event
from tests.sample_plugins import Echo

T = TypeVar("T")

# Snapshot determinism (see shared notes): these change every snapshot.
os.environ.pop("NO_COLOR", None)
os.environ.pop("TEXTUAL_THEME", None)


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
        await c.close()


async def wait_until(
    predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.005
) -> None:
    """Wait for a condition that has no event to await (state in another process or thread)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(interval)


async def next_matching(
    client: Client, predicate: Callable[[Event], bool], timeout: float = 5.0
) -> Event:
    async with asyncio.timeout(timeout):
        while True:
            event = await client.next_event()
            if predicate(event):
                return event


async def collect(client: Client, count: int, timeout: float = 5.0) -> list[Event]:
    async with asyncio.timeout(timeout):
        return [await client.next_event() for _ in range(count)]


def conn_states(events: list[Event]) -> list[str]:
    return [e.data["state"] for e in events if e.event.endswith(":connection")]


