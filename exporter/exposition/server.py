"""The HTTP endpoint: serves bytes rendered once per tick; never computes on a scrape.

Paths: ``/metrics``, ``/`` (landing page), ``/healthz``, ``/readyz``, and ``POST /-/reload``
when enabled (off by default, like Prometheus's ``--web.enable-lifecycle``).

With a ``WebConfig`` (``--web.config.file``): TLS on every accepted connection, the handshake
done in the connection's own thread under the request timeout (a failed or stalled handshake
costs that thread only); basic auth on every path but the probes' ``/healthz`` and ``/readyz``
(kubelet and Docker probes carry no credentials, and those answer only "ok"/"pending"); the
configured response headers. Without one, responses are byte for byte what they always were.
"""

from __future__ import annotations

import gzip
import logging
import socket
import ssl
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from exporter.exposition.render import CONTENT_TYPE
from exporter.exposition.webconfig import REALM, BasicAuth, WebConfig

log = logging.getLogger(__name__)
REQUEST_TIMEOUT_S = 10.0  # stdlib handlers have none: a slowloris client would hold a thread
OPEN_PATHS = frozenset({"/healthz", "/readyz"})  # answered without basic auth: probes


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


def make_handler(
    published: Published, reload: Reload | None, web: WebConfig | None = None
) -> type[BaseHTTPRequestHandler]:
    auth = BasicAuth(web.basic_auth_users) if web is not None and web.basic_auth_users else None
    # X-Content-Type-Options: nosniff (its only allowed value) is always sent already.
    extra = tuple((k, v) for k, v in web.headers if k != "X-Content-Type-Options") if web else ()

    class Handler(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT_S
        server_version = "cpm-exporter"
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if not self._authorized(path):
                return
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
            if not self._authorized(self.path.split("?", 1)[0]):
                return
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

        def _authorized(self, path: str) -> bool:
            if auth is None or path in OPEN_PATHS or auth.check(self.headers.get("Authorization")):
                return True
            challenge = (("WWW-Authenticate", f'Basic realm="{REALM}"'),)
            self._send(401, b"unauthorized\n", "text/plain; charset=utf-8", headers=challenge)
            return False

        def _send(
            self,
            status: int,
            body: bytes,
            ctype: str,
            encoding: str = "",
            headers: tuple[tuple[str, str], ...] = (),
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            if encoding:
                self.send_header("Content-Encoding", encoding)
            self.send_header("X-Content-Type-Options", "nosniff")
            for name, value in (*headers, *extra):
                self.send_header(name, value)
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

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(address, handler)
        self.ssl_context = ssl_context

    def finish_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: object
    ) -> None:
        """With TLS: handshake here, in the connection's thread, never in the accept loop."""
        if self.ssl_context is None or not isinstance(request, socket.socket):
            super().finish_request(request, client_address)
            return
        request.settimeout(REQUEST_TIMEOUT_S)
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except OSError as exc:  # ssl.SSLError, reset, timeout: this client only
            log.debug("tls handshake failed client=%s error=%s", client_address, exc)
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            self.shutdown_request(tls)  # ``request`` was detached by wrap_socket

    def handle_error(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: object
    ) -> None:
        exc = sys.exc_info()[1]
        if self.ssl_context is not None and isinstance(exc, OSError):  # a TLS client gone mid-request
            log.debug("tls connection error client=%s error=%s", client_address, exc)
            return
        super().handle_error(request, client_address)


def serve(
    host: str, port: int, published: Published, reload: Reload | None, web: WebConfig | None = None
) -> ExporterHTTPServer:
    """Start serving in a daemon thread; returns the server (``.server_address`` has the port).

    ``web``: TLS, basic auth and headers from ``--web.config.file``; a certificate that no
    longer loads raises ``ConfigError`` here, before anything listens.
    """
    context = web.tls.ssl_context() if web is not None and web.tls is not None else None
    server = ExporterHTTPServer((host, port), make_handler(published, reload, web), context)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
