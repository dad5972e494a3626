"""Command-palette entries: open a plugin, enable/disable it, switch screens."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from tui.app import HarnessApp


class HarnessCommands(Provider):
    """One entry per plugin and action, built from the live plugin list."""

    @property
    def harness(self) -> HarnessApp:
        return cast("HarnessApp", self.app)

    def _commands(self) -> list[tuple[str, Callable[[], object], str]]:
        app = self.harness
        # A read-only context refuses silences and enable/disable: they are not offered (they
        # opened a dialog, or asked first, only to be refused).
        writes = not app.target.read_only
        commands: list[tuple[str, Callable[[], object], str]] = [
            ("Show plugins", app.action_show_plugins, "The plugins overview"),
            ("Show events", app.action_show_events, "The live tail of every event"),
            ("Show alerts", app.action_show_alerts, "Alert rules, targets, history, silences"),
            ("Show fleet", app.action_show_fleet, "Every context at once"),
        ]
        if writes:
            commands.insert(
                3, ("Silence alerts", partial(app.silence_plugin, ""), "Start a maintenance window")
            )
        for name, target in app.targets().items():
            if name != app.target.name:
                commands.append(
                    (
                        f"Switch context {name}",
                        partial(app.switch_context, target),
                        f"Watch {target.where}" + (" (read-only)" if target.read_only else ""),
                    )
                )
        for name, state in sorted(app.plugins.items()):
            commands.append(
                (
                    f"Open plugin {name}",
                    partial(app.open_settings, name),
                    f"Settings, connection and history of {name}",
                )
            )
            if not writes:
                continue
            commands.append(
                (
                    f"Silence plugin {name}",
                    partial(app.silence_plugin, name),
                    f"No alerts about {name} for a while (maintenance)",
                )
            )
            verb = "Disable" if state.enabled else "Enable"
            commands.append(
                (
                    f"{verb} plugin {name}",
                    partial(app.toggle_plugin, name),
                    f"{verb} {name} (asks first)",
                )
            )
        return commands

    async def discover(self) -> Hits:
        for title, callback, help_text in self._commands():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, callback, help_text in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)
