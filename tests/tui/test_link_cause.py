"""An outage that retrying cannot end says its cause in the top bar, in words, at 80x24."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import msgspec

from harness.config import Config
from harness.protocol import MAX_FRAME_BYTES
from tui.widgets.link_status import LinkStatus

from .conftest import make_app, screen_text, until


def _at(config: Config, path: Path) -> Config:
    daemon = msgspec.structs.replace(config.daemon, socket=str(path))
    return msgspec.structs.replace(config, daemon=daemon)


async def test_a_socket_in_a_world_writable_directory_is_named_in_the_bar(
    config: Config, state_dir: Path
) -> None:
    open_dir = state_dir / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)  # anyone could have put the socket there: the client refuses it
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(open_dir / "h.sock"))
    listener.listen()
    try:
        app = make_app(_at(config, open_dir / "h.sock"))
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.link.changed_at > 0 and not app.link.online)
            await until(pilot, lambda: "socket not trusted" in screen_text(app))
            header = screen_text(app).splitlines()[0]
            assert "▼ offline: socket not trusted — see `harness status`" in header, header
            assert "retrying" not in header
            bar = app.screen.query_one(LinkStatus)
            assert bar.has_class("-offline")
            assert "writable by every user" in str(bar.tooltip)  # the whole story on hover
            await pilot.press("q")
    finally:
        listener.close()


async def test_a_frame_over_the_limit_is_named_in_the_bar(config: Config, state_dir: Path) -> None:
    path = state_dir / "big.sock"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A daemon whose first answer is over the limit; the client hangs up halfway through.
        with contextlib.suppress(ConnectionError):
            await reader.readline()
            writer.write(b'{"type":"welcome","protocol":1,"server":"x","seq":0,"pid":1}\n')
            await reader.readline()
            writer.write(b'{"type":"response","id":1,"result":"' + b"x" * (2 * MAX_FRAME_BYTES))
            writer.write(b'"}\n')
            await writer.drain()
            await reader.read()

    server = await asyncio.start_unix_server(handle, path=str(path))
    try:
        app = make_app(_at(config, path))
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: "a frame over the size limit" in screen_text(app), 10)
            header = screen_text(app).splitlines()[0]
            assert "▼ offline: a frame over the size limit" in header, header
            assert "larger than 1 MiB" in str(app.screen.query_one(LinkStatus).tooltip)
            await pilot.press("q")
    finally:
        server.close()
