"""How the client commands put daemon answers into words for a terminal."""

from __future__ import annotations

import time
from typing import Any

from harness import render
from harness.protocol import to_connection


def describe_connection(conn: Any) -> str:
    """One line for a stored or received connection object (see harness.render.line)."""
    return render.line(to_connection(conn), time.time())


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
