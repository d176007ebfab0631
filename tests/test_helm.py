"""The Helm chart, rendered and linted by Helm's own Go engine (PyPI helm-python-sdk).

Two value sets: the defaults and EVERYTHING (every opt-in on). Checked: lint, the objects made, the security
properties, the exact RBAC, that the ConfigMap's config loads in our own loader and matches the mounts,
that each opt-in adds exactly its mounts, and that values.schema.json rejects bad values.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import helm_python as helm
import pytest
import yaml

from exporter.cli import build_parser
from exporter.config.load import load_config_text

ROOT = Path(__file__).resolve().parent.parent


def _load_render() -> ModuleType:
    """deploy/render.py is a script, not a package module: load it by path."""
    spec = importlib.util.spec_from_file_location("cpm_deploy_render", ROOT / "deploy" / "render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


render_mod = _load_render()
CHART: Path = render_mod.CHART

EVERYTHING: dict[str, Any] = {
    "image": {"repository": "registry.example.com/cpm-exporter", "digest": "sha256:" + "a" * 64},
    "imagePullSecrets": [{"name": "regcred"}],
    "logLevel": "debug",
    "lifecycle": {"enabled": True},
    "podResources": {"enabled": True},
    "hostProc": {"enabled": True},
    "cadvisor": {
        "enabled": True,
        "insecureSkipVerify": False,
        "caFile": "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
    },
    "webConfig": {"existingSecret": "cpm-web", "key": "web.yml"},
    "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "priorityClassName": "system-node-critical",
    "podAnnotations": {"example.com/owner": "finops"},
    "podLabels": {"team": "platform"},
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "Exists"}]}
                ]
            }
        }
    },
    "service": {"internalTrafficPolicy": "Local", "annotations": {"example.com/x": "y"}},
    "serviceAccount": {"annotations": {"example.com/role": "cpm"}},
    "config": {
        "node": "gpu-pool-a",
        "tick_seconds": 5,
        "window_seconds": 120,
        "max_owners": 500,
        "limits": {"scrape_timeout_seconds": 2, "max_body_bytes": 33554432, "max_samples": 500000},
        "pricing": {
            "currency": "USD",
            "catalogue": False,
            "month": "730h",
            "gpus": {"H100": {"on_demand": 4.5, "spot": 2.1, "reserved": 2.9}},
            "owned": {"A100": {"capex_usd": 15000, "amortisation_years": 4, "watts": 400}},
            "energy": {"usd_per_kwh": 0.12, "pue": 1.3},
            "egress_usd_per_gb": 0.09,
            "cross_zone_usd_per_gb": 0.01,
            "storage_usd_per_gb_month": 0.08,
            "support_uplift_percent": 10,
            "overhead": {"usd_per_node_hour": 0.5, "percent": 0},
            "output_input_weight": 4,
            "budgets": {"usd_per_million_tokens": {"models": {"m": 0.8}, "teams": {"search": 1.0}}},
        },
        "node_source": {
            "gpus": "auto",
            "capacity": "spot",
            "dcgm_url": "http://127.0.0.1:9400/metrics",
            "poll_seconds": 1,
            "call_timeout_seconds": 2,
            "hardware_names": {"NVIDIA H100 NVL": "H100"},
            "starved_below_utilization": 0.2,
            "egress_share": 0.1,
            "cross_zone_share": 0.3,
        },
        "kubernetes": {
            "enabled": True,
            "team_label": "team",
            "model_label": "model",
            "namespace_teams": {"llm-serving": "search"},
            "scrape_annotated_pods": True,
        },
    },
}


def render_docs(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every rendered object, parsed."""
    docs = []
    for text in render_mod.render(values).values():
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


def pod_spec(values: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = one(render_docs(values), "DaemonSet")["spec"]["template"]["spec"]
    return spec


def container(spec: dict[str, Any]) -> dict[str, Any]:
    assert len(spec["containers"]) == 1
    c: dict[str, Any] = spec["containers"][0]
    return c


def rendered_config(values: dict[str, Any] | None = None) -> str:
    text: str = one(render_docs(values), "ConfigMap")["data"]["config.yaml"]
    return text


# ---- chart metadata and lint ---------------------------------------------------------------------------


def test_app_version_is_the_package_version() -> None:
    # tomllib is 3.11+, and the project supports 3.10: read [project].version, the file's first `version =`.
    version = re.search(r'^version = "([^"]+)"$', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert version is not None
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == version.group(1)


@pytest.mark.parametrize("values", [None, EVERYTHING], ids=["defaults", "everything"])
def test_helm_lint_strict_finds_nothing_above_info(values: dict[str, Any] | None) -> None:
    report = helm.lint(str(CHART), values, strict=True, kube_version="v1.30.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] > 1] == []


def test_default_and_everything_make_exactly_their_objects() -> None:
    base = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Service", "DaemonSet"}
    assert sorted(d["kind"] for d in render_docs()) == sorted(base)
    assert sorted(d["kind"] for d in render_docs(EVERYTHING)) == sorted(
        base | {"ServiceMonitor", "PrometheusRule"}
    )


def test_namespaced_objects_land_in_the_release_namespace() -> None:
    docs = render_mod.render(EVERYTHING, namespace="observability")
    for text in docs.values():
        for doc in yaml.safe_load_all(text):
            if doc and doc["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
                assert doc["metadata"]["namespace"] == "observability", doc["kind"]


# ---- security ------------------------------------------------------------------------------------------


def assert_locked_down(spec: dict[str, Any]) -> None:
    """What holds in every mode: no privilege, no host namespaces, no GPU taken from the workloads."""
    c = container(spec)
    sc = c["securityContext"]
    assert sc["privileged"] is False
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}  # nothing added back, ever
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert (spec["hostNetwork"], spec["hostPID"], spec["hostIPC"]) == (False, False, False)
    resources = c["resources"]
    assert not any("gpu" in name for part in resources.values() for name in part), resources
    assert "hostPort" not in str(c["ports"])


def test_default_pod_is_non_root_and_unprivileged() -> None:
    spec = pod_spec()
    assert_locked_down(spec)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 65532
    # Its only hostPath is the state directory, and nothing but the exporter writes there.
    assert [v["name"] for v in spec["volumes"] if "hostPath" in v] == ["state"]


def test_the_state_lives_on_the_node_and_is_handed_to_the_non_root_user() -> None:
    """Issue 14: a restart continues every counter. The state directory is a hostPath made the
    non-root user's by an init container that can do nothing but chown it."""
    spec = pod_spec()
    state = next(v for v in spec["volumes"] if v["name"] == "state")
    assert state["hostPath"] == {"path": "/var/lib/cpm-exporter", "type": "DirectoryOrCreate"}
    assert {"name": "state", "mountPath": "/var/lib/cpm-exporter"} in container(spec)["volumeMounts"]
    (init,) = spec["initContainers"]
    assert init["command"] == ["chown", "65532:65532", "/var/lib/cpm-exporter"]
    assert init["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN"]}
    assert init["securityContext"]["allowPrivilegeEscalation"] is False
    assert "state_file: /var/lib/cpm-exporter/state.json" in rendered_config()
    # Another volume (an emptyDir: container restarts only) needs no chown and no hostPath.
    other = pod_spec({"state": {"volume": {"emptyDir": {}}}})
    assert "initContainers" not in other and not any("hostPath" in v for v in other["volumes"])
    # Root pods (podResources mode) need no chown; no state: no volume, no config key.
    assert "initContainers" not in pod_spec({"podResources": {"enabled": True}})
    off = {"state": {"enabled": False}}
    assert "state" not in {
        v["name"] for v in pod_spec(off)["volumes"]
    } and "state_file" not in rendered_config(off)


def test_pod_resources_mode_is_root_but_still_without_capabilities() -> None:
    spec = pod_spec(EVERYTHING)
    assert_locked_down(spec)
    assert spec["securityContext"]["runAsUser"] == 0
    assert spec["securityContext"]["runAsNonRoot"] is False


def test_nvml_comes_from_the_runtime_class_not_a_gpu_request() -> None:
    spec = pod_spec()
    env = {e["name"]: e for e in container(spec)["env"]}
    assert spec["runtimeClassName"] == "nvidia"
    assert env["NVIDIA_VISIBLE_DEVICES"]["value"] == "all"
    assert env["NVIDIA_DRIVER_CAPABILITIES"]["value"] == "utility"
    dcgm = {"node_source": {"gpus": "dcgm", "dcgm_url": "http://127.0.0.1:9400/metrics"}}
    off = pod_spec({"nvml": {"enabled": False}, "config": dcgm})
    assert "runtimeClassName" not in off
    assert not {e["name"] for e in container(off)["env"]} & {
        "NVIDIA_VISIBLE_DEVICES",
        "NVIDIA_DRIVER_CAPABILITIES",
    }


def test_nvml_source_without_nvml_access_is_refused() -> None:
    assert load_config_text(rendered_config()).node_source.gpus == "nvml"
    with pytest.raises(helm.HelmRenderError, match=r"nvml\.enabled is false"):
        render_mod.render({"nvml": {"enabled": False}})


def test_rbac_is_exactly_pods_read_and_claims_get() -> None:
    docs = render_docs()
    assert one(docs, "ClusterRole")["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["get"]},
    ]
    binding = one(docs, "ClusterRoleBinding")
    account = one(docs, "ServiceAccount")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": one(docs, "ClusterRole")["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "cpm-exporter"}
    ]
    assert pod_spec()["serviceAccountName"] == account["metadata"]["name"]
    assert {d["kind"] for d in render_docs({"rbac": {"create": False}})}.isdisjoint(
        {"ClusterRole", "ClusterRoleBinding"}
    )


def test_api_token_is_mounted_only_when_the_exporter_watches_pods() -> None:
    assert pod_spec()["automountServiceAccountToken"] is True
    assert pod_spec({"config": {"kubernetes": {"enabled": False}}})["automountServiceAccountToken"] is False
    kubelet_only = {"config": {"kubernetes": {"enabled": False}}, "cadvisor": {"enabled": True}}
    assert pod_spec(kubelet_only)["automountServiceAccountToken"] is True  # the kubelet wants the token too
    assert one(render_docs(), "ServiceAccount")["automountServiceAccountToken"] is False


def test_resources_and_probes() -> None:
    c = container(pod_spec())
    assert c["resources"] == {  # no CPU limit: throttling a tick makes it late, never cheaper
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"memory": "256Mi"},
    }
    assert c["ports"] == [{"name": "metrics", "containerPort": 9433, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}


def test_node_name_comes_from_the_downward_api() -> None:
    env = {e["name"]: e for e in container(pod_spec())["env"]}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}


def test_scheduled_on_gpu_nodes_only() -> None:
    spec = pod_spec()
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert pod_spec(EVERYTHING)["affinity"] == EVERYTHING["affinity"]


# ---- the exporter's command line and config -------------------------------------------------------------


@pytest.mark.parametrize("values", [None, EVERYTHING], ids=["defaults", "everything"])
def test_container_args_parse_with_the_exporters_own_cli(values: dict[str, Any] | None) -> None:
    args = build_parser().parse_args(container(pod_spec(values))["args"])
    assert args.command == "run"
    assert args.config == "/etc/cpm-exporter/config.yaml"
    assert args.listen == ("0.0.0.0", 9433)
    assert args.lifecycle is (values is EVERYTHING)
    assert args.log_level == ("debug" if values else "info")


@pytest.mark.parametrize("values", [None, EVERYTHING], ids=["defaults", "everything"])
def test_configmap_config_loads_in_our_loader(
    values: dict[str, Any] | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOST_IP", "10.1.2.3")  # the downward API's status.hostIP
    cfg = load_config_text(rendered_config(values), "configmap")
    on = values is EVERYTHING
    assert cfg.kubernetes.enabled is True
    assert cfg.kubernetes.proc_root == ("/host/proc" if on else "/proc")
    # Off: "" — no socket is mounted, so the exporter does not ask the kubelet.
    assert cfg.kubernetes.podresources_socket == ("/var/lib/kubelet/pod-resources/kubelet.sock" if on else "")
    if on:
        assert cfg.node == "gpu-pool-a"
        assert cfg.node_source.dcgm_url == "http://127.0.0.1:9400/metrics"
        assert cfg.node_source.cadvisor_url == "https://10.1.2.3:10250/metrics/cadvisor"
        client = cfg.node_source.cadvisor_client
        assert client.ca_file.endswith("/ca.crt") and not client.insecure_skip_verify
        assert client.bearer_token_file == "/var/run/secrets/kubernetes.io/serviceaccount/token"
    else:
        assert cfg.node_source.cadvisor_url == ""


def test_values_yaml_config_block_is_what_the_configmap_holds() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    rendered = yaml.safe_load(rendered_config())
    # the two keys the chart owns (they follow the mounts), as default mode sets them
    assert rendered["kubernetes"].pop("proc_root") == "/proc"
    assert rendered["kubernetes"].pop("podresources_socket") == ""
    assert rendered.pop("state_file") == "/var/lib/cpm-exporter/state.json"  # and the state, on the node
    assert rendered == values["config"]


def test_config_is_mounted_as_a_directory_so_updates_reach_the_pod() -> None:
    spec = pod_spec()
    mount = next(m for m in container(spec)["volumeMounts"] if m["name"] == "config")
    assert mount == {"name": "config", "mountPath": "/etc/cpm-exporter", "readOnly": True}  # no subPath
    volume = next(v for v in spec["volumes"] if v["name"] == "config")
    assert volume["configMap"]["name"] == one(render_docs(), "ConfigMap")["metadata"]["name"]
    assert "items" not in volume["configMap"]
    # No checksum annotation: a config edit must hot-reload, not roll the DaemonSet.
    template = one(render_docs(), "DaemonSet")["spec"]["template"]["metadata"]
    assert "annotations" not in template


# ---- opt-ins add exactly their mounts -----------------------------------------------------------------


def mounts(values: dict[str, Any] | None) -> tuple[dict[str, tuple[Any, ...]], dict[str, dict[str, Any]]]:
    spec = pod_spec(values)
    by_volume = {
        m["name"]: (m["mountPath"], m.get("readOnly", False)) for m in container(spec)["volumeMounts"]
    }
    return by_volume, {v["name"]: v for v in spec["volumes"]}


@pytest.mark.parametrize(
    ("values", "name", "path", "source"),
    [
        (
            {"podResources": {"enabled": True}},
            "pod-resources",
            "/var/lib/kubelet/pod-resources",
            {"hostPath": {"path": "/var/lib/kubelet/pod-resources", "type": "Directory"}},
        ),
        (
            {"hostProc": {"enabled": True}},
            "host-proc",
            "/host/proc",
            {"hostPath": {"path": "/proc", "type": "Directory"}},
        ),
        (
            {"webConfig": {"existingSecret": "cpm-web"}},
            "web-config",
            "/etc/cpm-exporter/web",
            {"secret": {"secretName": "cpm-web"}},  # the whole Secret: the config and the files it names
        ),
    ],
    ids=["podResources", "hostProc", "webConfig"],
)
def test_each_opt_in_adds_exactly_its_read_only_mount(
    values: dict[str, Any], name: str, path: str, source: dict[str, Any]
) -> None:
    base_mounts, base_volumes = mounts(None)
    got_mounts, got_volumes = mounts(values)
    assert set(base_mounts) == {"config", "tmp", "state"}
    assert {k: v for k, v in got_mounts.items() if k not in base_mounts} == {name: (path, True)}
    assert {k: v for k, v in got_volumes.items() if k not in base_volumes} == {name: {"name": name, **source}}
    assert {k: got_mounts[k] for k in base_mounts} == base_mounts


def test_only_pod_resources_mode_runs_as_root() -> None:
    for values in ({"hostProc": {"enabled": True}}, {"webConfig": {"existingSecret": "s"}}):
        assert pod_spec(values)["securityContext"]["runAsNonRoot"] is True
    assert pod_spec({"podResources": {"enabled": True}})["securityContext"]["runAsUser"] == 0


# ---- Service, ServiceMonitor, PrometheusRule ----------------------------------------------------------


def test_service_selects_the_pods_on_the_metrics_port() -> None:
    docs = render_docs()
    service = one(docs, "Service")
    pod_labels = one(docs, "DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9433, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_service_monitor_scrapes_the_service_and_labels_the_node() -> None:
    docs = render_docs(EVERYTHING)
    monitor = one(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items()
        <= one(docs, "Service")["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    assert endpoint["path"] == "/metrics"
    assert {
        "sourceLabels": ["__meta_kubernetes_pod_node_name"],
        "targetLabel": "instance",
        "action": "replace",
    } in (endpoint["relabelings"])


def test_prometheus_rule_holds_the_rules_file_verbatim() -> None:
    rule = one(render_docs(EVERYTHING), "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(render_mod.CHART_RULES.read_text())
    assert rule["spec"]["groups"], "no rule groups"


def test_chart_rules_copy_equals_deploy_rules() -> None:
    """Helm reads only inside the chart, so it keeps a copy; `python deploy/render.py` refreshes it."""
    copy = render_mod.CHART_RULES.read_bytes()
    if render_mod.RULES.exists():
        assert copy == render_mod.RULES.read_bytes(), "stale chart rules: run python deploy/render.py"
    else:  # deploy/rules not written yet: the chart carries a marked placeholder
        assert copy.startswith(b"# PLACEHOLDER")
    assert render_mod.rules_in_sync()


def test_notes_tell_how_to_reach_the_exporter() -> None:
    notes = render_mod.notes()
    assert "port-forward daemonset/cpm-exporter 9433:9433" in notes
    assert "privileged" not in notes  # only the hostPath opt-ins need that namespace level
    assert "pod-security.kubernetes.io/enforce=privileged" in render_mod.notes(
        {"hostProc": {"enabled": True}}
    )


# ---- values.schema.json ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"service": {"port": "9433"}}, "/service/port"),
        ({"service": {"port": 70000}}, "/service/port"),
        ({"image": {"tag": "latest"}}, "/image/tag"),
        ({"runAsUser": 0}, "/runAsUser"),
        ({"podResources": {"enabled": "yes"}}, "/podResources/enabled"),
        ({"config": {"kubernetes": {"proc_root": "/proc"}}}, "/config/kubernetes"),
        (
            {"config": {"pricing": {"gpus": {"H100": {"on_demand": "4.50"}}}}},
            "/config/pricing/gpus/H100/on_demand",
        ),
        ({"config": {"node_source": {"gpus": "magic"}}}, "/config/node_source/gpus"),
        ({"serviceMonitor": {"interval": 15}}, "/serviceMonitor/interval"),
        (
            {"config": {"node_source": {"dcgm_https": {"ca_file": "ca.crt"}}}},
            "/config/node_source/dcgm_https/ca_file",
        ),
        ({"config": {"kubernetes": {"scrape_https": {"verify": True}}}}, "/config/kubernetes/scrape_https"),
        ({"unknownTopLevel": True}, "unknownTopLevel"),
    ],
)
def test_schema_rejects_bad_values(values: dict[str, Any], where: str) -> None:
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmValuesError, match=re.escape(where)):
        chart.validate_schema(values)
    with pytest.raises(helm.HelmValuesError):  # and `helm install` (render) refuses them too
        render_mod.render(values)


@pytest.mark.parametrize("values", [{}, EVERYTHING], ids=["defaults", "everything"])
def test_schema_accepts_the_good_value_sets(values: dict[str, Any]) -> None:
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(values)


def leaf_paths(values: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every key path in values.yaml, descending into mappings (a list or empty mapping is a leaf)."""
    if isinstance(values, dict) and values:
        for key, value in values.items():
            yield from leaf_paths(value, (*prefix, key))
    else:
        yield prefix


def schema_knows(schema: dict[str, Any], path: tuple[str, ...]) -> bool:
    """The schema types this path: a property, an additionalProperties schema, or a free-form Kubernetes
    object (such as affinity) whose inside the API server checks."""
    node = schema
    for key in path:
        props = node.get("properties", {})
        if key in props:
            node = props[key]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:  # a free-form object is fine; anything else is unknown
            return node.get("type") == "object" and not {"properties", "additionalProperties"} & set(node)
    return "type" in node


def test_schema_covers_every_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    unknown = [p for p in leaf_paths(values) if not schema_knows(schema, p)]
    assert unknown == []
    assert not schema_knows(schema, ("service", "no_such_key"))
    assert schema["additionalProperties"] is False


def key_lines(node: yaml.Node, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], int]]:
    """(key path, 0-based line of the key) for every mapping key in a composed YAML document."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = (*prefix, key.value)
            yield path, key.start_mark.line
            yield from key_lines(value, path)


def chart_defined(schema: dict[str, Any], path: tuple[str, ...]) -> bool:
    """A key the chart itself defines (a named property all the way down), as opposed to the inside of
    a free-form value such as nodeSelector's labels, resources or a price table."""
    node = schema
    for key in path:
        node = node.get("properties", {}).get(key)
        if node is None:
            return False
    return True


def test_every_value_is_documented_with_a_comment() -> None:
    """Each key the chart defines has a comment line right above it (a free-form value's inside is
    covered by its key's comment)."""
    text = (CHART / "values.yaml").read_text()
    lines = text.splitlines()
    schema = json.loads((CHART / "values.schema.json").read_text())
    keyed = [(path, line) for path, line in key_lines(yaml.compose(text)) if chart_defined(schema, path)]
    parents = {path[:-1] for path, _ in keyed}
    undocumented = [
        "/".join(path)
        for path, line in keyed
        if path not in parents and not lines[line - 1].lstrip().startswith("#")
    ]
    assert len(keyed) > 60
    assert undocumented == []


def test_a_web_config_secret_is_passed_to_the_exporter_and_tls_switches_the_probes() -> None:
    values = {"webConfig": {"existingSecret": "cpm-web", "tls": True}}
    c = container(pod_spec(values))
    args = build_parser().parse_args(c["args"])
    assert args.web_config == "/etc/cpm-exporter/web/web-config.yml"
    assert c["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert c["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    plain = container(pod_spec())
    assert "scheme" not in plain["livenessProbe"]["httpGet"]
    assert not any(a.startswith("--web.config.file") for a in plain["args"])


def test_cadvisor_reads_this_nodes_kubelet_with_the_service_account_token() -> None:
    docs = render_docs({"cadvisor": {"enabled": True}})
    env = {e["name"]: e for e in container(one(docs, "DaemonSet")["spec"]["template"]["spec"])["env"]}
    assert env["HOST_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.hostIP"}}
    assert "HOST_IP" not in {e["name"] for e in container(pod_spec())["env"]}
    assert {"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]} in one(docs, "ClusterRole")[
        "rules"
    ]
    config = yaml.safe_load(one(docs, "ConfigMap")["data"]["config.yaml"])["node_source"]
    assert config["cadvisor_url"] == "https://${HOST_IP}:10250/metrics/cadvisor"
    assert config["cadvisor_https"] == {
        "insecure_skip_verify": True,
        "bearer_token_file": "/var/run/secrets/kubernetes.io/serviceaccount/token",
    }
    for bad, why in (({"caFile": "/ca.crt"}, "not both"), ({"insecureSkipVerify": False}, "set caFile")):
        with pytest.raises(helm.HelmRenderError, match=why):
            render_mod.render({"cadvisor": {"enabled": True, **bad}})
    with pytest.raises(helm.HelmRenderError, match=r"leave them unset"):
        render_mod.render(
            {"cadvisor": {"enabled": True}, "config": {"node_source": {"cadvisor_url": "http://x:1/m"}}}
        )


# ---- conventions users of kube-prometheus-stack expect (issue 15.5) ----------------------------------------


def test_security_contexts_env_and_volumes_can_be_extended() -> None:
    values = {
        "podSecurityContext": {"fsGroup": 65532, "supplementalGroups": [44]},
        "securityContext": {"readOnlyRootFilesystem": True, "procMount": "Default"},
        "extraEnv": [{"name": "SSL_CERT_FILE", "value": "/etc/ca/bundle.pem"}],
        "extraVolumes": [{"name": "ca", "configMap": {"name": "corp-ca"}}],
        "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ca", "readOnly": True}],
    }
    spec = pod_spec(values)
    assert_locked_down(spec)  # merged over ours, not replacing them
    assert spec["securityContext"]["fsGroup"] == 65532 and spec["securityContext"]["runAsNonRoot"] is True
    c = container(spec)
    assert c["securityContext"]["procMount"] == "Default"
    assert {"name": "SSL_CERT_FILE", "value": "/etc/ca/bundle.pem"} in c["env"]
    assert {"name": "ca", "configMap": {"name": "corp-ca"}} in spec["volumes"]
    assert {"name": "ca", "mountPath": "/etc/ca", "readOnly": True} in c["volumeMounts"]


def test_kube_prometheus_stack_finds_the_monitor_and_rules_by_its_release_label() -> None:
    docs = render_docs({"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}})
    assert one(docs, "ServiceMonitor")["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert one(docs, "PrometheusRule")["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    spec = pod_spec()
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]


def test_dashboards_ship_as_configmaps_for_grafanas_sidecar() -> None:
    import json

    assert not [
        d
        for d in render_docs()
        if d["kind"] == "ConfigMap" and "grafana_dashboard" in d["metadata"]["labels"]
    ]
    docs = render_docs({"grafanaDashboards": {"enabled": True, "annotations": {"grafana_folder": "Cost"}}})
    boards = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    shipped = {name: json.loads(text) for d in boards for name, text in d["data"].items()}
    committed = {p.name: json.loads(p.read_text()) for p in (ROOT / "grafana" / "dashboards").glob("*.json")}
    assert shipped == committed and len(shipped) == 6
    assert all(d["metadata"]["annotations"] == {"grafana_folder": "Cost"} for d in boards)
