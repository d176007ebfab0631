"""What a server runs, besides what it serves: engine version, precision, KV-cache dtype (issue 20).

No engine puts its version or its weights' precision on /metrics (vLLM 0.6–0.33, SGLang 0.5, TGI 3,
Triton r26 with TensorRT-LLM, llama.cpp: checked in their sources), so they come, in this order, from
the pod's annotations (``cpm-exporter.io/engine-version``, ``…/precision``, ``…/kv-cache-dtype``),
else the serving container's flags and image tag, else the config's target entry. A figure nothing
states is "" (shown as ``unknown``), never guessed: ``--dtype auto`` says the model's own dtype, which
is not known here, so it is not a precision.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from exporter.records import NO_HINTS, OperatingHints, PodInfo

PREFIX = "cpm-exporter.io/"
MODEL_CLASS = PREFIX + "model-class"  # the published table's class (llama-70b): names never say it
VERSION, PRECISION, KV_CACHE_DTYPE = (
    PREFIX + "engine-version",
    PREFIX + "precision",
    PREFIX + "kv-cache-dtype",
)
# Flags that name the weights' quantisation (it wins over the dtype: fp8 weights in bf16 compute are fp8).
_QUANT = ("--quantization", "-q", "--quantize")  # vLLM, SGLang (-q: vLLM), TGI
_DTYPE = ("--dtype", "--torch-dtype")
_KV = ("--kv-cache-dtype", "-ctk", "--cache-type-k")  # vLLM/SGLang/TGI, llama.cpp
# llama.cpp names the quant in the GGUF file: model-Q4_K_M.gguf, …-IQ3_XS.gguf, …-f16.gguf
_GGUF = re.compile(r"[-._]((?:I?Q\d[A-Z0-9_]*)|BF16|F16|F32)\.gguf$", re.IGNORECASE)


def hints_from_pod(pod: PodInfo, port: int) -> OperatingHints:
    """The annotations' figures, else the serving container's."""
    notes = _from_annotations(pod.annotations)
    container = pod.serving(port)
    found = hints_from_container(container.args, container.image) if container is not None else NO_HINTS
    return OperatingHints(
        notes.version or found.version,
        notes.precision or found.precision,
        notes.kv_cache_dtype or found.kv_cache_dtype,
        notes.source or found.source,
        pod.annotations.get(MODEL_CLASS, "").strip(),
    )


def hints_from_container(args: Sequence[str], image: str) -> OperatingHints:
    flags = _flags(args)
    precision = next((flags[f] for f in _QUANT if flags.get(f)), "")
    dtype = next((flags[f] for f in _DTYPE if flags.get(f)), "")
    if not precision and dtype.lower() != "auto":
        precision = dtype
    if not precision:
        precision = next((m.group(1) for a in args if (m := _GGUF.search(a))), "")
    kv = next((flags[f] for f in _KV if flags.get(f)), "")
    kv = "" if kv.lower() == "auto" else kv
    version = image_version(image)
    return OperatingHints(version, precision, kv, "container") if version or precision or kv else NO_HINTS


def image_version(image: str) -> str:
    """The tag of an image reference (vllm/vllm-openai:v0.8.5 → 0.8.5, …:server-b4500 → b4500); "" for
    none, "latest" or a digest only (a digest names a build, not a version)."""
    ref = image.split("@", 1)[0]
    name, _, tag = ref.rpartition(":")
    if not name or "/" in tag or not tag or tag == "latest":
        return ""
    # llama.cpp's server images: server-b4500, server-cuda-b4500; a bare variant names no version.
    tag = re.sub(r"^server(?:-(?:cuda|rocm|vulkan|musa|intel))?(?:-|$)", "", tag)
    return tag[1:] if re.match(r"v\d", tag) else tag


def _from_annotations(notes: Mapping[str, str]) -> OperatingHints:
    version, precision, kv = (notes.get(k, "").strip() for k in (VERSION, PRECISION, KV_CACHE_DTYPE))
    return OperatingHints(version, precision, kv, "annotation") if version or precision or kv else NO_HINTS


def _flags(args: Sequence[str]) -> dict[str, str]:
    """``--flag value`` and ``--flag=value`` (the last one wins, as argparse does)."""
    out: dict[str, str] = {}
    words = [w for a in args for w in (a.split() if " " in a else [a])]  # sh -c "vllm serve … --dtype x"
    for k, word in enumerate(words):
        if word.startswith("-"):
            name, eq, value = word.partition("=")
            if eq:
                out[name] = value
            elif k + 1 < len(words) and not words[k + 1].startswith("-"):
                out[name] = words[k + 1]
    return out
