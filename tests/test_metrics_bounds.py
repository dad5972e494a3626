"""The metrics endpoint under hostile clients, over real TCP: idle connections are bounded in
number and in time, so they can never pile up threads and file descriptors in the daemon."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from harness import metrics_http
from harness.metrics import Metrics
from tests.conftest import HANG_GUARD


@pytest.fixture
def endpoint() -> Iterator[int]:
    metrics = Metrics(seq=lambda: 7, clients=lambda: 0)
    metrics.serve("127.0.0.1", 0)
    assert metrics.address is not None
    try:
        yield metrics.address[1]
    finally:
        metrics.close()


def idle(port: int) -> socket.socket:
    """A connection that starts a request and never finishes it (a slowloris)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD)
    s.sendall(b"GET /metrics HTTP/1.1\r\n")
    return s


def closed_by_server(s: socket.socket) -> bool:
    """True once the server has closed it; waits at most the hang guard (recv's timeout)."""
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def scrape(port: int) -> bytes:
    deadline = time.monotonic() + HANG_GUARD
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                return bytes(r.read())
        except (urllib.error.URLError, ConnectionError):
            # A slot freed by a closing connection is given back by its thread a moment later.
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_connections_beyond_the_cap_are_closed_and_start_no_thread(endpoint: int) -> None:
    threads_before = threading.active_count()
    held = [idle(endpoint) for _ in range(metrics_http.MAX_CONNECTIONS)]
    extra = [idle(endpoint) for _ in range(20)]
    try:
        # Each one more than the cap is closed at once (before: a thread each, held for ever).
        assert all(closed_by_server(s) for s in extra)
        assert threading.active_count() - threads_before <= metrics_http.MAX_CONNECTIONS
    finally:
        for s in held + extra:
            s.close()
    # The slots come back: a scrape is served again.
    assert b"harness_stream_seq 7.0" in scrape(endpoint)


def test_a_silent_connection_is_closed_after_the_idle_timeout(
    endpoint: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics_http._Handler, "timeout", 0.2)
    s = idle(endpoint)
    with s:
        assert closed_by_server(s)  # before: never, the thread waited on it for ever
    assert b"harness_stream_seq 7.0" in scrape(endpoint)
