"""The money dashboards: fleet CPM and team chargeback (the model detail is model_dashboard.py).

Fleet figures read the recording rules of deploy/rules/cpm-exporter.rules.yml where they exist (those keep
only their level's labels, e.g. ``model``, plus ``cluster`` under Thanos/Mimir); breakdowns the rules do not
record (by namespace, pod, component) read the exporter's counters directly.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from grafana.panels import (
    HARDWARE,
    MODEL,
    NAMESPACE,
    PERCENT,
    TEAM,
    TOKENS,
    TOKENS_PER_S,
    USD,
    Column,
    cluster_variable,
    label_variable,
    new_dashboard,
    row,
    sel,
    stat_panel,
    table_panel,
    timeseries_panel,
    xy_panel,
)

INFERENCE = 'direction=~"input|output"'
INPUT = 'direction="input"'
OUTPUT = 'direction="output"'
TOTAL = 'direction="total"'
IDLE_TEAM = 'team="__idle__"'
TILE = "namespace_team_model_component:cpm_cost_usd:increase5m"  # the rules' five-minute tile of money
TILES_PER_HOUR = 12
OWNED = 'team!="__idle__"'
MODEL_NAME = 'name=~"$model"'
TEAM_NAME = 'name=~"$team"'
COST_RATE = "model_team_hardware_direction:cpm_cost_by_direction_usd:rate5m"
TOKEN_RATE = "model_team_hardware_direction:cpm_tokens:rate5m"
PREFILLED_RATE = "model_team_hardware:cpm_prefilled_input_tokens:rate5m"
CPM_MODEL = "model:cpm_usd_per_million_tokens:rate5m"
INTERACTIVITY = "model:cpm_tokens_per_second_per_user:output_weighted_mean5m"
USD_PER_REQUEST = "model:cpm_usd_per_request:rate5m"


def budget(scope: str, name_matcher: str) -> str:
    """The configured CPM budget per ``scope`` (model, team or tenant), relabelled to that label, one per cluster."""
    raw = sel("cpm_budget_usd_per_million_tokens", f'scope="{scope}"', name_matcher)
    return f'max by (cluster, {scope}) (label_replace({raw}, "{scope}", "$1", "name", "(.*)"))'


def cpm_panel(direction: str) -> dashboard.Panel:
    return timeseries_panel(
        f"CPM per model: {direction}",
        f"Fleet $ per million {direction} tokens per model, over 5 minutes ({CPM_MODEL}).",
        USD,
        [(sel(CPM_MODEL, f'direction="{direction}"', MODEL), "{{model}}")],
        span=8,
    )


def fleet() -> dashboard.Dashboard:
    models = (MODEL, HARDWARE)
    cpm_by_model = f"max without (direction) ({sel(CPM_MODEL, TOTAL, MODEL)})"
    interactivity = Column("tokens/s per user", sel(INTERACTIVITY, MODEL), TOKENS_PER_S)
    total = Column("$/M tokens (total)", cpm_by_model, USD)
    model_budget = budget("model", MODEL_NAME)
    return (
        new_dashboard(
            "cpm-fleet",
            "CPM: fleet cost per million tokens",
            "Cost per million tokens (CPM) of every model across the fleet, at the interactivity it was served at.",
            [
                cluster_variable(),
                label_variable("model", sel("cpm_tokens_total", INFERENCE), "model"),
                label_variable("hardware", sel("cpm_gpu_seconds_total"), "hardware"),
            ],
        )
        .with_row(row("Now"))
        .with_panel(
            stat_panel(
                "Fleet CPM (total)",
                "All inference $ / the tokens the GPUs computed (input without prefix-cache hits, and output) "
                '× 10⁶, over 5 minutes: the recording rules\' direction="total".',
                USD,
                f"1e6 * sum({sel(COST_RATE, *models)}) / ((sum({sel(PREFILLED_RATE, *models)})"
                f" + sum({sel(TOKEN_RATE, OUTPUT, *models)})) > 0)",
            )
        )
        .with_panel(
            stat_panel(
                "Inference spend ($/h)",
                "Inference money per hour (idle excluded).",
                USD,
                f"3600 * sum({sel(COST_RATE, *models)})",
            )
        )
        .with_panel(
            stat_panel(
                "Tokens/s",
                "Input and output tokens per second.",
                TOKENS_PER_S,
                f"sum({sel(TOKEN_RATE, *models)})",
            )
        )
        .with_panel(
            stat_panel(
                "Coverage (lowest node)",
                "Share of held GPU-seconds whose tokens could be read, on the worst node: CPMs rest on it.",
                PERCENT,
                f"min({sel('cpm_coverage_ratio')})",
            )
        )
        .with_row(row("Cost per million tokens"))
        .with_panel(cpm_panel("input"))
        .with_panel(cpm_panel("output"))
        .with_panel(cpm_panel("total"))
        .with_panel(
            timeseries_panel(
                "CPM per hardware (total)",
                "Fleet $ per million tokens on each hardware type (all models).",
                USD,
                [(sel("hardware:cpm_usd_per_million_tokens:rate5m", TOTAL, HARDWARE), "{{hardware}}")],
            )
        )
        .with_panel(
            timeseries_panel(
                "$ per request per model",
                "All inference $ / finished requests, over 5 minutes.",
                USD,
                [(sel(USD_PER_REQUEST, MODEL), "{{model}}")],
            )
        )
        .with_row(row("CPM vs interactivity"))
        .with_panel(
            xy_panel(
                "CPM vs tokens/s per user",
                "One point per model: x = output-weighted tokens/s per user, y = total CPM. Faster per user costs more per token.",
                interactivity,
                total,
                by="model",
            )
        )
        .with_panel(
            table_panel(
                "CPM and interactivity per model",
                "The same figures as the XY chart, with the CPM per direction and $/request.",
                [
                    interactivity,
                    Column("$/M input", f"max without (direction) ({sel(CPM_MODEL, INPUT, MODEL)})", USD),
                    Column("$/M output", f"max without (direction) ({sel(CPM_MODEL, OUTPUT, MODEL)})", USD),
                    total,
                    Column("$/request", sel(USD_PER_REQUEST, MODEL), USD),
                    Column("tokens/s", f"sum by (cluster, model) ({sel(TOKEN_RATE, *models)})", TOKENS_PER_S),
                ],
                sort_by="$/M tokens (total)",
                span=12,
                height=10,
            )
        )
        .with_row(row("Budgets and coverage"))
        .with_panel(
            table_panel(
                "Budget vs actual CPM per model",
                "Budgets from pricing.budgets.usd_per_million_tokens.models; CpmModelOverBudget fires above 100 %.",
                [
                    Column("budget $/M", model_budget, USD),
                    Column("actual $/M (5m)", cpm_by_model, USD),
                    Column("of budget", f"{cpm_by_model} / {model_budget}", PERCENT),
                ],
                span=12,
            )
        )
        .with_panel(
            timeseries_panel(
                "Coverage per node",
                "Share of held GPU-seconds whose tokens could be read (cpm_coverage_ratio).",
                PERCENT,
                [(sel("cpm_coverage_ratio"), "{{node}}")],
            )
        )
    )


def chargeback() -> dashboard.Dashboard:
    # Money over the range and per hour from the rules' five-minute tiles (one series per namespace, team,
    # model, workload and component), not from every pod's cost series: bench_fleet.py measured the raw
    # form at 12.9 s per panel at 1 000 nodes. The range is counted in whole tiles.
    tiles = sel(TILE, NAMESPACE, TEAM)
    spent = f"sum_over_time({tiles}[$__range])"
    per_hour = f"{TILES_PER_HOUR} * last_over_time({tiles}[10m])"
    tenant_cost = f"increase({sel('cpm_tenant_cost_usd_total', NAMESPACE, TEAM)}[$__range])"
    tenant_tokens = f"increase({sel('cpm_tenant_tokens_total', NAMESPACE, TEAM)}[$__range])"
    tokens = f"increase({sel('cpm_tokens_total', NAMESPACE, TEAM, INFERENCE)}[$__range])"
    inference_usd = (
        f"increase({sel('cpm_cost_by_direction_usd_total', NAMESPACE, TEAM, INFERENCE)}[$__range])"
    )
    team_cpm = sel("team:cpm_usd_per_million_tokens:rate5m", TOTAL, TEAM)
    team_budget = budget("team", TEAM_NAME)
    return (
        new_dashboard(
            "cpm-chargeback",
            "CPM: team chargeback",
            "What each team spent over the dashboard's time range; idle GPU money is the team __idle__.",
            [
                cluster_variable(),
                label_variable("namespace", sel("cpm_cost_usd_total"), "namespace"),
                label_variable("team", sel("cpm_cost_usd_total", NAMESPACE), "team"),
            ],
        )
        .with_row(row("Bill over the time range"))
        .with_panel(
            stat_panel(
                "Cost",
                "Money charged to the selected teams and namespaces (whole 5-minute tiles).",
                USD,
                f"sum({spent})",
                span=4,
            )
        )
        .with_panel(
            stat_panel(
                "Bill",
                "Everything charged on the nodes, including owners retired after the retention period.",
                USD,
                f"sum(increase({sel('cpm_bill_usd_total')}[$__range]))",
                span=4,
            )
        )
        .with_panel(
            stat_panel(
                "Retired owners",
                "Money of deleted pods whose series were dropped after the retention period (kept in the bill).",
                USD,
                f"sum(increase({sel('cpm_cost_retired_usd_total')}[$__range]))",
                span=4,
            )
        )
        .with_panel(
            stat_panel(
                "Unallocated (__idle__) share",
                "Share of the whole bill paid for GPUs no pod held.",
                PERCENT,
                f"sum(sum_over_time({sel(TILE, IDLE_TEAM)}[$__range]))"
                f" / sum(sum_over_time({sel(TILE)}[$__range]))",
                span=4,
            )
        )
        .with_panel(
            stat_panel(
                "Idle within owned GPUs",
                "Money of held GPUs that did no work (no_traffic, starved).",
                USD,
                f"sum(increase({sel('cpm_idle_cost_usd_total', NAMESPACE, TEAM, OWNED)}[$__range]))",
                span=4,
            )
        )
        .with_panel(
            stat_panel(
                "Spend ($/h)",
                "Money per hour over the last whole 5 minutes, idle included.",
                USD,
                f"sum({per_hour})",
                span=4,
            )
        )
        .with_panel(
            table_panel(
                "Cost per team",
                "Money per team over the time range. __idle__ = GPUs no pod held; 'idle' = the idle part of the team's own.",
                [
                    Column("cost", f"sum by (team) ({spent})", USD),
                    Column(
                        "share", f"sum by (team) ({spent}) / on () group_left () (sum({spent}) > 0)", PERCENT
                    ),
                    Column(
                        "idle",
                        f"sum by (team) (increase({sel('cpm_idle_cost_usd_total', NAMESPACE, TEAM)}[$__range]))",
                        USD,
                    ),
                    Column("tokens", f"sum by (team) ({tokens})", TOKENS),
                    Column(
                        "$/M tokens",
                        f"1e6 * sum by (team) ({inference_usd}) / (sum by (team) ({tokens}) > 0)",
                        USD,
                    ),
                ],
                sort_by="cost",
                span=12,
                height=10,
            )
        )
        .with_panel(
            table_panel(
                "Cost per team, namespace and model",
                "Money over the time range, one row per team, namespace and model.",
                [Column("cost", f"sum by (team, namespace, model) ({spent})", USD)],
                sort_by="cost",
                span=12,
                height=10,
            )
        )
        .with_row(row("Over time"))
        .with_panel(
            timeseries_panel(
                "Spend per team ($/h)",
                "Money per hour per team, stacked: the top line is the whole bill.",
                USD,
                [(f"sum by (team) ({per_hour})", "{{team}}")],
                stacked=True,
            )
        )
        .with_panel(
            timeseries_panel(
                "Cost per team, trailing 24 h",
                "team:cpm_cost_usd:increase1d: the value at 00:00 is the previous day's bill.",
                USD,
                [(sel("team:cpm_cost_usd:increase1d", TEAM), "{{team}}")],
            )
        )
        .with_row(row("By calling team (gateways)"))
        .with_panel(
            table_panel(
                "Cost per calling team and model",
                "Each shared model's money split by the gateway tenants whose counted tokens claimed it (oldest "
                "served tokens first); __direct__: tokens no gateway claimed within the settle time, kept by the "
                "serving pod's team. Money still waiting for a count (answers streaming) is not in it yet.",
                [
                    Column("cost", f"sum by (tenant, model) ({tenant_cost})", USD),
                    Column("tokens", f"sum by (tenant, model) ({tenant_tokens})", TOKENS),
                    Column(
                        "$/M tokens",
                        f"1e6 * sum by (tenant, model) ({tenant_cost}) / (sum by (tenant, model) ({tenant_tokens}) > 0)",
                        USD,
                    ),
                ],
                sort_by="cost",
                span=14,
            )
        )
        .with_panel(
            timeseries_panel(
                "CPM per calling team vs budget",
                "Each gateway tenant's $ per million tokens it called (5 minutes; tenant:cpm_usd_per_million_tokens"
                ":rate5m) and its budget (pricing.budgets.usd_per_million_tokens.tenants).",
                USD,
                [
                    (sel("tenant:cpm_usd_per_million_tokens:rate5m"), "{{tenant}} actual"),
                    (budget("tenant", 'name=~".+"'), "{{tenant}} budget"),
                ],
                span=10,
            )
        )
        .with_panel(
            timeseries_panel(
                "Live $/M tokens per calling team and server",
                "cpm_tenant_usd_per_million_tokens: each tenant's money per million of its tokens on each serving "
                "pod over the exporter's window, beside that pod's interactivity (tokens/s per user): the price "
                "and the operating point it was paid at.",
                USD,
                [
                    (
                        sel("cpm_tenant_usd_per_million_tokens", NAMESPACE, TEAM),
                        "{{tenant}} · {{model}} · {{pod}}",
                    ),
                ],
                span=12,
            )
        )
        .with_panel(
            timeseries_panel(
                "Interactivity of the servers teams call",
                "cpm_tokens_per_second_per_user of the lines a gateway tenant called: the same pods as the "
                "panel beside.",
                TOKENS_PER_S,
                [
                    (
                        f"{sel('cpm_tokens_per_second_per_user', NAMESPACE, TEAM)} and on (cluster, node, namespace, "
                        f"pod, model, hardware, capacity_class) "
                        f"max by (cluster, node, namespace, pod, model, hardware, capacity_class) "
                        f"({sel('cpm_tenant_waiting_usd', NAMESPACE, TEAM)})",
                        "{{model}} · {{pod}}",
                    ),
                ],
                span=12,
            )
        )
        .with_row(row("By component"))
        .with_panel(
            table_panel(
                "Cost by component",
                "Money over the time range by cost component.",
                [Column("cost", f"sum by (component) ({spent})", USD)],
                sort_by="cost",
                span=8,
            )
        )
        .with_panel(
            timeseries_panel(
                "Spend by component ($/h)",
                "Money per hour by cost component, stacked.",
                USD,
                [(f"sum by (component) ({per_hour})", "{{component}}")],
                stacked=True,
                span=16,
            )
        )
        .with_row(row("Budget vs actual CPM"))
        .with_panel(
            timeseries_panel(
                "CPM per team vs budget",
                "Each team's fleet CPM (input and output, 5 minutes) and its budget from the config.",
                USD,
                [(team_cpm, "{{team}} actual"), (team_budget, "{{team}} budget")],
            )
        )
        .with_panel(
            table_panel(
                "Budget vs actual CPM per team",
                "CpmTeamOverBudget fires when 'of budget' stays above 100 % for 30 minutes.",
                [
                    Column("budget $/M", team_budget, USD),
                    Column("actual $/M (5m)", f"max by (cluster, team) ({team_cpm})", USD),
                    Column("of budget", f"max by (cluster, team) ({team_cpm}) / {team_budget}", PERCENT),
                ],
                span=12,
            )
        )
    )
