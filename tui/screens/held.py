"""A screen that renders nothing while the App holds its frames (``App.batch_update``).

Textual lays a screen out during a batch and then renders the whole of it, only for the App to
drop the result (``App._display`` draws nothing in a batch). The TUI holds its first frame in a
batch until the daemon's state is known (tui/app.py, ``_hold_first_paint``), and each layout in
that time (the terminal's size arriving, the mode screen resuming, the table growing) rendered
the full screen for nothing: 10-25 ms of CPU before the first frame, which is then rendered
again. What was not rendered stays dirty, so the first frame after the batch draws it; Textual's
own behaviour also forgot the regions it had rendered in a batch, which the App made up for by
marking the whole screen dirty at the end of its hold.
"""

from __future__ import annotations

from textual.screen import Screen


class HeldScreen(Screen[None]):
    def _compositor_refresh(self) -> None:
        app = self.app
        if app._batch_count and self is app.screen and not app.is_inline:
            return  # drawn after the batch: the dirty regions and widgets are kept
        super()._compositor_refresh()
