"""The chart's ServiceMonitor keeps the exporter's labels (issue 15.1), proven with a real Prometheus.

prometheus-operator turns a ServiceMonitor endpoint into a scrape job whose relabelling gives every
target the labels ``namespace``, ``service``, ``pod``, ``container`` and ``endpoint`` of the scraped
pod — here the exporter's own (``cpm-exporter/cpm-exporter-x7k2p``) — plus ``job`` and ``instance``,
and sets ``honor_labels`` from the endpoint's ``honorLabels``. Our series carry the workload's own
``namespace`` and ``pod``: with ``honor_labels: false`` Prometheus would rename them
``exported_namespace``/``exported_pod`` and put the exporter's in their place, so every dashboard and
alert would name the exporter. The test builds those jobs from the rendered chart.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from exporter.demo.simulation import SimEngine, SimServer
from tests.integration.conftest import Exporter, Prometheus, wait_for
from tests.test_helm import one, render_docs

# What the operator's relabelling puts on the exporter's target (a DaemonSet pod of release cpm-exporter).
OPERATOR_TARGET_LABELS = {
    "namespace": "cpm-exporter",
    "service": "cpm-exporter",
    "pod": "cpm-exporter-x7k2p",
    "container": "exporter",
    "endpoint": "metrics",
}


def operator_job(endpoint: dict[str, Any]) -> dict[str, Any]:
    return {"honor_labels": bool(endpoint.get("honorLabels", False)), "labels": OPERATOR_TARGET_LABELS}


def test_the_service_monitor_keeps_the_workloads_namespace_and_pod(
    tmp_path: Path, exporter_process: Callable[..., Exporter], prometheus: Prometheus
) -> None:
    (endpoint,) = one(render_docs({"serviceMonitor": {"enabled": True}}), "ServiceMonitor")["spec"][
        "endpoints"
    ]
    server = SimServer(SimEngine("m")).start()
    config = tmp_path / "config.yaml"
    config.write_text(
        "node: n1\ntick_seconds: 0.5\npricing: {catalogue: false, gpus: {H100: {on_demand: 3.60}}}\n"
        "inventory:\n  gpus: [{hardware: H100, count: 1, capacity: on_demand}]\n  workloads:\n"
        f'    - {{pod: llama-0, namespace: serve, team: search, model: m, gpus: ["0"], targets: [{{url: "{server.url}"}}]}}\n'
    )
    exporter = exporter_process(config)
    try:
        as_shipped, without = operator_job(endpoint), {**operator_job({}), "honor_labels": False}
        prometheus.set_targets(
            {"cpm-exporter": [exporter.address], "no-honor": [exporter.address]},
            options={"cpm-exporter": as_shipped, "no-honor": without},
        )
        prometheus.wait_up("cpm-exporter")
        prometheus.wait_up("no-honor")

        def series(job: str) -> list[dict[str, str]]:
            return [
                r["metric"] for r in prometheus.query(f'cpm_cost_usd_total{{job="{job}",component="gpu"}}')
            ]

        wait_for(lambda: series("cpm-exporter") and series("no-honor"), 20, what="cost series in both jobs")
        kept = {(m["namespace"], m["pod"]) for m in series("cpm-exporter")}
        assert ("serve", "llama-0") in kept and ("cpm-exporter", "cpm-exporter-x7k2p") not in kept
        assert not any("exported_namespace" in m for m in series("cpm-exporter"))
        # What the shipped honorLabels prevents: the exporter's pod in the workload's place.
        moved = series("no-honor")
        assert {(m["namespace"], m["pod"]) for m in moved} == {("cpm-exporter", "cpm-exporter-x7k2p")}
        assert ("serve", "llama-0") in {
            (m["exported_namespace"], m["exported_pod"]) for m in moved if "exported_pod" in m
        }
    finally:
        prometheus.set_targets({})
        server.stop()
