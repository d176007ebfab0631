"""llama.cpp's llama-server --metrics (``llamacpp.md``, llamacpp.prom): hand-written text.

No labels, no start time, no request counter; every family from start-up. Values are printed
with 6 significant digits, so what a scraper can know is the rounded value: each series
means that value. ``prompt_tokens_total`` excludes cache hits: the input is it plus
``…_cached_total``, two counters, each frozen or restarted on its own (``ir.part``).
"""

from __future__ import annotations

from collections.abc import Sequence

from tests.groundtruth.engines.base import Engine, Request
from tests.groundtruth.formats import llamacpp, six_digits
from tests.groundtruth.ir import Family, Key, Series, part
from tests.groundtruth.store import Store

MODEL = "bartowski/Llama-3.2-3B-Instruct-GGUF"
PROMPT = "llamacpp:prompt_tokens_total"
CACHED = "llamacpp:prompt_tokens_cached_total"
PROMPT_SECONDS = "llamacpp:prompt_seconds_total"
PREDICTED = "llamacpp:tokens_predicted_total"
PREDICTED_SECONDS = "llamacpp:tokens_predicted_seconds_total"
DECODES = "llamacpp:n_decode_total"
RUNNING = "llamacpp:requests_processing"
COUNTERS = (PROMPT, CACHED, PROMPT_SECONDS, PREDICTED, PREDICTED_SECONDS, DECODES)
GAUGES = {
    "llamacpp:prompt_tokens_seconds": 3011.62,
    "llamacpp:predicted_tokens_seconds": 74.58,
    RUNNING: 0.0,
    "llamacpp:requests_deferred": 0.0,
}
MEANS = {
    PROMPT: (part("input_tokens", "computed"),),
    CACHED: (part("input_tokens", "cached"), "cached_input_tokens"),
    PREDICTED: ("output_tokens",),
}
DOCS = {
    PROMPT: "Number of prompt tokens processed, excluding cached tokens",
    CACHED: "Number of prompt tokens reused from the cache",
    PROMPT_SECONDS: "Total time spent processing prompts",
    PREDICTED: "Number of generation tokens processed",
    PREDICTED_SECONDS: "Total time spent generating tokens",
    DECODES: "Total number of llama_decode() calls, excluding speculative decoding and multimodal decoding",
    "llamacpp:prompt_tokens_seconds": "Average prompt throughput in tokens/s",
    "llamacpp:predicted_tokens_seconds": "Average generation throughput in tokens/s",
    RUNNING: "Number of requests processing",
    "llamacpp:requests_deferred": "Number of requests deferred",
}


class LlamaCpp(Engine):
    kind = "llamacpp"
    model = MODEL
    docs = DOCS
    missable = (PROMPT, CACHED, PREDICTED)
    poison_family = PROMPT
    gauge_family = RUNNING
    partial_zero = frozenset({PROMPT, CACHED, PROMPT_SECONDS})

    def new_store(self, start: float) -> Store:
        store = Store(start)
        for name in COUNTERS:
            store.add(name, ())
        return store

    def observe(self, store: Store, req: Request) -> None:
        computed = req.prompt - req.cached
        store.add(PROMPT, (), computed)
        store.add(CACHED, (), req.cached)
        store.add(PROMPT_SECONDS, (), computed * 0.00033)
        store.add(PREDICTED, (), req.output)
        store.add(PREDICTED_SECONDS, (), req.output * 0.0134)
        store.add(DECODES, (), req.output)

    def families(self, store: Store, running: float) -> list[Family]:
        counters = [self._family(name, "counter", six_digits(store.value(name))) for name in COUNTERS]
        gauges = [self._family(n, "gauge", running if n == RUNNING else v) for n, v in GAUGES.items()]
        return counters + gauges

    def _family(self, name: str, kind: str, value: float) -> Family:
        keys: tuple[Key, ...] = tuple((self.model, q) for q in MEANS.get(name, ()))
        return Family(name, kind, DOCS[name], (Series((), value, keys=keys),))

    def write(self, families: Sequence[Family]) -> str:
        return llamacpp(families)
