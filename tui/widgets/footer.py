"""KeysFooter: Textual's Footer, rebuilt only when the keys it shows change.

Textual's Footer starts empty and rebuilds all its keys (a recompose: every key widget removed,
created, styled and laid out again) each time the screen says its bindings may have changed:
focus moving, a reactive with ``bindings=True``, the App refreshing its bindings. While the first
screen is built that happened three times, about 20 ms each on this machine class, before the
first frame (``python -m harness.bench tui``, first paint). This one composes its keys at once,
coalesces the signals into at most one check per refresh, and rebuilds only when what it would
show differs from what it shows. Its keys are made in their final state (see ``compose``). What
it draws is Textual's Footer's, unchanged (the snapshots in tests/tui).
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

Shown = tuple[tuple[object, ...], ...]


class KeysFooter(Footer):
    def __init__(self) -> None:
        super().__init__()
        self._shown: Shown | None = None
        self._check_pending = False
        # The keys are known when the footer is composed: Textual's Footer waits for the first
        # bindings signal and composes again then.
        self.set_reactive(Footer._bindings_ready, True)

    def _keys(self) -> Shown:
        # What compose() draws: each shown binding (key, label, action, group, tooltip, and
        # whether it is enabled), and the command palette's key; hidden bindings (a focused
        # table's cursor keys) change nothing on screen.
        active = self.screen.active_bindings
        palette = active.get(self.app.COMMAND_PALETTE_BINDING)
        return (
            (self.show_command_palette, self.compact, palette and palette[1:]),
            *(
                (binding, enabled, tooltip)
                for (_, binding, enabled, tooltip) in active.values()
                if binding.show
            ),
        )

    def compose(self) -> ComposeResult:
        self._shown = self._keys()
        for widget in super().compose():
            if isinstance(widget, FooterKey):
                if "compact" in (widget._reactive_connect or {}):
                    # A key bound to the footer's compact (all but the palette key) starts
                    # compact (FooterKey's default) and is then set to the footer's (False):
                    # two class changes, each restyling it, before it is shown. Made as it
                    # will be, it is styled once.
                    widget.set_reactive(FooterKey.compact, self.compact)
                # The class its compact watcher sets when mounted (the palette key's too,
                # which is not bound to the footer), so that watcher changes nothing and the
                # key is not restyled before the first frame.
                widget.set_class(widget.compact, "-compact", update=False)
            yield widget

    def bindings_changed(self, screen: Screen[object]) -> None:
        if not screen.app.app_focus:
            return  # as Textual's: the terminal lost focus; it signals again on focus
        if self.is_attached and screen is self.screen and not self._check_pending:
            self._check_pending = True
            self.call_after_refresh(self._recompose_if_changed)

    async def _recompose_if_changed(self) -> None:
        self._check_pending = False
        if self.is_attached and self._keys() != self._shown:
            await self.recompose()
