"""How each simulated engine prints its counters: one renderer per engine, in a table.

Names, types, labels and number formats follow the reference files of each server
(``../shared/reference/{vllm,sglang,tgi,triton-trtllm,llamacpp}.md``): vLLM and SGLang
through prometheus_client (``_total``, ``_created`` for vLLM, multiprocess for SGLang), TGI
through metrics-rs (counters without ``_total``, no model label), Triton through
prometheus-cpp (``_count``/``_sum`` before buckets), llama.cpp by hand (6 significant digits).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from exporter.exposition.render import escape_label

if TYPE_CHECKING:
    from exporter.demo.simulation import SimEngine


def plain_number(x: float) -> str:
    """A number as metrics-rs and prometheus-cpp print it (whole numbers without ".0")."""
    if x == math.inf:
        return "+Inf"
    return str(int(x)) if float(x).is_integer() else repr(float(x))


class _Text:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_: str, samples: list[str]) -> None:
        self.lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}", *samples]

    def done(self) -> str:
        return "\n".join(self.lines) + "\n"


def vllm(sim: SimEngine) -> str:
    lab = f'engine="0",model_name="{escape_label(sim.model)}"'
    t = _Text()

    def counter(base: str, help_: str, value: float) -> None:
        t.family(f"{base}_total", "counter", help_, [f"{base}_total{{{lab}}} {float(value)!r}"])
        t.family(f"{base}_created", "gauge", help_, [f"{base}_created{{{lab}}} {sim.created!r}"])

    t.family(
        "vllm:num_requests_running",
        "gauge",
        "Number of requests in model execution batches.",
        [f"vllm:num_requests_running{{{lab}}} {sim.running!r}"],
    )
    t.family(
        "vllm:num_requests_waiting",
        "gauge",
        "Number of requests waiting to be processed.",
        [f"vllm:num_requests_waiting{{{lab}}} 0.0"],
    )
    t.family(
        "vllm:kv_cache_usage_perc",
        "gauge",
        "KV-cache usage. 1 means 100 percent usage.",
        [f"vllm:kv_cache_usage_perc{{{lab}}} {min(1.0, sim.running / 200):.4f}"],
    )
    counter("vllm:prompt_tokens", "Number of prefill tokens processed.", sim.prompt_tokens)
    counter(
        "vllm:prompt_tokens_cached", "Number of cached prompt tokens (local + external).", sim.cached_tokens
    )
    counter("vllm:generation_tokens", "Number of generation tokens processed.", sim.generation_tokens)
    t.family(
        "vllm:request_success_total",
        "counter",
        "Count of successfully processed requests.",
        [
            f'vllm:request_success_total{{{lab},finished_reason="{r}"}} {n:.1f}'
            for r, n in sim.success.items()
        ],
    )
    for name, help_, histogram in (
        ("inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", sim.itl),
        (
            "request_prefill_time_seconds",
            "Histogram of time spent in PREFILL phase for request.",
            sim.prefill,
        ),
        ("request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.", sim.decode),
        ("request_prompt_tokens", "Number of prefill tokens processed.", sim.prompt_lengths),
        ("request_generation_tokens", "Number of generation tokens processed.", sim.output_lengths),
    ):
        t.family(f"vllm:{name}", "histogram", help_, histogram.lines(f"vllm:{name}", lab))
    return t.done()


def sglang(sim: SimEngine) -> str:
    model = escape_label(sim.model)
    tok = f'engine_type="unified",is_streaming="false",model_name="{model}"'
    sched = f'engine_type="unified",model_name="{model}",moe_ep_rank="0",pp_rank="0",tp_rank="0"'
    requests = sum(sim.success.values())
    t = _Text()
    t.family(
        "sglang:prompt_tokens_total",
        "counter",
        "Number of prefill tokens processed.",
        [f"sglang:prompt_tokens_total{{{tok}}} {float(sim.prompt_tokens)!r}"],
    )
    t.family(
        "sglang:generation_tokens_total",
        "counter",
        "Number of generation tokens processed.",
        [f"sglang:generation_tokens_total{{{tok}}} {float(sim.generation_tokens)!r}"],
    )
    t.family(
        "sglang:cached_tokens_total",
        "counter",
        "Number of cached prompt tokens.",
        [
            f'sglang:cached_tokens_total{{cache_source="device",model_name="{model}"}} {float(sim.cached_tokens)!r}'
        ],
    )
    t.family(
        "sglang:num_requests_total",
        "counter",
        "Number of requests processed.",
        [f"sglang:num_requests_total{{{tok}}} {float(requests)!r}"],
    )
    t.family(
        "sglang:num_running_reqs",
        "gauge",
        "The number of running requests.",
        [f"sglang:num_running_reqs{{{sched}}} {sim.running!r}"],
    )
    t.family(
        "sglang:inter_token_latency_seconds",
        "histogram",
        "Histogram of inter-token latency in seconds.",
        sim.itl.lines("sglang:inter_token_latency_seconds", f'engine_type="unified",model_name="{model}"'),
    )
    for name, lengths in (("prompt", sim.prompt_lengths), ("generation", sim.output_lengths)):
        t.family(
            f"sglang:{name}_tokens_histogram",
            "histogram",
            f"Histogram of {name} token length.",
            lengths.lines(f"sglang:{name}_tokens_histogram", f'engine_type="unified",model_name="{model}"'),
        )
    return t.done()


def tgi(sim: SimEngine) -> str:
    requests = sum(sim.success.values())
    t = _Text()
    t.family(
        "tgi_request_success", "counter", "Number of successful requests", [f"tgi_request_success {requests}"]
    )
    t.family(
        "tgi_batch_current_size",
        "gauge",
        "Current batch size",
        [f"tgi_batch_current_size {round(sim.running)}"],
    )
    for name, help_, lengths in (
        ("tgi_request_input_length", "Input token length per request", sim.prompt_lengths),
        ("tgi_request_generated_tokens", "Generated tokens per request", sim.output_lengths),
    ):
        t.family(
            name,
            "histogram",
            help_,
            [
                *lengths.buckets_lines(name, "", plain_number),
                f"{name}_sum {plain_number(lengths.sum)}",
                f"{name}_count {lengths.count}",
            ],
        )
    t.family(
        "tgi_request_mean_time_per_token_duration",
        "histogram",
        "Mean time per token per request (in seconds)",
        [
            f"tgi_request_mean_time_per_token_duration_sum {sim.tpot_sum!r}",
            f"tgi_request_mean_time_per_token_duration_count {sim.itl_requests}",
        ],
    )
    t.family(
        "tgi_batch_forward_duration",
        "histogram",
        "Batch forward duration per method (prefill or decode)",
        [
            f'tgi_batch_forward_duration_sum{{method="prefill"}} {sim.prefill.sum!r}',
            f'tgi_batch_forward_duration_sum{{method="decode"}} {sim.decode.sum!r}',
        ],
    )
    return t.done()


def triton(sim: SimEngine) -> str:
    requests = sum(sim.success.values())
    model = 'model="tensorrt_llm",version="1"'
    t = _Text()
    t.family(
        "nv_inference_request_success",
        "counter",
        "Number of successful inference requests, all batch sizes",
        [
            f'nv_inference_request_success{{model="ensemble",version="1"}} {requests}',
            f"nv_inference_request_success{{{model}}} {requests}",
        ],
    )
    t.family(
        "nv_trt_llm_request_metrics",
        "gauge",
        "TRT LLM request metrics",
        [
            f'nv_trt_llm_request_metrics{{model="tensorrt_llm",request_type="active",version="1"}} {round(sim.running)}'
        ],
    )
    for name, kind, lengths in (
        ("input", "total_input_tokens", sim.prompt_lengths),
        ("output", "total_output_tokens", sim.output_lengths),
    ):
        labels = f'model="tensorrt_llm",response_metric_type="{kind}",version="1"'
        t.family(
            f"nv_llm_{name}_token_len",
            "histogram",
            f"TRT LLM response {name} token length",
            [
                f"nv_llm_{name}_token_len_count{{{labels}}} {lengths.count}",
                f"nv_llm_{name}_token_len_sum{{{labels}}} {plain_number(lengths.sum)}",
                *lengths.buckets_lines(f"nv_llm_{name}_token_len", labels, plain_number),
            ],
        )
    return t.done()


def llamacpp(sim: SimEngine) -> str:
    def g6(x: float) -> str:  # C++ default stream precision
        return f"{x:.6g}"

    t = _Text()
    for name, kind, help_, value in (
        (
            "prompt_tokens_total",
            "counter",
            "Number of prompt tokens processed, excluding cached tokens.",
            sim.prompt_tokens - sim.cached_tokens,
        ),
        (
            "prompt_tokens_cached_total",
            "counter",
            "Number of prompt tokens reused from cache.",
            sim.cached_tokens,
        ),
        ("prompt_seconds_total", "counter", "Prompt process time", sim.prefill.sum),
        (
            "tokens_predicted_total",
            "counter",
            "Number of generation tokens processed.",
            sim.generation_tokens,
        ),
        ("tokens_predicted_seconds_total", "counter", "Predict process time", sim.decode.sum),
        ("requests_processing", "gauge", "Number of requests processing.", sim.running),
    ):
        t.family(f"llamacpp:{name}", kind, help_, [f"llamacpp:{name} {g6(value)}"])
    return t.done()


EXPOSITIONS: Mapping[str, Callable[[SimEngine], str]] = MappingProxyType(
    {"vllm": vllm, "sglang": sglang, "tgi": tgi, "triton": triton, "llamacpp": llamacpp}
)
