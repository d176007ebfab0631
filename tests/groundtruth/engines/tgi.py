"""Hugging Face TGI 3.3.7, rendered as metrics-exporter-prometheus 0.15 does (``tgi.md``, tgi.prom).

One model per process and no model label; no start time. metrics-rs shows a metric only once
it was first recorded, so a fresh life shows no token family until its first request.
"""

from __future__ import annotations

from collections.abc import Sequence

from tests.groundtruth.engines.base import Engine, Meaning, Request
from tests.groundtruth.formats import metrics_rs
from tests.groundtruth.ir import Family
from tests.groundtruth.store import Store

MODEL = "mistralai/Mistral-7B-Instruct-v0.3"
# TGI's rule: max_input_tokens / 100 × (1..100), max_total_tokens / 100 × (1..100).
INPUT_BUCKETS = tuple(4095 / 100 * k for k in range(1, 101))
OUTPUT_BUCKETS = tuple(4096 / 100 * k for k in range(1, 101))
INPUT = "tgi_request_input_length"
OUTPUT = "tgi_request_generated_tokens"
SUCCESS = "tgi_request_success"
RUNNING = "tgi_batch_current_size"
DOCS = {
    "tgi_request_count": "Total number of requests",
    SUCCESS: "Number of successful requests",
    "tgi_queue_size": "Current queue size",
    RUNNING: "Current batch size",
    OUTPUT: "Generated tokens per request",
    INPUT: "Input token length per request",
}  # tgi_batch_max_total_tokens has no describe_* call, so no HELP line


class Tgi(Engine):
    kind = "tgi"
    model = MODEL
    docs = DOCS
    missable = (INPUT, OUTPUT, SUCCESS)
    noise_families = (INPUT, OUTPUT)  # histogram sums are f64
    poison_family = INPUT
    gauge_family = RUNNING
    partial_zero = frozenset({INPUT})

    def new_store(self, start: float) -> Store:
        return Store(start)

    def observe(self, store: Store, req: Request) -> None:
        store.add("tgi_request_count", (), 1)
        store.observe(INPUT, (), INPUT_BUCKETS, req.prompt)  # at validation, before generation
        if req.finished:
            store.add(SUCCESS, (), 1)
            store.observe(OUTPUT, (), OUTPUT_BUCKETS, req.output)

    def families(self, store: Store, running: float) -> list[Family]:
        return [
            self.counter(store, "tgi_request_count"),
            self.counter(store, SUCCESS, Meaning(("requests",))),
            self.gauge("tgi_queue_size", [((), 0.0)]),
            self.gauge(RUNNING, [((), running)]),
            self.gauge("tgi_batch_max_total_tokens", [((), 125712.0)]),
            self.histogram(store, OUTPUT, Meaning(("output_tokens",))),
            self.histogram(store, INPUT, Meaning(("input_tokens",))),
        ]

    def write(self, families: Sequence[Family]) -> str:
        return metrics_rs(families)
