"""fetch_text over https against a real loopback TLS server with certificates the test makes.

Trust (system CAs, a CA file, none), the certificate's name, the bearer token file (read for
every request, never sent over http) and the deadline on the handshake.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from exporter.errors import FetchError
from exporter.http.textformat import FetchLimits, fetch_text
from exporter.records import HttpClientConfig
from tests.test_webconfig import Pki, make_pki

PAYLOAD = b'# TYPE m counter\nm_total{model="x"} 42\n'
LIMITS = FetchLimits(timeout_seconds=5)


class TlsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, pki: Pki) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(pki.server_cert, pki.server_key)
        self.authorization: list[str | None] = []
        self.payload = PAYLOAD
        self.required_token = ""  # like the kubelet: 401 without "Bearer <token>"

    def url(self, host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.server_address[1]}/metrics"

    def finish_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        """The handshake in the request's own thread, bounded: a client that never completes it
        cannot stall the server (or the test's teardown)."""
        request.settimeout(5)
        with self.context.wrap_socket(request, server_side=True) as tls:
            super().finish_request(tls, client_address)  # type: ignore[arg-type]

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that refused our certificate hung up: the point of those tests


class Handler(BaseHTTPRequestHandler):
    server: TlsServer

    def do_GET(self) -> None:
        sent = self.headers.get("Authorization")
        self.server.authorization.append(sent)
        wanted = getattr(self.server, "required_token", "")
        if wanted and sent != f"Bearer {wanted}":
            self.send_error(401, "Unauthorized")
            return
        body = getattr(self.server, "payload", PAYLOAD)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def server(pki: Pki) -> Iterator[TlsServer]:
    srv = TlsServer(pki)
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join()


def fails(url: str, client: HttpClientConfig, limits: FetchLimits = LIMITS) -> FetchError:
    with pytest.raises(FetchError) as info:
        fetch_text(url, limits, client)
    return info.value


def test_a_certificate_from_the_configured_ca_is_trusted(server: TlsServer, pki: Pki) -> None:
    assert fetch_text(server.url(), LIMITS, HttpClientConfig(ca_file=str(pki.ca))) == PAYLOAD.decode()
    assert server.authorization == [None]  # no token configured: none sent


def test_the_system_cas_do_not_know_a_private_ca(server: TlsServer) -> None:
    error = fails(server.url(), HttpClientConfig())
    assert error.reason == "tls" and "unable to get local issuer certificate" in str(error), error


def test_insecure_skip_verify_accepts_any_certificate(server: TlsServer) -> None:
    assert fetch_text(server.url(), LIMITS, HttpClientConfig(insecure_skip_verify=True)) == PAYLOAD.decode()


def test_the_certificate_must_carry_the_server_name(server: TlsServer, pki: Pki) -> None:
    ca = str(pki.ca)
    assert fetch_text(server.url(), LIMITS, HttpClientConfig(ca_file=ca, server_name="localhost"))
    error = fails(server.url(), HttpClientConfig(ca_file=ca, server_name="vllm.internal"))
    assert error.reason == "tls" and "vllm.internal" in str(error), error


def test_the_bearer_token_is_read_for_every_request(server: TlsServer, tmp_path: Path) -> None:
    token = tmp_path / "token"
    client = HttpClientConfig(insecure_skip_verify=True, bearer_token_file=str(token))
    token.write_text("first\n")
    fetch_text(server.url(), LIMITS, client)
    token.write_text("rotated")  # a projected service-account token is replaced in place
    fetch_text(server.url(), LIMITS, client)
    assert server.authorization == ["Bearer first", "Bearer rotated"]


@pytest.mark.parametrize("content", [None, "", "two\nlines", "\ufefftoken", "tökén"])
def test_an_unusable_token_file_fails_before_connecting(
    server: TlsServer, tmp_path: Path, content: str | None
) -> None:
    token = tmp_path / "token"
    if content is not None:
        token.write_text(content)
    error = fails(server.url(), HttpClientConfig(insecure_skip_verify=True, bearer_token_file=str(token)))
    assert error.reason == "auth" and str(token) in str(error), error
    assert server.authorization == []


def test_a_token_is_never_sent_over_plain_http(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("secret")
    error = fails("http://127.0.0.1:1/metrics", HttpClientConfig(bearer_token_file=str(token)))
    assert error.reason == "auth" and "secret" not in str(error)


def test_a_ca_file_that_is_no_pem_bundle_is_a_tls_failure(server: TlsServer, tmp_path: Path) -> None:
    bad = tmp_path / "ca.crt"
    bad.write_text("not a certificate\n")
    assert fails(server.url(), HttpClientConfig(ca_file=str(bad))).reason == "tls"
    assert fails(server.url(), HttpClientConfig(ca_file=str(tmp_path / "missing.crt"))).reason == "tls"


def test_a_handshake_that_never_ends_fails_at_the_deadline() -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # the kernel accepts; nobody answers the hello
    try:
        url = f"https://127.0.0.1:{silent.getsockname()[1]}/metrics"
        error = fails(url, HttpClientConfig(insecure_skip_verify=True), FetchLimits(timeout_seconds=0.5))
        assert error.reason == "timeout", error
    finally:
        silent.close()


def test_https_spoken_to_a_plain_http_server_is_a_tls_failure() -> None:
    plain = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=plain.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        url = f"https://127.0.0.1:{plain.server_address[1]}/metrics"
        assert fails(url, HttpClientConfig(insecure_skip_verify=True)).reason == "tls"
    finally:
        plain.shutdown()
        plain.server_close()


def test_the_node_reads_the_kubelets_cadvisor_over_https_with_its_token(
    server: TlsServer, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chart's setup end to end: ${HOST_IP}, the kubelet's TLS, the service-account token."""
    from exporter.config.load import load_config_text
    from exporter.sources.gpu.dcgm_reader import DcgmGpus
    from exporter.sources.node import DiscoveredNode

    fixtures = Path(__file__).parent / "fixtures"
    server.payload = (fixtures / "cadvisor" / "v0.60.5-network.txt").read_bytes()
    server.required_token = "sa-token"
    token = tmp_path / "token"
    monkeypatch.setenv("HOST_IP", "127.0.0.1")
    port = server.server_address[1]
    cfg = load_config_text(
        "pricing: {gpus: {H100: {spot: 2.00}}}\n"
        "node_source:\n"
        "  gpus: dcgm\n"
        "  capacity: spot\n"
        "  dcgm_url: http://127.0.0.1:9400/metrics\n"
        f"  cadvisor_url: https://${{HOST_IP}}:{port}/metrics/cadvisor\n"
        f"  cadvisor_https: {{ca_file: {pki.ca}, bearer_token_file: {token}}}\n"
    )
    node = DiscoveredNode(DcgmGpus(f"file://{fixtures / 'dcgm-exporter' / '4.5.3-4.8.2-k8s.txt'}"))

    def sent() -> dict[str, float | None]:
        node.gpus(cfg), node.placements(cfg)
        return {u.holder.pod: u.transmit_bytes_total for u in node.pods(cfg)}

    token.write_text("expired")
    assert sent() == {"vllm-llama31-8b-7d9f6c5b8-x2kqp": None}  # 401: counted down, nothing read
    assert [s.up for s in node.status() if s.source == "cadvisor"] == [False]
    token.write_text("sa-token")  # the kubelet rotated it in place
    assert sent() == {"vllm-llama31-8b-7d9f6c5b8-x2kqp": 73645128834.0}
    assert [s.up for s in node.status() if s.source == "cadvisor"] == [True]


def test_a_server_name_ssl_cannot_encode_is_a_tls_failure_not_a_crash(server: TlsServer) -> None:
    error = fails(server.url(), HttpClientConfig(insecure_skip_verify=True, server_name="a..b"))
    assert error.reason == "tls" and "a..b" in str(error), error
