"""``cpm-exporter compare``: projection, interpolation, the dated table, benchmark files, Prometheus."""

from __future__ import annotations

import datetime
import http.server
import json
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import ClassVar

import pytest

from exporter.cli import main
from exporter.pricing.catalogue import fact_date
from exporter.pricing.published import load_table, parse_table
from exporter.whatif import WhatIfError
from exporter.whatif.benchmarks import OperatingPoint, PrometheusQueries, prometheus_point, read_benchmark
from exporter.whatif.compare import Measured, Price, compare, interpolate

D = Decimal
TABLE = """
date: "2026-11-23"
rows:
  - {id: a, metric: tokens_per_second_per_gpu, value: 1000, hardware: H100, model: M, model_class: m-70b,
     precision: fp8, engine: vLLM, tokens_per_second_per_user: 40, conditions: c, source: S, date: April 2026}
  - {id: b, metric: tokens_per_second_per_gpu, value: 2500, hardware: B200, model: M, model_class: m-70b,
     precision: fp8, engine: vLLM, tokens_per_second_per_user: 40, conditions: c, source: S, date: April 2026}
  - {id: c, metric: tokens_per_second_per_gpu, value: 9000, hardware: B300, model: M, model_class: m-70b,
     precision: fp4, engine: vLLM, conditions: c, source: S, date: April 2026}
  - {id: d, metric: tokens_per_second_per_gpu, value: 8000, gpus: 2, hardware: H200, model: M, model_class: m-70b,
     precision: unspecified, engine: vLLM, conditions: c, source: S, date: April 2026}
"""
PRICES = [Price("H100", "on_demand", D("4.00"), "test"), Price("B200", "spot", D("5.00"), "test")]
VLLM_RESULT = {
    "date": "20261101-120000",
    "backend": "vllm",
    "model_id": "meta-llama/Llama-3.3-70B-Instruct",
    "max_concurrency": 64,
    "duration": 100.0,
    "completed": 1000,
    "total_input_tokens": 800000,
    "total_output_tokens": 200000,
    "request_throughput": 10.0,
    "output_throughput": 2000.0,
    "total_token_throughput": 10000.0,
    "mean_tpot_ms": 26.0,
    "median_tpot_ms": 25.0,
    "mean_itl_ms": 25.0,
}
GENAI_PERF_RESULT = {
    "request_throughput": {"unit": "requests/sec", "avg": 4.0},
    "output_token_throughput": {"unit": "tokens/sec", "avg": 800.0},
    "inter_token_latency": {"unit": "ms", "avg": 20.0},
    "input_sequence_length": {"unit": "tokens", "avg": 600.0},
    "output_sequence_length": {"unit": "tokens", "avg": 200.0},
}


def close(a: Decimal, b: Decimal) -> bool:
    """Equal to 24 places: the code divides with 50 digits, the test's own arithmetic with 28."""
    return abs(a - b) < D("1e-24")


def measured(*points: OperatingPoint, hardware: str = "H100", price: Price | None = None) -> Measured:
    return Measured(hardware, "m-70b", "fp8", points, "vLLM", D(1), price)


def point(gpu: int, user: int | None = 40) -> OperatingPoint:
    return OperatingPoint(D(gpu), None if user is None else D(user), "test")


def test_same_hardware_is_priced_per_capacity_class_exactly() -> None:
    result = compare(measured(point(1000)), parse_table(TABLE, "t.yaml"), PRICES, ["H100"])
    (p,) = result.projections
    assert (p.capacity, p.basis, p.uncertainty) == ("on_demand", "measured", "none")
    assert close(p.usd_per_million_tokens, D(4) / (1000 * 3600) * 10**6)


def test_throughput_ratio_projects_at_the_other_hardwares_price() -> None:
    """B200 = 1000 × 2500 ÷ 1000 = 2500 tokens/s/GPU; at $5/h: 5 ÷ (2500 × 3600) × 10⁶ = $0.5556/M."""
    result = compare(measured(point(1000)), parse_table(TABLE, "t.yaml"), PRICES, ["B200"])
    (p,) = result.projections
    assert p.tokens_per_second_per_gpu == 2500
    assert p.usd_per_million_tokens.quantize(D("0.0001")) == D("0.5556")
    assert (p.basis, p.rows, p.tokens_per_second_per_user) == ("throughput ratio", ("a", "b"), D(40))
    assert p.uncertainty == "low"


def test_only_rows_of_the_same_model_class_and_precision_count() -> None:
    result = compare(measured(point(1000)), parse_table(TABLE, "t.yaml"), PRICES, ["B300", "H200"])
    assert not result.projections
    reasons = {g.hardware: g.reason for g in result.gaps}
    assert "no published row for B300 with model class 'm-70b', precision 'fp8'" in reasons["B300"]
    assert "no published row for H200" in reasons["H200"]  # 'unspecified' precision never matches


def test_interactivity_mismatch_raises_uncertainty_and_says_why() -> None:
    result = compare(measured(point(1000, 90)), parse_table(TABLE, "t.yaml"), PRICES, ["B200"])
    (p,) = result.projections
    assert p.uncertainty == "medium"
    assert any("rows at 40 tokens/s per user, yours 90" in n for n in p.notes)


def test_packaged_cost_ratio_names_its_rows_and_uncertainty() -> None:
    """GLM-5 FP8 on B200 → MI355X: CPM × 0.22 ÷ 0.30 (SemiAnalysis InferenceX, same operating point)."""
    price = Price("B200", "contract", D("4.50"), "test")
    m = Measured("B200", "glm-5", "fp8", (point(1500, 18),), "SGLang", D(1), price)
    result = compare(m, load_table(), [], ["MI355X"])
    (p,) = result.projections
    b200 = D("4.50") / (1500 * 3600) * 10**6
    assert close(p.usd_per_million_tokens, b200 * D("0.22") / D("0.30"))
    assert p.rows == ("glm5-fp8-b200-sglang-mtp-18tps", "glm5-fp8-mi355x-sglang-mtp-18tps")
    assert p.basis == "cost ratio" and p.uncertainty == "medium"
    assert any("inside this ratio" in n for n in p.notes)


def test_packaged_table_cites_every_row_no_later_than_its_date() -> None:
    table = load_table()
    assert table.name == "throughput-2026-11-23.yaml"
    for row in table.rows:
        assert row.source and row.model_class and row.precision and row.engine and row.conditions
        assert fact_date(row.date) <= datetime.date(2026, 11, 23)
    system = next(r for r in table.rows if r.id == "gptoss120b-b200-mlperf-offline")
    assert system.per_gpu == D("7527.5")


def test_interpolation_is_linear_between_the_points_around_the_target() -> None:
    """y₀ + (y₁ − y₀)(t − x₀) ÷ (x₁ − x₀): 3000 at 20, 1000 at 60 ⇒ 2000 at 40."""
    p = interpolate([point(3000, 20), point(1000, 60), point(500, 100)], D(40))
    assert (p.tokens_per_second_per_gpu, p.tokens_per_second_per_user) == (D(2000), D(40))
    assert interpolate([point(3000, 20), point(1000, 60)], D(60)).tokens_per_second_per_gpu == 1000


def test_interpolation_refuses_to_extrapolate() -> None:
    with pytest.raises(WhatIfError, match=r"outside the measured range \[20, 60\]"):
        interpolate([point(3000, 20), point(1000, 60)], D(80))


def test_interpolation_needs_two_points() -> None:
    with pytest.raises(WhatIfError, match=r"needs >= 2 operating points"):
        interpolate([point(3000, 20), point(1000, None)], D(20))


def test_compare_projects_the_interpolated_point() -> None:
    result = compare(
        measured(point(3000, 20), point(1000, 60)), parse_table(TABLE, "t.yaml"), PRICES, ["H100"], D(40)
    )
    (p,) = result.projections
    assert p.tokens_per_second_per_gpu == 2000


def write(tmp_path: Path, doc: object) -> str:
    path = tmp_path / "result.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_vllm_bench_result_gives_a_point_per_gpu(tmp_path: Path) -> None:
    p = read_benchmark(write(tmp_path, VLLM_RESULT), gpus=4)
    assert p.tokens_per_second_per_gpu == 2500
    assert p.tokens_per_second_per_user == 40  # 1000 ÷ mean_itl_ms
    assert (p.input_share, p.tokens_per_request) == (D("0.8"), D(1000))


def test_vllm_bench_without_itl_falls_back_to_tpot(tmp_path: Path) -> None:
    doc = {k: v for k, v in VLLM_RESULT.items() if k != "mean_itl_ms"}
    p = read_benchmark(write(tmp_path, doc), gpus=1)
    assert p.interactivity_method == "1000 ÷ mean_tpot_ms"


def test_genai_perf_export_gives_all_tokens_per_gpu(tmp_path: Path) -> None:
    """all tokens/s = output tokens/s × (ISL + OSL) ÷ OSL = 800 × 4; ÷ 2 GPUs."""
    p = read_benchmark(write(tmp_path, GENAI_PERF_RESULT), gpus=2)
    assert (p.tokens_per_second_per_gpu, p.tokens_per_second_per_user) == (D(1600), D(50))


def test_malformed_vllm_file_names_the_missing_keys(tmp_path: Path) -> None:
    doc = {"output_throughput": 1.0, "completed": 3}
    with pytest.raises(
        WhatIfError, match=r"vLLM benchmark result is missing total_token_throughput, total_input"
    ):
        read_benchmark(write(tmp_path, doc), gpus=1)


def test_unknown_file_shape_says_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(
        WhatIfError, match=r"expected vLLM .*total_token_throughput.* or GenAI-Perf/AIPerf keys"
    ):
        read_benchmark(write(tmp_path, {"hello": 1}), gpus=1)
    with pytest.raises(WhatIfError, match=r"expected a JSON object"):
        read_benchmark(write(tmp_path, [1, 2]), gpus=1)


def test_zero_throughput_in_a_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        WhatIfError, match=r"total_token_throughput is 0; a throughput or latency must be > 0"
    ):
        read_benchmark(write(tmp_path, {**VLLM_RESULT, "total_token_throughput": 0}), gpus=1)


class _Prometheus(http.server.BaseHTTPRequestHandler):
    """Answers /api/v1/query in Prometheus' JSON shape, one vector sample per known query."""

    answers: ClassVar[dict[str, str]] = {}

    def do_GET(self) -> None:
        url = urllib.parse.urlparse(self.path)
        query = urllib.parse.parse_qs(url.query).get("query", [""])[0]
        if url.path != "/api/v1/query":
            self.send_error(404)
            return
        value = self.answers.get(query)
        result = [] if value is None else [{"metric": {}, "value": [1764000000.0, value]}]
        body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def prometheus() -> Iterator[str]:
    q = PrometheusQueries()
    _Prometheus.answers = {q.tokens: "24000", q.gpus: "8", q.per_user: "42.5"}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Prometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_prometheus_point_from_recording_rule_queries(prometheus: str) -> None:
    p = prometheus_point(prometheus, PrometheusQueries())
    assert (p.tokens_per_second_per_gpu, p.tokens_per_second_per_user) == (D(3000), D("42.5"))
    assert prometheus_point(prometheus, PrometheusQueries(), gpus=6).tokens_per_second_per_gpu == 4000


def test_prometheus_query_without_series_says_so(prometheus: str) -> None:
    with pytest.raises(WhatIfError, match=r"query 'up': returned no series"):
        prometheus_point(prometheus, PrometheusQueries(tokens="up"))


def test_cli_compare_from_prometheus_json(prometheus: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "compare",
        "--hardware",
        "B200",
        "--capacity",
        "contract",
        "--model-class",
        "glm-5",
        "--precision",
        "FP8",
    ]
    assert main([*argv, "--prometheus", prometheus, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    first = doc["projections"][0]
    assert (first["hardware"], first["capacity"], first["tokens_per_second_per_gpu"]) == (
        "B200",
        "contract",
        3000,
    )
    assert first["usd_per_million_tokens"] == 0.416666667
    mi355x = next(p for p in doc["projections"] if p["hardware"] == "MI355X")
    assert mi355x["basis"] == "cost ratio" and mi355x["uncertainty"] in ("medium", "high")


def test_cli_compare_table_from_vllm_bench_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    low = tmp_path / "c16.json"
    low.write_text(json.dumps({**VLLM_RESULT, "total_token_throughput": 6000.0, "mean_itl_ms": 20.0}))
    high = tmp_path / "c64.json"
    high.write_text(json.dumps(VLLM_RESULT))
    argv = [
        "compare",
        "--hardware",
        "B200",
        "--capacity",
        "spot",
        "--model-class",
        "llama-70b",
        "--precision",
        "fp8",
    ]
    argv += ["--gpus", "4", "--vllm-bench", str(low), "--vllm-bench", str(high), "--to", "B200"]
    assert main([*argv, "--target-tokens-per-second-per-user", "45"]) == 0
    out = capsys.readouterr().out
    assert "interpolated between 40 and 50 tokens/s per user" in out
    assert "2,000" in out  # 2500 at 40, 1500 at 50 ⇒ 2000 at 45


def test_cli_compare_unknown_hardware_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "compare",
        "--hardware",
        "B200",
        "--capacity",
        "spot",
        "--model-class",
        "glm-5",
        "--precision",
        "fp8",
    ]
    assert main([*argv, "--tokens-per-second", "100", "--to", "H900"]) == 2
    assert "unknown hardware 'H900': known are" in capsys.readouterr().err


def test_cli_compare_bench_needs_gpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "compare",
        "--hardware",
        "B200",
        "--capacity",
        "spot",
        "--model-class",
        "glm-5",
        "--precision",
        "fp8",
    ]
    assert main([*argv, "--vllm-bench", write(tmp_path, VLLM_RESULT)]) == 2
    assert "--gpus is required with --vllm-bench" in capsys.readouterr().err


def test_cli_csv_and_list_table(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "compare",
        "--hardware",
        "B200",
        "--capacity",
        "spot",
        "--model-class",
        "glm-5",
        "--precision",
        "fp8",
    ]
    assert main([*argv, "--point", "1500@18", "--format", "csv"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].startswith("hardware,capacity,usd_per_gpu_hour,")
    assert main(["compare", "--list-table"]) == 0
    assert "glm5-fp8-mi355x-sglang-mtp-18tps" in capsys.readouterr().out


def test_plot_without_matplotlib_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    argv = [
        "compare",
        "--hardware",
        "B200",
        "--capacity",
        "spot",
        "--model-class",
        "glm-5",
        "--precision",
        "fp8",
    ]
    assert main([*argv, "--point", "1500@18", "--plot", str(tmp_path / "cpm.png")]) == 2
    assert "pip install 'cpm-exporter[plot]'" in capsys.readouterr().err


def test_plot_draws_cpm_against_tokens_per_second_per_user(tmp_path: Path) -> None:
    """The optional extra, installed by the test extra: a real PNG, one line per hardware."""
    out = tmp_path / "cpm.png"
    argv = [
        "compare",
        "--hardware",
        "B200",
        "--capacity",
        "spot",
        "--model-class",
        "glm-5",
        "--precision",
        "fp8",
    ]
    assert main([*argv, "--point", "1500@18", "--point", "900@40", "--plot", str(out)]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000


def test_compare_and_the_frontier_ratio_mean_the_same_precision() -> None:
    """One precision_class for both: a server's fp8_e4m3 or nvfp4 finds the table's fp8 and fp4 rows."""
    from exporter.pricing.published import load_table

    table = load_table()
    assert table.matching("llama-70b", "fp8_e4m3") == table.matching("llama-70b", "fp8") != ()
    assert table.matching("gpt-oss-120b", "NVFP4") == table.matching("gpt-oss-120b", "fp4") != ()
    assert table.matching("llama-70b", "bfloat16") == ()
