"""A database with history already in it, written before the daemon starts: as a daemon that
ran earlier (or older code) left it. Schema by the real Store; rows by plain sqlite3."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

from harness.store import Store


async def seed(database: Path, rows: Iterable[tuple[str, str]]) -> int:
    """Store ``(event name, data as JSON text)`` rows, seq 1, 2, ...; returns the last seq."""
    database.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = await Store.open(database)
    await store.close()
    now = time.time()
    with sqlite3.connect(database) as conn:
        conn.executemany(
            "INSERT INTO events (ts, name, data) VALUES (?, ?, ?)",
            ((now, name, data) for name, data in rows),
        )
        (last,) = conn.execute("SELECT max(seq) FROM events").fetchone()
    conn.close()
    return int(last)


def padded(count: int, pad: int) -> Iterable[tuple[str, str]]:
    """``count`` events of about ``pad`` bytes each."""
    blob = "x" * pad
    return ((f"old:e{i}", json.dumps({"i": i, "pad": blob})) for i in range(count))
