"""Notification targets through apprise: parse a URL, say it without its secrets, send.

apprise is synchronous (it uses requests), so every send runs in a thread of the target's own
executor (``workers`` threads, each with its own apprise instance): a target that hangs ties up
only its own threads, never the event loop, the default executor (which also resolves host
names) or the other targets.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import urllib.parse
from typing import Any

log = logging.getLogger(__name__)

# Notice kinds → apprise notify types (a receiver may colour by it).
NOTIFY_TYPES = {
    "fired": "failure",
    "reminder": "warning",
    "resolved": "success",
    "flapping": "warning",
    "stable": "info",
    "test": "info",
}


def _apprise() -> Any:
    import apprise

    # apprise logs each send at INFO; our delivery log says what matters.
    logging.getLogger("apprise").setLevel(logging.WARNING)
    return apprise


def invalid_reason(url: str) -> str | None:
    """Why apprise cannot use ``url``, or None if it can."""
    if not isinstance(url, str) or "://" not in url:
        return "expected an apprise URL such as json://host:port/path or discord://id/token"
    if _apprise().Apprise.instantiate(url) is None:
        scheme = url.split("://", 1)[0]
        return (
            f"apprise cannot use this {scheme}:// URL (unknown scheme or missing parts); "
            "expected an apprise URL such as json://host:port/path, ntfy://topic, "
            "discord://webhook_id/webhook_token"
        )
    return None


def _host(url: str) -> str:
    """The host as written (case kept: in a Slack or Telegram URL it is a secret's spelling)."""
    try:
        netloc = urllib.parse.urlsplit(url).netloc
    except ValueError:
        return ""
    host = netloc.rpartition("@")[2]
    return host[1:].partition("]")[0] if host.startswith("[") else host.partition(":")[0]


def redact(url: str) -> str:
    """``scheme://host/…``: never user, password, path or query; the host only where it looks
    like a server name (it has a dot, or is localhost) and apprise itself shows it unmasked.
    A Telegram URL's host is the bot token, an ntfy URL's may be the topic: ``scheme://…``."""
    scheme = url.partition("://")[0]
    host = _host(url)
    if host and ("." in host or host == "localhost" or ":" in host):
        plugin = _apprise().Apprise.instantiate(url)
        private = plugin.url(privacy=True) if plugin is not None else ""
        if f"://{host}" not in private and f"@{host}" not in private:
            host = ""
    else:
        host = ""
    return f"{scheme}://{host}/…" if host else f"{scheme}://…"


def secrets_of(url: str) -> set[str]:
    """The parts of ``url`` to mask in log lines: the whole URL and every token-like part."""
    parts = {url, url.partition("://")[2]}
    try:
        split = urllib.parse.urlsplit(url)
    except ValueError:
        return parts
    if redact(url).endswith("://…"):  # the host part is itself secret (a bot token, a topic)
        parts.add(split.netloc)
        parts.update(p for p in split.netloc.replace("@", ":").split(":") if len(p) >= 8)
        parts.add(_host(url))
    if split.password:
        parts.add(split.password)
    if split.username and len(split.username) >= 8:
        parts.add(split.username)
    for segment in split.path.split("/"):
        if len(segment) >= 8:
            parts.add(segment)
    for _, value in urllib.parse.parse_qsl(split.query):
        if len(value) >= 8:
            parts.add(value)
    return {p for p in parts if len(p) >= 4}


def _why(result: Any) -> str:
    """apprise's own account of a failed send: the warnings and errors its result captured."""
    lines: list[str] = []
    logs = getattr(result, "logs", None)
    if callable(logs):
        for entry in logs():
            if str(getattr(entry, "level", "")).upper() in ("WARNING", "ERROR", "CRITICAL"):
                message = str(getattr(entry, "message", entry))
                if message not in lines:
                    lines.append(message)
            if len(lines) >= 3:
                break
    return "; ".join(lines)


class Target:
    """One configured target: its name, the redacted URL shown everywhere, and a sender."""

    def __init__(
        self, name: str, url: str, workers: int = 1, read_timeout: float | None = None
    ) -> None:
        self.name = name
        # apprise waits 4 s for an answer by default: a receiver that takes longer got every
        # notification, yet each counted as failed and was sent again, for ever. So a send
        # waits as long as `send_timeout` says, unless the URL sets apprise's own `rto`.
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query) if "?" in url else {}
        self._read_timeout = None if "rto" in query else read_timeout
        self.shown = redact(url)
        self._url = url
        self._secrets = secrets_of(url)
        self._workers = workers
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=f"alert-target-{name}"
        )
        self._inflight: set[asyncio.Future[tuple[bool, str]]] = set()
        # One apprise instance per thread: its plugin objects keep per-request state.
        self._local = threading.local()

    @property
    def secrets(self) -> set[str]:
        return set(self._secrets)

    def mask(self, text: str) -> str:
        for s in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(s, "***")
        return text

    def _send_blocking(self, title: str, body: str, kind: str) -> tuple[bool, str]:
        sender = getattr(self._local, "apprise", None)
        if sender is None:
            sender = self._local.apprise = _apprise().Apprise()
            sender.add(self._url)
            if self._read_timeout is not None:
                for server in sender:
                    server.socket_read_timeout = self._read_timeout
        try:
            result = sender.notify(
                body=body, title=title, notify_type=NOTIFY_TYPES.get(kind, "info")
            )
        except Exception as exc:  # apprise should not raise; a bug there must not kill us
            return False, self.mask(f"{type(exc).__name__}: {exc}")[:500]
        if result:
            return True, ""
        return False, self.mask(_why(result) or "the target refused the notification")[:500]

    async def send(self, title: str, body: str, kind: str, timeout: float) -> tuple[bool, str]:
        """``(sent, why not)``. A timed-out send counts as failed (it is retried: at least
        once); its thread is left to finish, and while every thread is taken by such a send the
        next one waits for a thread, at most ``timeout``."""
        self._inflight = {f for f in self._inflight if not f.done()}
        if len(self._inflight) >= self._workers:
            await asyncio.wait(self._inflight, timeout=timeout, return_when="FIRST_COMPLETED")
            if all(not f.done() for f in self._inflight):
                return False, f"an earlier send is still hanging after {timeout:g} s"
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self._send_blocking, title, body, kind)
        self._inflight.add(future)
        try:
            # asyncio.timeout, not wait_for (Python 3.11's can lose a cancel: the outbox's stop).
            async with asyncio.timeout(timeout):
                return await asyncio.shield(future)
        except TimeoutError:
            return False, f"no answer within {timeout:g} s"

    def close(self) -> None:
        # Never wait for a hung send: its thread ends when apprise's own timeouts fire.
        self._executor.shutdown(wait=False, cancel_futures=True)
