"""The plugin registry: built-in plugins plus those installed under the ``harness.plugins``
entry-point group."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

from harness.plugin import Plugin

ENTRY_POINT_GROUP = "harness.plugins"
log = logging.getLogger(__name__)


def builtin() -> list[type[Plugin]]:
    # Imported here so that the CLI and the TUI never pay for discord.py.
    from harness.plugins.discord import DiscordPlugin

    return [DiscordPlugin]


def discover() -> dict[str, type[Plugin]]:
    """Every available plugin class by name; a broken third-party plugin is logged and skipped,
    and cannot shadow a built-in one."""
    found = {cls.name: cls for cls in builtin()}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
        except Exception as exc:  # a third-party import error must not stop the daemon
            log.error("plugin entry point %s could not be loaded: %s", ep.name, exc)
            continue
        if not (isinstance(cls, type) and issubclass(cls, Plugin)):
            log.error("plugin entry point %s is not a harness Plugin subclass", ep.name)
        elif cls.name in found:
            log.error("plugin entry point %s: name %r is already taken", ep.name, cls.name)
        else:
            found[cls.name] = cls
    return found
