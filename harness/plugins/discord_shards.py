"""Sharding rules for the Discord plugin: what the ``shards`` setting means, and Discord's
rule for starting sessions (each ``max_concurrency`` bucket, ``shard_id % max_concurrency``,
may IDENTIFY once per 5 seconds)."""

from __future__ import annotations

import asyncio
import time
from typing import Literal

ShardMode = Literal["auto"] | int | None  # None: off (one unsharded connection)

# One daemon holds every shard: at Discord's usual max_concurrency of 1 (5 s per IDENTIFY),
# 1,024 shards take 85 minutes to start, and 2.5 million guilds in one process is past what one
# machine should carry. Bigger bots split their shards over processes, which this is not.
MAX_SHARDS = 1024


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
    """Discord's session start rule: shard ``n`` identifies in bucket ``n % max_concurrency``
    (an unsharded session is shard 0), and each bucket once per ``interval`` seconds; Discord
    answers one sooner with op 9 (invalid session).

    Two steps, because opening a connection takes a varying time: ``wait`` books the bucket's
    next slot before connecting (so shards start bucket by bucket, in order), and ``sending``,
    called just before the IDENTIFY goes out, holds it until ``interval`` after the bucket's
    last IDENTIFY was really sent. A slow connect for one shard and a fast one for the next
    would otherwise bring their IDENTIFYs closer than the rule allows."""

    def __init__(
        self, max_concurrency: int, interval: float, after: IdentifyGate | None = None
    ) -> None:
        self.max_concurrency = max(1, max_concurrency)
        self.interval = interval
        self._next: dict[int, float] = {}  # bucket -> monotonic time of its next free slot
        self._sent: dict[int, float] = {}  # bucket -> monotonic time its last IDENTIFY went out
        if after is not None and after._sent:
            # The rule is Discord's per bot, not per run of the plugin: a restart (a new
            # setting) keeps the last sends. With other buckets, the latest send holds them all.
            if after.max_concurrency == self.max_concurrency:
                self._sent = dict(after._sent)
            else:
                latest = max(after._sent.values())
                self._sent = dict.fromkeys(range(self.max_concurrency), latest)

    def bucket(self, shard_id: int | None) -> int:
        return (shard_id or 0) % self.max_concurrency

    async def wait(self, shard_id: int | None) -> None:
        bucket = self.bucket(shard_id)
        now = time.monotonic()
        slot = max(now, self._next.get(bucket, now))
        self._next[bucket] = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)

    async def sending(self, shard_id: int | None) -> None:
        """Return when this shard's IDENTIFY may go out now, and note that it does."""
        bucket = self.bucket(shard_id)
        while True:
            now = time.monotonic()
            last = self._sent.get(bucket)
            if last is None or now - last >= self.interval:
                self._sent[bucket] = now
                return
            await asyncio.sleep(last + self.interval - now)
