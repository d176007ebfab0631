"""SGLang, rendered by prometheus_client in multiprocess mode (``sglang.md``, sglang.prom).

No ``_created`` and no ``process_*``; a child appears with its first value, so a model (or a
LoRA adapter, under the custom label ``lora_name``) appears on its first finished request,
and a ``cache_source`` child on its first cache hit. 0.5.23: tokenizer counters carry
``engine_type`` and ``is_streaming``; 0.4.0 (``legacy``): ``model_name`` only, and neither
``sglang:num_requests_total`` nor ``sglang:cached_tokens_total`` exists yet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tests.groundtruth.engines.base import Engine, Meaning, Request
from tests.groundtruth.formats import client_python
from tests.groundtruth.ir import Family, Labels, labels
from tests.groundtruth.store import Store

MODEL = "Qwen/Qwen2.5-7B-Instruct"
ADAPTER_LABEL = "lora_name"
PROMPT = "sglang:prompt_tokens_total"
GENERATION = "sglang:generation_tokens_total"
REQUESTS = "sglang:num_requests_total"
CACHED = "sglang:cached_tokens_total"
RUNNING = "sglang:num_running_reqs"
DOCS = {
    RUNNING: "The number of running requests.",
    "sglang:token_usage": "The token usage.",
    PROMPT: "Number of prefill tokens processed.",
    GENERATION: "Number of generation tokens processed.",
    REQUESTS: "Number of requests processed.",
    CACHED: "Number of cached prompt tokens by source (device/host/storage).",
}
SCHEDULER = {"engine_type": "unified", "moe_ep_rank": "0", "pp_rank": "0", "tp_rank": "0"}


class Sglang(Engine):
    model = MODEL
    adapter_label = ADAPTER_LABEL
    docs = DOCS
    gauge_family = RUNNING
    poison_family = PROMPT
    noise_families = (PROMPT, GENERATION)
    partial_zero = frozenset({PROMPT, CACHED})

    def __init__(self, legacy: bool = False, adapters: Mapping[str, str] | None = None) -> None:
        self.legacy = legacy
        self.kind = "sglang-0.4" if legacy else "sglang"
        # adapter name → its base model; 0.4 has no custom labels, so adapters count as the base
        self.adapters = dict(adapters or {})
        self.missable = (PROMPT, GENERATION) if legacy else (PROMPT, GENERATION, REQUESTS, CACHED)

    def tokenizer_labels(self, req: Request) -> Labels:
        model = req.model or self.model
        base, adapter = (self.adapters[model], model) if model in self.adapters else (model, "")
        if self.legacy:
            return labels(model_name=base)
        streaming = "true" if req.streaming else "false"
        return labels(engine_type="unified", is_streaming=streaming, lora_name=adapter, model_name=base)

    def new_store(self, start: float) -> Store:
        return Store(start)

    def observe(self, store: Store, req: Request) -> None:
        if not req.finished:
            return  # SGLang counts tokens when a request finishes
        lbl = self.tokenizer_labels(req)
        store.add(PROMPT, lbl, req.prompt)
        store.add(GENERATION, lbl, req.output)
        if self.legacy:
            return
        store.add(REQUESTS, lbl, 1)
        if req.cached:
            by_source = {**dict(lbl), "cache_source": "device"}
            del by_source["is_streaming"]
            store.add(CACHED, labels(**by_source), req.cached)

    def model_of(self, lbl: Labels) -> str:
        found = dict(lbl)
        return found.get(ADAPTER_LABEL) or found["model_name"]

    def base_models(self, store: Store) -> list[str]:
        seen = {dict(lbl)["model_name"] for _, lbl in store.counters}
        return [self.model, *sorted(seen - {self.model})]

    def families(self, store: Store, running: float) -> list[Family]:
        scheduler = {} if self.legacy else SCHEDULER
        per_model = [labels(model_name=m, **scheduler) for m in self.base_models(store)]
        out = [
            self.gauge(RUNNING, [(lbl, running) for lbl in per_model]),
            self.gauge("sglang:token_usage", [(lbl, 0.08) for lbl in per_model]),
            self.counter(store, PROMPT, Meaning(("input_tokens",))),
            self.counter(store, GENERATION, Meaning(("output_tokens",))),
        ]
        if not self.legacy:
            out.append(self.counter(store, REQUESTS, Meaning(("requests",))))
            out.append(self.counter(store, CACHED, Meaning(("cached_input_tokens",))))
        return out

    def write(self, families: Sequence[Family]) -> str:
        return client_python(families)
