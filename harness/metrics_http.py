"""The metrics endpoint's HTTP server: prometheus_client's WSGI app on the standard library's
threading WSGI server, as ``prometheus_client.start_http_server`` builds it, with two bounds
that one does not have.

``start_http_server`` starts a thread per connection and gives a connection no time limit, so
a client that opens connections and sends nothing (a port scanner, a slowloris, a stuck
scraper) keeps a thread and a file descriptor each, for ever. Seen from outside: 3,000 such
connections gave the daemon 3,000 threads and 3,000 fds; when they were closed all at once,
the threads woke together and fought the event loop for the GIL, and `harness status` said the
daemon was not responding for several seconds. Here a connection has ``IDLE_TIMEOUT`` seconds
to send each request line, and at most ``MAX_CONNECTIONS`` are served at once; one more is
closed at once (a scraper retries at its next interval; Prometheus scrapes one at a time).
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

log = logging.getLogger("harness.metrics")

MAX_CONNECTIONS = 32
IDLE_TIMEOUT = 10.0  # seconds a connection may stay silent while a request is read


class _Handler(WSGIRequestHandler):
    timeout = IDLE_TIMEOUT  # StreamRequestHandler sets it on the connection's socket

    def log_message(self, format: str, *args: Any) -> None:
        """Nothing per request (as prometheus_client's own handler); a timed-out read too."""


class BoundedServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape under way never holds up the daemon's exit
    max_connections = MAX_CONNECTIONS
    # socketserver's 5 made a burst of connections wait for SYN retries (1 s, 3 s, ...)
    # before even being turned away.
    request_queue_size = 64

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._slots = threading.BoundedSemaphore(self.max_connections)
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # full: closed now, no thread started
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went quiet (``IDLE_TIMEOUT``) or away is its own doing: nothing is
        said. socketserver's default printed a traceback on stderr, the daemon's log, for every
        such connection: output without bound, from anyone who can connect. Anything else is
        logged, once, as the daemon logs."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (TimeoutError, ConnectionError)):
            return
        log.warning("metrics endpoint: request from %s failed", client_address, exc_info=True)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def start(
    host: str, port: int, registry: CollectorRegistry
) -> tuple[BoundedServer, threading.Thread]:
    """Bind and serve in a daemon thread; OSError (busy port, no such address) as binding raises
    it. The address family follows the host, so ``::1`` listens on IPv6."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    server_class = type("BoundedServer", (BoundedServer,), {"address_family": family})
    httpd: BoundedServer = make_server(
        host, port, make_wsgi_app(registry), server_class, handler_class=_Handler
    )
    thread = threading.Thread(target=httpd.serve_forever, name="harness-metrics", daemon=True)
    thread.start()
    return httpd, thread
