"""Every PromQL expression of the committed dashboards, ready to send to a Prometheus as is.

    from grafana.queries import panel_queries
    for uid, title, expr in panel_queries():
        ...  # GET /api/v1/query?query=expr must succeed and, on a fleet with REQUIREMENTS met, return data

Grafana's variables are replaced the way Grafana would with every variable at "All" (SUBSTITUTIONS):
``$__rate_interval`` and ``$__interval`` become ``1m``, ``$__range`` becomes ``1h``, ``$__range_s`` ``3600``,
and a dashboard's own template variables (``$model``, ``${model}``, ``${model:regex}``) become ``.*``, which
matches any value and an absent label. Nothing else is touched (``"$1"`` in label_replace stays).

Reads the JSON files only: no Grafana SDK and no test framework needed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DASHBOARDS = Path(__file__).resolve().parent / "dashboards"

ALL = ".*"
SUBSTITUTIONS = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range_s": "3600",
    "$__range": "1h",
}

# What a Prometheus must see for every panel query to return data (see the module docstring).
REQUIREMENTS = {
    "deploy/rules/cpm-exporter.rules.yml": "loaded, evaluated at least twice (team:cpm_cost_usd:increase1d runs every 5m)",
    "scrape interval": "at most 20s, so rate(...[1m]) has two samples",
    "inference": "traffic on at least one model: tokens, finished requests with finish reasons, prefix-cache counter",
    "training": "a training workload with target_tokens and a token counter that moves",
    "idle": "an unallocated GPU (team __idle__) and a held GPU without traffic (reason no_traffic)",
    "budgets": "pricing.budgets.usd_per_million_tokens for a model and a team that serve traffic",
    "cpm_gpu_fault": "a faulted GPU unit",
    "cpm_gpu_used_ratio": "a held GPU whose driver samples per-process SM use (NVML)",
    "cpm_target_scrape_errors_total": "a target that failed a scrape",
    "cpm_input_rejected_total": "a rejected reading (NaN, negative, ...)",
    "cpm_upstream_resets_total": "an upstream counter reset (server restart)",
    "utilisation": "a GPU whose utilisation is measured (state=busy)",
}


def load_dashboards() -> dict[str, dict[str, Any]]:
    """uid -> dashboard JSON, for every grafana/dashboards/*.json."""
    boards = (json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json")))
    return {b["uid"]: b for b in boards}


def walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in (collapsed) rows."""
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


def variable_names(board: dict[str, Any]) -> list[str]:
    return [v["name"] for v in board.get("templating", {}).get("list", [])]


def substitute(expr: str, variables: list[str], picked: dict[str, str] | None = None) -> str:
    """``expr`` with Grafana's built-in variables and the given template variables replaced (see above);
    ``picked`` sets some variables to one value (say one cluster) instead of "All"."""
    for name, value in SUBSTITUTIONS.items():
        expr = expr.replace(name, value)
    for name in sorted(variables, key=len, reverse=True):  # $model_x before $model
        value = (picked or {}).get(name) or ALL  # a plain label value (no regex characters) when picked
        expr = re.sub(r"\$\{" + re.escape(name) + r"(?::[^}]*)?\}", lambda _, v=value: v, expr)
        expr = re.sub(r"\$" + re.escape(name) + r"\b", lambda _, v=value: v, expr)
    return expr


def raw_panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard uid, panel title, expr) with the variables left in."""
    return [
        (uid, panel.get("title", ""), target["expr"])
        for uid, board in load_dashboards().items()
        for panel in walk_panels(board.get("panels", []))
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def panel_queries(picked: dict[str, str] | None = None) -> list[tuple[str, str, str]]:
    """(dashboard uid, panel title, expr with every variable substituted) for every panel query."""
    boards = load_dashboards()
    return [
        (uid, title, substitute(expr, variable_names(boards[uid]), picked))
        for uid, title, expr in raw_panel_queries()
    ]


LABEL_VALUES = re.compile(r"^label_values\((?P<expr>.+),\s*(?P<label>[a-zA-Z_]\w*)\)$", re.DOTALL)


def variable_queries() -> list[tuple[str, str, str, str]]:
    """(dashboard uid, variable name, label, inner expr substituted) for every ``label_values`` variable."""
    out = []
    for uid, board in load_dashboards().items():
        names = variable_names(board)
        for var in board.get("templating", {}).get("list", []):
            if var.get("type") != "query":
                continue
            query = var["query"] if isinstance(var["query"], str) else var["query"].get("query", "")
            match = LABEL_VALUES.match(query)
            if match is None:
                raise ValueError(f"{uid}: variable {var['name']}: not label_values(expr, label): {query!r}")
            out.append((uid, var["name"], match["label"], substitute(match["expr"], names)))
    return out
