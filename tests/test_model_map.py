"""A target's ``models`` (or a pod's ``cpm-exporter.io/models``) maps the server's model name to the
declared model: Triton with TensorRT-LLM names every series ``model="tensorrt_llm"`` (the ensemble's
backend), which is not the weights it serves. Tested on Triton's real text format (the r26.06
payload), over a sequence of scrapes, from the config and from a pod annotation."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.config.load import load_config_text
from exporter.config.schema import ExporterConfig
from exporter.engines.read import read_payload, scrape
from exporter.engines.targets import OwnerRules, targets_of
from exporter.http.textformat import FetchLimits
from exporter.meter.tokens import TokenMeter
from exporter.runtime.loop import Runtime
from exporter.sources.kube.pods import PodWatcher
from tests.fake_kube_api import FakeKubeApi

FIXTURE = (Path(__file__).parent / "fixtures" / "triton-trtllm" / "r26.06.txt").read_text()
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
_SAMPLE = re.compile(r"^(?P<name>[a-z_]+)\{(?P<labels>[^}]*)\} (?P<value>\S+)$", re.M)


def _original(name: str) -> float:
    (value,) = (float(m["value"]) for m in _SAMPLE.finditer(FIXTURE) if m["name"] == name)
    return value


BASE_COUNT = _original("nv_llm_output_token_len_count")  # 4712 requests in the fixture


def triton(input_sum: float, output_sum: float, count: float) -> str:
    """The real r26.06 payload with its token histograms at these totals after ``count`` requests:
    each ``_sum``, ``_count``, bucket (scaled from the real ones, so they stay cumulative) and every
    model's ``nv_inference_request_success``. Every other line is the fixture's, byte for byte."""

    def line(m: re.Match[str]) -> str:
        name, labels, value = m["name"], m["labels"], float(m["value"])
        if name == "nv_inference_request_success" or name.endswith("_token_len_count"):
            value = count
        elif name == "nv_llm_input_token_len_sum":
            value = input_sum
        elif name == "nv_llm_output_token_len_sum":
            value = output_sum
        elif name.endswith("_token_len_bucket"):
            value = count if 'le="+Inf"' in labels else math.floor(value * count / BASE_COUNT)
        else:
            return m[0]
        return f"{name}{{{labels}}} {value:.0f}"

    return _SAMPLE.sub(line, FIXTURE)


IN0, OUT0 = _original("nv_llm_input_token_len_sum"), _original("nv_llm_output_token_len_sum")
# (input sum, output sum, requests) per scrape: growth, growth, a restart (the counters start
# again and count whole), growth after it.
SCRAPES = [
    (IN0, OUT0, BASE_COUNT),
    (IN0 + 3000, OUT0 + 600, BASE_COUNT + 3),
    (IN0 + 4000, OUT0 + 1000, BASE_COUNT + 5),
    (700, 90, 1),
    (1900, 350, 3),
]
INPUT = 3000 + 1000 + 700 + 1200  # after the first scrape, the baseline
OUTPUT = 600 + 400 + 90 + 260
REQUESTS = 3 + 2 + 1 + 2


def test_the_real_triton_payload_reads_under_the_declared_model() -> None:
    plain = read_payload(FIXTURE, "triton", 10_000)
    (mapped,) = read_payload(FIXTURE, "triton", 10_000, model_names={"tensorrt_llm": LLAMA})
    assert [m.model for m in plain] == ["tensorrt_llm"]
    assert mapped.model == LLAMA
    # Only the name differs, and the server's own name goes with it (the series the meter follows).
    assert mapped == replace(plain[0], model=LLAMA, server_model="tensorrt_llm")
    assert (mapped.input_tokens, mapped.output_tokens, mapped.requests) == (IN0, OUT0, BASE_COUNT)
    assert mapped.running == 9 and mapped.generation_lengths[-1] == (math.inf, BASE_COUNT)
    # A map of names the server does not use changes nothing (the other ensemble members carry no tokens).
    assert read_payload(FIXTURE, "triton", 10_000, model_names={"ensemble": LLAMA, "other": "x"}) == plain


def test_the_backend_models_requests_follow_the_map_where_there_are_no_token_histograms() -> None:
    """r24.12 with TensorRT-LLM <= 0.15: requests are read from ``nv_inference_request_success``
    where ``model="tensorrt_llm"``: the map renames the line, the filter still sees the server's label."""
    old = "\n".join(line for line in FIXTURE.splitlines() if "nv_llm_" not in line) + "\n"
    (m,) = read_payload(old, "triton", 10_000, model_names={"tensorrt_llm": LLAMA})
    assert (m.model, m.requests, m.input_tokens) == (LLAMA, BASE_COUNT, None)


# ---- the config: a sequence of scrapes through the whole tick loop -------------------------------
CONFIG = f"""
node: n
tick_seconds: 5
pricing:
  gpus: {{H100: {{on_demand: 4.00}}}}
inventory:
  gpus: [{{hardware: H100, count: 2, capacity: on_demand}}]
  workloads:
    - pod: trtllm-0
      namespace: llm
      model: {LLAMA}
      gpus: ["0"]
      targets: [{{url: "http://trtllm-0:8002/metrics", models: {{tensorrt_llm: {LLAMA}}}}}]
    - pod: trtllm-1            # the same server, unmapped: as before
      namespace: llm
      model: {LLAMA}
      gpus: ["1"]
      targets: [{{url: "http://trtllm-1:8002/metrics"}}]
"""


def _series(rt: Runtime) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    cur = rt.published.current
    assert cur is not None
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(cur.metrics.decode())
        for s in family.samples
    }


def _value(series: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    found = [v for (n, ls), v in series.items() if n == name and set(labels.items()) <= ls]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def test_a_configured_map_files_every_token_of_a_sequence_under_the_declared_model() -> None:
    now = [1_767_225_600 * 10**9]
    body = [triton(*SCRAPES[0])]
    rt = Runtime(lambda: load_config_text(CONFIG), clock=lambda: now[0], fetch=lambda *_: body[0])
    for step in SCRAPES:
        body[0] = triton(*step)
        rt.tick()
        now[0] += 5 * 10**9
    series = _series(rt)
    for pod, model in (("trtllm-0", LLAMA), ("trtllm-1", "tensorrt_llm")):
        tokens = {
            d: _value(series, "cpm_tokens_total", pod=pod, model=model, direction=d)
            for d in ("input", "output")
        }
        assert tokens == {"input": INPUT, "output": OUTPUT}, pod
        assert _value(series, "cpm_requests_total", pod=pod, model=model) == REQUESTS
        assert _value(series, "cpm_upstream_resets_total", target=pod) == 1
    # Nothing of the mapped target is left under the server's own name, in any family.
    assert not [k for k in series if ("pod", "trtllm-0") in k[1] and ("model", "tensorrt_llm") in k[1]]
    mapped = {k for k in series if ("pod", "trtllm-0") in k[1] and ("model", LLAMA) in k[1]}
    assert {name for name, _ in mapped} >= {
        "cpm_tokens_total", "cpm_requests_total", "cpm_cost_usd_total", "cpm_usd_per_million_tokens",
        "cpm_running_requests", "cpm_usd_per_request_percentile", "cpm_operating_point_info",
    }  # fmt: skip


def test_a_map_set_on_a_running_server_renames_its_series_without_counting_them_again() -> None:
    """The map arrives by a reload while the server runs: its counters go on from where they were
    under their new name (the meter follows the server's own name), so the pod's tokens over both
    names are what it served since the baseline, as for the pod that was never mapped; a map
    taken away again goes back the same way. Nothing is rejected as an implausible jump."""
    now = [1_767_225_600 * 10**9]
    body = [triton(*SCRAPES[0])]
    unmapped = CONFIG.replace(f", models: {{tensorrt_llm: {LLAMA}}}", "")
    assert unmapped != CONFIG
    text = [unmapped]
    rt = Runtime(lambda: load_config_text(text[0]), clock=lambda: now[0], fetch=lambda *_: body[0])
    grow = [(IN0 + 1000 * k, OUT0 + 100 * k, BASE_COUNT + k) for k in range(9)]
    for k, step in enumerate(grow):
        if k in (3, 6):  # the map set, then taken away
            text[0] = CONFIG if k == 3 else unmapped
            assert rt.reload()[0]
        body[0] = triton(*step)
        rt.tick()
        now[0] += 5 * 10**9
    series = _series(rt)

    def tokens(pod: str, model: str) -> float:
        found = [v for (n, ls), v in series.items() if n == "cpm_tokens_total" and {("pod", pod), ("model", model),
                 ("direction", "input")} <= ls]  # fmt: skip
        return sum(found)

    assert tokens("trtllm-0", LLAMA) == 3000  # the ticks it was mapped
    assert (
        tokens("trtllm-0", LLAMA) + tokens("trtllm-0", "tensorrt_llm")
        == tokens("trtllm-1", "tensorrt_llm")
        == 8000
    )
    assert not [
        k for k in series if k[0] == "cpm_rejected_samples_total" and ("reason", "implausible_jump") in k[1]
    ]


def _config(models: str) -> ExporterConfig:
    return load_config_text(CONFIG.replace(f"models: {{tensorrt_llm: {LLAMA}}}", f"models: {models}"))


def with_second_name(payload: str, name: str, input_sum: float, output_sum: float) -> str:
    """``payload`` with a second model's token sums beside the first's, in the same families."""
    out = []
    for line in payload.splitlines(keepends=True):
        out.append(line)
        for family, value in (
            ("nv_llm_input_token_len_sum", input_sum),
            ("nv_llm_output_token_len_sum", output_sum),
        ):
            if line.startswith(family + "{") and 'model="tensorrt_llm"' in line:
                labels = line[len(family) : line.rindex("}") + 1].replace(
                    'model="tensorrt_llm"', f'model="{name}"'
                )
                out.append(f"{family}{labels} {value:.0f}\n")
    return "".join(out)


def test_names_mapped_to_one_model_add_up() -> None:
    """Two server names for one model (an alias, a renamed deployment): two series of the model, each
    followed on its own, whose counters add up on its line."""
    doubled = with_second_name(FIXTURE, "trt_b", IN0, OUT0)
    cfg = _config(f"{{tensorrt_llm: {LLAMA}, trt_b: {LLAMA}}}")
    (target,) = (t for t in cfg.targets if t.name == "trtllm-0")
    got = read_payload(doubled, "triton", 10_000, model_names=target.models)
    assert [(m.model, m.server_model) for m in got] == [(LLAMA, "tensorrt_llm"), (LLAMA, "trt_b")]
    assert sum(m.input_tokens or 0 for m in got) == 2 * IN0


def _run(configs: dict[int, str], bodies: list[str]) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """A runtime over a sequence of payloads; at tick k (a key of ``configs``) a reload to that config."""
    now, body, text = [1_767_225_600 * 10**9], [bodies[0]], [configs[0]]
    rt = Runtime(lambda: load_config_text(text[0]), clock=lambda: now[0], fetch=lambda *_: body[0])
    for k, payload in enumerate(bodies):
        if k and k in configs:
            text[0] = configs[k]
            assert rt.reload()[0]
        body[0] = payload
        rt.tick()
        now[0] += 5 * 10**9
    return _series(rt)


def _input(series: dict[tuple[str, frozenset[tuple[str, str]]], float], pod: str) -> dict[str, float]:
    """cpm_tokens_total{direction="input"} of one pod, per model."""
    out: dict[str, float] = {}
    for (name, labels), v in series.items():
        ls = dict(labels)
        if name == "cpm_tokens_total" and ls.get("pod") == pod and ls.get("direction") == "input":
            out[ls["model"]] = out.get(ls["model"], 0.0) + v
    return out


def _no_jump(series: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> bool:
    return not [
        k for k in series if k[0] == "cpm_rejected_samples_total" and ("reason", "implausible_jump") in k[1]
    ]


def test_a_many_to_one_map_set_then_taken_away_on_a_running_server_counts_each_token_once() -> None:
    """Two names served since long before the exporter started, growing 1 000 and 10 input tokens a
    tick: a map of both to one model set at tick 3, taken away at tick 6. Every tick's growth once."""
    both = _config(f"{{tensorrt_llm: {LLAMA}, trt_b: {LLAMA}}}")
    del both  # loads: the map is valid
    mapped = CONFIG.replace(
        f"models: {{tensorrt_llm: {LLAMA}}}", f"models: {{tensorrt_llm: {LLAMA}, trt_b: {LLAMA}}}"
    )
    plain = CONFIG.replace(f", models: {{tensorrt_llm: {LLAMA}}}", "")
    bodies = [
        with_second_name(triton(IN0 + 1000 * k, OUT0, BASE_COUNT), "trt_b", 10**6 + 10 * k, 10**5)
        for k in range(9)
    ]
    series = _run({0: plain, 3: mapped, 6: plain}, bodies)
    got = _input(series, "trtllm-0")
    assert got[LLAMA] == 3 * 1010  # ticks 3, 4, 5
    assert got["tensorrt_llm"] + got["trt_b"] == 5 * 1010  # ticks 1, 2, 6, 7, 8
    assert _no_jump(series)


def test_a_name_born_under_a_map_counts_from_zero_and_the_declared_models_own_name_apart() -> None:
    """Mapped from the start: a second name appearing later counts what it served (its first 5
    tokens), and a series the server files under the declared name itself stays its own series."""
    mapped = CONFIG.replace(f"models: {{tensorrt_llm: {LLAMA}}}", f"models: {{trt_b: {LLAMA}}}")
    bodies = [with_second_name(triton(IN0, OUT0, BASE_COUNT), LLAMA, 10**6, 10**5)]
    bodies += [
        with_second_name(with_second_name(triton(IN0, OUT0, BASE_COUNT), LLAMA, 10**6 + 10 * k, 10**5), "trt_b",
                         5 + 10 * (k - 2), 0) if k >= 2 else
        with_second_name(triton(IN0, OUT0, BASE_COUNT), LLAMA, 10**6 + 10 * k, 10**5)
        for k in range(1, 6)
    ]  # fmt: skip
    series = _run({0: mapped}, bodies)
    got = _input(series, "trtllm-0")
    # The server's own LLAMA series: 10 a tick over 5 ticks; trt_b: born with 5, then 10 a tick (3 more ticks).
    assert got[LLAMA] == 50 + 5 + 30
    assert got.get("tensorrt_llm", 0) == 0  # the unmapped name served nothing after the baseline
    assert _no_jump(series)


# ---- Kubernetes: the pod annotation, through the fake API server and the real client ------------
def test_the_pod_annotation_maps_the_model_over_a_sequence_of_scrapes() -> None:
    kube = FakeKubeApi().start()
    watcher = PodWatcher("node-a", kube.client(), watch_timeout_seconds=5)
    scrape_me = {"prometheus.io/scrape": "true", "prometheus.io/port": "8002"}
    try:
        kube.add_pod(
            "trtllm-0", "llm", node="node-a", pod_ip="10.1.0.4",
            annotations={**scrape_me, "cpm-exporter.io/model": LLAMA,
                         "cpm-exporter.io/models": f"tensorrt_llm = {LLAMA}"},
        )  # fmt: skip
        kube.add_pod(
            "trtllm-1",
            "llm",
            node="node-a",
            pod_ip="10.1.0.5",
            labels={"model": LLAMA},
            annotations=scrape_me,
        )
        watcher.start()
        targets, problems = targets_of(watcher.pods(), OwnerRules())
    finally:
        watcher.stop()
        kube.close()
    assert problems == ()
    assert {t.name: dict(t.models) for t in targets} == {
        "llm/trtllm-0": {"tensorrt_llm": LLAMA},
        "llm/trtllm-1": {},
    }
    meter, totals = TokenMeter(), dict[tuple[str, str], list[float]]()
    for k, step in enumerate(SCRAPES):
        body = triton(*step)
        scrapes = [scrape(t, FetchLimits(), lambda *_, text=body: text) for t in targets]
        assert all(s.ok for s in scrapes)
        for d in meter.tick(scrapes, 5.0 * k, 5.0).deltas:
            total = totals.setdefault((d.owner.pod, d.owner.model), [0.0, 0.0, 0.0])
            for n, amount in enumerate((d.input_tokens, d.output_tokens, d.requests)):
                total[n] += amount
    assert totals == {
        ("trtllm-0", LLAMA): [INPUT, OUTPUT, REQUESTS],
        ("trtllm-1", "tensorrt_llm"): [INPUT, OUTPUT, REQUESTS],  # unannotated: the server's name, as before
    }


@pytest.mark.parametrize("shape", ["{}", f"{{tensorrt_llm: {LLAMA}}}"])
def test_an_empty_or_set_map_loads(shape: str) -> None:
    (target,) = (t for t in _config(shape).targets if t.name == "trtllm-0")
    assert dict(target.models) == ({} if shape == "{}" else {"tensorrt_llm": LLAMA})
