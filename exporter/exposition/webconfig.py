"""``--web.config.file``: TLS, basic auth and response headers, in exporter-toolkit's format.

The file is the one node_exporter and Prometheus read (prometheus/exporter-toolkit,
``docs/web-configuration.md``)::

    tls_server_config:            # absent: plain HTTP
      cert_file: server.crt       # relative paths are relative to the web config file
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert   # default NoClientCert
      client_ca_file: ca.crt
      min_version: TLS12          # TLS10..TLS13, default TLS12; max_version default TLS13
      cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]   # Go's names; TLS 1.2 and below
      curve_preferences: [X25519]
      prefer_server_cipher_suites: true
    http_server_config:
      http2: true                 # accepted; this server speaks HTTP/1.1 only
      headers: {X-Frame-Options: deny}
    basic_auth_users:             # user: bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\\n')
      prometheus: $2y$10$...

It is read once at start, strictly (``yamlstrict.readers``): unknown keys, a file that cannot be read,
a certificate that does not load, a malformed bcrypt hash all stop the exporter with every
problem listed. Where Python's ``ssl`` cannot do what Go's ``crypto/tls`` does, the file is
refused with the reason rather than served more weakly:

- client certificates are always verified against ``client_ca_file`` when one is asked for
  (OpenSSL has no "accept any certificate"), so every mode but ``NoClientCert`` needs it;
- ``curve_preferences`` may name one curve (``set_ecdh_curve`` pins exactly one);
- inline ``cert``/``key``/``client_ca``, ``client_allowed_sans`` and ``rate_limit`` are not
  implemented; an empty file is refused (exporter-toolkit reads it as "nothing to do").

``BasicAuth`` checks an ``Authorization`` header: bcrypt, serialised like exporter-toolkit's so
a flood of guesses uses one core, in the same time whether or not the user exists, and with
successful checks remembered under a keyed digest (never the password).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import importlib.util
import logging
import re
import secrets
import ssl
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from yaml.nodes import MappingNode, Node, ScalarNode

from exporter.errors import ConfigError
from exporter.yamlstrict import readers as yn
from exporter.yamlstrict.compose import NULL_TAG
from exporter.yamlstrict.readers import Problems, key_path

log = logging.getLogger(__name__)

REALM = "cpm-exporter"
_TOP = ("tls_server_config", "http_server_config", "basic_auth_users")
_TLS = (
    *("cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version"),
    *("cipher_suites", "curve_preferences", "prefer_server_cipher_suites"),
)
_HTTP = ("http2", "headers")
# Known to exporter-toolkit, not implemented here: refused by name rather than as a typo.
_TOP_NOT_HERE = {"rate_limit": "rate limiting is not implemented by cpm-exporter"}
_TLS_NOT_HERE = {
    "cert": "inline certificates are not supported; use cert_file",
    "key": "inline keys are not supported; use key_file",
    "client_ca": "an inline client CA is not supported; use client_ca_file",
    "client_allowed_sans": "client SAN filtering is not implemented by cpm-exporter",
}
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# client_auth_type -> (verify mode, needs client_ca_file). Go's RequestClientCert and
# RequireAnyClientCert accept unverified certificates; OpenSSL verifies whatever it asks for.
CLIENT_AUTH = {
    "NoClientCert": (ssl.CERT_NONE, False),
    "RequestClientCert": (ssl.CERT_OPTIONAL, True),
    "RequireAnyClientCert": (ssl.CERT_REQUIRED, True),
    "RequireClientCert": (ssl.CERT_REQUIRED, True),  # exporter-toolkit's old name for the above
    "VerifyClientCertIfGiven": (ssl.CERT_OPTIONAL, True),
    "RequireAndVerifyClientCert": (ssl.CERT_REQUIRED, True),
}
# Go's tls.CipherSuites() names -> OpenSSL names; the TLS 1.3 suites are not configurable (in Go
# neither), so they are accepted and change nothing.
CIPHERS = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_AES_128_GCM_SHA256": "",
    "TLS_AES_256_GCM_SHA384": "",
    "TLS_CHACHA20_POLY1305_SHA256": "",
}
CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1", "X25519": "X25519"}
# exporter-toolkit's settable headers and, where it has them, their only allowed values.
HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}
_BCRYPT = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
_MAX_PASSWORD = 72  # bcrypt reads no further; longer passwords are refused, not truncated
_HEADER_VALUE = re.compile(r"[\x20-\x7e]{1,4096}")


@dataclass(frozen=True, slots=True)
class TLSServerConfig:
    """``tls_server_config``, with paths resolved and names mapped to ``ssl``'s."""

    cert_file: Path
    key_file: Path
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
    ciphers: tuple[str, ...] = ()  # OpenSSL names, TLS 1.2 and below
    curve: str | None = None  # OpenSSL name
    prefer_server_cipher_suites: bool = True

    def ssl_context(self) -> ssl.SSLContext:
        """A fresh server context; ``ConfigError`` if a file does not load."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with warnings.catch_warnings():  # TLSv1/TLSv1_1 are deprecated names; the config chose them
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = self.min_version
            ctx.maximum_version = self.max_version
        ctx.set_alpn_protocols(["http/1.1"])
        if self.prefer_server_cipher_suites:
            ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        else:
            ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
        problems: list[str] = []
        cert, key = self.cert_file, self.key_file
        _attempt(problems, "cert_file", lambda: ctx.load_cert_chain(cert, key, password=_no_passphrase))
        if self.client_ca_file is not None:
            ca = self.client_ca_file
            _attempt(problems, "client_ca_file", lambda: ctx.load_verify_locations(cafile=ca))
        if self.ciphers:
            _attempt(problems, "cipher_suites", lambda: ctx.set_ciphers(":".join(self.ciphers)))
        if self.curve is not None:
            curve = self.curve
            _attempt(problems, "curve_preferences", lambda: ctx.set_ecdh_curve(curve))
        if problems:
            raise ConfigError([f"tls_server_config.{p}" for p in problems], "web config")
        ctx.verify_mode = CLIENT_AUTH[self.client_auth_type][0]
        return ctx


@dataclass(frozen=True, slots=True)
class WebConfig:
    """A loaded web config. ``tls`` None: plain HTTP; no users: no authentication."""

    path: str
    tls: TLSServerConfig | None = None
    http2: bool = True  # accepted for compatibility; this server never negotiates HTTP/2
    headers: tuple[tuple[str, str], ...] = ()
    basic_auth_users: tuple[tuple[str, str], ...] = ()  # (user, bcrypt hash)


def _no_passphrase() -> str:
    raise ValueError("the key is encrypted; give an unencrypted key_file")


def _attempt(problems: list[str], where: str, action: Callable[[], object]) -> None:
    try:
        action()
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        problems.append(f"{where}: cannot be used: {reason}")


def load_web_config(path: str | Path) -> WebConfig:
    """Read and validate a web config; one ``ConfigError`` lists every problem."""
    source = str(path)
    try:
        with Path(path).open("rb") as fh:
            data = fh.read(yn.MAX_BYTES + 1)
        text = data.decode("utf-8")
    except OSError as exc:
        raise ConfigError([f"document: cannot read: {exc.strerror or exc}"], source) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([f"document: is not UTF-8 (byte {exc.start})"], source) from exc
    problems = Problems()
    root = yn.compose(text, problems)
    web = _read_root(problems, root, source) if root is not None else None
    if problems or web is None:
        raise ConfigError(problems.report() or ["document: unusable"], source)
    if web.tls is not None:
        try:
            web.tls.ssl_context()  # every file loads now, not at the first handshake
        except ConfigError as exc:
            raise ConfigError(exc.problems, source) from exc
        if web.tls.min_version < ssl.TLSVersion.TLSv1_2:
            log.warning("web config min_version below TLS12 path=%s: deprecated protocols allowed", source)
    if web.basic_auth_users and importlib.util.find_spec("bcrypt") is None:
        raise ConfigError(["basic_auth_users: needs the bcrypt package (pip install bcrypt)"], source)
    if web.tls is None and web.basic_auth_users:
        log.warning("web config path=%s: basic auth without TLS sends passwords in clear text", source)
    return web


def _read_root(p: Problems, root: Node, source: str) -> WebConfig | None:
    top = _fields(p, root, "", _TOP, _TOP_NOT_HERE)
    if top is None:
        return None
    base = Path(source).parent
    tls = _read_tls(p, top["tls_server_config"], base) if "tls_server_config" in top else None
    http2, headers = _read_http(p, top["http_server_config"]) if "http_server_config" in top else (True, ())
    users = _read_users(p, top["basic_auth_users"]) if "basic_auth_users" in top else ()
    return WebConfig(source, tls, http2, headers, users)


def _fields(
    p: Problems, node: Node, path: str, allowed: tuple[str, ...], not_here: dict[str, str] | None = None
) -> dict[str, Node] | None:
    """``yn.fields``, with exporter-toolkit keys we lack refused by name instead of as typos."""
    known = yn.fields(p, node, path, None)
    if known is None or not isinstance(node, MappingNode):
        return None
    for key_node, _ in node.value:
        key = key_node.value
        if key in known and key not in allowed:
            del known[key]
            hint = (not_here or {}).get(key) or f"unknown field {key!r}; {yn.suggest(key, allowed)}"
            p.add(key_path(path, key), key_node, hint)
    return known


def _read_tls(p: Problems, node: Node, base: Path) -> TLSServerConfig | None:
    at = "tls_server_config"
    m = _fields(p, node, at, _TLS, _TLS_NOT_HERE)
    if m is None:
        return None

    def file(key: str) -> Path | None:
        name = yn.required(p, m, key, at, node, yn.text_reader(p))
        if name is None:
            return None
        resolved = base / name
        if not resolved.is_file():
            p.add(key_path(at, key), m[key], f"no such file: {resolved}")
            return None
        return resolved

    cert, key = file("cert_file"), file("key_file")
    auth = yn.optional(
        m, "client_auth_type", at, yn.choice_reader(p, tuple(CLIENT_AUTH), "client_auth_type"), ""
    )
    ca = file("client_ca_file") if "client_ca_file" in m else None
    version = yn.choice_reader(p, tuple(TLS_VERSIONS), "TLS version")
    low = TLS_VERSIONS[yn.optional(m, "min_version", at, version, "TLS12")]
    high = TLS_VERSIONS[yn.optional(m, "max_version", at, version, "TLS13")]
    if low > high:
        p.add(key_path(at, "max_version"), m.get("max_version", node), "must not be below min_version")
    if auth and ca is None and CLIENT_AUTH[auth][1] and "client_ca_file" not in m:
        why = "Python's ssl verifies every client certificate it asks for (Go's Request/RequireAny do not)"
        p.add(key_path(at, "client_ca_file"), m["client_auth_type"], f"is required by {auth}: {why}")
    if "client_ca_file" in m and auth in ("", "NoClientCert"):
        why = "a client CA without a client_auth_type that asks for certificates"
        p.add(key_path(at, "client_ca_file"), m["client_ca_file"], why)
    ciphers = _names(p, m, "cipher_suites", CIPHERS, "cipher suite")
    curves = _names(p, m, "curve_preferences", CURVES, "curve")
    if len(curves) > 1:
        why = "name one curve: Python's ssl pins one, it cannot order several (leave it out for OpenSSL's"
        p.add(key_path(at, "curve_preferences"), m["curve_preferences"], why + " X25519, P-256, P-384, ...)")
    prefer = yn.optional(m, "prefer_server_cipher_suites", at, lambda a, n: yn.boolean(p, n, a), True)
    if cert is None or key is None:
        return None
    curve = curves[0] if curves else None
    suites = tuple(c for c in ciphers if c)
    return TLSServerConfig(cert, key, auth or "NoClientCert", ca, low, high, suites, curve, prefer)


def _names(p: Problems, m: dict[str, Node], key: str, table: dict[str, str], what: str) -> list[str]:
    """A list of Go names read as their OpenSSL names (order kept)."""
    at = key_path("tls_server_config", key)
    elements = yn.items(p, m[key], at) if key in m else None
    out: list[str] = []
    for i, element in enumerate(elements or ()):
        name = yn.text(p, element, yn.index_path(at, i), choices=tuple(table), what=what)
        if name is not None:
            out.append(table[name])
    return out


def _read_http(p: Problems, node: Node) -> tuple[bool, tuple[tuple[str, str], ...]]:
    at = "http_server_config"
    m = _fields(p, node, at, _HTTP)
    if m is None:
        return True, ()
    http2 = yn.optional(m, "http2", at, lambda a, n: yn.boolean(p, n, a), True)
    headers = (
        yn.fields(p, m["headers"], key_path(at, "headers"), tuple(HEADERS), "header")
        if "headers" in m
        else {}
    )
    out: list[tuple[str, str]] = []
    for name, value_node in (headers or {}).items():
        where = key_path(key_path(at, "headers"), name)
        empty = not isinstance(value_node, ScalarNode) or (
            value_node.style is None and value_node.tag == NULL_TAG
        )
        value = None if empty else str(value_node.value)
        if value is None or not _HEADER_VALUE.fullmatch(value):
            p.add(where, value_node, "must be printable ASCII text, 1..4096 characters")
        elif HEADERS[name] and value not in HEADERS[name]:
            p.add(where, value_node, f"must be one of {', '.join(HEADERS[name])}, got {value!r}")
        else:
            out.append((name, value))
    return http2, tuple(out)


def _read_users(p: Problems, node: Node) -> tuple[tuple[str, str], ...]:
    users = yn.fields(p, node, "basic_auth_users", None)
    out: list[tuple[str, str]] = []
    for user, hash_node in (users or {}).items():
        where = key_path("basic_auth_users", user)
        if ":" in user or not user.strip():
            p.add(where, hash_node, "a user name must be non-empty and have no ':' (RFC 7617)")
            continue
        hashed = yn.text(p, hash_node, where)
        if hashed is not None and not _BCRYPT.fullmatch(hashed):
            p.add(
                where,
                hash_node,
                "is not a bcrypt hash ($2y$10$ + 53 characters; htpasswd -nBC 10 \"\" | tr -d ':\\n')",
            )
        elif hashed is not None:
            out.append((user, hashed))
    return tuple(out)


Checkpw = Callable[[bytes, bytes], bool]


class BasicAuth:
    """Checks ``Authorization: Basic`` against bcrypt hashes.

    Constant time in the user's existence: an unknown user is checked against a dummy hash of
    the highest configured cost. Successes are remembered (bounded LRU) under an HMAC of user,
    stored hash and password with a key made at start, so a scrape every 15 s costs one bcrypt
    per process, and nothing in memory is a password or an offline-guessable digest of one.
    Failures are never remembered. Guesses at unknown users queue apart from configured users' checks.
    ``checkpw`` is injectable for tests.
    """

    def __init__(
        self, users: Iterable[tuple[str, str]], *, checkpw: Checkpw | None = None, cache_size: int = 64
    ) -> None:
        import bcrypt  # only a config with users needs it

        self._users = {user.encode("utf-8"): hashed.encode("ascii") for user, hashed in users}
        self._checkpw: Checkpw = checkpw or bcrypt.checkpw
        cost = max((int(h[4:6]) for h in self._users.values()), default=10)
        self._dummy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=cost))
        self._key = secrets.token_bytes(32)
        self._cache: OrderedDict[bytes, None] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        # One bcrypt at a time per lane, so guesses cannot take every core; configured users and unknown
        # ones queue apart, so a flood of guesses at made-up users never delays a real user's first login.
        self._lanes = {True: threading.Lock(), False: threading.Lock()}

    def check(self, authorization: str | None) -> bool:
        """True if the header carries a configured user and its password."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user, sep, password = decoded.partition(b":")
        return bool(sep) and self.verify(user, password)

    def verify(self, user: bytes, password: bytes) -> bool:
        stored = self._users.get(user)
        framed = b"".join(len(part).to_bytes(4, "big") + part for part in (user, stored or b"", password))
        digest = hmac.new(self._key, framed, hashlib.sha256).digest()
        if stored is not None:
            with self._cache_lock:
                if digest in self._cache:
                    self._cache.move_to_end(digest)
                    return True
        hashed = stored if stored is not None and len(password) <= _MAX_PASSWORD else self._dummy
        with self._lanes[stored is not None]:
            try:
                ok = self._checkpw(password[:_MAX_PASSWORD], hashed)
            except ValueError:  # a hash bcrypt cannot read (the pattern let it through)
                log.warning("basic auth: unusable bcrypt hash for a configured user")
                ok = False
        if not ok or hashed is self._dummy:
            return False
        with self._cache_lock:
            self._cache[digest] = None
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return True
