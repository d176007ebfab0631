"""From throughput measured on hardware A, the CPM on other hardware and capacity classes.

    same hardware:       CPM = $/GPU-h ÷ (tokens/s per GPU × 3600 × utilisation) × 10⁶, per price
    throughput ratio:    tokens/s per GPU on B = yours × (row B ÷ row A); then the same CPM formula
                         at each of B's prices (catalogue, or --price)
    cost ratio:          CPM on B = your CPM on A × (row B ÷ row A), rows in $/M tokens; the
                         source's $/GPU-hour are inside the ratio (not published)
    interpolation:       tokens/s per GPU at a target t tokens/s per user, linear between the two
                         measured points around t: y₀ + (y₁ − y₀) × (t − x₀) ÷ (x₁ − x₀);
                         a target outside the measured range is refused, never extrapolated

Rows count only with the same metric, model class and precision (``table.PublishedTable``).
The interactivity target is kept: B is projected at the tokens/s per user measured on A.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal, localcontext

from exporter.pricing.catalogue import Catalogue
from exporter.pricing.published import PublishedRow, PublishedTable
from exporter.whatif import WhatIfError
from exporter.whatif.benchmarks import OperatingPoint
from exporter.whatif.calc import CONTEXT, ONE, cpm

ENGINE_EVIDENCE = (
    "engine updates alone took GPT-OSS-120B on B200 from $0.11 to $0.02/M (NVIDIA Developer, Apr 2026)"
)
INTERACTIVITY_EVIDENCE = "100 vs 18 tokens/s per user costs 2–3× more per token (AMD, GTC 2026)"


@dataclass(frozen=True, slots=True)
class Price:
    hardware: str
    capacity: str
    usd_per_gpu_hour: Decimal
    source: str


@dataclass(frozen=True, slots=True)
class Measured:
    """What was measured on hardware A, and how to price A."""

    hardware: str
    model_class: str
    precision: str
    points: tuple[OperatingPoint, ...]
    engine: str = ""
    utilisation: Decimal = ONE
    price: Price | None = None  # A's own price: the reference for cost-ratio projections


@dataclass(frozen=True, slots=True)
class Relation:
    basis: str  # "measured" | "throughput ratio" | "cost ratio"
    factor: Decimal  # × tokens/s per GPU (throughput ratio) or × CPM (cost ratio)
    rows: tuple[PublishedRow, ...] = ()
    uncertainty: str = "none"  # none | low | medium | high
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Projection:
    hardware: str
    capacity: str
    usd_per_gpu_hour: Decimal | None  # None on a cost ratio: the price is inside the ratio
    price_source: str
    tokens_per_second_per_user: Decimal | None
    tokens_per_second_per_gpu: Decimal | None
    usd_per_million_tokens: Decimal
    basis: str
    rows: tuple[str, ...]
    uncertainty: str
    notes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Gap:
    hardware: str
    reason: str


@dataclass(frozen=True, slots=True)
class Comparison:
    measured: Measured
    points: tuple[OperatingPoint, ...]  # the points projected (the interpolated one with a target)
    projections: tuple[Projection, ...]
    gaps: tuple[Gap, ...]
    table: str


def catalogue_prices(catalogue: Catalogue) -> list[Price]:
    return [
        Price(r.hardware, r.capacity, r.usd_per_hour, f"catalogue {catalogue.date}: {r.source}, {r.date}")
        for r in catalogue.rows
    ]


def compare(
    measured: Measured,
    table: PublishedTable,
    prices: Sequence[Price],
    targets: Sequence[str] = (),
    target_per_user: Decimal | None = None,
) -> Comparison:
    """Project every point of ``measured`` onto each target hardware (default: all known)."""
    if not measured.points:
        raise WhatIfError(
            "compare: no measured operating point (give --tokens-per-second, --point or a file)"
        )
    points = (
        (interpolate(measured.points, target_per_user),) if target_per_user is not None else measured.points
    )
    hardware = list(dict.fromkeys(targets)) or _known_hardware(measured, table, prices)
    projections: list[Projection] = []
    gaps: list[Gap] = []
    for name in hardware:
        reasons: list[str] = []
        for point in points:
            with localcontext(CONTEXT):
                found = relation(table, measured, name, point.tokens_per_second_per_user)
                made = [] if isinstance(found, str) else _project(measured, point, found, name, prices)
            projections += made
            if not made:
                reasons.append(found if isinstance(found, str) else _no_price(measured, found, name))
        gaps += [Gap(name, reason) for reason in dict.fromkeys(reasons)]
    return Comparison(measured, points, tuple(projections), tuple(gaps), f"{table.name} (dated {table.date})")


def _known_hardware(measured: Measured, table: PublishedTable, prices: Sequence[Price]) -> list[str]:
    names = [measured.hardware, *(p.hardware for p in prices)]
    names += [r.hardware for r in table.matching(measured.model_class, measured.precision)]
    return list(dict.fromkeys(names))


def _no_price(measured: Measured, found: Relation, name: str) -> str:
    if found.basis == "cost ratio":
        return f"a cost ratio needs your price for {measured.hardware}: pass --usd-per-gpu-hour or --capacity"
    return f"no $/GPU-hour for {name} in the catalogue: pass --price {name}:CLASS=USD"


def _project(
    m: Measured, p: OperatingPoint, rel: Relation, name: str, prices: Sequence[Price]
) -> list[Projection]:
    """One operating point on hardware ``name``: one projection per price (one on a cost ratio)."""
    ids = tuple(r.id for r in rel.rows)
    if rel.basis == "cost ratio":
        if m.price is None:
            return []
        source = f"{m.hardware} {m.price.capacity} ${m.price.usd_per_gpu_hour}/GPU-h × published cost ratio"
        a_cpm = cpm(m.price.usd_per_gpu_hour, p.tokens_per_second_per_gpu, m.utilisation)
        return [
            Projection(
                name,
                m.price.capacity,
                None,
                source,
                p.tokens_per_second_per_user,
                None,
                a_cpm * rel.factor,
                rel.basis,
                ids,
                rel.uncertainty,
                rel.notes,
            )
        ]
    own = [m.price] if m.price is not None and name == m.hardware else []
    mine = [price for price in prices if price.hardware == name]
    unique = {(price.capacity, price.usd_per_gpu_hour): price for price in [*mine, *own]}.values()
    tokens = p.tokens_per_second_per_gpu * rel.factor
    return [
        Projection(
            name,
            price.capacity,
            price.usd_per_gpu_hour,
            price.source,
            p.tokens_per_second_per_user,
            tokens,
            cpm(price.usd_per_gpu_hour, tokens, m.utilisation),
            rel.basis,
            ids,
            rel.uncertainty,
            rel.notes,
        )
        for price in unique
    ]


def relation(table: PublishedTable, m: Measured, hardware: str, per_user: Decimal | None) -> Relation | str:
    """How B relates to A: measured (B is A), or the best pair of published rows; else why not."""
    if hardware == m.hardware:
        return Relation("measured", ONE)
    rows = table.matching(m.model_class, m.precision)
    on_a = [r for r in rows if r.hardware == m.hardware]
    on_b = [r for r in rows if r.hardware == hardware]
    pairs = [(a, b) for a in on_a for b in on_b if a.metric == b.metric]
    if not pairs:
        return _why_no_pair(table, m, hardware, on_a, on_b)
    a, b = min(pairs, key=lambda pair: _distance(pair, m, per_user))
    notes = _reasons(a, b, m, per_user)
    if a.metric == "tokens_per_second_per_gpu":
        return Relation("throughput ratio", b.per_gpu / a.per_gpu, (a, b), _grade(notes), tuple(notes))
    notes.append(
        "the source's $/GPU-hour are inside this ratio and not published: assumes your price ratio is theirs"
    )
    return Relation("cost ratio", b.value / a.value, (a, b), _grade(notes), tuple(notes))


def _why_no_pair(
    table: PublishedTable, m: Measured, hardware: str, on_a: list[PublishedRow], on_b: list[PublishedRow]
) -> str:
    key = f"model class {m.model_class!r}, precision {m.precision!r}"
    if not on_a:
        return f"no published row for {m.hardware} with {key} in {table.name}, so nothing to scale from"
    if not on_b:
        other = sorted({r.hardware for r in table.rows if r.hardware == hardware})
        hint = " (rows exist for other model classes or precisions)" if other else ""
        return f"no published row for {hardware} with {key} in {table.name}{hint}"
    return f"published rows for {m.hardware} and {hardware} with {key} measure different things"


def _distance(
    pair: tuple[PublishedRow, PublishedRow], m: Measured, per_user: Decimal | None
) -> tuple[bool, bool, bool, bool, Decimal]:
    """Prefer: one source, one operating point, throughput over cost, your engine, your interactivity."""
    a, b = pair
    row_per_user = a.tokens_per_second_per_user
    gap = abs(row_per_user - per_user) if per_user is not None and row_per_user is not None else Decimal(0)
    return (
        a.source != b.source,
        (a.engine, a.tokens_per_second_per_user) != (b.engine, b.tokens_per_second_per_user),
        a.metric != "tokens_per_second_per_gpu",
        bool(m.engine) and a.engine.lower() != m.engine.lower(),
        gap,
    )


def _reasons(a: PublishedRow, b: PublishedRow, m: Measured, per_user: Decimal | None) -> list[str]:
    """Why the projection may be off; the first three make it "high"."""
    notes = []
    if a.source != b.source:
        notes.append(f"rows from different sources ({a.source}; {b.source})")
    if a.engine != b.engine:
        notes.append(f"rows measured with different engines ({a.engine}, {b.engine}): {ENGINE_EVIDENCE}")
    if a.tokens_per_second_per_user != b.tokens_per_second_per_user:
        notes.append("rows measured at different operating points")
    if m.engine and m.engine.lower() != a.engine.lower():
        notes.append(f"your engine is {m.engine}, the rows' {a.engine}: {ENGINE_EVIDENCE}")
    if per_user is not None and a.tokens_per_second_per_user not in (None, per_user):
        notes.append(
            f"rows at {a.tokens_per_second_per_user} tokens/s per user, yours {_short(per_user)}: {INTERACTIVITY_EVIDENCE}"
        )
    if a.tokens_per_second_per_user is None:
        notes.append("the rows do not say their interactivity")
    if a.approximate or b.approximate:
        notes.append("reported as approximate (~)")
    return notes


_HIGH = ("rows from different sources", "rows measured with different engines", "rows measured at different")


def _grade(notes: Iterable[str]) -> str:
    notes = list(notes)
    if any(n.startswith(_HIGH) for n in notes):
        return "high"
    return "medium" if notes else "low"


def interpolate(points: Sequence[OperatingPoint], target: Decimal) -> OperatingPoint:
    """tokens/s per GPU at ``target`` tokens/s per user, linear between the measured points around it."""
    known = sorted(
        {p.tokens_per_second_per_user: p for p in points if p.tokens_per_second_per_user is not None}.items()
    )
    if len(known) < 2:
        raise WhatIfError(
            f"--target-tokens-per-second-per-user needs >= 2 operating points with tokens/s per user"
            f" (repeat --point GPU_TPS@USER_TPS or --vllm-bench), got {len(known)}"
        )
    low, high = known[0][0], known[-1][0]
    if not low <= target <= high:
        raise WhatIfError(
            f"--target-tokens-per-second-per-user {target} is outside the measured range [{low}, {high}]"
            " tokens/s per user; measure a point beyond it (extrapolation is refused)"
        )
    for (x0, p0), (x1, p1) in itertools.pairwise(known):
        if x0 <= target <= x1:
            y0, y1 = p0.tokens_per_second_per_gpu, p1.tokens_per_second_per_gpu
            with localcontext(CONTEXT):
                y = y0 + (y1 - y0) * (target - x0) / (x1 - x0)
            source = f"interpolated between {_short(x0)} and {_short(x1)} tokens/s per user"
            return replace(p0, tokens_per_second_per_gpu=y, tokens_per_second_per_user=target, source=source)
    raise AssertionError("unreachable: target within range")  # pragma: no cover


def _short(d: Decimal) -> str:
    return format(d.quantize(Decimal("0.01")).normalize(), "f")
