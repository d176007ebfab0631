"""The HTTP endpoint: serves bytes rendered once per tick; never computes on a scrape.

Paths: ``/metrics``, ``/`` (landing page), ``/healthz``, ``/readyz``, and ``POST /-/reload``
when enabled (off by default, like Prometheus's ``--web.enable-lifecycle``).
"""

from __future__ import annotations

import gzip
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from exporter.exposition.render import CONTENT_TYPE

log = logging.getLogger(__name__)
REQUEST_TIMEOUT_S = 10.0  # stdlib handlers have none: a slowloris client would hold a thread


@dataclass(frozen=True, slots=True)
class Rendered:
    metrics: bytes
    metrics_gzip: bytes
    page: bytes


class Published:
    """The latest rendered output; swapped atomically by the tick loop."""

    def __init__(self) -> None:
        self._current: Rendered | None = None
        self._lock = threading.Lock()

    def publish(self, metrics: bytes, page: bytes) -> None:
        rendered = Rendered(metrics, gzip.compress(metrics, compresslevel=1), page)
        with self._lock:
            self._current = rendered

    @property
    def current(self) -> Rendered | None:
        with self._lock:
            return self._current


Reload = Callable[[], tuple[bool, str]]


def make_handler(published: Published, reload: Reload | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT_S
        server_version = "cpm-exporter"
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            cur = published.current
            if path == "/healthz":
                self._send(200, b"ok\n", "text/plain; charset=utf-8")
            elif path == "/readyz":
                self._send(200 if cur else 503, b"ok\n" if cur else b"first tick pending\n", "text/plain")
            elif cur is None:
                self._send(503, b"first tick pending\n", "text/plain; charset=utf-8")
            elif path == "/metrics":
                self._send_metrics(cur)
            elif path in ("/", "/index.html"):
                self._send(200, cur.page, "text/html; charset=utf-8")
            else:
                self._send(404, b"not found: try /metrics or /\n", "text/plain; charset=utf-8")

        def do_POST(self) -> None:
            if self.path != "/-/reload" or reload is None:
                hint = b"reload endpoint disabled (start with --web.enable-lifecycle)\n"
                self._send(404 if self.path != "/-/reload" else 403, hint, "text/plain; charset=utf-8")
                return
            ok, message = reload()
            self._send(200 if ok else 500, (message + "\n").encode(), "text/plain; charset=utf-8")

        def _send_metrics(self, cur: Rendered) -> None:
            if "gzip" in self.headers.get("Accept-Encoding", ""):
                self._send(200, cur.metrics_gzip, CONTENT_TYPE, encoding="gzip")
            else:
                self._send(200, cur.metrics, CONTENT_TYPE)

        def _send(self, status: int, body: bytes, ctype: str, encoding: str = "") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            if encoding:
                self.send_header("Content-Encoding", encoding)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_HEAD = do_GET

        def log_message(self, format: str, *args: object) -> None:
            log.debug("http %s " + format, self.client_address[0], *args)

    return Handler


class ExporterHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the default 5 drops concurrent scrapers into a 1 s SYN retry


def serve(host: str, port: int, published: Published, reload: Reload | None) -> ExporterHTTPServer:
    """Start serving in a daemon thread; returns the server (``.server_address`` has the port)."""
    server = ExporterHTTPServer((host, port), make_handler(published, reload))
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
