"""The meter's state as plain JSON values, and back: what an exporter restart needs to go on exactly.

Pure (no I/O): ``exporter.statefile`` reads and writes the file. Saved: every cumulative
counter (per-line money, tokens, GPU time, the bill, resets, rejections), every exact carry,
the counter baselines (targets' last readings, energy, bytes sent) and what splits quiet ticks.
Not saved: the live windows (the gauges refill within one window) and the cardinality cap's
memory of folded owners beyond the count.
"""

from __future__ import annotations

from collections import Counter, deque
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from exporter.meter.attribution import GpuAttributor, Line
from exporter.meter.counters import Reading
from exporter.meter.settlement import Batch, Credit
from exporter.meter.tenants import TenantBook, TenantTotals
from exporter.meter.tokens import TokenMeter, _Series, _Target
from exporter.meter.windows import Window
from exporter.records import OVERFLOW, TOKEN_AMOUNTS, Owner

if TYPE_CHECKING:  # the ledger imports this module
    from exporter.meter.ledger import Meter
    from exporter.meter.snapshot import LineTotals

Json = Any  # a JSON value (dict, list, str, int, float, bool, None)


def owner_to(o: Owner) -> list[str]:
    return [o.namespace, o.pod, o.team, o.model, o.workload]


def owner_from(v: Json) -> Owner:
    return Owner(*(str(x) for x in v))


def line_to(line: Line) -> list[Json]:
    return [owner_to(line.owner), line.hardware, line.capacity]


def line_from(v: Json) -> Line:
    return Line(owner_from(v[0]), str(v[1]), str(v[2]))


def key_to(key: object) -> Json:
    """A carry key: (gpu or node, component), (Owner, component) or (Line, "support")."""
    if not isinstance(key, tuple) or len(key) != 2:
        raise ValueError(f"unexpected carry key {key!r}")
    head, component = key
    if isinstance(head, Line):
        return {"line": line_to(head), "c": component}
    if isinstance(head, Owner):
        return {"owner": owner_to(head), "c": component}
    return {"id": str(head), "c": component}


def key_from(v: Json) -> object:
    if "line" in v:
        return (line_from(v["line"]), v["c"])
    if "owner" in v:
        return (owner_from(v["owner"]), v["c"])
    return (v["id"], v["c"])


def number_to(x: int | Fraction) -> Json:
    return x if isinstance(x, int) else [x.numerator, x.denominator]


def number_from(v: Json) -> int | Fraction:
    return int(v) if isinstance(v, int) else Fraction(int(v[0]), int(v[1]))


def reading_to(r: Reading) -> Json:
    return [r.value, r.created]


def reading_from(v: Json) -> Reading:
    return Reading(float(v[0]), None if v[1] is None else float(v[1]))


def buckets_to(b: tuple[tuple[float, float], ...]) -> Json:
    return [[_float_to(le), n] for le, n in b]


def buckets_from(v: Json) -> tuple[tuple[float, float], ...]:
    return tuple((_float_from(le), float(n)) for le, n in v)


def counter_to(c: Counter[str]) -> Json:
    return dict(c)


def _float_to(x: float) -> Json:
    return "+Inf" if x == float("inf") else x


def _float_from(v: Json) -> float:
    return float("inf") if v == "+Inf" else float(v)


# ---- the parts of the meter (this module reads their internals: one place knows the format) ----
def attributor_to(a: GpuAttributor) -> Json:
    return {
        "carries": [[key_to(k), num, den] for k, (num, den) in a.accruals.items()],
        "dropped": a.accruals.dropped,
        "energy": {device: reading_to(r) for device, r in a._energy_readings.items()},
        "net": [[ns, pod, reading_to(r)] for (ns, pod), r in a._net_readings.items()],
    }


def attributor_restore(a: GpuAttributor, v: Json) -> None:
    a.accruals.restore([(key_from(k), (int(n), int(d))) for k, n, d in v["carries"]], int(v["dropped"]))
    a._energy_readings = {str(k): reading_from(r) for k, r in v["energy"].items()}
    a._net_readings = {(str(ns), str(pod)): reading_from(r) for ns, pod, r in v["net"]}


def tokens_to(t: TokenMeter) -> Json:
    return {
        name: {
            "read_s": target.read_s,
            "started_at": target.started_at,
            "missed": target.missed,
            "series": [[model, instance, _series_to(s)] for (model, instance), s in target.series.items()],
        }
        for name, target in t._targets.items()
    }


def tokens_restore(t: TokenMeter, v: Json) -> None:
    t._targets = {
        str(name): _Target(
            {(str(m), str(i)): _series_from(s) for m, i, s in target["series"]},
            float(target["read_s"]),
            None if target["started_at"] is None else float(target["started_at"]),
            bool(target["missed"]),
        )
        for name, target in v.items()
    }


def _series_to(s: _Series) -> Json:
    return {
        "values": s.values,
        "created": None if s.created is None else list(s.created),
        "lengths": {name: buckets_to(b) for name, b in s.lengths.items()},
        "seen_s": s.seen_s,
        "present": sorted(s.present),
        "sources": s.sources,
        "held": s.held,
    }


def _series_from(v: Json) -> _Series:
    created = v["created"]
    return _Series(
        {str(k): float(x) for k, x in v["values"].items()},
        None if created is None else (str(created[0]), float(created[1])),
        {str(k): buckets_from(b) for k, b in v["lengths"].items()},
        float(v["seen_s"]),
        frozenset(v["present"]),
        {str(k): str(x) for k, x in v["sources"].items()},
        None if v["held"] is None else {str(k): float(x) for k, x in v["held"].items()},
    )


def totals_to(t: LineTotals) -> Json:
    return {
        "cost": t.cost, "cost_input": t.cost_input, "cost_output": t.cost_output,
        **{f: getattr(t, f) for f in TOKEN_AMOUNTS}, "requests_by_reason": t.requests_by_reason,
        "held_ns": t.held_ns, "busy_ns": t.busy_ns, "measured_ns": t.measured_ns,
        "idle_cost": t.idle_cost, "last_ns": t.last_ns, "known": sorted(t.known),
    }  # fmt: skip


def totals_from(v: Json) -> LineTotals:
    from exporter.meter.snapshot import LineTotals

    return LineTotals(
        cost={str(k): int(n) for k, n in v["cost"].items()},
        cost_input=int(v["cost_input"]),
        cost_output=int(v["cost_output"]),
        **{f: float(v[f]) for f in TOKEN_AMOUNTS},
        requests_by_reason={str(k): float(n) for k, n in v["requests_by_reason"].items()},
        held_ns=int(v["held_ns"]),
        busy_ns=int(v["busy_ns"]),
        measured_ns=int(v["measured_ns"]),
        idle_cost={str(k): int(n) for k, n in v["idle_cost"].items()},
        last_ns=int(v["last_ns"]),
        known=frozenset(str(k) for k in v["known"]),
    )


def meter_to(m: Meter) -> Json:
    return {
        "lines": [[line_to(line), totals_to(t)] for line, t in m._lines.totals.items()],
        "split": [[line_to(line), how] for line, how in m._lines.split_by.items()],
        "last_ratio": [
            [line_to(line), number_to(a), number_to(b)] for line, (a, b) in m._lines.last_ratio.items()
        ],
        "last_model": [[ns, pod, model] for (ns, pod), model in m._models.last_model.items()],
        "served_lines": [[line_to(line) for line in lines] for lines in m._models.served_lines.values()],
        "resets": dict(m._resets),
        "rejected": [[source, reason, n] for (source, reason), n in m._rejected.items()],
        "overflowed": m._models.overflowed,
        "unpriced_ns": m._unpriced_ns,
        "bill": m._lines.bill,
        "retired": m._lines.retired,
        "attribution": attributor_to(m._gpus),
        "tokens": tokens_to(m._tokens),
        "gateway_tokens": tokens_to(m._gateway_tokens),
        "tenant_book": tenants_to(m._tenants),
    }


def meter_restore(m: Meter, v: Json) -> None:
    """Continue from a saved state: counters go on from their values, baselines from theirs."""
    m._lines.totals = {line_from(line): totals_from(t) for line, t in v["lines"]}
    m._lines.windows = {line: Window() for line in m._lines.totals}  # the live gauges refill within a window
    m._lines.split_by = {line_from(line): str(how) for line, how in v["split"]}
    m._lines.last_ratio = {
        line_from(line): (number_from(a), number_from(b)) for line, a, b in v["last_ratio"]
    }
    m._models.last_model = {(str(ns), str(pod)): str(model) for ns, pod, model in v["last_model"]}
    for lines in v["served_lines"]:
        restored = {line_from(x) for x in lines}
        for line in restored:
            m._models.served_lines.setdefault((line.owner.namespace, line.owner.pod), set()).add(line)
    m._resets = Counter({str(k): int(n) for k, n in v["resets"].items()})
    m._rejected = Counter({(str(s), str(r)): int(n) for s, r, n in v["rejected"]})
    m._models.overflowed, m._unpriced_ns = int(v["overflowed"]), int(v["unpriced_ns"])
    m._lines.bill, m._lines.retired = int(v["bill"]), int(v["retired"])
    m._models.admitted = {
        line.owner for line in m._lines.totals if line.owner != OVERFLOW and not line.owner.is_idle
    }
    attributor_restore(m._gpus, v["attribution"])
    tokens_restore(m._tokens, v["tokens"])
    # Files from before gateways (issue 17) carry neither: nothing to continue.
    tokens_restore(m._gateway_tokens, v.get("gateway_tokens", {}))
    tenants_restore(m._tenants, v.get("tenant_book") or {"tenants": v.get("tenants", [])})


def tenants_to(b: TenantBook) -> Json:
    """Tenants' totals and what waits in the settlement: a restart loses no claim."""
    return {
        "tenants": [
            [line_to(line), {t: [x.cost, x.input_tokens, x.output_tokens] for t, x in tenants.items()}]
            for line, tenants in b.tenants.items()
        ],
        "admitted": sorted(b.admitted),
        "batches": [
            [line_to(x.line), direction, x.end_ns, x.tokens, x.money]
            for (_, direction), batches in b.settlement.batches.items()
            for x in batches
        ],
        "credits": [
            [model, direction, c.end_ns, c.tenants]
            for (model, direction), credits in b.settlement.credits.items()
            for c in credits
        ],
        "unmatched": [[model, direction, n] for (model, direction), n in b.settlement.unmatched.items()],
    }


def tenants_restore(b: TenantBook, v: Json) -> None:
    b.tenants = {
        line_from(line): {
            str(t): TenantTotals(int(c), float(i), float(o)) for t, (c, i, o) in tenants.items()
        }
        for line, tenants in v.get("tenants", [])
    }
    b.admitted = {str(t) for t in v.get("admitted", [])}
    for line, direction, end_ns, tokens, money in v.get("batches", []):
        x = Batch(line_from(line), int(end_ns), float(tokens), int(money))
        b.settlement.batches.setdefault((x.line.owner.model, int(direction)), deque()).append(x)
    for model, direction, end_ns, tenants in v.get("credits", []):
        c = Credit(int(end_ns), {str(t): float(n) for t, n in tenants.items()})
        b.settlement.credits.setdefault((str(model), int(direction)), deque()).append(c)
    b.settlement.unmatched = {(str(m), int(d)): float(n) for m, d, n in v.get("unmatched", [])}
