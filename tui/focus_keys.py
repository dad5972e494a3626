"""Tab and Shift+Tab for screens with fields to type into, handled before any key is handed out.

Textual binds Tab on every Screen, but it looks at that binding only once the key has gone to the
focused field and bubbled back up to the app. Keys that arrive in one burst behind a Tab (tmux
`send-keys 'abc' Tab 'def'`, a paste-like typist, a loaded machine catching up) have been handed
to the old field by then: "def" went into the field before. A priority binding is looked at as
the key arrives, before the next one is handed to anyone, so the focus has moved when it is.
Nothing in the app's screens uses Tab for anything else (no TextArea)."""

from __future__ import annotations

from textual.binding import Binding

FOCUS_KEYS = [
    Binding("tab", "app.focus_next", "Focus next", show=False, priority=True),
    Binding("shift+tab", "app.focus_previous", "Focus previous", show=False, priority=True),
]
