"""Keep the app's long-lived objects out of the garbage collector's full passes.

A full (generation 2) collection walks every tracked object: with a Textual app, its styles and
its widgets, that stalled the UI for 40-250 ms at a time on the shared 2-core machine (measured
with ``python -m harness.bench tui``: the worst change -> indicator samples were collections).
Once the first screen is up, what exists lives as long as the app, so it is frozen
(``gc.freeze``); what comes later is collected as usual. Unfrozen when the app ends, so an app
run in a longer process (the tests) leaves nothing behind for good."""

from __future__ import annotations

import gc


def freeze() -> None:
    gc.freeze()


def unfreeze() -> None:
    gc.unfreeze()
