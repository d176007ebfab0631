"""The metric families we export: one table row each (name, type, help, labels, rows).

Every line-level family carries LINE_LABELS; idle money has ``workload="idle"`` and the
team/model ``__idle__``; owners past the cardinality cap fold into ``__overflow__``.
The README's metric table is kept equal to this table by a test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from exporter.exposition.status import ExportView
from exporter.meter.money import to_usd
from exporter.meter.snapshot import LineView

LINE_LABELS = ("node", "namespace", "pod", "team", "model", "workload", "hardware", "capacity_class")
# (base label values, extra label values, value): the base is shared by every series of a
# line, so the renderer escapes it once per line rather than once per series.
Row = tuple[tuple[str, ...], tuple[str, ...], float]
Values = tuple[tuple[str, ...], float | None]  # (extra label values, value) of one line
NS = 1e9


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    type: str  # "counter" | "gauge"
    help: str
    labels: tuple[str, ...]
    rows: Callable[[ExportView], Iterable[Row]]


def line_values(node: str, v: LineView) -> tuple[str, ...]:
    o = v.line.owner
    return (node, o.namespace, o.pod, o.team, o.model, o.workload, v.line.hardware, v.line.capacity)


def _per_line(
    fn: Callable[[LineView], Iterable[tuple[tuple[str, ...], float | None]]],
) -> Callable[[ExportView], Iterable[Row]]:
    def rows(view: ExportView) -> Iterable[Row]:
        node = view.meter.node
        for v in view.meter.lines:
            base = line_values(node, v)
            for extra, value in fn(v):
                if value is not None:
                    yield base, extra, value

    return rows


def _cost(v: LineView) -> Iterable[tuple[tuple[str, ...], float | None]]:
    return (((c,), to_usd(n)) for c, n in sorted(v.totals.cost.items()))


def _gpu_seconds(v: LineView) -> Iterable[tuple[tuple[str, ...], float | None]]:
    if v.line.owner.is_idle:
        return [(("idle",), v.totals.held_ns / NS)]
    if not v.totals.held_ns:  # a pod that never held a GPU (a gateway's storage, say): nothing to say
        return []
    if not v.totals.measured_ns:  # utilisation never known: busy is unknown, not zero
        return [(("held",), v.totals.held_ns / NS)]
    return [(("held",), v.totals.held_ns / NS), (("busy",), v.totals.busy_ns / NS)]


def _is_training(v: LineView) -> bool:
    return v.line.owner.workload == "training"


def _cost_by_direction(v: LineView) -> Iterable[tuple[tuple[str, ...], float | None]]:
    if v.line.owner.is_idle or not v.totals.known & {"input_tokens", "output_tokens"}:
        return []  # no tokens ever read: an input/output split of its money would be made up
    if _is_training(v):
        return [(("training",), to_usd(v.totals.cost_input))]
    return [(("input",), to_usd(v.totals.cost_input)), (("output",), to_usd(v.totals.cost_output))]


def _tokens(v: LineView) -> Iterable[tuple[tuple[str, ...], float | None]]:
    t = v.totals
    if _is_training(v):
        directions = [("training", "input_tokens", t.input_tokens)]
    else:
        directions = [("input", "input_tokens", t.input_tokens), ("output", "output_tokens", t.output_tokens)]
    return [((direction,), n) for direction, name, n in directions if name in t.known]


def _tenant_cost(v: LineView) -> Iterable[Values]:
    return [((t,), to_usd(x.cost)) for t, x in sorted(v.tenants.totals.items())]


def _tenant_waiting(v: LineView) -> Iterable[Values]:
    return [((), to_usd(v.tenants.waiting_nano))] if v.tenants.totals else []


def _tenant_tokens(v: LineView) -> Iterable[Values]:
    return [
        row
        for t, x in sorted(v.tenants.totals.items())
        for row in (((t, "input"), x.input_tokens), ((t, "output"), x.output_tokens))
    ]


def _known(name: str) -> Callable[[LineView], Iterable[Values]]:
    """A line's total of a quantity (records.TOKEN_AMOUNTS), exported only where a server ever sent
    it: unknown is absent, not 0."""

    def rows(v: LineView) -> Iterable[Values]:
        return [((), getattr(v.totals, name))] if name in v.totals.known and not _is_training(v) else []

    return rows


def _level(gauge: str) -> Callable[[LineView], Iterable[Values]]:
    """A gauge's mean over the window (records.QUANTITIES' ``gauge``, a LiveGauges field)."""
    return lambda v: [((), getattr(v.gauges, gauge))]


def _training(field: str) -> Callable[[LineView], Iterable[tuple[tuple[str, ...], float | None]]]:
    def values(v: LineView) -> Iterable[tuple[tuple[str, ...], float | None]]:
        return [] if v.projection is None else [((), getattr(v.projection, field))]

    return values


def _cpm(v: LineView) -> Iterable[tuple[tuple[str, ...], float | None]]:
    g, split = v.gauges, v.split or "none"
    if _is_training(v):
        return [(("training", split), g.usd_per_million_total)]
    return [
        (("input", split), g.usd_per_million_input),
        (("output", split), g.usd_per_million_output),
        (("total", split), g.usd_per_million_total),
    ]


def _node(fn: Callable[[ExportView], float | None]) -> Callable[[ExportView], Iterable[Row]]:
    def rows(view: ExportView) -> Iterable[Row]:
        value = fn(view)
        return [] if value is None else [((), (view.meter.node,), value)]

    return rows


def _on_node(
    fn: Callable[[ExportView], Iterable[tuple[tuple[str, ...], float]]],
) -> Callable[[ExportView], Iterable[Row]]:
    """Node-local status families: the node label first, so a fleet tells nodes apart even
    where Prometheus's ``instance`` is a pod IP."""

    def rows(view: ExportView) -> Iterable[Row]:
        node = (view.meter.node,)
        return ((node, values, value) for values, value in fn(view))

    return rows


def _const(
    fn: Callable[[ExportView], Iterable[tuple[tuple[str, ...], float]]],
) -> Callable[[ExportView], Iterable[Row]]:
    """Families not per line: every label is an 'extra' label."""

    def rows(view: ExportView) -> Iterable[Row]:
        return (((), values, value) for values, value in fn(view))

    return rows


L = LINE_LABELS


def _frontier(view: ExportView) -> Iterable[Row]:
    for v, row, ratio in view.frontier:
        yield line_values(view.meter.node, v), (row.id,), ratio


def _published_rows(view: ExportView) -> list[tuple[tuple[str, ...], float]]:
    used = {row.id: row for _, row, _ in view.frontier}
    return [((r.id, r.hardware, r.model_class, r.precision, r.engine, str(r.tokens_per_second_per_user or ""),
              r.source, r.date), float(r.value)) for r in sorted(used.values(), key=lambda r: r.id)]  # fmt: skip


FAMILIES: tuple[Family, ...] = (
    # -- counters: what PromQL aggregates across a fleet --------------------------------------
    Family("cpm_cost_usd_total", "counter", "Money charged to an owner, by cost component, in USD.",
           (*L, "component"), _per_line(_cost)),
    Family("cpm_idle_cost_usd_total", "counter",
           "GPU money (gpu, overhead, energy) that bought idle time, by reason: unallocated (no pod held the GPU), "
           "no_traffic (held; its server served no tokens), starved (serving, busy under "
           "node_source.starved_below_utilization: the unbusy part). A subset of cpm_cost_usd_total, in USD.",
           (*L, "reason"), _per_line(lambda v: (((r,), to_usd(n)) for r, n in sorted(v.totals.idle_cost.items())))),
    Family("cpm_cost_by_direction_usd_total", "counter",
           "Money charged to an owner split into input (prefill) and output (decode) tokens, in USD; "
           "only on lines whose tokens were read (a split of a line without tokens would be made up).",
           (*L, "direction"), _per_line(_cost_by_direction)),
    Family("cpm_tokens_total", "counter",
           "Tokens processed, by direction (input = prompt, output = generated, training = trained on).",
           (*L, "direction"), _per_line(_tokens)),
    Family("cpm_tenant_cost_usd_total", "counter",
           "A line's money by the gateway tenant whose counted tokens claimed it (oldest served tokens first); "
           "tenant=\"__direct__\": tokens no gateway claimed within the settle time (the pod's own team keeps "
           "them). Plus cpm_tenant_waiting_usd, sums to the line's cost.",
           (*L, "tenant"), _per_line(_tenant_cost)),
    Family("cpm_tenant_tokens_total", "counter",
           "A line's tokens by the gateway tenant that claimed them, by direction.",
           (*L, "tenant", "direction"), _per_line(_tenant_tokens)),
    Family("cpm_gateway_unmatched_tokens_total", "counter",
           "Tokens a gateway counted for a model served here that no served token matched within the settle time "
           "(the gateway routes the model to other nodes too, or counts what the server does not).",
           ("node", "model", "direction"),
           _on_node(lambda v: [((m, d), n) for (m, d), n in sorted(v.meter.gateway_unmatched.items())])),
    Family("cpm_cached_input_tokens_total", "counter",
           "Input tokens served from a prefix cache (a part of direction=\"input\"), where the server says.",
           L, _per_line(_known("cached_input_tokens"))),
    Family("cpm_requests_by_finish_reason_total", "counter",
           "Finished requests by why they finished (stop, length, abort, error…), where the server says.",
           (*L, "finish_reason"),
           _per_line(lambda v: [((why,), n) for why, n in sorted(v.totals.requests_by_reason.items())])),
    Family("cpm_requests_total", "counter", "Finished requests (every finish reason).", L,
           _per_line(_known("requests"))),
    Family("cpm_gpu_seconds_total", "counter",
           "GPU-seconds: held by an owner, busy within held (where utilisation is known), or idle (held by nobody); "
           "a MIG instance's second counts as one (its price share applies to money, not to time). Only on lines "
           "that held a GPU.",
           (*L, "state"), _per_line(_gpu_seconds)),
    Family("cpm_bill_usd_total", "counter",
           "Everything charged on this node: the sum of cpm_cost_usd_total plus cpm_cost_retired_usd_total.",
           ("node",), _node(lambda v: to_usd(v.meter.bill_nano))),
    Family("cpm_cost_retired_usd_total", "counter",
           "Cost of owner series dropped after the retention period (a deleted pod's money, kept in the bill).",
           ("node",), _node(lambda v: to_usd(v.meter.retired_nano))),
    # -- live gauges over the window ------------------------------------------------------------
    Family("cpm_usd_per_million_tokens", "gauge",
           "Cost per million tokens over the window (input: prefilled tokens, cache hits excluded); "
           "split says how input/output money was divided.",
           (*L, "direction", "split"), _per_line(_cpm)),
    Family("cpm_tokens_per_second_per_user", "gauge",
           "Interactivity at which the CPM was reached: tokens/s seen by one user, over the window.",
           (*L, "method"),
           _per_line(lambda v: [((v.gauges.interactivity_method,), v.gauges.tokens_per_second_per_user)])),
    Family("cpm_tenant_usd_per_million_tokens", "gauge",
           "A tenant's money per million of its tokens on a line, as settled over the window; beside the line's "
           "cpm_tokens_per_second_per_user (the same line labels).",
           (*L, "tenant"), _per_line(lambda v: [((t,), x) for t, x in sorted(v.tenants.usd_per_million.items())])),
    Family("cpm_tenant_waiting_usd", "gauge",
           "A line's money whose tokens wait for a gateway's count (answers still streaming); on lines with tenants.",
           L, _per_line(_tenant_waiting)),
    Family("cpm_running_requests", "gauge",
           "Concurrency the CPM was reached at: mean requests in the server's batch over the window (the time its "
           "gauge was read), beside cpm_tokens_per_second_per_user.",
           L, _per_line(_level("running_requests"))),
    Family("cpm_waiting_requests", "gauge",
           "Mean requests queued for the server's batch over the window (the time its gauge was read).",
           L, _per_line(_level("waiting_requests"))),
    Family("cpm_usd_per_request", "gauge", "Cost per finished request over the window, in USD.", L,
           _per_line(lambda v: [((), v.gauges.usd_per_request)])),
    Family("cpm_usd_per_request_percentile", "gauge",
           "Cost of a request at a percentile (50, 90, 99) over the window, in USD: the window's $ per prompt "
           "and per output token times the same percentile of the server's prompt and output length histograms.",
           (*L, "percentile"),
           _per_line(lambda v: [((f"{q * 100:g}",), usd) for q, usd in v.gauges.usd_per_request_quantiles])),
    Family("cpm_burn_usd_per_hour", "gauge", "Spend rate over the window, in USD per hour (idle burn for idle).",
           L, _per_line(lambda v: [((), v.gauges.burn_usd_per_hour)])),
    Family("cpm_gpu_utilization_ratio", "gauge", "Busy GPU-seconds / held GPU-seconds over the window.", L,
           _per_line(lambda v: [((), v.gauges.utilization)])),
    Family("cpm_training_target_tokens", "gauge", "Tokens a training run is meant to process (from the config).",
           L, _per_line(_training("target_tokens"))),
    Family("cpm_training_tokens_done", "gauge", "Tokens a training run's own counter shows so far.", L,
           _per_line(_training("tokens_done"))),
    Family("cpm_training_projected_cost_usd", "gauge",
           "Projected cost of the whole training run on this node: spent + remaining tokens at the window's $/token.",
           L, _per_line(_training("projected_total_usd"))),
    Family("cpm_training_eta_seconds", "gauge", "Time left until the training run's target, at the window's rate.",
           L, _per_line(_training("eta_seconds"))),
    Family("cpm_coverage_ratio", "gauge",
           "Share of held GPU-seconds whose tokens could be read, over the window (provenance of CPMs).",
           ("node",), _node(lambda v: v.meter.coverage)),
    Family("cpm_window_seconds", "gauge", "Configured window of the live gauges, in seconds.", ("node",),
           _node(lambda v: v.status.window_seconds)),
    # -- prices and their provenance ------------------------------------------------------------
    Family("cpm_price_info", "gauge",
           "Price in use per hardware and capacity class; source=catalogue means a default, not your price.",
           ("hardware", "capacity_class", "source", "reference", "date"),
           _const(lambda v: [((p.hardware, p.capacity, p.source, p.reference, p.date), 1.0)
                             for p in v.status.prices_in_use])),
    Family("cpm_gpu_price_usd_per_hour", "gauge", "Price of one GPU-hour in use, in USD.",
           ("hardware", "capacity_class", "source"),
           _const(lambda v: [((p.hardware, p.capacity, p.source), float(p.usd_per_hour))
                             for p in v.status.prices_in_use])),
    Family("cpm_budget_usd_per_million_tokens", "gauge", "CPM budget from the config (for alerting).",
           ("scope", "name"),
           _const(lambda v: [*((("model", k), float(x)) for k, x in v.status.pricing.budgets.models.items()),
                             *((("team", k), float(x)) for k, x in v.status.pricing.budgets.teams.items()),
                             *((("tenant", k), float(x)) for k, x in v.status.pricing.budgets.tenants.items())])),
    # -- self-metrics --------------------------------------------------------------------------
    Family("cpm_target_up", "gauge", "1 if the last scrape of an inference target succeeded; namespace and pod "
           "name the workload it serves, so an alert names it.",
           ("node", "namespace", "pod", "target", "server"),
           _on_node(lambda v: [((t.namespace, t.pod, t.name, t.server), float(t.up)) for t in v.status.targets])),
    Family("cpm_source_up", "gauge", "1 if a node source (nvml, dcgm, inventory, kubernetes, podresources, cadvisor) answered on the last tick.",
           ("node", "source"), _on_node(lambda v: [((s.source,), float(s.up)) for s in v.status.sources])),
    Family("cpm_operating_point_info", "gauge",
           "What a pod's server ran each model with: engine (the detected server), version, precision (weights' "
           "quantisation or dtype) and KV-cache dtype, from the pod's annotations, its container's flags and image "
           "tag, the config, or the server's own info series (source); \"unknown\" where nothing says. Join on "
           "namespace, pod, model.",
           ("node", "namespace", "pod", "model", "engine", "version", "precision", "kv_cache_dtype", "source"),
           _on_node(lambda v: [((p.namespace, p.pod, p.model, p.engine, p.version or "unknown",
                                 p.precision or "unknown", p.kv_cache_dtype or "unknown", p.source or "none"), 1.0)
                                for p in v.status.operating_points])),
    Family("cpm_operating_point_changes_total", "counter",
           "Changes of a pod's operating point (engine version, precision, KV-cache dtype or served model) seen "
           "since the exporter started: mark them on a CPM graph to explain a jump.",
           ("node", "namespace", "pod"),
           _on_node(lambda v: [((ns, pod), float(n)) for (ns, pod), n in sorted(v.status.operating_changes.items())])),
    Family("cpm_frontier_ratio", "gauge",
           "A line's live total CPM ÷ the published CPM of the table row (row) at its operating point: same "
           "hardware, model class and precision, the nearest tokens/s per user. 1 = on the published frontier; the "
           "row's source, date and conditions are on cpm_published_row_info. Absent where no row matches.",
           (*L, "row"), _frontier),
    Family("cpm_published_row_info", "gauge",
           "A published CPM some line is compared with (cpm_frontier_ratio): the dated table's row, its source and "
           "date, and the operating point it was published at; the value is its USD per million tokens.",
           ("row", "hardware", "model_class", "precision", "engine", "tokens_per_second_per_user", "source", "date"),
           _const(_published_rows)),
    Family("cpm_gpu_info", "gauge", "A discovered GPU unit (a GPU or MIG instance): its index, driver name, "
           "hardware type, MIG profile, which rule placed it (fraction, podresources, process, dcgm, static; "
           "empty: unallocated) and how its holders split it (whole, fraction, overcommitted, share, replicas, equal).",
           ("node", "gpu", "index", "name", "hardware", "profile", "placed_by", "split"),
           _on_node(lambda v: [((u.gpu_id, u.index, u.name, u.hardware, u.profile, u.placed_by, u.split), 1.0)
                             for u in v.status.units])),
    Family("cpm_gpu_used_ratio", "gauge", "Part of a GPU unit's SM time each pod holding it used, from the driver's "
           "latest per-process samples: who used a shared GPU (money follows who holds it). Absent where the "
           "driver samples nothing.",
           ("node", "gpu", "namespace", "pod"),
           _on_node(lambda v: [((u.gpu_id, ns, pod), used) for u in v.status.units for ns, pod, used in u.used])),
    Family("cpm_gpu_fault", "gauge", "1 for a GPU unit whose readings failed on the last tick (gpu_is_lost, hung, "
           "...): billed as held, never counted busy.",
           ("node", "gpu", "fault"), _on_node(lambda v: [((u.gpu_id, u.fault), 1.0) for u in v.status.units if u.fault])),
    Family("cpm_target_scrape_duration_seconds", "gauge", "Duration of the last scrape of a target.",
           ("node", "target"), _on_node(lambda v: [((t.name,), t.duration_seconds) for t in v.status.targets])),
    Family("cpm_target_scrape_errors_total", "counter", "Failed scrapes of a target, by reason.",
           ("node", "target", "reason"),
           _on_node(lambda v: [((t.name, r), float(n)) for t in v.status.targets for r, n in sorted(t.errors.items())])),
    Family("cpm_upstream_resets_total", "counter", "Upstream counter resets seen (server restarts).",
           ("node", "target"), _on_node(lambda v: [((t,), float(n)) for t, n in sorted(v.meter.resets.items())])),
    Family("cpm_input_rejected_total", "counter", "Inputs rejected (NaN, Inf, negative, implausible jumps, an unusable state file: source=\"state\").",
           ("node", "source", "reason"),
           _on_node(lambda v: [((s, r), float(n)) for (s, r), n in sorted(v.meter.rejected.items())])),
    Family("cpm_overflow_owners_total", "counter",
           "Owner series folded into __overflow__ by the cardinality cap (money is kept).", ("node",),
           _on_node(lambda v: [((), float(v.meter.overflowed_owners))])),
    Family("cpm_unpriced_gpu_seconds_total", "counter", "GPU-seconds with no price (charged nothing).", ("node",),
           _on_node(lambda v: [((), v.meter.unpriced_gpu_seconds)])),
    Family("cpm_tick_duration_seconds", "gauge", "Duration of the last tick (sources, meter, render).", ("node",),
           _on_node(lambda v: [((), v.status.tick_seconds)])),
    Family("cpm_ticks_total", "counter", "Ticks completed.", ("node",), _on_node(lambda v: [((), float(v.status.ticks))])),
    Family("cpm_config_last_reload_successful", "gauge", "1 if the last config load succeeded.", (),
           _const(lambda v: [((), float(v.status.config_ok))])),
    Family("cpm_config_last_reload_success_timestamp_seconds", "gauge",
           "UNIX time of the last successful config load.", (),
           _const(lambda v: [((), v.status.config_success_timestamp)])),
    Family("cpm_config_hash", "gauge", "First 48 bits of the SHA-256 of the config in use.", (),
           _const(lambda v: [((), float(int(v.status.config_sha256[:12] or "0", 16)))])),
    Family("cpm_catalogue_info", "gauge", "Date of the default price catalogue shipped in this build.",
           ("date",), _const(lambda v: [((v.status.pricing.catalogue_date,), 1.0)])),
    Family("cpm_build_info", "gauge", "Build and mode (mode=demo means simulated data).",
           ("version", "mode"), _const(lambda v: [((v.status.version, v.status.mode), 1.0)])),
)  # fmt: skip
