"""The exporter's own health: GPU sources, inference targets, ticks, data quality, config and build."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from grafana.panels import (
    INSTANCE,
    SECONDS,
    SHORT,
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


def health() -> dashboard.Dashboard:
    def per_instance(metric: str) -> str:
        return f"max by (instance) ({sel(metric, INSTANCE)})"

    targets = "instance, namespace, pod, target"
    return (
        new_dashboard(
            "cpm-health",
            "CPM: exporter health",
            "Is every exporter reading its GPUs and targets, pricing every GPU-second and running its config?",
            [cluster_variable(), label_variable("instance", sel("cpm_build_info"), "instance")],
        )
        .with_row(row("Fleet"))
        .with_panel(
            stat_panel(
                "Exporters reporting",
                "Exporters with a build info series.",
                SHORT,
                f"count({sel('cpm_build_info', INSTANCE)})",
                span=4,
            )
        )
        .with_panel(
            stat_panel(
                "GPU sources down",
                "cpm_source_up == 0.",
                SHORT,
                f"count({sel('cpm_source_up', INSTANCE)} == 0) or vector(0)",
                span=4,
            )
        )
        .with_panel(
            stat_panel(
                "Targets down",
                "cpm_target_up == 0.",
                SHORT,
                f"count({sel('cpm_target_up', INSTANCE)} == 0) or vector(0)",
                span=4,
            )
        )
        .with_panel(
            stat_panel(
                "Failed config loads",
                "Exporters whose last config load failed (they run on the previous config).",
                SHORT,
                f"count({sel('cpm_config_last_reload_successful', INSTANCE)} == 0) or vector(0)",
                span=4,
            )
        )
        .with_panel(
            stat_panel(
                "Distinct configs",
                "Different config hashes in use: more than 1 means a rollout is in progress or stuck.",
                SHORT,
                f'count(count_values("hash", {sel("cpm_config_hash", INSTANCE)}))',
                span=4,
            )
        )
        .with_panel(
            stat_panel(
                "Unpriced GPU-seconds",
                "GPU-seconds charged nothing over the time range (no price for their hardware).",
                SECONDS,
                f"sum(increase({sel('cpm_unpriced_gpu_seconds_total', INSTANCE)}[$__range]))",
                span=4,
            )
        )
        .with_row(row("Sources and targets"))
        .with_panel(
            timeseries_panel(
                "GPU sources up",
                "1 if the node's GPU source (nvml, dcgm, inventory) answered on the last tick.",
                SHORT,
                [(sel("cpm_source_up", INSTANCE), "{{instance}} {{source}}")],
            )
        )
        .with_panel(
            table_panel(
                "Inference targets",
                "Last scrape of each target; errors and counter resets over the time range (0 when none).",
                [
                    Column("up", f"max by ({targets}) ({sel('cpm_target_up', INSTANCE)})", SHORT),
                    Column(
                        "scrape duration",
                        f"max by ({targets}) ({sel('cpm_target_scrape_duration_seconds', INSTANCE)})",
                        SECONDS,
                    ),
                    Column(
                        "scrape errors",
                        f"sum by ({targets}) (increase({sel('cpm_target_scrape_errors_total', INSTANCE)}[$__range]))"
                        f" or 0 * max by ({targets}) ({sel('cpm_target_up', INSTANCE)})",
                        SHORT,
                    ),
                    Column(
                        "upstream resets",
                        f"sum by ({targets}) (increase({sel('cpm_upstream_resets_total', INSTANCE)}[$__range]))"
                        f" or 0 * max by ({targets}) ({sel('cpm_target_up', INSTANCE)})",
                        SHORT,
                    ),
                ],
                span=12,
            )
        )
        .with_row(row("Scrapes and ticks"))
        .with_panel(
            timeseries_panel(
                "Target scrape duration",
                "Duration of the last scrape of each inference target.",
                SECONDS,
                [(sel("cpm_target_scrape_duration_seconds", INSTANCE), "{{instance}} {{target}}")],
                span=8,
            )
        )
        .with_panel(
            timeseries_panel(
                "Target scrape errors/s",
                "Failed scrapes per second by target and reason.",
                SHORT,
                [
                    (
                        f"sum by (target, reason) (rate({sel('cpm_target_scrape_errors_total', INSTANCE)}[$__rate_interval]))",
                        "{{target}} {{reason}}",
                    )
                ],
                span=8,
            )
        )
        .with_panel(
            timeseries_panel(
                "Tick duration",
                "Duration of the last tick (sources, meter, render) per exporter.",
                SECONDS,
                [(sel("cpm_tick_duration_seconds", INSTANCE), "{{instance}}")],
                span=8,
            )
        )
        .with_row(row("Data quality"))
        .with_panel(
            timeseries_panel(
                "Inputs rejected/s",
                "Readings rejected (NaN, Inf, negative, implausible jumps) per second, by source and reason.",
                SHORT,
                [
                    (
                        f"sum by (source, reason) (rate({sel('cpm_input_rejected_total', INSTANCE)}[$__rate_interval]))",
                        "{{source}} {{reason}}",
                    )
                ],
                span=8,
            )
        )
        .with_panel(
            timeseries_panel(
                "Owners folded into __overflow__",
                "Owner series folded by the cardinality cap over the time range (their money is kept).",
                SHORT,
                [(f"increase({sel('cpm_overflow_owners_total', INSTANCE)}[$__range])", "{{instance}}")],
                span=8,
            )
        )
        .with_panel(
            timeseries_panel(
                "Unpriced GPUs",
                "GPU-seconds per second with no price: the number of GPUs charged nothing.",
                SHORT,
                [
                    (
                        f"rate({sel('cpm_unpriced_gpu_seconds_total', INSTANCE)}[$__rate_interval])",
                        "{{instance}}",
                    )
                ],
                span=8,
            )
        )
        .with_panel(
            timeseries_panel(
                "Gateway tokens no served token matched/s",
                "cpm_gateway_unmatched_tokens_total: a gateway counted tokens of a model served here that no token "
                "this node served matched within the settle time. Steady: the gateway routes the model to other "
                "nodes too (the split here is still by its counts); a burst: the servers' counters were lost.",
                SHORT,
                [
                    (
                        f"sum by (instance, model, direction) "
                        f"(rate({sel('cpm_gateway_unmatched_tokens_total', INSTANCE)}[$__rate_interval]))",
                        "{{instance}} {{model}} {{direction}}",
                    )
                ],
                span=12,
            )
        )
        .with_panel(
            timeseries_panel(
                "Money waiting for a gateway's count",
                "cpm_tenant_waiting_usd: money of served tokens no gateway count has claimed yet (answers still "
                "streaming). It drains as answers end; one that only grows means the gateway is not counting.",
                USD,
                [
                    (
                        f"sum by (instance, model) ({sel('cpm_tenant_waiting_usd', INSTANCE)})",
                        "{{instance}} {{model}}",
                    )
                ],
                span=12,
            )
        )
        .with_row(row("Config and build"))
        .with_panel(
            table_panel(
                "Exporters",
                "Config load status and age, config hash, live-gauge window and last tick of each exporter.",
                [
                    Column("config ok", per_instance("cpm_config_last_reload_successful"), SHORT),
                    Column(
                        "config age",
                        f"time() - {per_instance('cpm_config_last_reload_success_timestamp_seconds')}",
                        SECONDS,
                    ),
                    Column("config hash", per_instance("cpm_config_hash"), "hex"),
                    Column("window", per_instance("cpm_window_seconds"), SECONDS),
                    Column("last tick", per_instance("cpm_tick_duration_seconds"), SECONDS),
                    Column(
                        "ticks/s",
                        f"sum by (instance) (rate({sel('cpm_ticks_total', INSTANCE)}[$__rate_interval]))",
                        SHORT,
                    ),
                ],
                span=12,
            )
        )
        .with_panel(
            timeseries_panel(
                "Config load succeeded",
                "1 if the exporter's last config load succeeded (CpmConfigReloadFailed fires on 0).",
                SHORT,
                [(sel("cpm_config_last_reload_successful", INSTANCE), "{{instance}}")],
            )
        )
        .with_panel(
            info_table(
                "Build info",
                "Version and mode (mode=demo: simulated data).",
                sel("cpm_build_info", INSTANCE),
                span=8,
            )
        )
        .with_panel(
            info_table(
                "Price catalogue",
                "Date of the default price catalogue built in.",
                sel("cpm_catalogue_info", INSTANCE),
                span=8,
            )
        )
        .with_panel(
            info_table(
                "Prices in use",
                "source=catalogue means a public list price, not your contract price (CpmCataloguePriceInUse).",
                sel("cpm_price_info", INSTANCE),
                span=8,
            )
        )
    )
