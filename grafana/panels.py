"""The building blocks of every dashboard: datasource, variables, queries and the few panel kinds we use.

Every panel and every query points at the ``${datasource}`` variable. Every selector starts with
``cluster=~"$cluster"``: the variable's All value is ``.*``, which also matches series without a ``cluster``
label, so one Prometheus per cluster (no ``cluster`` label) and Thanos/Mimir (with one) both work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from string import ascii_uppercase

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard, prometheus, stat, table, timeseries, xychart
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import prometheus as pm
from grafana_foundation_sdk.models import xychart as xm
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DashboardLinkType,
    DataSourceRef,
    DataTransformerConfig,
    DynamicConfigValue,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

DS = DataSourceRef(type_val="prometheus", uid="${datasource}")

# Matchers of the template variables; ALL is each variable's All value.
ALL = ".*"
CLUSTER = 'cluster=~"$cluster"'
NAMESPACE = 'namespace=~"$namespace"'
TEAM = 'team=~"$team"'
MODEL = 'model=~"$model"'
HARDWARE = 'hardware=~"$hardware"'
NODE = 'node=~"$node"'
INSTANCE = 'instance=~"$instance"'

# Grafana units.
USD = "currencyUSD"
PERCENT = "percentunit"
SECONDS = "s"
TOKENS_PER_S = "count:tok/s"
TOKENS = "count:tok"
REQUESTS_PER_S = "reqps"
SHORT = "short"


def sel(metric: str, *matchers: str) -> str:
    """``metric{cluster=~"$cluster", matchers...}``."""
    return f"{metric}{{{', '.join((CLUSTER, *matchers))}}}"


TAG = "cpm-exporter"


def new_dashboard(
    uid: str, title: str, description: str, variables: Sequence[dashboard.QueryVariable]
) -> dashboard.Dashboard:
    """A dashboard tagged ``cpm-exporter`` with a link menu to its siblings and the variables in order."""
    board = (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG])
        .time("now-6h", "now")
        .refresh("1m")
        .timezone("browser")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .link(
            dashboard.DashboardLink("cpm-exporter")
            .type(DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
        .with_variable(datasource_variable())
    )
    for var in variables:
        board = board.with_variable(var)
    return board


# -- variables ---------------------------------------------------------------------------------------------


def datasource_variable() -> dashboard.DatasourceVariable:
    return dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")


def label_variable(
    name: str, selector: str, label: str, *, multi: bool = True, include_all: bool = True
) -> dashboard.QueryVariable:
    """A variable over ``label_values(selector, label)``; All is ``.*`` (it matches an absent label too)."""
    var = (
        dashboard.QueryVariable(name)
        .label(name.capitalize())
        .datasource(DS)
        .query(f"label_values({selector}, {label})")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC)
        .multi(multi)
        .include_all(include_all)
    )
    if not include_all:
        return var
    everything = (
        VariableOption(selected=True, text=["All"], value=["$__all"])
        if multi
        else VariableOption(selected=True, text="All", value="$__all")
    )
    return var.all_value(ALL).current(everything)


def cluster_variable() -> dashboard.QueryVariable:
    return label_variable("cluster", "cpm_build_info", "cluster")


# -- queries -----------------------------------------------------------------------------------------------


def _series(expr: str, legend: str, ref: str) -> prometheus.Dataquery:
    return prometheus.Dataquery().datasource(DS).ref_id(ref).expr(expr).legend_format(legend).range()


def _instant(expr: str, ref: str) -> prometheus.Dataquery:
    return (
        prometheus.Dataquery()
        .datasource(DS)
        .ref_id(ref)
        .expr(expr)
        .instant()
        .format(pm.PromQueryFormat.TABLE)
    )


def _unit(unit: str) -> list[DynamicConfigValue]:
    return [DynamicConfigValue(id_val="unit", value=unit)]


def _transform(id_val: str, options: dict[str, object]) -> DataTransformerConfig:
    return DataTransformerConfig(id_val=id_val, options=options)


def _tidy(columns: Sequence[Column], hide: Sequence[str]) -> list[DataTransformerConfig]:
    """Name the value columns and drop the clutter in every frame, then merge the frames into one row per
    label set. Dropping ``__name__`` first matters: a recorded and a raw series would never merge otherwise."""
    value = ["Value"] if len(columns) == 1 else [f"Value #{ascii_uppercase[i]}" for i in range(len(columns))]
    organize = _transform(
        "organize",
        {
            "excludeByName": dict.fromkeys(("Time", "__name__", *hide), True),
            "renameByName": {v: c.header for v, c in zip(value, columns, strict=True)},
        },
    )
    return [organize, _transform("merge", {})] if len(columns) > 1 else [organize]


# -- panels ------------------------------------------------------------------------------------------------


def row(title: str) -> dashboard.Row:
    return dashboard.Row(title)


def timeseries_panel(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[tuple[str, str]],
    *,
    stacked: bool = False,
    span: int = 12,
    height: int = 8,
) -> timeseries.Panel:
    """A time series of ``(expr, legend)`` queries; stacked areas for parts of a whole."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .unit(unit)
        .span(span)
        .height(height)
        .fill_opacity(30 if stacked else 10)
        .legend(
            cb.VizLegendOptions()
            .show_legend(True)
            .display_mode(cm.LegendDisplayMode.TABLE)
            .placement(cm.LegendPlacement.RIGHT)
            .calcs(["lastNotNull", "mean"])
        )
        .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING))
    )
    if stacked:
        panel = panel.stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL))
    for i, (expr, legend) in enumerate(queries):
        panel = panel.with_target(_series(expr, legend, ascii_uppercase[i]))
    return panel


def stat_panel(
    title: str, description: str, unit: str, expr: str, *, span: int = 6, height: int = 4
) -> stat.Panel:
    """One number: the last value of ``expr``, with its sparkline."""
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .unit(unit)
        .span(span)
        .height(height)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .graph_mode(cm.BigValueGraphMode.AREA)
        .with_target(_series(expr, "", "A"))
    )


@dataclass(frozen=True, slots=True)
class Column:
    """One value column of a table: its header, the instant query that fills it, its unit."""

    header: str
    expr: str
    unit: str


def table_panel(
    title: str,
    description: str,
    columns: Sequence[Column],
    *,
    hide: Sequence[str] = (),
    sort_by: str | None = None,
    span: int = 24,
    height: int = 8,
) -> table.Panel:
    """A table of instant queries. Each query aggregates ``by`` the same labels, so rows merge on them."""
    panel = (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .span(span)
        .height(height)
        .filterable(True)
        .transformations(_tidy(columns, hide))
    )
    if sort_by is not None:
        panel = panel.sort_by([cb.TableSortByFieldState().display_name(sort_by).desc(True)])
    for i, c in enumerate(columns):
        panel = panel.with_target(_instant(c.expr, ascii_uppercase[i])).override_by_name(
            c.header, _unit(c.unit)
        )
    return panel


def info_table(
    title: str, description: str, expr: str, *, hide: Sequence[str] = (), span: int = 24, height: int = 8
) -> table.Panel:
    """A table of the labels of an info-style series (its value, always 1, is hidden)."""
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .span(span)
        .height(height)
        .filterable(True)
        .transformations(_tidy([Column("Value", expr, SHORT)], ("Value", "job", *hide)))
        .with_target(_instant(expr, "A"))
    )


def _by_name(field: str) -> xychart.XychartXYSeriesConfigX:
    return xychart.XychartXYSeriesConfigX().matcher(xychart.MatcherConfig().id("byName").options(field))


def _by_name_y(field: str) -> xychart.XychartXYSeriesConfigY:
    return xychart.XychartXYSeriesConfigY().matcher(xychart.MatcherConfig().id("byName").options(field))


def xy_panel(
    title: str, description: str, x: Column, y: Column, *, by: str, span: int = 12, height: int = 10
) -> xychart.Panel:
    """A scatter plot, one point per value of ``by``: two instant queries merged on ``by``, then partitioned
    by it so each point is its own series (legend = the ``by`` value); the x and y fields are mapped by name."""
    partition = _transform("partitionByValues", {"fields": [by], "keepFields": False})
    return (
        xychart.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .span(span)
        .height(height)
        .transformations([*_tidy([x, y], ()), partition])
        .mapping(xm.SeriesMapping.AUTO)
        .series([xychart.XYSeriesConfig().x(_by_name(x.header)).y(_by_name_y(y.header))])
        .show(xm.XYShowMode.POINTS)
        .point_size(xychart.XychartFieldConfigPointSize().fixed(10))
        .legend(
            cb.VizLegendOptions()
            .show_legend(True)
            .display_mode(cm.LegendDisplayMode.LIST)
            .placement(cm.LegendPlacement.RIGHT)
        )
        .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.SINGLE).sort(cm.SortOrder.NONE))
        .with_target(_instant(x.expr, "A"))
        .with_target(_instant(y.expr, "B"))
        .override_by_name(x.header, _unit(x.unit))
        .override_by_name(y.header, _unit(y.unit))
    )
