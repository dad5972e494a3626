"""SettingsForm: a plugin's settings form, generated from its schema (no per-plugin code).

Advanced fields are folded into a Collapsible. The form collects only the fields the user
changed, shows per-field errors (its own and the daemon's) inline, and can be made read-only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Collapsible

from harness.protocol import SettingField
from tui.widgets.setting_field import UNCHANGED, SettingRow

MIN_LABEL, MAX_LABEL = 12, 26  # columns for the label; longer labels wrap


class SettingsForm(Vertical):
    """Rows for every field of ``schema``, filled with ``values`` (secrets as ``{"set": bool}``)."""

    DEFAULT_CSS = """
    SettingsForm {
        height: auto;
        padding: 0 1;
        & Collapsible { padding: 0; border-top: none; }
        &.-read-only SettingRow .label { color: $text-muted; }
    }
    """

    def __init__(
        self,
        schema: Sequence[SettingField],
        values: Mapping[str, Any],
        *,
        read_only: bool = False,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.schema = tuple(schema)
        self.values = dict(values)
        self.read_only = read_only
        # Rows are filled in place only once every control has mounted (a Select half-way
        # through mounting cannot take a value); until then new values wait here.
        self.ready = False
        self._pending_load = False

    def compose(self) -> ComposeResult:
        basic = [f for f in self.schema if not f.advanced]
        advanced = [f for f in self.schema if f.advanced]
        # One label column for the whole form, as wide as its longest label within limits.
        longest = max(
            (len(f.label or f.name) + (2 if f.required else 0) for f in self.schema), default=0
        )
        width = max(MIN_LABEL, min(MAX_LABEL, longest + 2))
        for field in basic:
            yield SettingRow(field, self.values.get(field.name), label_width=width)
        if advanced:
            # Born with the class Collapsible gives itself only when mounted: without it the
            # first layout counted the folded rows (the demo's form was 16 rows taller at
            # 100x30), and the first frame showed a scrollbar thumb for 50-380 ms until the
            # restyle after the mount laid the body out again.
            with Collapsible(
                title=f"Advanced settings ({len(advanced)})", collapsed=True, classes="-collapsed"
            ):
                for field in advanced:
                    yield SettingRow(field, self.values.get(field.name), label_width=width)

    def on_mount(self) -> None:
        self.set_read_only(self.read_only)
        self.call_after_refresh(self._mark_ready)

    class Ready(Message):
        """Every control has mounted: the form is drawn whole from now on."""

    def _mark_ready(self) -> None:
        self.ready = True
        self.post_message(self.Ready())
        if self._pending_load:
            self._pending_load = False
            self.load(self.values)

    @property
    def rows(self) -> dict[str, SettingRow]:
        return {row.field.name: row for row in self.query(SettingRow)}

    def collect(self) -> tuple[dict[str, Any], dict[str, str]]:
        """``(changes, errors)``: only changed fields are in ``changes``; ``errors`` are the
        problems found here, before anything is sent."""
        changes: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for name, row in self.rows.items():
            try:
                value = row.change()
            except ValueError as exc:
                errors[name] = str(exc)
                continue
            if value is not UNCHANGED:
                changes[name] = value
        return changes, errors

    def changed_labels(self) -> list[str]:
        """The labels of the fields whose shown value differs from the one last loaded (an
        unusable value included), in the form's order. Names only: never a value."""
        changes, errors = self.collect()
        return [
            row.field.label or name
            for name, row in self.rows.items()
            if name in changes or name in errors
        ]

    @property
    def dirty(self) -> bool:
        changes, errors = self.collect()
        return bool(changes or errors)

    def show_errors(self, errors: Mapping[str, str]) -> dict[str, str]:
        """Put each error under its field (opening the advanced group if needed); returns the
        errors that name no field of this form."""
        rows = self.rows
        for name, row in rows.items():
            row.show_error(errors.get(name))
        for name in errors:
            if name in rows and rows[name].field.advanced:
                for collapsible in self.query(Collapsible):
                    collapsible.collapsed = False
        # The first field in error is brought into view: at 80x24 it was often below the fold,
        # with only a toast counting "1 field(s)" to say something was wrong.
        first = next((row for name, row in rows.items() if errors.get(name)), None)
        if first is not None:
            # At the top of the view: its error line is its last, and the scroll's bottom
            # line can sit under the footer, where "just visible" would leave it.
            self.call_after_refresh(first.scroll_visible, animate=False, top=True)
        return {k: v for k, v in errors.items() if k not in rows}

    def described(self, errors: Mapping[str, str], most: int = 3) -> str:
        """The errors for a notification, each with its field's label, in the form's order:
        "Max retry delay (s): must be at least 1". Messages only: never a value."""
        rows = self.rows
        ordered = [n for n in rows if n in errors] + [n for n in errors if n not in rows]
        said = [
            f"{rows[n].field.label or n if n in rows else n}: {errors[n]}" for n in ordered[:most]
        ]
        more = len(ordered) - most
        return "; ".join(said) + (f"; and {more} more" if more > 0 else "")

    def load(self, values: Mapping[str, Any]) -> None:
        """Show new saved values, dropping edits."""
        self.values = dict(values)
        if not self.ready:
            self._pending_load = True
            return
        for name, row in self.rows.items():
            row.load(self.values.get(name))

    def set_read_only(self, read_only: bool) -> None:
        self.read_only = read_only
        self.set_class(read_only, "-read-only")
        for row in self.query(SettingRow):
            row.set_read_only(read_only)
