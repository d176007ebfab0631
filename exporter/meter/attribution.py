"""One tick of GPU time and money → the pods that held it, or idle.

A GPU-second belongs to the pod that holds the GPU, busy or not: it reserved it. A GPU
no pod holds is idle, owned by the node. Each cost line is accrued exactly (carried
remainder) and then split among holders by largest remainder, so every nano-dollar
lands on exactly one owner.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import NamedTuple

from exporter.meter.counters import Reading, delta
from exporter.meter.money import Accruals, Exact, allocate, exact, nano, per_hour, times, weight
from exporter.meter.proration import month_fraction
from exporter.pricing.prices import BYTES_PER_GB, PricingConfig
from exporter.records import IDLE, GpuSample, Owner, Placement, PodUsage, TickInput

NO_HARDWARE = "none"
JOULES_PER_KWH = 3_600_000


class Line(NamedTuple):
    """A series identity: who, on what hardware and capacity class (a hot dict key)."""

    owner: Owner
    hardware: str
    capacity: str


@dataclass(frozen=True, slots=True)
class Charge:
    line: Line
    component: str
    nano: int


@dataclass(frozen=True, slots=True)
class GpuTime:
    line: Line
    held_ns: int
    busy_ns: int  # part of held_ns the GPU was busy (only where utilisation is known)
    measured_ns: int  # part of held_ns whose utilisation is known


@dataclass(frozen=True, slots=True)
class Attribution:
    charges: tuple[Charge, ...]
    times: tuple[GpuTime, ...]
    unpriced: tuple[str, ...]  # gpu ids without a price this tick (charged $0, counted)
    primary: Mapping[tuple[str, str], tuple[str, str]]  # pod → where its tokens and storage go
    bad_readings: tuple[str, ...] = ()  # gpu ids whose utilisation or power was NaN/out of range


def _holders(placements: Iterable[Placement]) -> dict[str, list[Placement]]:
    by_gpu: dict[str, list[Placement]] = defaultdict(list)
    for p in placements:
        by_gpu[p.gpu_id].append(p)
    return by_gpu


Segment = tuple[int, list[tuple[Owner, int]]]  # (ns, holders and weights); [(IDLE, 1)] if none


def segments(held: list[Placement], start_ns: int, end_ns: int) -> list[Segment]:
    """The tick cut where a holder came or went (a pod deleted or started mid-tick), each piece
    with the holders of that piece: a deleted pod pays up to its deletion, not after."""
    if all(p.since_ns is None and p.until_ns is None for p in held) or end_ns <= start_ns:
        return [(end_ns - start_ns, [(p.holder, p.weight) for p in held] or [(IDLE, 1)])]
    bounds = {min(max(t, start_ns), end_ns) for p in held for t in (p.since_ns, p.until_ns) if t is not None}
    cuts = sorted(bounds | {start_ns, end_ns})
    out: list[Segment] = []
    for a, b in itertools.pairwise(cuts):
        active = [
            (p.holder, p.weight)
            for p in held
            if (p.since_ns is None or p.since_ns <= a) and (p.until_ns is None or p.until_ns >= b)
        ]
        active = active or [(IDLE, 1)]
        if out and out[-1][1] == active:  # same holders on both sides of a cut: one piece
            out[-1] = (out[-1][0] + b - a, active)
        else:
            out.append((b - a, active))
    return out


def _gpu_exact(
    gpu: GpuSample, pricing: PricingConfig, dt_ns: int, joules: float | None
) -> dict[str, Exact] | None:
    price = pricing.gpu_price(gpu.hardware, gpu.capacity)
    if price is None:
        return None
    gpu_cost = per_hour(price.usd_per_hour, dt_ns)
    if gpu.price_share != 1:
        gpu_cost = times(gpu_cost, gpu.price_share)
    amounts = {"gpu": gpu_cost, "overhead": times(gpu_cost, Fraction(pricing.overhead.percent) / 100)}
    if gpu.capacity == "owned":
        amounts["energy"] = exact(_energy(gpu, pricing, dt_ns, joules))
    return amounts


def _energy(gpu: GpuSample, pricing: PricingConfig, dt_ns: int, joules: float | None) -> Fraction:
    """Energy bought for this unit over the tick: its share of the physical GPU's metered
    joules when there are any, else of its power (measured, or the configured nameplate) ×
    time; × PUE × $/kWh. The share is applied here and nowhere else."""
    if joules is None:
        owned = pricing.owned.get(gpu.hardware)
        watts = gpu.power_watts if gpu.power_watts is not None else (owned.watts if owned else None)
        if watts is None or watts <= 0:
            return Fraction(0)
        used = Fraction(watts) * dt_ns / 10**9 * gpu.price_share
    else:
        used = Fraction(joules) * gpu.price_share
    kwh = used * Fraction(pricing.energy.pue) / JOULES_PER_KWH
    return kwh * Fraction(*nano(pricing.energy.usd_per_kwh))


def _lines(owners: list[tuple[Owner, int]], gpu: GpuSample) -> list[Line]:
    return [Line(o, gpu.hardware, gpu.capacity) for o, _ in owners]


def _by_length(amount: int, pieces: list[Segment]) -> list[int]:
    return [amount] if len(pieces) == 1 else allocate(amount, [length for length, _ in pieces])


def _split(line_of: list[Line], amount: int, weights: list[int], component: str) -> list[Charge]:
    shares = [amount] if len(weights) == 1 else allocate(amount, weights)
    return [Charge(line, component, s) for line, s in zip(line_of, shares, strict=True) if s]


class GpuAttributor:
    """Owns the carried remainders of every GPU, node and pod cost line."""

    def __init__(self) -> None:
        self.accruals = Accruals()
        self._net_readings: dict[tuple[str, str], Reading] = {}
        self._energy_readings: dict[str, Reading] = {}

    def attribute(self, inp: TickInput, pricing: PricingConfig) -> Attribution:
        dt = inp.dt_ns
        holders = _holders(inp.placements)
        charges: list[Charge] = []
        times: list[GpuTime] = []
        unpriced: list[str] = []
        node_overhead = self._node_overhead_shares(inp, pricing)
        gpus = [_usable(g) for g in inp.gpus]
        bad = tuple(g.gpu_id for g, usable in zip(inp.gpus, gpus, strict=True) if usable is not g)
        joules = self._device_joules(gpus)
        for gpu, overhead_share in zip(gpus, node_overhead, strict=True):
            pieces = segments(holders.get(gpu.gpu_id, []), inp.start_ns, inp.end_ns)
            exact = _gpu_exact(gpu, pricing, dt, joules.get(gpu.device or gpu.gpu_id))
            if exact is None:
                unpriced.append(gpu.gpu_id)
                exact = {}
            amounts = {c: self.accruals.accrue((gpu.gpu_id, c), a) for c, a in exact.items()}
            amounts["overhead"] = amounts.get("overhead", 0) + overhead_share
            for component, whole in amounts.items():
                for (_, owners), part in zip(pieces, _by_length(whole, pieces), strict=True):
                    charges += _split(_lines(owners, gpu), part, [w for _, w in owners], component)
            for length, owners in pieces:
                times += _gpu_times(gpu, _lines(owners, gpu), [w for _, w in owners], length)
        if not inp.gpus:
            charges += self._overhead_without_gpus(inp, pricing)
        primary = primary_hardware(inp)
        charges += self._pod_charges(inp, pricing, primary)
        charges += self._support(charges, pricing)
        return Attribution(tuple(charges), tuple(times), tuple(unpriced), primary, bad)

    def _device_joules(self, gpus: list[GpuSample]) -> dict[str, float]:
        """Joules each physical GPU used since the last tick, from its cumulative counter: one
        counter and one baseline per GPU, whatever its MIG layout, so a layout change or a
        GPU leaving MIG mode bills no energy twice. Absent: no counter, or its first reading. A
        driver reload restarts it from zero, like any counter; baselines of GPUs gone are dropped."""
        totals: dict[str, float] = {}
        for g in gpus:
            if g.energy_joules_total is not None:
                totals.setdefault(g.device or g.gpu_id, g.energy_joules_total)
        out: dict[str, float] = {}
        for device, total in totals.items():
            last = self._energy_readings.get(device)
            self._energy_readings[device] = Reading(total)
            if last is not None:
                out[device] = delta(last, Reading(total)).amount
        for gone in self._energy_readings.keys() - totals.keys():
            del self._energy_readings[gone]
        return out

    def _node_overhead_shares(self, inp: TickInput, pricing: PricingConfig) -> list[int]:
        """The node's $/node-hour overhead, split over its GPUs by price share (exactly)."""
        if not inp.gpus:
            return []
        exact = per_hour(pricing.overhead.usd_per_node_hour, inp.dt_ns)
        nano = self.accruals.accrue((inp.node, "node_overhead"), exact)
        return allocate(nano, [g.price_share for g in inp.gpus])

    def _overhead_without_gpus(self, inp: TickInput, pricing: PricingConfig) -> list[Charge]:
        exact = per_hour(pricing.overhead.usd_per_node_hour, inp.dt_ns)
        nano = self.accruals.accrue((inp.node, "node_overhead"), exact)
        return [Charge(Line(IDLE, NO_HARDWARE, NO_HARDWARE), "overhead", nano)] if nano else []

    def _pod_charges(
        self, inp: TickInput, pricing: PricingConfig, hardware: Mapping[tuple[str, str], tuple[str, str]]
    ) -> list[Charge]:
        charges: list[Charge] = []
        # Per GiB of the tick: the price and the month fraction are the same for every pod.
        storage_per_gib = times(nano(pricing.storage_usd_per_gb_month), month_fraction(
            inp.start_ns, inp.end_ns, pricing.month) / BYTES_PER_GB)  # fmt: skip
        # Per byte sent: the price of the share that leaves the cloud / crosses a zone.
        egress_per_byte = times(nano(pricing.egress_usd_per_gb), inp.egress_share / BYTES_PER_GB)
        cross_zone_per_byte = times(nano(pricing.cross_zone_usd_per_gb), inp.cross_zone_share / BYTES_PER_GB)
        for pod in inp.pods:
            hw, cap = hardware.get((pod.holder.namespace, pod.holder.pod), (NO_HARDWARE, NO_HARDWARE))
            line = Line(pod.holder, hw, cap)
            sent = self._sent(pod)
            amounts = {
                "storage": _scaled(storage_per_gib, pod.storage_bytes),
                "egress": _scaled(egress_per_byte, sent),
                "cross_zone": _scaled(cross_zone_per_byte, sent),
            }
            for component, amount in amounts.items():
                whole = self.accruals.accrue((pod.holder, component), amount)
                if whole:
                    charges.append(Charge(line, component, whole))
        present = {(p.holder.namespace, p.holder.pod) for p in inp.pods}
        for gone in self._net_readings.keys() - present:  # deleted pods: their baselines go too
            del self._net_readings[gone]
        return charges

    def _sent(self, pod: PodUsage) -> float:
        """Bytes a pod sent since the last tick, from a cumulative counter (resets handled).
        An unusable reading (NaN, negative) counts nothing and keeps the last good baseline."""
        total = pod.transmit_bytes_total
        if total is None or not math.isfinite(total) or total < 0:
            return 0.0
        key = (pod.holder.namespace, pod.holder.pod)
        cur = Reading(total)
        moved = delta(self._net_readings.get(key), cur).amount
        self._net_readings[key] = cur
        return moved

    def _support(self, charges: list[Charge], pricing: PricingConfig) -> list[Charge]:
        """Support uplift: a percentage on everything else each line was charged."""
        rate = Fraction(pricing.support_uplift_percent) / 100
        if not rate:
            return []
        base: dict[Line, int] = defaultdict(int)
        for c in charges:
            base[c.line] += c.nano
        out = []
        for line, whole in base.items():
            support = self.accruals.accrue((line, "support"), times((whole, 1), rate))
            if support:
                out.append(Charge(line, "support", support))
        return out


def _scaled(per_unit: Exact, units: float | Fraction) -> Exact:
    """``units`` (bytes; a shared claim's exact part) times an exact price per unit."""
    if not units:
        return 0, 1
    n = units if isinstance(units, Fraction) else weight(units)
    if isinstance(n, int):
        return per_unit[0] * n, per_unit[1]
    return per_unit[0] * n.numerator, per_unit[1] * n.denominator


def _usable(gpu: GpuSample) -> GpuSample:
    """The GPU with each unusable reading dropped on its own (a bad utilisation must not cost a
    good energy counter its baseline): still billed as held; busy time unknown, never zero."""
    u, w, e = gpu.utilization, gpu.power_watts, gpu.energy_joules_total
    bad_u = u is not None and not (math.isfinite(u) and 0.0 <= u <= 1.0)
    bad_w = w is not None and not (math.isfinite(w) and w >= 0)
    bad_e = e is not None and not (math.isfinite(e) and e >= 0)
    if not (bad_u or bad_w or bad_e):
        return gpu
    return replace(
        gpu,
        utilization=None if bad_u else u,
        power_watts=None if bad_w else w,
        energy_joules_total=None if bad_e else e,
    )


def _gpu_times(gpu: GpuSample, lines: list[Line], weights: list[int], dt: int) -> list[GpuTime]:
    held = [dt] if len(weights) == 1 else allocate(dt, weights)
    if gpu.utilization is None:
        return [GpuTime(line, h, 0, 0) for line, h in zip(lines, held, strict=True)]
    busy_total = int(gpu.utilization * dt)  # a measurement, not money
    busy = [busy_total] if len(weights) == 1 else allocate(busy_total, weights)
    return [GpuTime(line, h, b, h) for line, h, b in zip(lines, held, busy, strict=True)]


def primary_hardware(inp: TickInput) -> dict[tuple[str, str], tuple[str, str]]:
    """Each pod's main (hardware, capacity) by GPU share held: where its tokens and storage
    are filed, so a line's CPM sees all of the pod's money (ties: the larger name)."""
    gpus = {g.gpu_id: g for g in inp.gpus}
    shares: dict[tuple[str, str], dict[tuple[str, str], int]] = defaultdict(lambda: defaultdict(int))
    for p in inp.placements:
        gpu = gpus.get(p.gpu_id)
        if gpu is not None:
            shares[(p.holder.namespace, p.holder.pod)][(gpu.hardware, gpu.capacity)] += p.weight
    return {pod: max(w.items(), key=lambda kv: (kv[1], kv[0]))[0] for pod, w in shares.items()}
