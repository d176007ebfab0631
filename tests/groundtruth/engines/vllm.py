"""vLLM, rendered by prometheus_client (``../shared/reference/vllm.md``, payloads vllm-v*.prom).

* V1 (0.33): single API server, default registry: ``_created`` on every counter and
  histogram, ``process_*``; labels ``engine`` and ``model_name``; the five finish reasons
  are created at 0 on start-up.
* V0 (0.6.6, multiprocessing front-end): ``MultiProcessCollector``, so no ``_created`` and no
  ``process_*``; label ``model_name`` only; every child appears on first use (a finish reason
  on the first request finishing that way); no cached-token counter.
"""

from __future__ import annotations

from collections.abc import Sequence

from tests.groundtruth.engines.base import Engine, Meaning, Request
from tests.groundtruth.formats import client_python
from tests.groundtruth.ir import Family, Labels, labels
from tests.groundtruth.store import Store

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
REASONS_V1 = ("stop", "length", "abort", "error", "repetition")
TOKEN_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0)  # fmt: skip
PROMPT = "vllm:prompt_tokens_total"
CACHED = "vllm:prompt_tokens_cached_total"
GENERATION = "vllm:generation_tokens_total"
SUCCESS = "vllm:request_success_total"
RUNNING = "vllm:num_requests_running"
PROMPT_LENGTHS = "vllm:request_prompt_tokens"
GENERATION_LENGTHS = "vllm:request_generation_tokens"
CACHE_QUERIES = "vllm:prefix_cache_queries_total"
CACHE_HITS = "vllm:prefix_cache_hits_total"
DOCS = {
    "python_info": "Python platform information",
    "process_resident_memory_bytes": "Resident memory size in bytes.",
    "process_start_time_seconds": "Start time of the process since unix epoch in seconds.",
    RUNNING: "Number of requests in model execution batches.",
    "vllm:num_requests_waiting": "Number of requests waiting to be processed.",
    "vllm:kv_cache_usage_perc": "KV-cache usage. 1 means 100 percent usage.",
    "vllm:gpu_cache_usage_perc": "GPU KV-cache usage. 1 means 100 percent usage.",
    CACHE_QUERIES: "Prefix cache queries, in terms of number of queried tokens.",
    CACHE_HITS: "Prefix cache hits, in terms of number of cached tokens.",
    PROMPT: "Number of prefill tokens processed.",
    CACHED: "Number of cached prompt tokens (local + external).",
    GENERATION: "Number of generation tokens processed.",
    SUCCESS: "Count of successfully processed requests.",
    PROMPT_LENGTHS: "Number of prefill tokens processed.",
    GENERATION_LENGTHS: "Number of generation tokens processed.",
}


class _Vllm(Engine):
    model = MODEL
    docs = DOCS
    gauge_family = RUNNING
    poison_family = PROMPT
    noise_families = (PROMPT, GENERATION)

    def base_labels(self, model: str) -> Labels:
        return labels(model_name=model)

    def observe(self, store: Store, req: Request) -> None:
        lbl = self.base_labels(req.model or self.model)
        store.add(PROMPT, lbl, req.prompt)
        store.add(GENERATION, lbl, req.output)
        if req.finished:
            store.add(SUCCESS, (*lbl, ("finished_reason", req.reason)), 1)
            store.observe(PROMPT_LENGTHS, lbl, TOKEN_BUCKETS, req.prompt)
            store.observe(GENERATION_LENGTHS, lbl, TOKEN_BUCKETS, req.output)

    def write(self, families: Sequence[Family]) -> str:
        return client_python(families)

    def model_of(self, lbl: Labels) -> str:
        return dict(lbl)["model_name"]

    def token_families(self, store: Store, created: bool) -> list[Family]:
        return [
            self.counter(store, PROMPT, Meaning(("input_tokens",)), created),
            self.counter(store, GENERATION, Meaning(("output_tokens",)), created),
            self.counter(store, SUCCESS, Meaning(("requests",), per_label="finished_reason"), created),
            self.histogram(store, PROMPT_LENGTHS, created=created),
            self.histogram(store, GENERATION_LENGTHS, created=created),
        ]


class VllmV1(_Vllm):
    kind = "vllm-v1"
    missable = (PROMPT, GENERATION, SUCCESS, CACHED)
    partial_zero = frozenset({PROMPT, CACHED, CACHE_QUERIES, CACHE_HITS, PROMPT_LENGTHS})

    def base_labels(self, model: str) -> Labels:
        return labels(engine="0", model_name=model)

    def new_store(self, start: float) -> Store:
        store = Store(start)
        lbl = self.base_labels(self.model)
        for name in (CACHE_QUERIES, CACHE_HITS, PROMPT, CACHED, GENERATION):
            store.add(name, lbl)
        for reason in REASONS_V1:
            store.add(SUCCESS, (*lbl, ("finished_reason", reason)))
        for name in (PROMPT_LENGTHS, GENERATION_LENGTHS):
            store.observe(name, lbl, TOKEN_BUCKETS, None)
        return store

    def observe(self, store: Store, req: Request) -> None:
        super().observe(store, req)
        lbl = self.base_labels(req.model or self.model)
        store.add(CACHE_QUERIES, lbl, req.prompt)
        store.add(CACHE_HITS, lbl, req.cached)
        store.add(CACHED, lbl, req.cached)

    def start_time(self, store: Store) -> float | None:
        return store.start

    def families(self, store: Store, running: float) -> list[Family]:
        lbl = self.base_labels(self.model)
        return [
            self.gauge("python_info", [(labels(implementation="CPython"), 1.0)]),
            self.gauge("process_resident_memory_bytes", [((), 3.981e9)]),
            self.gauge("process_start_time_seconds", [((), store.start)]),
            self.gauge(RUNNING, [(lbl, running)]),
            self.gauge("vllm:num_requests_waiting", [(lbl, 0.0)]),
            self.gauge("vllm:kv_cache_usage_perc", [(lbl, 0.0731)]),
            self.counter(store, CACHE_QUERIES, created=True),
            self.counter(store, CACHE_HITS, created=True),
            self.counter(store, CACHED, Meaning(("cached_input_tokens",)), created=True),
            *self.token_families(store, created=True),
        ]


class VllmV0(_Vllm):
    kind = "vllm-v0"
    missable = (PROMPT, GENERATION, SUCCESS)
    partial_zero = frozenset({PROMPT, PROMPT_LENGTHS})

    def new_store(self, start: float) -> Store:
        return Store(start)  # multiprocess files appear with each child's first value

    def families(self, store: Store, running: float) -> list[Family]:
        lbl = self.base_labels(self.model)
        return [
            *self.token_families(store, created=False),
            self.gauge(RUNNING, [(lbl, running)]),
            self.gauge("vllm:gpu_cache_usage_perc", [(lbl, 0.04)]),
        ]
