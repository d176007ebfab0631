"""The operations dashboards: GPU utilisation and idle burn, and training runs (health: health_dashboard.py)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from grafana.panels import (
    HARDWARE,
    MODEL,
    NODE,
    PERCENT,
    SECONDS,
    SHORT,
    TEAM,
    TOKENS,
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
)

UTILIZATION = "node_hardware:cpm_gpu_utilization:ratio_rate5m"
IDLE_NODE = "node_reason:cpm_idle_cost_usd_per_hour:rate5m"
TRAINING = 'workload="training"'
TRAINED = 'direction="training"'
RUN = "cluster, model, team"


def gpu() -> dashboard.Dashboard:
    gpus = (HARDWARE, NODE)
    held = 'state="held"'
    return (
        new_dashboard(
            "cpm-gpu",
            "CPM: GPU utilisation and idle burn",
            "How busy the held GPUs are, what idle GPUs cost per hour and why, and the GPU inventory.",
            [
                cluster_variable(),
                label_variable("hardware", sel("cpm_gpu_seconds_total"), "hardware"),
                label_variable("node", sel("cpm_gpu_seconds_total", HARDWARE), "node"),
            ],
        )
        .with_row(row("Now"))
        .with_panel(
            stat_panel(
                "GPU utilisation",
                "Busy / held GPU-seconds over 5 minutes, where utilisation is measured.",
                PERCENT,
                f"sum({sel('node_hardware:cpm_gpu_busy_seconds:rate5m', *gpus)})"
                f" / sum({sel('node_hardware:cpm_gpu_measured_held_seconds:rate5m', *gpus)})",
            )
        )
        .with_panel(
            stat_panel(
                "Idle burn ($/h)",
                "GPU money per hour that bought no work.",
                USD,
                f"sum({sel(IDLE_NODE, NODE)})",
            )
        )
        .with_panel(
            stat_panel(
                "GPUs held",
                "GPU-seconds held by pods per second: the number of GPUs in use (MIG slices count as their share).",
                SHORT,
                f"sum(rate({sel('cpm_gpu_seconds_total', *gpus, held)}[$__rate_interval]))",
            )
        )
        .with_panel(
            stat_panel(
                "Faulted GPUs",
                "GPU units whose readings failed on the last tick (cpm_gpu_fault).",
                SHORT,
                f"count({sel('cpm_gpu_fault')} == 1) or vector(0)",
            )
        )
        .with_row(row("Utilisation"))
        .with_panel(
            timeseries_panel(
                "GPU utilisation per node and hardware",
                "Busy / held GPU-seconds of the GPUs pods hold; an unmeasured GPU is left out, not counted as 0.",
                PERCENT,
                [(sel(UTILIZATION, *gpus), "{{node}} {{hardware}}")],
            )
        )
        .with_panel(
            timeseries_panel(
                "GPU utilisation per hardware",
                "Busy / held GPU-seconds per hardware type, every node.",
                PERCENT,
                [(sel("hardware:cpm_gpu_utilization:ratio_rate5m", HARDWARE), "{{hardware}}")],
            )
        )
        .with_panel(
            timeseries_panel(
                "GPUs by state",
                "GPU-seconds per second: held by pods, busy (part of held, where measured), idle (held by nobody).",
                SHORT,
                [
                    (
                        f"sum by (state) (rate({sel('cpm_gpu_seconds_total', *gpus)}[$__rate_interval]))",
                        "{{state}}",
                    )
                ],
                span=24,
            )
        )
        .with_row(row("Idle burn"))
        .with_panel(
            timeseries_panel(
                "Idle burn by reason, cluster ($/h)",
                "unallocated: no pod held the GPU; no_traffic: held, no tokens; starved: serving, mostly not busy.",
                USD,
                [(sel("reason:cpm_idle_cost_usd_per_hour:rate5m"), "{{reason}}")],
                stacked=True,
            )
        )
        .with_panel(
            timeseries_panel(
                "Idle burn per node and reason ($/h)",
                "CpmIdleBurnHigh fires above $10/h on one node for 30 minutes.",
                USD,
                [(sel(IDLE_NODE, NODE), "{{node}} {{reason}}")],
                stacked=True,
            )
        )
        .with_panel(
            table_panel(
                "Idle cost by owner",
                "Who paid for idle GPU time over the time range (__idle__ = nobody held the GPU).",
                [
                    Column(
                        "idle cost",
                        f"sum by (node, namespace, pod, team, model, reason) "
                        f"(increase({sel('cpm_idle_cost_usd_total', *gpus)}[$__range]))",
                        USD,
                    )
                ],
                sort_by="idle cost",
            )
        )
        .with_row(row("Inventory and faults"))
        .with_panel(
            info_table(
                "GPU faults",
                "GPU units whose readings failed on the last tick: billed as held, never busy.",
                sel("cpm_gpu_fault"),
                span=8,
            )
        )
        .with_panel(
            table_panel(
                "GPUs by placement and split",
                "placed_by: the rule that placed the unit (empty: unallocated); split: how its holders share it.",
                [
                    Column(
                        "GPUs",
                        f"count by (hardware, placed_by, split) ({sel('cpm_gpu_info', HARDWARE)})",
                        SHORT,
                    )
                ],
                span=8,
            )
        )
        .with_panel(
            table_panel(
                "Prices in use",
                "$ per GPU-hour per hardware and capacity class; source=catalogue is a default, not your price.",
                [
                    Column(
                        "$/GPU-hour",
                        f"max by (hardware, capacity_class, source) ({sel('cpm_gpu_price_usd_per_hour', HARDWARE)})",
                        USD,
                    )
                ],
                span=8,
            )
        )
        .with_panel(
            table_panel(
                "GPU used by each holder",
                "Each pod's part of a GPU's SM time by the driver's per-process samples, beside how its holders "
                "split it: on a time-sliced GPU, a replica reserved and unused shows 0 % (its pod still pays).",
                [
                    Column(
                        "used",
                        f"max by (node, gpu, namespace, pod) ({sel('cpm_gpu_used_ratio', NODE)})",
                        PERCENT,
                    )
                ],
                sort_by="used",
            )
        )
        .with_panel(
            info_table(
                "GPU inventory",
                "Every GPU unit (GPU or MIG instance) the exporters found, its MIG profile, placement and split.",
                sel("cpm_gpu_info", HARDWARE),
                height=10,
            )
        )
    )


def training() -> dashboard.Dashboard:
    run = (TEAM, MODEL)
    lines = (TEAM, MODEL, TRAINING)
    progress = f"max by ({RUN}) ({sel('cpm_training_tokens_done', *lines)} / {sel('cpm_training_target_tokens', *lines)})"
    projected = f"sum by ({RUN}) ({sel('cpm_training_projected_cost_usd', *lines)})"
    eta = f"max by ({RUN}) ({sel('cpm_training_eta_seconds', *lines)})"
    per_million_now = sel("model_team:cpm_training_usd_per_million_tokens:rate5m", *run)
    per_million_run = sel("model_team:cpm_training_usd_per_million_tokens:ratio", *run)
    node_cols = "node, pod, model, team, hardware"
    return (
        new_dashboard(
            "cpm-training",
            "CPM: training runs",
            "Training runs (a run = the training lines of one model and team, over every node): cost, $/M training "
            "tokens, projected cost and ETA.",
            [
                cluster_variable(),
                label_variable("team", sel("cpm_tokens_total", TRAINED), "team"),
                label_variable("model", sel("cpm_tokens_total", TRAINED, TEAM), "model"),
            ],
        )
        .with_row(row("Runs"))
        .with_panel(
            table_panel(
                "Training runs",
                "Cost so far counts from when each exporter first saw the run. Projected cost sums every node's "
                "projection; the ETA is the slowest node's.",
                [
                    Column("cost so far", sel("model_team:cpm_training_cost_usd:sum", *run), USD),
                    Column("projected cost", projected, USD),
                    Column("progress", progress, PERCENT),
                    Column("ETA", eta, SECONDS),
                    Column("$/M tokens (run)", per_million_run, USD),
                    Column("$/M tokens (5m)", per_million_now, USD),
                    Column("$/h", sel("model_team:cpm_training_cost_usd_per_hour:rate5m", *run), USD),
                ],
                sort_by="cost so far",
            )
        )
        .with_panel(
            timeseries_panel(
                "Cost so far and projected cost",
                "Money spent on the run so far and where it is heading at the current $/token.",
                USD,
                [
                    (sel("model_team:cpm_training_cost_usd:sum", *run), "{{model}} ({{team}}) so far"),
                    (projected, "{{model}} ({{team}}) projected"),
                ],
            )
        )
        .with_panel(
            timeseries_panel(
                "$ per million training tokens",
                "Over the last 5 minutes and over the run so far.",
                USD,
                [(per_million_now, "{{model}} ({{team}}) 5m"), (per_million_run, "{{model}} ({{team}}) run")],
            )
        )
        .with_panel(
            timeseries_panel(
                "ETA",
                "Time left until the run's target at the current rate.",
                SECONDS,
                [(eta, "{{model}} ({{team}})")],
                span=8,
            )
        )
        .with_panel(
            timeseries_panel(
                "Progress",
                "Tokens done / target tokens.",
                PERCENT,
                [(progress, "{{model}} ({{team}})")],
                span=8,
            )
        )
        .with_panel(
            timeseries_panel(
                "Training tokens/s",
                "Tokens trained on per second, every node of the run.",
                TOKENS_PER_S,
                [
                    (
                        f"sum by ({RUN}) (rate({sel('cpm_tokens_total', *run, TRAINED)}[$__rate_interval]))",
                        "{{model}} ({{team}})",
                    )
                ],
                span=8,
            )
        )
        .with_row(row("Per node"))
        .with_panel(
            table_panel(
                "Training lines per node",
                "Each node's share of a run, as its exporter sees it.",
                [
                    Column(
                        "tokens done",
                        f"max by ({node_cols}) ({sel('cpm_training_tokens_done', *lines)})",
                        TOKENS,
                    ),
                    Column(
                        "target",
                        f"max by ({node_cols}) ({sel('cpm_training_target_tokens', *lines)})",
                        TOKENS,
                    ),
                    Column(
                        "projected cost",
                        f"max by ({node_cols}) ({sel('cpm_training_projected_cost_usd', *lines)})",
                        USD,
                    ),
                    Column(
                        "ETA", f"max by ({node_cols}) ({sel('cpm_training_eta_seconds', *lines)})", SECONDS
                    ),
                    Column("$/h", f"max by ({node_cols}) ({sel('cpm_burn_usd_per_hour', *lines)})", USD),
                    Column(
                        "GPU busy",
                        f"max by ({node_cols}) ({sel('cpm_gpu_utilization_ratio', *lines)})",
                        PERCENT,
                    ),
                ],
            )
        )
    )
