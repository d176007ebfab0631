"""The SERVERS table: how each inference server names what we read.

Adding a server is one entry; a renamed metric in a new version is one more alternative
in a tuple (alternatives are tried in order and the first present wins). Within one
alternative, the samples of every listed name that match ``where`` are summed over all
labels but the server's model label (vLLM's ``engine``, SGLang's ``is_streaming``).
Names, types and labels: ``../shared/reference/`` (vllm.md, sglang.md, tgi.md,
triton-trtllm.md, llamacpp.md), read from the versions named there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Final


@dataclass(frozen=True, slots=True)
class Series:
    """The sum of the samples named ``names`` whose labels include every ``where`` pair."""

    names: tuple[str, ...]
    where: tuple[tuple[str, str], ...] = ()


def s(*names: str, **where: str) -> Series:
    return Series(names, tuple(sorted(where.items())))


Alternatives = tuple[Series, ...]


@dataclass(frozen=True, slots=True)
class ServerProfile:
    prefixes: tuple[str, ...]  # auto-detection: a sample name starting with one of these
    input_tokens: Alternatives  # every prompt token, computed or served from cache
    output_tokens: Alternatives
    cached_input_tokens: Alternatives = ()  # the part of the input served from a prefix cache
    # A server whose prompt counter excludes cache hits: input = Δ this + Δ cached, each a
    # counter of its own (a sum of two families would fall when one is missing once).
    computed_input_tokens: Alternatives = ()
    model_label: str = ""  # "" when one process serves one model and says not which
    # A label whose values are independent counter sets of one model (vLLM's data-parallel
    # ``engine``): each restarts on its own, so each is read, and reset-checked, apart.
    instance_label: str = ""
    created: Alternatives = ()  # start time of the token counters (reset detection)
    requests: Alternatives = ()  # finished requests
    finish_reason_label: str = ""  # the label of ``requests`` that says why a request finished
    running: Alternatives = ()  # gauge: requests in the batch (concurrency)
    waiting: Alternatives = ()  # gauge: requests queued for the batch
    # An info series whose label names the KV-cache dtype (vLLM's cache_config_info{cache_dtype}); "auto"
    # says nothing (the model's own dtype, not known here).
    kv_cache_info: tuple[str, str] = ("", "")
    # Time per output token as a (seconds, tokens) pair of cumulative sums; ``token_time``
    # names what the pair measures, for the ``method`` label of the interactivity gauge.
    token_time: tuple[tuple[Series, Series], ...] = ()
    token_time_method: str = "inter_token_latency"
    prefill_seconds: Alternatives = ()  # cumulative prefill (prompt) time
    decode_seconds: Alternatives = ()  # cumulative decode (generation) time
    # Per-request token-length histograms (``_bucket`` series, one per ``le``): the spread
    # of request cost (p50/p90/p99). Input lengths count every prompt token, cached or not.
    prompt_lengths: Alternatives = ()
    generation_lengths: Alternatives = ()

    def wanted(self) -> frozenset[str]:
        """Every sample name this profile may read, across the versions it knows."""
        fields: tuple[Alternatives, ...] = (
            self.input_tokens,
            self.computed_input_tokens,
            self.cached_input_tokens,
            self.output_tokens,
            self.created,
            self.requests,
        )
        fields += (self.running, self.waiting, self.prefill_seconds, self.decode_seconds)
        info = frozenset({self.kv_cache_info[0]} - {""})
        fields += (self.prompt_lengths, self.generation_lengths)
        fields += tuple(tuple(pair) for pair in self.token_time)
        return info | frozenset(
            name for alternatives in fields for series in alternatives for name in series.names
        )


def histogram(base: str, **where: str) -> tuple[Series, Series]:
    return s(base + "_sum", **where), s(base + "_count", **where)


SERVERS: Final[Mapping[str, ServerProfile]] = MappingProxyType(
    {
        "vllm": ServerProfile(
            prefixes=("vllm:",),
            model_label="model_name",
            instance_label="engine",
            input_tokens=(s("vllm:prompt_tokens_total"),),
            # ≥ 0.20: local + external cache hits; 0.9–0.13: prefix-cache hits, in tokens.
            cached_input_tokens=(s("vllm:prompt_tokens_cached_total"), s("vllm:prefix_cache_hits_total")),
            output_tokens=(s("vllm:generation_tokens_total"),),
            created=(s("vllm:prompt_tokens_created"), s("process_start_time_seconds")),
            requests=(s("vllm:request_success_total"),),  # every finished_reason
            finish_reason_label="finished_reason",
            running=(s("vllm:num_requests_running"),),
            waiting=(s("vllm:num_requests_waiting"),),
            kv_cache_info=("vllm:cache_config_info", "cache_dtype"),
            # V1 ≥ 0.10.2 name first; the V0 / early V1 name (gone by 0.20.0) second.
            token_time=(
                histogram("vllm:inter_token_latency_seconds"),
                histogram("vllm:time_per_output_token_seconds"),
            ),
            prefill_seconds=(s("vllm:request_prefill_time_seconds_sum"),),
            decode_seconds=(s("vllm:request_decode_time_seconds_sum"),),
            prompt_lengths=(s("vllm:request_prompt_tokens_bucket"),),
            generation_lengths=(s("vllm:request_generation_tokens_bucket"),),
        ),
        "sglang": ServerProfile(
            # Multiprocess mode always: no _created; counters count finished requests.
            prefixes=("sglang:",),
            model_label="model_name",
            input_tokens=(s("sglang:prompt_tokens_total"),),
            cached_input_tokens=(s("sglang:cached_tokens_total"),),  # every cache_source
            output_tokens=(s("sglang:generation_tokens_total"),),
            requests=(s("sglang:num_requests_total"),),
            running=(s("sglang:num_running_reqs"),),
            waiting=(s("sglang:num_queue_reqs"),),
            token_time=(
                histogram("sglang:inter_token_latency_seconds"),
                histogram("sglang:time_per_output_token_seconds"),  # ≤ 0.4.0
            ),
            prompt_lengths=(s("sglang:prompt_tokens_histogram_bucket"),),  # ≥ 0.5.2
            generation_lengths=(s("sglang:generation_tokens_histogram_bucket"),),
        ),
        "tgi": ServerProfile(
            # metrics-rs: counters without _total; one model per process, no model label.
            prefixes=("tgi_",),
            input_tokens=(s("tgi_request_input_length_sum"),),
            output_tokens=(s("tgi_request_generated_tokens_sum"),),
            requests=(s("tgi_request_success"),),
            running=(s("tgi_batch_current_size"),),
            waiting=(s("tgi_queue_size"),),
            token_time=(histogram("tgi_request_mean_time_per_token_duration"),),
            token_time_method="request_time_per_output_token",  # a per-request mean
            prefill_seconds=(s("tgi_batch_forward_duration_sum", method="prefill"),),
            decode_seconds=(s("tgi_batch_forward_duration_sum", method="decode"),),
            # Input lengths are observed at validation, so they include requests that fail later.
            prompt_lengths=(s("tgi_request_input_length_bucket"),),
            generation_lengths=(s("tgi_request_generated_tokens_bucket"),),
        ),
        "triton": ServerProfile(
            # TensorRT-LLM backend ≥ v0.16.0: token counts are per-request histograms of
            # the tensorrt_llm model; the other models of an ensemble carry no tokens.
            prefixes=("nv_llm_", "nv_trt_llm_", "nv_inference_"),
            model_label="model",
            input_tokens=(s("nv_llm_input_token_len_sum"),),
            output_tokens=(s("nv_llm_output_token_len_sum"),),
            # r24.12 with TensorRT-LLM ≤ 0.15 has no token histograms: the backend model's
            # finished requests are still read (its tokens are unknown, not 0).
            requests=(
                s("nv_llm_output_token_len_count"),
                s("nv_inference_request_success", model="tensorrt_llm"),
            ),
            running=(s("nv_trt_llm_request_metrics", request_type="active"),),
            waiting=(s("nv_trt_llm_request_metrics", request_type="waiting"),),
            prompt_lengths=(s("nv_llm_input_token_len_bucket"),),
            generation_lengths=(s("nv_llm_output_token_len_bucket"),),
        ),
        "llamacpp": ServerProfile(
            # Hand-written text, no labels, 6 significant digits. prompt_tokens_total
            # excludes cached prompt tokens, so input = computed + cached (older builds: no cached).
            prefixes=("llamacpp:",),
            input_tokens=(),
            computed_input_tokens=(s("llamacpp:prompt_tokens_total"),),
            cached_input_tokens=(s("llamacpp:prompt_tokens_cached_total"),),
            output_tokens=(s("llamacpp:tokens_predicted_total"),),
            running=(s("llamacpp:requests_processing"),),
            waiting=(s("llamacpp:requests_deferred"),),
            token_time=(
                (s("llamacpp:tokens_predicted_seconds_total"), s("llamacpp:tokens_predicted_total")),
            ),
            token_time_method="decode_seconds_per_token",
            prefill_seconds=(s("llamacpp:prompt_seconds_total"),),
            decode_seconds=(s("llamacpp:tokens_predicted_seconds_total"),),
        ),
        "training": ServerProfile(
            # Our helper (exporter/training.py) or any job exposing a token counter; a
            # target's ``token_metric`` replaces the default name. One job per target.
            prefixes=("cpm_training_",),
            input_tokens=(s("cpm_training_tokens_total"),),
            output_tokens=(),
            created=(s("cpm_training_tokens_created"), s("process_start_time_seconds")),
        ),
    }
)


def with_token_metric(profile: ServerProfile, name: str) -> ServerProfile:
    """The training profile reading a job's own counter ``name`` (and its ``_created``)."""
    created = s(name.removesuffix("_total") + "_created")
    return replace(profile, input_tokens=(s(name),), created=(created, *profile.created[1:]))
