"""Prometheus metrics: scraped over real HTTP from a daemon with `[metrics] listen`, parsed with
prometheus_client's own parser, following a plugin's live connection changes."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from pathlib import Path
from typing import ClassVar

import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.config import Config, MetricsConfig
from harness.daemon import Daemon
from harness.metrics import Metrics, MetricsError
from harness.plugin import Plugin, PluginContext
from harness.protocol import STORAGE_EVENT, Event
from tests.conftest import (
    HANG_GUARD,
    StartDaemon,
    run_cli,
    subprocess_env,
    wait_until,
    write_config,
)


class Flip(Plugin):
    """Connects at start; the test then drives its connection through ``Flip.ctx``."""

    name = "flip"
    version = "0.1"
    ctx: ClassVar[PluginContext | None] = None

    async def start(self, ctx: PluginContext) -> None:
        Flip.ctx = ctx
        await ctx.set_connection("connecting", attempt=1)
        await ctx.set_connection("connected", username="Flip#1", latency_ms=42.0)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=HANG_GUARD) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@pytest.fixture
async def daemon(start_daemon: StartDaemon, config: Config) -> Daemon:
    cfg = msgspec.structs.replace(config, metrics=MetricsConfig(listen="127.0.0.1:0"))
    return await start_daemon(plugins={"flip": Flip}, cfg=cfg)


async def test_metrics_follow_a_live_connection(daemon: Daemon, connect: object) -> None:
    assert daemon.metrics is not None and daemon.metrics.address is not None
    port = daemon.metrics.address[1]
    s = await asyncio.to_thread(scrape, port)
    assert value(s, "harness_plugin_connected", plugin="flip") == 1
    assert value(s, "harness_plugin_connection_state", plugin="flip", state="connected") == 1
    assert value(s, "harness_plugin_connection_state", plugin="flip", state="error") == 0
    assert value(s, "harness_plugin_connection_attempts_total", plugin="flip") == 1
    assert value(s, "harness_plugin_reconnects_total", plugin="flip") == 0
    assert value(s, "harness_plugin_heartbeat_latency_seconds", plugin="flip") == 0.042
    assert (value(s, "harness_plugin_connection_state_seconds", plugin="flip") or 0) >= 0
    assert value(s, "harness_stream_seq") == daemon.bus.published_seq  # type: ignore[union-attr]
    assert (value(s, "harness_events_total") or 0) >= 2
    assert value(s, "harness_clients") == 0
    assert value(s, "harness_storage_errors_total") == 0
    assert value(s, "harness_storage_ok") == 1
    assert value(s, "harness_info", version=__import__("harness").__version__) == 1
    assert Flip.ctx is not None

    await Flip.ctx.set_connection("disconnected", attempt=1, reason="gateway went away")
    s = await asyncio.to_thread(scrape, port)
    assert value(s, "harness_plugin_connected", plugin="flip") == 0
    assert value(s, "harness_plugin_connection_state", plugin="flip", state="disconnected") == 1
    assert value(s, "harness_plugin_connection_state", plugin="flip", state="connected") == 0
    assert ("harness_plugin_heartbeat_latency_seconds", frozenset({("plugin", "flip")})) not in s

    await Flip.ctx.set_connection("connecting", attempt=2)
    await Flip.ctx.set_connection("connected", username="Flip#1")
    client = await connect()  # type: ignore[operator]
    await wait_until(lambda: len(daemon.server.clients) == 1)  # type: ignore[union-attr]
    # The recorder announces a storage failure as it begins, on the bus like any event.
    daemon.bus.publish(  # type: ignore[union-attr]
        Event(
            seq=daemon.bus.next_seq(),  # type: ignore[union-attr]
            ts=0.0,
            event=STORAGE_EVENT,
            data={"state": "failing", "cause": "disk full"},
            persisted=False,
        )
    )
    s = await asyncio.to_thread(scrape, port)
    assert value(s, "harness_plugin_connection_attempts_total", plugin="flip") == 2
    assert value(s, "harness_plugin_reconnects_total", plugin="flip") == 1
    assert value(s, "harness_clients") == 1
    assert value(s, "harness_storage_errors_total") == 1
    assert value(s, "harness_events_unpersisted_total") == 1
    await client.close()


async def test_an_address_in_use_is_a_clear_error(daemon: Daemon) -> None:
    assert daemon.metrics is not None and daemon.metrics.address is not None
    other = Metrics(seq=lambda: 0, clients=lambda: 0)
    with pytest.raises(MetricsError, match=r"cannot listen on 127\.0\.0\.1:"):
        other.serve("127.0.0.1", daemon.metrics.address[1])


async def test_retries_that_do_not_pass_through_connecting_are_counted(daemon: Daemon) -> None:
    """discord.py reconnects by itself: the plugin reports `disconnected` with attempt 1, 2, 3
    and then `connected`, never `connecting`. Each retry is an attempt (the counter stayed at 1
    through a whole outage)."""
    assert daemon.metrics is not None and daemon.metrics.address is not None
    port = daemon.metrics.address[1]
    assert Flip.ctx is not None
    for attempt in (1, 2, 3):
        await Flip.ctx.set_connection("disconnected", attempt=attempt, reason="gateway lost")
    await Flip.ctx.set_connection("connected", username="Flip#1")
    s = await asyncio.to_thread(scrape, port)
    # The first at start, two retries that failed, the one that succeeded.
    assert value(s, "harness_plugin_connection_attempts_total", plugin="flip") == 4
    assert value(s, "harness_plugin_reconnects_total", plugin="flip") == 1


async def test_live_health_sets_the_latency_and_is_not_a_recorded_event(daemon: Daemon) -> None:
    """The Discord plugin reports its heartbeat round-trip as live ``{plugin}:health`` events,
    not in the stored connection: the gauge follows them; the recorded-events count does not."""
    from harness.protocol import Health

    assert daemon.metrics is not None and daemon.metrics.address is not None
    assert Flip.ctx is not None
    port = daemon.metrics.address[1]
    before = value(await asyncio.to_thread(scrape, port), "harness_events_total")
    Flip.ctx.publish_health(Health(latency_ms=17.0, heartbeat_interval=41.25))
    s = await asyncio.to_thread(scrape, port)
    assert value(s, "harness_plugin_heartbeat_latency_seconds", plugin="flip") == 0.017
    assert value(s, "harness_events_total") == before


async def test_a_busy_metrics_port_exits_2_before_anything_is_created(state_dir: Path) -> None:
    """Through the real `harness run`: the port is bound before the socket directory, the
    locks and the database are made, so a busy one leaves nothing behind to clean up."""
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    fresh = state_dir / "fresh"
    path = write_config(
        state_dir,
        socket=str(fresh / "run" / "harness.sock"),
        database=str(fresh / "state" / "state.db"),
    )
    path.write_text(path.read_text() + f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n')
    try:
        result = await run_cli("run", "--config", str(path), env=subprocess_env(state_dir))
    finally:
        busy.close()
    assert result.rc == 2, result
    assert f"{path}: metrics.listen: cannot listen on 127.0.0.1:{port}" in result.err, result
    assert "[metrics] listen" in result.err and "Traceback" not in result.err
    assert not fresh.exists(), sorted(str(p) for p in fresh.rglob("*"))


def test_an_ipv6_address_is_written_in_brackets(caplog: pytest.LogCaptureFixture) -> None:
    # "http://::1:9/metrics" is no URL, and "::1:9" reads as an address with no port.
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    with socket.socket(socket.AF_INET6) as busy:
        try:
            busy.bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 loopback here")
        busy.listen()
        with pytest.raises(MetricsError, match=r"cannot listen on \[::1\]:\d+: "):
            Metrics(seq=lambda: 0, clients=lambda: 0).serve("::1", busy.getsockname()[1])
    metrics = Metrics(seq=lambda: 0, clients=lambda: 0)
    with caplog.at_level("INFO", logger="harness.metrics"):
        metrics.serve("::1", 0)
    try:
        assert metrics.address is not None
        assert f"metrics at http://[::1]:{metrics.address[1]}/metrics" in caplog.text
    finally:
        metrics.close()
