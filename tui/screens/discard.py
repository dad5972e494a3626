"""Leaving a settings screen with unsaved edits: ask first, as a modal.

Every way off a settings screen (``escape``, ``p``, ``e``, ``a``, ``q``/``ctrl+q``, the command
palette's screens, plugins and contexts) calls :func:`ask_first` with what it was about to do.
Without unsaved edits it answers False and the caller goes on at once, as before. With them it
shows :class:`DiscardScreen` and answers True (the caller stops); the operator's choice then
saves (and goes on only if the save left nothing unsaved), discards (the form gets the values
last loaded back, a typed secret emptied, and goes on), or keeps editing (nothing happens).

"Unsaved" is what the form would send or refuse on ``ctrl+s``: a value that differs from the
one last loaded or saved (typing and deleting back is no change), a typed secret, a secret to
be cleared, a value the field cannot hold. The prompt names the fields, never a value.

SIGTERM and SIGHUP do not come here: they exit the app directly (harness/hangup.py), so a
`kill` or a dropped SSH link never waits on a prompt nobody can answer.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

if TYPE_CHECKING:
    from tui.app import HarnessApp
    from tui.screens.settings import SettingsScreen

Choice = Literal["save", "discard", "keep"]


class DiscardScreen(ModalScreen[Choice]):
    """ "Discard unsaved changes to PLUGIN?" with Save / Discard / Keep editing.

    ``cannot_save``: why saving is impossible now (offline, a read-only context); the Save
    choice is then left out and the reason said instead. ``then``: what leaving does, in
    words ("quit", "go back"), so the operator knows what each choice leads to."""

    DEFAULT_CSS = """
    DiscardScreen {
        align: center middle;
    }
    #discard-dialog {
        width: 66;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        padding: 1 2;
        border: thick $warning;
        border-title-style: bold;
        background: $surface;
    }
    #discard-question { text-style: bold; }
    #discard-detail { margin: 1 0 0 0; }
    #discard-buttons {
        height: auto;
        margin: 1 0 0 0;
        align: right middle;
    }
    #discard-buttons Button { margin: 0 0 0 1; }
    """

    BINDINGS = [
        Binding("s", "choose('save')", "Save", id="discard.save"),
        Binding("d", "choose('discard')", "Discard", id="discard.discard"),
        Binding("escape", "choose('keep')", "Keep editing", id="discard.keep"),
    ]

    def __init__(
        self, plugin: str, fields: list[str], *, then: str, cannot_save: str | None = None
    ) -> None:
        super().__init__()
        self.plugin = plugin
        self.fields = fields
        self.then = then
        self.cannot_save = cannot_save

    def compose(self) -> ComposeResult:
        with Vertical(id="discard-dialog") as dialog:
            dialog.border_title = "! unsaved changes"
            yield Static(
                f"Discard unsaved changes to {self.plugin}?", id="discard-question", markup=False
            )
            lines = [f"Changed: {', '.join(self.fields)}."]
            if self.cannot_save:
                lines.append(f"They cannot be saved now: {self.cannot_save}.")
                lines.append(f"Discard them and {self.then}, or keep editing.")
            else:
                lines.append(f"Save or discard them, then {self.then}; or keep editing.")
            yield Static("\n".join(lines), id="discard-detail", markup=False)
            with Horizontal(id="discard-buttons"):
                if not self.cannot_save:
                    yield Button("Save (s)", id="save", variant="primary", compact=True)
                yield Button("Discard (d)", id="discard", variant="warning", compact=True)
                yield Button("Keep editing (esc)", id="keep", compact=True)

    def on_mount(self) -> None:
        self.query_one("#keep", Button).focus()  # the safe answer is the default

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "choose" and parameters == ("save",) and self.cannot_save:
            return False
        return True

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_choose(event.button.id or "keep")

    def action_choose(self, choice: str) -> None:
        if choice == "save" and self.cannot_save:
            return
        self.dismiss(choice if choice in ("save", "discard") else "keep")  # type: ignore[arg-type]


def unsaved(app: HarnessApp, staying: str | None = None) -> SettingsScreen | None:
    """The settings screen on the current stack with unsaved edits, if any (not the one of
    ``staying``, a plugin whose screen the caller keeps)."""
    settings = sys.modules.get("tui.screens.settings")
    if settings is None:
        return None  # no settings screen was ever opened: nothing to lose
    for screen in reversed(app.screen_stack):
        if (
            isinstance(screen, settings.SettingsScreen)
            and screen.plugin != staying
            and screen.unsaved_labels()
        ):
            return screen
    return None


def ask_first(
    app: HarnessApp, then: Callable[[], object], *, words: str = "leave", staying: str | None = None
) -> bool:
    """True when the caller must not go on now: unsaved edits, so the prompt is shown (or is
    already up). ``then`` is called again once they are saved or discarded, and finds
    nothing left to ask about. False: nothing to lose, go on."""
    if isinstance(app.screen, DiscardScreen):
        return True  # a key the prompt does not take (ctrl+q): the prompt answers first
    screen = unsaved(app, staying)
    if screen is None:
        return False
    prompt = DiscardScreen(
        screen.plugin, screen.unsaved_labels(), then=words, cannot_save=screen.cannot_save()
    )

    def chosen(choice: Choice | None) -> None:
        if choice == "discard":
            screen.discard_edits()
            then()
        elif choice == "save":
            app.run_worker(_save_then(screen, then), group="discard-save", exit_on_error=False)

    app.push_screen(prompt, chosen)
    return True


async def _save_then(screen: SettingsScreen, then: Callable[[], object]) -> None:
    if await screen.save():  # a refusal stays on the form, its errors shown and notified
        then()
