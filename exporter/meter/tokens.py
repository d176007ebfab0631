"""Token, request and latency deltas per model from the targets' cumulative counters.

A target whose scrape failed, or whose numbers are not valid counters (NaN, ±Inf,
negative), is skipped whole for the tick: its last readings stay, so its counters freeze
and resume without loss when it comes back.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from exporter.meter.counters import Reading, bucket_increase, delta, is_valid_counter, valid_buckets
from exporter.model import Buckets, ModelCounters, Owner, TargetScrape

# Increments beyond this many tokens per second of tick are a bogus upstream value
# (reliability §b.4): the new value becomes the baseline, the jump is not counted.
MAX_TOKENS_PER_SECOND = 10_000_000
COUNTER_FIELDS = (
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "requests",
    "prefill_seconds",
    "decode_seconds",
    "itl_seconds",
    "itl_count",
)
LENGTH_FIELDS = ("prompt_lengths", "generation_lengths")
STALE_SERIES_S = 600.0  # a model a target stopped exporting this long ago is forgotten


@dataclass(frozen=True, slots=True)
class ModelDelta:
    """What one model served in one tick, already attributed to its owner."""

    owner: Owner
    input_tokens: float = 0.0
    cached_input_tokens: float = 0.0  # part of input_tokens the server served from cache
    output_tokens: float = 0.0
    requests: float = 0.0
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    itl_seconds: float = 0.0
    itl_count: float = 0.0
    running: float | None = None
    requests_by_reason: tuple[tuple[str, float], ...] = ()  # finished this tick, per reason
    itl_method: str = ""  # what itl_seconds / itl_count measure (the server's profile says)
    has_phase_time: bool = False  # the server exports prefill and decode time
    prompt_lengths: Buckets = ()  # requests finished this tick, per prompt-length bucket
    generation_lengths: Buckets = ()  # ... per output-length bucket

    @property
    def computed_input_tokens(self) -> float:
        """Prompt tokens the GPU actually prefilled: what the input price is spread over."""
        return max(self.input_tokens - self.cached_input_tokens, 0.0)

    @property
    def tokens(self) -> float:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class TokenTick:
    deltas: tuple[ModelDelta, ...]
    resets: Counter[str]  # target → counter resets seen this tick
    rejected: Counter[tuple[str, str]]  # (target, reason) → rejected inputs
    read_pods: frozenset[tuple[str, str]]  # (namespace, pod) whose tokens we could read
    # Pods with a target read for the first time: its counters are a baseline, not "no tokens".
    baselined: frozenset[tuple[str, str]]
    done: dict[tuple[str, str], float]  # (namespace, pod) → input tokens its counters show now


def _invalid_reason(models: Iterable[ModelCounters]) -> str:
    for m in models:
        for name in COUNTER_FIELDS:
            value = getattr(m, name)
            if not is_valid_counter(value):
                return "nan" if math.isnan(value) else ("inf" if math.isinf(value) else "negative")
        if not all(is_valid_counter(n) for _, n in m.requests_by_reason):
            return "bad_reason_counter"
        if m.running is not None and not (math.isfinite(m.running) and m.running >= 0):
            return "bad_gauge"
    return ""


class TokenMeter:
    """Keeps the last reading of every (target, model, counter) to compute deltas."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str, str, str], Reading] = {}
        self._last_buckets: dict[tuple[str, str, str, str], tuple[Buckets, float | None]] = {}
        self._seen_s: dict[str, float] = {}  # target → end of the tick of its last good reading
        # target → (model, instance) → when its counters were last in a good reading: series a
        # target stopped exporting (a restart's old adapters) are forgotten after a while.
        self._series_s: dict[str, dict[tuple[str, str], float]] = {}

    def tick(self, scrapes: Iterable[TargetScrape], start_s: float, dt_s: float) -> TokenTick:
        deltas: list[ModelDelta] = []
        resets: Counter[str] = Counter()
        rejected: Counter[tuple[str, str]] = Counter()
        read: set[tuple[str, str]] = set()
        baselined: set[tuple[str, str]] = set()
        done: dict[tuple[str, str], float] = {}
        for scrape in scrapes:
            if not scrape.ok:
                continue
            reason = _invalid_reason(scrape.models)
            if reason:
                rejected[(scrape.target, reason)] += 1
                continue
            pod = (scrape.holder.namespace, scrape.holder.pod)
            read.add(pod)
            done[pod] = done.get(pod, 0.0) + sum(m.input_tokens for m in scrape.models)
            # A catch-up after an outage spans the whole gap, not just this tick.
            now_s = start_s + dt_s
            if scrape.target not in self._seen_s:
                baselined.add(pod)
            elapsed_s = max(dt_s, now_s - self._seen_s.get(scrape.target, now_s))
            self._seen_s[scrape.target] = now_s
            self._forget_stale_series(scrape, now_s)
            for m in scrape.models:
                d, n_resets, jump = self._model_delta(scrape, m, start_s, elapsed_s)
                resets[scrape.target] += n_resets
                if jump:
                    rejected[(scrape.target, "implausible_jump")] += 1
                lengths = [self._lengths(scrape.target, m, name, start_s) for name in LENGTH_FIELDS]
                if None in lengths:
                    rejected[(scrape.target, "bad_histogram")] += lengths.count(None)
                if not jump and (lengths[0] or lengths[1]):
                    d = replace(d, prompt_lengths=lengths[0] or (), generation_lengths=lengths[1] or ())
                deltas.append(d)
        return TokenTick(tuple(deltas), resets, rejected, frozenset(read), frozenset(baselined), done)

    def _model_delta(
        self, scrape: TargetScrape, m: ModelCounters, start_s: float, elapsed_s: float
    ) -> tuple[ModelDelta, int, bool]:
        owner = scrape.holder._replace(model=m.model or scrape.holder.model)
        amounts: dict[str, Any] = {}  # COUNTER_FIELDS → float (Any: ModelDelta has other fields too)
        reset = False
        for name in COUNTER_FIELDS:
            value = getattr(m, name)
            if value is None:
                continue
            key = (scrape.target, m.model, m.instance, name)
            d = delta(self._last.get(key), Reading(value, m.created), born_after=start_s)
            self._last[key] = Reading(value, m.created)
            amounts[name] = d.amount
            reset = reset or d.reset
        by_reason = []
        for why, value in m.requests_by_reason:
            key = (scrape.target, m.model, m.instance, "requests:" + why)
            d = delta(self._last.get(key), Reading(value, m.created), born_after=start_s)
            self._last[key] = Reading(value, m.created)
            by_reason.append((why, d.amount))
        jump = amounts.get("input_tokens", 0) + amounts.get("output_tokens", 0) > MAX_TOKENS_PER_SECOND * max(
            elapsed_s, 1.0
        )
        if jump:
            amounts, by_reason = {}, []
        phase = m.prefill_seconds is not None and m.decode_seconds is not None
        md = ModelDelta(
            owner=owner,
            running=m.running,
            requests_by_reason=tuple(by_reason),
            itl_method=m.itl_method,
            has_phase_time=phase,
            **amounts,
        )
        return md, int(reset), jump

    def _lengths(self, target: str, m: ModelCounters, name: str, start_s: float) -> Buckets | None:
        """Requests finished since the last reading, per length bucket; None if the histogram is bad.

        A bad histogram is left out alone (its last good reading stays): tokens still count.
        """
        buckets: Buckets = getattr(m, name)
        if not buckets:
            return ()
        if not valid_buckets(buckets):
            return None
        key = (target, m.model, m.instance, name)
        grown = bucket_increase(self._last_buckets.get(key), (buckets, m.created), born_after=start_s)
        self._last_buckets[key] = (buckets, m.created)
        return grown

    def _forget_stale_series(self, scrape: TargetScrape, now_s: float) -> None:
        """Drop the last readings of a target's models unseen for STALE_SERIES_S (bounded memory).

        Not at once: a model missing from one payload keeps its baseline, so nothing is lost
        when it comes back; one gone for that long re-baselines, as a new series would.
        """
        seen = self._series_s.setdefault(scrape.target, {})
        for m in scrape.models:
            seen[(m.model, m.instance)] = now_s
        stale = {k for k, at in seen.items() if now_s - at > STALE_SERIES_S}
        if stale:
            for k in stale:
                del seen[k]
            self._last = {k: v for k, v in self._last.items() if k[0] != scrape.target or k[1:3] not in stale}
            self._last_buckets = {
                k: v for k, v in self._last_buckets.items() if k[0] != scrape.target or k[1:3] not in stale
            }

    def forget_targets(self, keep: set[str]) -> None:
        self._last = {k: v for k, v in self._last.items() if k[0] in keep}
        self._last_buckets = {k: v for k, v in self._last_buckets.items() if k[0] in keep}
        self._seen_s = {k: v for k, v in self._seen_s.items() if k in keep}
        self._series_s = {k: v for k, v in self._series_s.items() if k in keep}
