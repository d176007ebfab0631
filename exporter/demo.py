"""``cpm-exporter demo``: the whole pipeline on a made-up node, no GPU and no cluster.

Four simulated vLLM servers run on loopback with different models, teams and loads (one
restarts now and then, one serves nothing); GPU utilisation follows their load. The
config is the embedded ``data/demo.yaml``, loaded by the same strict loader as any file.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from importlib import resources

from exporter.config import load_config_text
from exporter.model import GpuSample
from exporter.settings import ExporterConfig
from exporter.simulation import Load, SimServer, SimVllm
from exporter.sources.inventory import StaticInventory

DEMO_LOADS: dict[str, tuple[str, Load | None]] = {
    "url_llama70b": (
        "meta-llama/Llama-3.3-70B-Instruct",
        Load(requests_per_second=9.0, prompt_tokens=900, output_tokens=260, itl_seconds=0.024, prefill_seconds=0.35,
             seed=1),
    ),
    "url_qwen32b": (
        "Qwen/Qwen2.5-32B-Instruct",
        Load(requests_per_second=3.0, prompt_tokens=1400, output_tokens=380, itl_seconds=0.03, prefill_seconds=0.3,
             seed=2),
    ),
    "url_llama8b": (
        "meta-llama/Llama-3.1-8B-Instruct",
        Load(requests_per_second=5.0, prompt_tokens=600, output_tokens=180, itl_seconds=0.012, prefill_seconds=0.08,
             restart_every_seconds=150.0, seed=3),
    ),
    "url_canary": ("mistralai/Mistral-7B-Instruct-v0.3", None),
}  # fmt: skip


@dataclass
class Demo:
    servers: dict[str, SimServer]
    text: str

    def load(self) -> ExporterConfig:
        return load_config_text(self.text, source="<embedded demo>")

    def stop(self) -> None:
        for s in self.servers.values():
            s.stop()


def start_demo(tick_seconds: float | None = None) -> Demo:
    """Start the simulated servers and return the demo config bound to their ports."""
    servers = {key: SimServer(SimVllm(model, load)).start() for key, (model, load) in DEMO_LOADS.items()}
    text = resources.files("exporter").joinpath("data/demo.yaml").read_text(encoding="utf-8")
    for key, server in servers.items():
        text = text.replace("{" + key + "}", server.url)
    if tick_seconds is not None:
        text = text.replace("tick_seconds: 2", f"tick_seconds: {tick_seconds}")
    return Demo(servers, text)


class DemoNode(StaticInventory):
    """The static inventory, with each held GPU as busy as its simulated server."""

    def __init__(self, demo: Demo) -> None:
        self._busy = {s.url: s.sim for s in demo.servers.values()}

    def gpus(self, cfg: ExporterConfig) -> tuple[GpuSample, ...]:
        util: dict[str, float] = {}
        for w in cfg.workloads:
            sims = [self._busy[t.url] for t in w.targets if t.url in self._busy]
            for gpu_id, _ in w.gpus:
                util[gpu_id] = max((s.utilization for s in sims), default=0.0)
        return tuple(replace(g, utilization=util.get(g.gpu_id, 0.0)) for g in super().gpus(cfg))
