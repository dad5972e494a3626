"""How the client commands put daemon answers into words for a terminal."""

from __future__ import annotations

import time
from typing import Any


def describe_connection(conn: dict[str, Any] | None) -> str:
    """One line, glyph and words (never colour alone): ``● connected as Bot#1 since 12:03:04``."""
    from harness.protocol import STATE_GLYPHS  # msgspec: only when there is something to show

    if not conn:
        return "-"
    state = conn.get("state", "?")
    text = f"{STATE_GLYPHS.get(state, '?')} {state.replace('_', ' ')}"
    if state == "connected" and conn.get("username"):
        text += f" as {conn['username']}"
    if conn.get("attempt"):
        text += f" (attempt {conn['attempt']})"
    if conn.get("reason"):
        text += f": {conn['reason']}"
    if conn.get("since"):
        text += f" since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(conn['since']))}"
    return text


def plugin_table(plugins: list[dict[str, Any]]) -> None:
    if not plugins:
        print("no plugins installed")
        return
    width = max(6, *(len(p["name"]) for p in plugins))
    print(f"\n{'PLUGIN':<{width}}  ENABLED  STATUS    CONNECTION")
    for p in plugins:
        status = p["status"] + (f" ({p['reason']})" if p.get("reason") else "")
        conn = p.get("connection") or p.get("metadata", {}).get("connection")
        print(
            f"{p['name']:<{width}}  {'yes' if p['enabled'] else 'no':<7}  {status:<8}  "
            f"{describe_connection(conn)}"
        )
