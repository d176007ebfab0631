"""Triton with the TensorRT-LLM backend, rendered as prometheus-cpp does (``triton-trtllm.md``).

An ensemble (ensemble → preprocessing → tensorrt_llm → postprocessing). With TRT-LLM ≥ 0.16
(``token_histograms``) the tensorrt_llm model also has ``nv_llm_input_token_len`` and
``nv_llm_output_token_len``: tokens are their sums and requests the output count. Triton
r24.12 with TRT-LLM 0.15 has no token histogram: only ``nv_inference_*`` per model, so the
requests of the tensorrt_llm model are all a scraper can read. No start time is exported;
every series exists from model load.
"""

from __future__ import annotations

from collections.abc import Sequence

from tests.groundtruth.engines.base import Engine, Meaning, Request
from tests.groundtruth.formats import prometheus_cpp
from tests.groundtruth.ir import Family, Labels, labels
from tests.groundtruth.store import Store

MODELS = ("ensemble", "preprocessing", "tensorrt_llm", "postprocessing")
LLM = "tensorrt_llm"
BUCKETS = (10.0, 50.0, 100.0, 500.0, 1000.0)
INPUT = "nv_llm_input_token_len"
OUTPUT = "nv_llm_output_token_len"
SUCCESS = "nv_inference_request_success"
FAILURE = "nv_inference_request_failure"
PER_MODEL = (SUCCESS, "nv_inference_count", "nv_inference_exec_count")
FAILURE_REASONS = ("REJECTED", "CANCELED", "BACKEND", "OTHER")
RUNNING = "nv_trt_llm_request_metrics"
DOCS = {
    SUCCESS: "Number of successful inference requests, all batch sizes",
    FAILURE: "Number of failed inference requests, all batch sizes",
    "nv_inference_count": "Number of inferences performed (does not include cached requests)",
    "nv_inference_exec_count": "Number of model executions performed (does not include cached requests)",
    "nv_inference_pending_request_count": "Instantaneous number of pending requests awaiting execution per-model.",
    RUNNING: "TRT LLM request metrics",
    OUTPUT: "TRT LLM response metrics",
    INPUT: "TRT LLM response metrics",
}


def model_labels(model: str) -> Labels:
    return labels(model=model, version="1")


def token_labels(kind: str) -> Labels:
    return labels(model=LLM, response_metric_type=kind, version="1")


class Triton(Engine):
    model = LLM
    docs = DOCS
    gauge_family = RUNNING
    partial_zero = frozenset({INPUT})

    def __init__(self, token_histograms: bool = True) -> None:
        self.token_histograms = token_histograms
        self.kind = "triton" if token_histograms else "triton-r24.12"
        self.missable = (INPUT, OUTPUT) if token_histograms else (SUCCESS,)
        self.noise_families = (INPUT, OUTPUT) if token_histograms else ()
        self.poison_family = INPUT if token_histograms else SUCCESS

    def new_store(self, start: float) -> Store:
        store = Store(start)
        for model in MODELS:
            for name in PER_MODEL:
                store.add(name, model_labels(model))
            for reason in FAILURE_REASONS:
                store.add(FAILURE, labels(model=model, reason=reason, version="1"))
        if self.token_histograms:
            store.observe(OUTPUT, token_labels("total_output_tokens"), BUCKETS, None)
            store.observe(INPUT, token_labels("total_input_tokens"), BUCKETS, None)
        return store

    def observe(self, store: Store, req: Request) -> None:
        if not req.finished:
            return  # the backend observes both lengths when the response completes
        for model in MODELS:
            for name in PER_MODEL:
                store.add(name, model_labels(model), 1)
        if self.token_histograms:
            store.observe(OUTPUT, token_labels("total_output_tokens"), BUCKETS, req.output)
            store.observe(INPUT, token_labels("total_input_tokens"), BUCKETS, req.prompt)

    def model_of(self, lbl: Labels) -> str:
        return dict(lbl)["model"]

    def families(self, store: Store, running: float) -> list[Family]:
        # r24.12: the tensorrt_llm model's successes are the only thing read. With the token
        # histograms requests are their _count, so a missing histogram family freezes them.
        success = Meaning(() if self.token_histograms else ("requests",), where=(("model", LLM),))
        active = [
            ("active", running),
            ("max", 256.0),
            ("scheduled", running),
            ("context", 1.0),
            ("waiting", 0.0),
        ]
        out = [
            self.counter(store, SUCCESS, success),
            self.counter(store, FAILURE),
            *(self.counter(store, name) for name in PER_MODEL[1:]),
            self.gauge("nv_inference_pending_request_count", [(model_labels(m), 0.0) for m in MODELS]),
            self.gauge(RUNNING, [(labels(model=LLM, request_type=t, version="1"), v) for t, v in active]),
        ]
        if self.token_histograms:
            out.append(self.histogram(store, OUTPUT, Meaning(("output_tokens",), ("requests",))))
            out.append(self.histogram(store, INPUT, Meaning(("input_tokens",))))
        return out

    def write(self, families: Sequence[Family]) -> str:
        return prometheus_cpp(families)
