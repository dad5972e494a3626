"""Demo controls: tiny HTTP POSTs to the local Discord gateway's ``/_control`` API.

Plain asyncio (one request per connection, ``Connection: close``) keeps aiohttp out of the TUI.
The outage is ONE request (``/_control/outage``): "refuse" closes the listening socket the control
API shares, so a "drop" sent afterwards as a second request could never get through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

TIMEOUT = 5.0


class ControlError(Exception):
    """The control request failed; the message says how."""


async def post(base_url: str, path_and_query: str, *, timeout: float = TIMEOUT) -> tuple[int, str]:
    """POST to ``base_url`` + ``path_and_query``; returns ``(status, body)``."""
    url = urlsplit(base_url)
    if url.scheme != "http" or not url.hostname:
        raise ControlError(f"{base_url}: only http://host:port URLs are supported")
    request = (
        f"POST {url.path.rstrip('/')}{path_and_query} HTTP/1.1\r\nHost: {url.netloc}\r\n"
        "Content-Length: 0\r\nConnection: close\r\n\r\n"
    ).encode("ascii")
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(url.hostname, url.port or 80)
            try:
                writer.write(request)
                await writer.drain()
                raw = await reader.read()  # Connection: close, so the body ends with the stream
            finally:
                writer.close()
    except TimeoutError:
        raise ControlError(
            f"the demo's gateway at {base_url} did not answer within {timeout:g} s: it may be "
            "stopped (SIGSTOP) or overloaded; nothing was injected. Press the key again later, "
            "or quit (q) and start `harness demo` again"
        ) from None
    except OSError as exc:
        # Refused: the demo's gateway process is gone (crashed, killed). Say so and what to
        # do, not only the socket's error.
        why = exc.strerror or str(exc)
        gone = isinstance(exc, ConnectionRefusedError)
        raise ControlError(
            (
                f"the demo's gateway at {base_url} is not running ({why}): it has stopped or "
                "crashed, so there is nothing to inject a fault into. Quit (q) and start "
                "`harness demo` again for a new gateway"
            )
            if gone
            else (
                f"cannot reach the demo's gateway at {base_url} ({why}); nothing was injected. "
                "Quit (q) and start `harness demo` again if it persists"
            )
        ) from None
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise ControlError(f"{base_url}: not an HTTP answer: {status_line!r}")
    return int(parts[1]), body.decode("utf-8", "replace")


async def flap(base_url: str) -> str:
    """Drop the gateway connection (close code 4000: the client resumes)."""
    status, body = await post(base_url, "/_control/drop?code=4000")
    return _result("flap", status, body)


async def outage(base_url: str, seconds: float = 5.0) -> str:
    """Refuse new gateway connections for ``seconds`` and drop the current one."""
    status, body = await post(base_url, f"/_control/outage?seconds={seconds:g}&code=4000")
    return _result(f"outage of {seconds:g} s", status, body)


def _result(what: str, status: int, body: str) -> str:
    if status >= 300:
        raise ControlError(f"{what} failed: HTTP {status} {body.strip()[:200]}")
    return f"{what} sent (HTTP {status})"


ControlCall = Callable[[str], Awaitable[str]]
