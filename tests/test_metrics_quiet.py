"""The metrics endpoint's bounds say nothing when they act: a client that goes quiet or away is
the client's doing, not a fault of the daemon, and a traceback per connection on the daemon's
stderr (its log) would be unbounded output any port scanner could make."""

# ruff: noqa: F811  (the endpoint fixture imported from test_metrics_bounds is a parameter here)
from __future__ import annotations

import socket

import pytest

from harness import metrics_http
from tests.conftest import HANG_GUARD
from tests.test_metrics_bounds import closed_by_server, endpoint  # noqa: F401


@pytest.mark.parametrize("sent", [b"", b"GET /metrics HTTP/1.1\r\n"])
def test_a_connection_timed_out_writes_no_traceback(
    endpoint: int, sent: bytes, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(metrics_http._Handler, "timeout", 0.2)
    with socket.create_connection(("127.0.0.1", endpoint), timeout=HANG_GUARD) as s:
        s.sendall(sent)
        # The server's thread reports a failure before it closes the connection
        # (socketserver: handle_error, then shutdown_request): all is said once this is true.
        assert closed_by_server(s)
    err = capsys.readouterr().err
    # Before: "Exception occurred during processing of request from ...", a traceback ending
    # in "TimeoutError: timed out", for every silent connection.
    assert "Traceback" not in err
    assert "Exception occurred" not in err
