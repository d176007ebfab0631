"""Render the families to the Prometheus text format 0.0.4, once per tick."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest

from exporter.exposition.families import FAMILIES, Family
from exporter.exposition.status import ExportView

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# The exporter's own process_* series (CPU, resident memory, open fds, start time), from
# prometheus-client's collector: what every exporter exports, read once per tick with the rest.
_PROCESS = CollectorRegistry(auto_describe=False)
ProcessCollector(registry=_PROCESS)


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if isinstance(value, int):  # int has no is_integer() before Python 3.12
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _pairs(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    return ",".join(f'{n}="{escape_label(v)}"' for n, v in zip(names, values, strict=True))


def render_family(family: Family, view: ExportView, prefixes: dict[tuple[str, ...], str]) -> list[str]:
    """One family's lines. ``prefixes`` caches escaped base labels across families."""
    out = [f"# HELP {family.name} {escape_help(family.help)}", f"# TYPE {family.name} {family.type}"]
    seen: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()
    rests: dict[tuple[str, ...], str] = {}
    for base, extra, value in family.rows(view):
        if (base, extra) in seen:  # one series per label set, always (a duplicate fails the scrape)
            continue
        seen.add((base, extra))
        prefix = prefixes.get(base)
        if prefix is None:
            prefix = prefixes[base] = _pairs(family.labels[: len(base)], base)
        rest = rests.get(extra)  # few distinct values per family (components, directions)
        if rest is None:
            rest = rests[extra] = _pairs(family.labels[len(base) :], extra)
        labels = (
            f"{{{prefix},{rest}}}" if prefix and rest else (f"{{{prefix or rest}}}" if prefix or rest else "")
        )
        out.append(f"{family.name}{labels} {format_value(value)}")
    return out


def render(view: ExportView) -> bytes:
    lines: list[str] = []
    prefixes: dict[tuple[str, ...], str] = {}  # every line family starts with LINE_LABELS
    for family in FAMILIES:
        lines += render_family(family, view, prefixes)
    return ("\n".join(lines) + "\n").encode() + generate_latest(_PROCESS)
