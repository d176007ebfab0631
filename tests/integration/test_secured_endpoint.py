"""The real exporter behind ``--web.config.file``: TLS, basic auth, client certificates, refusals.

Each exporter is ``python -m exporter demo --web.config.file F`` on loopback, with a CA, server
and client certificates made by the test (``make_pki``). Checked as a scraper sees it:

- TLS + basic auth: the right password gets /metrics; a wrong one, an unknown user or none get
  401 with a Basic challenge; /healthz and /readyz answer probes without credentials; the
  configured headers are on every answer;
- a TLS 1.1 client, a plain-HTTP client and a client that never finishes its handshake are
  refused or ignored, and the server goes on answering good clients;
- RequireAndVerifyClientCert: no certificate, or one from another CA, fails; ours works;
- a broken web config: the process exits 2 with the problem and never serves.
"""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.test_webconfig import Pki, make_pki

USER, PASSWORD = "prometheus", "correct horse battery staple"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()  # a realistic cost
Response = tuple[int, dict[str, str], bytes]


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def https(
    port: int, path: str, ctx: ssl.SSLContext, *, auth: str | None = None, method: str = "GET"
) -> Response:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    try:
        conn.request(method, path, headers={"Authorization": auth} if auth else {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def client_context(pki: Pki, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))  # verifies the server's 127.0.0.1 SAN
    if cert is not None:
        ctx.load_cert_chain(*cert)
    return ctx


def tls11_context(pki: Pki) -> ssl.SSLContext:
    """A client that offers TLS 1.0/1.1 only (security level 0, so the refusal is the server's)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(pki.ca))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


def start(exporters: Any, web_file: Path, ctx: ssl.SSLContext) -> Any:
    """A demo exporter with ``web_file``, once /readyz answers 200 over TLS."""
    exporter = exporters.spawn(
        ["demo", "--tick-seconds", "0.5", "--web.config.file", str(web_file)], wait=False
    )
    deadline = time.monotonic() + 30
    last: object = None
    while time.monotonic() < deadline:
        if not exporter.alive():
            raise AssertionError(f"exporter exited with {exporter.proc.returncode}:\n{exporter.log()}")
        try:
            if https(exporter.port, "/readyz", ctx)[0] == 200:
                return exporter
        except OSError as e:
            last = e
        time.sleep(0.1)
    raise AssertionError(f"exporter not ready over TLS within 30 s ({last!r}):\n{exporter.log()}")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def secured(exporters: Any, pki: Pki) -> Iterator[Any]:
    web = pki.ca.parent / "web-basic.yml"
    web.write_text(
        "tls_server_config:\n"
        f"  cert_file: {pki.server_cert.name}\n"
        f"  key_file: {pki.server_key.name}\n"
        "http_server_config:\n"
        "  headers: {X-Frame-Options: deny, Strict-Transport-Security: max-age=31536000}\n"
        f"basic_auth_users:\n  {USER}: '{HASH}'\n"
    )
    exporter = start(exporters, web, client_context(pki))
    try:
        yield exporter
    finally:
        exporter.stop()


@pytest.fixture(scope="module")
def mtls(exporters: Any, pki: Pki) -> Iterator[Any]:
    web = pki.ca.parent / "web-mtls.yml"
    web.write_text(
        "tls_server_config:\n"
        f"  cert_file: {pki.server_cert}\n"
        f"  key_file: {pki.server_key}\n"
        "  client_auth_type: RequireAndVerifyClientCert\n"
        f"  client_ca_file: {pki.ca}\n"
    )
    exporter = start(exporters, web, client_context(pki, (pki.client_cert, pki.client_key)))
    try:
        yield exporter
    finally:
        exporter.stop()


def test_right_password_over_tls_gets_the_metrics(secured: Any, pki: Pki) -> None:
    status, headers, body = https(secured.port, "/metrics", client_context(pki), auth=_basic(USER, PASSWORD))
    assert status == 200, body[:200]
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    assert "cpm_ticks" in names or "cpm_ticks_total" in names
    assert headers["X-Frame-Options"] == "deny"
    assert headers["Strict-Transport-Security"] == "max-age=31536000"
    assert "serving https://127.0.0.1:" in secured.log() and "(basic auth)" in secured.log()


@pytest.mark.parametrize(
    ("method", "path", "auth"),
    [
        ("GET", "/metrics", _basic(USER, "wrong")),
        ("GET", "/metrics", _basic("nobody", PASSWORD)),
        ("GET", "/metrics", None),
        ("GET", "/", None),
        ("POST", "/-/reload", None),  # the demo has the lifecycle endpoint on
        ("GET", "/nope", None),  # no 404 before authentication: nothing to learn about paths
    ],
)
def test_missing_or_wrong_credentials_get_401(
    secured: Any, pki: Pki, method: str, path: str, auth: str | None
) -> None:
    status, headers, body = https(secured.port, path, client_context(pki), auth=auth, method=method)
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Basic realm="cpm-exporter"'
    assert headers["X-Frame-Options"] == "deny"
    assert b"cpm_" not in body


def test_probes_need_no_credentials(secured: Any, pki: Pki) -> None:
    assert https(secured.port, "/healthz", client_context(pki))[::2] == (200, b"ok\n")
    assert https(secured.port, "/readyz", client_context(pki))[0] == 200


def test_tls11_plain_http_and_stalled_handshakes_are_refused(secured: Any, pki: Pki) -> None:
    with pytest.raises(OSError):  # ssl.SSLError: protocol version (or the client's own refusal)
        https(secured.port, "/metrics", tls11_context(pki), auth=_basic(USER, PASSWORD))
    with socket.create_connection(("127.0.0.1", secured.port), timeout=10) as plain:
        plain.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        try:
            answer = plain.recv(65536)
        except ConnectionResetError:
            answer = b""
        assert b"cpm_" not in answer and not answer.startswith(b"HTTP/1.1 200")
    # A client that connects and says nothing holds its own thread only.
    with socket.create_connection(("127.0.0.1", secured.port), timeout=10):
        status, _, _ = https(secured.port, "/metrics", client_context(pki), auth=_basic(USER, PASSWORD))
        assert status == 200
    assert secured.alive()


def test_client_certificate_required_and_verified(mtls: Any, pki: Pki) -> None:
    with pytest.raises(OSError):  # TLS 1.3: the server's alert arrives on the first read
        https(mtls.port, "/metrics", client_context(pki))
    with pytest.raises(OSError):
        https(mtls.port, "/metrics", client_context(pki, (pki.stranger_cert, pki.stranger_key)))
    status, _, body = https(mtls.port, "/metrics", client_context(pki, (pki.client_cert, pki.client_key)))
    assert status == 200 and b"cpm_" in body
    assert mtls.alive()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tls_server_config: [\n", "invalid YAML"),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  certfile: x\n",
            "unknown field",
        ),
        ("tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n", "no such file"),
        ("basic_auth_users:\n  prometheus: hunter2\n", "is not a bcrypt hash"),
    ],
    ids=["bad-yaml", "unknown-key", "missing-cert", "plain-password"],
)
def test_broken_web_config_refuses_to_start(exporters: Any, pki: Pki, text: str, message: str) -> None:
    web = pki.ca.parent / f"web-broken-{abs(hash(text))}.yml"
    web.write_text(text)
    exporter = exporters.spawn(["demo", "--web.config.file", str(web)], wait=False)
    exporter.proc.wait(timeout=60)
    log = exporter.log()
    assert exporter.proc.returncode == 2, log
    assert "invalid config" in log and "--web.config.file" in log and message in log, log
    assert "serving" not in log
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", exporter.port), timeout=5).close()
