"""Presents breakdowns and comparisons: a readable table, JSON, CSV, and an optional PNG plot.

Rounding happens here and only here. JSON numbers are the exact values rounded to 9 decimal
places (nano-dollars): the float written has the same digits as that decimal. matplotlib is an
optional extra (``pip install 'cpm-exporter[plot]'``), imported only when ``--plot`` is asked.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from decimal import Context, Decimal
from typing import Any

from exporter.pricing.published import PublishedTable
from exporter.whatif import WhatIfError
from exporter.whatif.calc import Breakdown, Line
from exporter.whatif.compare import Comparison, Projection

FORMATS = ("table", "json", "csv")
_WIDE = Context(prec=80)
_NANO = Decimal("1e-9")
_PERCENT_KEYS = ("utilisation", "input_share")
PLOT_HINT = "--plot needs matplotlib: pip install 'cpm-exporter[plot]'"


def usd(d: Decimal) -> str:
    """Money for people: 2 decimals, more below $10 so that 4 significant digits show."""
    places = 2
    if d and abs(d) < 10:
        places = max(2, 4 - 1 - abs(d).adjusted())
    text = f"{d.quantize(Decimal(1).scaleb(-places), context=_WIDE):,}"
    while places > 2 and text.endswith("0"):
        text, places = text[:-1], places - 1
    return text


def number(d: Decimal) -> str:
    """A count or rate for people: thousands separated, at most 2 decimals, no trailing zeros."""
    rounded = d.quantize(Decimal("0.01"), context=_WIDE)
    text = f"{rounded:,f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def json_number(d: Decimal) -> int | float:
    """Exact to the nano-dollar: an int when whole, else the 9-place rounding as a float."""
    rounded = d.quantize(_NANO, context=_WIDE)
    return int(rounded) if rounded == rounded.to_integral_value() else float(rounded)


def _value(line: Line) -> str:
    if line.key in _PERCENT_KEYS:
        return f"{number(line.value * 100)} %"
    if line.unit == "$/GPU-h":
        return usd(line.value)
    if line.unit.startswith("$"):
        return usd(line.value)
    return number(line.value)


# --- calc --------------------------------------------------------------------------------


def breakdown(b: Breakdown, fmt: str) -> str:
    if fmt == "json":
        return _breakdown_json(b)
    if fmt == "csv":
        return _csv(
            ["key", "label", "value", "unit", "formula"],
            ([ln.key, ln.label, _plain(ln.value), ln.unit, ln.formula] for ln in b.lines),
        )
    return _breakdown_table(b)


def _breakdown_table(b: Breakdown) -> str:
    rows = [(ln.label, _value(ln), "" if ln.key in _PERCENT_KEYS else ln.unit, ln.formula) for ln in b.lines]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    out = [f"{b.mode}: cost breakdown, line by line"]
    out += [f"  {r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}" for r in rows]
    out += [f"  note: {n}" for n in b.notes]
    return "\n".join(out)


def _breakdown_json(b: Breakdown) -> str:
    doc: dict[str, Any] = {"mode": b.mode}
    doc |= {ln.key: json_number(ln.value) for ln in b.lines}
    doc["breakdown"] = [
        {
            "key": ln.key,
            "label": ln.label,
            "value": json_number(ln.value),
            "unit": ln.unit,
            "formula": ln.formula,
        }
        for ln in b.lines
    ]
    doc["notes"] = list(b.notes)
    return json.dumps(doc, indent=2, ensure_ascii=False)


def _plain(d: Decimal) -> str:
    return format(d.quantize(_NANO, context=_WIDE).normalize(_WIDE), "f")


def _csv(header: list[str], rows: Iterable[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().rstrip("\n")


# --- compare -----------------------------------------------------------------------------

_COLUMNS = [
    "hardware",
    "capacity",
    "usd_per_gpu_hour",
    "tokens_per_second_per_user",
    "tokens_per_second_per_gpu",
    "usd_per_million_tokens",
    "basis",
    "uncertainty",
    "rows",
    "price_source",
]


def comparison(c: Comparison, fmt: str) -> str:
    if fmt == "json":
        return _comparison_json(c)
    if fmt == "csv":
        return _csv(_COLUMNS, (_csv_row(p) for p in c.projections))
    return _comparison_table(c)


def _cells(p: Projection) -> list[str]:
    return [
        p.hardware,
        p.capacity,
        usd(p.usd_per_gpu_hour) if p.usd_per_gpu_hour is not None else "(in ratio)",
        number(p.tokens_per_second_per_user) if p.tokens_per_second_per_user is not None else "?",
        number(p.tokens_per_second_per_gpu) if p.tokens_per_second_per_gpu is not None else "-",
        usd(p.usd_per_million_tokens),
        p.basis,
        p.uncertainty,
    ]


def _comparison_table(c: Comparison) -> str:
    m = c.measured
    head = [
        "hardware",
        "capacity",
        "$/GPU-h",
        "tok/s/user",
        "tok/s/GPU",
        "$/M tokens",
        "basis",
        "uncertainty",
    ]
    rows = [head, *(_cells(p) for p in c.projections)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    engine = f", engine {m.engine}" if m.engine else ""
    out = [
        f"measured on {m.hardware} (model class {m.model_class}, precision {m.precision}{engine}),"
        f" utilisation {number(m.utilisation * 100)} %"
    ]
    out += [f"  point: {_point(p)}" for p in c.points]
    out += [f"published rows: {c.table}", ""]
    out += [
        "  ".join(
            cell.rjust(w) if i in (2, 3, 4, 5) else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in rows
    ]
    out += _sources(c.projections)
    out += _gaps(c)
    return "\n".join(out)


def _gaps(c: Comparison) -> list[str]:
    """One line per reason, naming every hardware type it applies to."""
    by_reason: dict[str, list[str]] = {}
    for g in c.gaps:
        by_reason.setdefault(g.reason.replace(g.hardware, "{hw}"), []).append(g.hardware)
    out = [
        f"not projected: {', '.join(hw)}: {reason.replace('{hw}', hw[0] if len(hw) == 1 else 'them')}"
        for reason, hw in by_reason.items()
    ]
    return ["", *out] if out else []


def _point(p: Any) -> str:
    per_user = p.tokens_per_second_per_user
    at = f" at {number(per_user)} tokens/s per user" if per_user is not None else " (interactivity unknown)"
    how = f", {p.interactivity_method}" if p.interactivity_method else ""
    return f"{number(p.tokens_per_second_per_gpu)} tokens/s per GPU{at} ({p.source}{how})"


def _sources(projections: Sequence[Projection]) -> list[str]:
    """Where each price comes from, then which rows each projection used and why it is uncertain."""
    prices = {
        (p.hardware, p.capacity): f"{p.hardware} {p.capacity}: price {p.price_source}" for p in projections
    }
    out = list(prices.values())
    seen: set[tuple[str, tuple[str, ...], tuple[str, ...]]] = set()
    for p in projections:
        if not p.rows or (p.hardware, p.rows, p.notes) in seen:
            continue
        seen.add((p.hardware, p.rows, p.notes))
        at = number(p.tokens_per_second_per_user) if p.tokens_per_second_per_user is not None else "?"
        out.append(
            f"{p.hardware} at {at} tokens/s per user: rows {' vs '.join(p.rows)}; uncertainty {p.uncertainty}"
        )
        out += [f"  - {n}" for n in p.notes]
    return ["", *out] if out else []


def _projection_doc(p: Projection) -> dict[str, Any]:
    def opt(d: Decimal | None) -> int | float | None:
        return None if d is None else json_number(d)

    return {
        "hardware": p.hardware,
        "capacity": p.capacity,
        "usd_per_gpu_hour": opt(p.usd_per_gpu_hour),
        "price_source": p.price_source,
        "tokens_per_second_per_user": opt(p.tokens_per_second_per_user),
        "tokens_per_second_per_gpu": opt(p.tokens_per_second_per_gpu),
        "usd_per_million_tokens": json_number(p.usd_per_million_tokens),
        "basis": p.basis,
        "rows": list(p.rows),
        "uncertainty": p.uncertainty,
        "notes": list(p.notes),
    }


def _comparison_json(c: Comparison) -> str:
    m = c.measured
    doc = {
        "measured": {
            "hardware": m.hardware,
            "model_class": m.model_class,
            "precision": m.precision,
            "engine": m.engine or None,
            "utilisation": json_number(m.utilisation),
        },
        "points": [
            {
                "tokens_per_second_per_gpu": json_number(p.tokens_per_second_per_gpu),
                "tokens_per_second_per_user": None
                if p.tokens_per_second_per_user is None
                else json_number(p.tokens_per_second_per_user),
                "source": p.source,
            }
            for p in c.points
        ],
        "table": c.table,
        "projections": [_projection_doc(p) for p in c.projections],
        "not_projected": [{"hardware": g.hardware, "reason": g.reason} for g in c.gaps],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False)


def _csv_row(p: Projection) -> list[str]:
    def opt(d: Decimal | None) -> str:
        return "" if d is None else _plain(d)

    return [
        p.hardware,
        p.capacity,
        opt(p.usd_per_gpu_hour),
        opt(p.tokens_per_second_per_user),
        opt(p.tokens_per_second_per_gpu),
        _plain(p.usd_per_million_tokens),
        p.basis,
        p.uncertainty,
        " vs ".join(p.rows),
        p.price_source,
    ]


def plot(c: Comparison, path: str) -> None:
    """CPM vs tokens/s per user, one line per hardware and capacity class."""
    try:
        import matplotlib  # type: ignore[import-not-found, unused-ignore]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]
    except ImportError as e:
        raise WhatIfError(PLOT_HINT) from e
    lines: dict[str, list[tuple[float, float]]] = {}
    for p in c.projections:
        if p.tokens_per_second_per_user is not None:
            key = f"{p.hardware} {p.capacity}"
            lines.setdefault(key, []).append(
                (float(p.tokens_per_second_per_user), float(p.usd_per_million_tokens))
            )
    if not lines:
        raise WhatIfError("--plot: no projection has a tokens/s per user to plot against")
    figure, axes = plt.subplots(figsize=(8, 5))
    for label, xy in sorted(lines.items()):
        xs, ys = zip(*sorted(xy), strict=True)
        axes.plot(xs, ys, marker="o", label=label)
    axes.set_xlabel("tokens/s per user")
    axes.set_ylabel("$ per million tokens")
    axes.set_title(
        f"Projected CPM from {c.measured.hardware} ({c.measured.model_class}, {c.measured.precision})"
    )
    axes.legend()
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)


def published_table(table: PublishedTable) -> str:
    """``compare --list-table``: every row with its operating point, source and date."""
    out = [f"{table.name} (dated {table.date}); rows with precision 'unspecified' are never used"]
    for r in table.rows:
        per_user = (
            f" @ {number(r.tokens_per_second_per_user)} tok/s/user" if r.tokens_per_second_per_user else ""
        )
        system = f" ({r.gpus} GPUs)" if r.gpus > 1 else ""
        out.append(
            f"  {r.id}: {r.metric} {'~' if r.approximate else ''}{number(r.value)}{system}{per_user};"
            f" {r.hardware}, {r.model} [{r.model_class}, {r.precision}], {r.engine}, {r.conditions};"
            f" {r.source}, {r.date}"
        )
    return "\n".join(out)
