"""One simulated engine per server kind; ``make(kind)`` builds one by its name."""

from __future__ import annotations

from tests.groundtruth.engines.base import Engine, Request
from tests.groundtruth.engines.llamacpp import LlamaCpp
from tests.groundtruth.engines.sglang import Sglang
from tests.groundtruth.engines.tgi import Tgi
from tests.groundtruth.engines.triton import Triton
from tests.groundtruth.engines.vllm import VllmV0, VllmV1

KINDS = ("vllm-v1", "vllm-v0", "sglang", "sglang-0.4", "tgi", "triton", "triton-r24.12", "llamacpp")


def make(kind: str) -> Engine:
    engines: dict[str, type[Engine]] = {
        "vllm-v1": VllmV1,
        "vllm-v0": VllmV0,
        "tgi": Tgi,
        "llamacpp": LlamaCpp,
    }
    if kind in engines:
        return engines[kind]()
    if kind.startswith("sglang"):
        return Sglang(legacy=kind == "sglang-0.4")
    if kind.startswith("triton"):
        return Triton(token_histograms=kind == "triton")
    raise ValueError(kind)


__all__ = ["KINDS", "Engine", "Request", "make"]
