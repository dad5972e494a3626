"""Found by filling the disk under a watched daemon (round 2, fourth session): a settings
change refused for a full disk left `harness status` saying "storage ok"."""

from __future__ import annotations

import pytest

from harness.client import Client, ClientError
from harness.config import Config
from harness.protocol import STORAGE_EVENT
from tests.conftest import StartDaemon, next_matching
from tests.test_storage_faults import Link


async def test_a_settings_write_on_a_full_disk_is_told_as_storage_failing(
    start_daemon: StartDaemon, config: Config
) -> None:
    """No event has failed yet; the first write to meet the full disk is a settings change.
    The request is refused (as before) and, now, storage is reported failing to every
    client until a write succeeds again, then recovered, by itself."""
    Link.contexts.clear()
    daemon = await start_daemon(plugins={"link": Link})
    assert daemon.store is not None
    async with await Client.connect(config.socket_path) as client:
        await client.subscribe([STORAGE_EVENT])
        await daemon.store.limit_pages(await daemon.store.page_count())
        with pytest.raises(ClientError) as refused:
            await client.request(
                "plugins.update_settings", name="link", settings={"motto": "m" * 4000}
            )
        assert refused.value.code == "storage_failed", refused.value
        failing = await next_matching(client, lambda e: e.event == STORAGE_EVENT)
        assert failing.data["state"] == "failing" and failing.data["cause"] == "disk full"
        status = await client.request("status")
        assert status["storage"]["ok"] is False, status["storage"]
        assert status["storage"]["cause"] == "disk full", status["storage"]

        await daemon.store.limit_pages(1_000_000)
        recovered = await next_matching(client, lambda e: e.event == STORAGE_EVENT)
        assert recovered.data["state"] == "recovered" and recovered.persisted
        assert (await client.request("status"))["storage"]["ok"] is True
        # The refused change was not kept behind the operator's back.
        info = await client.request("plugins.get", name="link")
        assert info["settings"]["motto"] == ""
