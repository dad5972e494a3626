"""A real HTTP receiver on 127.0.0.1 for the alert tests and benchmark: apprise's ``json://``
posts land here; it can go down (connection refused) and come back on the same port."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

from aiohttp import web


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fields(body: str) -> dict[str, str]:
    """The ``name: value`` lines of a notification body."""
    out = {}
    for line in body.splitlines():
        name, sep, value = line.partition(": ")
        if sep and name.isidentifier():
            out[name] = value
    return out


class Receiver:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.posts: list[dict[str, Any]] = []  # apprise's JSON payload, plus "fields", "at"
        self.pings = 0
        self.arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    def url(self, path: str = "hook") -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    async def _post(self, request: web.Request) -> web.Response:
        payload = await request.json()
        payload["fields"] = fields(payload.get("message", ""))
        payload["at"] = time.time()
        payload["path"] = request.path
        self.posts.append(payload)
        self.arrived.set()
        return web.json_response({"ok": True})

    async def _get(self, request: web.Request) -> web.Response:
        self.pings += 1
        return web.Response(text="OK")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._post)
        app.router.add_get("/{tail:.*}", self._get)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = self._site = None

    def kinds(self) -> list[str]:
        return [p["fields"].get("kind", "?") for p in self.posts]
