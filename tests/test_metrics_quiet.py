"""The metrics endpoint's bounds say nothing when they act: a client that goes quiet or away is
the client's doing, not a fault of the daemon, and a traceback per connection on the daemon's
stderr (its log) would be unbounded output any port scanner could make."""

from __future__ import annotations

import socket
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


def _closed_by_server(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("sent", [b"", b"GET /metrics HTTP/1.1\r\n"])
def test_a_connection_timed_out_writes_no_traceback(
    endpoint: int, sent: bytes, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(metrics_http._Handler, "timeout", 0.2)
    with socket.create_connection(("127.0.0.1", endpoint), timeout=HANG_GUARD) as s:
        s.sendall(sent)
        # The server's thread reports a failure before it closes the connection
        # (socketserver: handle_error, then shutdown_request): all is said once this is true.
        assert _closed_by_server(s)
    err = capsys.readouterr().err
    # Before: "Exception occurred during processing of request from ...", a traceback ending
    # in "TimeoutError: timed out", for every silent connection.
    assert "Traceback" not in err
    assert "Exception occurred" not in err
