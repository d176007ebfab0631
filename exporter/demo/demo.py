"""``cpm-exporter demo``: the whole pipeline on a made-up node, no GPU and no cluster.

One simulated server of each engine (vLLM, SGLang, TGI, Triton/TensorRT-LLM, llama.cpp)
runs on loopback with its own model, team and load — TGI restarts now and then, a vLLM
canary holds a GPU and serves nothing — beside a training job counting its tokens with
our helper; GPU utilisation follows their load. The config is the embedded
``data/demo.yaml``, loaded by the same strict loader as any file.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import NamedTuple

from exporter.config.load import load_config_text
from exporter.config.schema import ExporterConfig
from exporter.demo.gateway import SimGateway
from exporter.demo.simulation import Load, SimEngine, SimServer
from exporter.records import GpuSample
from exporter.sources.gpu.inventory import StaticInventory
from exporter.training import TrainingTokens


class DemoServer(NamedTuple):
    model: str  # the model name the engine reports (Triton reports its model repository name)
    engine: str
    load: Load | None  # None: holds a GPU and serves nothing


DEMO_SERVERS: dict[str, DemoServer] = {
    "url_llama70b": DemoServer("meta-llama/Llama-3.3-70B-Instruct", "vllm", Load(
        requests_per_second=9.0, prompt_tokens=900, output_tokens=260, itl_seconds=0.024, prefill_seconds=0.35, seed=1,
        cache_hit_ratio=0.3)),
    "url_qwen32b": DemoServer("Qwen/Qwen2.5-32B-Instruct", "sglang", Load(
        requests_per_second=3.0, prompt_tokens=1400, output_tokens=380, itl_seconds=0.03, prefill_seconds=0.3, seed=2,
        cache_hit_ratio=0.5)),
    "url_llama8b": DemoServer("meta-llama/Llama-3.1-8B-Instruct", "tgi", Load(
        requests_per_second=5.0, prompt_tokens=600, output_tokens=180, itl_seconds=0.012, prefill_seconds=0.08,
        restart_every_seconds=150.0, seed=3)),
    "url_phi3": DemoServer("microsoft/Phi-3-mini-4k-instruct", "llamacpp", Load(
        requests_per_second=1.0, prompt_tokens=300, output_tokens=120, itl_seconds=0.015, prefill_seconds=0.05, seed=4)),
    "url_gptoss": DemoServer("tensorrt_llm", "triton", Load(
        requests_per_second=6.0, prompt_tokens=1000, output_tokens=300, itl_seconds=0.01, prefill_seconds=0.1, seed=5)),
    "url_canary": DemoServer("mistralai/Mistral-7B-Instruct-v0.3", "vllm", None),
}  # fmt: skip
# The 70B vLLM is shared: three teams call it through a LiteLLM-like gateway, 5 : 3 : 2 of its tokens.
GATEWAY_TEAMS = {"search": 5, "ads": 3, "assistant": 2}
TRAINING_TOKENS_PER_SECOND = 45_000  # a fine-tune on one H100
TRAINING_BUSY = 0.93


@dataclass
class Demo:
    servers: dict[str, SimServer[SimEngine]]
    training: TrainingTokens
    text: str
    gateway: SimServer[SimGateway] | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)

    def load(self) -> ExporterConfig:
        return load_config_text(self.text, source="<embedded demo>")

    def stop(self) -> None:
        self.stop_event.set()
        self.training.close()
        for s in self.servers.values():
            s.stop()
        if self.gateway is not None:
            self.gateway.stop()


def start_demo(tick_seconds: float | None = None) -> Demo:
    """Start the simulated servers and the training job; return the config bound to their ports."""
    servers = {
        key: SimServer(SimEngine(d.model, d.load, engine=d.engine)).start() for key, d in DEMO_SERVERS.items()
    }
    training = TrainingTokens()
    training_url = f"http://127.0.0.1:{training.serve(port=0, host='127.0.0.1')}/metrics"
    text = resources.files("exporter").joinpath("data/demo.yaml").read_text(encoding="utf-8")
    for key, server in servers.items():
        text = text.replace("{" + key + "}", server.url)
    text = text.replace("{url_training}", training_url)
    gateway = SimServer(SimGateway([servers["url_llama70b"].sim], GATEWAY_TEAMS)).start()
    text = text.replace("{url_gateway}", gateway.url)
    published = resources.files("exporter").joinpath("data/demo-published.yaml")
    text = text.replace("{published_table}", str(published))
    if tick_seconds is not None:
        text = text.replace("tick_seconds: 2", f"tick_seconds: {tick_seconds}")
    demo = Demo(servers, training, text, gateway)
    threading.Thread(target=_train, args=(demo,), name="demo-training", daemon=True).start()
    return demo


def _train(demo: Demo) -> None:
    """The training job's steps: one every half second until the demo stops."""
    while not demo.stop_event.wait(0.5):
        demo.training.add(TRAINING_TOKENS_PER_SECOND // 2)


class DemoNode(StaticInventory):
    """The static inventory, with each held GPU as busy as the workload holding it."""

    def __init__(self, demo: Demo) -> None:
        self._sims = {s.url: s.sim for s in demo.servers.values()}

    def gpus(self, cfg: ExporterConfig) -> tuple[GpuSample, ...]:
        util: dict[str, float] = {}
        for w in cfg.workloads:
            busy = [self._sims[t.url].utilization for t in w.targets if t.url in self._sims]
            if w.owner.workload == "training":
                busy.append(TRAINING_BUSY)
            for gpu_id, _ in w.gpus:  # time-sliced GPUs: the sum of their holders' use
                util[gpu_id] = min(1.0, util.get(gpu_id, 0.0) + max(busy, default=0.0))
        return tuple(replace(g, utilization=util.get(g.gpu_id, 0.0)) for g in super().gpus(cfg))
