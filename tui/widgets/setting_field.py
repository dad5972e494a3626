"""SettingRow: one field of a plugin settings form, built from its SettingField.

The control depends on the type: Input for string and integer, Switch for boolean, Select for
select, and for a secret a masked, write-only "replace" Input plus a "clear" action; a secret's
value is never shown, only whether it is set.
"""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Select, Static, Switch

from harness.protocol import SettingField
from tui.widgets.safe_select import SafeSelect


class Unchanged:
    """The row's value is the one the daemon reported."""


UNCHANGED = Unchanged()


def describe(field: SettingField) -> str:
    """The help line: description, range, default, required."""
    parts = [field.description] if field.description else []
    if field.type == "integer" and (field.minimum is not None or field.maximum is not None):
        lo = "" if field.minimum is None else str(field.minimum)
        hi = "" if field.maximum is None else str(field.maximum)
        parts.append(f"range {lo}..{hi}")
    if field.default not in (None, "") and field.type != "secret":
        default = field.default
        if isinstance(default, bool):
            default = "on" if default else "off"
        parts.append(f"default {default}")
    if field.required:
        parts.append("required")
    return " · ".join(parts)


def integer_problem(field: SettingField, typed: str) -> str | None:
    """Why ``typed`` cannot go in an integer field (None when it can, or when it is empty, which
    unsets the value)."""
    if field.type != "integer" or not typed.strip():
        return None
    text = typed.strip()
    try:
        value = int(text)
    except ValueError:
        try:
            float(text)
        except ValueError:
            return f"must be a whole number ({text!r} is not a number)"
        return f"must be a whole number ({text} has a fraction)"
    if field.minimum is not None and value < field.minimum:
        return f"must be at least {field.minimum}"
    if field.maximum is not None and value > field.maximum:
        return f"must be at most {field.maximum}"
    return None


class SettingRow(Widget):
    """Label, control, help line and an inline error line for one setting."""

    DEFAULT_CSS = """
    SettingRow {
        height: auto;
        & > Horizontal { height: auto; }
        & .label { width: 18; padding: 0 1 0 0; }
        & .label.-required { text-style: bold; }
        & Input, & Select { width: 1fr; }
        & Switch { border: none; padding: 0 1; height: 1; }
        & .switch-word { padding: 0 1; }
        & .secret-state { width: auto; padding: 0 2 0 0; }
        & Button { min-width: 9; }
        & .help { color: $text-muted; }
        & .error { color: $text-error; display: none; }
        & .error.-shown { display: block; }
    }
    """

    def __init__(self, field: SettingField, value: Any, *, label_width: int = 18) -> None:
        super().__init__(id=f"field-{field.name}")
        self.field = field
        self.label_width = label_width
        self.value = value
        self.clear_requested = False
        # Set by compose; None until the row is composed (then edits cannot exist yet).
        self.control: Input | Switch | Select[str] | None = None

    def compose(self) -> ComposeResult:
        f = self.field
        label = f.label or f.name
        with Horizontal():
            title = Label(
                f"{label} *" if f.required else label,
                classes="label -required" if f.required else "label",
            )
            title.styles.width = self.label_width
            yield title
            if f.type == "boolean":
                self.control = Switch(bool(self.value), id="control")
                yield self.control
                yield Label(self._switch_word(bool(self.value)), classes="switch-word")
            elif f.type == "select":
                options = [(o, o) for o in f.options]
                start = self.value if self.value in f.options else Select.NULL
                self.control = SafeSelect(
                    options, value=start, allow_blank=not f.required, compact=True, id="control"
                )
                yield self.control
            elif f.type == "secret":
                yield Label(self._secret_word(), classes="secret-state", id="secret-state")
                self.control = Input(
                    password=True, placeholder="type to replace", compact=True, id="control"
                )
                yield self.control
                yield Button("Clear", id="clear", compact=True)
            else:
                default = "" if f.default is None else f"default: {f.default}"
                self.control = Input(
                    self._text(self.value),
                    placeholder=default,
                    # Not Textual's type="integer": it drops what it cannot take, so typing
                    # 1.5 showed (and saved) 15. Everything typed stays visible, and a value
                    # the field cannot hold is named inline (see _typed).
                    type="text",
                    compact=True,
                    id="control",
                )
                yield self.control
            if isinstance(self.control, Input):
                # The app turns blinking off for snapshots; any other app keeps the default.
                self.control.cursor_blink = getattr(self.app, "cursor_blink", True)
        help_text = describe(f)
        if help_text:
            help_line = Static(help_text, classes="help", markup=False)
            help_line.styles.padding = (0, 0, 0, self.label_width)
            yield help_line
        error = Static("", classes="error", id="error", markup=False)
        error.styles.padding = (0, 0, 0, self.label_width)
        yield error

    @staticmethod
    def _text(value: Any) -> str:
        return "" if value is None else str(value)

    @staticmethod
    def _switch_word(on: bool) -> str:
        return "on" if on else "off"

    def _secret_word(self) -> str:
        if self.clear_requested:
            return "✖ will be cleared"
        is_set = isinstance(self.value, dict) and bool(self.value.get("set"))
        return "● set" if is_set else "○ not set"

    @on(Switch.Changed)
    def _switch_changed(self, event: Switch.Changed) -> None:
        self.query_one(".switch-word", Label).update(self._switch_word(event.value))

    @on(Button.Pressed, "#clear")
    def _clear_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.clear_requested = not self.clear_requested
        self.query_one("#clear", Button).label = "Keep" if self.clear_requested else "Clear"
        self.query_one("#control", Input).value = ""
        self.query_one("#secret-state", Label).update(self._secret_word())

    @on(Input.Changed, "#control")
    def _typed(self, event: Input.Changed) -> None:
        self.show_error(integer_problem(self.field, event.value))
        if self.field.type == "secret" and event.value and self.clear_requested:
            self.clear_requested = False  # typing a replacement supersedes clearing
            self.query_one("#clear", Button).label = "Clear"
            self.query_one("#secret-state", Label).update(self._secret_word())

    # -- the form's API ----------------------------------------------------------------------

    def change(self) -> Any:
        """The value to send, ``UNCHANGED``, or raise ValueError with a message for the user.
        ``None`` means "unset" (back to the configured or default value)."""
        f = self.field
        control = self.control
        if control is None:
            return UNCHANGED
        if f.type == "boolean":
            assert isinstance(control, Switch)
            return control.value if control.value != bool(self.value) else UNCHANGED
        if f.type == "select":
            assert isinstance(control, Select)
            chosen = None if control.value is Select.NULL else control.value
            return chosen if chosen != self.value else UNCHANGED
        assert isinstance(control, Input)
        typed = control.value
        if f.type == "secret":
            if typed:
                return typed
            return None if self.clear_requested else UNCHANGED
        if typed == self._text(self.value):
            return UNCHANGED
        if typed.strip() == "":
            return None
        if f.type == "integer":
            problem = integer_problem(f, typed)
            if problem:
                raise ValueError(problem)
            number = int(typed.strip())
            # "03" or " 3" for a stored 3 is the same value: not a change (nothing to save,
            # nothing to lose on leaving).
            return UNCHANGED if number == self.value else number
        return typed

    def show_error(self, message: str | None) -> None:
        if not self.is_mounted:
            return
        error = self.query_one("#error", Static)
        error.update(f"✖ {message}" if message else "")
        error.set_class(bool(message), "-shown")

    def load(self, value: Any) -> None:
        """Show ``value`` as the saved state and forget any edit (a secret's input empties)."""
        self.value = value
        self.clear_requested = False
        control = self.control
        if control is None or not self.is_mounted:
            return  # compose will use the new value
        if isinstance(control, Switch):
            control.value = bool(value)
        elif isinstance(control, Select):
            control.value = value if value in self.field.options else Select.NULL
        elif isinstance(control, Input):
            control.value = "" if self.field.type == "secret" else self._text(value)
        if self.field.type == "secret":
            self.query_one("#clear", Button).label = "Clear"
            self.query_one("#secret-state", Label).update(self._secret_word())
        self.show_error(None)

    def set_read_only(self, read_only: bool) -> None:
        for widget in self.query("#control, #clear"):
            widget.disabled = read_only
