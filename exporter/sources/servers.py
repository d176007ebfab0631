"""The SERVERS table: how each inference server names what we read.

Adding a server is one entry; a renamed metric in a new version is one more name in a
tuple (names are tried in order, the first present wins). Counters are cumulative and
summed over every label but the model label (vLLM's ``engine``, ``finished_reason``).
Sources for every name: ``../shared/reference/`` (vllm.md: V1 0.33.0 and V0 names).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final


@dataclass(frozen=True, slots=True)
class ServerProfile:
    prefix: str  # auto-detection: a sample name starting with this
    input_tokens: tuple[str, ...]
    output_tokens: tuple[str, ...]
    model_label: str = ""  # "" when the server exports no model label
    requests: tuple[str, ...] = ()  # finished requests counter
    running: tuple[str, ...] = ()  # gauge: requests in the batch (concurrency)
    itl_histogram: tuple[str, ...] = ()  # inter-token latency histogram base names, seconds
    prefill_seconds: tuple[str, ...] = ()  # histogram base names: per-request prefill time
    decode_seconds: tuple[str, ...] = ()

    def wanted(self) -> frozenset[str]:
        """Every sample name this profile may read (all versions)."""
        names = [*self.input_tokens, *self.output_tokens, *self.requests, *self.running]
        names += [n.removesuffix("_total") + "_created" for n in self.input_tokens]
        for base in (*self.itl_histogram, *self.prefill_seconds, *self.decode_seconds):
            names += [base + "_sum", base + "_count"]
        return frozenset(names)


SERVERS: Final[Mapping[str, ServerProfile]] = MappingProxyType(
    {
        "vllm": ServerProfile(
            prefix="vllm:",
            model_label="model_name",
            input_tokens=("vllm:prompt_tokens_total",),
            output_tokens=("vllm:generation_tokens_total",),
            requests=("vllm:request_success_total",),
            running=("vllm:num_requests_running",),
            # V1 ≥ 0.10.2 name first; V0 and early V1 name second (gone by 0.20.0).
            itl_histogram=("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
            prefill_seconds=("vllm:request_prefill_time_seconds",),
            decode_seconds=("vllm:request_decode_time_seconds",),
        ),
    }
)
# Start time of the whole server process: a reset signal where ``_created`` is absent
# (multiprocess mode drops it).
PROCESS_START = "process_start_time_seconds"
