"""HTTP(S) GET of one /metrics payload, with hard limits. Standard library only.

* One deadline covers the whole request, connect to last byte: every socket operation
  waits at most until that deadline, so a target trickling one byte a second fails on
  time (reason "timeout"). Not covered: the DNS lookup, which the system resolver bounds.
* The body cap counts bytes after decompression (as Prometheus's ``readResponse`` does):
  gzip is inflated with ``max_length``, so a gzip bomb stops at the cap, never allocated.
* Redirects are never followed (reason "redirect") and proxy variables are ignored:
  ``http.client`` does neither.
* We ask for the plain text format, never OpenMetrics: prometheus_client 0.23 to 0.26
  print ``vllm:`` as ``vllm_`` in OpenMetrics sample names.
* Content-Type is refused only when it is certainly not an exposition (an HTML error page
  served with 200, JSON); a missing or other type is left to the parser to judge.
* https (TLS 1.2+) verifies the certificate against the system's CAs or ``ca_file``, unless
  ``insecure_skip_verify``; the handshake is under the same deadline. A bearer token file is
  read for every request (projected service-account tokens rotate) and never sent over http.

Every failure is a FetchError with one of the reasons "connect", "timeout", "http_status",
"redirect", "content_type", "body_too_large", "truncated", "decode" (bad gzip, invalid
UTF-8, a malformed HTTP response), "tls" (handshake, certificate, CA file) or "auth" (the
token file).
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import time
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import unquote, urlsplit

from exporter import __version__
from exporter.errors import FetchError
from exporter.records import NO_CLIENT_CONFIG, HttpClientConfig
from exporter.redact import redact_url

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

_HEADERS = {
    "Accept": "text/plain;version=0.0.4;q=1.0, */*;q=0.1",
    "Accept-Encoding": "gzip",
    "User-Agent": f"cpm-exporter/{__version__}",
    "Connection": "close",
}
_CHUNK = 64 * 1024
# Media types that are certainly not an exposition: an error page or an API answer.
_NOT_EXPOSITION = frozenset({"text/html", "application/xhtml+xml", "application/json"})
_GZIP = frozenset({"gzip", "x-gzip"})
_GZIP_WBITS = 16 + zlib.MAX_WBITS


@dataclass(frozen=True, slots=True)
class FetchLimits:
    """Bounds on one scrape of one target."""

    timeout_seconds: float = 2.0
    max_body_bytes: int = 32 * 2**20  # after decompression
    max_samples: int = 500_000  # lines; enforced by parse_wanted, carried here with the others
    max_series: int = 20_000  # samples of the families read; enforced by parse_wanted too


class _Endpoint(NamedTuple):
    host: str
    port: int
    target: str  # the request target: path and query
    tls: bool


def fetch_text(url: str, limits: FetchLimits, client: HttpClientConfig = NO_CLIENT_CONFIG) -> str:
    """GET ``url`` (or read a ``file://`` exposition) and return its text, or raise FetchError."""
    if url.startswith("file://"):
        return read_file(url, limits)
    end = _split(url)
    headers = _headers(url, end, client)
    tls = _tls_context(url, client) if end.tls else None
    if tls is not None:
        _check_server_name(url, client.server_name or end.host)
    deadline = time.monotonic() + limits.timeout_seconds
    conn = _DeadlineConnection(end.host, end.port, deadline, tls, client.server_name or end.host)
    try:
        try:
            conn.connect()
        except TimeoutError as e:
            raise _timeout(url, limits) from e
        except ssl.SSLCertVerificationError as e:  # untrusted, expired, or for another name
            raise FetchError(
                f"{redact_url(url)}: TLS certificate refused: {e.verify_message or e.reason}", "tls"
            ) from e
        except ssl.SSLError as e:  # no common protocol, not TLS at all
            raise FetchError(f"{redact_url(url)}: TLS handshake failed: {e.reason or e}", "tls") from e
        except OSError as e:  # refused, unreachable, DNS (socket.gaierror)
            raise FetchError(f"{redact_url(url)}: cannot connect: {e}", "connect") from e
        body = _exchange(conn, end.target, url, limits, headers)
    except TimeoutError as e:
        raise _timeout(url, limits) from e
    except ssl.SSLError as e:  # a TLS alert after the handshake (e.g. a client certificate required)
        raise FetchError(f"{redact_url(url)}: TLS failed while talking: {e.reason or e}", "tls") from e
    except http.client.RemoteDisconnected as e:
        raise FetchError(f"{redact_url(url)}: closed the connection without a response", "connect") from e
    except http.client.IncompleteRead as e:
        raise FetchError(f"{redact_url(url)}: body ended early ({e!r})", "truncated") from e
    except http.client.HTTPException as e:
        raise FetchError(f"{redact_url(url)}: malformed HTTP response ({e!r})", "decode") from e
    except OSError as e:  # reset in the middle of the response
        raise FetchError(f"{redact_url(url)}: connection lost while reading: {e}", "truncated") from e
    finally:
        conn.close()
    return _utf8(body, url, "body")


def _split(url: str) -> _Endpoint:
    """Host, port and request target of an http:// or https:// URL."""
    if any(c <= " " or c > "~" for c in url):  # http.client would refuse it later, less clearly
        raise FetchError(
            f"{redact_url(url)!r}: invalid URL: spaces, control or non-ASCII characters", "connect"
        )
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as e:
        raise FetchError(f"{redact_url(url)}: invalid URL: {e}", "connect") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError(f"{redact_url(url)}: only http(s)://host[:port]/path URLs are supported", "connect")
    if parts.username is not None:
        raise FetchError(f"{redact_url(url)}: credentials in the URL are not supported", "connect")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Endpoint(parts.hostname, port, target, parts.scheme == "https")


def _headers(url: str, end: _Endpoint, client: HttpClientConfig) -> dict[str, str]:
    """The request headers: ours, plus the bearer token read now (tokens rotate)."""
    if not client.bearer_token_file:
        return _HEADERS
    if not end.tls:
        raise FetchError(f"{redact_url(url)}: a bearer token is only sent over https", "auth")
    try:
        token = read_token(client.bearer_token_file)
    except (OSError, UnicodeDecodeError) as e:
        why = getattr(e, "strerror", None) or e
        raise FetchError(
            f"{redact_url(url)}: cannot read bearer_token_file {client.bearer_token_file}: {why}", "auth"
        ) from e
    except ValueError as e:
        raise FetchError(
            f"{redact_url(url)}: bearer_token_file {client.bearer_token_file} {e}", "auth"
        ) from e
    return {**_HEADERS, "Authorization": f"Bearer {token}"}


def read_token(path: str) -> str:
    """A token file's one line of ASCII (a header value), read now: tokens rotate. ``OSError`` or
    ``UnicodeDecodeError`` when it cannot be read; ``ValueError`` when it holds no such line."""
    with open(path, encoding="utf-8") as f:
        token = f.read(64 * 1024).strip()
    if not token or not token.isascii() or not token.isprintable():
        raise ValueError("holds no single-line ASCII token")
    return token


def _check_server_name(url: str, name: str) -> None:
    """ssl encodes the name (IDNA) only after the connection is made, and then leaks the socket
    when it cannot: check first."""
    try:
        name.encode("idna")
    except UnicodeError as e:
        raise FetchError(f"{redact_url(url)}: TLS cannot use server name {name!r}: {e}", "tls") from None


def _tls_context(url: str, client: HttpClientConfig) -> ssl.SSLContext:
    """The client's TLS context, rebuilt when its CA file changes on disk (rotation)."""
    try:
        mtime = os.stat(client.ca_file).st_mtime_ns if client.ca_file else 0
        return _context(client.ca_file, mtime, client.insecure_skip_verify)
    except (OSError, ValueError) as e:  # ssl.SSLError is an OSError: a file that is no PEM bundle
        raise FetchError(f"{redact_url(url)}: cannot use ca_file {client.ca_file}: {e}", "tls") from e


@lru_cache(maxsize=64)
def _context(ca_file: str, _mtime_ns: int, insecure: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.sslsocket_class = _DeadlineTlsSocket
    return context


def _timeout(url: str, limits: FetchLimits) -> FetchError:
    return FetchError(
        f"{redact_url(url)}: no complete response within {limits.timeout_seconds:g} s", "timeout"
    )


def _exchange(
    conn: http.client.HTTPConnection, target: str, url: str, limits: FetchLimits, headers: dict[str, str]
) -> bytes:
    """Send the request, check the response head, read the body within the cap."""
    conn.request("GET", target, headers=headers)
    # "Connection: close" hands the socket to the response: closing it is ours to do.
    with conn.getresponse() as resp:
        _check_head(resp, url)
        return _read_body(resp, url, limits)


def _read_body(resp: http.client.HTTPResponse, url: str, limits: FetchLimits) -> bytes:
    encoding = (resp.getheader("Content-Encoding") or "identity").strip().lower()
    if encoding in _GZIP:
        sink: _Sink = _Inflater(limits.max_body_bytes, url)
    elif encoding == "identity":
        if resp.length is not None and resp.length > limits.max_body_bytes:
            raise _too_large(url, limits.max_body_bytes, f"Content-Length is {resp.length}")
        sink = _Sink(limits.max_body_bytes, url)
    else:
        raise FetchError(f"{redact_url(url)}: unsupported Content-Encoding {encoding!r}", "decode")
    while chunk := resp.read(_CHUNK):
        sink.feed(chunk)
    # http.client returns b"" instead of raising when a Content-Length body ends early.
    if resp.length:
        raise FetchError(
            f"{redact_url(url)}: body ended {resp.length} bytes short of its Content-Length", "truncated"
        )
    return sink.finish()


def _check_head(resp: http.client.HTTPResponse, url: str) -> None:
    if 300 <= resp.status < 400:
        where = resp.getheader("Location", "(no Location)")
        raise FetchError(
            f"{redact_url(url)}: HTTP {resp.status} redirect to {where} (not followed)", "redirect"
        )
    if resp.status != 200:
        raise FetchError(f"{redact_url(url)}: HTTP {resp.status} {resp.reason}", "http_status")
    media = (resp.getheader("Content-Type") or "").split(";", 1)[0].strip().lower()
    if media in _NOT_EXPOSITION:
        raise FetchError(
            f"{redact_url(url)}: Content-Type {media} is not a metrics exposition", "content_type"
        )


def _too_large(url: str, cap: int, detail: str) -> FetchError:
    return FetchError(
        f"{redact_url(url)}: body larger than the limit of {cap} bytes ({detail})", "body_too_large"
    )


class _Sink:
    """Collects body bytes, failing as soon as they exceed the cap."""

    def __init__(self, cap: int, url: str) -> None:
        self._room = cap
        self._cap = cap
        self._url = url
        self._parts: list[bytes] = []

    def feed(self, data: bytes) -> None:
        self._take(data)

    def finish(self) -> bytes:
        return b"".join(self._parts)

    def _take(self, data: bytes) -> None:
        self._room -= len(data)
        if self._room < 0:
            raise _too_large(self._url, self._cap, "after decompression")
        self._parts.append(data)


class _Inflater(_Sink):
    """Gunzips as bytes arrive, never producing more than the room left plus one byte."""

    def __init__(self, cap: int, url: str) -> None:
        super().__init__(cap, url)
        self._member = zlib.decompressobj(_GZIP_WBITS)
        self._started = False  # has the current gzip member received any input?

    def feed(self, data: bytes) -> None:
        try:
            self._inflate(data)
        except zlib.error as e:
            raise FetchError(f"{self._url}: bad gzip body: {e}", "decode") from None

    def _inflate(self, data: bytes) -> None:
        while data:
            self._started = True
            # max_length=0 would mean "no limit"; room + 1 >= 1 because _take raises below 0.
            self._take(self._member.decompress(data, self._room + 1))
            if self._member.eof:  # RFC 1952 allows several members back to back
                data = self._member.unused_data
                self._member = zlib.decompressobj(_GZIP_WBITS)
                self._started = False
            else:
                data = self._member.unconsumed_tail

    def finish(self) -> bytes:
        if self._started:
            raise FetchError(f"{self._url}: gzip body ends in the middle of a stream", "decode")
        return super().finish()


def _arm(sock: socket.socket, deadline: float) -> None:
    """Let the next operation on ``sock`` (plain or TLS) wait only until ``deadline``."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("deadline passed")
    sock.settimeout(remaining)


class _DeadlineSocket(socket.socket):
    """A socket whose every send and receive waits at most until one shared deadline."""

    deadline: float

    @classmethod
    def adopt(cls, sock: socket.socket, deadline: float) -> _DeadlineSocket:
        adopted = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        adopted.deadline = deadline
        return adopted

    # http.client reads through socket.makefile(), whose SocketIO calls recv_into.
    def recv_into(self, buffer: WriteableBuffer, nbytes: int = 0, flags: int = 0) -> int:
        _arm(self, self.deadline)
        return super().recv_into(buffer, nbytes, flags)

    def sendall(self, data: ReadableBuffer, flags: int = 0) -> None:
        _arm(self, self.deadline)
        super().sendall(data, flags)


class _DeadlineTlsSocket(ssl.SSLSocket):
    """The TLS twin of _DeadlineSocket: the handshake, sends and receives share the deadline."""

    deadline: float

    def do_handshake(self, block: bool = False) -> None:
        _arm(self, self.deadline)
        super().do_handshake(block)

    def recv_into(self, buffer: WriteableBuffer, nbytes: int | None = None, flags: int = 0) -> int:
        _arm(self, self.deadline)
        return super().recv_into(buffer, nbytes, flags)

    def sendall(self, data: ReadableBuffer, flags: int = 0) -> None:
        _arm(self, self.deadline)
        super().sendall(data, flags)


class _DeadlineConnection(http.client.HTTPConnection):
    """An HTTP(S) connection whose socket obeys one deadline for connect, handshake, send and receive."""

    def __init__(
        self, host: str, port: int, deadline: float, tls: ssl.SSLContext | None = None, server_name: str = ""
    ) -> None:
        super().__init__(host, port, timeout=max(deadline - time.monotonic(), 0.001))
        self._deadline = deadline
        self._tls = tls
        self.server_name = server_name or host

    def connect(self) -> None:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("deadline passed before connecting")
        raw = socket.create_connection((self.host, self.port), timeout=remaining)
        if self._tls is None:
            self.sock = _DeadlineSocket.adopt(raw, self._deadline)
            return
        try:
            tls = self._tls.wrap_socket(raw, server_hostname=self.server_name, do_handshake_on_connect=False)
        except BaseException:
            raw.close()
            raise
        assert isinstance(tls, _DeadlineTlsSocket)  # the context's sslsocket_class
        tls.deadline = self._deadline
        self.sock = tls
        tls.do_handshake()


def read_file(url: str, limits: FetchLimits) -> str:
    """A ``file:///abs/path`` exposition (a batch job's counter file), under the same body cap."""
    path = unquote(urlsplit(url).path)
    try:
        with open(path, "rb") as f:
            data = f.read(limits.max_body_bytes + 1)
    except OSError as e:
        raise FetchError(f"{redact_url(url)}: cannot read: {e.strerror or e}", "connect") from e
    if len(data) > limits.max_body_bytes:
        raise FetchError(
            f"{redact_url(url)}: file over the {limits.max_body_bytes}-byte body limit", "body_too_large"
        )
    return _utf8(data, url, "file")


def _utf8(data: bytes, url: str, what: str) -> str:
    """A payload as text; one that is not UTF-8 is a "decode" failure naming where it broke."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FetchError(
            f"{redact_url(url)}: {what} is not UTF-8 ({e.reason} at byte {e.start})", "decode"
        ) from None
