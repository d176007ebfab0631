"""The endpoint's hardening (issue 15.6), against the real server on loopback."""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from exporter.exposition import server as srv
from exporter.redact import redact_url


@pytest.fixture
def endpoint() -> Iterator[tuple[int, list[int]]]:
    published = srv.Published()
    published.publish(b"# HELP x y\nx 1\n", b"<html><main>live body</main></html>", b"live body")
    reloads: list[int] = []

    def reload() -> tuple[bool, str]:
        reloads.append(1)
        return True, "config reloaded"

    httpd = srv.serve("127.0.0.1", 0, published, reload)
    yield httpd.server_address[1], reloads
    httpd.shutdown()
    httpd.server_close()


def exchange(port: int, raw: bytes, *, wait: float = 1.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(raw)
        s.settimeout(wait)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except TimeoutError:
            pass
        return out


def get(port: int, path: str, *headers: str) -> tuple[str, dict[str, str], bytes]:
    extra = "".join(h + "\r\n" for h in headers)
    raw = exchange(
        port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}Connection: close\r\n\r\n".encode()
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    return status, {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}, body


def test_the_page_and_its_live_body_are_served_under_the_pages_csp(endpoint: tuple[int, list[int]]) -> None:
    """The page's script fetches /-/live each refresh: same bytes as the page's body, never cached,
    both under the Content-Security-Policy that lets only our own script and style run."""
    from exporter.exposition.page import CONTENT_SECURITY_POLICY

    for path, body in (("/", b"<html><main>live body</main></html>"), ("/-/live", b"live body")):
        status, headers, got = get(endpoint[0], path)
        assert status.endswith("200 OK") and got == body, (path, status)
        assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
        assert headers["cache-control"] == "no-store", path
    _, headers, _ = get(endpoint[0], "/metrics")
    assert "content-security-policy" not in headers, "/metrics stays as it was"


def test_the_server_header_names_no_interpreter(endpoint: tuple[int, list[int]]) -> None:
    _, headers, _ = get(endpoint[0], "/healthz")
    assert headers["server"] == "cpm-exporter"


@pytest.mark.parametrize(
    ("accept", "gzipped"),
    [
        ("gzip", True),
        ("gzip;q=0", False),
        ("identity, gzip;q=0.5", True),
        ("br, *;q=0.1", True),
        ("*;q=0", False),
        ("", False),
    ],
)
def test_gzip_honours_q_values_and_says_vary(
    endpoint: tuple[int, list[int]], accept: str, gzipped: bool
) -> None:
    _, headers, body = get(endpoint[0], "/metrics", f"Accept-Encoding: {accept}")
    assert (headers.get("content-encoding") == "gzip") is gzipped
    assert headers["vary"] == "Accept-Encoding"
    assert (gzip.decompress(body) if gzipped else body) == b"# HELP x y\nx 1\n"


def test_a_request_hidden_in_a_reload_body_is_not_answered(endpoint: tuple[int, list[int]]) -> None:
    port, reloads = endpoint
    hidden = f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    raw = exchange(
        port, f"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: {len(hidden)}\r\n\r\n".encode() + hidden
    )
    assert raw.count(b"HTTP/1.") == 1 and raw.startswith(b"HTTP/1.1 200") and reloads == [1]


@pytest.mark.parametrize(
    "header",
    [
        "Sec-Fetch-Site: cross-site",
        "Sec-Fetch-Site: same-site",
        "Origin: http://evil.example",
        "Origin: null",
    ],
)
def test_a_cross_site_reload_is_refused(endpoint: tuple[int, list[int]], header: str) -> None:
    port, reloads = endpoint
    raw = exchange(
        port,
        f"POST /-/reload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{header}\r\nContent-Length: 0\r\n\r\n".encode(),
    )
    assert raw.startswith(b"HTTP/1.1 403") and reloads == []
    same = f"Origin: http://127.0.0.1:{port}\r\nSec-Fetch-Site: same-origin"
    raw = exchange(
        port,
        f"POST /-/reload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{same}\r\nContent-Length: 0\r\n\r\n".encode(),
    )
    assert raw.startswith(b"HTTP/1.1 200") and reloads == [1]


def test_connections_past_the_cap_are_closed_and_threads_stay_bounded(
    endpoint: tuple[int, list[int]],
) -> None:
    port = endpoint[0]
    before = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(srv.MAX_CONNECTIONS + 40)]
    try:
        time.sleep(0.5)
        assert threading.active_count() - before <= srv.MAX_CONNECTIONS + 1  # + the deadline watchdog
    finally:
        for s in idle:
            s.close()
    time.sleep(0.5)
    assert get(port, "/healthz")[0].endswith("200 OK")  # the slots came back


def test_a_client_trickling_headers_is_cut_off_at_the_deadline(
    endpoint: tuple[int, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(srv, "REQUEST_DEADLINE_S", 0.6)
    with socket.create_connection(("127.0.0.1", endpoint[0]), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\n")
        began = time.monotonic()
        with pytest.raises(OSError):  # a header line every 0.2 s, under the per-read timeout
            for i in range(50):
                s.sendall(f"X-Slow-{i}: 1\r\n".encode())
                time.sleep(0.2)
                if s.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) == b"":
                    raise ConnectionResetError("closed")
        assert time.monotonic() - began < 3


def test_urls_are_printed_without_secrets() -> None:
    assert (
        redact_url("https://user:s3cret@vllm.ml:8443/metrics?token=abc")
        == "https://***@vllm.ml:8443/metrics?***"
    )
    assert redact_url("http://10.0.0.7:8000/metrics") == "http://10.0.0.7:8000/metrics"
    from exporter.errors import FetchError
    from exporter.http.fetch import fetch_text
    from exporter.http.textformat import FetchLimits

    with pytest.raises(FetchError) as e:
        fetch_text("http://admin:hunter2@127.0.0.1:1/metrics?key=k", FetchLimits())
    assert "hunter2" not in str(e.value) and "key=k" not in str(e.value)


def test_a_rotated_tls_certificate_is_served_without_a_restart(
    tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cert-manager renews the Secret: the files change under the same paths; new connections get the
    new certificate, and a pair that does not load keeps the last good one."""
    import shutil
    import ssl
    from pathlib import Path

    from exporter.exposition.webconfig import load_web_config
    from tests.test_webconfig import make_pki

    work = Path(str(tmp_path))
    old, new = make_pki(work / "old"), make_pki(work / "new")
    live = work / "live"
    live.mkdir()
    shutil.copy(old.server_cert, live / "tls.crt")
    shutil.copy(old.server_key, live / "tls.key")
    (live / "web.yml").write_text("tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n")
    monkeypatch.setattr(srv.CertificateFiles, "CHECK_S", 0.0)
    published = srv.Published()
    published.publish(b"x 1\n", b"")
    httpd = srv.serve("127.0.0.1", 0, published, None, load_web_config(live / "web.yml"))
    port = httpd.server_address[1]

    def served() -> bytes:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, ctx.wrap_socket(raw) as s:
            der = s.getpeercert(binary_form=True)
            assert der is not None
            return der

    try:
        first = served()
        shutil.copy(new.server_cert, live / "tls.crt")
        shutil.copy(new.server_key, live / "tls.key")
        time.sleep(0.05)
        rotated = served()
        assert rotated != first and rotated == ssl.PEM_cert_to_DER_cert((live / "tls.crt").read_text())
        (live / "tls.key").write_text("not a key")  # a half-written renewal
        assert served() == rotated  # the last good pair goes on
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_configured_csp_stays_on_metrics_and_gives_way_to_the_pages_own(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Browsers enforce every policy they get: a web config's CSP beside the page's would block the
    page's script and style. The page paths send only their own (said once in the log); the other
    configured headers and /metrics keep the configured one."""
    from exporter.exposition.page import CONTENT_SECURITY_POLICY
    from exporter.exposition.webconfig import WebConfig

    web = WebConfig(
        "web.yml", headers=(("Content-Security-Policy", "default-src 'self'"), ("X-Frame-Options", "deny"))
    )
    published = srv.Published()
    published.publish(b"x 1\n", b"<html></html>", b"live")
    httpd = srv.serve("127.0.0.1", 0, published, None, web)
    port = httpd.server_address[1]
    try:
        for path in ("/", "/-/live"):
            raw = exchange(port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            head = raw.partition(b"\r\n\r\n")[0].decode().lower()
            assert head.count("content-security-policy:") == 1, head
            assert f"content-security-policy: {CONTENT_SECURITY_POLICY.lower()}" in head
            assert "x-frame-options: deny" in head
        _, headers, _ = get(port, "/metrics")
        assert headers["content-security-policy"] == "default-src 'self'"
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert "replaced on / and /-/live by the page's own" in caplog.text
