"""How the client commands put daemon answers into words for a terminal (or a pipe)."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Sequence
from typing import Any

# Keys of event data that hold a Unix time: shown as local time with age, never as an epoch.
TIME_KEYS = frozenset({"since", "retry_at", "ts", "started", "updated_at"})
# The keys that say most about an event go first.
FIRST_KEYS = ("state", "plugin", "status", "username", "reason", "attempt", "changed")


def age(seconds: float) -> str:
    """``42s``, ``5m``, ``3h 20m``, ``2d 4h``: short, for "(5m ago)"."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        h, m = divmod(s // 60, 60)
        return f"{h}h {m}m" if m else f"{h}h"
    d, h = divmod(s // 3600, 24)
    return f"{d}d {h}h" if h else f"{d}d"


def when(ts: float, now: float | None = None) -> str:
    """Local time with its age: ``12:03:04 (5m ago)`` today, ``2026-11-24 09:10 (1d 3h ago)``
    otherwise; a time in the future says ``in 5m``."""
    now = time.time() if now is None else now
    local = time.localtime(ts)
    same_day = time.localtime(now)[:3] == local[:3]
    stamp = time.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M", local)
    delta = now - ts
    return f"{stamp} ({age(delta)} ago)" if delta >= 0 else f"{stamp} (in {age(-delta)})"


def describe_connection(conn: Any, health: Any = None) -> str:
    """One line, glyph and words (never colour alone), from harness.render, with the CLI's
    local time and age: ``● connected as Bot#1 · 42 ms since 12:03:04 (5m ago)``. ``health``:
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


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Aligned columns whatever the cell widths (rich measures wide glyphs too). On a terminal
    the last columns wrap inside their cell at its width; in a pipe nothing is cut."""
    import io

    from rich.console import Console
    from rich.table import Table

    out = Table(box=None, pad_edge=False, show_edge=False, header_style="", padding=(0, 2, 0, 0))
    for i, header in enumerate(headers):
        # The last column takes what is left and wraps; the others keep their words whole.
        out.add_column(header, no_wrap=i < len(headers) - 1, overflow="fold")
    for row in rows:
        out.add_row(*row)
    tty = sys.stdout.isatty()
    width = shutil.get_terminal_size().columns if tty else 100_000
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, highlight=False, markup=False).print(out)
    for line in buffer.getvalue().splitlines():
        print(line.rstrip())


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
    print()
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
