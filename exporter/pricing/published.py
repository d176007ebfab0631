"""The dated table of published throughput and cost (``data/throughput-YYYY-MM-DD.yaml``).

Read with the catalogue's strict YAML rules: exact decimals, every row with its source, date,
model class, precision, engine and conditions. ``compare`` uses a row only next to another row
of the same metric, model class and precision; ``unspecified`` precision never matches.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import Decimal

from yaml.nodes import Node

from exporter.pricing.catalogue import fact_date
from exporter.yamlstrict import readers as yn
from exporter.yamlstrict.readers import Problems, text_reader

TABLE_PREFIX = "throughput-"
METRICS = ("tokens_per_second_per_gpu", "usd_per_million_tokens")
UNSPECIFIED = "unspecified"
_FIELDS = (
    "id",
    "metric",
    "value",
    "gpus",
    "approximate",
    "hardware",
    "model",
    "model_class",
    "precision",
    "engine",
    "tokens_per_second_per_user",
    "conditions",
    "source",
    "date",
)


@dataclass(frozen=True, slots=True)
class PublishedRow:
    id: str
    metric: str  # one of METRICS
    value: Decimal  # as reported (a system figure when gpus > 1)
    hardware: str
    model: str
    model_class: str
    precision: str
    engine: str
    conditions: str
    source: str
    date: str
    gpus: int = 1
    approximate: bool = False
    tokens_per_second_per_user: Decimal | None = None

    @property
    def per_gpu(self) -> Decimal:
        """The value per GPU: a system throughput ÷ its GPUs (a CPM is already per token)."""
        if self.metric == "tokens_per_second_per_gpu":
            return self.value / self.gpus
        return self.value

    @property
    def usable(self) -> bool:
        return self.precision != UNSPECIFIED

    def matches(self, model_class: str, precision: str) -> bool:
        """Same model class and the same precision family (bfloat16 is bf16, fp8_e4m3 is fp8)."""
        return self.model_class == model_class and precision_class(self.precision) == precision_class(
            precision
        )

    def cite(self) -> str:
        return f"{self.id} ({self.source}, {self.date})"


@dataclass(frozen=True, slots=True)
class PublishedTable:
    date: str
    name: str
    rows: tuple[PublishedRow, ...]

    def matching(self, model_class: str, precision: str) -> tuple[PublishedRow, ...]:
        return tuple(r for r in self.rows if r.usable and r.matches(model_class, precision))


_SAME = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float32": "fp32", "float": "fp32"}


def precision_class(precision: str) -> str:
    """A precision as tables name it: bfloat16 → bf16, fp8_e4m3 → fp8, nvfp4/mxfp4 → fp4 (one
    definition for ``compare`` and ``cpm_frontier_ratio``)."""
    p = precision.strip().lower()
    p = _SAME.get(p, p)
    for family in ("fp8", "fp4"):
        if p.startswith(family) or p.endswith(family):
            return family
    return p


@functools.lru_cache(maxsize=1)
def load_table() -> PublishedTable:
    """The newest packaged table."""
    return parse_table(*yn.newest_packaged(TABLE_PREFIX, "throughput table"))


def read_table(path: str) -> PublishedTable:
    """A user's table (``compare --table FILE``), same format as the packaged one."""
    return parse_table(yn.read_file(path)[0], path)  # capped and UTF-8, as the config itself


def parse_table(text: str, name: str) -> PublishedTable:
    return yn.read_document(text, name, _read)


def _read(p: Problems, root: Node, name: str) -> PublishedTable | None:
    m = yn.fields(p, root, "", ("date", "rows"))
    if m is None:
        return None
    date = yn.required(p, m, "date", "", root, text_reader(p))
    rows: list[PublishedRow] = []
    for i, item in enumerate(yn.required(p, m, "rows", "", root, lambda at, n: yn.items(p, n, at)) or []):
        row = _row(p, item, yn.index_path("rows", i))
        if row is not None and any(r.id == row.id for r in rows):
            p.add(yn.index_path("rows", i), item, f"second row with id {row.id!r}")
        elif row is not None:
            rows.append(row)
    return None if date is None else PublishedTable(date, name, tuple(rows))


def _row(p: Problems, node: Node, at: str) -> PublishedRow | None:
    m = yn.fields(p, node, at, _FIELDS)
    if m is None:
        return None
    texts = {k: yn.required(p, m, k, at, node, text_reader(p)) for k in _TEXTS}
    metric = yn.required(p, m, "metric", at, node, yn.choice_reader(p, METRICS, "metric"))
    value = yn.required(p, m, "value", at, node, yn.number_reader(p, gt=Decimal(0)))
    gpus = yn.optional(m, "gpus", at, lambda path, n: yn.integer(p, n, path, ge=1), 1)
    approximate = yn.optional(m, "approximate", at, lambda path, n: yn.boolean(p, n, path), False)
    per_user = yn.optional(m, "tokens_per_second_per_user", at, yn.number_reader(p, gt=Decimal(0)), None)
    _check_date(p, m, at, texts["date"])
    if metric is None or value is None or any(v is None for v in texts.values()):
        return None
    t = {k: str(v) for k, v in texts.items()}
    return PublishedRow(
        t["id"],
        metric,
        value,
        t["hardware"],
        t["model"],
        t["model_class"],
        t["precision"].lower(),
        t["engine"],
        t["conditions"],
        t["source"],
        t["date"],
        gpus,
        approximate,
        per_user,
    )


_TEXTS = ("id", "hardware", "model", "model_class", "precision", "engine", "conditions", "source", "date")


def _check_date(p: Problems, m: dict[str, Node], at: str, value: str | None) -> None:
    if value is None:
        return
    try:
        fact_date(value)
    except ValueError:
        p.add(
            yn.key_path(at, "date"), m["date"], f"unreadable date {value!r} (write 2026, Q1 2026, April 2026)"
        )
