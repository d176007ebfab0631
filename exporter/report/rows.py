"""The report's rows from the counters' exact increases: one per period and chosen dimensions, and the
proof that they add up to each node's bill.

Pure: ``Increases`` per metric in, a ``Report`` out. Money is in USD as ``Decimal``s quantized to the
nano-dollar the exporter counts in, so the reconciliation is exact, not "close": for every node and
period, Σ its rows' money = the increase of its ``cpm_bill_usd_total``, or the difference is listed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from exporter.report.increase import ZERO, Gap, Increases, Labels

NANO = Decimal("1e-9")
# Labels a scrape adds (Prometheus, the Operator, an agent): not part of what a series measures.
SCRAPE_LABELS = frozenset(
    {"instance", "job", "endpoint", "service", "container", "prometheus", "prometheus_replica", "__replica__"}
)
# The exporter's own labels that a scrape without honor_labels renames to exported_<label>.
LINE_LABELS = ("node", "namespace", "pod", "team", "model", "workload", "hardware", "capacity_class")
DIMENSIONS = ("cluster", *LINE_LABELS)
CHOICES = (*DIMENSIONS, "tenant")  # what --by may name
TENANT = "tenant"  # --by tenant: the calling team, from the gateway split where a line has one
DIRECT = "__direct__"  # the split's name for tokens no gateway claimed: the pod's own team's
METRICS = (
    "cpm_cost_usd_total",
    "cpm_cost_by_direction_usd_total",
    "cpm_tokens_total",
    "cpm_requests_total",
    "cpm_cached_input_tokens_total",
    "cpm_gpu_seconds_total",
    "cpm_idle_cost_usd_total",
    "cpm_tenant_cost_usd_total",
    "cpm_tenant_tokens_total",
    "cpm_bill_usd_total",
)
MONEY = frozenset({"cpm_cost_usd_total", "cpm_cost_by_direction_usd_total", "cpm_idle_cost_usd_total",
                   "cpm_tenant_cost_usd_total", "cpm_bill_usd_total"})  # fmt: skip


@dataclass(frozen=True, slots=True)
class Period:
    start: float  # UNIX seconds, inclusive
    end: float  # exclusive


@dataclass(slots=True)
class Row:
    """Money and usage of one group (the chosen dimensions' values) in one period."""

    period: int
    key: tuple[str, ...]
    cost: dict[str, Decimal] = field(default_factory=dict)  # component → USD
    by_direction: dict[str, Decimal] = field(default_factory=dict)  # input/output/training → USD
    tokens: dict[str, Decimal] = field(default_factory=dict)  # direction → tokens
    requests: Decimal | None = None  # None: no server of the group counts requests
    cached: Decimal | None = None  # input tokens served from a prefix cache; None: no server says
    gpu_seconds: dict[str, Decimal] = field(default_factory=dict)  # held, busy, idle
    idle: dict[str, Decimal] = field(default_factory=dict)  # reason → USD (a part of cost)

    @property
    def total(self) -> Decimal:
        return sum(self.cost.values(), ZERO)


@dataclass(slots=True)
class TenantRow:
    """A calling team's part of a shared model's money (the gateway split) in one period."""

    period: int
    tenant: str
    model: str
    cost: Decimal = ZERO
    tokens: dict[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NodeCheck:
    """One node's period: Σ its rows' money against the increase of its bill."""

    period: int
    cluster: str
    node: str
    rows_usd: Decimal
    bill_usd: Decimal | None  # None: no bill series (not our exporter, or not scraped)

    @property
    def ok(self) -> bool:
        return self.bill_usd is not None and self.rows_usd == self.bill_usd


@dataclass(frozen=True, slots=True)
class Report:
    periods: tuple[Period, ...]
    dims: tuple[str, ...]
    rows: tuple[Row, ...]
    tenants: tuple[TenantRow, ...]
    checks: tuple[NodeCheck, ...]
    gaps: tuple[tuple[str, str, float, float | None], ...]  # (cluster, node, after, before)
    resets: Mapping[tuple[str, str], int]  # (cluster, node) → counter resets seen (exporter restarts)
    warnings: tuple[str, ...] = ()

    @property
    def reconciled(self) -> bool:
        return all(c.ok for c in self.checks) and bool(self.checks)


def identity(labels: Labels) -> tuple[Labels, bool]:
    """What a series measures: its labels less the scrape's (so an exporter restarted on a new
    address, or scraped by two jobs, is one series), exported_<x> read as <x>; True if renamed."""
    own = {k: v for k, v in labels if k not in SCRAPE_LABELS}
    renamed = False
    for name in LINE_LABELS:
        if f"exported_{name}" in own:  # scraped without honor_labels: the target's label won
            own[name] = own.pop(f"exported_{name}")
            renamed = True
    return tuple(sorted(own.items())), renamed


def build(
    periods: Sequence[Period],
    dims: Sequence[str],
    increases: Mapping[str, Increases],
    warnings: Sequence[str] = (),
) -> Report:
    """Rows per (period, dims), tenant rows, and each node's check against its bill; ``warnings``
    (what reading found) go into the report. Rows are booked per line first (every DIMENSIONS
    label), then grouped: with ``tenant`` among the dims, a line the gateway split goes to its calling
    teams, and what no tenant was charged (direct calls, money still waiting) to the pod's own team."""
    books = _Books()
    for metric in METRICS:
        inc = increases.get(metric)
        for labels, series in inc.series.items() if inc is not None else ():
            own = {k: v for k, v in labels if k != "__name__"}  # collect keyed the series by identity()
            node = (own.get("cluster", ""), own.get("node", ""))
            if series.resets:
                books.resets[node] = max(books.resets.get(node, 0), series.resets)
            for k, amount in enumerate(series.per_period):
                books.book(metric, own, k, amount.quantize(NANO) if metric in MONEY else amount, node)
    checks = [
        NodeCheck(k, cluster, node, books.node_money.get((k, cluster, node), ZERO),
                  books.bills.get((k, cluster, node)))
        for k, cluster, node in sorted(books.node_money.keys() | books.bills.keys())
    ]  # fmt: skip
    bill = increases.get("cpm_bill_usd_total")
    gaps = tuple(_gap(g) for g in (bill.gaps if bill is not None else []))
    rows = (r for r in _group(books.lines, books.splits, dims) if _counts(r))
    return Report(
        tuple(periods),
        tuple(dims),
        tuple(sorted(rows, key=lambda r: (r.period, -r.total, r.key))),
        tuple(sorted(_tenant_rows(books.splits), key=lambda t: (t.period, -t.cost, t.tenant, t.model))),
        tuple(checks),
        tuple(sorted(gaps)),
        books.resets,
        tuple(dict.fromkeys(warnings)),
    )


LineKey = tuple[int, tuple[str, ...]]  # (period, every DIMENSIONS value)


@dataclass(slots=True)
class _Books:
    """What the series add up to, per period: each line's row, each split line's tenants, each node's
    money and bill."""

    lines: dict[LineKey, Row] = field(default_factory=dict)
    splits: dict[LineKey, dict[str, TenantRow]] = field(default_factory=dict)
    node_money: dict[tuple[int, str, str], Decimal] = field(default_factory=dict)
    bills: dict[tuple[int, str, str], Decimal] = field(default_factory=dict)
    resets: dict[tuple[str, str], int] = field(default_factory=dict)

    def book(
        self, metric: str, own: Mapping[str, str], k: int, amount: Decimal, node: tuple[str, str]
    ) -> None:
        at = (k, *node)
        if metric == "cpm_bill_usd_total":
            self.bills[at] = self.bills.get(at, ZERO) + amount
            return
        key = (k, tuple(own.get(d, "") for d in DIMENSIONS))
        if metric.startswith("cpm_tenant_"):
            tenant = own.get("tenant", "")
            t = self.splits.setdefault(key, {}).setdefault(tenant, TenantRow(k, tenant, own.get("model", "")))
            if metric == "cpm_tenant_cost_usd_total":
                t.cost += amount
            else:
                _add(t.tokens, own.get("direction", ""), amount)
            return
        row = self.lines.get(key) or self.lines.setdefault(key, Row(*key))
        if metric == "cpm_cost_usd_total":
            _add(row.cost, own.get("component", ""), amount)
            self.node_money[at] = self.node_money.get(at, ZERO) + amount
        elif metric == "cpm_cost_by_direction_usd_total":
            _add(row.by_direction, own.get("direction", ""), amount)
        elif metric == "cpm_tokens_total":
            _add(row.tokens, own.get("direction", ""), amount)
        elif metric == "cpm_requests_total":
            row.requests = (row.requests or ZERO) + amount
        elif metric == "cpm_cached_input_tokens_total":
            row.cached = (row.cached or ZERO) + amount
        elif metric == "cpm_gpu_seconds_total":
            _add(row.gpu_seconds, own.get("state", ""), amount)
        elif metric == "cpm_idle_cost_usd_total":
            _add(row.idle, own.get("reason", ""), amount)


def _tenant_rows(splits: Mapping[LineKey, Mapping[str, TenantRow]]) -> list[TenantRow]:
    """The split per (period, calling team, model), its lines summed."""
    out: dict[tuple[int, str, str], TenantRow] = {}
    for parts in splits.values():
        for t in parts.values():
            acc = out.setdefault((t.period, t.tenant, t.model), TenantRow(t.period, t.tenant, t.model))
            acc.cost += t.cost
            for direction, n in t.tokens.items():
                _add(acc.tokens, direction, n)
    return list(out.values())


def _group(
    lines: Mapping[LineKey, Row], splits: Mapping[LineKey, Mapping[str, TenantRow]], dims: Sequence[str]
) -> list[Row]:
    """Line rows summed into rows of ``dims``; by tenant, split lines go to their calling teams."""
    team = DIMENSIONS.index("team")
    out: dict[tuple[int, tuple[str, ...]], Row] = {}
    for (k, line), row in lines.items():
        parts = [(line[team], row)]
        if TENANT in dims and (split := splits.get((k, line))):
            parts = _by_tenant(row, line[team], split)
        for tenant, part in parts:
            key = tuple(tenant if d == TENANT else line[DIMENSIONS.index(d)] for d in dims)
            _merge(out.setdefault((k, key), Row(k, key)), part)
    return list(out.values())


def _by_tenant(row: Row, team: str, split: Mapping[str, TenantRow]) -> list[tuple[str, Row]]:
    """A split line's period: each calling team's money and tokens; the rest (tokens no gateway claimed,
    money still waiting, GPU time) stays with the pod's own team."""
    parts: list[tuple[str, Row]] = []
    paid = claimed = ZERO
    for tenant, t in sorted(split.items()):
        if tenant == DIRECT:
            continue
        money, tokens = t.cost, sum(t.tokens.values(), ZERO)
        paid, claimed = paid + money, claimed + tokens
        part = Row(row.period, row.key, cost={"calls": money}, tokens={"total": tokens} if tokens else {})
        part.by_direction = {"total": money} if tokens else {}
        parts.append((tenant, part))
    rest = Row(
        row.period, row.key, requests=row.requests, gpu_seconds=dict(row.gpu_seconds), idle=dict(row.idle)
    )
    rest.cost = {"kept": row.total - paid}
    left = sum(row.tokens.values(), ZERO) - claimed
    if left > 0:
        rest.tokens, rest.by_direction = {"total": left}, {"total": row.total - paid}
    return [*parts, (team, rest)]


def _merge(into: Row, r: Row) -> None:
    for mine, theirs in ((into.cost, r.cost), (into.by_direction, r.by_direction), (into.tokens, r.tokens),
                         (into.gpu_seconds, r.gpu_seconds), (into.idle, r.idle)):  # fmt: skip
        for key, amount in theirs.items():
            mine[key] = mine.get(key, ZERO) + amount
    if r.requests is not None:
        into.requests = (into.requests or ZERO) + r.requests
    if r.cached is not None:
        into.cached = (into.cached or ZERO) + r.cached


def _counts(r: Row) -> bool:
    """A row that measured anything in its period (a series that stood still makes none)."""
    amounts = (*r.cost.values(), *r.tokens.values(), *r.gpu_seconds.values(), r.requests or ZERO)
    return any(amounts)


def _add(into: dict[str, Decimal], key: str, amount: Decimal) -> None:
    into[key] = into.get(key, ZERO) + amount


def _gap(g: Gap) -> tuple[str, str, float, float | None]:
    own = dict(g.labels)
    return own.get("cluster", ""), own.get("node", ""), g.after, g.before
