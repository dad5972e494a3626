"""systemd integration without a dependency: the sd_notify protocol (readiness, status,
stopping, watchdog) spoken over the datagram socket named by ``$NOTIFY_SOCKET``.

Everything here is a no-op when the daemon is not started by systemd with ``Type=notify``, so
``harness run`` in a terminal behaves exactly as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


def _address(value: str) -> str | bytes | None:
    """``$NOTIFY_SOCKET`` as a connectable address: a path, or ``@name`` for the abstract
    namespace (a leading NUL byte on the wire)."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # vsock and other forms: not for a user service; ignore rather than fail


def watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Seconds between watchdog pings (half of ``WATCHDOG_USEC``), or None when the watchdog
    is off or meant for another process (``WATCHDOG_PID`` not ours)."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 1_000_000 / 2


class Notifier:
    """Sends sd_notify messages; silent when there is no ``$NOTIFY_SOCKET``.

    A failed send is logged once at debug and otherwise ignored: systemd going away must never
    stop the daemon."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_every = watchdog_interval(env) if self.address else None
        self._sock: socket.socket | None = None
        self._watchdog: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            log.debug("sd_notify failed: %s", exc)
            return False
        return True

    def status(self, text: str) -> None:
        # One line: a newline would start another assignment.
        self.send("STATUS=" + " ".join(text.split()))

    def ready(self, status: str) -> None:
        self.send("READY=1", "STATUS=" + " ".join(status.split()), f"MAINPID={os.getpid()}")

    def stopping(self, status: str = "stopping") -> None:
        self.send("STOPPING=1", "STATUS=" + " ".join(status.split()))

    def start_watchdog(self) -> None:
        """Ping from a task on the running event loop: if the loop hangs, the pings stop and
        systemd restarts the service, which is the whole point of the watchdog."""
        if self.watchdog_every is None or self._watchdog is not None:
            return
        self._watchdog = asyncio.get_running_loop().create_task(
            self._ping(self.watchdog_every), name="systemd-watchdog"
        )

    async def _ping(self, every: float) -> None:
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(every)

    def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


class StatusLine:
    """A bus subscriber that keeps systemd's STATUS= line (shown by ``systemctl status``) on
    each plugin's connection state: ``discord connected, echo disconnected``."""

    def __init__(self, notifier: Notifier) -> None:
        from harness.bus import Patterns

        self.patterns = Patterns(["*:connection"])
        self._notifier = notifier
        self._states: dict[str, str] = {}
        # "stopping" once the daemon stops: plugins then report `stopped`, and systemctl must
        # not show the unit as running again while it deactivates.
        self.phase = "running"

    def seed(self, states: Mapping[str, str]) -> None:
        self._states.update(states)

    def text(self) -> str:
        if not self._states:
            return f"{self.phase}; no plugins"
        return f"{self.phase}; " + ", ".join(f"{n} {s}" for n, s in sorted(self._states.items()))

    def deliver(self, frame: bytes, event: object) -> None:
        data = getattr(event, "data", None)
        name = getattr(event, "event", "")
        state = data.get("state") if isinstance(data, dict) else getattr(data, "state", None)
        plugin = name.rsplit(":", 1)[0]
        if isinstance(state, str) and self._states.get(plugin) != state:
            self._states[plugin] = state
            self._notifier.status(self.text())
