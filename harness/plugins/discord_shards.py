"""Sharding rules for the Discord plugin: what the ``shards`` setting means, and Discord's
rule for starting sessions (each ``max_concurrency`` bucket, ``shard_id % max_concurrency``,
may IDENTIFY once per 5 seconds)."""

from __future__ import annotations

import asyncio
import time
from typing import Literal

ShardMode = Literal["auto"] | int | None  # None: off (one unsharded connection)

MAX_SHARDS = 4096


def parse_shards(value: str) -> ShardMode:
    """The ``shards`` setting: ``off``, ``auto`` or a count from 1 to MAX_SHARDS."""
    text = str(value).strip().lower()
    if text in ("", "off", "none", "0"):
        return None
    if text == "auto":
        return "auto"
    try:
        count = int(text)
    except ValueError:
        count = -1
    if not 1 <= count <= MAX_SHARDS:
        raise ValueError(
            f"shards={value!r} is not off, auto or a number from 1 to {MAX_SHARDS}: "
            "set it with `harness plugins set discord shards=auto`"
        )
    return count


class IdentifyGate:
    """Discord's session start rule: shard ``n`` identifies in bucket ``n % max_concurrency``,
    and each bucket once per ``interval`` seconds. ``wait`` returns when this shard may send
    its IDENTIFY (and books the bucket's slot)."""

    def __init__(self, max_concurrency: int, interval: float) -> None:
        self.max_concurrency = max(1, max_concurrency)
        self.interval = interval
        self._next: dict[int, float] = {}  # bucket -> monotonic time of its next free slot

    async def wait(self, shard_id: int) -> None:
        bucket = shard_id % self.max_concurrency
        now = time.monotonic()
        slot = max(now, self._next.get(bucket, now))
        self._next[bucket] = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)
