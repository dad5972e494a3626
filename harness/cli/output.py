"""How the client commands put daemon answers into words for a terminal (or a pipe)."""

from __future__ import annotations

import sys
import time

# typing and collections.abc only for the type checker: a one-shot command pays for each import.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

# Keys of event data that hold a Unix time: shown as local time with age, never as an epoch.
TIME_KEYS = frozenset(
    {
        *("since", "retry_at", "ts", "started", "updated_at"),
        # daemon:storage's gap, alert:resolved, alert:silence
        *("failed_since", "recovered_at", "fired_at", "starts", "ends", "ended"),
        "ack_overdue_since",  # {plugin}:health, with -f
    }
)
# The keys that say most about an event go first.
FIRST_KEYS = ("state", "plugin", "status", "username", "reason", "attempt", "changed")


def prepare() -> None:
    """Import what describing connections takes (msgspec, harness.render): for
    ``with_connection(prepare=...)``, so that over ssh it happens while ssh connects."""
    from harness import render  # noqa: F401


def age(seconds: float) -> str:
    """``42 s``, ``5 min``, ``3 h 20 min``, ``2 d 4 h``: short, for "(5 min ago)"; the units
    as the TUI and harness.render write them ("42 s ago"), so both say an age alike."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        h, m = divmod(s // 60, 60)
        return f"{h} h {m} min" if m else f"{h} h"
    d, h = divmod(s // 3600, 24)
    return f"{d} d {h} h" if h else f"{d} d"


def when(ts: float, now: float | None = None) -> str:
    """Local time with its age: ``12:03:04 (5 min ago)`` today, ``2026-11-24 09:10 (1 d 3 h
    ago)`` otherwise; a time in the future says ``in 5 min``."""
    now = time.time() if now is None else now
    local = time.localtime(ts)
    same_day = time.localtime(now)[:3] == local[:3]
    stamp = time.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M", local)
    delta = now - ts
    return f"{stamp} ({age(delta)} ago)" if delta >= 0 else f"{stamp} (in {age(-delta)})"


def describe_connection(conn: Any, health: Any = None) -> str:
    """One line, glyph and words (never colour alone), from harness.render, with the CLI's
    local time and age: ``● connected as Bot#1 · 42 ms since 12:03:04 (5 min ago)``. ``health``:
    the plugin's live heartbeat health as the daemon answered it (``"health"``), if any."""
    import msgspec

    from harness import render  # msgspec: only when there is something to show
    from harness.protocol import Health, to_connection

    c = to_connection(conn)
    try:
        live = msgspec.convert(health, Health) if isinstance(health, dict) else None
    except msgspec.ValidationError:
        live = None  # a newer daemon's shape: the stored connection still says enough
    text = render.line(c, time.time(), show_since=False, health=live)
    if c is not None and c.since:
        text += f" since {when(c.since)}"
    return text


# Characters outside ASCII that the tables show (harness.render's glyphs and separators), each
# one terminal cell wide (tests/test_cli_fast.py checks them with rich's own measure).
NARROW = frozenset("·—…→■○◌●✖")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Aligned columns whatever the cell widths (rich measures wide glyphs too). On a terminal
    the last columns wrap inside their cell at its width; in a pipe nothing is cut.

    In a pipe, a table whose every cell is printable ASCII or :data:`NARROW` (the usual case)
    is laid out by :func:`plain_lines`, with the same result as rich's (tests/test_cli_fast.py
    compares them): importing rich costs a one-shot command more than the rest of it."""
    tty = sys.stdout.isatty()
    if not tty and all(_narrow(cell) for cell in (*headers, *(c for r in rows for c in r))):
        lines = plain_lines(headers, rows)
    else:
        import shutil

        lines = rich_lines(headers, rows, shutil.get_terminal_size().columns if tty else 100_000)
    for line in lines:
        print(line)


def plain_lines(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The table as rich lays it out at an unlimited width, for cells one column per char."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    return [
        "".join(f"{c:<{w}}  " for c, w in zip(line, widths, strict=True)).rstrip()
        for line in (headers, *rows)
    ]


def rich_lines(headers: Sequence[str], rows: Sequence[Sequence[str]], width: int) -> list[str]:
    import io

    from rich.console import Console
    from rich.table import Table

    out = Table(box=None, pad_edge=False, show_edge=False, header_style="", padding=(0, 2, 0, 0))
    for i, header in enumerate(headers):
        # The last column takes what is left and wraps; the others keep their words whole.
        out.add_column(header, no_wrap=i < len(headers) - 1, overflow="fold")
    for row in rows:
        out.add_row(*row)
    buffer = io.StringIO()
    # emoji=False: a ":smile:" in a name is shown as written, not as the emoji.
    Console(
        file=buffer, width=width, color_system=None, highlight=False, markup=False, emoji=False
    ).print(out)
    return [line.rstrip() for line in buffer.getvalue().splitlines()]


def _narrow(cell: str) -> bool:
    """One terminal cell per character, nothing rich would lay out differently."""
    return cell.isprintable() and (cell.isascii() or all(c.isascii() or c in NARROW for c in cell))


def plugin_table(plugins: list[dict[str, Any]]) -> None:
    if not plugins:
        print("no plugins installed")
        return
    rows = []
    for p in plugins:
        status = p["status"] + (f" ({p['reason']})" if p.get("reason") else "")
        conn = p.get("connection") or p.get("metadata", {}).get("connection")
        shown = describe_connection(conn, p.get("health"))
        rows.append([p["name"], "yes" if p["enabled"] else "no", status, shown])
    table(["PLUGIN", "ENABLED", "STATUS", "CONNECTION"], rows)


def fix_hints(plugins: list[dict[str, Any]]) -> list[str]:
    """For each plugin that is not configured, the exact command that configures it: its
    required settings that have no value, a secret read from stdin."""
    hints = []
    for p in plugins:
        conn = p.get("connection") or p.get("metadata", {}).get("connection") or {}
        if conn.get("state") != "not_configured":
            continue
        missing = []
        for field in p.get("schema") or []:
            value = (p.get("settings") or {}).get(field["name"])
            unset = not value.get("set") if isinstance(value, dict) else value in (None, "")
            if field.get("required") and unset:
                missing.append(f"{field['name']}=" + ("-" if field["type"] == "secret" else "…"))
        if missing:
            secret = any(m.endswith("-") for m in missing)
            stdin = " (the secret is read from stdin)" if secret else ""
            hints.append(f"harness plugins set {p['name']} {' '.join(missing)}{stdin}")
        else:
            hints.append(f"harness plugins show {p['name']}   # its settings and what is missing")
    return hints


def event_text(data: Any, seq: int | None = None) -> str:
    """Event data as ``key=value`` pairs, the telling keys first, times in local time; a
    connection's own ``seq`` (the event's) is left out."""
    if not isinstance(data, dict):
        import msgspec

        data = msgspec.to_builtins(data)
        if not isinstance(data, dict):
            return str(data)
    keys = [k for k in FIRST_KEYS if k in data] + [k for k in data if k not in FIRST_KEYS]
    parts = []
    for key in keys:
        value = data[key]
        if (key == "seq" and value == seq) or value is None:
            continue  # the row's own seq; a null says nothing
        if key in TIME_KEYS and isinstance(value, (int, float)) and value > 0:
            text = when(value)
        elif isinstance(value, str):
            text = value
        else:
            import msgspec

            text = msgspec.json.encode(value).decode()
        parts.append(f"{key}={text}")
    return " ".join(parts)
