"""Training runs: the helper's counter, file and HTTP targets, $/M training tokens, projection."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.config.load import load_config_text
from exporter.engines.read import detect, read_payload
from exporter.http.textformat import fetch_text
from exporter.meter.projection import project
from exporter.runtime.loop import Runtime
from exporter.training import TrainingTokens

CONFIG = """
node: n
tick_seconds: 5
window_seconds: 60
pricing: {{catalogue: false, gpus: {{H100: {{on_demand: 3.60}}}}}}
inventory:
  gpus: [{{hardware: H100, count: 2, capacity: on_demand}}]
  workloads:
    - pod: ft-0
      namespace: ml
      team: research
      model: llama-ft
      kind: training
      gpus: ["0", "1"]
      target_tokens: 1000000
      targets: [{{url: "{url}"}}]
"""


def test_the_helper_counts_whole_tokens_and_refuses_nonsense() -> None:
    t = TrainingTokens()
    t.add(100)
    t.add(20.0)
    assert t.total == 120
    for bad in (-1, 1.5, float("nan"), True, "3"):
        with pytest.raises(ValueError):
            t.add(bad)  # type: ignore[arg-type]
    (family, _created) = [
        f for f in text_string_to_metric_families(t.text()) if f.name.startswith("cpm_training")
    ]
    assert family.samples[0].value == 120


def test_the_helper_file_is_read_by_the_training_entry(tmp_path: Path) -> None:
    path = tmp_path / "job.prom"
    t = TrainingTokens(path=str(path), write_every_seconds=0)
    t.add(5000)
    text = path.read_text()
    assert detect(text) == "training"
    (m,) = read_payload(text, "training", 1000)
    assert (m.input_tokens, m.output_tokens, m.created) == (5000, None, t.created)  # no output: unknown


def test_the_helper_serves_http() -> None:
    t = TrainingTokens()
    port = t.serve(port=0, host="127.0.0.1")
    try:
        t.add(42)
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert "cpm_training_tokens_total 42" in body
    finally:
        t.close()


def test_a_job_with_its_own_counter_name() -> None:
    text = "# TYPE myjob_tokens_total counter\nmyjob_tokens_total 7e3\nmyjob_tokens_created 1.5e9\n"
    (m,) = read_payload(text, "training", 100, token_metric="myjob_tokens_total")
    assert (m.input_tokens, m.created) == (7000, 1.5e9)


def _value(rt: Runtime, name: str, **labels: str) -> float:
    cur = rt.published.current
    assert cur is not None
    for fam in text_string_to_metric_families(cur.metrics.decode()):
        for s in fam.samples:
            if s.name == name and labels.items() <= s.labels.items():
                return s.value
    raise AssertionError(f"no {name} {labels}")


def test_a_training_run_is_priced_per_million_training_tokens_with_a_projection(tmp_path: Path) -> None:
    path = tmp_path / "job.prom"
    job = TrainingTokens(path=str(path), write_every_seconds=0)
    job.add(100_000)  # before the exporter's first look: the job's own counter shows it as done
    now = [time.time_ns()]  # the job started (created) before the exporter looked
    cfg = CONFIG.format(url=path.as_uri())
    rt = Runtime(lambda: load_config_text(cfg), clock=lambda: now[0], fetch=fetch_text)
    rt.tick()
    for _ in range(4):
        job.add(50_000)
        now[0] += 10 * 10**9
        rt.tick()
    # 2 GPUs x $3.60/h for 40 s = $0.08 over 200k training tokens = $0.40 per M
    assert _value(rt, "cpm_tokens_total", direction="training") == 200_000
    assert _value(rt, "cpm_usd_per_million_tokens", direction="training") == pytest.approx(0.40)
    assert _value(rt, "cpm_training_tokens_done") == 300_000
    # 700k tokens left at $0.40/M and 5k tokens/s: $0.28 more, 140 s
    assert _value(rt, "cpm_training_projected_cost_usd") == pytest.approx(0.08 + 0.28)
    assert _value(rt, "cpm_training_eta_seconds") == pytest.approx(140)


def test_projection_edges() -> None:
    done = project(target=10, done=12, cost_so_far_usd=3.0, window_usd=1.0, window_tokens=5, window_s=10)
    assert (done.projected_total_usd, done.eta_seconds) == (3.0, 0.0)
    stalled = project(target=10, done=2, cost_so_far_usd=3.0, window_usd=1.0, window_tokens=0, window_s=10)
    assert (stalled.projected_total_usd, stalled.eta_seconds) == (None, None)
