"""Splitting one holder's tick across the model lines it served: its money by token share (``Plan``, made
by the meter's ``ModelSplit``, which owns what the split remembers across ticks), a pod's tokens across the
GPU kinds it held (``by_kind``), the deltas that land on one line summed (``sum_deltas``), and the
cardinality cap on the lines (``ModelSplit._admit``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Container, Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

from exporter.meter.attribution import NO_HARDWARE, Attribution, GpuTime, Line
from exporter.meter.deltas import AMOUNT_FIELDS, ModelDelta
from exporter.meter.money import allocate, weight
from exporter.meter.windows import Window
from exporter.records import IDLE, LEVELS, OVERFLOW, Buckets, Owner

PodKey = tuple[str, str]  # (namespace, pod)
UNKNOWN_MODEL = "__unknown__"
MAX_TRACKED_FOLDED = 100_000  # distinct folded owners we count (the set must stay bounded too)


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
        for f in LEVELS:  # a gauge's requests by the same share
            level = getattr(d, f)
            amounts[f] = None if level is None else level * weights[i] / sum(weights)
        part = replace(
            d,
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
    so a new amount is summed here without a line of its own). LEVELS (running, waiting) are
    left None on a sum: booking integrates them from the deltas themselves."""
    if len(deltas) == 1:
        return deltas[0]
    if not deltas:
        return _NOTHING_SERVED
    amounts: dict[str, Any] = {
        f: sum(getattr(x, f) for x in deltas) for f in AMOUNT_FIELDS
    }  # Any: see by_kind
    return ModelDelta(owner=deltas[-1].owner, known=frozenset().union(*(x.known for x in deltas)), **amounts)


@dataclass(slots=True)
class TickLine:
    """One line's tick as the split leaves it for booking: its money by component, GPU time, deltas."""

    charges: dict[str, int] = field(default_factory=dict)  # plain dicts: Counter is slow here
    time: list[int] = field(default_factory=lambda: [0, 0, 0])  # held, busy, measured
    deltas: list[ModelDelta] = field(default_factory=list)


class ModelSplit:
    """Splits each holder's tick across the model lines it served, by token share, and caps how
    many owners get lines of their own (the rest fold into ``__overflow__``).

    Owns what that needs across ticks: the model each pod last served, the model lines each pod
    served tokens on (a quiet tick's split), and the admitted and folded owners."""

    def __init__(self, max_owners: int) -> None:
        self.max_owners = max_owners
        self.last_model: dict[PodKey, str] = {}
        self.served_lines: dict[PodKey, set[Line]] = {}  # model lines of a pod that served tokens
        self.admitted: set[Owner] = set()
        self.folded: set[Owner] = set()  # distinct owners folded into __overflow__
        self.overflowed = 0

    def by_model(
        self, att: Attribution, deltas: tuple[ModelDelta, ...], windows: Mapping[Line, Window]
    ) -> dict[Line, TickLine]:
        """The tick's lines: each holder's money and GPU time split across the models it served,
        its tokens on the lines of the GPU kinds it held. ``windows``: the lines' live windows,
        whose token shares split a quiet tick of a pod serving several models."""
        served: dict[PodKey, dict[Owner, float]] = defaultdict(lambda: defaultdict(float))
        out: dict[Line, TickLine] = defaultdict(TickLine)
        spread = held_by_kind(att.times)
        for d in deltas:
            pod = (d.owner.namespace, d.owner.pod)
            served[pod][d.owner] += d.tokens
            if d.tokens:
                self.last_model[pod] = d.owner.model
            primary = att.primary.get(pod, (NO_HARDWARE, NO_HARDWARE))
            for (hw, cap), share in by_kind(d, spread.get(pod), primary):
                line = self._admit(Line(d.owner, hw, cap))
                out[line].deltas.append(share)
                if share.tokens:
                    self.served_lines.setdefault(pod, set()).add(line)
        for pod, models in served.items():  # a single served name is known before any traffic
            if pod not in self.last_model and len(models) == 1:
                self.last_model[pod] = next(iter(models)).model
        plans: dict[Line, Plan] = {}
        for c in att.charges:
            plan = plans.get(c.line) or plans.setdefault(c.line, self._model_plan(c.line, served, windows))
            for line, part in plan.split(c.nano):
                charges = out[line].charges
                charges[c.component] = charges.get(c.component, 0) + part
        for t in att.times:
            plan = plans.get(t.line) or plans.setdefault(t.line, self._model_plan(t.line, served, windows))
            for i, amount in enumerate((t.held_ns, t.busy_ns, t.measured_ns)):
                for line, part in plan.split(amount):
                    out[line].time[i] += part
        return out

    def forget(self, live: set[Owner], lines: Container[Line]) -> None:
        """Lines expired: owners with no line left leave room under the cap, and pods with none
        are forgotten; ``lines`` are those still kept."""
        self.admitted &= live
        pods = {(o.namespace, o.pod) for o in live}
        self.last_model = {p: m for p, m in self.last_model.items() if p in pods}
        self.served_lines = {
            p: {x for x in served if x in lines} for p, served in self.served_lines.items() if p in pods
        }

    def _model_plan(
        self, line: Line, served: Mapping[PodKey, Mapping[Owner, float]], windows: Mapping[Line, Window]
    ) -> Plan:
        """Where a holder's money goes this tick: its models by token share, else one model."""
        if line.owner.is_idle:
            return Plan((line,), ())
        pod = (line.owner.namespace, line.owner.pod)
        models = {o: w for o, w in served.get(pod, {}).items() if w > 0}
        if not models and (quiet := self._window_shares(pod, line, windows)) is not None:
            return quiet
        if not models:
            # The name the server last served under wins over the declared one, so quiet ticks
            # land on the same series as busy ones even if --served-model-name differs.
            model = self.last_model.get(pod) or line.owner.model or UNKNOWN_MODEL
            owner = line.owner if model == line.owner.model else line.owner._replace(model=model)
            return Plan((self._admit(Line(owner, line.hardware, line.capacity)),), ())
        owners = sorted(models, key=lambda o: o.model)
        lines = tuple(self._admit(Line(o, line.hardware, line.capacity)) for o in owners)
        return Plan(lines, tuple(weight(models[o]) for o in owners))

    def _window_shares(self, pod: PodKey, line: Line, windows: Mapping[Line, Window]) -> Plan | None:
        """A quiet tick of a pod serving several models (LoRA adapters): its money goes to them
        by their token shares over the window, not all to one of them."""
        served = self.served_lines.get(pod)
        if not served or len(served) < 2:
            return None
        found = []
        for model_line in sorted(served, key=lambda x: x.owner.model):
            window = windows.get(model_line)
            if (
                window is not None
                and model_line.hardware == line.hardware
                and model_line.capacity == line.capacity
            ):
                sums = window.sums()
                if (tokens := sums.input_tokens + sums.output_tokens) > 0:
                    found.append((model_line, weight(tokens)))
        if not found:
            return None
        return Plan(tuple(x for x, _ in found), tuple(w for _, w in found))

    def _admit(self, line: Line) -> Line:
        """Bound label cardinality: owners past the cap fold into one overflow owner."""
        if line.owner in self.admitted or line.owner.is_idle:
            return line
        if len(self.admitted) < self.max_owners:
            self.admitted.add(line.owner)
            return line
        if len(self.folded) < MAX_TRACKED_FOLDED and line.owner not in self.folded:
            self.folded.add(line.owner)
            self.overflowed += 1
        return Line(OVERFLOW, line.hardware, line.capacity)
