"""Prometheus metrics: a bus subscriber that keeps per-plugin connection figures, and an HTTP
endpoint (``[metrics] listen``) that exposes them with prometheus_client.

Decoupled like any other subscriber: it learns everything from the events the bus publishes
(``{plugin}:connection``, ``daemon:storage`` when writes start failing, and the rest), plus
readings taken at scrape time (stream seq, clients connected, storage health) that the daemon
hands it as callables.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from harness.bus import Patterns
from harness.protocol import CONNECTION_STATES, STORAGE_EVENT

log = logging.getLogger(__name__)

NAMESPACE = "harness"


class MetricsError(Exception):
    """The endpoint could not be opened (address in use, not an address of this host)."""


def _field(data: Any, key: str) -> Any:
    """A field of a connection object, whether it is a dict or a typed struct."""
    if isinstance(data, Mapping):
        return data.get(key)
    return getattr(data, key, None)


def _latency_seconds(conn: Any) -> float | None:
    """Heartbeat latency, when the connection object carries one: ``latency`` (seconds) or
    ``latency_ms``, at the top level or under ``health``."""
    for holder in (conn, _field(conn, "health")):
        if holder is None:
            continue
        value = _field(holder, "latency")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        value = _field(holder, "latency_ms")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value) / 1000
    return None


class PluginFigures:
    """What the metrics know of one plugin's connection."""

    __slots__ = (
        "attempt",
        "attempts",
        "connected_before",
        "latency",
        "reconnects",
        "since",
        "state",
    )

    def __init__(self) -> None:
        self.state = ""
        self.since = 0.0
        self.attempts = 0
        self.attempt: int | None = None  # the plugin's own `attempt` field, last reported
        self.reconnects = 0
        self.connected_before = False
        self.latency: float | None = None


class Metrics:
    """Subscribe it to the bus (``bus.subscribe(metrics)``) before plugins start, then
    :meth:`serve` the endpoint. ``storage_error()`` is the hook for storage faults."""

    def __init__(
        self,
        *,
        seq: Callable[[], int],
        clients: Callable[[], int],
        storage_ok: Callable[[], bool] | None = None,
        alerts: Callable[[], tuple[Mapping[str, int], Mapping[str, int]]] | None = None,
        version: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.patterns = Patterns(["*"])
        self.plugins: dict[str, PluginFigures] = {}
        self.events_total = 0
        self.unpersisted_total = 0
        self._storage_errors = 0
        self._storage_ok = storage_ok
        self._alerts = alerts  # per alert target: (sent, failed attempts), at scrape time
        self._seq, self._clients = seq, clients
        self._clock = clock
        self._version = version
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_Collector(self))
        # The usual process_* figures (memory, CPU, open fds, start time), as every exporter has.
        ProcessCollector(registry=self.registry)
        self._httpd: Any = None
        self._thread: threading.Thread | None = None
        self.address: tuple[str, int] | None = None

    # -- fed by the bus (on the event loop) ----------------------------------------------------

    def deliver(self, frame: bytes, event: Any) -> None:
        name: str = event.event
        if name.endswith(":health"):
            # Live heartbeat health (never stored, not an event recorded): only the latency.
            self._health(name.rpartition(":")[0], event.data)
            return
        self.events_total += 1
        # Storage faults mark live events as not persisted (see ARCHITECTURE.md).
        if getattr(event, "persisted", True) is False:
            self.unpersisted_total += 1
        if name == STORAGE_EVENT and _field(event.data, "state") == "failing":
            self._storage_errors += 1  # the recorder announces each failure once, as it begins
        elif name.endswith(":connection"):
            self._connection(name.rpartition(":")[0], event.data, event.ts)

    def _connection(self, plugin: str, conn: Any, ts: float) -> None:
        figures = self.plugins.setdefault(plugin, PluginFigures())
        state = _field(conn, "state")
        if not isinstance(state, str):
            return
        attempt = _field(conn, "attempt")
        attempt = attempt if isinstance(attempt, int) else None
        if state != figures.state:
            # A plugin whose library retries by itself (discord.py) goes from `disconnected`
            # straight to `connected`: that was an attempt too, one that worked.
            if state == "connecting" or (state == "connected" and figures.state == "disconnected"):
                figures.attempts += 1
            if state == "connected":
                if figures.connected_before:
                    figures.reconnects += 1
                figures.connected_before = True
        elif state == "disconnected" and attempt is not None and attempt > (figures.attempt or 0):
            figures.attempts += 1  # such a library's retry that failed, with no `connecting`
        figures.attempt = attempt
        figures.state = state
        since = _field(conn, "since")
        figures.since = float(since) if isinstance(since, (int, float)) else ts
        figures.latency = _latency_seconds(conn) if state == "connected" else None

    def _health(self, plugin: str, health: Any) -> None:
        figures = self.plugins.setdefault(plugin, PluginFigures())
        latency = _latency_seconds(health)
        if latency is not None and figures.state == "connected":
            figures.latency = latency

    def storage_error(self, count: int = 1) -> None:
        """Count a storage failure that did not come as a ``daemon:storage`` event."""
        self._storage_errors += count

    def storage_errors(self) -> int:
        return self._storage_errors

    # -- the endpoint ------------------------------------------------------------------------

    def serve(self, host: str, port: int) -> None:
        """Open the endpoint in a background thread (prometheus_client's WSGI server): a scrape
        never waits on the event loop, and a busy loop never delays a scrape."""
        from harness import metrics_http

        try:
            self._httpd, self._thread = metrics_http.start(host, port, self.registry)
        except OSError as exc:
            where = _host_port(host, port)
            what = f"metrics.listen: cannot listen on {where}: {exc.strerror or exc}"
            if exc.errno == errno.EADDRINUSE:
                what += (
                    ". Another process has that port (a harness daemon already running? "
                    "`harness status`): stop it, or set a free port in [metrics] listen"
                )
            raise MetricsError(what) from exc
        bound = self._httpd.server_address
        self.address = (str(bound[0]), int(bound[1]))
        if not _is_loopback(host):
            log.warning(
                "metrics are served on %s:%d, beyond this host: anyone who can reach it can "
                "read them (no authentication)",
                host,
                self.address[1],
            )
        log.info("metrics at http://%s/metrics", _host_port(host, self.address[1]))

    def close(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_port(host: str, port: int) -> str:
    """``host:port``, an IPv6 address in brackets (``[::1]:9100``) as in a URL."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Collector(Collector):
    """Builds the families at scrape time from the figures the subscriber keeps."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def collect(self) -> Iterable[Metric]:
        m = self.m
        now = m._clock()
        plugins = sorted(dict(m.plugins).items())  # a copy: the loop thread keeps writing

        info = GaugeMetricFamily(f"{NAMESPACE}_info", "harness build", labels=["version"])
        info.add_metric([m._version], 1)
        yield info

        state = GaugeMetricFamily(
            f"{NAMESPACE}_plugin_connection_state",
            "Connection state of each plugin: 1 for the current state, 0 for the others",
            labels=["plugin", "state"],
        )
        connected = GaugeMetricFamily(
            f"{NAMESPACE}_plugin_connected",
            "1 while the plugin's connection is up, else 0",
            labels=["plugin"],
        )
        state_seconds = GaugeMetricFamily(
            f"{NAMESPACE}_plugin_connection_state_seconds",
            "Seconds the plugin's connection has been in its current state",
            labels=["plugin"],
        )
        attempts = CounterMetricFamily(
            f"{NAMESPACE}_plugin_connection_attempts",
            "Connection attempts (entries into 'connecting') since the daemon started",
            labels=["plugin"],
        )
        reconnects = CounterMetricFamily(
            f"{NAMESPACE}_plugin_reconnects",
            "Times the connection came back up after having been up, since the daemon started",
            labels=["plugin"],
        )
        latency = GaugeMetricFamily(
            f"{NAMESPACE}_plugin_heartbeat_latency_seconds",
            "Last heartbeat round trip of a connected plugin, when the plugin reports one",
            labels=["plugin"],
        )
        for name, f in plugins:
            for s in CONNECTION_STATES:
                state.add_metric([name, s], 1 if f.state == s else 0)
            connected.add_metric([name], 1 if f.state == "connected" else 0)
            state_seconds.add_metric([name], max(0.0, now - f.since) if f.since else 0.0)
            attempts.add_metric([name], f.attempts)
            reconnects.add_metric([name], f.reconnects)
            if f.latency is not None:
                latency.add_metric([name], f.latency)
        yield from (state, connected, state_seconds, attempts, reconnects, latency)

        events = CounterMetricFamily(
            f"{NAMESPACE}_events", "Events published on the stream since the daemon started"
        )
        events.add_metric([], m.events_total)
        yield events
        unpersisted = CounterMetricFamily(
            f"{NAMESPACE}_events_unpersisted",
            "Events published while storage could not record them",
        )
        unpersisted.add_metric([], m.unpersisted_total)
        yield unpersisted
        yield GaugeMetricFamily(
            f"{NAMESPACE}_stream_seq", "Highest event seq published", value=m._seq()
        )
        yield GaugeMetricFamily(
            f"{NAMESPACE}_clients", "Clients connected to the socket", value=m._clients()
        )
        storage = CounterMetricFamily(
            f"{NAMESPACE}_storage_errors",
            "Times database writes started failing (disk full, read-only, I/O error) since the "
            "daemon started",
        )
        storage.add_metric([], m.storage_errors())
        yield storage
        if m._storage_ok is not None:
            yield GaugeMetricFamily(
                f"{NAMESPACE}_storage_ok",
                "1 while the daemon can write its database, 0 while writes fail",
                value=1 if m._storage_ok() else 0,
            )
        if m._alerts is not None:
            sent_by, failed_by = m._alerts()
            sent = CounterMetricFamily(
                f"{NAMESPACE}_alert_notifications_sent",
                "Notifications an alert target accepted, since the daemon started",
                labels=["target"],
            )
            failed = CounterMetricFamily(
                f"{NAMESPACE}_alert_send_failures",
                "Failed sends to an alert target, every retry counted (the stream reports "
                "alert:failed once per notification), since the daemon started",
                labels=["target"],
            )
            for target in sorted(set(sent_by) | set(failed_by)):
                sent.add_metric([target], sent_by.get(target, 0))
                failed.add_metric([target], failed_by.get(target, 0))
            yield from (sent, failed)
