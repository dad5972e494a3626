"""The plugins table's columns at a given width: what is shown, how wide, and the connection
cell fitted to its room, so the table never scrolls sideways where it can help it.

At 80 columns the demo's row ("● connected  since 12:03  HarnessBot#1234 · 1 ms") did not fit:
the table grew a horizontal scrollbar and the latency was cut off. Now every column but the
connection is as wide as its longest text (names and versions capped, elided with "…"), the
connection column takes the rest of the width, and its text gives way in order of importance:

1. the account name is elided ("HarnessB…"), then left out (the settings screen shows it);
2. a long reason is elided (kept to 10 cells);
3. "since 12:03" becomes "12:03", then the time goes;
4. the reason goes;
5. then, rather than cut the latency, an overdue heartbeat ACK or the retry countdown, they are
   said in fewer words ("no heartbeat reply for 14 s" becomes "no ACK 14 s", "retrying in
   12 s" becomes "retry in 12 s"), and the steps above are taken again from the start with
   them (so the time may come back: "● connected  12:03  1 ms · no ACK 14 s" at 80 columns);
6. last, the whole cell is cut with "…".

The state ("● connected") and the latency or the retry countdown stay longest. The version
column, the least useful, is left out when keeping it would squeeze the connection under
``CONNECTION_ROOM`` cells (a 60-column terminal). The connection never gets under
``CONNECTION_MIN`` cells: narrower than that (about 40 columns with the demo's short names)
the table scrolls sideways rather than cut the other columns: nothing is lost, only out of
view.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from msgspec.structs import replace
from rich.cells import cell_len
from rich.text import Text

from harness.render import ShortPieces, join_short

# key, header; the order they are shown in.
COLUMNS = (
    ("name", "Plugin"),
    ("version", "Version"),
    ("enabled", "Enabled"),
    ("status", "Status"),
    ("connection", "Connection"),
)
PADDING = 2  # DataTable's cell padding: one cell either side of every column
NAME_MAX = 24  # a longer plugin name is elided
VERSION_MAX = 12
CONNECTION_ROOM = 30  # "● disconnected  12:05  retry…": the version goes before this
CONNECTION_MIN = 12  # never narrower: "Connection" and "● connected" fit
WHO_MIN = 5  # an account name elided to fewer cells than this says nothing: left out
DETAIL_MIN = 10
SCROLLBAR = 2  # the table's vertical scrollbar, when its rows do not fit its height


class Layout(NamedTuple):
    """The columns shown (keys, in order) and each one's content width."""

    keys: tuple[str, ...]
    widths: tuple[int, ...]

    def width(self, key: str) -> int:
        return self.widths[self.keys.index(key)]


def elide(text: str, width: int) -> str:
    """``text`` in at most ``width`` cells, its end replaced by "…" when cut."""
    if cell_len(text) <= width:
        return text
    if width <= 0:
        return ""
    cut = Text(text)
    cut.truncate(width, overflow="ellipsis")
    return cut.plain


def layout(width: int, rows: Sequence[Sequence[str]], *, scrollbar: bool = False) -> Layout:
    """The columns for a table ``width`` cells wide holding ``rows`` (name, version, enabled,
    status: the connection is fitted afterwards, with :func:`fit_connection`).
    ``scrollbar``: the rows overflow the table's height, so a vertical scrollbar takes room."""
    room = width - (SCROLLBAR if scrollbar else 0)
    caps = {"name": NAME_MAX, "version": VERSION_MAX}
    fixed: dict[str, int] = {}
    for index, (key, header) in enumerate(COLUMNS[:-1]):
        longest = max((cell_len(row[index]) for row in rows), default=0)
        fixed[key] = max(cell_len(header), min(longest, caps.get(key, longest)))

    def connection_room(keys: Sequence[str]) -> int:
        return room - sum(fixed[k] + PADDING for k in keys) - PADDING

    keys = [key for key, _ in COLUMNS[:-1]]
    if connection_room(keys) < CONNECTION_ROOM:
        keys.remove("version")
    connection = max(CONNECTION_MIN, connection_room(keys))
    return Layout((*keys, "connection"), (*(fixed[k] for k in keys), connection))


# What gives way, in order: each stage leaves out more (False) and lets one piece shrink
# (elided, down to ``low`` cells) to use what room is left.
STAGES: tuple[dict[str, object], ...] = (
    {},
    {"elastic": "who", "low": WHO_MIN},
    {"who": False, "elastic": "detail", "low": DETAIL_MIN},
    {"who": False, "note": False, "elastic": "detail", "low": DETAIL_MIN},
    {"who": False, "note": False, "since_word": False, "elastic": "detail", "low": DETAIL_MIN},
    {"who": False, "note": False, "since": False, "elastic": "detail", "low": DETAIL_MIN},
    {"who": False, "note": False, "since": False, "elastic": "detail", "low": 2},
    {"who": False, "note": False, "since": False, "detail": False},
)


def fit_connection(pieces: ShortPieces, width: int) -> str:
    """The connection cell in at most ``width`` cells, the least important text going first
    (see the module's docstring). The full text when it fits: the same as ``render.short``."""
    fitted = _fit(pieces, width)
    if fitted is None and pieces.brief_health:
        fitted = _fit(replace(pieces, health=pieces.brief_health, brief_health=""), width)
        pieces = replace(pieces, health=pieces.brief_health)
    if fitted is None:
        fitted = elide(_fit_last(pieces), width)
    return fitted


def _fit_last(pieces: ShortPieces) -> str:
    """What the last stage leaves of ``pieces``: the state and the health."""
    dropped = {k: "" for k, keep in STAGES[-1].items() if keep is False}
    return join_short(replace(pieces, **dropped))


def _fit(pieces: ShortPieces, width: int) -> str | None:
    """The first stage's text that fits ``width``, the health whole; None when none does."""
    for stage in STAGES:
        dropped = {k: "" for k, keep in stage.items() if keep is False and k != "since_word"}
        p = replace(pieces, **dropped)
        since_word = stage.get("since_word", True) is not False
        elastic = str(stage.get("elastic", ""))
        full = getattr(p, elastic) if elastic else ""
        if not full:
            text = join_short(p, since_word=since_word)
            if cell_len(text) <= width:
                return text
            continue
        low = int(str(stage["low"]))
        shortest = elide(full, low)
        least = join_short(replace(p, **{elastic: shortest}), since_word=since_word)
        if cell_len(least) <= width:
            room = min(cell_len(full), cell_len(shortest) + width - cell_len(least))
            return join_short(replace(p, **{elastic: elide(full, room)}), since_word=since_word)
    return None
