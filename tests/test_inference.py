"""The vLLM entry of the SERVERS table on real payloads (v1 0.33.0 and v0 0.6.6).

Expected values come from prometheus_client's own parser on the same file, summed the way
a PromQL user would (``sum by (model_name)``), so the test checks our reading, not a copy.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.errors import ParseError
from exporter.simulation import SimVllm
from exporter.sources.inference import detect, read_payload
from exporter.sources.servers import SERVERS

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


def test_engines_are_summed_per_model() -> None:
    sim0, sim1 = SimVllm("m"), SimVllm("m")
    sim0.serve(100, 10)
    sim1.serve(50, 5)
    text = sim0.text() + sim1.text().replace('engine="0"', 'engine="1"').replace("# HELP", "# HELP_").replace(
        "# TYPE", "# TYPE_"
    )
    (m,) = read_payload(text, "vllm", 10_000)
    assert (m.input_tokens, m.output_tokens, m.requests) == (150, 15, 2)


def test_the_simulator_speaks_what_we_read() -> None:
    sim = SimVllm("demo/model")
    for i in range(5):
        sim.serve(100 + i, 20 + i, itl=0.02, prefill=0.1)
    (m,) = read_payload(sim.text(), "vllm", 10_000)
    assert (m.input_tokens, m.output_tokens, m.requests) == (510, 110, 5)
    assert m.itl_count == sim.itl.count and m.itl_seconds == pytest.approx(sim.itl.sum)
    assert m.created == sim.created


@pytest.mark.parametrize("server", ["sglang", "tgi", "llamacpp"])
def test_other_servers_are_not_mistaken_for_vllm(server: str) -> None:
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
    sim = SimVllm("x" * 100_000)
    sim.serve(10, 1)
    (m,) = read_payload(sim.text(), "vllm", 10_000)
    assert m.model == "x" * 128 and m.input_tokens == 10
