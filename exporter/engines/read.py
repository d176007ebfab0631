"""The generic inference source: one ServerProfile turns a /metrics payload into ModelCounters.

An ``if server == ...`` here would mean the profile lacks a field.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import lru_cache
from typing import Any

from exporter.engines.profiles import SERVERS, Series, ServerProfile, with_token_metric
from exporter.errors import ParseError, SourceError
from exporter.http.textformat import FetchLimits, Sample, fetch_text, has_prefix, parse_wanted
from exporter.records import (
    LEVEL,
    NO_TENANT,
    NOBODY,
    QUANTITIES,
    TOKEN_COUNTERS,
    Buckets,
    HttpClientConfig,
    ModelCounters,
    Target,
    TargetScrape,
)

log = logging.getLogger(__name__)
Fetch = Callable[[str, FetchLimits, HttpClientConfig], str]
# Upstream label values become our label values: bound their length (cardinality and size).
MAX_LABEL_LENGTH = 128
_WANTED = {name: profile.wanted() for name, profile in SERVERS.items()}
Indexed = dict[str, list[Sample]]  # sample name → its samples, for one model


def detect(text: str) -> str:
    """The SERVERS entry whose metric prefix appears in the payload."""
    for name, profile in SERVERS.items():
        if any(has_prefix(text, prefix) for prefix in profile.prefixes):
            return name
    known = ", ".join(f"{n} ({'|'.join(p.prefixes)}*)" for n, p in SERVERS.items())
    raise ParseError(f"no known inference server metrics found (looked for {known})", reason="unknown_server")


@lru_cache(maxsize=256)
def profile_of(server: str, token_metric: str = "") -> tuple[ServerProfile, frozenset[str]]:
    """The profile to read a target with, and the sample names it wants."""
    if not token_metric:
        return SERVERS[server], _WANTED[server]
    profile = with_token_metric(SERVERS[server], token_metric)
    return profile, profile.wanted()


def read_payload(
    text: str,
    server: str,
    max_samples: int,
    token_metric: str = "",
    adapter_label: str = "",
    max_series: int | None = None,
    model_names: Mapping[str, str] | None = None,
) -> list[ModelCounters]:
    """Cumulative counters per model in one payload of ``server``'s metrics.

    With ``adapter_label``, a sample whose label of that name is set counts for that adapter
    (LoRA) as its own model; samples without it stay with the base model. ``model_names`` maps the
    server's model names to the declared ones (a target's ``models``): see ``read_with_tenants``.
    """
    return read_with_tenants(
        text, server, max_samples, token_metric, adapter_label, max_series, model_names=model_names
    )[0]


def read_with_tenants(
    text: str,
    server: str,
    max_samples: int,
    token_metric: str = "",
    adapter_label: str = "",
    max_series: int | None = None,
    tenant_label: str = "",
    model_names: Mapping[str, str] | None = None,
) -> tuple[list[ModelCounters], list[ModelCounters]]:
    """``read_payload``'s models, and with ``tenant_label`` the same counters per (model, caller):
    ``instance`` is the label's value, ``NO_TENANT`` where a request carried none.

    ``model_names`` (a target's ``models``) renames the server's model label values (Triton's
    "tensorrt_llm" → the declared model) as the samples are grouped, so every quantity, histogram and
    caller count of the model carries the declared name; a name it does not list stays as the server
    says it. Only the grouping changes: the samples keep their labels, so a profile's ``where`` on the
    model label (Triton's requests of the "tensorrt_llm" model) still matches. Names mapped to one
    model add up.
    """
    profile, wanted = profile_of(server, token_metric)
    if adapter_label in (profile.model_label, profile.instance_label, profile.finish_reason_label):
        adapter_label = ""  # a label the profile reads for something else never names an adapter
    # Grouped by the server's own names: a series the meter follows is one name of the server's,
    # whatever a map makes of it (the map renames the group's model afterwards).
    by_model: dict[tuple[str, str], Indexed] = defaultdict(lambda: defaultdict(list))
    declared: dict[str, str] = {}  # the server's name → the declared model a map gives it
    unlabelled: Indexed = defaultdict(list)  # e.g. process_start_time_seconds: shared by all
    for sample in parse_wanted(text, wanted, max_samples=max_samples, max_wanted=max_series):
        model = sample.labels.get(profile.model_label) if profile.model_label else ""
        if model is None:
            unlabelled[sample.name].append(sample)
            continue
        adapter = sample.labels.get(adapter_label) if adapter_label else None
        own = (adapter or model)[:MAX_LABEL_LENGTH]
        if model_names and not adapter and model in model_names:
            declared[own] = model_names[model][:MAX_LABEL_LENGTH]
        instance = sample.labels.get(profile.instance_label, "") if profile.instance_label else ""
        by_model[(own, instance[:MAX_LABEL_LENGTH])][sample.name].append(sample)
    # A model is read when any of its token or request counters is there: a family missing
    # from one scrape is unknown for that scrape (the meter freezes it), never read as 0.
    read = (
        as_declared(_model_counters(k, by_model[k], unlabelled, profile), declared) for k in sorted(by_model)
    )
    models = [m for m in read if any(getattr(m, f) is not None for f in TOKEN_COUNTERS)]
    if kv := _kv_cache_dtype(unlabelled, profile):
        models = [replace(m, kv_cache_dtype=kv) for m in models]
    if not models:
        counters = (
            profile.input_tokens,
            profile.computed_input_tokens,
            profile.output_tokens,
            profile.requests,
        )
        names = " or ".join(c[0].names[0] for c in counters if c)  # every profile has one
        raise ParseError(f"payload has no {names} series", reason="no_token_counters")
    bad = next((why for m in models if (why := bad_counter(m))), "")
    if bad:
        raise ParseError(bad, reason="bad_value")
    if not tenant_label or tenant_label in (profile.model_label, profile.instance_label):
        return models, []
    return models, _per_tenant(by_model, unlabelled, profile, tenant_label, declared)


def as_declared(m: ModelCounters, declared: Mapping[str, str]) -> ModelCounters:
    """A server's (or gateway's) series under the model a map declares for it, its own name kept in
    ``server_model``: the meter follows the series by it, so a map set or changed on a running
    server renames, never restarts, it. A name the map does not list is left as it is."""
    name = declared.get(m.model)
    return replace(m, model=name, server_model=m.model) if name is not None else m


def _per_tenant(
    by_model: Mapping[tuple[str, str], Indexed],
    unlabelled: Indexed,
    p: ServerProfile,
    tenant_label: str,
    declared: Mapping[str, str],
) -> list[ModelCounters]:
    """The same samples regrouped per (model, the caller ``tenant_label`` names): the counts a gateway
    would give, read from the server itself (engine instances summed)."""
    by_tenant: dict[tuple[str, str], Indexed] = defaultdict(lambda: defaultdict(list))
    for (model, _), index in by_model.items():
        for x in (x for samples in index.values() for x in samples):
            by_tenant[(model, x.labels.get(tenant_label, "")[:MAX_LABEL_LENGTH] or NO_TENANT)][x.name].append(
                x
            )
    tenants = [
        as_declared(_model_counters(k, by_tenant[k], unlabelled, p), declared) for k in sorted(by_tenant)
    ]
    return [m for m in tenants if m.input_tokens is not None or m.output_tokens is not None]


def value(index: Indexed, alternatives: tuple[Series, ...]) -> float | None:
    """The first alternative present, summed; None if none is present."""
    found = read_first(index, alternatives)
    return None if found is None else found[1]


def read_first(index: Indexed, alternatives: tuple[Series, ...]) -> tuple[str, float] | None:
    """(the first name of the first alternative present, its sum); None if none is.

    An alternative of several names is present only when every one is: a sum missing a part
    would look like a fall. A sample that is not a finite, non-negative number makes the sum
    NaN rather than hiding in it (a -5 child beside a +100 one), for the caller to refuse.
    """
    for series in alternatives:
        found = [
            [x.value for x in index.get(name, ()) if all(x.labels.get(k) == v for k, v in series.where)]
            for name in series.names
        ]
        if all(found):
            values = [v for part in found for v in part]
            total = sum(values)
            return series.names[0], total if all(math.isfinite(v) and v >= 0 for v in values) else math.nan
    return None


def by_label(index: Indexed, alternatives: tuple[Series, ...], label: str) -> tuple[tuple[str, float], ...]:
    """The first present alternative, summed per value of ``label`` (e.g. per finish reason)."""
    for series in alternatives:
        sums: dict[str, float] = {}
        for name in series.names:
            for x in index.get(name, ()):
                if all(x.labels.get(k) == v for k, v in series.where):
                    key = x.labels.get(label, "")[:MAX_LABEL_LENGTH]
                    sums[key] = sums.get(key, 0.0) + x.value
        if sums:
            return tuple(sorted(sums.items()))
    return ()


def buckets(index: Indexed, alternatives: tuple[Series, ...]) -> Buckets:
    """The first present ``_bucket`` alternative as (bound, cumulative count), ascending.

    An ``le`` that is not a number becomes a NaN bound, which the meter rejects (and counts)
    rather than this reader guessing; "+Inf" parses as infinity.
    """
    counts: dict[float, float] = {}
    for le, count in by_label(index, alternatives, "le"):
        try:
            bound = float(le)
        except ValueError:
            bound = math.nan
        counts[bound] = counts.get(bound, 0.0) + count  # "1" and "1.0" are one bucket
    return tuple(sorted(counts.items()))


def _model_counters(key: tuple[str, str], index: Indexed, shared: Indexed, p: ServerProfile) -> ModelCounters:
    sources: list[tuple[str, str]] = []

    def read(field: str, alternatives: tuple[Series, ...]) -> float | None:
        """One quantity; where it has alternatives, which one was read goes with it: a family
        missing once must not switch a counter to another series (the meter compares)."""
        found = read_first(index, alternatives)
        if found is not None and len(alternatives) > 1:
            sources.append((field, found[0]))
        return None if found is None else found[1]

    token_time = next(
        ((pair[0].names[0], t, n) for pair in p.token_time if (t := value(index, (pair[0],))) is not None
         and (n := value(index, (pair[1],))) is not None),
        ("", None, None),
    )  # fmt: skip
    if len(p.token_time) > 1 and token_time[1] is not None:
        sources += [("itl_seconds", token_time[0]), ("itl_count", token_time[0])]
    created = read_first(index, p.created) or read_first(shared, p.created) or ("", None)
    # records.QUANTITIES, each from the profile's field of its name: counters, and gauges as read now.
    quantities: dict[str, Any] = {
        q.name: _gauge(value(index, getattr(p, q.name)))
        if q.kind == LEVEL
        else read(q.name, getattr(p, q.name))
        for q in QUANTITIES
        if not q.paired
    }
    return ModelCounters(
        model=key[0],
        instance=key[1],
        **quantities,
        requests_by_reason=by_label(index, p.requests, p.finish_reason_label)
        if p.finish_reason_label
        else (),
        created=created[1] if created[1] is not None and math.isfinite(created[1]) else None,
        created_by=created[0],
        itl_seconds=token_time[1],
        itl_count=token_time[2],
        itl_method=p.token_time_method if token_time[1] is not None else "",
        prompt_lengths=buckets(index, p.prompt_lengths),
        generation_lengths=buckets(index, p.generation_lengths),
        sources=tuple(sources),
    )


def _gauge(reading: float | None) -> float | None:
    """A gauge that is not a finite, non-negative number is unknown: it feeds one figure only."""
    return reading if reading is not None and math.isfinite(reading) and reading >= 0 else None


def _kv_cache_dtype(unlabelled: Indexed, p: ServerProfile) -> str:
    """The KV-cache dtype the server's info series names; "" where it says auto or nothing."""
    name, label = p.kv_cache_info
    values = {x.labels.get(label, "") for x in unlabelled.get(name, ())} - {"", "auto"} if name else set()
    return next(iter(values)) if len(values) == 1 else ""


def bad_counter(m: ModelCounters) -> str:
    """Why a token or request counter of ``m`` is not a counter value (NaN, ±Inf, < 0); "" if fine.

    These refuse the scrape (the target's counters freeze, ``cpm_target_up`` is 0): a token
    counter we cannot read makes every other figure of the target suspect. Figures that feed
    only a gauge or the input/output split are dropped alone, by the meter.
    """
    named = [(f, getattr(m, f)) for f in TOKEN_COUNTERS]
    named += [(f"requests[{why}]", n) for why, n in m.requests_by_reason]
    for name, reading in named:
        if reading is not None and not (math.isfinite(reading) and reading >= 0):
            return f"model {m.model!r}: {name} is {reading!r}, not a counter value"
    return ""


def scrape(target: Target, limits: FetchLimits, fetch: Fetch = fetch_text) -> TargetScrape:
    """Fetch and read one target. Never raises: a failure is a TargetScrape with ok=False."""
    began = time.perf_counter()
    server = "" if target.server == "auto" else target.server
    if target.token_metric:  # a job's own token counter: nothing to detect
        server = "training"
    try:
        text = fetch(target.url, limits, target.client)
        server = server or detect(text)
        models, tenants = read_with_tenants(
            text, server, limits.max_samples, target.token_metric, target.adapter_label, limits.max_series,
            target.tenant_label, target.models,
        )  # fmt: skip
    except SourceError as e:
        return _failed(target, server, e.reason, str(e), began)
    except Exception as e:  # a bug of ours on one target's input must not stop the tick for all
        log.exception("target=%s: unexpected error while scraping", target.name)
        return _failed(target, server, "internal", f"{type(e).__name__}: {e}", began)
    return TargetScrape(
        target=target.name,
        holder=target.owner,
        server=server,
        ok=True,
        models=tuple(models),
        duration_seconds=time.perf_counter() - began,
        started_at=target.started_at,
        tenants=tuple(tenants),
    )


TENANTS_SUFFIX = "#tenants"


def tenant_counts(target: Target, scrape: TargetScrape) -> TargetScrape | None:
    """A target's per-caller counts as a gateway's scrape of its own (the meter's tenant split reads
    gateways); None for a target without a tenant label. A failed scrape stays failed: frozen, not 0."""
    if not target.tenant_label:
        return None
    return TargetScrape(target.name + TENANTS_SUFFIX, NOBODY, scrape.server, scrape.ok, scrape.tenants,
                        scrape.error_reason, scrape.error, scrape.duration_seconds, scrape.started_at)  # fmt: skip


def _failed(target: Target, server: str, reason: str, error: str, began: float) -> TargetScrape:
    return TargetScrape(
        target=target.name,
        holder=target.owner,
        server=server,
        ok=False,
        error_reason=reason,
        error=error,
        duration_seconds=time.perf_counter() - began,
    )


__all__ = ["Sample", "detect", "read_payload", "scrape"]
