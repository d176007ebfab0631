"""Endpoints in the config: URLs, and how to reach an https one (trust and token).

    url: https://${HOST_IP}:10250/metrics/cadvisor     # ${NAME}: an environment variable
    https:
      ca_file: /etc/cpm/ca.crt          # trust this PEM bundle, not the system's CAs
      insecure_skip_verify: false       # true: accept any certificate (self-signed kubelets)
      server_name: vllm.internal        # the name the certificate must carry (URL holds an IP)
      bearer_token_file: /var/run/secrets/kubernetes.io/serviceaccount/token

``${NAME}`` lets one ConfigMap serve a whole DaemonSet (the node's IP from the downward API);
an unset variable is a config error, not an empty host. An IPv6 address gets the brackets
a URL needs (``https://${HOST_IP}:10250/…`` works on IPv6 nodes too).
"""

from __future__ import annotations

import ipaddress
import os
import re
from urllib.parse import urlsplit

from yaml.nodes import Node

from exporter.records import NO_CLIENT_CONFIG, HttpClientConfig
from exporter.redact import redact_url
from exporter.yamlstrict import readers as yn
from exporter.yamlstrict.readers import Problems, key_path

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")
_HTTPS_FIELDS = ("ca_file", "insecure_skip_verify", "server_name", "bearer_token_file")


def read_url(p: Problems, node: Node, path: str) -> str | None:
    """``http(s)://host:port/path`` (explicit port, no credentials: they would leak into logs),
    or ``file:///absolute/path`` for a batch job's counter file; ``${NAME}`` is expanded."""
    url = yn.text(p, node, path)
    if url is None:
        return None
    missing = sorted({name for name in _ENV.findall(url) if name not in os.environ})
    if missing:
        p.add(path, node, f"environment variable {', '.join(missing)} is not set, in {url!r}")
        return None
    raw = url
    url = _ENV.sub(lambda m: _host(os.environ[m.group(1)], host=raw[: m.start()].endswith("://")), raw)
    if url.startswith("file:"):
        if not url.startswith("file:///") or len(url) <= len("file:///"):
            p.add(path, node, f"a file target is file:///absolute/path, got {url!r}")
            return None
        return url
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        p.add(path, node, f"is not a valid URL ({exc})")
        return None
    for bad, why in (
        (parts.scheme not in ("http", "https"), "must start with http:// or https:// (or be file:///path)"),
        (not parts.hostname, "has no host"),
        (port is None, "needs an explicit port (http://host:port/path)"),
        (parts.username is not None or parts.password is not None, "must not carry credentials"),
        (not parts.path.startswith("/"), "needs a path, e.g. /metrics"),
        (bool(parts.fragment), "must not have a #fragment"),
    ):
        if bad:
            p.add(path, node, f"{why}, got {redact_url(url)!r}")
            return None
    return url


def _host(value: str, *, host: bool) -> str:
    """An environment value as URL text: a bare IPv6 address in the host position gets its
    brackets (status.hostIP on an IPv6 node); anywhere else a value is left as it is."""
    return f"[{value}]" if host and _is_ip(value, version=6) else value


def _is_ip(text: str, version: int | None = None) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return version is None or address.version == version


def read_https(p: Problems, node: Node | None, at: str, url: str | None) -> HttpClientConfig:
    """The ``https`` mapping at ``at`` for ``url``; settings for a non-https URL are refused
    (a bearer token must never travel in clear)."""
    m = yn.fields(p, node, at, _HTTPS_FIELDS) if node is not None else None
    if m is None:
        return NO_CLIENT_CONFIG
    path = lambda at, n: _absolute_path(p, n, at)  # noqa: E731  (a reader, as text_reader is)
    client = HttpClientConfig(
        ca_file=yn.optional(m, "ca_file", at, path, ""),
        insecure_skip_verify=yn.optional(
            m, "insecure_skip_verify", at, lambda a, n: yn.boolean(p, n, a), False
        ),
        server_name=yn.optional(m, "server_name", at, lambda a, n: _server_name(p, n, a), ""),
        bearer_token_file=yn.optional(m, "bearer_token_file", at, path, ""),
    )
    if client.insecure_skip_verify and (client.ca_file or client.server_name):
        p.add(
            key_path(at, "insecure_skip_verify"),
            node,
            "verifies nothing: drop ca_file and server_name, or this",
        )
    if url and client != NO_CLIENT_CONFIG and not url.startswith("https://"):  # "": reported already
        p.add(at, node, f"is for https:// URLs, got {url!r}")
    return client


def _server_name(p: Problems, node: Node, at: str) -> str | None:
    """A DNS name or an IP address: what a certificate can be issued for."""
    name = yn.text(p, node, at)
    if name is not None and not (_is_ip(name) or _HOSTNAME.fullmatch(name)):
        p.add(at, node, f"is not a host name or IP address, got {name!r}")
        return None
    return name


def _absolute_path(p: Problems, node: Node, at: str) -> str | None:
    text = yn.text(p, node, at)
    if text is not None and not text.startswith("/"):
        p.add(at, node, f"must be an absolute path, got {text!r}")
        return None
    return text
