"""The HTTP endpoint: serves bytes rendered once per tick; never computes on a scrape.

Paths: ``/metrics``, ``/`` (landing page) and ``/-/live`` (its body, fetched by the page each
refresh), ``/healthz``, ``/readyz``, and ``POST /-/reload``
when enabled (off by default, like Prometheus's ``--web.enable-lifecycle``).

With a ``WebConfig`` (``--web.config.file``): TLS on every accepted connection, the handshake
done in the connection's own thread under the request timeout (a failed or stalled handshake
costs that thread only); basic auth on every path but the probes' ``/healthz`` and ``/readyz``
(kubelet and Docker probes carry no credentials, and those answer only "ok"/"pending"); the
configured response headers. Without one, responses are byte for byte what they always were.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from exporter.errors import ConfigError
from exporter.exposition.page import CONTENT_SECURITY_POLICY
from exporter.exposition.render import CONTENT_TYPE
from exporter.exposition.webconfig import REALM, BasicAuth, TLSServerConfig, WebConfig

log = logging.getLogger(__name__)
REQUEST_TIMEOUT_S = 10.0  # stdlib handlers have none: a slowloris client would hold a thread
# A whole request (its line, headers and answer) within this, however slowly a client trickles bytes.
REQUEST_DEADLINE_S = 30.0
MAX_CONNECTIONS = 64  # beyond this, a new connection is closed at once: threads and memory stay bounded
MAX_POST_BODY = 64 * 1024
OPEN_PATHS = frozenset({"/healthz", "/readyz"})  # answered without basic auth: probes
PAGE_HEADERS = (("Content-Security-Policy", CONTENT_SECURITY_POLICY), ("Cache-Control", "no-store"))

# A client gone mid-request (a scraper's timeout, a closed browser tab): not our error, not a traceback.
GONE = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, TimeoutError, ssl.SSLError)


@dataclass(frozen=True, slots=True)
class Rendered:
    metrics: bytes
    metrics_gzip: bytes
    page: bytes
    live: bytes  # the page's body alone, fetched by the page's script (exposition/page.py)


class Published:
    """The latest rendered output; swapped atomically by the tick loop."""

    def __init__(self) -> None:
        self._current: Rendered | None = None
        self._lock = threading.Lock()

    def publish(self, metrics: bytes, page: bytes, live: bytes = b"") -> None:
        rendered = Rendered(metrics, gzip.compress(metrics, compresslevel=1), page, live)
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
    # The page and its live body carry their own policy (their script and style by hash): a configured
    # one beside it would be enforced too and block them, so it is left off there (and said so).
    page_extra = tuple((k, v) for k, v in extra if k.lower() != "content-security-policy")
    if len(page_extra) < len(extra):
        log.warning(
            "web config sets Content-Security-Policy: kept on /metrics, replaced on / and /-/live by the "
            "page's own (%s)",
            CONTENT_SECURITY_POLICY,
        )

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
                self._send(200, cur.page, "text/html; charset=utf-8", headers=PAGE_HEADERS, page=True)
            elif path == "/-/live":
                self._send(200, cur.live, "text/html; charset=utf-8", headers=PAGE_HEADERS, page=True)
            else:
                self._send(404, b"not found: try /metrics or /\n", "text/plain; charset=utf-8")

        def handle_one_request(self) -> None:
            """One request, cut off at REQUEST_DEADLINE_S: the per-read timeout alone lets a client
            that sends a header line every few seconds hold its thread forever."""
            watchdog = getattr(self.server, "watchdog", None)
            if watchdog is None:
                super().handle_one_request()
                return
            watchdog.arm(self)
            try:
                super().handle_one_request()
            finally:
                watchdog.disarm(self)

        def cut(self) -> None:
            log.debug("http client=%s cut off after %.0f s", self.client_address[0], REQUEST_DEADLINE_S)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

        def version_string(self) -> str:
            return self.server_version  # never the interpreter's version

        def do_POST(self) -> None:
            if not self._authorized(self.path.split("?", 1)[0]):
                return
            if not self._body_read():
                return
            if self._cross_site():
                self._send(403, b"cross-site request refused\n", "text/plain; charset=utf-8")
                return
            if self.path != "/-/reload" or reload is None:
                hint = b"reload endpoint disabled (start with --web.enable-lifecycle)\n"
                self._send(404 if self.path != "/-/reload" else 403, hint, "text/plain; charset=utf-8")
                return
            ok, message = reload()
            self._send(200 if ok else 500, (message + "\n").encode(), "text/plain; charset=utf-8")

        def _body_read(self) -> bool:
            """Read (and drop) a POST's body, so nothing in it is taken for a next request; a body
            of unknown or excessive length closes the connection after the answer."""
            length = self.headers.get("Content-Length")
            if self.headers.get("Transfer-Encoding") or (length is not None and not length.isdigit()):
                self.close_connection = True
                return True
            size = int(length or 0)
            if size > MAX_POST_BODY:
                self.close_connection = True
                self._send(413, b"request body too large\n", "text/plain; charset=utf-8")
                return False
            if size:
                self.rfile.read(size)
            return True

        def _cross_site(self) -> bool:
            """A browser's request from another site (any web page can make one): refused, so a
            page cannot reload the exporter. Non-browser clients send neither header."""
            site = self.headers.get("Sec-Fetch-Site")
            if site is not None and site not in ("same-origin", "none"):
                return True
            origin = self.headers.get("Origin")
            if origin is None:
                return False
            return origin == "null" or urlsplit(origin).netloc != self.headers.get("Host", "")

        def _send_metrics(self, cur: Rendered) -> None:
            vary = (("Vary", "Accept-Encoding"),)
            if accepts_gzip(self.headers.get("Accept-Encoding", "")):
                self._send(200, cur.metrics_gzip, CONTENT_TYPE, encoding="gzip", headers=vary)
            else:
                self._send(200, cur.metrics, CONTENT_TYPE, headers=vary)

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
            page: bool = False,
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            if encoding:
                self.send_header("Content-Encoding", encoding)
            self.send_header("X-Content-Type-Options", "nosniff")
            for name, value in (*headers, *(page_extra if page else extra)):
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_HEAD = do_GET

        def log_message(self, format: str, *args: object) -> None:
            log.debug("http %s " + format, self.client_address[0], *args)

    return Handler


def accepts_gzip(header: str) -> bool:
    """Accept-Encoding allows gzip: listed (or ``*``) with a q-value above 0 (``gzip;q=0`` refuses it)."""
    q_of: dict[str, float] = {}
    for item in header.split(","):
        name, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        q_of[name.strip().lower()] = q
    return q_of.get("gzip", q_of.get("x-gzip", q_of.get("*", 0.0))) > 0


class CertificateFiles:
    """A rotated certificate (cert-manager renewing a Secret, a file replaced) is served without a restart:
    the files are checked at most every CHECK_S seconds on a new connection; a pair that does not load
    keeps the last good context and says so once."""

    CHECK_S = 5.0

    def __init__(self, tls: TLSServerConfig) -> None:
        self.tls = tls
        self._stamp = self._read_stamp()
        self._checked = time.monotonic()
        self._lock = threading.Lock()
        self._failed: tuple[object, ...] | None = None

    def _read_stamp(self) -> tuple[object, ...]:
        stamp: list[object] = []
        for path in (self.tls.cert_file, self.tls.key_file, self.tls.client_ca_file):
            try:
                st = os.stat(path) if path else None
            except OSError:
                st = None
            stamp.append(None if st is None else (st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(stamp)

    def current(self, context: ssl.SSLContext) -> ssl.SSLContext:
        with self._lock:
            if time.monotonic() - self._checked < self.CHECK_S:
                return context
            self._checked = time.monotonic()
            stamp = self._read_stamp()
            if stamp == self._stamp or stamp == self._failed:
                return context
            try:
                fresh = self.tls.ssl_context()
            except ConfigError as e:
                self._failed = stamp
                log.error("tls certificate changed but does not load, serving the last good one: %s", e)
                return context
            self._stamp, self._failed = stamp, None
            log.info("tls certificate reloaded cert_file=%s", self.tls.cert_file)
            return fresh


class Watchdog:
    """One thread for every request's deadline (a timer thread per request would double the threads)."""

    def __init__(self) -> None:
        self._due: dict[object, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._run, name="http-deadlines", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def arm(self, handler: object) -> None:
        with self._lock:
            self._due[handler] = time.monotonic() + REQUEST_DEADLINE_S

    def disarm(self, handler: object) -> None:
        with self._lock:
            self._due.pop(handler, None)

    def _run(self) -> None:
        while not self._stop.wait(min(0.25, REQUEST_DEADLINE_S / 4)):
            now = time.monotonic()
            with self._lock:
                late = [h for h, at in self._due.items() if at <= now]
                for h in late:
                    del self._due[h]
            for h in late:
                h.cut()  # type: ignore[attr-defined]


class ExporterHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the default 5 drops concurrent scrapers into a 1 s SYN retry

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        ssl_context: ssl.SSLContext | None = None,
        certificates: CertificateFiles | None = None,
    ) -> None:
        super().__init__(address, handler)
        self.ssl_context = ssl_context
        self.certificates = certificates
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.watchdog = Watchdog()

    def server_close(self) -> None:
        self.watchdog.stop()
        super().server_close()

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: object
    ) -> None:
        """A thread per connection, at most MAX_CONNECTIONS at once: past that, closed at once."""
        if not self._slots.acquire(blocking=False):
            log.debug("http client=%s refused: %d connections open", client_address, MAX_CONNECTIONS)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: object
    ) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def finish_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: object
    ) -> None:
        """With TLS: handshake here, in the connection's thread, never in the accept loop."""
        if self.ssl_context is None or not isinstance(request, socket.socket):
            super().finish_request(request, client_address)
            return
        request.settimeout(REQUEST_TIMEOUT_S)
        if self.certificates is not None:
            self.ssl_context = self.certificates.current(self.ssl_context)
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
        if isinstance(exc, GONE) or (self.ssl_context is not None and isinstance(exc, OSError)):
            log.debug("http client=%s gone: %s", client_address, exc)
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
    files = CertificateFiles(web.tls) if web is not None and web.tls is not None else None
    server = ExporterHTTPServer((host, port), make_handler(published, reload, web), context, files)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
