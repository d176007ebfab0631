"""A client of the Prometheus HTTP API (Prometheus, VictoriaMetrics, Thanos, Mimir): instant queries.

Standard library only. Queries are POSTed as forms (long selectors never hit a URL limit); the
answer must be the API's JSON envelope, or the error says what came back instead. Auth as our
targets have it: a bearer token file (re-read per request), basic auth with a password file, a
CA bundle or no verification. Every failure is a ``PrometheusError`` whose message a person can
act on: unreachable, refused, not a Prometheus API, the query rejected (with the server's reason).
"""

from __future__ import annotations

import base64
import functools
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from exporter import __version__
from exporter.http.fetch import read_token
from exporter.redact import redact_url

MAX_ANSWER_BYTES = 2**30  # one chunk's answer: a month of a large fleet is cut into chunks (--chunk)


class PrometheusError(Exception):
    """The store could not answer: the message says why and what to check."""


@dataclass(frozen=True, slots=True)
class PrometheusClient:
    url: str  # the API's base, e.g. http://prometheus:9090 (or VictoriaMetrics' http://vm:8428)
    bearer_token_file: str = ""
    basic_auth_user: str = ""
    basic_auth_password_file: str = ""
    ca_file: str = ""
    insecure_skip_verify: bool = False
    timeout_s: float = 120.0

    def query(self, expr: str, at: float) -> list[dict[str, Any]]:
        """An instant query at UNIX time ``at``: the result's list (vector or matrix entries)."""
        body = self._post("/api/v1/query", {"query": expr, "time": f"{at:.3f}"})
        data = body.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("result"), list):
            raise PrometheusError(f"{self._where()}: the answer to {expr!r} has no data.result")
        return list(data["result"])

    def samples(self, expr: str, at: float) -> dict[tuple[tuple[str, str], ...], list[tuple[float, Decimal]]]:
        """A range selector's raw samples at ``at``: per series (its sorted labels), [(time, value)],
        values exact as the store printed them."""
        out: dict[tuple[tuple[str, str], ...], list[tuple[float, Decimal]]] = {}
        for entry in self.query(expr, at):
            labels = tuple(sorted(entry.get("metric", {}).items()))
            if "values" in entry:
                points = entry["values"]
            elif "value" in entry:
                points = [entry["value"]]
            else:
                continue
            out.setdefault(labels, []).extend((float(t), Decimal(v)) for t, v in points)
        return out

    def _post(self, path: str, form: dict[str, str]) -> dict[str, Any]:
        url = self.url.rstrip("/") + path
        request = urllib.request.Request(
            url,
            data=urllib.parse.urlencode(form).encode(),
            headers=self._headers(url),
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s, context=self._tls()) as resp:
                raw = resp.read()
                if resp.headers.get("Content-Encoding") == "gzip":
                    raw = _gunzip(raw, self._where())
        except urllib.error.HTTPError as e:
            if e.code in (404, 405):  # no such route: the URL points at something else
                raise PrometheusError(
                    f"{self._where()} is not a Prometheus API ({path} answered HTTP {e.code}); --prometheus takes "
                    "the server's base URL, e.g. http://prometheus:9090"
                ) from None
            raise PrometheusError(f"{self._where()} answered HTTP {e.code}: {_api_error(e.read())}") from None
        except urllib.error.URLError as e:
            raise PrometheusError(f"cannot reach {self._where()}: {e.reason}") from None
        except TimeoutError:
            raise PrometheusError(f"{self._where()} did not answer within {self.timeout_s:g} s") from None
        except OSError as e:
            raise PrometheusError(f"cannot reach {self._where()}: {e}") from None
        try:
            body = json.loads(raw)
        except ValueError:
            head = raw[:80].decode(errors="replace")
            raise PrometheusError(
                f"{self._where()}{path} is not a Prometheus API (the answer is not JSON: {head!r}); "
                "--prometheus takes the server's base URL, e.g. http://prometheus:9090"
            ) from None
        if not isinstance(body, dict) or body.get("status") != "success":
            raise PrometheusError(f"{self._where()} refused the query: {_api_error(raw)}")
        return body

    def _headers(self, url: str) -> dict[str, str]:
        headers = {
            "Accept": "application/json",
            "Accept-Encoding": "gzip",
            "User-Agent": f"cpm-exporter/{__version__} report",
        }
        if self.bearer_token_file:
            if not url.startswith("https://"):
                raise PrometheusError("--bearer-token-file is sent over https only (the URL is http)")
            try:  # the same reading as our targets' tokens (one line of ASCII, re-read per request)
                token = read_token(self.bearer_token_file)
            except (OSError, ValueError) as e:
                why = getattr(e, "strerror", None) or e
                raise PrometheusError(f"--bearer-token-file {self.bearer_token_file}: {why}") from None
            headers["Authorization"] = f"Bearer {token}"
        elif self.basic_auth_user:
            password = (
                _secret(self.basic_auth_password_file, "password") if self.basic_auth_password_file else ""
            )
            pair = base64.b64encode(f"{self.basic_auth_user}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {pair}"
        return headers

    def _tls(self) -> ssl.SSLContext | None:
        if not self.url.startswith("https://"):
            return None
        try:
            return _tls_context(self.ca_file, self.insecure_skip_verify)
        except (OSError, ssl.SSLError) as e:
            raise PrometheusError(f"cannot use --ca-file {self.ca_file}: {e}") from None

    def _where(self) -> str:
        return redact_url(self.url)


def _secret(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError as e:
        raise PrometheusError(f"cannot read the {what} file {path}: {e.strerror}") from None


@functools.lru_cache(maxsize=4)
def _tls_context(ca_file: str, insecure: bool) -> ssl.SSLContext:
    """Built once per run, not once per chunk; TLS 1.2 at least, as our targets' client."""
    context = ssl.create_default_context(cafile=ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _gunzip(raw: bytes, where: str, cap: int = MAX_ANSWER_BYTES) -> bytes:
    """A gzip body, at most ``cap`` bytes once inflated (a small body can inflate to anything)."""
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = inflate.decompress(raw, cap)
    if inflate.unconsumed_tail:
        raise PrometheusError(
            f"{where}: an answer larger than {cap} bytes once inflated; use a smaller --chunk"
        )
    return out


def _api_error(raw: bytes) -> str:
    """The API's own error text, else the start of what came back."""
    try:
        body = json.loads(raw)
        if isinstance(body, dict) and body.get("error"):
            return f"{body.get('errorType', 'error')}: {body['error']}"
    except ValueError:
        pass
    return repr(raw[:200].decode(errors="replace"))
