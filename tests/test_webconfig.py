"""``--web.config.file``: strict loading, the SSL context it builds, and the basic-auth checker.

``make_pki`` (also used by ``tests/integration/test_secured_endpoint.py``) writes a CA, a server
certificate for 127.0.0.1/localhost, a client certificate from that CA and one from a stranger CA.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exporter.errors import ConfigError
from exporter.exposition.webconfig import BasicAuth, WebConfig, load_web_config

# --- certificates ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path  # a client certificate from a CA the server does not know
    stranger_key: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    issuer_name, issuer_key = issuer or (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        builder = builder.add_extension(usage, critical=True)
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    else:
        purpose = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
        authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key())
        builder = builder.add_extension(authority, critical=False)
    if server:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Path:
    (directory / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (directory / f"{stem}.key").write_bytes(pem)
    return directory / f"{stem}.crt"


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    keys = {
        n: ec.generate_private_key(ec.SECP256R1()) for n in ("ca", "server", "client", "other", "stranger")
    }
    ca = _issue("test CA", keys["ca"], None, ca=True)
    other = _issue("stranger CA", keys["other"], None, ca=True)
    issuer = (ca.subject, keys["ca"])
    _write(directory, "ca", ca, keys["ca"])
    _write(directory, "server", _issue("127.0.0.1", keys["server"], issuer, server=True), keys["server"])
    _write(directory, "client", _issue("prometheus", keys["client"], issuer), keys["client"])
    stranger = _issue("prometheus", keys["stranger"], (other.subject, keys["other"]))
    _write(directory, "stranger", stranger, keys["stranger"])
    d = directory
    return Pki(
        d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt", d / "client.key",
        d / "stranger.crt", d / "stranger.key",
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


HASH4 = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()  # cheap: unit tests of logic


def _load(directory: Path, text: str) -> WebConfig:
    path = directory / "web.yml"
    path.write_text(text)
    return load_web_config(path)


def _problems(directory: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        _load(directory, text)
    return caught.value.problems


# --- loading -----------------------------------------------------------------------------------


def test_full_config_maps_every_field(pki: Pki) -> None:
    web = _load(
        pki.ca.parent,  # relative file names: relative to the web config's directory
        f"""\
tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.crt
  min_version: TLS13
  max_version: TLS13
  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]
  curve_preferences: [X25519]
  prefer_server_cipher_suites: false
http_server_config:
  http2: false
  headers:
    X-Frame-Options: deny
    Content-Security-Policy: "default-src 'self'"
basic_auth_users:
  prometheus: {HASH4}
""",
    )
    assert web.tls is not None
    assert web.tls.cert_file == pki.server_cert
    assert web.tls.client_ca_file == pki.ca
    assert web.tls.min_version == web.tls.max_version == ssl.TLSVersion.TLSv1_3
    assert web.tls.ciphers == ("ECDHE-ECDSA-AES128-GCM-SHA256",)  # the TLS 1.3 suite is not settable
    assert web.tls.curve == "X25519"
    assert not web.tls.prefer_server_cipher_suites
    assert web.http2 is False
    assert web.headers == (("X-Frame-Options", "deny"), ("Content-Security-Policy", "default-src 'self'"))
    assert web.basic_auth_users == (("prometheus", HASH4),)
    ctx = web.tls.ssl_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    assert not ctx.options & ssl.OP_CIPHER_SERVER_PREFERENCE


def test_defaults_are_tls12_to_13_without_client_certificates(pki: Pki) -> None:
    web = _load(
        pki.ca.parent, f"tls_server_config: {{cert_file: {pki.server_cert}, key_file: {pki.server_key}}}\n"
    )
    assert web.tls is not None and web.basic_auth_users == () and web.headers == ()
    ctx = web.tls.ssl_context()
    assert (ctx.minimum_version, ctx.maximum_version) == (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)
    assert ctx.verify_mode == ssl.CERT_NONE


@pytest.mark.parametrize(
    ("mode", "verify"),
    [
        ("RequestClientCert", ssl.CERT_OPTIONAL),
        ("RequireAnyClientCert", ssl.CERT_REQUIRED),
        ("VerifyClientCertIfGiven", ssl.CERT_OPTIONAL),
        ("RequireAndVerifyClientCert", ssl.CERT_REQUIRED),
    ],
)
def test_client_auth_types_map_to_verify_modes(pki: Pki, mode: str, verify: ssl.VerifyMode) -> None:
    web = _load(
        pki.ca.parent,
        f"tls_server_config: {{cert_file: server.crt, key_file: server.key, client_auth_type: {mode},"
        " client_ca_file: ca.crt}\n",
    )
    assert web.tls is not None and web.tls.ssl_context().verify_mode == verify


TLS = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "tls_config: {}\n",
            "tls_config (line 1): unknown field 'tls_config'; did you mean 'tls_server_config'?",
        ),
        (TLS + "  certfile: x\n", "tls_server_config.certfile (line 4): unknown field 'certfile'"),
        (
            "tls_server_config:\n  cert_file: nope.crt\n  key_file: server.key\n",
            "cert_file (line 2): no such file",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n",
            "tls_server_config.key_file (line 2): required field",
        ),
        (TLS + "  min_version: TLS14\n", "min_version (line 4): unknown TLS version 'TLS14'"),
        (TLS + "  min_version: SSL3\n", "unknown TLS version 'SSL3'"),
        (
            TLS + "  min_version: TLS13\n  max_version: TLS12\n",
            "max_version (line 5): must not be below min_version",
        ),
        (TLS + "  client_auth_type: Always\n", "unknown client_auth_type 'Always'"),
        (TLS + "  client_auth_type: RequireAndVerifyClientCert\n", "client_ca_file (line 4): is required by"),
        (TLS + "  client_ca_file: ca.crt\n", "client CA without a client_auth_type"),
        (
            TLS + "  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n",
            "unknown cipher suite 'TLS_RSA_WITH_RC4_128_SHA'",
        ),
        (TLS + "  curve_preferences: [X25519, CurveP256]\n", "curve_preferences (line 4): name one curve"),
        (TLS + "  client_allowed_sans: [a]\n", "client SAN filtering is not implemented"),
        ("rate_limit: {burst: 1}\n", "rate_limit (line 1): rate limiting is not implemented"),
        ("http_server_config: {http2: yes}\n", "http_server_config.http2 (line 1): must be true or false"),
        ("http_server_config: {headers: {Server: x}}\n", "unknown header 'Server'"),
        ("http_server_config: {headers: {X-Frame-Options: allow}}\n", "must be one of deny, sameorigin"),
        ("basic_auth_users: {alice: plaintext}\n", "basic_auth_users.alice (line 1): is not a bcrypt hash"),
        ("basic_auth_users: {alice: '$2b$03$" + "a" * 53 + "'}\n", "is not a bcrypt hash"),  # cost below 4
        ("basic_auth_users: {'a:b': " + HASH4 + "}\n", "no ':'"),
        ("basic_auth_users:\n", "expected a mapping"),
        ("tls_server_config: [\n", "invalid YAML"),
        ("", "is empty"),
    ],
)
def test_bad_configs_name_the_path(pki: Pki, text: str, expected: str) -> None:
    problems = _problems(pki.ca.parent, text)
    assert any(expected in p for p in problems), problems


def test_every_problem_is_reported_at_once(pki: Pki) -> None:
    text = TLS + "  min_version: TLS9\n  bogus: 1\nbasic_auth_users: {alice: nope}\n"
    assert len(_problems(pki.ca.parent, text)) == 3


def test_unreadable_file_and_unusable_key(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_web_config(tmp_path / "absent.yml")
    mismatched = f"tls_server_config: {{cert_file: {pki.server_cert}, key_file: {pki.client_key}}}\n"
    assert any("cert_file: cannot be used" in p for p in _problems(tmp_path, mismatched))
    encrypted = tmp_path / "encrypted.key"
    key = serialization.load_pem_private_key(pki.server_key.read_bytes(), None)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    encrypted.write_bytes(pem)  # refused: a passphrase prompt would hang a container's start
    locked = f"tls_server_config: {{cert_file: {pki.server_cert}, key_file: {encrypted}}}\n"
    assert any("the key is encrypted" in p for p in _problems(tmp_path, locked))
    (tmp_path / "junk.crt").write_text("not a certificate\n")
    junk = f"tls_server_config: {{cert_file: junk.crt, key_file: {pki.server_key}}}\n"
    assert any("cert_file: cannot be used" in p for p in _problems(tmp_path, junk))


# --- basic auth --------------------------------------------------------------------------------


def _header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class CountingCheckpw:
    def __init__(self) -> None:
        self.hashes: list[bytes] = []

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        self.hashes.append(hashed)
        return bcrypt.checkpw(password, hashed)


def test_check_reads_the_authorization_header() -> None:
    auth = BasicAuth([("prometheus", HASH4)])
    assert auth.check(_header("prometheus", "s3cret"))
    assert auth.check("basic " + _header("prometheus", "s3cret").split()[1])  # scheme is case-insensitive
    for bad in (
        None,
        "",
        _header("prometheus", "wrong"),
        _header("nobody", "s3cret"),
        "Bearer abc",
        "Basic !!!not-base64",
        "Basic " + base64.b64encode(b"prometheus").decode(),  # no colon
    ):
        assert not auth.check(bad), bad


def test_unknown_user_is_checked_against_a_dummy_hash() -> None:
    counting = CountingCheckpw()
    auth = BasicAuth([("prometheus", HASH4)], checkpw=counting)
    assert not auth.verify(b"nobody", b"s3cret")
    assert len(counting.hashes) == 1 and counting.hashes[0] != HASH4.encode()
    assert counting.hashes[0].startswith(b"$2b$04$")  # the dummy has the configured cost


def test_successes_are_cached_failures_are_not() -> None:
    counting = CountingCheckpw()
    auth = BasicAuth([("prometheus", HASH4)], checkpw=counting)
    assert auth.verify(b"prometheus", b"s3cret") and auth.verify(b"prometheus", b"s3cret")
    assert len(counting.hashes) == 1  # the second came from the cache
    assert not auth.verify(b"prometheus", b"s3cretX")
    assert not auth.verify(b"prometheus", b"s3cretX")
    assert len(counting.hashes) == 3  # every failure pays bcrypt
    assert not auth.verify(b"nobody", b"s3cret")  # a cached success is for that user only


def test_cache_is_bounded() -> None:
    users = [(f"u{i}", bcrypt.hashpw(f"p{i}".encode(), bcrypt.gensalt(4)).decode()) for i in range(3)]
    counting = CountingCheckpw()
    auth = BasicAuth(users, checkpw=counting, cache_size=2)
    for i in (0, 1, 2, 0):  # u0 was evicted by u2: checked again
        assert auth.verify(f"u{i}".encode(), f"p{i}".encode())
    assert len(counting.hashes) == 4


def test_passwords_longer_than_bcrypt_reads_are_refused_not_truncated() -> None:
    long = b"x" * 72
    auth = BasicAuth([("prometheus", bcrypt.hashpw(long, bcrypt.gensalt(4)).decode())])
    assert auth.verify(b"prometheus", long)
    assert not auth.verify(b"prometheus", long + b"anything")


def _elapsed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def test_unknown_user_and_wrong_password_both_pay_the_bcrypt_cost() -> None:
    """Coarse, one-sided: both rejections take at least half of one bcrypt at cost 10 (a slow
    machine only makes them longer); a fast path for unknown users would take microseconds."""
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(10))
    floor = min(_elapsed(lambda: bcrypt.checkpw(b"guess", hashed)) for _ in range(3)) / 2
    auth = BasicAuth([("prometheus", hashed.decode())])
    assert _elapsed(lambda: auth.check(_header("nobody", "guess"))) >= floor
    assert _elapsed(lambda: auth.check(_header("prometheus", "guess"))) >= floor


def test_a_flood_of_guesses_at_unknown_users_never_delays_a_real_users_first_login() -> None:
    """Issue 15.6: with one bcrypt lock, a flood of wrong passwords delayed a legitimate login 4.7 s."""
    import base64
    import time as _time
    from concurrent.futures import ThreadPoolExecutor

    slow = threading.Event()

    def checkpw(password: bytes, hashed: bytes) -> bool:
        if password.startswith(b"guess"):
            slow.wait(0.3)  # each guess holds its lane 0.3 s
        return password == b"s3cret"

    auth = BasicAuth([("prometheus", HASH4)], checkpw=checkpw)
    header = lambda user, pw: "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()  # noqa: E731
    with ThreadPoolExecutor(max_workers=8) as flood:
        guesses = [flood.submit(auth.check, header(f"nobody{i}", f"guess{i}")) for i in range(8)]
        _time.sleep(0.05)  # the guesses hold the unknown users' lane now
        began = _time.monotonic()
        assert auth.check(header("prometheus", "s3cret"))
        assert _time.monotonic() - began < 0.25
        assert not any(g.result() for g in guesses)
