"""One model in detail: its CPM by direction, interactivity, traffic, and its money by component, hardware, node, pod."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from grafana.cost_dashboards import CPM_MODEL, INFERENCE, INTERACTIVITY, TOTAL, USD_PER_REQUEST
from grafana.panels import (
    HARDWARE,
    MODEL,
    NAMESPACE,
    PERCENT,
    REQUESTS_PER_S,
    SHORT,
    TOKENS_PER_S,
    USD,
    Column,
    cluster_variable,
    info_table,
    label_variable,
    new_dashboard,
    row,
    sel,
    stat_panel,
    table_panel,
    timeseries_panel,
    xy_panel,
)

PERCENTILE = "cpm_usd_per_request_percentile"
P99 = 'percentile="99"'


def model_detail() -> dashboard.Dashboard:
    lines = (NAMESPACE, MODEL, HARDWARE)
    pods = "node, namespace, pod, hardware, capacity_class"
    cost = sel("cpm_cost_usd_total", *lines)
    return (
        new_dashboard(
            "cpm-model",
            "CPM: model detail",
            "One model: its CPM by direction, interactivity, traffic and where its money goes.",
            [
                cluster_variable(),
                label_variable("namespace", sel("cpm_tokens_total", INFERENCE), "namespace"),
                label_variable(
                    "model",
                    sel("cpm_tokens_total", NAMESPACE, INFERENCE),
                    "model",
                    multi=False,
                    include_all=False,
                ),
                label_variable("hardware", sel("cpm_tokens_total", MODEL), "hardware"),
            ],
        )
        .with_row(row("Cost per million tokens"))
        .with_panel(
            stat_panel(
                "CPM (total)", "Fleet $/M tokens of the model, 5 minutes.", USD, sel(CPM_MODEL, TOTAL, MODEL)
            )
        )
        .with_panel(
            stat_panel(
                "Tokens/s per user", "Output-weighted interactivity.", TOKENS_PER_S, sel(INTERACTIVITY, MODEL)
            )
        )
        .with_panel(
            stat_panel(
                "$ per request", "All inference $ / finished requests.", USD, sel(USD_PER_REQUEST, MODEL)
            )
        )
        .with_panel(
            stat_panel(
                "Spend ($/h)",
                "Money per hour on the model.",
                USD,
                f"3600 * sum(rate({cost}[$__rate_interval]))",
            )
        )
        .with_panel(
            timeseries_panel(
                "CPM by direction",
                "Input (prefilled tokens, cache hits excluded), output and total $/M tokens.",
                USD,
                [(sel(CPM_MODEL, MODEL), "{{direction}}")],
            )
        )
        .with_panel(
            timeseries_panel(
                "Tokens/s per user",
                "Fleet figure weighted by output tokens, and each pod's own gauge (method = where it came from).",
                TOKENS_PER_S,
                [
                    (sel(INTERACTIVITY, MODEL), "fleet (output-weighted)"),
                    (sel("cpm_tokens_per_second_per_user", *lines), "{{pod}} ({{method}})"),
                ],
            )
        )
        .with_panel(
            timeseries_panel(
                "Concurrency each CPM was reached at",
                "Mean requests in each pod's batch (running) and queued (waiting) over the exporter's window, from "
                "the servers' own gauges: with the CPM and the tokens/s per user above, the operating point. A CPM "
                "that rises while concurrency falls is a quieter server, not a dearer one.",
                SHORT,
                [
                    (sel("cpm_running_requests", *lines), "{{pod}} running"),
                    (sel("cpm_waiting_requests", *lines), "{{pod}} waiting"),
                ],
            )
        )
        .with_panel(
            info_table(
                "Operating point per pod",
                "cpm_operating_point_info: the engine each pod's server runs the model on, its version, the weights' "
                "precision and the KV-cache dtype (from annotations, container flags and image tag, or the config; "
                "unknown where nothing says). CPMs are comparable only at the same operating point.",
                sel("cpm_operating_point_info", NAMESPACE, MODEL),
                hide=("instance", "__name__"),
                span=12,
            )
        )
        .with_panel(
            timeseries_panel(
                "Operating point changes",
                "cpm_operating_point_changes_total: a rollout to another engine version, precision or served model. "
                "A CPM jump at the same moment is the change, not the traffic.",
                SHORT,
                [
                    (
                        f"increase({sel('cpm_operating_point_changes_total', NAMESPACE)}[$__rate_interval])",
                        "{{namespace}}/{{pod}}",
                    )
                ],
                span=12,
            )
        )
        .with_panel(
            xy_panel(
                "CPM vs concurrency per pod",
                "One point per pod: x = mean requests in its batch (cpm_running_requests), y = its total CPM. More "
                "requests per batch spread the same GPU-hours over more tokens; the tokens/s per user each pays for "
                "it is on the panel above.",
                Column("running requests", f"max by (pod) ({sel('cpm_running_requests', *lines)})", SHORT),
                Column(
                    "$/M tokens", f"max by (pod) ({sel('cpm_usd_per_million_tokens', *lines, TOTAL)})", USD
                ),
                by="pod",
            )
        )
        .with_panel(
            timeseries_panel(
                "Distance to the published frontier",
                "cpm_frontier_ratio: each pod's live CPM ÷ the published CPM at its operating point (same hardware, "
                "model class and precision, the nearest tokens/s per user): 1 is on the frontier. Only where the "
                "dated table (or your published_table) has such a row.",
                SHORT,
                [(sel("cpm_frontier_ratio", *lines), "{{pod}} vs {{row}}")],
            )
        )
        .with_panel(
            info_table(
                "Published rows compared with",
                "cpm_published_row_info: the row, its source, date and operating point; the value is its $/M tokens.",
                sel("cpm_published_row_info"),
                hide=("instance", "__name__", "node"),
                span=12,
            )
        )
        .with_row(row("Traffic"))
        .with_panel(
            timeseries_panel(
                "Tokens/s by direction",
                "Input and output tokens per second; the prefix-cache hits are a part of input.",
                TOKENS_PER_S,
                [
                    (
                        f"sum by (direction) (rate({sel('cpm_tokens_total', *lines, INFERENCE)}[$__rate_interval]))",
                        "{{direction}}",
                    ),
                    (
                        f"sum(rate({sel('cpm_cached_input_tokens_total', *lines)}[$__rate_interval]))",
                        "input from prefix cache",
                    ),
                ],
                span=8,
            )
        )
        .with_panel(
            timeseries_panel(
                "Requests/s",
                "Finished requests per second, and by finish reason where the server says.",
                REQUESTS_PER_S,
                [
                    (f"sum(rate({sel('cpm_requests_total', *lines)}[$__rate_interval]))", "all"),
                    (
                        f"sum by (finish_reason) (rate({sel('cpm_requests_by_finish_reason_total', *lines)}[$__rate_interval]))",
                        "{{finish_reason}}",
                    ),
                ],
                span=8,
            )
        )
        .with_panel(
            timeseries_panel(
                "$ per request",
                "Fleet $ per finished request, each pod's mean, and its p50 and p99 request (where the server "
                "exports per-request length histograms).",
                USD,
                [
                    (sel(USD_PER_REQUEST, MODEL), "fleet"),
                    (sel("cpm_usd_per_request", *lines), "{{pod}}"),
                    (sel(PERCENTILE, *lines, 'percentile=~"50|99"'), "{{pod}} p{{percentile}}"),
                ],
                span=8,
            )
        )
        .with_row(row("Where the money goes"))
        .with_panel(
            timeseries_panel(
                "Spend by component ($/h)",
                "Money per hour by component.",
                USD,
                [(f"3600 * sum by (component) (rate({cost}[$__rate_interval]))", "{{component}}")],
                stacked=True,
                span=8,
            )
        )
        .with_panel(
            timeseries_panel(
                "Spend by hardware ($/h)",
                "Money per hour by hardware and capacity class.",
                USD,
                [
                    (
                        f"3600 * sum by (hardware, capacity_class) (rate({cost}[$__rate_interval]))",
                        "{{hardware}} {{capacity_class}}",
                    )
                ],
                stacked=True,
                span=8,
            )
        )
        .with_panel(
            timeseries_panel(
                "Spend by node ($/h)",
                "Money per hour by node.",
                USD,
                [(f"3600 * sum by (node) (rate({cost}[$__rate_interval]))", "{{node}}")],
                stacked=True,
                span=8,
            )
        )
        .with_row(row("Pods"))
        .with_panel(
            table_panel(
                "Pods serving the model",
                "Each pod's own gauges over the exporter's window.",
                [
                    Column(
                        "$/M tokens",
                        f"max by ({pods}) ({sel('cpm_usd_per_million_tokens', *lines, TOTAL)})",
                        USD,
                    ),
                    Column(
                        "tokens/s per user",
                        f"max by ({pods}) ({sel('cpm_tokens_per_second_per_user', *lines)})",
                        TOKENS_PER_S,
                    ),
                    Column("$/request", f"max by ({pods}) ({sel('cpm_usd_per_request', *lines)})", USD),
                    Column("p99 request", f"max by ({pods}) ({sel(PERCENTILE, *lines, P99)})", USD),
                    Column("$/h", f"max by ({pods}) ({sel('cpm_burn_usd_per_hour', *lines)})", USD),
                    Column(
                        "GPU busy", f"max by ({pods}) ({sel('cpm_gpu_utilization_ratio', *lines)})", PERCENT
                    ),
                    Column(
                        "tokens/s",
                        f"sum by ({pods}) (rate({sel('cpm_tokens_total', *lines, INFERENCE)}[$__rate_interval]))",
                        TOKENS_PER_S,
                    ),
                ],
                sort_by="$/h",
            )
        )
        .with_panel(
            timeseries_panel(
                "CPM per pod (total)",
                "Each pod's $/M tokens; split says how its money was divided between input and output.",
                USD,
                [(sel("cpm_usd_per_million_tokens", *lines, TOTAL), "{{pod}} ({{split}})")],
            )
        )
        .with_panel(
            timeseries_panel(
                "GPU utilisation per pod",
                "Busy / held GPU-seconds of each pod.",
                PERCENT,
                [(sel("cpm_gpu_utilization_ratio", *lines), "{{pod}}")],
            )
        )
    )
