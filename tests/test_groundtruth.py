"""The exporter's token counting against an ideal scraper, on simulated servers over HTTP.

Each scenario drives simulated engines (``tests/groundtruth``) on a synthetic clock; a
loopback server answers every scrape as the scenario planned and records what it served;
the exporter reads it through ``scrape`` and ``TokenMeter``; the ideal scraper replays the
record. Totals per (target, model, quantity) must agree exactly, unknown quantities must be
unknown, and every scrape must be read or refused as its answer deserves.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.groundtruth.answers import Fault
from tests.groundtruth.engines import KINDS, Request, make
from tests.groundtruth.engines.llamacpp import LlamaCpp
from tests.groundtruth.engines.sglang import MODEL as SGLANG_MODEL
from tests.groundtruth.engines.sglang import Sglang
from tests.groundtruth.engines.tgi import Tgi
from tests.groundtruth.engines.triton import LLM, Triton
from tests.groundtruth.engines.vllm import VllmV0, VllmV1
from tests.groundtruth.record import FAILURES
from tests.groundtruth.scenario import EXTRA_MODEL, random_scenario
from tests.groundtruth.script import Outcome, Script, read
from tests.groundtruth.server import SimServer

SEEDS = range(16)  # ~1 s of CPU each (scenario.TICKS): the file stays near 20 s
# Quantities a server has no counter for: unknown, never 0.
UNKNOWN = {
    "vllm-v1": set(),
    "vllm-v0": {"cached_input_tokens"},
    "sglang": set(),
    "sglang-0.4": {"cached_input_tokens", "requests"},
    "tgi": {"cached_input_tokens"},
    "triton": {"cached_input_tokens"},
    "triton-r24.12": {"input_tokens", "output_tokens", "cached_input_tokens"},
    "llamacpp": {"requests"},
}


@pytest.fixture(scope="module")
def server() -> Iterator[SimServer]:
    sim = SimServer()
    yield sim
    sim.close()


def agree(outcome: Outcome) -> None:
    assert not outcome.differences, "exporter vs ideal:\n" + "\n".join(outcome.differences[:40])


def test_a_family_missing_once_freezes_it(server: SimServer) -> None:
    s = Script()
    s.world.add("v1", VllmV1(), prehistory=[Request(prompt=1000, output=400)])
    s.tick()  # baseline: 400 generated
    s.world.serve("v1", Request(prompt=100, output=50))
    s.tick(v1=Fault("missing_family", "vllm:generation_tokens_total"))
    s.world.serve("v1", Request(prompt=100, output=30))
    s.tick()  # 480: +80 since the baseline, not +480 from a "reset" to a missing 0
    outcome = s.run(server)
    assert outcome.ideal_total("v1", "output_tokens") == 80
    agree(outcome)


def test_a_model_and_an_adapter_added_mid_run_count_from_zero(server: SimServer) -> None:
    s = Script()
    engine = Sglang(adapters={"sql-lora": SGLANG_MODEL})
    s.world.add("sg", engine, prehistory=[Request(prompt=900, output=100, cached=300)])
    s.tick()
    s.world.serve(
        "sg",
        Request(prompt=700, output=90, model=EXTRA_MODEL),
        Request(prompt=50, output=5, model="sql-lora"),
    )
    s.tick()
    outcome = s.run(server)
    assert outcome.ideal_total("sg", "input_tokens", EXTRA_MODEL) == 700
    assert outcome.ideal_total("sg", "requests", "sql-lora") == 1
    agree(outcome)


def test_vllm_v0_children_born_late_count_whole(server: SimServer) -> None:
    s = Script()
    # Tokens logged, nothing finished yet: no request_success child exists at the baseline.
    s.world.add("v0", VllmV0(), prehistory=[Request(prompt=500, output=20, finished=False)])
    s.tick()
    s.world.serve("v0", Request(prompt=10, output=10), Request(prompt=10, output=10))
    s.tick()
    s.world.serve("v0", Request(prompt=10, output=10, reason="length"))
    s.tick()
    outcome = s.run(server)
    assert outcome.ideal_total("v0", "requests") == 3
    assert outcome.ideal_total("v0", "requests:length") == 1
    agree(outcome)


def test_a_restart_seen_on_one_counter_restarts_its_siblings(server: SimServer) -> None:
    s = Script()
    s.world.add("ll", LlamaCpp(), prehistory=[Request(prompt=20_000, output=300)])
    s.tick()
    s.world.restart("ll", "partial")  # the input starts over; the output is back at 300 already
    s.world.serve("ll", Request(prompt=100, output=200))
    s.tick()  # input fell: a restart, so the output's 500 all belong to the new life
    outcome = s.run(server)
    assert outcome.ideal_total("ll", "output_tokens") == 500
    agree(outcome)


def test_llamacpp_input_is_two_counters_each_frozen_alone(server: SimServer) -> None:
    s = Script()
    s.world.add("ll", LlamaCpp(), prehistory=[Request(prompt=5000, output=100, cached=2000)])
    s.tick()
    s.world.serve("ll", Request(prompt=300, output=10, cached=100))
    s.tick(ll=Fault("missing_family", "llamacpp:prompt_tokens_cached_total"))  # not a fall of the input
    s.world.serve("ll", Request(prompt=30, output=1, cached=10))
    s.tick()
    outcome = s.run(server)
    assert outcome.ideal_total("ll", "input_tokens") == 330
    assert outcome.ideal_total("ll", "cached_input_tokens") == 110
    agree(outcome)


def test_float_noise_is_not_a_restart_and_never_adds_up(server: SimServer) -> None:
    s = Script()
    s.world.add("v1", VllmV1(), prehistory=[Request(prompt=12_345, output=10)])
    s.tick()
    s.tick(v1=Fault("noise", "vllm:prompt_tokens_total"))  # 12345 printed as 12344.999999999
    s.world.serve("v1", Request(prompt=1, output=1))
    s.tick()  # 12346
    outcome = s.run(server)
    assert outcome.ideal_total("v1", "input_tokens") == 1
    agree(outcome)


@pytest.mark.parametrize("mode", ["kubernetes", "static"])
def test_a_hidden_restart_is_seen_through_started_at_only(server: SimServer, mode: str) -> None:
    s = Script()
    s.world.add("tgi", Tgi(), mode, prehistory=[Request(prompt=3000, output=600)])
    s.tick()
    s.world.serve("tgi", Request(prompt=100, output=10))
    s.tick()
    s.world.restart("tgi", "hidden")  # the new life is already past the old values
    s.world.serve("tgi", Request(prompt=200, output=20))
    s.tick()
    outcome = s.run(server)
    if mode == "kubernetes":  # the new life counts whole: nothing is lost
        assert outcome.ideal_total("tgi", "input_tokens") == 100 + 3100 + 200
        assert outcome.lost("tgi", "input_tokens") == 0
    else:  # no scraper can see it: read as new − old, the old life lost
        assert outcome.ideal_total("tgi", "input_tokens") == 100 + 200
        assert outcome.lost("tgi", "input_tokens") == 3100
    agree(outcome)


def test_triton_without_token_histograms_reads_requests_and_leaves_tokens_unknown(server: SimServer) -> None:
    s = Script()
    s.world.add("tri", Triton(token_histograms=False), prehistory=[Request(prompt=10, output=10)] * 4)
    s.tick()
    s.world.serve("tri", *[Request(prompt=10, output=10)] * 3)
    s.tick()
    outcome = s.run(server)
    assert outcome.ideal_total("tri", "requests", LLM) == 3
    assert outcome.ideal.unknown(("tri", LLM)) == UNKNOWN["triton-r24.12"]
    agree(outcome)


@pytest.mark.parametrize("failure", FAILURES)
def test_a_failed_scrape_freezes_the_target_and_the_gap_counts_once(server: SimServer, failure: str) -> None:
    s = Script()
    s.world.add("v1", VllmV1(), prehistory=[Request(prompt=1000, output=100)])
    s.tick()
    s.world.serve("v1", Request(prompt=40, output=4))
    s.tick(v1=Fault(failure))
    s.world.serve("v1", Request(prompt=2, output=1))
    s.tick()
    outcome = s.run(server)
    assert outcome.run.read[(1, "v1")] is False
    assert outcome.ideal_total("v1", "input_tokens") == 42
    agree(outcome)


def test_a_negative_child_refuses_the_scrape_even_when_the_sum_is_positive(server: SimServer) -> None:
    s = Script()
    history = [Request(prompt=100, output=10), Request(prompt=5000, output=10, streaming=False)]
    s.world.add("sg", Sglang(), prehistory=history)
    s.tick()
    s.world.serve("sg", Request(prompt=7, output=1))
    s.tick(sg=Fault("negative_counter"))  # is_streaming="true" at -101, beside "false" at 5000
    outcome = s.run(server)
    assert outcome.run.read[(1, "sg")] is False
    agree(outcome)


@pytest.mark.parametrize("kind", KINDS)
def test_a_nan_gauge_costs_that_gauge_only(server: SimServer, kind: str) -> None:
    s = Script()
    s.world.add("e", make(kind), prehistory=[Request(prompt=900, output=90)])
    s.tick()
    s.world.serve("e", Request(prompt=50, output=5))
    s.tick(e=Fault("gauge_nan"))
    outcome = s.run(server)
    assert outcome.run.read[(1, "e")] is True
    agree(outcome)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_run_counts_like_the_ideal_scraper(server: SimServer, seed: int) -> None:
    scenario = random_scenario(seed)
    before = dict(server.hits)
    outcome = read(scenario.record, scenario.plans, server)
    for name in scenario.record.targets:  # one request per scrape: nothing retried, nothing skipped
        assert server.hits[name] - before.get(name, 0) == len(scenario.plans), name
    check_ideal(outcome)
    assert not outcome.differences, f"seed {seed}: exporter vs ideal:\n" + "\n".join(outcome.differences[:40])


def check_ideal(outcome: Outcome) -> None:
    """The simulator's own laws: the ideal never counts more than was served, loses nothing
    where nothing restarted, and finds unknown exactly what each server has no counter for."""
    record = outcome.record
    for (name, key), lost in outcome.invisible.items():
        target = record.targets[name]
        first_read = next(s.tick for s in target.served if s.readable)
        restarted = any(tick >= first_read for tick, _ in target.restarts)
        assert lost >= -1e-6, (name, key, lost)
        assert restarted or abs(lost) <= 1e-6, (name, key, lost)
    for name, model in outcome.ideal.known:
        assert outcome.ideal.unknown((name, model)) == UNKNOWN[record.targets[name].engine], (name, model)


def test_the_scenarios_cover_every_engine_and_event() -> None:
    """Over SEEDS, every answer kind is served, and every engine restarts in every way, a
    hidden restart both where only Kubernetes can see it and where nothing can."""
    kinds: set[str] = set()
    restarts: dict[str, set[str]] = {kind: set() for kind in KINDS}
    for seed in SEEDS:
        for target in random_scenario(seed, render=False).record.targets.values():
            kinds.update(s.kind for s in target.served)
            restarts[target.engine].update(f"{kind} {target.mode}" for _, kind in target.restarts)
    assert kinds >= {"good", "noise", "gauge_nan", "missing_family", *FAILURES}
    for engine, seen in restarts.items():
        assert {k.split()[0] for k in seen} == {"fresh", "partial", "hidden"}, engine
        assert {"hidden kubernetes", "hidden static"} <= seen, engine
