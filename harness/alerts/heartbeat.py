"""Watching the watcher: an HTTP GET to ``[alerts] heartbeat_url`` every ``heartbeat_every``
while the daemon runs (the Healthchecks.io pattern). When the pings stop, because the daemon or
the whole host died, the service at the other end tells someone."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import urllib.parse

import aiohttp

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(self, url: str, every: float, timeout: float) -> None:
        self.url = url
        # The path is the check's secret (Healthchecks: /<uuid>); the host is not.
        split = urllib.parse.urlsplit(url)
        self.shown = f"{split.scheme}://{split.hostname or ''}/…"
        self.every = every
        self.timeout = timeout
        self.last_ok: float | None = None
        self.last_error: str | None = None
        self.pings = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="alerts:heartbeat")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def describe(self) -> dict[str, object]:
        return {
            "url": self.shown,
            "every": self.every,
            "pings": self.pings,
            "last_ok": self.last_ok,
            "last_error": self.last_error,
        }

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=min(self.timeout, self.every))
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                started = time.monotonic()
                try:
                    async with session.get(self.url) as response:
                        await response.read()
                        if response.status >= 400:
                            raise _Refused(response.status, response.reason)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    # Never the URL: it is the check's secret. aiohttp's messages name it.
                    why = _why(exc, timeout.total or self.timeout)
                    self.last_error = why.replace(self.url, self.shown)
                    log.warning("alerts: heartbeat to %s failed: %s", self.shown, self.last_error)
                else:
                    self.pings += 1
                    self.last_ok = time.time()
                    self.last_error = None
                await asyncio.sleep(max(0.0, self.every - (time.monotonic() - started)))


class _Refused(Exception):
    def __init__(self, status: int, reason: str | None) -> None:
        super().__init__(f"the server answered HTTP {status}" + (f" {reason}" if reason else ""))


def _why(exc: Exception, timeout: float) -> str:
    """A failed ping in words for `harness alerts` and the log (it showed "TimeoutError: " with
    nothing after it, and "RuntimeError: HTTP 500")."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {exc.os_error.strerror or exc.os_error}"
    return str(exc) or type(exc).__name__
