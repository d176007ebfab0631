"""The landing page's tables: inference, training, GPUs held by no pod, and calling teams.

Every figure is a gauge or total of /metrics with the same definition; every header says what
it is (its ``title``, and the legend under the tables). Each cell carries its sort value
(``data-v``): the page sorts rows in place, by cost by default. Every label value is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from exporter.exposition.status import OperatingPoint
from exporter.meter.money import NANO_PER_USD
from exporter.meter.snapshot import LineView


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    meaning: str
    numeric: bool = True


def _money(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"${x:,.{digits}f}"


def _num(x: float | None, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:.0f} %"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    h, rest = divmod(int(seconds), 3600)
    return f"{h} h {rest // 60:02d} min" if h else f"{rest // 60} min {rest % 60:02d} s"


def engine_text(p: OperatingPoint | None) -> str:
    """Engine, version and precision in one cell ("vllm 0.8.5 · fp8"); what nothing says is left out."""
    if p is None:
        return "–"
    version = f" {p.version}" if p.version else ""
    extra = " · ".join(x for x in (p.precision, f"kv {p.kv_cache_dtype}" if p.kv_cache_dtype else "") if x)
    return f"{p.engine}{version}" + (f" · {extra}" if extra else "")


Cell = tuple[str, float | str | None]  # (text shown, sort value; None sorts last)


def _row(cells: Iterable[Cell], columns: Sequence[Column], cls: str = "") -> str:
    tds = []
    for (text, key), col in zip(cells, columns, strict=True):
        sort = "" if key is None else f' data-v="{html.escape(str(key))}"'
        numeric = ' class="n"' if col.numeric else ""
        # Long names may break after a "/" (a namespace, an org), never inside a word.
        tds.append(f"<td{numeric}{sort}>{html.escape(text).replace('/', '/<wbr>')}</td>")
    row_class = f' class="{cls}"' if cls else ""
    return f"<tr{row_class}>{''.join(tds)}</tr>"


def table(
    table_id: str, columns: Sequence[Column], rows: Sequence[str], sort_by: str, fixed: str = ""
) -> str:
    """A sortable table (by ``sort_by``, most first); ``fixed`` rows stay under the sorted ones."""
    head = "".join(
        f'<th title="{html.escape(c.meaning)}" data-numeric="{int(c.numeric)}">{html.escape(c.name)}</th>'
        for c in columns
    )
    sort = [c.name for c in columns].index(sort_by)
    tail = f'<tbody class="fixed">{fixed}</tbody>' if fixed else ""
    return (
        f'<table id="{table_id}" class="sortable" data-sort="{sort},desc"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody>{tail}</table>"
    )


def _who(v: LineView) -> list[Cell]:
    o = v.line.owner
    return [
        (o.model, o.model),
        (o.team, o.team),
        (f"{o.namespace}/{o.pod}", f"{o.namespace}/{o.pod}"),
        (f"{v.line.hardware} ({v.line.capacity})", v.line.hardware),
    ]


def _spend(v: LineView) -> list[Cell]:
    g, cost = v.gauges, sum(v.totals.cost.values()) / NANO_PER_USD
    return [
        (_pct(g.utilization), g.utilization),
        (_money(g.burn_usd_per_hour, 2), g.burn_usd_per_hour),
        (_money(g.idle_burn_usd_per_hour, 2), g.idle_burn_usd_per_hour),
        (_money(cost, 4), cost),
    ]


WHO = (
    Column("model", "The model the server serves, as it names it (or as the target maps it).", False),
    Column("team", "The team the pod's labels name: who is charged.", False),
    Column("pod", "namespace/pod holding the GPUs.", False),
    Column("hardware", "GPU type and capacity class the price is for.", False),
)
SPEND = (
    Column("utilisation", "Busy ÷ held GPU time over the window, where the GPUs report it."),
    Column(
        "$/h", "Spend rate over the window: every cost component (GPU, energy, storage, egress, support)."
    ),
    Column("idle $/h", "The part of $/h whose GPU time bought no work (no traffic, starved, exporter down)."),
    Column(
        "cost", "Spent since the exporter started (cpm_cost_usd_total): sort by it to find the big spenders."
    ),
)
INFERENCE = (
    *WHO,
    Column("engine", "Inference server as detected, with version and precision where the pod or config says.", False),
    Column("$/M input", "Input cost ÷ prompt tokens the GPUs prefilled (prefix-cache hits left out), over the window."),
    Column("$/M output", "Output cost ÷ generated tokens, over the window."),
    Column("$/M total", "Input + output cost ÷ tokens computed (cache hits left out), over the window."),
    Column("tokens/s per user", "Interactivity the price was reached at: 1 ÷ mean inter-token latency "
           "(else output rate ÷ mean running requests)."),
    Column("running", "Mean requests in the batch over the window (the concurrency of that price)."),
    Column("$/request", "Cost ÷ finished requests, over the window."),
    Column("p99 request", "99th percentile of one request's cost, from the server's token-length histograms."),
    *SPEND,
)  # fmt: skip
TRAINING = (
    *WHO,
    Column("$/M training tokens", "Cost ÷ tokens trained on, over the window."),
    Column("tokens/s", "Tokens trained on per second over the window ($/h ÷ 3600 ÷ $ per token)."),
    Column("done", "Tokens the job's own counter shows ÷ its target tokens (config)."),
    Column("ETA", "Time left to the target at the window's rate."),
    Column("projected cost", "Spent so far + remaining tokens at the window's $ per token."),
    *SPEND,
)
IDLE = (
    Column("hardware", "GPU type and capacity class held by no pod.", False),
    Column("$/h", "Spend rate of GPUs no pod holds, over the window: all of it idle money."),
    Column("cost", "Spent on GPUs no pod held since the exporter started."),
)
TENANTS = (
    Column(
        "calling team", "The team a gateway counted tokens for (__direct__: no gateway counted them).", False
    ),
    Column("model", "The shared server's model.", False),
    Column("pod", "namespace/pod of the shared server.", False),
    Column("cost", "Money claimed by this team's tokens since the exporter started."),
    Column("input tokens", "Input tokens the gateway counted for this team."),
    Column("output tokens", "Output tokens the gateway counted for this team."),
    Column("$/M tokens", "This team's cost ÷ its tokens over the window."),
    Column("tokens/s per user", "The shared server's interactivity over the window."),
)


def _by_cost(lines: Sequence[LineView]) -> list[LineView]:
    """Most money first, as the page sorts by default (and as a page without JavaScript shows)."""
    return sorted(lines, key=lambda v: (-sum(v.totals.cost.values()), v.line.owner.model, v.line.owner.pod))


def inference_table(lines: Sequence[LineView], points: dict[tuple[str, str, str], OperatingPoint]) -> str:
    rows = []
    for v in _by_cost(lines):
        g, o = v.gauges, v.line.owner
        engine = engine_text(points.get((o.namespace, o.pod, o.model)))
        p99 = dict(g.usd_per_request_quantiles).get(0.99)
        cells = [
            *_who(v),
            (engine, engine),
            (_money(g.usd_per_million_input), g.usd_per_million_input),
            (_money(g.usd_per_million_output), g.usd_per_million_output),
            (_money(g.usd_per_million_total), g.usd_per_million_total),
            (_num(g.tokens_per_second_per_user, ".1f"), g.tokens_per_second_per_user),
            (_num(g.running_requests, ".1f"), g.running_requests),
            (_money(g.usd_per_request, 5), g.usd_per_request),
            (_money(p99, 5), p99),
            *_spend(v),
        ]
        rows.append(_row(cells, INFERENCE))
    return table("cpm", INFERENCE, rows, "cost")


def _tokens_per_second(v: LineView) -> float | None:
    """Over the window, exactly: ($/h ÷ 3600) ÷ ($/M ÷ 1e6) = tokens ÷ seconds."""
    g = v.gauges
    if g.burn_usd_per_hour is None or not g.usd_per_million_total:
        return None
    return g.burn_usd_per_hour / 3600 / (g.usd_per_million_total / 1e6)


def training_table(lines: Sequence[LineView]) -> str:
    rows = []
    for v in _by_cost(lines):
        p = v.projection
        done = p.tokens_done / p.target_tokens if p and p.target_tokens > 0 else None
        speed = _tokens_per_second(v)
        cells = [
            *_who(v),
            (_money(v.gauges.usd_per_million_total), v.gauges.usd_per_million_total),
            (_num(speed, ",.0f"), speed),
            (_pct(done), done),
            (_duration(p.eta_seconds if p else None), p.eta_seconds if p else None),
            (_money(p.projected_total_usd if p else None, 2), p.projected_total_usd if p else None),
            *_spend(v),
        ]
        rows.append(_row(cells, TRAINING))
    return table("training", TRAINING, rows, "cost")


def idle_table(lines: Sequence[LineView]) -> str:
    rows = []
    for v in _by_cost(lines):
        cost = sum(v.totals.cost.values()) / NANO_PER_USD
        where = f"{v.line.hardware} ({v.line.capacity})"
        cells = [
            (where, where),
            (_money(v.gauges.burn_usd_per_hour, 2), v.gauges.burn_usd_per_hour),
            (_money(cost, 4), cost),
        ]
        rows.append(_row(cells, IDLE, "idle"))
    return table("idle", IDLE, rows, "cost")


def tenant_table(lines: Sequence[LineView]) -> str:
    """One row per (served line, calling team); each line's money waiting for a count under them."""
    rows = []
    claims = sorted(
        ((v, t, x) for v in lines for t, x in v.tenants.totals.items()),
        key=lambda r: (-r[2].cost, r[0].line.owner.model, r[1]),
    )
    for v, tenant, x in claims:
        o = v.line.owner
        cpm = v.tenants.usd_per_million.get(tenant)
        cells: list[Cell] = [
            (tenant, tenant),
            (o.model, o.model),
            (f"{o.namespace}/{o.pod}", f"{o.namespace}/{o.pod}"),
            (_money(x.cost / NANO_PER_USD, 4), x.cost),
            (_num(x.input_tokens, ",.0f"), x.input_tokens),
            (_num(x.output_tokens, ",.0f"), x.output_tokens),
            (_money(cpm), cpm),
            (_num(v.gauges.tokens_per_second_per_user, ".1f"), v.gauges.tokens_per_second_per_user),
        ]
        rows.append(_row(cells, TENANTS))
    if not rows:
        return ""
    waiting = "".join(
        f'<tr class="waiting"><td colspan="3">waiting for the gateway\'s count — {html.escape(v.line.owner.model)} '
        f"on {html.escape(f'{v.line.owner.namespace}/{v.line.owner.pod}')}</td>"
        f'<td class="n">{_money(v.tenants.waiting_nano / NANO_PER_USD, 4)}</td><td colspan="4"></td></tr>'
        for v in lines
        if v.tenants.totals
    )
    return table("tenants", TENANTS, rows, "cost", fixed=waiting)


def legend(*tables: tuple[str, Sequence[Column]]) -> str:
    """Every column of every table with what it means, table by table (a name means what its table says)."""
    parts = "".join(
        f"<h3>{html.escape(title)}</h3><dl>"
        + "".join(f"<dt>{html.escape(c.name)}</dt><dd>{html.escape(c.meaning)}</dd>" for c in columns)
        + "</dl>"
        for title, columns in tables
        if columns
    )
    return f'<details id="legend"><summary>What the columns mean</summary>{parts}</details>'
