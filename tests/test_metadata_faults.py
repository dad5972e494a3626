"""``ctx.update_metadata`` on a storage fault degrades like the rest of the fault path: the
plugin's call returns, the operator is told (``daemon:storage``), and the values are stored
as soon as writes succeed again (a real daemon on a real file that SQLite reports full)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, ClassVar

import msgspec

from harness.client import Client
from harness.config import Config
from harness.plugin import Plugin, PluginContext
from harness.protocol import STORAGE_EVENT
from tests.conftest import StartDaemon, next_matching
from tests.test_storage_faults import fill_up


class Notes(Plugin):
    name = "notes"
    version = "0.1"
    contexts: ClassVar[list[PluginContext]] = []

    async def start(self, ctx: PluginContext) -> None:
        Notes.contexts.append(ctx)
        await ctx.update_metadata(region="eu", old="gone soon")
        await ctx.set_connection("connected", username="Notes#1")


BIG = "b" * 20_000


def stored_metadata(path: Path) -> dict[str, Any]:
    with sqlite3.connect(path) as conn:
        (meta,) = conn.execute("SELECT metadata FROM plugin_config WHERE name = 'notes'").fetchone()
    decoded: dict[str, Any] = msgspec.json.decode(meta)
    return decoded


async def test_update_metadata_on_a_full_disk_returns_and_is_stored_after(
    start_daemon: StartDaemon, config: Config
) -> None:
    Notes.contexts.clear()
    daemon = await start_daemon(plugins={"notes": Notes})
    (ctx,) = Notes.contexts
    await fill_up(daemon)  # (failing and recovering as it goes: it is failing at its end)
    client = await Client.connect(config.socket_path)
    try:
        await client.subscribe([STORAGE_EVENT])
        assert (await client.request("status"))["storage"]["ok"] is False

        # Returns normally, like set_connection and broadcast do on a full disk: the plugin
        # is not failed (and stopped) by a disk it cannot do anything about.
        # (A value of some size: the row must grow into pages the file no longer has.)
        await ctx.update_metadata(region="us", old=None, added={"n": BIG})
        assert (await client.request("plugins.get", name="notes"))["status"] == "running"
        before = stored_metadata(config.database_path)
        assert before["region"] == "eu" and before["old"] == "gone soon"  # not stored yet

        assert daemon.store is not None
        await daemon.store.limit_pages(1_000_000)
        recovered = await next_matching(client, lambda e: e.data.get("state") == "recovered")
        assert recovered.persisted
        after = stored_metadata(config.database_path)
        assert after["region"] == "us" and after["added"] == {"n": BIG}
        assert "old" not in after  # deleted, not stored as null
        assert after["connection"]["username"] == "Notes#1"  # other keys survive
    finally:
        await client.close()


async def test_a_newer_stored_value_is_not_overwritten_by_an_older_unstored_one(
    start_daemon: StartDaemon, config: Config
) -> None:
    Notes.contexts.clear()
    daemon = await start_daemon(plugins={"notes": Notes})
    (ctx,) = Notes.contexts
    await fill_up(daemon)
    async with await Client.connect(config.socket_path) as client:
        await client.subscribe([STORAGE_EVENT])
        await ctx.update_metadata(region="older", added=BIG)
        assert daemon.store is not None
        await daemon.store.limit_pages(1_000_000)
        await ctx.update_metadata(region="newer")  # may succeed before the recorder retries
        await next_matching(client, lambda e: e.data.get("state") == "recovered")
        assert stored_metadata(config.database_path)["region"] == "newer"


async def test_a_metadata_write_that_meets_the_fault_first_tells_it(
    start_daemon: StartDaemon, config: Config
) -> None:
    # No event has failed yet: the failure is told from here, and retried from here.
    Notes.contexts.clear()
    daemon = await start_daemon(plugins={"notes": Notes})
    (ctx,) = Notes.contexts
    assert daemon.store is not None
    async with await Client.connect(config.socket_path) as client:
        await client.subscribe([STORAGE_EVENT])
        await daemon.store.limit_pages(await daemon.store.page_count())
        await ctx.update_metadata(added=BIG)
        failing = await next_matching(client, lambda e: e.event == STORAGE_EVENT)
        assert failing.data["state"] == "failing" and failing.data["cause"] == "disk full"
        status = await client.request("status")
        assert status["storage"]["ok"] is False
        await daemon.store.limit_pages(1_000_000)
        recovered = await next_matching(client, lambda e: e.event == STORAGE_EVENT)
        assert recovered.data["state"] == "recovered"
        assert stored_metadata(config.database_path)["added"] == BIG
        assert (await client.request("status"))["storage"]["ok"] is True
