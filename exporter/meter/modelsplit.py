"""Splitting one holder's tick: its money across the models it served (``Plan``), a pod's tokens across
the GPU kinds it held (``by_kind``), and the deltas that land on one line summed (``sum_deltas``)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

from exporter.meter.attribution import GpuTime, Line
from exporter.meter.money import allocate
from exporter.meter.tokens import AMOUNT_FIELDS, ModelDelta
from exporter.records import IDLE, Buckets

PodKey = tuple[str, str]  # (namespace, pod)


@dataclass(frozen=True, slots=True)
class Plan:
    """The model lines a holder's line splits into this tick, and their token weights."""

    lines: tuple[Line, ...]
    weights: tuple[int | Fraction, ...]

    def split(self, amount: int) -> list[tuple[Line, int]] | zip[tuple[Line, int]]:
        if len(self.lines) == 1:
            return [(self.lines[0], amount)]
        return zip(self.lines, allocate(amount, self.weights), strict=True)


Kind = tuple[str, str]  # (hardware, capacity class)


def held_by_kind(times: tuple[GpuTime, ...]) -> dict[PodKey, dict[Kind, int]]:
    """GPU-nanoseconds each pod held this tick per hardware type and capacity class."""
    out: dict[PodKey, dict[Kind, int]] = defaultdict(dict)
    for t in times:
        if not t.line.owner.is_idle and t.held_ns:
            kinds = out[(t.line.owner.namespace, t.line.owner.pod)]
            kind = (t.line.hardware, t.line.capacity)
            kinds[kind] = kinds.get(kind, 0) + t.held_ns
    return out


def by_kind(d: ModelDelta, held: dict[Kind, int] | None, primary: Kind) -> list[tuple[Kind, ModelDelta]]:
    """A pod on GPUs of several kinds (H100 and A100, on-demand and spot) serves its tokens on all
    of them: each kind's line gets the pod's tokens by its share of the GPU time held, so each
    line's CPM divides its own money by its own tokens (not half the truth and half idle)."""
    if not held or len(held) < 2:
        return [(primary, d)]
    kinds = sorted(held)
    weights = [held[k] for k in kinds]
    columns = {f: _parts(getattr(d, f), weights) for f in AMOUNT_FIELDS}
    reasons = [_parts(n, weights) for _, n in d.requests_by_reason]
    out = []
    for i, kind in enumerate(kinds):
        amounts: dict[str, Any] = {
            f: columns[f][i] for f in AMOUNT_FIELDS
        }  # Any: replace() has other fields too
        part = replace(
            d,
            running=None if d.running is None else d.running * weights[i] / sum(weights),
            waiting=None if d.waiting is None else d.waiting * weights[i] / sum(weights),
            requests_by_reason=tuple(
                (why, r[i]) for (why, _), r in zip(d.requests_by_reason, reasons, strict=True)
            ),
            prompt_lengths=_scaled_buckets(d.prompt_lengths, weights[i], sum(weights)),
            generation_lengths=_scaled_buckets(d.generation_lengths, weights[i], sum(weights)),
            **amounts,
        )
        out.append((kind, part))
    return out


def _parts(x: float, weights: list[int]) -> list[float]:
    """``x`` split by ``weights``: whole numbers (tokens, requests) into whole parts by largest
    remainder, so the parts add up to exactly ``x``; other amounts proportionally."""
    if x == int(x) and x >= 0:
        return [float(n) for n in allocate(int(x), list(weights))]
    total = sum(weights)
    return [x * w / total for w in weights]


def _scaled_buckets(buckets: Buckets, part: int, total: int) -> Buckets:
    return tuple((le, n * part / total) for le, n in buckets)


_NOTHING_SERVED = ModelDelta(owner=IDLE)  # zeros; the owner is never read


def sum_deltas(deltas: list[ModelDelta]) -> ModelDelta:
    """The deltas one line got this tick, added up field by field (``AMOUNT_FIELDS``: one table,
    so a new quantity is summed here without a line of its own)."""
    if len(deltas) == 1:
        return deltas[0]
    if not deltas:
        return _NOTHING_SERVED
    amounts: dict[str, Any] = {
        f: sum(getattr(x, f) for x in deltas) for f in AMOUNT_FIELDS
    }  # Any: see by_kind
    return ModelDelta(owner=deltas[-1].owner, known=frozenset().union(*(x.known for x in deltas)), **amounts)
