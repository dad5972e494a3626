"""The latest live heartbeat health of each plugin, kept by the daemon so that a request can
answer with it.

``{plugin}:health`` is live only (never stored, never replayed) and published only when it
changes, so a client that asks after the fact (``harness status``, ``harness plugins show``)
would otherwise never learn that a heartbeat ACK is overdue. The rule for when a health ends is
every client's (``protocol.keeps_health``): a new connection state other than ``connected``
ends it, unless some part of a connection made of parts is still connected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from harness.bus import Patterns
from harness.protocol import Event, Health, keeps_health, plugin_of_health_event


class LiveHealth:
    """A bus subscriber (``bus.subscribe(live)``) holding each plugin's last Health."""

    def __init__(self) -> None:
        self.patterns = Patterns(["*:health", "*:connection"])
        self._health: dict[str, Health] = {}

    def deliver(self, frame: bytes, event: Event) -> None:
        plugin = plugin_of_health_event(event.event)
        if plugin is not None:
            try:
                self._health[plugin] = msgspec.convert(event.data, Health)
            except msgspec.ValidationError:
                self._health.pop(plugin, None)  # a shape we cannot read says nothing now
            return
        plugin = event.event.removesuffix(":connection")
        state, parts = _field(event.data, "state"), _field(event.data, "parts")
        part_states = [_field(p, "state") for p in parts] if isinstance(parts, list) else []
        if not keeps_health(state, part_states):
            self._health.pop(plugin, None)

    def of(self, plugin: str) -> Health | None:
        return self._health.get(plugin)


def _field(data: Any, name: str) -> Any:
    if isinstance(data, Mapping):
        return data.get(name)
    return getattr(data, name, None)
