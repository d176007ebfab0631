"""Two nodes in the three topologies users run: the fleet numbers, the panels and the alerts.

(a) ``fleet``: a per-cluster Prometheus (``cluster`` only as its external label, as kube-prometheus-stack
    sets it) with our rules and a real Alertmanager; (b) ``central_prometheus``: two clusters' Prometheus
    agents remote-writing to a central Prometheus that evaluates the rules; (c) ``central``: two clusters'
    vmagents remote-writing to VictoriaMetrics, the rules in vmalert. In each, every panel answers and the
    workload alerts name the cluster, the namespace and the pod.

node-a: a static inventory of 4 H100 — vLLM (llama-0), half of a training job (train-0), and a
batch pod holding two GPUs. node-b: 4 GPUs found through NVML (the fake libnvidia-ml.so.1), one
lost, one free — vLLM (llama-1) and the other half of the training job (train-1).

Prometheus loads deploy/rules/cpm-exporter.rules.yml with its windows compressed from minutes to
seconds (the expressions themselves unchanged: promtool's unit tests cover them at full length),
so the test can stage a utilisation drop and idle burn on node-a and see both alerts reach a
loopback webhook through a real Alertmanager.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from exporter.demo.gateway import SimGateway
from exporter.demo.simulation import Load, SimEngine, SimServer
from exporter.training import TrainingTokens
from tests.fakes.nvml import FakeGpu, FakeProcess, Scenario, build_fake_nvml
from tests.integration.conftest import (
    REPO,
    Exporter,
    ExporterFactory,
    Prometheus,
    _stop,
    free_port,
    http,
    require_tool,
    wait_for,
    without_data,
)

RULES = REPO / "deploy" / "rules" / "cpm-exporter.rules.yml"
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
CLUSTER = "prod-eu"  # the per-cluster Prometheus's external label; the central stores' first cluster
# A workload alert each topology must deliver naming the workload: the canary holds a GPU and serves nothing.
STALLED = {"alertname": "CpmTokensStalled", "namespace": "serve", "pod": "canary-0", "node": "node-a"}
# A target that never answers: its alert names the pod it serves.
DOWN = {"alertname": "CpmTargetDown", "namespace": "serve", "pod": "down-0", "node": "node-a"}
# Minutes → seconds, so a test can watch the alerts happen; each rule's expression is kept.
COMPRESS = (
    (r"\[5m\]", "[5s]"),
    (r"\[15m\]", "[10s]"),
    (r"\[1d\]", "[40s]"),
    (r"\[23h59m59s\]", "[39s]"),  # the chargeback's day of 5-minute tiles: 8 tiles of 5 s
    (r"offset 1h", "offset 15s"),
    (r"for: \d+[smh]", "for: 0s"),
    (r"interval: 5m", "interval: 5s"),  # the chargeback's tile: its interval equals its [5m] → [5s]
)


def compressed_rules(out: Path) -> Path:
    text = RULES.read_text()
    for pattern, repl in COMPRESS:
        text, n = re.subn(pattern, repl, text)
        assert n, f"{pattern} no longer appears in the rules: update the test's compression"
    out.write_text(text)
    check = subprocess.run(
        [require_tool("promtool"), "check", "rules", str(out)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    return out


def vllm(seed: int, *, idle: bool = False) -> SimServer:
    load = Load(requests_per_second=8.0, prompt_tokens=600, output_tokens=200, itl_seconds=0.02,
                prefill_seconds=0.1, cache_hit_ratio=0.3, seed=seed)  # fmt: skip
    return SimServer(SimEngine(LLAMA, None if idle else load)).start()


@dataclass(frozen=True)
class NodeA:
    """node-a's URLs: its servers, and two broken targets every dashboard panel needs to see."""

    llama: str
    train: str
    canary: str  # a vLLM with no traffic on a held GPU: idle by reason no_traffic
    nan: str  # a phase-time sum reading NaN: that figure is rejected, the tokens still count
    gateway: str  # a LiteLLM-like gateway in front of llama-0: three calling teams
    down: str = "http://127.0.0.1:1/metrics"  # nothing listens: a failed scrape
    table: str = ""  # a published-CPM table with a row at llama-0's operating point (cpm_frontier_ratio)


def node_a_config(urls: NodeA, *, staged: bool) -> str:
    util = 0.05 if staged else 0.9
    batch = (
        ""
        if staged
        else "    - {pod: batch-0, namespace: batch, team: batch, model: none, gpus: ['2', '3']}\n"
    )
    return f"""\
node: node-a
tick_seconds: 1
window_seconds: 10
pricing:
  catalogue: false
  gpus: {{H100: {{on_demand: 6.00}}}}
  budgets: {{usd_per_million_tokens: {{models: {{"{LLAMA}": 0.01}}, teams: {{search: 0.01}}, tenants: {{ads: 0.01}}}}}}
gateways:
  - {{name: litellm, url: "{urls.gateway}", kind: litellm}}
published_table: "{urls.table}"
inventory:
  gpus:
    - {{hardware: H100, count: 4, capacity: on_demand, utilization: {util}}}
    - {{hardware: H100, count: 1, capacity: on_demand, utilization: 0.0}}  # GPU 4: the canary's, unused
  workloads:
    - {{pod: llama-0, namespace: serve, team: search, model: {LLAMA}, gpus: ['0'],
       targets: [{{url: "{urls.llama}", server: vllm, engine_version: 0.8.5, precision: bfloat16, model_class: llama-8b}}]}}
    - {{pod: train-0, namespace: research, team: research, model: llama-ft, kind: training, gpus: ['1'],
       target_tokens: 1e12, targets: [{{url: "{urls.train}"}}]}}
    - {{pod: canary-0, namespace: serve, team: search, model: {LLAMA}, gpus: ['4'],
       targets: [{{url: "{urls.canary}", server: vllm}}]}}
    - {{pod: broken-0, namespace: research, team: research, model: {LLAMA},
       targets: [{{url: "{urls.nan}", server: vllm}}]}}
    - {{pod: down-0, namespace: serve, team: search, model: {LLAMA}, targets: [{{url: "{urls.down}"}}]}}
{batch}"""


def node_b_config(llama: str, train: str) -> str:
    return f"""\
node: node-b
tick_seconds: 1
window_seconds: 10
pricing:
  catalogue: false
  gpus: {{H100: {{on_demand: 18.00}}}}   # 3× node-a's: the fleet CPM must blend the two
node_source: {{gpus: nvml, capacity: on_demand, poll_seconds: 0.25}}
inventory:
  workloads:
    - {{pod: llama-1, namespace: serve, team: search, model: {LLAMA}, gpus: ['0'],
       targets: [{{url: "{llama}", server: vllm}}]}}
    - {{pod: train-1, namespace: research, team: research, model: llama-ft, kind: training, gpus: ['1'],
       target_tokens: 1e12, targets: [{{url: "{train}"}}]}}
"""


# What OpenCost exports for this fleet (opencost.io/docs/integrations/metrics), in its text format: each
# node's $/GPU-hour (the nodes' own prices here) and the GPUs each pod requests (the whole GPUs the
# configs give them). OpenCost needs a cluster and cannot run here; the README's cross-check joins these.
OPENCOST_PODS = (  # (node, namespace, pod, GPUs requested)
    ("node-a", "serve", "llama-0", 1),
    ("node-a", "research", "train-0", 1),
    ("node-a", "serve", "canary-0", 1),
    ("node-b", "serve", "llama-1", 1),
    ("node-b", "research", "train-1", 1),
)  # fmt: skip  (batch-0 leaves mid-module, the staged test: no OpenCost row, so no ratio for it)
OPENCOST_METRICS = (
    "# HELP node_gpu_hourly_cost node_gpu_hourly_cost hourly cost per GPU\n# TYPE node_gpu_hourly_cost gauge\n"
    + "".join(f'node_gpu_hourly_cost{{instance="opencost:9003",node="{n}",provider_id=""}} {usd}\n'
              for n, usd in (("node-a", 6), ("node-b", 18)))
    + "# HELP container_gpu_allocation container_gpu_allocation GPU used\n# TYPE container_gpu_allocation gauge\n"
    + "".join(f'container_gpu_allocation{{container="main",instance="opencost:9003",namespace="{ns}",node="{n}",pod="{pod}"}} {g}\n'
              for n, ns, pod, g in OPENCOST_PODS)
).encode()  # fmt: skip


def serve_opencost() -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(OPENCOST_METRICS)))
            self.end_headers()
            self.wfile.write(OPENCOST_METRICS)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def named(alerts: list[dict[str, str]], want: dict[str, str]) -> list[dict[str, str]]:
    """The alerts whose labels include every label of ``want``."""
    return [a for a in alerts if want.items() <= a.items()]


@dataclass
class Webhook:
    """Alertmanager's webhook receiver on loopback: the alert names it was sent, firing, and their labels."""

    firing: set[str] = field(default_factory=set)
    labels: list[dict[str, str]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def start(self) -> int:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                for alert in body["alerts"]:
                    if alert["status"] == "firing":
                        labels = alert["labels"]  # alerts name the node; the exporter-down one its instance
                        hook.firing.add(
                            labels["alertname"] + "/" + labels.get("node", labels.get("instance", ""))
                        )
                        hook.labels.append(labels)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return int(self.server.server_address[1])


@dataclass
class Fleet:
    a: Exporter
    b: Exporter
    a_config: Path
    prometheus: Prometheus
    webhook: Webhook
    urls: NodeA


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, exporters: ExporterFactory) -> Iterator[Fleet]:
    work = tmp_path_factory.mktemp("fleet")
    servers = [vllm(1), vllm(2), vllm(3, idle=True)]
    trainers = [TrainingTokens(), TrainingTokens()]
    train_urls = [f"http://127.0.0.1:{t.serve(port=0, host='127.0.0.1')}/metrics" for t in trainers]
    stop = threading.Event()

    def train() -> None:
        while not stop.wait(0.05):
            for t in trainers:
                t.add(2048)

    threading.Thread(target=train, daemon=True).start()

    library = build_fake_nvml(work)
    scenario = work / "nvml.txt"
    # GPU 2 is lost from the start (unknown, unpriced); GPU 3 is free: idle (node-b's idle burn is not staged)
    # llama-1's and train-1's processes sampled by the driver: cpm_gpu_used_ratio per holder
    Scenario(
        gpus=[FakeGpu(0, util=80), FakeGpu(1, util=90), FakeGpu(2, error=15), FakeGpu(3)],
        processes=[FakeProcess(0, 4100, sm=75), FakeProcess(1, 4101, sm=88)],
    ).write(scenario)
    a_config, b_config = work / "node-a.yaml", work / "node-b.yaml"
    nan = work / "nan.prom"
    nan.write_text(
        f'vllm:prompt_tokens_total{{model_name="{LLAMA}"}} 10\n'
        f'vllm:generation_tokens_total{{model_name="{LLAMA}"}} 5\n'
        f'vllm:request_prefill_time_seconds_sum{{model_name="{LLAMA}"}} NaN\n'
    )
    gateway = SimServer(SimGateway([servers[0].sim], {"search": 5, "ads": 3, "research": 2})).start()
    table = (
        work / "published.yaml"
    )  # a user's own table (compare --table's format): one row at llama-0's point
    table.write_text('date: "2026-12-01"\nrows:\n  - {id: llama8b-bf16-h100-test, metric: usd_per_million_tokens, '
                     "value: 0.05, hardware: H100, model: Llama 3.1 8B, model_class: llama-8b, precision: bf16, "
                     "engine: vLLM, tokens_per_second_per_user: 40, conditions: test row, source: fleet test, "
                     "date: December 2026}\n")  # fmt: skip
    urls = NodeA(
        servers[0].url, train_urls[0], servers[2].url, f"file://{nan}", gateway.url, table=str(table)
    )
    a_config.write_text(node_a_config(urls, staged=False))
    b_config.write_text(node_b_config(servers[1].url, train_urls[1]))
    a = exporters.run(a_config)
    b = exporters.run(
        b_config, env={"LD_LIBRARY_PATH": str(library.parent), "FAKE_NVML_SCENARIO": str(scenario)}
    )

    webhook = Webhook()
    hook_port = webhook.start()
    am_port = free_port()
    am_config = work / "alertmanager.yml"
    am_config.write_text(yaml.safe_dump({
        "route": {"receiver": "hook", "group_by": ["alertname", "node"], "group_wait": "1s",
                  "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "hook", "webhook_configs": [{"url": f"http://127.0.0.1:{hook_port}/"}]}],
    }))  # fmt: skip
    am_log = (work / "alertmanager.log").open("wb")
    alertmanager = subprocess.Popen(
        [require_tool("prometheus-alertmanager"), f"--config.file={am_config}", f"--storage.path={work / 'am'}",
         f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=", "--log.level=warn"],
        stdout=am_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    wait_for(
        lambda: http("GET", f"http://127.0.0.1:{am_port}/-/ready")[0] == 200, 30, what="Alertmanager ready"
    )

    prometheus = Prometheus(require_tool("prometheus"), work)
    prometheus.rule_files = [str(compressed_rules(work / "rules.yml"))]
    prometheus.alertmanagers = [f"127.0.0.1:{am_port}"]
    prometheus.external_labels = {"cluster": CLUSTER}  # on alerts and remote writes, not on local series
    prometheus.start()
    # honor_labels, as the chart's ServiceMonitor sets honorLabels: the workload's namespace and pod stay.
    opencost = serve_opencost()  # beside us, as the README's "running both" has it (honor_labels too)
    prometheus.set_targets(
        {"cpm-exporter": [a.address, b.address], "opencost": [f"127.0.0.1:{opencost.server_address[1]}"]},
        options={"cpm-exporter": {"honor_labels": True}, "opencost": {"honor_labels": True}},
    )
    prometheus.wait_up("cpm-exporter")
    try:
        yield Fleet(a, b, a_config, prometheus, webhook, urls)
    finally:
        stop.set()
        prometheus.stop()
        _stop(alertmanager)
        am_log.close()
        a.stop()
        b.stop()
        for s in servers:
            s.stop()
        gateway.stop()
        opencost.shutdown()
        opencost.server_close()


def recorded(prometheus: Prometheus, name: str) -> list[dict[str, object]]:
    return prometheus.query(name)


def test_a_fleet_cpm_per_model_spans_both_nodes(fleet: Fleet) -> None:
    p = fleet.prometheus

    def both_nodes_serving() -> bool:
        nodes = {
            r["metric"]["node"]
            for r in p.query(f'cpm_tokens_total{{model="{LLAMA}",direction="output"}} > 0')
        }
        return nodes == {"node-a", "node-b"} and bool(
            p.query(f'model:cpm_usd_per_million_tokens:rate5m{{model="{LLAMA}"}}')
        )

    wait_for(both_nodes_serving, 40, what="tokens from both nodes and a recorded CPM")

    def per_node(at: float) -> dict[str, float]:
        expr = (
            f'1e6 * sum by (node) (rate(cpm_cost_usd_total{{model="{LLAMA}",workload!="training"}}[5s]))'
            f' / (sum by (node) (rate(cpm_tokens_total{{model="{LLAMA}",direction=~"input|output"}}[5s]))'
            f'    - sum by (node) (rate(cpm_cached_input_tokens_total{{model="{LLAMA}"}}[5s])))'
        )
        return {r["metric"]["node"]: float(r["value"][1]) for r in p.query(expr, at=at)}

    def matches() -> bool:
        (row,) = p.query(f'model:cpm_usd_per_million_tokens:rate5m{{model="{LLAMA}",direction="total"}}')
        at, value = float(row["value"][0]), float(row["value"][1])
        # The same fleet CPM from both nodes' raw counters at the rule's own timestamp. Not exact:
        # a scrape stamped before the evaluation can land after it (2 % seen with 5 s windows).
        # Total CPM divides by the tokens the GPUs computed: prefix-cache hits are left out.
        raw = p.value(
            f'1e6 * sum(rate(cpm_cost_usd_total{{model="{LLAMA}",workload!="training"}}[5s]))'
            f' / (sum(rate(cpm_tokens_total{{model="{LLAMA}",direction=~"input|output"}}[5s]))'
            f'    - sum(rate(cpm_cached_input_tokens_total{{model="{LLAMA}"}}[5s])))',
            at=at,
        )
        nodes = per_node(at)
        # node-b's GPU-hour costs 3×: a rule that read one node, or averaged CPMs, is far off.
        return (
            value == pytest.approx(raw, rel=0.05)
            and nodes["node-a"] * 1.5 < nodes["node-b"]
            and nodes["node-a"] < value < nodes["node-b"]
        )

    wait_for(
        matches, 30, what="the recorded fleet CPM to blend both nodes as the raw counters do", consecutive=3
    )


def test_a_training_run_split_over_two_nodes_costs_the_sum_of_its_halves(fleet: Fleet) -> None:
    p = fleet.prometheus

    def summed() -> bool:
        rows = p.query('model_team:cpm_training_cost_usd:sum{model="llama-ft",team="research"}')
        if len(rows) != 1:
            return False
        at, total = float(rows[0]["value"][0]), float(rows[0]["value"][1])
        # A scrape stamped before the rule's evaluation may be stored just after it: the rule
        # then summed each node's latest or its previous sample (1 s apart), never anything else.
        # With scrape and evaluation at the same 1 s period that phase can last the whole run.
        query = 'cpm_cost_usd_total{workload="training",model="llama-ft"}'
        halves, before = p.query(query, at=at), p.query(query, at=at - 1)
        nodes = {r["metric"]["node"] for r in halves}
        latest = [float(r["value"][1]) for r in halves]
        previous = sum(float(r["value"][1]) for r in before)
        return (
            nodes == {"node-a", "node-b"}
            and total > max(latest)  # both halves, not one
            and previous * (1 - 1e-9) <= total <= sum(latest) * (1 + 1e-9)
        )

    wait_for(summed, 40, what="the training run's cost summed across its two nodes")


def test_the_page_and_the_rules_say_the_same_idle_burn(fleet: Fleet) -> None:
    """One number, one definition (issue 15.3): node-a's page and node_reason:cpm_idle_cost_usd_per_hour:rate5m
    over the same steady burn (the canary's unused GPU) agree; before, the page said twice the rules' figure."""

    def page_burn() -> float:
        status, body = fleet.a.get("/")
        m = re.search(rb'id="idle-burn">\$([0-9.,]+)/h', body)
        assert status == 200 and m is not None, body[:300]
        return float(m.group(1).decode().replace(",", ""))

    def agree() -> bool:
        rule = fleet.prometheus.query('sum(node_reason:cpm_idle_cost_usd_per_hour:rate5m{node="node-a"})')
        return bool(rule) and page_burn() == pytest.approx(float(rule[0]["value"][1]), rel=0.03)

    wait_for(agree, 30, interval=0.5, what="the page's idle burn to equal the rules'", consecutive=3)
    assert page_burn() > 0


def test_a_shared_servers_money_splits_among_the_teams_calling_it_through_a_gateway(fleet: Fleet) -> None:
    """Issue 17: llama-0 serves three teams behind a LiteLLM-like gateway (5 : 3 : 2 of every token). Its
    money splits among them by those shares, and the split plus the money still waiting for the gateway's
    count adds up to the pod's money, in Prometheus."""
    p = fleet.prometheus

    def split() -> dict[str, float] | None:
        rows = p.query('sum by (tenant) (cpm_tenant_cost_usd_total{pod="llama-0"})')
        return {str(r["metric"]["tenant"]): float(r["value"][1]) for r in rows} or None

    tenants = wait_for(split, 60, what="the gateway's tenants on llama-0")
    whole = wait_for(
        lambda: p.query(
            'sum(cpm_cost_usd_total{pod="llama-0"}) and on () (count(cpm_tenant_cost_usd_total{pod="llama-0"}) > 0)'
        ),
        30,
    )
    both = p.query(
        'sum(cpm_tenant_cost_usd_total{pod="llama-0"}) + sum(cpm_tenant_waiting_usd{pod="llama-0"})'
        ' - sum(cpm_cost_usd_total{pod="llama-0"})'
    )
    assert abs(float(both[0]["value"][1])) < 1e-9 * float(whole[0]["value"][1]) + 1e-9  # every dollar, once
    teams = {t: v for t, v in tenants.items() if t in ("search", "ads", "research")}
    assert set(teams) == {"search", "ads", "research"}, tenants
    paid = sum(teams.values())
    for team, share in (("search", 0.5), ("ads", 0.3), ("research", 0.2)):
        assert teams[team] / paid == pytest.approx(share, abs=0.05), tenants


def test_every_recording_rule_returns_data(fleet: Fleet) -> None:
    records = sorted(
        {
            r["record"]
            for g in yaml.safe_load(RULES.read_text())["groups"]
            for r in g["rules"]
            if "record" in r
        }
    )
    assert records
    missing = without_data(records, fleet.prometheus.query, 60)
    assert not missing, f"recording rules without data: {missing}"


def test_staged_utilisation_drop_and_idle_burn_fire_through_alertmanager(fleet: Fleet) -> None:
    # node-a must have history at its usual utilisation before the drop (the rule compares to it).
    def history() -> bool:
        rows = fleet.prometheus.query(
            'count_over_time(node:cpm_gpu_utilization:ratio_rate5m{node="node-a"}[20s])'
        )
        return bool(rows) and float(rows[0]["value"][1]) >= 15

    wait_for(history, 60, what="20 s of node-a's usual utilisation")
    staged = {"CpmGpuUtilizationDrop/node-a", "CpmIdleBurnHigh/node-a"}
    assert not staged & fleet.webhook.firing, fleet.webhook.firing  # nothing before the stage
    # node-b's free GPU ($18/h idle, over the $10/h bar) has been burning from the start.
    wait_for(lambda: "CpmIdleBurnHigh/node-b" in fleet.webhook.firing, 30, what="node-b's idle burn alert")
    tmp = fleet.a_config.with_suffix(".tmp")
    tmp.write_text(node_a_config(fleet.urls, staged=True))
    tmp.replace(fleet.a_config)  # node-a reloads it: GPUs 5 % busy, the batch pod's two GPUs freed
    wait_for(lambda: staged <= fleet.webhook.firing, 60, interval=0.5,
             what=f"{sorted(staged)} at the webhook; got {sorted(fleet.webhook.firing)}")  # fmt: skip


def test_the_lost_gpu_on_node_b_alerts(fleet: Fleet) -> None:
    wait_for(
        lambda: "CpmGpuFault/node-b" in fleet.webhook.firing,
        60,
        interval=0.5,
        what="CpmGpuFault for node-b's lost GPU",
    )
    assert "CpmGpuFault/node-a" not in fleet.webhook.firing  # fmt: skip


def test_every_dashboard_panel_query_returns_data(fleet: Fleet) -> None:
    """A per-cluster Prometheus (issue 15.2a): its series carry no `cluster` (the external label is added
    on the way out), so the cluster variable offers nothing and stays at All, whose `.*` matches the
    absent label. Every panel answers; picking a cluster is the central stores' case (below)."""
    from grafana.queries import panel_queries, variable_queries

    assert not fleet.prometheus.query('count({__name__=~"cpm_.+", cluster!=""})')  # no local cluster label
    queries = [(uid, title, expr) for uid, title, expr in panel_queries({})]
    queries += [(uid, f"variable {name} ({label})", expr) for uid, name, label, expr in variable_queries()]
    assert len(queries) > 100
    # [1m] rates and the compressed daily chargeback need a little history
    empty = without_data(queries, lambda q: fleet.prometheus.query(q[2]), 90, interval=2)
    assert not empty, "panels without data:\n" + "\n".join(f"{u} / {t}: {e}" for u, t, e in empty)
    # No shipped query answers Inf or NaN (a ratio with nothing to divide by has no value, issue 15.3).
    odd = [(u, t, r["value"][1]) for u, t, e in queries for r in fleet.prometheus.query(e)
           if r["value"][1] in ("NaN", "+Inf", "-Inf")]  # fmt: skip
    assert not odd, "panels answering Inf/NaN:\n" + "\n".join(f"{u} / {t}: {v}" for u, t, v in odd)


def test_workload_alerts_name_the_cluster_namespace_and_pod(fleet: Fleet) -> None:
    """Through a real Alertmanager, the alerts about a workload name it (not the exporter's pod), and the
    per-cluster Prometheus's external label names the cluster (issue 15.2)."""
    for want in (STALLED, DOWN):
        found = wait_for(lambda w=want: named(fleet.webhook.labels, w), 60, interval=0.5,  # type: ignore[misc]
                         what=f"{want} at the webhook")  # fmt: skip
        assert {a.get("cluster") for a in found} == {CLUSTER}, found
    # Every alert carries the cluster, whoever raised it.
    assert {a.get("cluster") for a in fleet.webhook.labels} == {CLUSTER}


# --- two clusters remote-writing to a central store: vmagent → VictoriaMetrics, rules in vmalert (issue 15.2b) ---


class AlertSink:
    """An Alertmanager API on loopback for vmalert and the central Prometheus: keeps the labels of every
    alert posted (the Alertmanager path itself is tested above)."""

    def __init__(self) -> None:
        self.labels: list[dict[str, str]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                alerts = json.loads(body or b"[]")
                sink.labels += [a["labels"] for a in alerts if isinstance(a, dict) and "labels" in a]
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.address = f"127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Store:
    """A central store's query URL and the alerts its ruler sent."""

    url: str
    alerts: AlertSink


def _spawn(work: Path, name: str, args: list[str]) -> subprocess.Popen[bytes]:
    with (work / f"{name}.log").open("ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def central(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """Two "clusters" (prod-eu, prod-us), each a vmagent scraping the fleet's two exporters and remote-writing
    with its own external `cluster` label to one VictoriaMetrics, where vmalert evaluates our rules."""
    work = tmp_path_factory.mktemp("central")
    vm_port, sink = free_port(), AlertSink()
    vm = f"http://127.0.0.1:{vm_port}"
    procs = [_spawn(work, "victoria-metrics", [require_tool("victoria-metrics"), f"-storageDataPath={work / 'vm'}",
                                             f"-httpListenAddr=127.0.0.1:{vm_port}", "-retentionPeriod=1d",
                                             "-search.latencyOffset=0s", "-loggerLevel=WARN"])]  # fmt: skip
    wait_for(lambda: _ok(vm + "/health"), 30, what="VictoriaMetrics ready")
    scrape = work / "scrape.yml"
    scrape.write_text(json.dumps({"global": {"scrape_interval": "1s"}, "scrape_configs": [
        {"job_name": "cpm-exporter", "honor_labels": True,
         "static_configs": [{"targets": [fleet.a.address, fleet.b.address]}]}]}))  # fmt: skip
    for cluster in ("prod-eu", "prod-us"):
        procs.append(_spawn(work, f"vmagent-{cluster}", [
            require_tool("vmagent"), f"-promscrape.config={scrape}", f"-remoteWrite.url={vm}/api/v1/write",
            f"-remoteWrite.label=cluster={cluster}", f"-remoteWrite.tmpDataPath={work / cluster}",
            f"-httpListenAddr=127.0.0.1:{free_port()}", "-remoteWrite.flushInterval=200ms", "-loggerLevel=WARN"]))  # fmt: skip
    procs.append(_spawn(work, "vmalert", [
        require_tool("vmalert"), f"-rule={fleet.prometheus.rule_files[0]}", f"-datasource.url={vm}",
        f"-remoteWrite.url={vm}", f"-notifier.url=http://{sink.address}",
        "-evaluationInterval=1s", f"-httpListenAddr=127.0.0.1:{free_port()}", "-loggerLevel=WARN"]))  # fmt: skip
    try:
        yield Store(vm, sink)
    finally:
        _stop_all(procs)
        sink.close()


def _stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """Senders first (an agent flushing to a store already gone would wait), then the store."""
    for p in reversed(procs):
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


def _ok(url: str) -> bool:
    try:
        return http("GET", url, timeout=2)[0] == 200
    except OSError:
        return False


def _vm_query(vm: str, expr: str) -> list[dict[str, object]]:
    status, body = http("GET", f"{vm}/api/v1/query?" + urllib.parse.urlencode({"query": expr}), timeout=10)
    answer = json.loads(body)
    assert status == 200 and answer.get("status") == "success", (expr, status, answer)
    return list(answer["data"]["result"]) if answer["data"]["resultType"] != "scalar" else [answer["data"]]


@pytest.fixture(scope="module")
def central_prometheus(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """The same two clusters as Prometheus agents (``--enable-feature=agent``, external label ``cluster``)
    remote-writing to a central Prometheus (``--web.enable-remote-write-receiver``) that evaluates the rules."""
    work = tmp_path_factory.mktemp("central-prometheus")
    binary, port, sink = require_tool("prometheus"), free_port(), AlertSink()
    store = work / "central.yml"
    store.write_text(json.dumps({
        "global": {"evaluation_interval": "1s"}, "rule_files": fleet.prometheus.rule_files,
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [sink.address]}]}]}}))  # fmt: skip
    procs = [_spawn(work, "central", [binary, f"--config.file={store}", f"--storage.tsdb.path={work / 'tsdb'}",
                                      f"--web.listen-address=127.0.0.1:{port}", "--web.enable-remote-write-receiver",
                                      "--log.level=warn"])]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _ok(url + "/-/ready"), 30, what="the central Prometheus ready")
    for cluster in ("prod-eu", "prod-us"):
        agent = work / f"agent-{cluster}.yml"
        agent.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "external_labels": {"cluster": cluster}},
            "scrape_configs": [{"job_name": "cpm-exporter", "honor_labels": True,
                                "static_configs": [{"targets": [fleet.a.address, fleet.b.address]}]}],
            "remote_write": [{"url": url + "/api/v1/write", "queue_config": {"batch_send_deadline": "200ms"}}]}))  # fmt: skip
        procs.append(_spawn(work, f"agent-{cluster}", [binary, "--enable-feature=agent", f"--config.file={agent}",
                                                       f"--storage.agent.path={work / cluster}",
                                                       f"--web.listen-address=127.0.0.1:{free_port()}",
                                                       "--log.level=warn"]))  # fmt: skip
    try:
        yield Store(url, sink)
    finally:
        _stop_all(procs)
        sink.close()


@pytest.mark.parametrize("cluster", ["All", "prod-eu"])
def test_prometheus_agents_remote_writing_to_a_central_prometheus_answer_every_panel(
    central_prometheus: Store, cluster: str
) -> None:
    _every_panel_answers(central_prometheus.url, cluster)


@pytest.mark.parametrize("cluster", ["All", "prod-eu", "prod-us"])
def test_a_central_store_fed_by_two_clusters_answers_every_panel(central: Store, cluster: str) -> None:
    """vmalert's recording rules keep each cluster's figures apart, and every panel query returns data in
    VictoriaMetrics with each cluster picked and with All."""
    _every_panel_answers(central.url, cluster)


@pytest.mark.parametrize("ruler", ["central_prometheus", "central"])
def test_a_central_ruler_names_each_clusters_workloads_in_its_alerts(
    ruler: str, request: pytest.FixtureRequest
) -> None:
    """One ruler for two clusters: a stalled workload and an unscrapable one alert once per cluster, each
    alert naming its cluster, namespace and pod (issue 15.2)."""
    store: Store = request.getfixturevalue(ruler)
    for want in (STALLED, DOWN):
        wait_for(lambda w=want: {a.get("cluster") for a in named(store.alerts.labels, w)} >= {"prod-eu", "prod-us"},  # type: ignore[misc]
                 90, interval=0.5, what=f"{want} for both clusters from {ruler}")  # fmt: skip


def _every_panel_answers(central: str, cluster: str) -> None:
    from grafana.queries import panel_queries

    def per_cluster() -> bool:
        found = {
            str(r["metric"].get("cluster"))
            for r in _vm_query(central, 'model:cpm_usd_per_million_tokens:rate5m{direction="total"}')
        }  # type: ignore[union-attr]
        return found >= {"prod-eu", "prod-us"}

    wait_for(per_cluster, 90, interval=1, what="recorded CPM per cluster in the central store")
    picked = {} if cluster == "All" else {"cluster": cluster}
    queries = panel_queries(picked)
    empty = without_data(queries, lambda q: _vm_query(central, q[2]), 90, interval=2)
    assert not empty, "panels without data:\n" + "\n".join(f"{u} / {t}: {e}" for u, t, e in empty)


# --- the finance report on the fleet's stores (issue 18) ------------------------------------------------


@pytest.mark.parametrize("store", ["prometheus", "victoria-metrics"])
def test_the_report_reconciles_on_the_fleets_prometheus_and_on_the_central_store(
    fleet: Fleet, central: Store, store: str, tmp_path: Path
) -> None:
    """``cpm-exporter report`` over the fleet's last minute, by cluster, node, team and model: on the
    per-cluster Prometheus (no cluster label on its series) and on VictoriaMetrics fed by two vmagents
    (each node once per cluster), every node's rows add up to its bill in every period, exactly."""
    url = fleet.prometheus.url if store == "prometheus" else central.url
    history = "count(count_over_time(cpm_bill_usd_total[40s]) >= 30) >= 2"  # both nodes, 40 s of history
    wait_for(lambda: _vm_query(url, history), 90, interval=1, what=f"40 s of history in {store}")
    end = float(int(time.time()))
    out = tmp_path / "rows.json"
    done = subprocess.run(
        [sys.executable, "-m", "exporter", "report", "--prometheus", url,
         "--from", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end - 40)),
         "--to", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end)), "--step", "10s",
         "--by", "cluster,node,team,model", "--format", "json", "--out", str(out), "--max-gap", "5s"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    meta = json.loads(out.read_text())["meta"]
    assert meta["reconciled"], meta["reconciliation"]
    nodes = {(c["cluster"], c["node"]) for c in meta["reconciliation"]}
    want = {("", "node-a"), ("", "node-b")} if store == "prometheus" else {
        (c, n) for c in ("prod-eu", "prod-us") for n in ("node-a", "node-b")}  # fmt: skip
    assert nodes == want, nodes
    rows = json.loads(out.read_text())["rows"]
    assert {r["team"] for r in rows} >= {"search", "research"}, {r["team"] for r in rows}


def test_every_promql_query_in_the_readme_answers_on_the_fleet(fleet: Fleet) -> None:
    """The README's queries are the ones users paste: each is accepted by a real Prometheus and answers
    with data on the fleet (the CPM with its operating point too: one number, one definition)."""
    readme = (REPO / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in readme.split("```promql\n")[1:]]
    queries = [" ".join(line.split("#", 1)[0] for line in b.splitlines()).strip() for b in blocks]
    # The fleet is a few minutes old: a rate over a range longer than its history reads low (Prometheus
    # divides by the whole range), so ranges shrink to what it has.
    # (The OpenCost cross-check's subquery steps 1 s instead of 1 min: its "/ 60" then becomes "/ 3600".)
    queries = [
        q.replace("[1d]", "[1m]")
        .replace("[1h]", "[15s]")
        .replace("[1h:1m]", "[15s:1s]")
        .replace(") / 60", ") / 3600")
        for q in queries
        if q
    ]
    assert len(queries) >= 3
    empty = without_data(queries, fleet.prometheus.query, 60)
    assert not empty, f"README queries without data: {empty}"
    # Running both: our GPU money per namespace ÷ OpenCost's requested GPUs × $/GPU-h is about 1 where pods
    # hold the whole GPUs they request at the same prices (every namespace here).
    (cross,) = [q for q in queries if "container_gpu_allocation" in q]

    def ratios() -> dict[str, float] | None:
        """Once the fleet's history covers the query's range (a rate over a longer one reads low)."""
        got = {r["metric"]["namespace"]: float(r["value"][1]) for r in fleet.prometheus.query(cross)}
        assert set(got) == {ns for _, ns, _, _ in OPENCOST_PODS}, got
        return got if all(x == pytest.approx(1.0, rel=0.05) for x in got.values()) else None

    wait_for(ratios, 60, interval=1, what="our GPU money per namespace to equal OpenCost's", consecutive=3)
    (op,) = [q for q in queries if "cpm_operating_point_info" in q]
    engines = {r["metric"].get("engine") for r in fleet.prometheus.query(op)}
    assert engines == {"vllm"}, (
        engines
    )  # the fleet's servers: simulated vLLM, engine detected, version unknown
