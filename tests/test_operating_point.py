"""Issue 20: what each server runs (engine, version, precision, KV-cache dtype) beside its CPM, from
annotations, container flags and image tags, or the config; changes counted over time."""

from __future__ import annotations

import pytest

from exporter.engines.operating import hints_from_container, hints_from_pod, image_version
from exporter.exposition.status import OperatingPoint
from exporter.records import ContainerRun, ModelCounters, OperatingHints, Owner, PodInfo, Target, TargetScrape
from exporter.runtime.operating import OperatingPoints


@pytest.mark.parametrize(
    ("args", "image", "expected"),
    [
        # vLLM: quantisation wins over dtype; auto says nothing.
        (["vllm", "serve", "m", "--dtype", "bfloat16", "--quantization", "fp8", "--kv-cache-dtype", "fp8_e4m3"],
         "vllm/vllm-openai:v0.8.5", ("0.8.5", "fp8", "fp8_e4m3")),
        (["--model=m", "--dtype=auto", "--kv-cache-dtype=auto"], "vllm/vllm-openai:latest", ("", "", "")),
        (["--model", "m", "--dtype", "half"], "docker.io/vllm/vllm-openai:v0.6.6.post1", ("0.6.6.post1", "half", "")),
        # SGLang, one string of flags in a shell command
        (["python3 -m sglang.launch_server --model-path m --quantization awq"], "lmsysorg/sglang:v0.5.2-cu126",
         ("0.5.2-cu126", "awq", "")),
        # TGI: --quantize
        (["--model-id", "m", "--quantize", "gptq"], "ghcr.io/huggingface/text-generation-inference:3.3.7",
         ("3.3.7", "gptq", "")),
        # llama.cpp: the GGUF file's quant, the build number, -ctk for the KV cache
        (["-m", "/models/Phi-3-mini-4k-instruct-Q4_K_M.gguf", "-ctk", "q8_0"], "ghcr.io/ggml-org/llama.cpp:server-b4500",
         ("b4500", "Q4_K_M", "q8_0")),
        # a digest pins a build, not a version: unknown
        ([], "vllm/vllm-openai@sha256:0123abcd", ("", "", "")),
    ],
)  # fmt: skip
def test_a_containers_flags_and_image_tag_say_what_it_runs(
    args: list[str], image: str, expected: tuple[str, str, str]
) -> None:
    h = hints_from_container(args, image)
    assert (h.version, h.precision, h.kv_cache_dtype) == expected
    assert h.source == ("container" if any(expected) else "")


def test_annotations_win_over_the_container_and_a_port_names_the_serving_container() -> None:
    sidecar = ContainerRun("proxy", (9000,), None, "envoyproxy/envoy:v1.30.0", ())
    server = ContainerRun("vllm", (8000,), None, "vllm/vllm-openai:v0.8.5", ("--quantization", "fp8"))
    pod = PodInfo("u", "ml", "vllm-0", {}, {"cpm-exporter.io/precision": "fp8-dynamic"}, "Running", "10.0.0.1",
                  None, (), (), containers=(sidecar, server))  # fmt: skip
    h = hints_from_pod(pod, 8000)
    assert (h.version, h.precision, h.source) == ("0.8.5", "fp8-dynamic", "annotation")
    assert hints_from_pod(pod, 7777).version == ""  # two containers, neither declares it: unknown
    assert image_version("registry:5000/vllm") == ""  # a registry's port is not a tag


def test_a_change_of_operating_point_is_counted_once_and_a_failed_scrape_changes_nothing() -> None:
    owner = Owner("ml", "vllm-0", "search", "llama")

    def target(version: str) -> Target:
        return Target(
            "ml/vllm-0",
            "http://10.0.0.1:8000/metrics",
            owner,
            hints=OperatingHints(version, "fp8", "", "container"),
        )

    def scrape(ok: bool = True, model: str = "llama") -> TargetScrape:
        return TargetScrape("ml/vllm-0", owner, "vllm", ok, (ModelCounters(model, 1.0, 1.0),) if ok else ())

    points = OperatingPoints()
    first = points.update([target("0.8.5")], [scrape()])
    assert first == (OperatingPoint("ml", "vllm-0", "llama", "vllm", "0.8.5", "fp8", "", "container"),)
    assert points.changes == {("ml", "vllm-0"): 0}
    points.update([target("0.8.5")], [scrape(ok=False)])  # a lost scrape: the last point stays
    assert points.update([target("0.8.5")], [scrape()]) == first and points.changes[("ml", "vllm-0")] == 0
    points.update([target("0.9.0")], [scrape()])  # a rollout
    points.update([target("0.9.0")], [scrape(model="llama-lora")])  # another served model
    assert points.changes[("ml", "vllm-0")] == 2
    assert points.update([], []) == () and points.changes == {}  # the pod is gone: forgotten


def test_a_pod_with_two_targets_one_failing_once_neither_loses_nor_recounts_its_points() -> None:
    """A server and its sidecar metrics endpoint on one pod, over ticks: the sidecar's scrape fails
    once; its point stays listed and nothing counts as a change (the last points are per target)."""
    owner = Owner("ml", "vllm-0", "search", "llama")
    targets = [Target(name, f"http://10.0.0.1:{port}/metrics", owner, hints=OperatingHints("0.8.5", "fp8", "", "config"))
               for name, port in (("ml/vllm-0", 8000), ("ml/vllm-0-lora", 8001))]  # fmt: skip

    def scrapes(sidecar_ok: bool) -> list[TargetScrape]:
        return [
            TargetScrape("ml/vllm-0", owner, "vllm", True, (ModelCounters("llama", 1.0, 1.0),)),
            TargetScrape("ml/vllm-0-lora", owner, "vllm", sidecar_ok,
                         (ModelCounters("llama-lora", 1.0, 1.0),) if sidecar_ok else ()),
        ]  # fmt: skip

    points = OperatingPoints()
    first = points.update(targets, scrapes(True))
    assert {p.model for p in first} == {"llama", "llama-lora"}
    for ok in (False, True, True):
        assert points.update(targets, scrapes(ok)) == first
    assert points.changes == {("ml", "vllm-0"): 0}


def test_a_line_is_compared_with_the_published_row_at_its_operating_point() -> None:
    """cpm_frontier_ratio: same hardware, model class and precision family; of several rows the one
    published nearest the line's tokens/s per user; no class, no precision or no row: no ratio."""
    from decimal import Decimal

    from exporter.exposition.frontier import frontier
    from exporter.meter.attribution import Line
    from exporter.meter.snapshot import LineTotals, LineView
    from exporter.meter.windows import LiveGauges
    from exporter.pricing.published import PublishedRow, precision_class

    def row(id_: str, tps: int | None, precision: str = "fp8", hardware: str = "H100") -> PublishedRow:
        return PublishedRow(id_, "usd_per_million_tokens", Decimal("0.10"), hardware, "Llama 3.3 70B", "llama-70b",
                            precision, "vLLM", "", "test", "2026", tokens_per_second_per_user=None if tps is None else Decimal(tps))  # fmt: skip

    def view(pod: str, cpm: float | None, tps: float) -> LineView:
        line = Line(Owner("ml", pod, "search", "llama"), "H100", "on_demand")
        return LineView(
            line, LineTotals(), LiveGauges(usd_per_million_total=cpm, tokens_per_second_per_user=tps), ""
        )

    rows = [row("slow", 20), row("fast", 80), row("bf16", 50, "bf16"), row("b200", 50, hardware="B200"),
            row("untimed", None), row("unsaid", 50, "unspecified")]  # fmt: skip
    points = {("ml", p, "llama"): OperatingPoint("ml", p, "llama", "vllm", "0.8.5", prec, "", "config", cls)
              for p, prec, cls in (("a", "fp8_e4m3", "llama-70b"), ("b", "bfloat16", "llama-70b"),
                                   ("c", "fp8", ""), ("d", "awq", "llama-70b"))}  # fmt: skip
    found = frontier([view("a", 0.30, 70.0), view("b", 0.05, 10.0), view("c", 0.3, 70.0), view("d", 0.3, 70.0),
                      view("e", 0.3, 70.0)], points, rows)  # fmt: skip
    assert [(v.line.owner.pod, r.id, ratio) for v, r, ratio in found] == [
        ("a", "fast", pytest.approx(3.0)), ("b", "bf16", pytest.approx(0.5))]  # fmt: skip
    assert [precision_class(p) for p in ("bfloat16", "FP8_E5M2", "nvfp4", "half")] == [
        "bf16",
        "fp8",
        "fp4",
        "fp16",
    ]


def test_vllms_cache_config_info_names_the_kv_cache_dtype_unless_it_says_auto() -> None:
    """vLLM 0.32's real info series (labels as a server printed them, trimmed): cache_dtype auto says
    nothing; fp8_e4m3 is the KV-cache dtype, and the operating point says it came from the server."""
    from pathlib import Path

    from exporter.engines.read import read_payload

    text = (Path(__file__).parent / "fixtures" / "vllm" / "v1-0.33.0.txt").read_text()
    info = ('vllm:cache_config_info{block_size="128",cache_dtype="%s",enable_prefix_caching="True",engine="0",'
            'gpu_memory_utilization="0.92",kv_cache_memory_bytes="1073741824"} 1.0\n')  # fmt: skip
    assert {m.kv_cache_dtype for m in read_payload(text + info % "auto", "vllm", 100_000)} == {""}
    models = read_payload(text + info % "fp8_e4m3", "vllm", 100_000)
    assert {m.kv_cache_dtype for m in models} == {"fp8_e4m3"}
    owner = Owner("ml", "vllm-0", "search", models[0].model)
    (point,) = OperatingPoints().update(
        [Target("t", "http://x/metrics", owner)], [TargetScrape("t", owner, "vllm", True, tuple(models))]
    )
    assert (point.kv_cache_dtype, point.source, point.version) == ("fp8_e4m3", "server", "")
