"""SafeSelect: textual's Select with a guard for textual#6581.

In textual 8.2.8 ``Select._on_mount`` can run before its ``SelectCurrent`` child exists or
has composed its ``#label``, and then raises ``NoMatches`` (seen here when a form mounts while
the app is busy). This subclass waits for the label before initialising, and ignores value
changes until then; the value set meanwhile is the one shown once ready. Drop it when textual
fixes the bug.
"""

from __future__ import annotations

from typing import Any

from textual import events
from textual.widgets import Select
from textual.widgets._select import SelectCurrent


class SafeSelect(Select[str]):
    """A Select that initialises once its children exist."""

    _ready = False

    def _on_mount(self, event: events.Mount) -> None:
        event.prevent_default()  # skip Select._on_mount; _initialise does its work when safe
        self._initialise()

    def _initialise(self) -> None:
        # Under load even the SelectCurrent child may not be there yet, not only its label.
        current = self.query(SelectCurrent)
        if not current or not current.first().query("#label"):
            self.call_after_refresh(self._initialise)
            return
        self._ready = True
        self._setup_options_renderables()
        self._init_selected_option(self._value)
        # A value set before now was only recorded; show it (idempotent if it was not).
        super()._watch_value(self.value)

    def _watch_value(self, value: Any) -> None:
        if self._ready:
            super()._watch_value(value)
        else:
            self._value = value
