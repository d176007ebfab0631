"""The vLLM entry of the SERVERS table on real payloads (v1 0.33.0 and v0 0.6.6).

Expected values come from prometheus_client's own parser on the same file, summed the way
a PromQL user would (``sum by (model_name)``), so the test checks our reading, not a copy.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.demo.simulation import SimEngine
from exporter.engines.profiles import SERVERS
from exporter.engines.read import detect, read_payload
from exporter.errors import ParseError

FIXTURES = Path(__file__).parent / "fixtures"
VLLM = sorted((FIXTURES / "vllm").glob("*.txt"))


def reference_sums(text: str) -> dict[tuple[str, str], float]:
    sums: dict[tuple[str, str], float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            sums[(s.name, s.labels.get("model_name", ""))] += s.value
    return sums


@pytest.mark.parametrize("path", VLLM, ids=lambda p: p.name)
def test_vllm_payload_reads_like_promql_sums(path: Path) -> None:
    text = path.read_text()
    ref = reference_sums(text)
    assert detect(text) == "vllm"
    models = read_payload(text, "vllm", max_samples=100_000)
    assert models
    for m in models:
        assert m.input_tokens == ref[("vllm:prompt_tokens_total", m.model)]
        cached = "vllm:prompt_tokens_cached_total" if "v1" in path.name else "vllm:prefix_cache_hits_total"
        assert m.cached_input_tokens == ref.get((cached, m.model))
        assert m.output_tokens == ref[("vllm:generation_tokens_total", m.model)]
        assert m.requests == ref[("vllm:request_success_total", m.model)]  # all finish reasons, all engines
        assert m.running == ref[("vllm:num_requests_running", m.model)]
        assert m.prefill_seconds == pytest.approx(ref[("vllm:request_prefill_time_seconds_sum", m.model)])
        assert m.decode_seconds == pytest.approx(ref[("vllm:request_decode_time_seconds_sum", m.model)])
        itl = (
            "vllm:inter_token_latency_seconds" if "v1" in path.name else "vllm:time_per_output_token_seconds"
        )
        assert m.itl_count == ref[(itl + "_count", m.model)]
        assert m.itl_seconds == pytest.approx(ref[(itl + "_sum", m.model)])


def test_v1_created_comes_from_the_token_counter_and_v0_falls_back_to_process_start() -> None:
    v1 = (FIXTURES / "vllm" / "v1-0.33.0.txt").read_text()
    ref = reference_sums(v1)
    (m,) = read_payload(v1, "vllm", 100_000)
    assert m.created == ref[("vllm:prompt_tokens_created", m.model)]
    no_created = "\n".join(line for line in v1.splitlines() if "_created" not in line) + "\n"
    (m,) = read_payload(no_created, "vllm", 100_000)
    assert m.created == ref[("process_start_time_seconds", "")]


def test_data_parallel_engines_are_read_apart() -> None:
    """Each engine's counters restart on their own: summing them (or their _created) first
    would hide one engine's restart and make old history look new."""
    sim0, sim1 = SimEngine("m"), SimEngine("m")
    sim0.serve(100, 10)
    sim1.serve(50, 5)
    text = sim0.text() + sim1.text().replace('engine="0"', 'engine="1"').replace("# HELP", "# HELP_").replace(
        "# TYPE", "# TYPE_"
    )
    engines = read_payload(text, "vllm", 10_000)
    assert [(m.model, m.instance) for m in engines] == [("m", "0"), ("m", "1")]
    assert sum(m.input_tokens for m in engines) == 150
    assert [m.created for m in engines] == [sim0.created, sim1.created]


def test_the_simulator_speaks_what_we_read() -> None:
    sim = SimEngine("demo/model")
    for i in range(5):
        sim.serve(100 + i, 20 + i, itl=0.02, prefill=0.1)
    (m,) = read_payload(sim.text(), "vllm", 10_000)
    assert (m.input_tokens, m.output_tokens, m.requests) == (510, 110, 5)
    assert m.itl_count == sim.itl.count and m.itl_seconds == pytest.approx(sim.itl.sum)
    assert m.created == sim.created


# What a PromQL user would write for each server, per reference/*.md "For cost per token":
# (input, output, requests, running, token-time sum, token-time count, prefill s, decode s).
PROMQL: dict[str, dict[str, tuple[str, dict[str, str]] | tuple[str, ...]]] = {
    "sglang": {
        "input": ("sglang:prompt_tokens_total", {}),
        "cached": ("sglang:cached_tokens_total", {}),
        "output": ("sglang:generation_tokens_total", {}),
        "requests": ("sglang:num_requests_total", {}),
        "running": ("sglang:num_running_reqs", {}),
        "itl_s": ("sglang:inter_token_latency_seconds_sum", {}),
        "itl_n": ("sglang:inter_token_latency_seconds_count", {}),
    },
    "tgi": {
        "input": ("tgi_request_input_length_sum", {}),
        "output": ("tgi_request_generated_tokens_sum", {}),
        "requests": ("tgi_request_success", {}),
        "running": ("tgi_batch_current_size", {}),
        "itl_s": ("tgi_request_mean_time_per_token_duration_sum", {}),
        "itl_n": ("tgi_request_mean_time_per_token_duration_count", {}),
        "prefill": ("tgi_batch_forward_duration_sum", {"method": "prefill"}),
        "decode": ("tgi_batch_forward_duration_sum", {"method": "decode"}),
    },
    "triton-trtllm": {
        "input": ("nv_llm_input_token_len_sum", {}),
        "output": ("nv_llm_output_token_len_sum", {}),
        "requests": ("nv_llm_output_token_len_count", {}),
        "running": ("nv_trt_llm_request_metrics", {"request_type": "active"}),
    },
    "llamacpp": {
        "cached": ("llamacpp:prompt_tokens_cached_total", {}),
        "output": ("llamacpp:tokens_predicted_total", {}),
        "running": ("llamacpp:requests_processing", {}),
        "itl_s": ("llamacpp:tokens_predicted_seconds_total", {}),
        "itl_n": ("llamacpp:tokens_predicted_total", {}),
        "prefill": ("llamacpp:prompt_seconds_total", {}),
        "decode": ("llamacpp:tokens_predicted_seconds_total", {}),
    },
}  # type: ignore[dict-item]
FIELDS = {"input": "input_tokens", "cached": "cached_input_tokens", "output": "output_tokens", "requests": "requests", "running": "running",
          "itl_s": "itl_seconds", "itl_n": "itl_count", "prefill": "prefill_seconds", "decode": "decode_seconds"}  # fmt: skip
SERVER_OF = {"sglang": "sglang", "tgi": "tgi", "triton-trtllm": "triton", "llamacpp": "llamacpp"}


def promql_sum(text: str, name: str, where: dict[str, str], model_label: str, model: str) -> float | None:
    """sum(name{where, model_label=model}) by prometheus_client's parser (which appends
    ``_total`` to counters that lack it: TGI, Triton)."""
    found = [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name in (name, name + "_total")
        and all(s.labels.get(k) == v for k, v in where.items())
        and (not model_label or s.labels.get(model_label) == model)
    ]
    return sum(found) if found else None


@pytest.mark.parametrize("fixture", sorted(PROMQL), ids=str)
def test_every_server_reads_like_promql(fixture: str) -> None:
    from exporter.engines.profiles import SERVERS

    text = next((FIXTURES / fixture).glob("*.txt")).read_text()
    server = SERVER_OF[fixture]
    assert detect(text) == server
    label = SERVERS[server].model_label
    (m,) = read_payload(text, server, max_samples=100_000)
    for key, (name, where) in PROMQL[fixture].items():  # type: ignore[misc]
        expected = promql_sum(text, name, where, label, m.model)
        assert expected is not None, (fixture, name)
        assert getattr(m, FIELDS[key]) == pytest.approx(expected), (fixture, key)


def test_llamacpp_input_is_computed_plus_cached_prompt_tokens() -> None:
    text = next((FIXTURES / "llamacpp").glob("*.txt")).read_text()
    (m,) = read_payload(text, "llamacpp", 1000)
    computed = promql_sum(text, "llamacpp:prompt_tokens_total", {}, "", "")
    cached = promql_sum(text, "llamacpp:prompt_tokens_cached_total", {}, "", "")
    assert computed is not None and cached is not None
    # Read apart, each a counter of its own; the meter adds their increases (test_meter).
    assert (m.input_tokens, m.computed_input_tokens, m.cached_input_tokens) == (None, computed, cached)
    assert m.itl_method == "decode_seconds_per_token"


def test_triton_reads_only_the_model_that_counts_tokens() -> None:
    text = next((FIXTURES / "triton-trtllm").glob("*.txt")).read_text()
    assert [m.model for m in read_payload(text, "triton", 10_000)] == ["tensorrt_llm"]


@pytest.mark.parametrize("server", ["dcgm-exporter", "cadvisor"])
def test_non_inference_payloads_are_not_mistaken_for_a_server(server: str) -> None:
    text = next((FIXTURES / server).glob("*.txt")).read_text()
    with pytest.raises(ParseError) as e:
        detect(text)
    assert e.value.reason == "unknown_server"


def test_an_html_page_is_not_an_exposition() -> None:
    with pytest.raises(ParseError):
        detect("<html><body>502 Bad Gateway</body></html>\n")


def test_a_vllm_payload_without_token_counters_is_refused() -> None:
    text = 'vllm:num_requests_running{model_name="m"} 3\n'
    with pytest.raises(ParseError) as e:
        read_payload(text, "vllm", 100)
    assert e.value.reason == "no_token_counters"


def test_every_profile_wants_created_and_histogram_parts() -> None:
    wanted = SERVERS["vllm"].wanted()
    assert {"vllm:prompt_tokens_created", "vllm:inter_token_latency_seconds_sum"} <= wanted
    assert "vllm:time_per_output_token_seconds_count" in wanted  # the v0 name, still read


def test_huge_model_names_are_truncated() -> None:
    sim = SimEngine("x" * 100_000)
    sim.serve(10, 1)
    (m,) = read_payload(sim.text(), "vllm", 10_000)
    assert m.model == "x" * 128 and m.input_tokens == 10


@pytest.mark.parametrize("engine", ["vllm", "sglang", "tgi", "triton", "llamacpp"])
def test_every_simulated_engine_is_read_back_exactly(engine: str) -> None:
    """The demo's simulated servers print each engine's own format; the table reads it back."""
    from exporter.demo.simulation import SimEngine

    sim = SimEngine("some/model", engine=engine)
    for i in range(7):
        sim.serve(100 + i, 20 + i, itl=0.02, prefill=0.1, cached=50)
    assert detect(sim.text()) == engine
    (m,) = read_payload(sim.text(), engine, 10_000)
    # llama.cpp counts computed prompt tokens apart from cache hits: input is their sum.
    read_input = (
        m.input_tokens
        if m.input_tokens is not None
        else (m.computed_input_tokens or 0) + (m.cached_input_tokens or 0)
    )
    assert (read_input, m.output_tokens) == (sim.prompt_tokens, sim.generation_tokens) == (721, 161)
    if m.cached_input_tokens is not None:  # vLLM, SGLang and llama.cpp tell cache hits apart
        assert m.cached_input_tokens == sim.cached_tokens == 350
    if m.requests is not None:
        assert m.requests == 7
    if m.itl_count:
        # 20 ms per token (50 tokens/s per user); llama.cpp divides decode time by every
        # predicted token, first ones included (161 tokens for 154 gaps): 4 % lower.
        assert m.itl_seconds / m.itl_count == pytest.approx(0.02, rel=0.05)


def test_vllm_finished_requests_are_read_per_finish_reason() -> None:
    text = (FIXTURES / "vllm" / "v1-0.33.0.txt").read_text()
    (m,) = read_payload(text, "vllm", 100_000)
    expected = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "vllm:request_success_total":
                reason = s.labels["finished_reason"]
                expected[reason] = expected.get(reason, 0.0) + s.value
    assert dict(m.requests_by_reason) == expected
    assert sum(n for _, n in m.requests_by_reason) == m.requests


LENGTHS = {  # fixture → server, prompt and output length histograms (what PromQL would sum by le)
    "vllm": ("vllm", "vllm:request_prompt_tokens", "vllm:request_generation_tokens"),
    "sglang": ("sglang", "sglang:prompt_tokens_histogram", "sglang:generation_tokens_histogram"),
    "tgi": ("tgi", "tgi_request_input_length", "tgi_request_generated_tokens"),
    "triton-trtllm": ("triton", "nv_llm_input_token_len", "nv_llm_output_token_len"),
}


def promql_buckets(text: str, family: str, model_label: str, model: str) -> tuple[tuple[float, float], ...]:
    """sum by (le) (family_bucket{model_label=model}), by prometheus_client's parser."""
    sums: dict[float, float] = defaultdict(float)
    for f in text_string_to_metric_families(text):
        for x in f.samples:
            if x.name == family + "_bucket" and (not model_label or x.labels.get(model_label) == model):
                sums[float(x.labels["le"])] += x.value
    return tuple(sorted(sums.items()))


@pytest.mark.parametrize("fixture", sorted(LENGTHS), ids=str)
def test_length_histograms_read_like_promql(fixture: str) -> None:
    server, prompt, output = LENGTHS[fixture]
    label = SERVERS[server].model_label
    for path in sorted((FIXTURES / fixture).glob("*.txt")):
        text = path.read_text()
        for m in read_payload(text, server, max_samples=100_000):
            if m.instance:  # vLLM's engines are read apart: the reference sums them all
                continue
            assert m.prompt_lengths == promql_buckets(text, prompt, label, m.model), path.name
            assert m.generation_lengths == promql_buckets(text, output, label, m.model), path.name
            assert m.prompt_lengths[-1][0] == math.inf and m.prompt_lengths[-1][1] > 0


def test_length_histograms_with_engines_sum_to_promql() -> None:
    text = (FIXTURES / "vllm" / "v1-0.33.0.txt").read_text()
    models = read_payload(text, "vllm", 100_000)
    total = promql_buckets(text, "vllm:request_prompt_tokens", "model_name", models[0].model)
    summed: dict[float, float] = defaultdict(float)
    for m in models:
        for le, n in m.prompt_lengths:
            summed[le] += n
    assert tuple(sorted(summed.items())) == total


def test_an_le_that_is_not_a_number_is_kept_for_the_meter_to_reject() -> None:
    text = 'vllm:prompt_tokens_total{model_name="m"} 5\nvllm:request_prompt_tokens_bucket{le="many",model_name="m"} 1\n'
    (m,) = read_payload(text, "vllm", 100)
    assert math.isnan(m.prompt_lengths[0][0])


# SGLang with --tokenizer-metrics-allowed-custom-labels lora: every tokenizer series carries
# lora="" until a request sends the header x-custom-labels: {"lora": "<adapter>"}.
SGLANG_LORA = """\
sglang:prompt_tokens_total{engine_type="unified",lora="",model_name="base"} 100.0
sglang:prompt_tokens_total{engine_type="unified",lora="sql",model_name="base"} 300.0
sglang:prompt_tokens_total{engine_type="unified",lora="chat",model_name="base"} 50.0
sglang:generation_tokens_total{engine_type="unified",lora="",model_name="base"} 10.0
sglang:generation_tokens_total{engine_type="unified",lora="sql",model_name="base"} 30.0
sglang:generation_tokens_total{engine_type="unified",lora="chat",model_name="base"} 5.0
sglang:num_requests_total{engine_type="unified",lora="sql",model_name="base"} 3.0
sglang:num_running_reqs{engine_type="unified",model_name="base",tp_rank="0"} 2.0
"""


def test_an_adapter_label_files_each_adapters_tokens_under_its_name() -> None:
    models = {m.model: m for m in read_payload(SGLANG_LORA, "sglang", 100, adapter_label="lora")}
    assert {k: (m.input_tokens, m.output_tokens) for k, m in models.items()} == {
        "base": (100, 10), "chat": (50, 5), "sql": (300, 30),
    }  # fmt: skip
    assert models["sql"].requests == 3 and models["base"].running == 2  # the gauge has no adapter
    (merged,) = read_payload(SGLANG_LORA, "sglang", 100)  # without it: one model, every token
    assert read_payload(SGLANG_LORA, "sglang", 100, adapter_label="model_name") == [merged]  # the model's own
    assert (merged.model, merged.input_tokens, merged.output_tokens) == ("base", 450, 45)


def test_a_target_with_an_adapter_label_is_scraped_per_adapter() -> None:
    from exporter.engines.read import scrape
    from exporter.http.textformat import FetchLimits
    from exporter.records import Owner, Target

    owner = Owner("ml", "sglang-0", "ml", "base")
    target = Target("t", "http://127.0.0.1:1/metrics", owner, "auto", adapter_label="lora")
    result = scrape(target, FetchLimits(), fetch=lambda url, limits, client: SGLANG_LORA)
    assert result.ok and result.server == "sglang"
    assert [m.model for m in result.models] == ["base", "chat", "sql"]


def test_an_unexpected_error_stops_only_its_target() -> None:
    from exporter.engines.read import scrape
    from exporter.http.textformat import FetchLimits
    from exporter.records import Owner, Target

    def broken(url: str, limits: FetchLimits, client: object) -> str:
        raise UnicodeEncodeError("latin-1", "ö", 0, 1, "a bug of ours")

    target = Target("t", "http://127.0.0.1:1/metrics", Owner("ml", "p", "ml", "m"))
    result = scrape(target, FetchLimits(), fetch=broken)
    assert (result.ok, result.error_reason) == (False, "internal")
    assert "UnicodeEncodeError" in result.error


# ---- unknown is not zero; a bad value refuses the scrape, a bad gauge costs only itself ----
def _without(text: str, family: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if family not in line)


def test_a_family_missing_from_one_scrape_is_unknown_not_zero() -> None:
    text = _without(VLLM[-1].read_text(), "vllm:generation_tokens")
    for m in read_payload(text, "vllm", 100_000):
        assert m.output_tokens is None and m.input_tokens is not None


def test_triton_without_token_histograms_still_reads_the_backend_models_requests() -> None:
    """r24.12 with TensorRT-LLM 0.15: no nv_llm_* families. The tensorrt_llm model's finished
    requests are read; its tokens are unknown; the ensemble's other models are not lines."""
    full = (FIXTURES / "triton-trtllm" / "r26.06.txt").read_text()
    text = _without(full, "nv_llm_")
    (m,) = read_payload(text, "triton", 10_000)
    assert (m.model, m.requests, m.input_tokens, m.output_tokens) == ("tensorrt_llm", 4712, None, None)


@pytest.mark.parametrize("bad", ["NaN", "+Inf", "-3"])
@pytest.mark.parametrize("family", ["vllm:prompt_tokens_total", "vllm:request_success_total"])
def test_a_bad_token_or_request_counter_refuses_the_scrape(bad: str, family: str) -> None:
    text = VLLM[-1].read_text()
    lines = text.splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith(family + "{"))
    lines[at] = lines[at].rsplit(" ", 1)[0] + f" {bad}\n"
    with pytest.raises(ParseError) as e:
        read_payload("".join(lines), "vllm", 100_000)
    assert e.value.reason == "bad_value" and "not a counter value" in str(e.value)


def test_a_bad_gauge_costs_only_the_figure_it_feeds() -> None:
    text = VLLM[-1].read_text()
    good = read_payload(text, "vllm", 100_000)
    lines = [
        line.rsplit(" ", 1)[0] + " NaN\n" if line.startswith("vllm:num_requests_running{") else line
        for line in text.splitlines(keepends=True)
    ]
    bad = read_payload("".join(lines), "vllm", 100_000)
    assert [m.running for m in bad] == [None] * len(bad)
    assert [(m.input_tokens, m.output_tokens) for m in bad] == [
        (m.input_tokens, m.output_tokens) for m in good
    ]


@pytest.mark.parametrize(
    ("fixture", "server", "line"),
    [
        ("vllm/v1-0.33.0.txt", "vllm",
         'vllm:num_requests_waiting{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.0'),
        ("vllm/v0-0.6.6.txt", "vllm", 'vllm:num_requests_waiting{model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.0'),
        ("sglang/0.5.23.txt", "sglang",
         'sglang:num_queue_reqs{engine_type="unified",model_name="meta-llama/Llama-3.1-8B-Instruct",moe_ep_rank="0",'
         'pp_rank="0",tp_rank="0"} 2.0'),
        ("tgi/3.3.7.txt", "tgi", "tgi_queue_size 0"),
        ("triton-trtllm/r26.06.txt", "triton",
         'nv_trt_llm_request_metrics{model="tensorrt_llm",request_type="waiting",version="1"} 0'),
        ("llamacpp/0c1e570.txt", "llamacpp", "llamacpp:requests_deferred 0"),
    ],
)  # fmt: skip
def test_every_engine_says_how_many_requests_wait_for_its_batch(fixture: str, server: str, line: str) -> None:
    """Issue 20: the queue beside the batch, from each engine's own gauge, in its real payload."""
    text = (FIXTURES / fixture).read_text()
    assert line + "\n" in text
    name = line.rsplit(" ", 1)[0]
    models = read_payload(text.replace(line + "\n", f"{name} 7\n"), server, 100_000)
    assert sum(m.waiting or 0.0 for m in models) == 7
    assert all(m.waiting is not None for m in models if m.output_tokens)
    gone = read_payload(text.replace(line + "\n", ""), server, 100_000)
    assert all(m.waiting is None for m in gone)  # a gauge the payload lacks is unknown, not 0
