"""Measured operating points: from a benchmark result file, or live from Prometheus.

An operating point is what one measurement says about hardware A: tokens/s per GPU (input +
output tokens) at an interactivity of tokens/s per user (1 ÷ mean inter-token latency, as the
live exporter's ``cpm_tokens_per_second_per_user``).

Files read (JSON, the tool's own saved result):

- vLLM ``vllm bench serve --save-result`` (formerly ``benchmarks/benchmark_serving.py``):
  ``total_token_throughput`` (tokens/s, whole server), ``total_input_tokens``,
  ``total_output_tokens``, ``completed``, and ``mean_itl_ms`` (else ``mean_tpot_ms``).
- GenAI-Perf ``profile_export_genai_perf.json`` / AIPerf ``profile_export_aiperf.json``:
  ``output_token_throughput.avg`` (tokens/s), ``inter_token_latency.avg`` (ms),
  ``input_sequence_length.avg`` and ``output_sequence_length.avg`` (tokens per request).

Both measure the whole server, so the GPU count comes from ``--gpus``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from exporter.whatif import WhatIfError

MS_PER_S = Decimal(1000)
VLLM_KEYS = ("total_token_throughput", "total_input_tokens", "total_output_tokens", "completed")
VLLM_LATENCY_KEYS = ("mean_itl_ms", "mean_tpot_ms")  # the first present wins
GENAI_PERF_KEYS = (
    "output_token_throughput",
    "inter_token_latency",
    "input_sequence_length",
    "output_sequence_length",
)
DEFAULT_TOKENS_QUERY = 'sum(rate(cpm_tokens_total{direction=~"input|output"}[1h]))'
DEFAULT_GPUS_QUERY = 'sum(rate(cpm_gpu_seconds_total{state="held"}[1h]))'
DEFAULT_PER_USER_QUERY = "avg(avg_over_time(cpm_tokens_per_second_per_user[1h]))"
MAX_RESPONSE_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class OperatingPoint:
    tokens_per_second_per_gpu: Decimal
    tokens_per_second_per_user: Decimal | None
    source: str  # "flags", "vLLM bench FILE", "Prometheus URL"
    input_share: Decimal | None = None  # input tokens ÷ all tokens, when the measurement says
    tokens_per_request: Decimal | None = None
    interactivity_method: str = ""


def read_benchmark(path: str, gpus: int) -> OperatingPoint:
    """One operating point from a vLLM, GenAI-Perf or AIPerf result file; ``gpus`` served it."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"), parse_float=Decimal, parse_int=Decimal)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WhatIfError(f"{path}: cannot read a benchmark result: {e}") from e
    if not isinstance(doc, dict):
        raise WhatIfError(
            f"{path}: expected a JSON object (a saved benchmark result), got {type(doc).__name__}"
        )
    if gpus < 1:
        raise WhatIfError(f"--gpus: expected the number of GPUs that served the benchmark (>= 1), got {gpus}")
    if any(k in doc for k in (*VLLM_KEYS, *VLLM_LATENCY_KEYS)):
        return _vllm(path, doc, gpus)
    if any(k in doc for k in GENAI_PERF_KEYS):
        return _genai_perf(path, doc, gpus)
    raise WhatIfError(
        f"{path}: not a benchmark result we know: expected vLLM `vllm bench serve --save-result` keys"
        f" {', '.join((*VLLM_KEYS, VLLM_LATENCY_KEYS[0]))}, or GenAI-Perf/AIPerf keys {', '.join(GENAI_PERF_KEYS)}"
    )


def _vllm(path: str, doc: Mapping[str, Any], gpus: int) -> OperatingPoint:
    missing = [k for k in VLLM_KEYS if k not in doc]
    latency_key = next((k for k in VLLM_LATENCY_KEYS if k in doc), None)
    if latency_key is None:
        missing.append(" or ".join(VLLM_LATENCY_KEYS))
    if missing:
        raise WhatIfError(f"{path}: vLLM benchmark result is missing {', '.join(missing)}")
    assert latency_key is not None
    throughput = _positive(path, doc, "total_token_throughput")
    latency_ms = _positive(path, doc, latency_key)
    tokens_in, tokens_out = (
        _number(path, doc, "total_input_tokens"),
        _number(path, doc, "total_output_tokens"),
    )
    completed = _positive(path, doc, "completed")
    return OperatingPoint(
        throughput / gpus,
        MS_PER_S / latency_ms,
        f"vLLM bench {path}",
        tokens_in / (tokens_in + tokens_out) if tokens_in + tokens_out else None,
        (tokens_in + tokens_out) / completed,
        f"1000 ÷ {latency_key}",
    )


def _genai_perf(path: str, doc: Mapping[str, Any], gpus: int) -> OperatingPoint:
    missing = [k for k in GENAI_PERF_KEYS if not (isinstance(doc.get(k), dict) and "avg" in doc[k])]
    if missing:
        raise WhatIfError(
            f"{path}: GenAI-Perf/AIPerf profile export is missing {', '.join(f'{k}.avg' for k in missing)}"
        )
    output_rate = _positive(path, doc["output_token_throughput"], "avg", "output_token_throughput.avg")
    itl_ms = _positive(path, doc["inter_token_latency"], "avg", "inter_token_latency.avg")
    isl = _number(path, doc["input_sequence_length"], "avg", "input_sequence_length.avg")
    osl = _positive(path, doc["output_sequence_length"], "avg", "output_sequence_length.avg")
    return OperatingPoint(
        output_rate * (isl + osl) / osl / gpus,  # all tokens/s = output tokens/s × (ISL + OSL) ÷ OSL
        MS_PER_S / itl_ms,
        f"GenAI-Perf/AIPerf {path}",
        isl / (isl + osl),
        isl + osl,
        "1000 ÷ inter_token_latency.avg",
    )


def _number(path: str, doc: Mapping[str, Any], key: str, name: str = "") -> Decimal:
    value = doc[key]
    if isinstance(value, bool) or not isinstance(value, Decimal) or not value.is_finite() or value < 0:
        raise WhatIfError(f"{path}: {name or key} must be a number >= 0, got {value!r}")
    return value


def _positive(path: str, doc: Mapping[str, Any], key: str, name: str = "") -> Decimal:
    value = _number(path, doc, key, name)
    if value == 0:
        raise WhatIfError(f"{path}: {name or key} is 0; a throughput or latency must be > 0 to price a token")
    return value


Opener = Callable[[str, float], bytes]


def _urlopen(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body: bytes = response.read(MAX_RESPONSE_BYTES + 1)
    if len(body) > MAX_RESPONSE_BYTES:
        raise WhatIfError(f"{url}: response larger than {MAX_RESPONSE_BYTES} bytes")
    return body


def query_scalar(base_url: str, query: str, *, timeout: float = 10.0, opener: Opener = _urlopen) -> Decimal:
    """The single value of an instant ``query`` against Prometheus' ``/api/v1/query``."""
    url = f"{base_url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    try:
        doc = json.loads(opener(url, timeout))
    except (OSError, urllib.error.URLError, ValueError) as e:
        raise WhatIfError(f"Prometheus {base_url}: query {query!r} failed: {e}") from e
    if not isinstance(doc, dict) or doc.get("status") != "success":
        error = doc.get("error", doc) if isinstance(doc, dict) else doc
        raise WhatIfError(f"Prometheus {base_url}: query {query!r} failed: {error}")
    return _single_value(base_url, query, doc.get("data"))


def _single_value(base_url: str, query: str, data: Any) -> Decimal:
    where = f"Prometheus {base_url}: query {query!r}"
    if not isinstance(data, dict) or data.get("resultType") not in ("vector", "scalar"):
        raise WhatIfError(f"{where}: expected an instant vector or scalar in data.result")
    result = data.get("result")
    sample = result if data["resultType"] == "scalar" else _one_series(where, result)
    if not isinstance(sample, list) or len(sample) != 2:
        raise WhatIfError(f'{where}: expected a [timestamp, "value"] sample, got {sample!r}')
    try:
        value = Decimal(str(sample[1]))
    except (IndexError, TypeError, KeyError, InvalidOperation) as e:
        raise WhatIfError(f"{where}: unreadable sample {sample!r}") from e
    if not value.is_finite():
        raise WhatIfError(f"{where}: the value is {value}; expected a finite number")
    return value


def _one_series(where: str, result: Any) -> Any:
    if not isinstance(result, list) or not result:
        raise WhatIfError(
            f"{where}: returned no series (are the exporter's counters scraped, and the window long enough?)"
        )
    if len(result) > 1:
        raise WhatIfError(
            f"{where}: returned {len(result)} series; expected one (aggregate it, e.g. with sum())"
        )
    series = result[0]
    return series.get("value") if isinstance(series, dict) else None


@dataclass(frozen=True, slots=True)
class PrometheusQueries:
    tokens: str = DEFAULT_TOKENS_QUERY
    gpus: str = DEFAULT_GPUS_QUERY
    per_user: str = DEFAULT_PER_USER_QUERY


def prometheus_point(
    base_url: str, queries: PrometheusQueries, gpus: int | None = None, *, opener: Opener = _urlopen
) -> OperatingPoint:
    """tokens/s per GPU = tokens/s ÷ GPUs held (from the queries; ``gpus`` overrides the GPU query).

    Tokens over *held* GPU time already include idle time: use utilisation 1 with this point.
    """
    tokens = query_scalar(base_url, queries.tokens, opener=opener)
    held = Decimal(gpus) if gpus is not None else query_scalar(base_url, queries.gpus, opener=opener)
    per_user = query_scalar(base_url, queries.per_user, opener=opener)
    if tokens <= 0 or held <= 0:
        raise WhatIfError(
            f"Prometheus {base_url}: measured {tokens} tokens/s on {held} GPUs; expected both > 0"
            " (is traffic flowing in the query window?)"
        )
    return OperatingPoint(
        tokens / held, per_user if per_user > 0 else None, f"Prometheus {base_url}", None, None, "query"
    )
