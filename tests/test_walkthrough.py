"""The README's walkthrough stays true: its files, its pod, its rows, its names.

* Every block the README marks ``<!-- file: PATH -->`` is that file, byte for byte (the README cannot drift).
* ``deploy/examples/``: the vLLM Deployment passes the Kubernetes schemas (the oldest release the chart supports
  and the newest bundled), and the chart rendered with the walkthrough's values passes them too, its
  ServiceMonitor and PrometheusRule the prometheus-operator CRDs, its config the exporter's own loader.
* The pod the Deployment makes, read by the exporter's own code (the pod parser, then pods → owners and
  targets), is charged to the team, under the model, and scraped at the URL the walkthrough promises.
* The rows the walkthrough shows have the families and label sets the exporter emits (the integration test
  ``tests/integration/test_walkthrough_node.py`` checks that a node running this very pod emits them), and every
  metric, recording rule, alert, dashboard and panel it names exists.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.config.load import load_config_text
from exporter.engines.targets import OwnerRules, owner_of, targets_of
from exporter.exposition.families import FAMILIES
from exporter.sources.kube.objects import parse_pod
from tests.test_deploy import CRD_KINDS, KUBE_VERSIONS, assert_crs_pass
from tests.test_helm import render_mod

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DEPLOYMENT_FILE = ROOT / "deploy" / "examples" / "vllm-deployment.yaml"
VALUES_FILE = ROOT / "deploy" / "examples" / "walkthrough-values.yaml"
RULES_FILE = ROOT / "deploy" / "rules" / "cpm-exporter.rules.yml"
DASHBOARDS = ROOT / "grafana" / "dashboards"
TITLE = "## Walkthrough: a vLLM Deployment on a real cluster"

# The pod the walkthrough's rows name: a Deployment's pod (<deployment>-<replica set hash>-<suffix>) on a node.
POD_NAME = "qwen-7b-7c9d4b8f6d-k2x8p"
NODE = "gpu-node-1"
TEAM, MODEL = "search", "qwen2.5-7b-instruct"


# ---- helpers, shared with tests/integration/test_walkthrough_node.py -----------------------------------


def section(title: str) -> str:
    """The README's section under ``title`` (up to the next second-level heading)."""
    assert title in README, f"README has no {title!r}"
    return README.split(title, 1)[1].split("\n## ", 1)[0]


def walkthrough() -> str:
    return section(TITLE)


def example_docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(DEPLOYMENT_FILE.read_text()) if d]


def deployment() -> dict[str, Any]:
    (found,) = [d for d in example_docs() if d["kind"] == "Deployment"]
    return found


def walkthrough_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(VALUES_FILE.read_text())
    return values


def example_pod(
    *,
    name: str = POD_NAME,
    node: str = NODE,
    pod_ip: str = "10.42.3.17",
    uid: str = "5f0c2d4e-1b7a-4c8e-9d3f-2a6b8c1e4f70",
) -> dict[str, Any]:
    """The Pod the Deployment's template makes once scheduled and running, as the API server lists it."""
    dep = deployment()
    template = copy.deepcopy(dep["spec"]["template"])
    containers = template["spec"]["containers"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            **template["metadata"],
            "name": name,
            "namespace": dep["metadata"]["namespace"],
            "uid": uid,
            "creationTimestamp": "2026-12-07T09:00:00Z",
            "generateName": name.rsplit("-", 1)[0] + "-",
        },
        "spec": {**template["spec"], "nodeName": node},
        "status": {
            "phase": "Running",
            "podIP": pod_ip,
            "containerStatuses": [
                {
                    "name": c["name"],
                    "containerID": f"containerd://{i:064x}",
                    "image": c["image"],
                    "imageID": c["image"].split(":")[0] + "@sha256:" + "0" * 64,  # a stand-in digest
                    "ready": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": "2026-12-07T09:00:05Z"}},
                }
                for i, c in enumerate(containers, start=1)
            ],
        },
    }


def rendered_walkthrough_docs() -> list[dict[str, Any]]:
    docs = []
    for text in render_mod.render(walkthrough_values()).values():
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def rendered_walkthrough_config() -> str:
    (configmap,) = [
        d
        for d in rendered_walkthrough_docs()
        if d["kind"] == "ConfigMap" and "config.yaml" in d.get("data", {})
    ]
    text: str = configmap["data"]["config.yaml"]
    return text


def owner_rules(config_text: str) -> OwnerRules:
    kube = load_config_text(config_text, "configmap").kubernetes
    return OwnerRules(kube.team_label, kube.model_label, kube.namespace_teams)


def shown_rows() -> list[tuple[str, dict[str, str], float]]:
    """The exposition lines the walkthrough shows (``cpm_…{…} value`` lines of its text blocks)."""
    lines = [x for x in walkthrough().splitlines() if re.match(r"cpm_[a-z_]+\{", x)]
    assert lines, "the walkthrough shows no rows"
    rows = []
    for family in text_string_to_metric_families("\n".join(lines) + "\n"):
        rows.extend((s.name, dict(s.labels), float(s.value)) for s in family.samples)
    assert len(rows) == len(lines)
    return rows


# ---- the README quotes the files whole ----------------------------------------------------------------


def quoted_files() -> dict[str, str]:
    found = dict(re.findall(r"<!-- file: (\S+) -->\n```[a-z]*\n(.*?)```\n", README, re.DOTALL))
    return found


def test_the_walkthrough_quotes_its_files_whole() -> None:
    quoted = quoted_files()
    assert {"deploy/examples/vllm-deployment.yaml", "deploy/examples/walkthrough-values.yaml"} <= set(quoted)
    for path, text in quoted.items():
        assert (ROOT / path).read_text() == text, f"README's copy of {path} differs: update it"
    # Every marker is followed by its block: a marker whose block was edited away would be skipped above.
    assert README.count("<!-- file: ") == len(quoted)


# ---- the manifests are valid ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_example_manifests_pass_kubernetes_schemas(version: str) -> None:
    docs = example_docs()
    assert [d["kind"] for d in docs] == ["Namespace", "Deployment", "Service"]
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)
    kubernetes_validate.validate(example_pod(), version, strict=True)  # the pod it makes, as listed


def test_example_deployment_is_pinned_and_requests_one_gpu() -> None:
    (server,) = deployment()["spec"]["template"]["spec"]["containers"]
    image = server["image"]
    assert re.fullmatch(r"vllm/vllm-openai:v\d+\.\d+\.\d+", image), image  # a release tag, never latest
    for part in ("requests", "limits"):
        assert server["resources"][part]["nvidia.com/gpu"] == "1"
    service = next(d for d in example_docs() if d["kind"] == "Service")
    assert (
        service["spec"]["selector"].items() <= deployment()["spec"]["template"]["metadata"]["labels"].items()
    )


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_the_chart_with_the_walkthrough_values_passes_kubernetes_schemas(version: str) -> None:
    core = [d for d in rendered_walkthrough_docs() if d["kind"] not in CRD_KINDS]
    assert {d["kind"] for d in core} >= {"DaemonSet", "ConfigMap", "Service", "ClusterRole"}
    for doc in core:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_walkthrough_service_monitor_and_rules_pass_their_crds(tmp_path: Path) -> None:
    crs = [d for d in rendered_walkthrough_docs() if d["kind"] in CRD_KINDS]
    (monitor,) = [d for d in crs if d["kind"] == "ServiceMonitor"]
    assert all(e["honorLabels"] is True for e in monitor["spec"]["endpoints"])  # the README says why
    assert_crs_pass(crs, tmp_path)


def test_the_walkthrough_config_loads_with_its_prices_and_budgets() -> None:
    config = load_config_text(rendered_walkthrough_config(), "configmap")
    assert config.kubernetes.enabled is True
    assert config.kubernetes.podresources_socket.endswith("/kubelet.sock")  # podResources.enabled
    assert config.node_source.gpus == "nvml"
    h100 = config.pricing.gpu_prices[("H100", "on_demand")]
    assert (float(h100.usd_per_hour), h100.source) == (4.5, "config")
    budgets = config.pricing.budgets
    assert {k: float(v) for k, v in budgets.models.items()} == {MODEL: 0.5}
    assert {k: float(v) for k, v in budgets.teams.items()} == {TEAM: 1.0}


# ---- the exporter reads the pod as the walkthrough says ------------------------------------------------


def test_the_exporter_reads_team_model_and_target_from_the_example_pod() -> None:
    rules = owner_rules(rendered_walkthrough_config())
    info, node = parse_pod(example_pod())
    assert node == NODE
    owner = owner_of(info, rules)
    assert (owner.namespace, owner.pod, owner.team, owner.model, owner.workload) == (
        "llm-serving", POD_NAME, TEAM, MODEL, "inference",
    )  # fmt: skip
    (target,), problems = targets_of([info], rules)
    assert problems == ()
    assert target.name == f"llm-serving/{POD_NAME}"
    assert target.url == "http://10.42.3.17:8000/metrics"
    assert target.server == "auto"  # the engine is detected from the vllm: prefix
    assert target.started_at is not None  # the serving container is watched for restarts
    hints = target.hints
    assert (hints.version, hints.precision, hints.source) == ("0.30.0", "bfloat16", "container")


def test_the_declared_model_is_the_name_vllm_serves() -> None:
    """vLLM's own model_name label wins over the pod's: the two are one name, so the pod has one line."""
    (server,) = deployment()["spec"]["template"]["spec"]["containers"]
    assert f"--served-model-name={MODEL}" in server["args"]
    assert deployment()["spec"]["template"]["metadata"]["labels"]["model"] == MODEL


def test_without_the_labels_the_pod_is_charged_to_its_namespace_under_no_model() -> None:
    """The labels matter: the same pod stripped of them is charged to the namespace, with no model."""
    pod = example_pod()
    for key in ("team", "model"):
        del pod["metadata"]["labels"][key]
    info, _ = parse_pod(pod)
    owner = owner_of(info, owner_rules(rendered_walkthrough_config()))
    assert (owner.team, owner.model) == ("llm-serving", "")


# ---- the rows and names the walkthrough shows exist ------------------------------------------------------


FAMILY_LABELS = {f.name: f.labels for f in FAMILIES}
SAMPLE_FAMILY = {f.name + ("_total" if f.type == "counter" and not f.name.endswith("_total") else ""): f.name
                 for f in FAMILIES}  # fmt: skip


def test_the_shown_rows_have_the_exporters_label_sets_and_the_example_pods_values() -> None:
    rows = shown_rows()
    names = {name for name, _, _ in rows}
    assert {"cpm_cost_usd_total", "cpm_tokens_total", "cpm_usd_per_million_tokens",
            "cpm_tokens_per_second_per_user", "cpm_target_up", "cpm_gpu_info"} <= names  # fmt: skip
    for name, labels, _value in rows:
        family = SAMPLE_FAMILY.get(name)
        assert family, f"{name} is not a family the exporter emits"
        assert tuple(labels) == FAMILY_LABELS[family], f"{name}: labels {tuple(labels)}"
        if labels.get("pod"):
            assert (labels["namespace"], labels["pod"]) == ("llm-serving", POD_NAME)
        if "team" in labels and labels.get("workload") == "inference":
            assert (labels["team"], labels["model"]) == (TEAM, MODEL)
        if "node" in labels:
            assert labels["node"] == NODE


def rule_names() -> tuple[set[str], set[str]]:
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    rules = [r for g in groups for r in g["rules"]]
    return {r["record"] for r in rules if "record" in r}, {r["alert"] for r in rules if "alert" in r}


def test_every_metric_rule_and_alert_the_walkthrough_and_the_comparison_name_exists() -> None:
    text = walkthrough() + section("## OpenCost and cpm-exporter")
    records, alerts = rule_names()
    for name in set(re.findall(r"(?<![:\w])cpm_[a-z_]*[a-z](?![:\w])", text)):
        assert name in SAMPLE_FAMILY or name in FAMILY_LABELS, f"no metric {name}"
    for name in set(re.findall(r"\b[a-z_]+:cpm_[a-z_]+:[a-z0-9_]+", text)):
        assert name in records, f"no recording rule {name}"
    named = set(re.findall(r"\bCpm[A-Z][A-Za-z]+", text))
    assert {"CpmIdleBurnHigh", "CpmGpuUtilizationDrop", "CpmModelOverBudget", "CpmTokensStalled"} <= named
    assert named <= alerts, f"no alert {named - alerts}"


def test_the_alert_thresholds_the_walkthrough_quotes_are_the_rules() -> None:
    rules = {r["alert"]: r for g in yaml.safe_load(RULES_FILE.read_text())["groups"] for r in g["rules"]
             if "alert" in r}  # fmt: skip
    assert "node:cpm_idle_cost_usd_per_hour:rate5m > 10" in rules["CpmIdleBurnHigh"]["expr"]
    assert rules["CpmIdleBurnHigh"]["for"] == "30m"
    assert "node:cpm_gpu_utilization:ratio_rate5m < 0.30" in rules["CpmGpuUtilizationDrop"]["expr"]
    assert rules["CpmGpuUtilizationDrop"]["for"] == "30m"
    assert rules["CpmModelOverBudget"]["for"] == "30m"
    assert "[15m]" in rules["CpmTokensStalled"]["expr"] and rules["CpmTokensStalled"]["for"] == "15m"
    text = walkthrough()
    for quoted in ("$10/h", "30 %", "30 minutes"):
        assert quoted in text, quoted


def test_the_dashboards_and_panels_the_walkthrough_names_exist() -> None:
    step = walkthrough().split("**4. The chargeback dashboard**", 1)[1].split("**5.", 1)[0]
    boards = {path.name: json.loads(path.read_text()) for path in DASHBOARDS.glob("*.json")}
    named = set(re.findall(r"`([a-z-]+\.json)`", step))
    assert "team-chargeback.json" in named and named <= set(boards)
    titles = {boards[n]["title"] for n in named} | {"All"}
    panels = {p["title"] for n in named for p in boards[n]["panels"]}
    for italic in re.findall(r"(?<!\*)\*([^*]+)\*(?!\*)", step):
        title = " ".join(italic.split())  # a title may wrap
        assert title in panels | titles, f"no panel {title!r} on {sorted(named)}"
    assert boards["team-chargeback.json"]["uid"] in step
