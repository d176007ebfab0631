"""The generic inference source: one ServerProfile turns a /metrics payload into ModelCounters.

An ``if server == ...`` here would mean the profile lacks a field.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable

from exporter.errors import ParseError, SourceError
from exporter.model import ModelCounters, TargetScrape
from exporter.settings import Target
from exporter.sources.servers import PROCESS_START, SERVERS, ServerProfile
from exporter.sources.textformat import FetchLimits, Sample, fetch_text, has_prefix, parse_wanted

log = logging.getLogger(__name__)
Fetch = Callable[[str, FetchLimits], str]
# Upstream label values become our label values: bound their length (cardinality and size).
MAX_LABEL_LENGTH = 128
_WANTED = {name: profile.wanted() | {PROCESS_START} for name, profile in SERVERS.items()}


def detect(text: str) -> str:
    """The SERVERS entry whose metric prefix appears in the payload."""
    for name, profile in SERVERS.items():
        if has_prefix(text, profile.prefix):
            return name
    known = ", ".join(f"{n} ({p.prefix}*)" for n, p in SERVERS.items())
    raise ParseError(f"no known inference server metrics found (looked for {known})", reason="unknown_server")


def read_payload(text: str, server: str, max_samples: int) -> list[ModelCounters]:
    """Cumulative counters per model in one payload of ``server``'s metrics."""
    profile = SERVERS[server]
    samples = parse_wanted(text, _WANTED[server], max_samples=max_samples)
    by_model: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    started: float | None = None
    for s in samples:
        if s.name == PROCESS_START:
            started = s.value
            continue
        model = s.labels.get(profile.model_label, "")[:MAX_LABEL_LENGTH]
        by_model[model][s.name] += s.value
    if not any(_first(series, profile.input_tokens) is not None for series in by_model.values()):
        raise ParseError(f"payload has no {profile.input_tokens[0]} series", reason="no_token_counters")
    return [_model_counters(model, series, profile, started) for model, series in sorted(by_model.items())]


def _first(series: dict[str, float], names: Iterable[str], suffix: str = "") -> float | None:
    for name in names:
        if name + suffix in series:
            return series[name + suffix]
    return None


def _model_counters(
    model: str, series: dict[str, float], p: ServerProfile, started: float | None
) -> ModelCounters:
    created = _first(series, [n.removesuffix("_total") for n in p.input_tokens], "_created")
    itl_base = next((b for b in p.itl_histogram if b + "_count" in series), None)
    return ModelCounters(
        model=model,
        input_tokens=_first(series, p.input_tokens) or 0.0,
        output_tokens=_first(series, p.output_tokens) or 0.0,
        requests=_first(series, p.requests),
        created=created if created is not None else started,
        prefill_seconds=_first(series, p.prefill_seconds, "_sum"),
        decode_seconds=_first(series, p.decode_seconds, "_sum"),
        itl_seconds=series.get(itl_base + "_sum") if itl_base else None,
        itl_count=series.get(itl_base + "_count") if itl_base else None,
        running=_first(series, p.running),
    )


def scrape(target: Target, limits: FetchLimits, fetch: Fetch = fetch_text) -> TargetScrape:
    """Fetch and read one target. Never raises: a failure is a TargetScrape with ok=False."""
    began = time.perf_counter()
    server = "" if target.server == "auto" else target.server
    try:
        text = fetch(target.url, limits)
        server = server or detect(text)
        models = read_payload(text, server, limits.max_samples)
    except SourceError as e:
        return TargetScrape(
            target=target.name,
            holder=target.owner,
            server=server,
            ok=False,
            error_reason=e.reason,
            error=str(e),
            duration_seconds=time.perf_counter() - began,
        )
    return TargetScrape(
        target=target.name,
        holder=target.owner,
        server=server,
        ok=True,
        models=tuple(models),
        duration_seconds=time.perf_counter() - began,
    )


__all__ = ["Sample", "detect", "read_payload", "scrape"]
