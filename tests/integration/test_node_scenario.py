"""A whole GPU node, end to end, with nothing hand-listed in the config.

Real pieces: the exporter process, the real pynvml over a fake libnvidia-ml.so.1 (the NVML C
ABI), a gRPC PodResources server on a unix socket (replies encoded by Google's protobuf), a
loopback Kubernetes API speaking PodList JSON and watch streams to the real kubernetes client,
simulated vLLM servers speaking vLLM's text format, the training-token helper, and Prometheus.

The node: GPU 0 and GPU 1 whole, GPU 2 split by MIG three ways (3g + 2g + 2g of 7 slices).
  GPU 0      vllm-a (search), placed by the kubelet; deleted mid-run, rescheduled as vllm-a-2
  GPU 1      train-0 (a training job), placed by the kubelet; the GPU is then lost (Xid 79)
  GPU 2 gi1  vllm-b (chat), placed by the kubelet
  GPU 2 gi2  batch-0, found only through its NVML process and /proc/<pid>/cgroup
  GPU 2 gi3  nobody: idle
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from exporter.demo.simulation import Load, SimEngine, SimServer
from exporter.training import TrainingTokens
from tests.fake_kube_api import FakeKubeApi
from tests.fakes.kubelet import FakeKubelet, list_reply, podresources_pb
from tests.fakes.nvml import FakeGpu, FakeMig, FakeProcess, Scenario, build_fake_nvml
from tests.integration.conftest import Exporter, ExporterFactory, Prometheus, Samples

NODE = "node-a"
U0, U1, U2 = (f"GPU-5c1a0000-0000-4000-8000-00000000000{i}" for i in range(3))
MIG = {"gi1": "MIG-7a000000-0000-4000-8000-000000000001", "gi2": "MIG-7a000000-0000-4000-8000-000000000002",
       "gi3": "MIG-7a000000-0000-4000-8000-000000000003"}  # fmt: skip
BATCH_UID = "0d9e1c1a-5b3f-4a61-9b40-8e3c2f7d1a22"
BATCH_PID = 424242
VLLM_A_PID = 424243  # in no /proc of ours: its GPU's sole holder owns it
PRICE_PER_SECOND = 0.001  # $3.60 per GPU-hour
SHARES = {U0: 1.0, U1: 1.0, MIG["gi1"]: 3 / 7, MIG["gi2"]: 2 / 7, MIG["gi3"]: 2 / 7}
TICK = 1.0


def scenario(lost: bool = False) -> Scenario:
    return Scenario(
        gpus=[
            FakeGpu(0, uuid=U0, util=70, power_mw=600_000),
            FakeGpu(1, uuid=U1, util=95, power_mw=650_000, error=15 if lost else None),
            FakeGpu(2, uuid=U2, mig=True, max_mig=7, power_mw=400_000),
        ],
        migs=[
            FakeMig(2, 0, uuid=MIG["gi1"], gi=1, slices=3, profile="3g.40gb"),
            FakeMig(2, 1, uuid=MIG["gi2"], gi=2, slices=2, profile="2g.20gb"),
            FakeMig(2, 2, uuid=MIG["gi3"], gi=3, slices=2, profile="2g.20gb"),
        ],
        processes=[FakeProcess(2, BATCH_PID, gi=2, ci=0, mem=2**30), FakeProcess(0, VLLM_A_PID, sm=70)],
    )


def vllm(model: str, seed: int) -> SimServer:
    load = Load(requests_per_second=6.0, prompt_tokens=500, output_tokens=150, itl_seconds=0.02,
                prefill_seconds=0.1, seed=seed)  # fmt: skip
    return SimServer(SimEngine(model, load)).start()


def port_of(server: SimServer) -> str:
    return str(server.httpd.server_address[1])


@dataclass
class Node:
    exporter: Exporter
    kube: FakeKubeApi
    kubelet: FakeKubelet
    pb: ModuleType
    nvml_scenario: Path
    servers: dict[str, SimServer]
    training: TrainingTokens
    training_port: int
    holdings: dict[tuple[str, str], Any]

    def set_holdings(self) -> None:
        self.kubelet.replies["List"] = list_reply(self.pb, self.holdings)

    def tick_until(self, check: Callable[[Samples], bool]) -> Callable[[], Samples | None]:
        """For wait_for: the next tick's samples once ``check`` holds for them."""

        def next_matching() -> Samples | None:
            s = self.tick()
            return s if check(s) else None

        return next_matching

    def tick(self, ticks: int = 1) -> Samples:
        now = int(self.exporter.samples().get("cpm_ticks_total"))
        return self.exporter.next_tick(after=now + ticks - 1)


def pod_annotations(port: str, **extra: str) -> dict[str, str]:
    return {"prometheus.io/scrape": "true", "prometheus.io/port": port, **extra}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, exporters: ExporterFactory) -> Iterator[Node]:
    work = tmp_path_factory.mktemp("node")
    library = build_fake_nvml(work)
    nvml_scenario = work / "nvml-scenario.txt"
    scenario().write(nvml_scenario)
    proc = work / "proc" / str(BATCH_PID)  # the host's /proc, as the DaemonSet would mount it
    proc.mkdir(parents=True)
    (proc / "cgroup").write_text(f"0::/kubepods/besteffort/pod{BATCH_UID}/{'ab' * 32}\n")

    (work / "proto").mkdir()
    pb = podresources_pb(work / "proto")
    kubelet = FakeKubelet(pb, work / "kubelet.sock")
    holdings = {
        ("serve", "vllm-a"): {"vllm": {"nvidia.com/gpu": [U0]}},
        ("research", "train-0"): {"trainer": {"nvidia.com/gpu": [U1]}},
        ("serve", "vllm-b"): {"vllm": {"nvidia.com/mig-3g.40gb": [MIG["gi1"]]}},
    }
    kubelet.serve(List=list_reply(pb, holdings))

    servers = {
        "vllm-a": vllm("meta-llama/Llama-3.1-8B-Instruct", 1),
        "vllm-b": vllm("Qwen/Qwen2.5-7B-Instruct", 2),
    }
    training = TrainingTokens()
    training_port = training.serve(port=0, host="127.0.0.1")
    kube = FakeKubeApi().start()
    ip = "127.0.0.1"
    kube.add_pod("vllm-a", "serve", node=NODE, pod_ip=ip, labels={"team": "search", "model": "llama-8b"},
                 annotations=pod_annotations(port_of(servers["vllm-a"])))  # fmt: skip
    kube.add_pod("vllm-b", "serve", node=NODE, pod_ip=ip, labels={"team": "chat"},
                 annotations=pod_annotations(port_of(servers["vllm-b"]), **{"cpm-exporter.io/model": "qwen-7b"}))  # fmt: skip
    kube.add_pod("train-0", "research", node=NODE, pod_ip=ip, labels={"model": "llama-ft"},
                 annotations=pod_annotations(str(training_port), **{"cpm-exporter.io/workload": "training",
                                                                    "cpm-exporter.io/target-tokens": "1e9"}))  # fmt: skip
    kube.add_pod("batch-0", "batch", node=NODE, uid=BATCH_UID, pod_ip=ip)
    kube.add_pod("elsewhere", "serve", node="node-b", pod_ip=ip)  # another node's pod: never ours

    kubeconfig = kube.write_kubeconfig(work / "kubeconfig")
    config = work / "config.yaml"
    config.write_text(
        f"""\
node: {NODE}
tick_seconds: {TICK}
window_seconds: 10
pricing:
  catalogue: false
  gpus: {{H100: {{on_demand: 3.60}}}}
node_source: {{gpus: nvml, capacity: on_demand, poll_seconds: 0.25, call_timeout_seconds: 1}}
kubernetes:
  enabled: true
  node_name: {NODE}
  kubeconfig: {kubeconfig}
  podresources_socket: {kubelet.path}
  proc_root: {work / "proc"}
  namespace_teams: {{research: research-team}}
"""
    )
    env = {"LD_LIBRARY_PATH": str(library.parent), "FAKE_NVML_SCENARIO": str(nvml_scenario)}
    exporter = exporters.run(config, env=env)
    stop = False

    def train() -> None:  # a training loop counting its tokens
        while not stop:
            training.add(4096)
            time.sleep(0.05)

    import threading

    trainer = threading.Thread(target=train, daemon=True)
    trainer.start()
    try:
        yield Node(exporter, kube, kubelet, pb, nvml_scenario, servers, training, training_port, holdings)
    finally:
        stop = True
        exporter.stop()
        kubelet.stop()
        kube.close()
        for s in servers.values():
            s.stop()


def held_seconds(s: Samples, pod: str) -> float:
    return s.total("cpm_gpu_seconds_total", pod=pod, state="held")


def check_books(s: Samples) -> None:
    """Every dollar once, every GPU-second somewhere, each unit at its price share."""
    costs = s.total("cpm_cost_usd_total")
    assert s.total("cpm_bill_usd_total") == pytest.approx(
        costs + s.total("cpm_cost_retired_usd_total"), abs=1e-8
    )
    seconds = s.total("cpm_gpu_seconds_total", state="held") + s.total("cpm_gpu_seconds_total", state="idle")
    per_unit = seconds / len(SHARES)  # every unit existed for the whole run
    expected = PRICE_PER_SECOND * sum(SHARES.values()) * per_unit
    assert s.total("cpm_cost_usd_total", component="gpu") == pytest.approx(expected, rel=1e-6, abs=1e-8)


def test_a_node_discovers_its_gpus_pods_and_holders(node: Node, wait_for) -> None:  # type: ignore[no-untyped-def]
    def all_serving() -> Samples | None:
        s = node.tick()
        pods = {x.labels["pod"] for x in s.find("cpm_tokens_total") if x.value > 0}
        return s if {"vllm-a", "vllm-b", "train-0"} <= pods else None

    s = wait_for(all_serving, 30, what="tokens from both vLLM pods and the training job")
    info = {x.labels["gpu"]: x.labels for x in s.find("cpm_gpu_info")}
    assert {g: (info[g]["placed_by"], info[g]["hardware"], info[g]["profile"]) for g in info} == {
        U0: ("podresources", "H100", ""),
        U1: ("podresources", "H100", ""),
        MIG["gi1"]: ("podresources", "H100", "3g.40gb"),
        MIG["gi2"]: ("process", "H100", "2g.20gb"),
        MIG["gi3"]: ("", "H100", "2g.20gb"),
    }
    owners = {(x.labels["pod"], x.labels["team"], x.labels["model"], x.labels["workload"])
              for x in s.find("cpm_cost_usd_total") if x.labels["pod"]}  # fmt: skip
    assert {
        # A server's own model name wins over the pod's label: it is what the tokens were for.
        ("vllm-a", "search", "meta-llama/Llama-3.1-8B-Instruct", "inference"),
        ("vllm-b", "chat", "Qwen/Qwen2.5-7B-Instruct", "inference"),
        ("train-0", "research-team", "llama-ft", "training"),
    } <= owners, owners
    assert any(o[0] == "batch-0" and o[1] == "batch" for o in owners)
    assert "elsewhere" not in {o[0] for o in owners}
    # Who used GPU 0 by the driver's per-process sample; MIG instances have no per-process samples
    # (NOT_SUPPORTED, as on real drivers) and show nothing: unknown, not 0.
    used = {(x.labels["gpu"], x.labels["pod"]): x.value for x in s.find("cpm_gpu_used_ratio")}
    assert used == {(U0, "vllm-a"): pytest.approx(0.7)}
    for source in ("nvml", "kubernetes", "podresources"):
        assert s.get("cpm_source_up", source=source) == 1.0
    assert s.get("cpm_training_target_tokens", pod="train-0") == 1e9
    check_books(s)
    # vllm-b pays 3/7 of a GPU-second per second it holds its instance.
    b_cost = s.total("cpm_cost_usd_total", pod="vllm-b", component="gpu")
    # (to the nano-dollar: money is kept in whole nano-dollars, each line carrying its remainder)
    assert b_cost == pytest.approx(held_seconds(s, "vllm-b") * PRICE_PER_SECOND * 3 / 7, abs=2e-9)


def test_a_deleted_pod_pays_up_to_its_deletion_and_its_successor_takes_over(node: Node, wait_for) -> None:  # type: ignore[no-untyped-def]
    before = node.tick()
    sampled_at = time.time()
    held_before = held_seconds(before, "vllm-a")
    deleted_at = time.time()
    node.holdings.pop(("serve", "vllm-a"))
    node.set_holdings()
    node.kube.delete_pod("serve", "vllm-a")
    node.tick(3)
    idle_during = node.tick()
    frozen = held_seconds(idle_during, "vllm-a")
    # Held from the tick before the sample until the deletion: never more than one tick beyond.
    assert deleted_at - sampled_at <= frozen - held_before <= deleted_at - sampled_at + TICK + 0.3
    assert idle_during.get("cpm_gpu_info", gpu=U0, placed_by="") == 1.0  # nobody holds GPU 0 now

    server = vllm("meta-llama/Llama-3.1-8B-Instruct", 3)
    node.servers["vllm-a-2"] = server
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    node.kube.add_pod("vllm-a-2", "serve", node=NODE, pod_ip="127.0.0.1", created=created,
                      labels={"team": "search", "model": "llama-8b"}, annotations=pod_annotations(port_of(server)))  # fmt: skip
    node.holdings[("serve", "vllm-a-2")] = {"vllm": {"nvidia.com/gpu": [U0]}}
    node.set_holdings()
    after = wait_for(node.tick_until(lambda s: held_seconds(s, "vllm-a-2") > 1), 20, what="vllm-a-2 on GPU 0")
    assert held_seconds(after, "vllm-a") == pytest.approx(frozen, abs=1e-9)  # not a nano-second after
    check_books(after)


def test_a_lost_gpu_is_billed_to_its_holder_but_never_busy(node: Node, wait_for) -> None:  # type: ignore[no-untyped-def]
    scenario(lost=True).write(node.nvml_scenario)
    lost = wait_for(node.tick_until(lambda s: bool(s.find("cpm_gpu_fault", gpu=U1))), 15, what="GPU 1 lost")
    assert lost.get("cpm_gpu_fault", gpu=U1, fault="gpu_is_lost") == 1.0
    busy = lost.total("cpm_gpu_seconds_total", pod="train-0", state="busy")
    held = held_seconds(lost, "train-0")
    later = node.tick(3)
    assert held_seconds(later, "train-0") > held + 2  # still held and billed...
    assert later.total("cpm_gpu_seconds_total", pod="train-0", state="busy") == pytest.approx(busy, abs=1e-9)
    assert later.get("cpm_gpu_info", gpu=U1, hardware="H100") == 1.0  # ...at its price
    check_books(later)


def test_prometheus_scrapes_the_node_and_computes_the_same_books(  # type: ignore[no-untyped-def]
    node: Node, prometheus: Prometheus, wait_for
) -> None:
    prometheus.set_targets({"cpm": [node.exporter.address]})
    prometheus.wait_up("cpm")

    def same() -> bool:
        bill = prometheus.value('sum(cpm_bill_usd_total{job="cpm"})')
        parts = prometheus.value(
            'sum(cpm_cost_usd_total{job="cpm"}) + sum(cpm_cost_retired_usd_total{job="cpm"})'
        )
        return bill == pytest.approx(parts, abs=1e-8) and bill > 0

    wait_for(same, 30, what="Prometheus's bill equal to the sum of its cost series")
    up = {r["metric"]["source"]: r["value"][1] for r in prometheus.query('cpm_source_up{job="cpm"}')}
    assert up == {"nvml": "1", "kubernetes": "1", "podresources": "1"}
