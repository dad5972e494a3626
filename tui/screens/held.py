"""A screen that renders nothing while the App holds its frames (``App.batch_update``).

Textual lays a screen out during a batch and then renders the whole of it, only for the App to
drop the result (``App._display`` draws nothing in a batch). The TUI holds its first frame in a
batch until the daemon's state is known (tui/app.py, ``_hold_first_paint``), and each layout in
that time (the terminal's size arriving, the mode screen resuming, the table growing) rendered
the full screen for nothing: 10-25 ms of CPU before the first frame, which is then rendered
again. What was not rendered stays dirty, so the first frame after the batch draws it; Textual's
own behaviour also forgot the regions it had rendered in a batch, which the App made up for by
marking the whole screen dirty at the end of its hold.

When the hold ends, :func:`draw_when_idle` draws the first frame as soon as the widgets have
handled what the daemon's state made them do (the plugins table measures its new rows when it
is next idle), instead of at the first tick of the screen's update timer: Textual starts that
timer paused and, once resumed, it waits a whole period (1/60 s) before its first tick. Seen as
24-30 ms between the end of the hold and the first frame in 3 of 4 starts against a live daemon
at load ~13, those where the daemon's state came after the screen was built (timestamps taken
around both in a 100x30 pseudo-terminal, as ``python -m harness.bench tui`` starts it).
"""

from __future__ import annotations

import asyncio
from typing import Any

from textual.app import App, ScreenStackError
from textual.screen import Screen


class HeldScreen(Screen[None]):
    def _compositor_refresh(self) -> None:
        app = self.app
        if app._batch_count and self is app.screen and not app.is_inline:
            return  # drawn after the batch: the dirty regions and widgets are kept
        super()._compositor_refresh()


def draw_when_idle(app: App[Any], tries: int = 200) -> None:
    """Draw the current screen's pending update once every widget on it has handled the
    messages queued for it (the table measures the rows just added when it is next idle; a
    frame before that showed a status cut to its column's old width), unless a frame is held or
    nothing is pending by then. Looked at again on each turn of the event loop (``call_soon``:
    the App's own message queue would come back to it before any widget ran) while a widget is
    still busy, ``tries`` times at most; the update timer draws it in any case."""

    def draw() -> None:
        try:
            screen = app.screen
        except ScreenStackError:  # the app is closing
            return
        if app._batch_count or not screen.is_current:
            return
        nodes = screen.walk_children(with_self=True)
        if tries > 1 and any(not node._message_queue.empty() for node in nodes):
            draw_when_idle(app, tries - 1)
        elif screen._layout_required or screen._repaint_required or screen._dirty_widgets:
            screen._on_timer_update()  # what the update timer's tick does, now

    asyncio.get_running_loop().call_soon(draw)
