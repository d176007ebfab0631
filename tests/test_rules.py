"""deploy/rules/: the Prometheus rules check, their unit tests pass, and they cover what they must.

* ``promtool check rules`` accepts the rules file and ``promtool test rules`` passes every unit test file;
* every alert has a unit test where it fires and one where it does not, and carries a severity and the
  summary / description / runbook annotations;
* every recording rule is unit-tested with expected values, or feeds a rule that is;
* every metric the rules read is a family the exporter exports (``FAMILIES``), a recording rule of the file,
  or Prometheus' ``up``; label names used in matchers and groupings exist; and every input series of the unit
  tests has exactly the labels the exporter gives that family (plus the scrape's instance and job), so the
  tests feed the rules what a real scrape does.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.exposition.families import FAMILIES

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "rules" / "cpm-exporter.rules.yml"
TEST_FILES = sorted((ROOT / "deploy" / "rules" / "tests").glob("*.yml"))

FAMILY_LABELS = {f.name: set(f.labels) for f in FAMILIES}
SCRAPE_LABELS = {"instance", "job"}  # added by Prometheus to every scraped series
# Labels a rule may group by that no family carries: `cluster` is kept where targets carry it.
EXTRA_GROUPING_LABELS = SCRAPE_LABELS | {"cluster"}
PROMETHEUS_METRICS = {"up"}
SEVERITIES = {"critical", "warning", "info"}


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool not found: apt-get install --no-install-recommends prometheus"
    return path


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


@cache
def rules_doc() -> dict[str, Any]:
    return yaml.safe_load(RULES.read_text())


def all_rules() -> list[dict[str, Any]]:
    return [rule for group in rules_doc()["groups"] for rule in group["rules"]]


def alerts() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for r in all_rules() if "alert" in r}


def rule_name(rule: dict[str, Any]) -> str:
    return rule.get("record") or rule["alert"]


def recorded_names() -> set[str]:
    return {r["record"] for r in all_rules() if "record" in r}


@cache
def unit_test_docs() -> dict[Path, dict[str, Any]]:
    return {path: yaml.safe_load(path.read_text()) for path in TEST_FILES}


def unit_tests() -> list[dict[str, Any]]:
    return [t for doc in unit_test_docs().values() for t in doc["tests"]]


# ---- a small PromQL reader: enough to list the metrics and labels an expression uses -------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}")
_MATCHER_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_NUMBER = re.compile(r"(?<![\w:])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "by", "without", "on", "ignoring"}


def read_promql(expr: str) -> tuple[set[str], dict[str, set[str]], set[str]]:
    """(metric names, {metric: labels in its matchers}, labels in by/without/on/ignoring/group_x)."""
    text = _STRING.sub('""', expr)  # strings first: a regex in a string may hold '#', '{' or '('
    text = re.sub(r"#[^\n]*", "", text)  # comments
    matchers: dict[str, set[str]] = {}
    for name, body in _SELECTOR.findall(text):
        if name:
            matchers.setdefault(name, set()).update(_MATCHER_LABEL.findall(body))
    text = _SELECTOR.sub(lambda m: f" {m.group(1) or ''} ", text)
    grouping = {
        label.strip() for body in _GROUPING.findall(text) for label in body.split(",") if label.strip()
    }
    text = _GROUPING.sub(" ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\boffset\s+\S+", " ", text)
    text = _NUMBER.sub(" ", text)
    names = {
        m.group(0)
        for m in _IDENTIFIER.finditer(text)
        if m.group(0).lower() not in _KEYWORDS and not re.match(r"\s*\(", text[m.end() :])
    }
    return names, matchers, grouping


def test_the_promql_reader_finds_metrics_labels_and_skips_functions_strings_and_numbers() -> None:
    names, matchers, grouping = read_promql(
        """
        1e6 * sum by (model, team) (rate(cpm_tokens_total{direction=~"input|output"}[5m] offset 1h))  # up
          / on (model) group_left () max by (model) (label_replace(budget:x:y, "model", "$1", "name", "(.*)"))
        and absent(up == 1)
        """
    )
    assert names == {"cpm_tokens_total", "budget:x:y", "up"}
    assert matchers == {"cpm_tokens_total": {"direction"}}
    assert grouping == {"model", "team"}


# ---- promtool ---------------------------------------------------------------------------------------------


def test_promtool_accepts_the_rules_file() -> None:
    out = run_promtool("check", "rules", str(RULES.relative_to(ROOT)))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(all_rules())} rules found" in out.stdout


def test_promtool_unit_tests_pass() -> None:
    assert TEST_FILES, "no unit test files in deploy/rules/tests/"
    out = run_promtool("test", "rules", *(str(p.relative_to(ROOT)) for p in TEST_FILES))
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("SUCCESS") == len(TEST_FILES), out.stdout + out.stderr


def test_every_unit_test_file_tests_the_rules_file_and_nothing_else() -> None:
    for path, doc in unit_test_docs().items():
        files = [(path.parent / f).resolve() for f in doc["rule_files"]]
        assert files == [RULES.resolve()], f"{path.name}: rule_files {doc['rule_files']}"


# ---- alerts -------------------------------------------------------------------------------------------------


def test_every_alert_has_a_case_where_it_fires_and_one_where_it_does_not() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for test in unit_tests():
        for case in test.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    known = set(alerts())
    # A case for a misspelt alert would pass without testing anything: promtool finds no such alert.
    assert (firing | silent) <= known, f"unit tests name unknown alerts: {sorted((firing | silent) - known)}"
    assert known - firing == set(), f"never seen firing: {sorted(known - firing)}"
    assert known - silent == set(), f"never seen not firing: {sorted(known - silent)}"


def test_every_firing_case_expects_the_alerts_annotations() -> None:
    for test in unit_tests():
        for case in test.get("alert_rule_test", []):
            for alert in case.get("exp_alerts") or []:
                assert set(alert.get("exp_annotations", {})) == {"summary", "description", "runbook"}, case


@pytest.mark.parametrize("name", sorted(alerts()))
def test_alert_has_a_severity_a_duration_and_says_what_it_means_and_what_to_do(name: str) -> None:
    rule = alerts()[name]
    assert rule["labels"]["severity"] in SEVERITIES
    assert re.fullmatch(r"\d+[smh]", rule["for"]), "an alert needs a `for`: one bad sample must not page"
    annotations = rule["annotations"]
    assert set(annotations) == {"summary", "description", "runbook"}
    assert "Meaning:" in annotations["runbook"] and "To do:" in annotations["runbook"]


def test_severities_in_use() -> None:
    by_severity = {r["labels"]["severity"] for r in alerts().values()}
    assert by_severity == SEVERITIES
    assert alerts()["CpmCataloguePriceInUse"]["labels"]["severity"] == "info"


# ---- recording rules ----------------------------------------------------------------------------------------


def test_recording_rule_names_follow_level_metric_operations() -> None:
    for rule in all_rules():
        if "record" in rule:
            level, metric, operations = rule["record"].split(":")
            assert level and operations and metric.startswith("cpm_"), rule["record"]
            assert not metric.endswith("_total"), f"{rule['record']}: a rate is no longer a _total"


def test_every_recording_rule_is_tested_with_values_or_feeds_one_that_is() -> None:
    tested: set[str] = set()
    for test in unit_tests():
        for case in test.get("promql_expr_test", []):
            names, _, _ = read_promql(case["expr"])
            if case.get("exp_samples"):
                tested |= names & recorded_names()
    assert tested, "no recording rule is tested with expected samples"
    feeds: dict[str, set[str]] = {}  # rule -> the rules that read it
    for rule in all_rules():
        for name in read_promql(rule["expr"])[0] & recorded_names():
            feeds.setdefault(name, set()).add(rule_name(rule))
    covered = set(tested)
    changed = True
    while changed:
        grown = {name for name, readers in feeds.items() if readers & covered} - covered
        covered |= grown
        changed = bool(grown)
    assert recorded_names() - covered == set()


def test_recording_rules_read_only_rules_defined_before_them() -> None:
    seen: set[str] = set()
    for rule in all_rules():
        used = read_promql(rule["expr"])[0] & recorded_names()
        assert used <= seen, f"{rule_name(rule)} reads {sorted(used - seen)} before it is defined"
        if "record" in rule:
            seen.add(rule["record"])


# ---- metrics and labels -------------------------------------------------------------------------------------


def test_every_metric_the_rules_read_is_exported_recorded_or_up() -> None:
    read: set[str] = set()
    for rule in all_rules():
        names, _, _ = read_promql(rule["expr"])
        unknown = names - FAMILY_LABELS.keys() - recorded_names() - PROMETHEUS_METRICS
        assert not unknown, f"{rule_name(rule)}: unknown metrics {sorted(unknown)}"
        read |= names
    # The reader must have seen the families the rules are about, else this test proves nothing.
    assert {"cpm_cost_usd_total", "cpm_tokens_total", "cpm_gpu_seconds_total", "up"} <= read


def test_the_annotations_query_only_exported_metrics() -> None:
    for name, rule in alerts().items():
        for text in rule["annotations"].values():
            for query in re.findall(r"`([^`]*)`\s+\$labels", text):
                names, _, _ = read_promql(query)
                assert names <= FAMILY_LABELS.keys(), f"{name}: {query}"


def test_matchers_and_groupings_use_labels_that_exist() -> None:
    any_family_label = set().union(*FAMILY_LABELS.values()) | EXTRA_GROUPING_LABELS
    for rule in all_rules():
        where = rule_name(rule)
        _, matchers, grouping = read_promql(rule["expr"])
        for metric, labels in matchers.items():
            if metric in FAMILY_LABELS:
                allowed = FAMILY_LABELS[metric] | SCRAPE_LABELS
                assert labels <= allowed, f"{where}: {metric} has no label {sorted(labels - allowed)}"
        assert grouping <= any_family_label, (
            f"{where}: no family has labels {sorted(grouping - any_family_label)}"
        )


def test_unit_test_series_have_exactly_the_labels_of_a_real_scrape() -> None:
    checked = 0
    for path, doc in unit_test_docs().items():
        for test in doc["tests"]:
            for series in test.get("input_series", []):
                names, matchers, _ = read_promql(series["series"])
                (name,) = names
                if name in FAMILY_LABELS:
                    labels = matchers.get(name, set())
                    # `cluster`: the topology label a central store's series carry (clusters.test.yml).
                    topology = {"cluster"} & labels
                    assert labels == FAMILY_LABELS[name] | SCRAPE_LABELS | topology, (
                        f"{path.name}: {series['series']}"
                    )
                    checked += 1
                else:
                    assert name in PROMETHEUS_METRICS, f"{path.name}: {name} is not exported"
    assert checked > 50
