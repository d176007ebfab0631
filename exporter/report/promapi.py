"""A client of the Prometheus HTTP API (Prometheus, VictoriaMetrics, Thanos, Mimir): instant queries.

Standard library only. Queries are POSTed as forms (long selectors never hit a URL limit); the
answer must be the API's JSON envelope, or the error says what came back instead. Auth as our
targets have it: a bearer token file (re-read per request), basic auth with a password file, a
CA bundle or no verification. Every failure is a ``PrometheusError`` whose message a person can
act on: unreachable, refused, not a Prometheus API, the query rejected (with the server's reason).
"""

from __future__ import annotations

import base64
import gzip
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from exporter import __version__
from exporter.redact import redact_url


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
                    raw = gzip.decompress(raw)
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
            headers["Authorization"] = f"Bearer {_secret(self.bearer_token_file, 'bearer token')}"
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
            context = ssl.create_default_context(cafile=self.ca_file or None)
        except (OSError, ssl.SSLError) as e:
            raise PrometheusError(f"cannot use --ca-file {self.ca_file}: {e}") from None
        if self.insecure_skip_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _where(self) -> str:
        return redact_url(self.url)


def _secret(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError as e:
        raise PrometheusError(f"cannot read the {what} file {path}: {e.strerror}") from None


def _api_error(raw: bytes) -> str:
    """The API's own error text, else the start of what came back."""
    try:
        body = json.loads(raw)
        if isinstance(body, dict) and body.get("error"):
            return f"{body.get('errorType', 'error')}: {body['error']}"
    except ValueError:
        pass
    return repr(raw[:200].decode(errors="replace"))
