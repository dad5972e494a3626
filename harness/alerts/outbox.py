"""The SQL of alerts: the outbox of notifications, the firings still open, their history.

A notification is inserted (status ``pending``) before anything is sent and marked ``sent`` in
its own commit right after the target accepted it. Between those two commits lies the only
window in which a crash resends: delivery is at least once, and every notification carries its
dedup key so a receiver can drop a repeat. The key is UNIQUE here, so one firing is queued once
per target however often the engine is asked.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import msgspec

from harness.store import Store

# status: pending (to send, retried until sent), sent, silenced (a silence held it back),
# dropped (its target is no longer configured).
PENDING, SENT, SILENCED, DROPPED, FAILED = "pending", "sent", "silenced", "dropped", "failed"


class Notice(msgspec.Struct, kw_only=True):
    """One notification for one target, as queued."""

    dedup_key: str
    target: str
    kind: str  # fired | reminder | resolved | flapping | stable | test
    rule: str
    plugin: str
    title: str
    body: str
    status: str = PENDING


class Queued(msgspec.Struct, kw_only=True):
    """A row of the outbox."""

    id: int
    dedup_key: str
    target: str
    kind: str
    rule: str
    plugin: str
    title: str
    body: str
    created: float
    status: str
    attempts: int
    next_try: float
    sent_at: float | None
    last_error: str | None


class Active(msgspec.Struct, kw_only=True):
    """A firing not yet resolved."""

    rule: str
    plugin: str
    key: str
    fired_at: float
    state: str
    reason: str | None
    since: float
    reminders: int = 0
    notified: bool = True  # False: it fired during a silence, nobody has been told yet


_COLUMNS = (
    "id, dedup_key, target, kind, rule, plugin, title, body, created, status, attempts, "
    "next_try, sent_at, last_error"
)


def _queued(r: Sequence[Any]) -> Queued:
    return Queued(
        id=r[0],
        dedup_key=r[1],
        target=r[2],
        kind=r[3],
        rule=r[4],
        plugin=r[5],
        title=r[6],
        body=r[7],
        created=r[8],
        status=r[9],
        attempts=r[10],
        next_try=r[11],
        sent_at=r[12],
        last_error=r[13],
    )


async def _insert(store: Store, notices: Sequence[Notice], now: float) -> None:
    await store.conn.executemany(
        "INSERT OR IGNORE INTO alert_outbox (dedup_key, target, kind, rule, plugin, title, "
        "body, created, status, next_try) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (n.dedup_key, n.target, n.kind, n.rule, n.plugin, n.title, n.body, now, n.status, now)
            for n in notices
        ],
    )


async def enqueue(
    store: Store,
    notices: Sequence[Notice],
    *,
    open_firing: Active | None = None,
    close_firing: tuple[str, str] | None = None,
    reminders: tuple[str, str, int, bool] | None = None,
) -> None:
    """Queue ``notices`` and, in the same transaction, record the firing they belong to as open
    or closed (so a restart knows exactly what was already queued)."""
    now = time.time()
    async with store.transaction():
        await _insert(store, notices, now)
        if open_firing is not None:
            a = open_firing
            await store.conn.execute(
                "INSERT OR REPLACE INTO alert_active (rule, plugin, key, fired_at, state, reason, "
                "since, reminders, notified) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    a.rule,
                    a.plugin,
                    a.key,
                    a.fired_at,
                    a.state,
                    a.reason,
                    a.since,
                    a.reminders,
                    int(a.notified),
                ),
            )
        if close_firing is not None:
            await store.conn.execute(
                "DELETE FROM alert_active WHERE rule = ? AND plugin = ?", close_firing
            )
        if reminders is not None:  # (rule, plugin, reminders so far, somebody told yet)
            rule, plugin, count, notified = reminders
            await store.conn.execute(
                "UPDATE alert_active SET reminders = ?, notified = ? WHERE rule = ? AND plugin = ?",
                (count, int(notified), rule, plugin),
            )


async def record_done(store: Store, notice: Notice, *, sent: bool, error: str) -> None:
    """A notification sent at once (a test send), kept for the history."""
    now = time.time()
    async with store.transaction():
        await store.conn.execute(
            "INSERT INTO alert_outbox (dedup_key, target, kind, rule, plugin, title, body, "
            "created, status, attempts, next_try, sent_at, last_error) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)",
            (
                notice.dedup_key,
                notice.target,
                notice.kind,
                notice.rule,
                notice.plugin,
                notice.title,
                notice.body,
                now,
                SENT if sent else FAILED,
                now,
                now if sent else None,
                error or None,
            ),
        )


async def pending(store: Store, target: str, limit: int) -> list[Queued]:
    """The oldest ``limit`` pending notifications of ``target``, oldest first. Delivery sends
    them lane by lane (one rule and one plugin), each lane in order, so a resolve never
    overtakes its firing."""
    rows = await store.fetch_all(
        f"SELECT {_COLUMNS} FROM alert_outbox WHERE target = ? AND status = ? ORDER BY id LIMIT ?",
        (target, PENDING, limit),
    )
    return [_queued(r) for r in rows]


async def mark_sent(store: Store, id: int) -> None:
    async with store.transaction():
        await store.conn.execute(
            "UPDATE alert_outbox SET status = ?, sent_at = ?, attempts = attempts + 1, "
            "last_error = NULL WHERE id = ?",
            (SENT, time.time(), id),
        )


async def mark_failed(store: Store, id: int, error: str, next_try: float) -> int:
    """Count a failed attempt; returns the attempts so far."""
    async with store.transaction():
        await store.conn.execute(
            "UPDATE alert_outbox SET attempts = attempts + 1, last_error = ?, next_try = ? "
            "WHERE id = ?",
            (error, next_try, id),
        )
    row = await store.fetch_one("SELECT attempts FROM alert_outbox WHERE id = ?", (id,))
    return int(row[0]) if row else 0


async def drop_unknown_targets(store: Store, targets: Sequence[str]) -> int:
    """Pending notifications for targets no longer configured are kept, marked ``dropped``."""
    marks = ", ".join("?" * len(targets))
    async with store.transaction():
        cur = await store.conn.execute(
            f"UPDATE alert_outbox SET status = ?, last_error = ? WHERE status = ? "
            f"AND target NOT IN ({marks})",
            (DROPPED, "target no longer configured", PENDING, *targets),
        )
    return cur.rowcount


async def history(store: Store, *, limit: int = 50, target: str | None = None) -> list[Queued]:
    """The newest notifications first, whatever their status."""
    where, params = ("WHERE target = ?", [target]) if target else ("", [])
    rows = await store.fetch_all(
        f"SELECT {_COLUMNS} FROM alert_outbox {where} ORDER BY id DESC LIMIT ?",
        (*params, limit),
    )
    return [_queued(r) for r in rows]


async def target_summary(store: Store) -> dict[str, dict[str, Any]]:
    """Per target: pending count, the oldest pending's attempts and error, the last sent."""
    out: dict[str, dict[str, Any]] = {}
    rows = await store.fetch_all(
        "SELECT target, count(*), max(attempts), min(id) FROM alert_outbox WHERE status = ? "
        "GROUP BY target",
        (PENDING,),
    )
    for target, count, attempts, first in rows:
        out[target] = {"pending": count, "attempts": attempts, "oldest": first}
    rows = await store.fetch_all(
        "SELECT target, max(sent_at) FROM alert_outbox WHERE status = ? GROUP BY target", (SENT,)
    )
    for target, sent_at in rows:
        out.setdefault(target, {})["last_sent"] = sent_at
    rows = await store.fetch_all(
        "SELECT target, last_error, next_try FROM alert_outbox WHERE id IN "
        "(SELECT min(id) FROM alert_outbox WHERE status = ? GROUP BY target) "
        "AND last_error IS NOT NULL",
        (PENDING,),
    )
    for target, error, next_try in rows:
        out.setdefault(target, {}).update(last_error=error, next_try=next_try)
    return out


async def load_active(store: Store) -> list[Active]:
    rows = await store.fetch_all(
        "SELECT rule, plugin, key, fired_at, state, reason, since, reminders, notified "
        "FROM alert_active"
    )
    return [
        Active(
            rule=r[0],
            plugin=r[1],
            key=r[2],
            fired_at=r[3],
            state=r[4],
            reason=r[5],
            since=r[6],
            reminders=r[7],
            notified=bool(r[8]),
        )
        for r in rows
    ]


async def forget_active(store: Store, rule: str, plugin: str) -> None:
    """A firing no configured rule covers any more: nothing will ever resolve it."""
    async with store.transaction():
        await store.conn.execute(
            "DELETE FROM alert_active WHERE rule = ? AND plugin = ?", (rule, plugin)
        )


async def prune(store: Store, keep: int) -> int:
    """Keep the newest ``keep`` finished notifications; pending ones are never removed."""
    async with store.transaction():
        cur = await store.conn.execute(
            "DELETE FROM alert_outbox WHERE status != ? AND id <= "
            "(SELECT max(id) FROM alert_outbox) - ?",
            (PENDING, keep),
        )
    return cur.rowcount
