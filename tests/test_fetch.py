"""fetch_text against real loopback servers: each transport fault ends in its FetchError reason.

The servers are ``http.server`` threads on 127.0.0.1 with a free port; only they sleep.
"""

from __future__ import annotations

import contextlib
import gzip
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from exporter.errors import FetchError
from exporter.http.textformat import FetchLimits, fetch_text, parse_wanted

MB = 2**20
PAYLOAD = b'# TYPE m counter\nm_total{model="x"} 42\n'
VLLM_V1 = Path(__file__).parent / "fixtures" / "vllm" / "v1-0.33.0.txt"
Route = Callable[["Handler"], None]


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.routes: dict[str, Route] = {}
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.stop = threading.Event()  # ends the slow handlers at teardown

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client hanging up on a bomb or a trickle is the point of those tests


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def do_GET(self) -> None:
        self.server.seen.append((self.path, dict(self.headers.items())))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client hung up
            self.server.routes[self.path](self)

    def log_message(self, format: str, *args: object) -> None:
        pass

    def head(self, status: int = 200, length: int | None = None, **headers: str) -> None:
        self.send_response(status)
        headers.setdefault("Content_Type", "text/plain; version=0.0.4; charset=utf-8")
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def reply(self, body: bytes, status: int = 200, **headers: str) -> None:
        self.head(status, len(body), **headers)
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.stop.set()
    srv.shutdown()
    srv.server_close()
    thread.join()


def fails(url: str, limits: FetchLimits | None = None) -> FetchError:
    with pytest.raises(FetchError) as info:
        fetch_text(url, limits or FetchLimits(timeout_seconds=5))
    return info.value


def route(server: Server, path: str, fn: Route) -> str:
    server.routes[path] = fn
    return server.url(path)


# --- Success ---------------------------------------------------------------------------------


def test_200_returns_the_body_and_asks_for_the_plain_text_format(server: Server) -> None:
    url = route(server, "/metrics", lambda h: h.reply(PAYLOAD))
    assert fetch_text(url, FetchLimits()) == PAYLOAD.decode()
    [(_, headers)] = server.seen
    assert headers["Accept"] == "text/plain;version=0.0.4;q=1.0, */*;q=0.1"
    assert headers["Accept-Encoding"] == "gzip"


def test_gzip_is_inflated_and_the_payload_parses(server: Server) -> None:
    body = VLLM_V1.read_bytes()
    url = route(server, "/metrics", lambda h: h.reply(gzip.compress(body), Content_Encoding="gzip"))
    text = fetch_text(url, FetchLimits())
    assert text == body.decode()
    assert [s.value for s in parse_wanted(text, {"vllm:prompt_tokens_total"})] == [1634967.0]


def test_several_gzip_members_are_one_body(server: Server) -> None:
    body = gzip.compress(b"a 1\n") + gzip.compress(b"b 2\n")
    url = route(server, "/metrics", lambda h: h.reply(body, Content_Encoding="gzip"))
    assert fetch_text(url, FetchLimits()) == "a 1\nb 2\n"


def test_chunked_transfer_is_read(server: Server) -> None:
    def chunked(h: Handler) -> None:
        h.head(Transfer_Encoding="chunked")
        for part in (b"a 1\n", b"b 2\n"):
            h.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
        h.wfile.write(b"0\r\n\r\n")

    assert fetch_text(route(server, "/metrics", chunked), FetchLimits()) == "a 1\nb 2\n"


@pytest.mark.parametrize("media", [None, "application/openmetrics-text; version=1.0.0", "text/plain"])
def test_a_missing_or_other_content_type_is_left_to_the_parser(server: Server, media: str | None) -> None:
    def raw(h: Handler) -> None:
        typed = f"Content-Type: {media}\r\n" if media else ""
        h.wfile.write(f"HTTP/1.1 200 OK\r\n{typed}Content-Length: {len(PAYLOAD)}\r\n\r\n".encode() + PAYLOAD)

    assert fetch_text(route(server, "/metrics", raw), FetchLimits()) == PAYLOAD.decode()


def test_an_empty_200_is_an_empty_text(server: Server) -> None:
    assert fetch_text(route(server, "/metrics", lambda h: h.reply(b"")), FetchLimits()) == ""


def test_proxy_variables_are_ignored(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # discard port: nothing listens
    assert (
        fetch_text(route(server, "/metrics", lambda h: h.reply(PAYLOAD)), FetchLimits()) == PAYLOAD.decode()
    )


# --- Connect and HTTP status -----------------------------------------------------------------


def test_a_refused_port_is_a_connect_failure() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free, and nobody listens once closed
    assert fails(f"http://127.0.0.1:{port}/metrics").reason == "connect"


def test_a_dns_failure_is_a_connect_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_host(*args: object, **kwargs: object) -> list[object]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)  # no resolver query leaves the box
    error = fails("http://no-such-host.invalid/metrics")
    assert error.reason == "connect"
    assert "Name or service not known" in str(error)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://x/y",
        "http:///metrics",
        "http://u:p@h/",
        "http://h/a b",
        "http://[::1",
    ],
)
def test_unsupported_urls_are_refused_before_connecting(url: str) -> None:
    assert fails(url).reason == "connect"


@pytest.mark.parametrize("status", [500, 503, 404])
def test_a_non_200_status_is_refused_with_the_status(server: Server, status: int) -> None:
    error = fails(route(server, "/metrics", lambda h: h.reply(b"oops", status)))
    assert error.reason == "http_status"
    assert str(status) in str(error)


def test_a_redirect_is_refused_and_not_followed(server: Server) -> None:
    route(server, "/elsewhere", lambda h: h.reply(PAYLOAD))
    target = server.url("/elsewhere")
    error = fails(route(server, "/metrics", lambda h: h.reply(b"", 302, Location=target)))
    assert error.reason == "redirect"
    assert target in str(error)
    assert [path for path, _ in server.seen] == ["/metrics"]


@pytest.mark.parametrize("media", ["text/html; charset=utf-8", "application/json", "TEXT/HTML"])
def test_an_error_page_served_with_200_is_not_an_exposition(server: Server, media: str) -> None:
    page = b"<html><body>Service Unavailable</body></html>"
    error = fails(route(server, "/metrics", lambda h: h.reply(page, Content_Type=media)))
    assert error.reason == "content_type"


# --- Deadline ---------------------------------------------------------------------------------


def trickle(h: Handler, data: bytes) -> None:
    """Send one byte every 0.1 s until the client hangs up: each read is quick, the whole is not."""
    for byte in data:
        h.wfile.write(bytes([byte]))
        h.wfile.flush()
        if h.server.stop.wait(0.1):
            return


def test_a_slowloris_body_fails_at_the_deadline(server: Server) -> None:
    def slow_body(h: Handler) -> None:
        h.head(length=10_000)
        trickle(h, b"m 1\n" * 2500)

    began = time.monotonic()
    error = fails(route(server, "/metrics", slow_body), FetchLimits(timeout_seconds=0.5))
    assert error.reason == "timeout"
    # Behaviour, not speed: it gave up long before the trickle (minutes) could have finished,
    # and not before its deadline.
    assert 0.4 < time.monotonic() - began < 30


def test_a_slowloris_status_line_fails_at_the_deadline(server: Server) -> None:
    began = time.monotonic()
    error = fails(
        route(server, "/metrics", lambda h: trickle(h, b"HTTP/1.1 200 OK\r\n" * 100)), FetchLimits(0.5)
    )
    assert error.reason == "timeout"
    assert time.monotonic() - began < 30  # the status line alone would trickle for minutes


def test_a_server_that_never_answers_times_out(server: Server) -> None:
    def silent(h: Handler) -> None:
        h.server.stop.wait(10)

    began = time.monotonic()
    error = fails(route(server, "/metrics", silent), FetchLimits(0.3))
    assert error.reason == "timeout"
    assert time.monotonic() - began < 9  # before the silent server's own 10 s wait ended


# --- Size -------------------------------------------------------------------------------------


def stream(h: Handler, total: int, block: bytes = b"m 1\n" * 16384) -> None:
    sent = 0
    while sent < total and not h.server.stop.is_set():
        h.wfile.write(block)
        sent += len(block)


def test_a_declared_50mb_body_is_refused_before_reading_it(server: Server) -> None:
    def declared(h: Handler) -> None:
        h.head(length=50 * MB)
        stream(h, 50 * MB)

    error = fails(route(server, "/metrics", declared))
    assert error.reason == "body_too_large"
    assert "Content-Length is 52428800" in str(error)


def test_an_undeclared_50mb_body_is_cut_at_the_limit(server: Server) -> None:
    def undeclared(h: Handler) -> None:
        h.head(Connection="close")  # no length: the body ends when the connection does
        stream(h, 50 * MB)

    assert fails(route(server, "/metrics", undeclared)).reason == "body_too_large"


def gzip_bomb(mebibytes: int) -> bytes:
    """A gzip stream of ``mebibytes`` MiB of zeros, built without compressing them all.

    After Z_FULL_FLUSH the compressor forgets its history, so each further MiB of zeros
    compresses to the same bytes: repeat them. Deflate tops out near 1032:1, so 4 GiB
    take about 4 MB. The trailer (CRC, size) is wrong, and a bounded reader never gets there.
    """
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(MB)
    head = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
    block = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
    return head + block * (mebibytes - 1) + packer.flush()


def test_a_gzip_bomb_stops_at_the_limit_without_inflating_it(server: Server) -> None:
    bomb = gzip_bomb(4096)
    assert len(bomb) < 5 * MB
    url = route(server, "/metrics", lambda h: h.reply(bomb, Content_Encoding="gzip"))
    tracemalloc.start()
    try:
        error = fails(url, FetchLimits(timeout_seconds=10))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error.reason == "body_too_large"
    assert peak < 3 * FetchLimits().max_body_bytes  # 4 GiB inflated would not fit


def test_the_gzip_bomb_helper_is_valid_gzip_while_its_trailer_holds() -> None:
    assert gzip.decompress(gzip_bomb(2)) == bytes(2 * MB)


def test_the_gzip_bomb_helper_really_inflates_to_its_size() -> None:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    # One byte short of the end, so zlib stops before checking the bogus trailer.
    assert inflater.decompress(gzip_bomb(8), 8 * MB - 1) == bytes(8 * MB - 1)
    assert inflater.unconsumed_tail


# --- Truncation and decoding ------------------------------------------------------------------


def test_a_content_length_lie_is_a_truncated_body(server: Server) -> None:
    def short(h: Handler) -> None:
        h.head(length=100)
        h.wfile.write(PAYLOAD[:20])
        h.close_connection = True

    error = fails(route(server, "/metrics", short))
    assert error.reason == "truncated"
    assert "short of its Content-Length" in str(error)


def test_a_chunked_body_cut_in_the_middle_is_truncated(server: Server) -> None:
    def cut(h: Handler) -> None:
        h.head(Transfer_Encoding="chunked")
        h.wfile.write(b"100\r\nm 1\n")  # announces 256 bytes, sends 4, hangs up
        h.close_connection = True

    assert fails(route(server, "/metrics", cut)).reason == "truncated"


def test_a_connection_closed_without_response_is_a_connect_failure(server: Server) -> None:
    def hang_up(h: Handler) -> None:
        h.close_connection = True

    assert fails(route(server, "/metrics", hang_up)).reason == "connect"


def test_invalid_utf8_is_a_decode_failure(server: Server) -> None:
    error = fails(route(server, "/metrics", lambda h: h.reply(b'm{model="\xbd"} 1\n')))
    assert error.reason == "decode"
    assert "not UTF-8" in str(error)


@pytest.mark.parametrize(
    "body",
    [b"not gzip at all", gzip.compress(PAYLOAD)[:-12], gzip.compress(PAYLOAD) + b"trailing junk"],
    ids=["garbage", "cut", "trailing"],
)
def test_bad_gzip_is_a_decode_failure(server: Server, body: bytes) -> None:
    assert (
        fails(route(server, "/metrics", lambda h: h.reply(body, Content_Encoding="gzip"))).reason == "decode"
    )


def test_an_unknown_content_encoding_is_a_decode_failure(server: Server) -> None:
    assert (
        fails(route(server, "/metrics", lambda h: h.reply(PAYLOAD, Content_Encoding="br"))).reason == "decode"
    )
