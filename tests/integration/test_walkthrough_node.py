"""The README's walkthrough on a node: the example Deployment's pod, the walkthrough's config, the rows it shows.

Real pieces, as in test_node_scenario: the exporter process with the config the chart renders from
deploy/examples/walkthrough-values.yaml (only the node's paths changed to this machine's), the real pynvml over
a fake libnvidia-ml.so.1 with 8 H100, the kubelet's PodResources over gRPC giving GPU 0 to the pod, a loopback
Kubernetes API listing the pod made from deploy/examples/vllm-deployment.yaml's template, and a simulated vLLM
serving the model on the pod's IP and annotated port. Every row the walkthrough shows must appear with the
same labels (values differ run to run).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from exporter.demo.simulation import Load, SimEngine, SimServer
from tests.fake_kube_api import FakeKubeApi
from tests.fakes.kubelet import FakeKubelet, list_reply, podresources_pb
from tests.fakes.nvml import FakeGpu, Scenario, build_fake_nvml
from tests.integration.conftest import Exporter, ExporterFactory, Samples
from tests.test_walkthrough import MODEL, NODE, POD_NAME, example_pod, rendered_walkthrough_config, shown_rows

POD_IP = "127.0.0.87"  # a loopback address of its own, so the annotated port 8000 is free on it
GPUS = [  # the UUIDs nvidia-smi -L would list (made up, in the drivers' format)
    "GPU-3f9c2b7e-8d41-4a6f-b2c9-71e05d8a4c13", "GPU-a06e5d21-4c7b-49f3-8e12-5b9d0f6c2a87",
    "GPU-c81d4f9a-2e6b-4d05-9a3c-e7f12b48d690", "GPU-5b2e7c10-9f4d-4e8a-b361-0d9c8a7e5f24",
    "GPU-e47a9b3c-1d8e-4f62-a5b0-93c6d2f1e8a5", "GPU-7d0c3e8f-6a2b-45d1-9e7f-2c4a8b1d6e03",
    "GPU-19f6a4d2-b3c8-4e7a-8d5f-6e0b2c9a7f41", "GPU-2a8b5e6d-7f1c-4b39-a0e4-d5c3f8b9e162",
]  # fmt: skip


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory, exporters: ExporterFactory) -> Iterator[Exporter]:
    work = tmp_path_factory.mktemp("walkthrough")
    library = build_fake_nvml(work)
    nvml = work / "nvml-scenario.txt"
    Scenario(gpus=[FakeGpu(i, uuid=u, util=64 if i == 0 else 0, power_mw=520_000 if i == 0 else 70_000)
                   for i, u in enumerate(GPUS)]).write(nvml)  # fmt: skip
    (work / "proto").mkdir()
    pb = podresources_pb(work / "proto")
    kubelet = FakeKubelet(pb, work / "kubelet.sock")
    kubelet.serve(List=list_reply(pb, {("llm-serving", POD_NAME): {"vllm": {"nvidia.com/gpu": [GPUS[0]]}}}))

    pod = example_pod(pod_ip=POD_IP)
    port = int(pod["metadata"]["annotations"]["prometheus.io/port"])
    load = Load(requests_per_second=5.0, prompt_tokens=900, output_tokens=250, itl_seconds=0.022,
                prefill_seconds=0.09, cache_hit_ratio=0.25, seed=7)  # fmt: skip
    vllm = SimServer(SimEngine(MODEL, load), host=POD_IP, port=port).start()
    kube = FakeKubeApi().start()
    kube.add_raw_pod("llm-serving", POD_NAME, pod)
    kubeconfig = kube.write_kubeconfig(work / "kubeconfig")

    config = yaml.safe_load(rendered_walkthrough_config())  # what the chart mounts; paths of this machine
    config.pop("state_file", None)
    config.update(node=NODE, tick_seconds=1, window_seconds=10)
    config["node_source"].update(poll_seconds=0.25, call_timeout_seconds=1)
    config["kubernetes"].update(
        node_name=NODE, kubeconfig=str(kubeconfig), podresources_socket=str(kubelet.path)
    )
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {"LD_LIBRARY_PATH": str(library.parent), "FAKE_NVML_SCENARIO": str(nvml)}
    process = exporters.run(path, env=env)
    try:
        yield process
    finally:
        process.stop()
        kubelet.stop()
        kube.close()
        vllm.stop()


def keys(samples: Samples) -> set[tuple[str, frozenset[tuple[str, str]]]]:
    return {(s.name, frozenset(s.labels.items())) for s in samples.samples}


def test_every_row_the_walkthrough_shows_appears(exporter: Exporter, wait_for) -> None:  # type: ignore[no-untyped-def]
    wanted = {(name, frozenset(labels.items())) for name, labels, _ in shown_rows()}

    def all_rows() -> Samples | None:
        s = exporter.next_tick()
        return s if wanted <= keys(s) else None

    s = wait_for(all_rows, 60, what="the walkthrough's rows")
    # The pod's money is its one GPU at the walkthrough's price; the seven others are idle (unallocated).
    held = s.total("cpm_gpu_seconds_total", pod=POD_NAME, state="held")
    gpu = s.total("cpm_cost_usd_total", pod=POD_NAME, component="gpu")
    assert gpu == pytest.approx(held * 4.5 / 3600, rel=1e-6, abs=1e-8)
    assert s.get("cpm_gpu_utilization_ratio", pod=POD_NAME) == pytest.approx(0.64, abs=0.02)
