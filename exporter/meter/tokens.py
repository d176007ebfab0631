"""Token, request and latency deltas per model from the targets' cumulative counters.

Every token once (README "Every token once"):

* a target's very first good scrape is a baseline; after that, a series absent from the
  target's last good scrape was born since (a model added, an adapter's first request, a
  finish reason's first request) and counts from 0;
* a counter missing from one scrape is unknown for that scrape: it freezes, it never resets;
* a restart seen on any counter of a (target, model, instance) — a fall beyond float noise, a
  changed ``_created`` or process start — restarts every counter of it, and a restart of the
  target's container (Kubernetes ``startedAt``) restarts all of the target: new values count
  whole;
* a failed scrape freezes the whole target; the next good one adds the gap once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from exporter.meter.counters import bucket_increase, fell, is_valid_counter, valid_buckets
from exporter.meter.deltas import ModelDelta
from exporter.records import COUNTERS, LEVELS, Buckets, ModelCounters, TargetScrape

# Increments beyond this many tokens per second of tick are a bogus upstream value
# (reliability §b.4): held back one tick, then either a glitch that passed or a new baseline.
MAX_TOKENS_PER_SECOND = 10_000_000
LENGTH_FIELDS = ("prompt_lengths", "generation_lengths")
REASON = "requests:"  # key prefix of the per-finish-reason request counters
# A model a target has not exported for this long is forgotten (bounded memory). Servers keep
# their series for their whole life, so only a restart drops one, and that is seen on the others.
STALE_SERIES_S = 3600.0
# Kubernetes gives a container's start to the second: a start this close before our last
# reading may still be after it.
STARTED_AT_RESOLUTION_S = 1.0


@dataclass(frozen=True, slots=True)
class TokenTick:
    deltas: tuple[ModelDelta, ...]
    resets: Counter[str]  # target → counter resets seen this tick
    rejected: Counter[tuple[str, str]]  # (target, reason) → rejected inputs
    read_pods: frozenset[tuple[str, str]]  # (namespace, pod) whose tokens we could read
    # Pods with a target read for the first time: its counters are a baseline, not "no tokens".
    baselined: frozenset[tuple[str, str]]
    done: dict[tuple[str, str], float]  # (namespace, pod) → input tokens its counters show now


@dataclass(slots=True)
class _Series:
    """The last good readings of one (model, instance) of a target."""

    values: dict[str, float]  # COUNTERS and REASON + reason → cumulative value
    created: tuple[str, float] | None  # (series, start time): the last one read
    lengths: dict[str, Buckets]
    seen_s: float
    present: frozenset[str] = frozenset()  # the counters the last reading carried
    sources: dict[str, str] = field(default_factory=dict)  # field → the alternative it is read from
    held: dict[str, float] | None = None  # an implausible jump's readings, held back one tick


@dataclass(slots=True)
class _Target:
    series: dict[tuple[str, str], _Series]
    read_s: float  # end of the tick of the last good reading
    started_at: float | None  # the serving container's start (Kubernetes), if known
    missed: bool = False  # a scrape failed since the last good one: the next is a catch-up


@dataclass(slots=True)
class _Out:
    deltas: list[ModelDelta] = field(default_factory=list)
    resets: Counter[str] = field(default_factory=Counter)
    rejected: Counter[tuple[str, str]] = field(default_factory=Counter)
    read: set[tuple[str, str]] = field(default_factory=set)
    baselined: set[tuple[str, str]] = field(default_factory=set)
    done: dict[tuple[str, str], float] = field(default_factory=dict)


class TokenMeter:
    """Keeps the last good reading of every target's series to compute deltas."""

    def __init__(self) -> None:
        self._targets: dict[str, _Target] = {}

    def tick(self, scrapes: Iterable[TargetScrape], start_s: float, dt_s: float) -> TokenTick:
        out = _Out()
        for scrape in scrapes:
            if scrape.ok:
                self._read(scrape, start_s, dt_s, out)
            elif (missed := self._targets.get(scrape.target)) is not None:
                missed.missed = True
        return TokenTick(
            tuple(out.deltas),
            out.resets,
            out.rejected,
            frozenset(out.read),
            frozenset(out.baselined),
            out.done,
        )

    def forget_targets(self, keep: set[str]) -> None:
        self._targets = {k: v for k, v in self._targets.items() if k in keep}

    def _read(self, scrape: TargetScrape, start_s: float, dt_s: float, out: _Out) -> None:
        pod = (scrape.holder.namespace, scrape.holder.pod)
        now_s = start_s + dt_s
        out.read.add(pod)
        shown = [m.input_tokens for m in scrape.models if m.input_tokens is not None]
        if shown:
            out.done[pod] = out.done.get(pod, 0.0) + sum(shown)
        target = self._targets.get(scrape.target)
        first = target is None
        if target is None:
            target = self._targets[scrape.target] = _Target({}, now_s, scrape.started_at)
            out.baselined.add(pod)
        elif _container_restarted(target, scrape.started_at):
            target.series.clear()  # every series of the old container is over: all count from 0
            out.resets[scrape.target] += 1
        # A catch-up after an outage spans the whole gap, not just this tick.
        elapsed_s = max(dt_s, now_s - target.read_s)
        accrued_s = elapsed_s if target.missed else 0.0
        for m in scrape.models:
            d = self._series_delta(scrape, target, m, first, start_s, now_s, elapsed_s, out)
            out.deltas.append(replace(d, accrued_s=accrued_s) if accrued_s and d.known else d)
        target.read_s, target.started_at, target.missed = now_s, scrape.started_at, False
        stale = [k for k, s in target.series.items() if now_s - s.seen_s > STALE_SERIES_S]
        for k in stale:
            del target.series[k]

    def _series_delta(
        self,
        scrape: TargetScrape,
        target: _Target,
        m: ModelCounters,
        first: bool,
        start_s: float,
        now_s: float,
        elapsed_s: float,
        out: _Out,
    ) -> ModelDelta:
        key = series_key(m)
        prev = target.series.get(key)
        readings = _readings(m, scrape.target, out)
        valid = _valid_lengths(m)  # checked once: the restart test, the increase and the baseline use it
        if prev is not None:  # another alternative than last time: a family missing once, unknown
            for name, source in m.sources:
                if prev.sources.get(name, source) != source:
                    readings.pop(name, None)
        if prev is None:
            # Born since our last good reading, unless this is the target's first: a baseline
            # then, except a series whose _created shows it started within this tick.
            whole = not first or (m.created is not None and m.created >= start_s)
            base: dict[str, float] | None = None if whole else readings
        elif _restarted(prev, m, readings, valid):
            out.resets[scrape.target] += 1
            base = None
        else:
            base = prev.values
        amounts = _with_input(_increase(base, readings), readings, prev)
        if _more_hits_than_prompts(amounts, readings, None if base is None else prev):
            # Hits are a part of the prompt tokens: more of them over one span is a server's slip,
            # capped (the input CPM would otherwise vanish) and counted so that it is seen.
            out.rejected[(scrape.target, "cached_above_input")] += 1
            amounts["cached_input_tokens"] = amounts["input_tokens"]
        lengths = _grown(scrape.target, prev, m, valid, whole=base is None, out=out)
        if _tokens(amounts) > MAX_TOKENS_PER_SECOND * max(elapsed_s, 1.0):
            amounts, lengths = (
                self._jump(scrape.target, prev, m, readings, valid, (now_s, elapsed_s), out),
                {},
            )
        else:  # the same life goes on: what this scrape lacks keeps its last reading (frozen)
            kept = prev if prev is not None and base is not None else None
            target.series[key] = _stored(m, readings, valid, now_s, prev, kept)
        return _delta(scrape, m, amounts, lengths, known=_known(readings))

    def _jump(
        self,
        target_name: str,
        prev: _Series | None,
        m: ModelCounters,
        readings: dict[str, float],
        valid: dict[str, Buckets],
        when: tuple[float, float],  # (now, elapsed) in seconds
        out: _Out,
    ) -> dict[str, float]:
        """An implausible increase: hold it back one tick. If the next reading goes on from it,
        it was real and becomes the baseline; if it goes on from before it, it was a glitch."""
        target = self._targets[target_name]
        key, (now_s, elapsed_s) = series_key(m), when
        if prev is None or prev.held is None:
            out.rejected[(target_name, "implausible_jump")] += 1
        if prev is None:  # a series born with a lifetime in it: a baseline, not this tick's
            target.series[key] = _stored(m, readings, valid, now_s, None)
            return {}
        since_held = _increase(prev.held, readings) if prev.held is not None else None
        if since_held is not None and _tokens(since_held) <= MAX_TOKENS_PER_SECOND * max(elapsed_s, 1.0):
            target.series[key] = _stored(m, readings, valid, now_s, prev, under=prev.held)
            return since_held
        prev.held, prev.seen_s = dict(readings), now_s
        return {}


def series_key(m: ModelCounters) -> tuple[str, str]:
    """What a series is followed by: the server's own model name (a target's map may rename it for
    attribution; the counters are the same), and the instance."""
    return (m.server_model or m.model, m.instance)


def _grown(
    target: str, prev: _Series | None, m: ModelCounters, valid: dict[str, Buckets], *, whole: bool, out: _Out
) -> dict[str, Buckets]:
    """Requests finished since the last reading, per length bucket. A bad histogram is left out
    alone (its last good reading stays, counted as ``bad_histogram``): tokens still count."""
    grown: dict[str, Buckets] = {}
    for name in LENGTH_FIELDS:
        if name not in valid:
            if getattr(m, name):
                out.rejected[(target, "bad_histogram")] += 1
            continue
        old = prev.lengths.get(name) if prev is not None else None
        born = prev is not None and old is None  # a histogram that appeared since
        grown[name] = bucket_increase(old, valid[name], whole=whole or born)
    return grown


def _stored(
    m: ModelCounters,
    readings: dict[str, float],
    valid: dict[str, Buckets],
    now_s: float,
    prev: _Series | None,
    kept: _Series | None = None,
    *,
    under: dict[str, float] | None = None,
) -> _Series:
    """The baseline for the next reading: this one, over the counters, histograms and sources
    that froze in ``kept`` (the same life going on), or over ``under`` (a held jump's reading)."""
    frozen = under if under is not None else (kept.values if kept is not None else {})
    return _Series(
        _merged(frozen, readings),
        _created(m, prev),
        {**(kept.lengths if kept is not None else {}), **valid},
        now_s,
        frozenset(readings),
        {**(kept.sources if kept is not None else {}), **_sources(m, readings)},
    )


def _container_restarted(target: _Target, started_at: float | None) -> bool:
    """The serving container started again after our last good reading (Kubernetes says so)."""
    if started_at is None or started_at == target.started_at:
        return False
    return started_at + STARTED_AT_RESOLUTION_S > target.read_s


def _readings(m: ModelCounters, target: str, out: _Out) -> dict[str, float]:
    """The counters this scrape carries. A figure-only counter with a bad value (the reader
    refuses bad token counters) is dropped alone and counted as ``bad_value``."""
    found: dict[str, float] = {}
    for name in COUNTERS:
        value = getattr(m, name)
        if value is None:
            continue
        if is_valid_counter(value):
            found[name] = value
        else:
            out.rejected[(target, "bad_value")] += 1
    for why, value in m.requests_by_reason:
        found[REASON + why] = value
    return found


def _restarted(
    prev: _Series, m: ModelCounters, readings: dict[str, float], valid: dict[str, Buckets]
) -> bool:
    """Any counter of the series fell, or its start time moved: all of it restarted."""
    same_clock = prev.created is not None and prev.created[0] == m.created_by
    if same_clock and m.created is not None and prev.created is not None and m.created != prev.created[1]:
        return True
    if any(fell(prev.values[k], v) for k, v in readings.items() if k in prev.values):
        return True
    return any(
        fell(old[-1][1], new[-1][1])
        for name, new in valid.items()
        if (old := prev.lengths.get(name)) is not None
    )


def _with_input(
    amounts: dict[str, float], readings: dict[str, float], prev: _Series | None
) -> dict[str, float]:
    """Servers counting computed prompt tokens apart from cache hits (llama.cpp): input is the
    increase of both, each frozen on its own when its family is missing once."""
    if "computed_input_tokens" not in readings and (
        prev is None or "computed_input_tokens" not in prev.values
    ):
        return amounts
    computed = amounts.pop("computed_input_tokens", None)
    if computed is not None or "cached_input_tokens" in amounts:
        amounts["input_tokens"] = (computed or 0.0) + amounts.get("cached_input_tokens", 0.0)
    return amounts


def _known(readings: dict[str, float]) -> frozenset[str]:
    known = frozenset(readings) & frozenset(COUNTERS)
    return known | {"input_tokens"} if "computed_input_tokens" in known else known


def _sources(m: ModelCounters, readings: dict[str, float]) -> dict[str, str]:
    return {name: source for name, source in m.sources if name in readings}


HIT_PAIR = frozenset(("input_tokens", "cached_input_tokens"))


def _more_hits_than_prompts(
    amounts: dict[str, float], readings: dict[str, float], prev: _Series | None
) -> bool:
    """More cache hits than prompt tokens over one span: both counters read now, and both read
    last time (or both counted whole): a family missing once makes the spans differ, legitimately."""
    same_span = prev is None or prev.present >= HIT_PAIR
    return (
        same_span and readings.keys() >= HIT_PAIR and amounts["cached_input_tokens"] > amounts["input_tokens"]
    )


def _created(m: ModelCounters, prev: _Series | None) -> tuple[str, float] | None:
    """The start time to compare the next reading with: this one's, else the last one read."""
    if m.created is not None:
        return m.created_by, m.created
    return prev.created if prev is not None else None


def _increase(base: dict[str, float] | None, readings: dict[str, float]) -> dict[str, float]:
    """Per counter: since ``base``; all of it where there is no base (born since, restarted)."""
    if base is None:
        return dict(readings)
    return {k: max(v - base[k], 0.0) if k in base else v for k, v in readings.items()}


def _merged(kept: dict[str, float], readings: dict[str, float]) -> dict[str, float]:
    """The new baseline: counters missing from this scrape keep their last value (frozen);
    a value below the last by float noise keeps the last, so noise never adds up."""
    merged = dict(kept)
    for k, v in readings.items():
        merged[k] = max(v, kept.get(k, v))
    return merged


def _valid_lengths(m: ModelCounters) -> dict[str, Buckets]:
    return {name: b for name in LENGTH_FIELDS if (b := getattr(m, name)) and valid_buckets(b)}


def _tokens(amounts: dict[str, float]) -> float:
    return amounts.get("input_tokens", 0.0) + amounts.get("output_tokens", 0.0)


def _delta(
    scrape: TargetScrape,
    m: ModelCounters,
    amounts: dict[str, float],
    lengths: dict[str, Buckets],
    *,
    known: frozenset[str],
) -> ModelDelta:
    fields: dict[str, Any] = {k: v for k, v in amounts.items() if not k.startswith(REASON)}
    fields.update((f, getattr(m, f)) for f in LEVELS)  # gauges: as read now
    return ModelDelta(
        owner=scrape.holder._replace(model=m.model or scrape.holder.model),
        instance=m.instance,
        requests_by_reason=tuple(
            (k.removeprefix(REASON), v) for k, v in amounts.items() if k.startswith(REASON)
        ),
        itl_method=m.itl_method if "itl_count" in amounts else "",
        has_phase_time="prefill_seconds" in known and "decode_seconds" in known,
        prompt_lengths=lengths.get("prompt_lengths", ()),
        generation_lengths=lengths.get("generation_lengths", ()),
        known=known,
        **fields,
    )
