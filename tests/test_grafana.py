"""grafana/: the committed dashboards are the generator's output, well formed, and every query is sound.

* drift: ``grafana/dashboards/*.json`` equals a fresh ``python -m grafana.generate``;
* shape: the SDK reads every file back without dropping a key; uids unique and stable; schemaVersion; every
  panel and target uses ``${datasource}``; every template variable is used; tables and charts carry units;
* PromQL: every panel query and every variable's ``label_values`` expression parses (``promtool check rules``),
  uses only metrics the exporter exports (``FAMILIES``) or the rules record, and only labels they carry.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from exporter.exposition.families import FAMILIES
from grafana.generate import DASHBOARDS, OUT, render_all
from grafana.queries import (
    load_dashboards,
    panel_queries,
    raw_panel_queries,
    substitute,
    variable_names,
    variable_queries,
    walk_panels,
)

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "rules" / "cpm-exporter.rules.yml"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
UIDS = {"cpm-fleet", "cpm-chargeback", "cpm-model", "cpm-gpu", "cpm-training", "cpm-health"}
SCRAPE_LABELS = {"instance", "job", "cluster"}  # added by the scrape or the Prometheus (external label)


# -- PromQL helpers ----------------------------------------------------------------------------------------

STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
IDENTIFIER = re.compile(r"(?<![\w:.])([a-zA-Z_:][\w:]*)(\s*\()?")
SELECTOR = re.compile(r"(?<![\w:.])([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}")
MATCHER = re.compile(r'\s*([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"\s*(?:,|$)')
KEYWORDS = {"and", "or", "unless", "offset", "bool", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads: identifiers that are not functions, keywords or labels."""
    bare = STRING.sub('""', expr)
    bare = re.sub(r"\{[^}]*\}", " ", bare)
    bare = re.sub(r"\[[^\]]*\]", " ", bare)
    bare = LABEL_LIST.sub(" ", bare)
    return {m[1] for m in IDENTIFIER.finditer(bare) if not m[2] and m[1] not in KEYWORDS}


def matched_labels(expr: str) -> list[tuple[str, str]]:
    """(metric, label) for every label matcher of every selector."""
    out = []
    for metric, body in SELECTOR.findall(expr):
        matchers = MATCHER.findall(body)
        assert "".join(MATCHER.sub("", body).split()) == "", f"unparsed matchers {body!r} in {expr}"
        out += [(metric, label) for label in matchers]
    return out


@cache
def rules_doc() -> dict[str, Any]:
    return yaml.safe_load(RULES.read_text())


@cache
def known_labels() -> dict[str, set[str]]:
    """Metric -> the labels its series carry: a family's labels, or a recording rule's level + fixed labels."""
    labels = {f.name: set(f.labels) for f in FAMILIES}
    for group in rules_doc()["groups"]:
        for rule in group["rules"]:
            if "record" in rule:
                level = rule["record"].split(":")[0].split("_")
                labels.setdefault(rule["record"], set()).update(level, rule.get("labels", {}))
    return labels


def every_query() -> list[tuple[str, str, str]]:
    """(dashboard uid, where, substituted expr) for panel queries and variable queries alike."""
    variables = [(uid, f"variable {name}", expr) for uid, name, _label, expr in variable_queries()]
    return panel_queries() + variables


def promtool_failures(exprs: list[tuple[str, str, str]], tmp_path: Path) -> list[str]:
    """Each expression as a recording rule ``check_N``; promtool's complaints mapped back to where they came from."""
    rules = {
        "groups": [
            {
                "name": "grafana",
                "rules": [{"record": f"check_{i}", "expr": e} for i, (_, _, e) in enumerate(exprs)],
            }
        ]
    }
    path = tmp_path / "grafana-queries.rules.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: apt-get install --no-install-recommends prometheus"
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=120
    )
    failures = []
    for line in (result.stdout + result.stderr).splitlines():
        found = re.search(r'"check_(\d+)": (.*)', line)
        if found:
            uid, where, expr = exprs[int(found[1])]
            failures.append(f"{uid} / {where}: {found[2]}\n    {expr}")
    if result.returncode != 0 and not failures:
        failures.append(result.stdout + result.stderr)
    return failures


# -- the generator and the committed files -----------------------------------------------------------------


def test_committed_dashboards_equal_a_fresh_generation() -> None:
    fresh = render_all()
    committed = {p.name: p.read_text() for p in OUT.glob("*.json")}
    assert sorted(committed) == sorted(fresh), "stale or missing files: run python -m grafana.generate"
    for name, text in fresh.items():
        assert committed[name] == text, f"{name} differs from the generator: run python -m grafana.generate"


def test_the_generator_check_mode_finds_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from grafana import generate

    monkeypatch.setattr(generate, "OUT", tmp_path)
    assert generate.main([]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.json" for n in DASHBOARDS)
    assert generate.main(["--check"]) == 0
    (tmp_path / "fleet-cpm.json").write_text("{}\n")
    assert generate.main(["--check"]) == 1


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


@pytest.mark.parametrize("uid", sorted(UIDS))
def test_the_sdk_reads_every_key_back(uid: str) -> None:
    """A misspelled or unknown key (``gridPoss``, ``unitt``) is dropped by the SDK's reader: none may be."""
    board = _without_none(load_dashboards()[uid])
    again = json.loads(json.dumps(Dashboard.from_json(board), cls=JSONEncoder))
    assert _without_none(again) == board


# -- structure ---------------------------------------------------------------------------------------------


def test_dashboards_have_their_stable_uids_and_a_schema_version() -> None:
    boards = load_dashboards()
    assert set(boards) == UIDS
    assert len(list(OUT.glob("*.json"))) == len(UIDS)  # uids are unique across files
    for uid, board in boards.items():
        assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 39, uid
        assert board["title"].startswith("CPM: "), uid


def test_every_panel_and_target_uses_the_datasource_variable() -> None:
    for uid, board in load_dashboards().items():
        ds = [v for v in board["templating"]["list"] if v["name"] == "datasource"]
        assert ds and ds[0]["type"] == "datasource" and ds[0]["query"] == "prometheus", uid
        for var in board["templating"]["list"]:
            if var["type"] == "query":
                assert var["datasource"] == DATASOURCE, (uid, var["name"])
        panels = [p for p in walk_panels(board["panels"]) if p["type"] != "row"]
        assert panels, uid
        for panel in panels:
            assert panel["datasource"] == DATASOURCE, (uid, panel["title"])
            assert panel["targets"], (uid, panel["title"])
            refs = [t["refId"] for t in panel["targets"]]
            assert len(set(refs)) == len(refs) and all(refs), (uid, panel["title"])
            for target in panel["targets"]:
                assert target["datasource"] == DATASOURCE, (uid, panel["title"])
                assert target["expr"].strip(), (uid, panel["title"])


def test_panels_have_unique_ids_and_fit_the_grid() -> None:
    for uid, board in load_dashboards().items():
        panels = list(walk_panels(board["panels"]))
        ids = [p["id"] for p in panels]
        assert len(set(ids)) == len(ids) and 0 not in ids, uid
        for p in panels:
            g = p["gridPos"]
            assert g["w"] > 0 and g["h"] > 0 and g["x"] + g["w"] <= 24, (uid, p["title"])


def _variable_text(board: dict[str, Any]) -> str:
    queries = [json.dumps(v.get("query", "")) for v in board["templating"]["list"]]
    targets = [
        json.dumps(p.get("datasource")) + json.dumps(p.get("targets", []))
        for p in walk_panels(board["panels"])
    ]
    return "\n".join(queries + targets)


def test_every_template_variable_is_used() -> None:
    for uid, board in load_dashboards().items():
        text = _variable_text(board)
        for name in variable_names(board):
            assert re.search(r"\$\{?" + name + r"\b", text), f"{uid}: variable {name} is never used"


def test_cluster_variable_is_optional_and_every_selector_filters_on_it() -> None:
    """All = ``.*``, which matches a missing ``cluster`` label: one Prometheus per cluster needs no label."""
    for uid, board in load_dashboards().items():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        cluster = variables["cluster"]
        assert cluster["query"] == "label_values(cpm_build_info, cluster)", uid
        assert (
            cluster["includeAll"] and cluster["allValue"] == ".*" and re.fullmatch(cluster["allValue"], "")
        ), uid
        for name, var in variables.items():
            if var["type"] == "query" and var.get("includeAll"):
                assert var["allValue"] == ".*", (uid, name)
    for uid, where, expr in raw_panel_queries():
        for metric, body in SELECTOR.findall(
            STRING.sub(lambda m: m[0].replace("{", "(").replace("}", ")"), expr)
        ):
            assert 'cluster=~"$cluster"' in body, f"{uid} / {where}: {metric} not filtered on $cluster"


def test_values_carry_units() -> None:
    for uid, board in load_dashboards().items():
        for panel in walk_panels(board["panels"]):
            where = (uid, panel["title"])
            if panel["type"] in ("timeseries", "stat"):
                assert panel["fieldConfig"]["defaults"].get("unit"), where
            if panel["type"] in ("table", "xychart"):
                renamed = [
                    name
                    for t in panel.get("transformations", [])
                    if t["id"] == "organize"
                    for old, name in t["options"]["renameByName"].items()
                    if not t["options"]["excludeByName"].get(old)
                ]
                units = {
                    o["matcher"]["options"]
                    for o in panel["fieldConfig"]["overrides"]
                    if o["properties"][0]["id"] == "unit"
                }
                assert set(renamed) <= units, where


@pytest.mark.parametrize(
    ("uid", "title", "unit"),
    [
        ("cpm-fleet", "CPM per model: total", "currencyUSD"),
        ("cpm-fleet", "Coverage per node", "percentunit"),
        ("cpm-gpu", "GPU utilisation per node and hardware", "percentunit"),
        ("cpm-training", "ETA", "s"),
        ("cpm-health", "Tick duration", "s"),
        ("cpm-chargeback", "Spend per team ($/h)", "currencyUSD"),
    ],
)
def test_units_match_what_the_panel_shows(uid: str, title: str, unit: str) -> None:
    panels = {p["title"]: p for p in walk_panels(load_dashboards()[uid]["panels"])}
    assert panels[title]["fieldConfig"]["defaults"]["unit"] == unit


def test_the_briefs_views_are_there() -> None:
    boards = load_dashboards()
    types = {uid: {p["title"]: p["type"] for p in walk_panels(b["panels"])} for uid, b in boards.items()}
    assert types["cpm-fleet"]["CPM vs tokens/s per user"] == "xychart"
    assert types["cpm-chargeback"]["Cost per team"] == "table"
    texts = {uid: json.dumps(b["panels"]) for uid, b in boards.items()}
    assert "$__range" in texts["cpm-chargeback"] and "__idle__" in texts["cpm-chargeback"]
    assert "placed_by" in json.dumps(boards["cpm-gpu"]) and "cpm_gpu_fault" in texts["cpm-gpu"]
    assert variable_names(boards["cpm-model"]).count("model") == 1
    model = next(v for v in boards["cpm-model"]["templating"]["list"] if v["name"] == "model")
    assert not model["multi"] and not model["includeAll"]


def test_every_family_is_on_a_dashboard() -> None:
    used = set().union(*(metric_names(expr) for _, _, expr in panel_queries()))
    assert {f.name for f in FAMILIES} - used == set()


# -- PromQL --------------------------------------------------------------------------------------------------


def test_substitution_replaces_grafana_variables_only() -> None:
    expr = 'label_replace(rate(x{a=~"$team", b=~"${model}", c=~"${model:regex}"}[$__rate_interval]), "t", "$1", "n", "(.*)")'
    assert (
        substitute(expr, ["team", "model"])
        == 'label_replace(rate(x{a=~".*", b=~".*", c=~".*"}[1m]), "t", "$1", "n", "(.*)")'
    )
    assert substitute("increase(x[$__range]) / $__range_s", []) == "increase(x[1h]) / 3600"
    assert substitute('x{t=~"$team_name"}', ["team"]) == 'x{t=~"$team_name"}'


def test_panel_queries_have_no_variable_left() -> None:
    queries = panel_queries()
    assert len(queries) > 80
    assert {uid for uid, _, _ in queries} == UIDS
    for uid, title, expr in queries:
        assert not re.search(r"\$(?!1\b)", expr), f"{uid} / {title}: {expr}"
    assert {(uid, title) for uid, title, _ in queries} == {
        (uid, title) for uid, title, _ in raw_panel_queries()
    }


def test_the_metric_extractor_sees_metrics_not_functions_or_labels() -> None:
    expr = (
        'sum by (model) (rate(a_total{x="b_total"}[5m])) / on (model) group_left (team) '
        "max without (direction) (model:c:rate5m) * 1e6 or vector(0) and time() - d"
    )
    assert metric_names(expr) == {"a_total", "model:c:rate5m", "d"}
    assert matched_labels('a{x="1", y=~"a,b"} + b:c{z!~""}') == [("a", "x"), ("a", "y"), ("b:c", "z")]


def test_every_query_parses(tmp_path: Path) -> None:
    exprs = every_query()
    assert not promtool_failures(exprs, tmp_path), "\n".join(promtool_failures(exprs, tmp_path))


def test_a_bad_query_is_reported_with_its_panel(tmp_path: Path) -> None:
    failures = promtool_failures(
        [("cpm-x", "Good", "sum(up)"), ("cpm-x", "Broken", "sum by (a (up)")], tmp_path
    )
    assert (
        len(failures) == 1 and failures[0].startswith("cpm-x / Broken: ") and "sum by (a (up)" in failures[0]
    )


def test_every_metric_is_exported_or_recorded() -> None:
    known = known_labels()
    for uid, where, expr in every_query():
        names = metric_names(expr)
        assert names, f"{uid} / {where}: no metric in {expr}"
        unknown = names - set(known)
        assert not unknown, f"{uid} / {where}: {sorted(unknown)} neither in FAMILIES nor recorded: {expr}"


def test_every_matcher_names_a_label_the_series_carry() -> None:
    known = known_labels()
    for uid, where, expr in every_query():
        for metric, label in matched_labels(expr):
            assert label in known[metric] | SCRAPE_LABELS, (
                f"{uid} / {where}: {metric} has no label {label!r}: {expr}"
            )


def test_variables_read_labels_their_metric_carries() -> None:
    known = known_labels()
    for uid, name, label, expr in variable_queries():
        (metric,) = metric_names(expr)
        assert label in known[metric] | SCRAPE_LABELS, (
            f"{uid}: variable {name}: {metric} has no label {label}"
        )
