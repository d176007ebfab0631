"""The dated default catalogue: cited $/GPU-hour facts packaged as ``data/catalogue-YYYY-MM-DD.yaml``.

Read with the same strict rules as a config file (``yamlstrict.readers``). Every number carries its
source and the date it reports, which may not be later than the catalogue's own date; the
newest packaged file wins and is read once per process.
"""

from __future__ import annotations

import datetime
import functools
import re
from dataclasses import dataclass
from decimal import Decimal

from yaml.nodes import Node

from exporter.pricing.prices import ZERO, GpuPrice
from exporter.records import CAPACITY_CLASSES
from exporter.yamlstrict import readers as yn
from exporter.yamlstrict.readers import Problems, choice_reader, number_reader, text_reader

CATALOGUE_PREFIX = "catalogue-"  # exporter/data/catalogue-YYYY-MM-DD.yaml; the newest wins


@dataclass(frozen=True, slots=True)
class CatalogueRow:
    """One cited $/GPU-hour fact; ``note`` says which point was picked in a range."""

    hardware: str
    capacity: str
    usd_per_hour: Decimal
    source: str
    date: str  # as the fact reports it: "mid-2026", "April 2026", "2026"
    note: str = ""

    def price(self) -> GpuPrice:
        reference = f"{self.source}; {self.note}" if self.note else self.source
        return GpuPrice(self.hardware, self.capacity, self.usd_per_hour, "catalogue", reference, self.date)


@dataclass(frozen=True, slots=True)
class CatalogueFact:
    """A cited number or range outside the GPU table (egress, the all-in uplift)."""

    low: Decimal
    high: Decimal
    source: str
    date: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class Catalogue:
    date: str  # the catalogue's own date, exported as cpm_catalogue_info
    name: str  # file name inside the package
    rows: tuple[CatalogueRow, ...]
    egress_usd_per_gb: CatalogueFact  # a point: low == high
    all_in_uplift_percent: CatalogueFact  # information only, never applied

    def row(self, hardware: str, capacity: str) -> CatalogueRow | None:
        return next((r for r in self.rows if (r.hardware, r.capacity) == (hardware, capacity)), None)


# English names, not ``calendar.month_name``: that follows the process locale.
_MONTH_NAMES = "january february march april may june july august september october november december"
_MONTHS = {name[:k]: i for i, name in enumerate(_MONTH_NAMES.split(), 1) for k in (3, len(name))}


def fact_date(text: str) -> datetime.date:
    """First day a reported date covers: "2026", "mid-2026", "Q1 2026", "April 2026", ISO dates.

    ``mid-YYYY`` counts from July 1st. Raises ``ValueError`` for anything else.
    """
    text = text.strip()
    if m := re.fullmatch(r"(mid-)?(\d{4})", text):
        return datetime.date(int(m[2]), 7 if m[1] else 1, 1)
    if m := re.fullmatch(r"Q([1-4]) (\d{4})", text):
        return datetime.date(int(m[2]), 3 * int(m[1]) - 2, 1)
    if (m := re.fullmatch(r"([A-Za-z]+)\.? (\d{4})", text)) and m[1].lower() in _MONTHS:
        return datetime.date(int(m[2]), _MONTHS[m[1].lower()], 1)
    if m := re.fullmatch(r"(\d{4})-(\d{2})", text):
        return datetime.date(int(m[1]), int(m[2]), 1)
    return datetime.date.fromisoformat(text)


@functools.lru_cache(maxsize=1)
def load_catalogue() -> Catalogue:
    """The newest packaged catalogue, read with the same strict rules as a config file."""
    return parse_catalogue(*yn.newest_packaged(CATALOGUE_PREFIX, "catalogue"))


def parse_catalogue(text: str, name: str) -> Catalogue:
    """Read catalogue ``text`` (file ``name``, whose date it must carry) or raise ``ConfigError``."""
    return yn.read_document(text, name, _read_catalogue)


def _read_catalogue(p: Problems, root: Node, name: str) -> Catalogue | None:
    m = yn.fields(p, root, "", ("date", "currency", "gpus", "egress_usd_per_gb", "all_in_uplift_percent"))
    if m is None:
        return None
    date = yn.required(p, m, "date", "", root, lambda at, n: _date(p, n, at))
    if date is not None and name != f"{CATALOGUE_PREFIX}{date}.yaml":
        p.add("date", m["date"], f"does not match the file name {name}")
    yn.required(p, m, "currency", "", root, choice_reader(p, ("USD",), "currency (only USD is supported)"))
    rows: list[CatalogueRow] = []
    for i, item in enumerate(yn.required(p, m, "gpus", "", root, lambda at, n: yn.items(p, n, at)) or []):
        row = _catalogue_row(p, item, yn.index_path("gpus", i), date)
        if row is not None and any((r.hardware, r.capacity) == (row.hardware, row.capacity) for r in rows):
            p.add(yn.index_path("gpus", i), item, f"second row for {row.hardware} {row.capacity}")
        elif row is not None:
            rows.append(row)
    egress = yn.required(p, m, "egress_usd_per_gb", "", root, lambda at, n: _fact(p, n, at, ("value",), date))
    uplift = yn.required(
        p, m, "all_in_uplift_percent", "", root, lambda at, n: _fact(p, n, at, ("low", "high"), date)
    )
    if date is None or egress is None or uplift is None:
        return None
    return Catalogue(date, name, tuple(rows), egress, uplift)


_CITATION = ("source", "date", "note")


def _catalogue_row(p: Problems, node: Node, at: str, as_of: str | None) -> CatalogueRow | None:
    m = yn.fields(p, node, at, ("hardware", "capacity", "usd_per_hour", *_CITATION))
    if m is None:
        return None
    hardware = yn.required(p, m, "hardware", at, node, text_reader(p))
    capacity = yn.required(p, m, "capacity", at, node, choice_reader(p, CAPACITY_CLASSES, "capacity class"))
    price = yn.required(p, m, "usd_per_hour", at, node, number_reader(p, gt=ZERO, usd=True))
    cite = _citation(p, m, at, node, as_of)
    if hardware is None or capacity is None or price is None or cite is None:
        return None
    return CatalogueRow(hardware, capacity, price, *cite)


def _fact(
    p: Problems, node: Node, at: str, values: tuple[str, ...], as_of: str | None
) -> CatalogueFact | None:
    m = yn.fields(p, node, at, (*values, *_CITATION))
    if m is None:
        return None
    numbers = [yn.required(p, m, key, at, node, number_reader(p, ge=ZERO, usd=True)) for key in values]
    cite = _citation(p, m, at, node, as_of)
    if cite is None or any(n is None for n in numbers):
        return None
    low, high = min(n for n in numbers if n is not None), max(n for n in numbers if n is not None)
    return CatalogueFact(low, high, *cite)


def _citation(
    p: Problems, m: dict[str, Node], at: str, node: Node, as_of: str | None
) -> tuple[str, str, str] | None:
    """(source, date, note): every catalogue number says where it comes from and when."""
    source = yn.required(p, m, "source", at, node, text_reader(p))
    date = yn.required(p, m, "date", at, node, lambda path, n: _fact_date_text(p, n, path, as_of))
    note = yn.optional(m, "note", at, text_reader(p), "")
    return None if source is None or date is None else (source, date, note)


def _date(p: Problems, node: Node, path: str) -> str | None:
    value = yn.text(p, node, path)
    if value is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        p.add(path, node, f"must be YYYY-MM-DD, got {value!r}")
        return None
    return value


def _fact_date_text(p: Problems, node: Node, path: str, as_of: str | None) -> str | None:
    value = yn.text(p, node, path)
    if value is None:
        return None
    try:
        when = fact_date(value)
    except ValueError:
        p.add(
            path, node, f"unreadable date {value!r} (write 2026, mid-2026, Q1 2026, April 2026 or 2026-04-01)"
        )
        return None
    if as_of is not None and when > datetime.date.fromisoformat(as_of):
        p.add(path, node, f"{value!r} is after the catalogue's date {as_of}")
    return value
