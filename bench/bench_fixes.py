"""Candidate fixes for the hot spots, measured against the current code (nothing is edited).

Run from the repo root: ``python bench/bench_fixes.py``.

Each candidate is a drop-in replacement of one exporter function, installed by
monkeypatching for the measurement only. The script checks that the patched code
produces exactly the same ledger (every line's totals and the bill; the float gauges to
within the printed relative error) and byte-identical /metrics as the current code on the bench_tick node, then prints CPU ms per tick for
the baseline, each fix alone, and all fixes together, plus render() at ~10k series. Variants run
round-robin (interleaved batches), so noise from other processes hits them alike.
The candidates (see bench/README.md for the proposed edits):

- allocate:   money.allocate in integer arithmetic (no Fraction per share);
- models_of:  ledger._models_of / _by_model build Line(...) directly, no dataclasses.replace,
              and return the line as is when the model does not change;
- pod_prices: attribution._pod_charges / _transfer hoist the Decimal→Fraction price
              conversions out of the per-pod loop and skip zero amounts (absent counters);
- gauges:     windows.Window.gauges in one pass over the records instead of ten sum()s;
- to_usd:     money.to_usd as int / int (correctly rounded: the same float);
- labels:     render._labels with the escaped label values memoised per render.
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_exposition
import bench_tick

from exporter.exposition import families, render
from exporter.exposition.status import ExportView
from exporter.meter import attribution, ledger, money, windows
from exporter.meter.attribution import Charge, Line
from exporter.meter.counters import Reading, delta
from exporter.meter.proration import month_fraction
from exporter.model import Owner, PodUsage, TickInput
from exporter.pricing import BYTES_PER_GB, PricingConfig

# -- candidates -------------------------------------------------------------------------------


def allocate_int(amount: int, weights: Sequence[int | Fraction]) -> list[int]:
    """money.allocate, same contract and same result, in integers."""
    if amount < 0:
        raise ValueError(f"cannot allocate a negative amount {amount}")
    if not weights:
        raise ValueError("allocate needs at least one weight")
    if any(w < 0 for w in weights):
        raise ValueError(f"negative weight in {list(weights)}")
    if len(weights) == 1:
        return [amount]
    den = 1
    for w in weights:
        if isinstance(w, Fraction):
            den = math.lcm(den, w.denominator)
    ints = [w.numerator * (den // w.denominator) if isinstance(w, Fraction) else w * den for w in weights]
    total = sum(ints)
    if total == 0:
        ints, total = [1] * len(ints), len(ints)
    shares, rems = [], []
    for w in ints:
        q, r = divmod(amount * w, total)
        shares.append(q)
        rems.append(r)
    left = amount - sum(shares)
    if left:
        for i in sorted(range(len(rems)), key=lambda i: (-rems[i], i))[:left]:
            shares[i] += 1
    return shares


def models_of_direct(
    self: ledger.Meter, line: Line, amount: int, served: Mapping[tuple[str, str], Mapping[Owner, float]]
) -> list[tuple[Line, int]]:
    if line.owner.is_idle:
        return [(line, amount)]
    o = line.owner
    pod = (o.namespace, o.pod)
    models = {k: w for k, w in served.get(pod, {}).items() if w > 0}
    if not models:
        model = o.model or self._last_model.get(pod, ledger.UNKNOWN_MODEL)
        if model != o.model:
            line = Line(Owner(o.namespace, o.pod, o.team, model, o.workload), line.hardware, line.capacity)
        return [(self._admit(line), amount)]
    owners = sorted(models, key=lambda k: k.model)
    shares = ledger.allocate(amount, [Fraction(models[k]) for k in owners])
    return [
        (self._admit(Line(k, line.hardware, line.capacity)), s) for k, s in zip(owners, shares, strict=False)
    ]


def pod_charges_hoisted(
    self: attribution.GpuAttributor,
    inp: TickInput,
    pricing: PricingConfig,
    hardware: Mapping[Owner, tuple[str, str]],
) -> list[Charge]:
    charges: list[Charge] = []
    months = month_fraction(inp.start_ns, inp.end_ns, pricing.month)
    per_byte_storage = money.usd(pricing.storage_usd_per_gb_month) * months / BYTES_PER_GB
    per_byte = {
        "egress": money.usd(pricing.egress_usd_per_gb) / BYTES_PER_GB,
        "cross_zone": money.usd(pricing.cross_zone_usd_per_gb) / BYTES_PER_GB,
    }
    accrue = self.accruals.accrue
    none = (attribution.NO_HARDWARE, attribution.NO_HARDWARE)
    for pod in inp.pods:
        hw, cap = hardware.get(pod.holder, none)
        line = Line(pod.holder, hw, cap)
        exact = {"storage": Fraction(pod.storage_bytes) * per_byte_storage}
        for kind, total in (("egress", pod.egress_bytes_total), ("cross_zone", pod.cross_zone_bytes_total)):
            exact[kind] = _moved(self, pod, kind, total) * per_byte[kind]
        for component, amount in exact.items():
            if not amount:  # carry < 1 always, so accruing 0 charges 0: skip the Fraction work
                continue
            nano = accrue((pod.holder, component), amount)
            if nano:
                charges.append(Charge(line, component, nano))
    return charges


def _moved(self: attribution.GpuAttributor, pod: PodUsage, kind: str, total: float | None) -> Fraction:
    if total is None:
        return Fraction(0)
    key = (pod.holder.namespace, pod.holder.pod, kind)
    cur = Reading(total)
    moved = delta(self._net_readings.get(key), cur).amount
    self._net_readings[key] = cur
    return Fraction(moved)


def gauges_one_pass(self: windows.Window) -> windows.LiveGauges:
    span_ns = cost = cost_in = cost_out = busy = measured = 0
    tok_in = tok_out = req = itl_s = itl_n = running = 0
    for x in self._records:
        span_ns += x.dt_ns
        cost += x.cost
        cost_in += x.cost_input
        cost_out += x.cost_output
        tok_in += x.input_tokens
        tok_out += x.output_tokens
        req += x.requests
        itl_s += x.itl_seconds
        itl_n += x.itl_count
        running += x.running_seconds
        busy += x.busy_ns
        measured += x.measured_ns
    if span_ns <= 0:
        return windows.LiveGauges()
    span_s = span_ns / windows.NS_PER_S
    if itl_s > 0 and itl_n > 0:
        tps, method = itl_n / itl_s, "inter_token_latency"
    elif tok_out > 0 and running / span_s > 0:
        tps, method = tok_out / span_s / (running / span_s), "output_rate_per_running_request"
    else:
        tps, method = None, ""
    pm, ratio, nano = windows._per_million, windows._ratio, windows.NANO_PER_USD
    return windows.LiveGauges(
        usd_per_million_input=pm(cost_in, tok_in),
        usd_per_million_output=pm(cost_out, tok_out),
        usd_per_million_total=pm(cost, tok_in + tok_out),
        usd_per_request=ratio(cost / nano, req),
        tokens_per_second_per_user=tps,
        interactivity_method=method,
        burn_usd_per_hour=cost / nano / span_s * 3600,
        utilization=ratio(busy, measured),
        window_seconds=span_s,
    )


def to_usd_int(nano: int | Fraction) -> float:
    return nano / money.NANO_PER_USD if isinstance(nano, int) else float(Fraction(nano) / money.NANO_PER_USD)


_ESC: dict[str, str] = {}


def labels_memo(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    if not names:
        return ""
    esc = _ESC
    parts = []
    for n, v in zip(names, values, strict=False):
        e = esc.get(v)
        if e is None:
            e = esc[v] = render.escape_label(v)
        parts.append(f'{n}="{e}"')
    return "{" + ",".join(parts) + "}"


def render_memo(view: ExportView) -> bytes:
    _ESC.clear()  # per render: bounded by this render's label values
    try:
        return ORIGINAL_RENDER(view)
    finally:
        _ESC.clear()


ORIGINAL_RENDER = render.render

# -- patching -------------------------------------------------------------------------------

PATCHES: dict[str, list[tuple[Any, str, Any]]] = {
    "allocate": [(money, "allocate", allocate_int), (ledger, "allocate", allocate_int),
                 (attribution, "allocate", allocate_int)],
    "models_of": [(ledger.Meter, "_models_of", models_of_direct)],
    "pod_prices": [(attribution.GpuAttributor, "_pod_charges", pod_charges_hoisted)],
    "gauges": [(windows.Window, "gauges", gauges_one_pass)],
    "to_usd": [(money, "to_usd", to_usd_int), (families, "to_usd", to_usd_int)],
    "labels": [(render, "_labels", labels_memo), (render, "render", render_memo)],
}  # fmt: skip
METER_FIXES = ("allocate", "models_of", "pod_prices", "gauges")
RENDER_FIXES = ("to_usd", "labels")


@contextmanager
def patched(names: Sequence[str]) -> Iterator[None]:
    saved = []
    for name in names:
        for obj, attr, new in PATCHES[name]:
            saved.append((obj, attr, getattr(obj, attr)))
            setattr(obj, attr, new)
    try:
        yield
    finally:
        for obj, attr, old in reversed(saved):
            setattr(obj, attr, old)


# -- measuring ------------------------------------------------------------------------------


def fingerprint(meter: ledger.Meter) -> tuple[Any, ...]:
    s = meter._snapshot
    return (s.bill_nano, s.coverage, tuple((v.line, v.totals, v.split) for v in s.lines))


def gauges_of(meter: ledger.Meter) -> list[windows.LiveGauges]:
    return [v.gauges for v in meter._snapshot.lines]


def compare(a: ledger.Meter, b: ledger.Meter) -> str:
    """'identical', or how far the float gauges drift (the money ledger must be identical)."""
    if fingerprint(a) != fingerprint(b):
        return "ledger DIFFERENT"
    worst = 0.0
    for ga, gb in zip(gauges_of(a), gauges_of(b), strict=True):
        for x, y in zip(ga.__slots__, gb.__slots__, strict=True):
            u, v = getattr(ga, x), getattr(gb, y)
            if isinstance(u, float) and isinstance(v, float):
                worst = max(worst, abs(u - v) / max(abs(u), 1e-300))
            elif u != v:
                return "gauges DIFFERENT"
    return "ledger identical" if worst == 0 else f"ledger identical, gauges within {worst:.0e} relative"


def run_meters(variants: Sequence[tuple[str, Sequence[str]]], ticks: int, rounds: int) -> dict[str, Any]:
    """Interleaved (round-robin) so that machine noise hits every variant alike; best batch kept."""
    prices = bench_tick.pricing()
    state: dict[str, Any] = {}
    for label, fixes in variants:
        node, meter = bench_tick.Node(), ledger.Meter("gpu-node-1")
        with patched(fixes):
            for _ in range(bench_tick.WARMUP):
                meter.tick(node.next(), prices, bench_tick.WINDOW_S)
        state[label] = [node, meter, float("inf")]
    for _ in range(rounds):
        for label, fixes in variants:
            node, meter, best = state[label]
            batch = [node.next() for _ in range(ticks)]
            gc.collect()
            with patched(fixes):
                c0 = time.process_time()
                for inp in batch:
                    meter.tick(inp, prices, bench_tick.WINDOW_S)
                state[label][2] = min(best, (time.process_time() - c0) / ticks)
    out = {}
    for label, (node, meter, best) in state.items():
        metrics = render.render(ExportView(meter._snapshot, node.status(prices, 0)))
        out[label] = (best, meter, metrics)
    return out


def run_renders(
    view: ExportView, variants: Sequence[tuple[str, Sequence[str]]], rounds: int
) -> dict[str, Any]:
    best: dict[str, float] = dict.fromkeys((label for label, _ in variants), float("inf"))
    outs: dict[str, bytes] = {}
    for _ in range(rounds):
        for label, fixes in variants:
            with patched(fixes):
                c0 = time.process_time()
                outs[label] = render.render(view)
                best[label] = min(best[label], time.process_time() - c0)
    return {label: (best[label], outs[label]) for label, _ in variants}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=50, help="ticks per timed batch")
    ap.add_argument("--rounds", type=int, default=6, help="interleaved rounds (best batch kept)")
    args = ap.parse_args()
    ms = 1000.0
    variants: list[tuple[str, Sequence[str]]] = [("baseline", ())]
    variants += [(f, (f,)) for f in METER_FIXES]
    variants.append(("all meter fixes", METER_FIXES))
    print(
        f"meter.tick on the bench_tick node: best of {args.rounds} interleaved x {args.ticks} ticks, CPU ms/tick"
    )
    res = run_meters(variants, args.ticks, args.rounds)
    base, meter0, _ = res["baseline"]
    for label, _ in variants:
        t, meter, _ = res[label]
        print(
            f"  {label:<28}: {t * ms:7.2f}  ({(1 - t / base) * 100:+5.1f} % CPU saved; {compare(meter0, meter)})"
        )

    n = bench_exposition.lines_for(bench_exposition.TARGET_SERIES)
    view = bench_exposition.build_view(n)
    rvariants: list[tuple[str, Sequence[str]]] = [("baseline", ())]
    rvariants += [*((f, (f,)) for f in RENDER_FIXES), ("all render fixes", RENDER_FIXES)]
    print(
        f"render() at {bench_exposition.series_of(render.render(view))} series: best of 20 interleaved, CPU ms"
    )
    rres = run_renders(view, rvariants, 20)
    rbase, rout = rres["baseline"]
    for label, _ in rvariants:
        t, out = rres[label]
        same = "identical" if out == rout else "DIFFERENT BYTES"
        print(f"  {label:<28}: {t * ms:7.2f}  ({(1 - t / rbase) * 100:+5.1f} % CPU saved; /metrics {same})")


if __name__ == "__main__":
    main()
