"""The spread of request cost (p50/p90/p99) from per-request token-length histograms.

The quantile of a histogram is checked against PromQL's own ``histogram_quantile``, run by
``promtool test rules``; the meter is driven by the simulated servers' real expositions.
"""

from __future__ import annotations

import math
import random
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from exporter.demo.simulation import VLLM_LENGTHS, SimEngine
from exporter.engines.read import read_payload
from exporter.meter.counters import bucket_increase, valid_buckets
from exporter.meter.ledger import Meter
from exporter.meter.request_cost import LengthWindow, bucket_quantile, cost_quantiles
from exporter.meter.snapshot import MeterSnapshot
from exporter.pricing.prices import GpuPrice, PricingConfig
from exporter.records import GpuSample, Owner, Placement, TargetScrape, TickInput

INF = math.inf
VLLM_BOUNDS = (*VLLM_LENGTHS, INF)
T0 = 1_767_225_600 * 10**9
S = 10**9
H100 = GpuPrice("H100", "on_demand", Decimal("3.60"), "config", "test")  # $0.001 per GPU-second
PRICES = PricingConfig(gpu_prices={("H100", "on_demand"): H100}, output_input_weight=Decimal(4))
A = Owner("search", "a-0", "search", "llama")


# -- reading histograms between ticks ------------------------------------------------------


@pytest.mark.parametrize(
    ("buckets", "ok"),
    [
        (((10.0, 1.0), (INF, 3.0)), True),
        (((INF, 0.0),), True),
        ((), False),
        (((10.0, 1.0), (20.0, 3.0)), False),  # no +Inf bucket
        (((10.0, 4.0), (INF, 3.0)), False),  # cumulative count falls
        (((20.0, 1.0), (10.0, 2.0), (INF, 3.0)), False),  # bounds out of order
        (((math.nan, 1.0), (INF, 3.0)), False),  # an le that is not a number
        (((10.0, math.nan), (INF, 3.0)), False),
        (((10.0, -1.0), (INF, 3.0)), False),
    ],
)
def test_valid_buckets(buckets: tuple[tuple[float, float], ...], ok: bool) -> None:
    assert valid_buckets(buckets) is ok


def test_bucket_increase_is_per_bucket_growth_with_resets_taken_whole() -> None:
    b1 = ((10.0, 2.0), (100.0, 5.0), (INF, 6.0))
    b2 = ((10.0, 3.0), (100.0, 9.0), (INF, 12.0))
    assert bucket_increase(None, b1, whole=False) == ()  # first sight: a baseline
    # Started since the last reading (a restart the caller saw, or born since): all of it is new.
    assert bucket_increase(None, b1, whole=True) == ((10.0, 2.0), (100.0, 3.0), (INF, 1.0))
    assert bucket_increase(b2, b1, whole=True) == ((10.0, 2.0), (100.0, 3.0), (INF, 1.0))
    assert bucket_increase(b1, b2, whole=False) == ((10.0, 1.0), (100.0, 3.0), (INF, 2.0))
    assert bucket_increase(b2, b2, whole=False) == ()  # nothing finished
    # A falling count is a restart: the new reading counts whole.
    assert bucket_increase(b2, b1, whole=False) == ((10.0, 2.0), (100.0, 3.0), (INF, 1.0))
    other = ((50.0, 1.0), (INF, 1.0))  # fewer requests than before: a restart with new bounds
    assert bucket_increase(b1, other, whole=False) == ((50.0, 1.0), (INF, 0.0))
    lost_line = ((10.0, 3.0), (INF, 12.0))  # same life, a bucket line missing: a baseline, not 12 new
    assert bucket_increase(b2, lost_line, whole=False) == ()
    # Each bound grew, but the low one more than the high one: only a restart does that.
    grew_unevenly = ((10.0, 5.0), (100.0, 6.0), (INF, 7.0))
    assert bucket_increase(b1, grew_unevenly, whole=False) == ((10.0, 5.0), (100.0, 1.0), (INF, 1.0))
    # Float noise below the old count is no restart.
    noisy = ((10.0, 3.0), (100.0, 9.0), (INF, 11.999999999999))
    assert bucket_increase(b2, noisy, whole=False) == ()


# -- quantiles: the same numbers as PromQL's histogram_quantile -------------------------------


def random_histograms(seed: int, n: int) -> list[dict[float, float]]:
    rng = random.Random(seed)
    cases: list[dict[float, float]] = [
        {10.0: 0.0, 20.0: 5.0, INF: 0.0},  # the empty bucket below still starts the interpolation
        {10.0: 1.0, INF: 9.0},  # most ranks in +Inf: the highest finite bound
        {1.0: 4.0, INF: 0.0},
        {-10.0: 1.0, -5.0: 10.0, INF: 0.0},  # only a first bound <= 0 is returned as it is
    ]
    for _ in range(n):
        bounds = sorted(rng.sample([1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 40.95, 4095.0000000000005], 6))
        cases.append({float(b): float(rng.choice([0, 0, 1, 3, 17, 250])) for b in [*bounds, INF]})
        if not sum(cases[-1].values()):
            cases[-1][float(bounds[0])] = 1.0
    return cases


def test_bucket_quantile_matches_promql(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: apt-get install --no-install-recommends prometheus"
    histograms = random_histograms(seed=7, n=30)
    series, checks = [], []
    for i, counts in enumerate(histograms):
        cumulative = 0.0
        for le in sorted(counts):
            cumulative += counts[le]
            le_text = "+Inf" if le == INF else repr(le)
            series.append({"series": f'h_bucket{{case="{i}",le="{le_text}"}}', "values": f"{cumulative:g}"})
        for q in (0.0001, 0.25, 0.5, 0.9, 0.99, 1.0):
            ours = bucket_quantile(q, counts)
            assert ours is not None
            checks.append({
                "expr": f'histogram_quantile({q}, h_bucket{{case="{i}"}})',
                "eval_time": "0m",
                "exp_samples": [{"labels": f'{{case="{i}"}}', "value": ours}],
            })  # fmt: skip
    test = {"tests": [{"interval": "1m", "input_series": series, "promql_expr_test": checks}]}
    path = tmp_path / "quantiles_test.yml"
    path.write_text(yaml.safe_dump(test))
    out = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_bucket_quantile_has_no_value_without_observations_or_finite_bounds() -> None:
    assert bucket_quantile(0.5, {}) is None
    assert bucket_quantile(0.5, {10.0: 0.0, INF: 0.0}) is None
    assert bucket_quantile(0.5, {INF: 4.0}) is None
    assert bucket_quantile(0.0, {10.0: 0.0, 20.0: 5.0, INF: 0.0}) is None  # PromQL: 0/0


def window_of(prompt: dict[float, float], output: dict[float, float]) -> LengthWindow:
    w = LengthWindow()
    w.add(10, [tuple(prompt.items())], [tuple(output.items())], 100)
    return w


def test_request_cost_is_each_directions_price_times_the_same_quantile() -> None:
    w = window_of({100.0: 2.0, 1000.0: 2.0, INF: 0.0}, {10.0: 4.0, INF: 0.0})
    (q50, usd50), (q90, usd90) = cost_quantiles(1e-6, 4e-6, w, quantiles=(0.5, 0.9))
    assert (q50, q90) == (0.5, 0.9)
    assert usd50 == pytest.approx(1e-6 * 100 + 4e-6 * 5)  # rank 2 of 4 ends the first bucket
    assert usd90 == pytest.approx(1e-6 * (100 + 900 * 0.8) + 4e-6 * 9)


def test_a_direction_that_cost_nothing_needs_no_histogram() -> None:
    prefill_pod = window_of({100.0: 4.0, INF: 0.0}, {})
    assert cost_quantiles(1e-6, 0.0, prefill_pod, quantiles=(0.5,)) == ((0.5, pytest.approx(50e-6)),)
    assert cost_quantiles(1e-6, 4e-6, prefill_pod) == ()  # output money but no output lengths
    assert cost_quantiles(None, 4e-6, window_of({100.0: 4.0, INF: 0.0}, {10.0: 1.0, INF: 0.0})) == ()


def test_the_length_window_forgets_old_ticks_and_their_bounds() -> None:
    w = LengthWindow()
    w.add(10 * S, [((10.0, 1.0), (INF, 0.0))], [], 60 * S)
    w.add(20 * S, [((10.0, 2.0), (20.0, 1.0), (INF, 0.0))], [], 60 * S)
    assert w.prompt == {10.0: 3.0, 20.0: 1.0, INF: 0.0}
    w.add(70 * S, [], [], 60 * S)  # the first tick left the window
    assert w.prompt == {10.0: 2.0, 20.0: 1.0, INF: 0.0}
    w.add(80 * S, [], [], 60 * S)  # so did the second, bounds and all
    assert w.prompt == {} and w.empty()


# -- the meter, fed by a simulated server's real exposition ------------------------------------


def tick(
    meter: Meter, sim: SimEngine, t: int, *, roles: dict[tuple[str, str], str] | None = None
) -> MeterSnapshot:
    models = tuple(read_payload(sim.text(), sim.engine, 100_000))
    scrapes = (TargetScrape("a", A, sim.engine, True, models),)
    gpus = (GpuSample("0", "H100", "on_demand"),)
    inp = TickInput(t, t + 10 * S, "n", gpus, (Placement("0", A),), scrapes, roles=roles or {})
    return meter.tick(inp, PRICES, 60)


def quantiles(snap: MeterSnapshot) -> dict[float, float]:
    (view,) = [v for v in snap.lines if v.line.owner.pod == "a-0"]
    return dict(view.gauges.usd_per_request_quantiles)


@pytest.mark.parametrize("engine", ["vllm", "sglang", "tgi", "triton"])
def test_every_engine_with_length_histograms_prices_its_requests(engine: str) -> None:
    meter, sim = Meter("n"), SimEngine("llama", engine=engine, clock=0.0)
    tick(meter, sim, T0)  # the baseline
    rng = random.Random(3)
    lengths = [(rng.randint(20, 3000), rng.randint(1, 900)) for _ in range(200)]
    for prompt, output in lengths:
        sim.serve(prompt, output)
    snap = tick(meter, sim, T0 + 10 * S)
    (view,) = [v for v in snap.lines if v.line.owner.pod == "a-0"]
    t = view.totals
    price_in, price_out = t.cost_input / 1e9 / t.input_tokens, t.cost_output / 1e9 / t.output_tokens
    prompt_counts = dict(_per_bucket(sim.prompt_lengths))
    output_counts = dict(_per_bucket(sim.output_lengths))
    got = quantiles(snap)
    assert list(got) == [0.5, 0.9, 0.99]
    for q, usd in got.items():
        expected = price_in * bucket_quantile(q, prompt_counts) + price_out * bucket_quantile(
            q, output_counts
        )
        assert usd == pytest.approx(expected)
    assert got[0.5] <= got[0.9] <= got[0.99]
    # Histograms are coarse, but the true costs of these requests bracket the estimates.
    true_costs = sorted(price_in * p + price_out * o for p, o in lengths)
    assert true_costs[0] <= got[0.5] <= true_costs[-1]


def _per_bucket(h: object) -> list[tuple[float, float]]:
    bounds = [*h.buckets, INF]  # type: ignore[attr-defined]
    cumulative = [*h.counts, h.count]  # type: ignore[attr-defined]
    return [(le, c - below) for le, c, below in zip(bounds, cumulative, [0, *cumulative[:-1]], strict=True)]


def test_llamacpp_has_no_length_histograms_so_no_request_quantiles() -> None:
    meter, sim = Meter("n"), SimEngine("llama", engine="llamacpp", clock=0.0)
    tick(meter, sim, T0)
    sim.serve(100, 10)
    assert quantiles(tick(meter, sim, T0 + 10 * S)) == {}


def test_quantiles_cover_the_window_and_a_restart_counts_from_zero() -> None:
    meter, sim = Meter("n"), SimEngine("llama", engine="vllm", clock=0.0)
    tick(meter, sim, T0)
    for _ in range(10):
        sim.serve(150, 10)  # prompt bucket (100, 200], output (5, 10]
    first = quantiles(tick(meter, sim, T0 + 10 * S))
    sim.restart(now=5.0)
    for _ in range(10):
        sim.serve(150, 10)
    second = quantiles(tick(meter, sim, T0 + 20 * S))  # twenty requests alike, none negative
    assert first and second and second[0.5] > 0
    (line,) = meter._lines.lengths
    assert (
        sum(meter._lines.lengths[line].prompt.values())
        == sum(meter._lines.lengths[line].output.values())
        == 20
    )
    snap = tick(meter, sim, T0 + 90 * S)  # both ticks with requests left the 60 s window
    assert quantiles(snap) == {}
    assert snap.rejected == {}


def test_a_disaggregated_prefill_pod_prices_requests_by_prompt_length_alone() -> None:
    meter, sim = Meter("n"), SimEngine("llama", engine="vllm", clock=0.0)
    roles = {("search", "a-0"): "prefill"}
    tick(meter, sim, T0, roles=roles)
    for prompt in (120, 180, 400, 900):
        sim.serve(prompt, 1)
    snap = tick(meter, sim, T0 + 10 * S, roles=roles)
    (view,) = [v for v in snap.lines if v.line.owner.pod == "a-0"]
    price_in = view.totals.cost_input / 1e9 / view.totals.input_tokens
    prompt_counts = dict(_per_bucket(sim.prompt_lengths))
    assert quantiles(snap)[0.5] == pytest.approx(price_in * bucket_quantile(0.5, prompt_counts))


def test_a_broken_histogram_is_rejected_alone_and_tokens_still_count() -> None:
    meter, sim = Meter("n"), SimEngine("llama", engine="vllm", clock=0.0)
    tick(meter, sim, T0)
    sim.serve(150, 10)
    (m,) = read_payload(sim.text(), "vllm", 100_000)
    broken = m.__class__(**{**_fields(m), "prompt_lengths": ((10.0, 5.0), (INF, 1.0))})  # count falls
    scrapes = (TargetScrape("a", A, "vllm", True, (broken,)),)
    inp = TickInput(T0 + 10 * S, T0 + 20 * S, "n", (GpuSample("0", "H100", "on_demand"),),
                    (Placement("0", A),), scrapes)  # fmt: skip
    snap = meter.tick(inp, PRICES, 60)
    assert snap.rejected == {("a", "bad_histogram"): 1}
    (view,) = [v for v in snap.lines if v.line.owner.pod == "a-0"]
    assert (view.totals.input_tokens, view.totals.output_tokens) == (150, 10)
    assert quantiles(snap) == {}  # the output histogram alone cannot price the input half


def _fields(m: object) -> dict[str, object]:
    return {name: getattr(m, name) for name in m.__slots__}  # type: ignore[attr-defined]


def test_data_parallel_engines_merge_into_one_line_bucket_by_bucket() -> None:
    """vLLM's engines are read apart (each restarts alone) and their buckets add up per line."""
    meter, engines = Meter("n"), [SimEngine("llama", engine="vllm", clock=0.0) for _ in range(2)]

    def both(t: int) -> MeterSnapshot:
        texts = [e.text().replace('engine="0"', f'engine="{i}"') for i, e in enumerate(engines)]
        models = tuple(read_payload("".join(texts), "vllm", 100_000))
        assert [m.instance for m in models] == ["0", "1"]
        inp = TickInput(t, t + 10 * S, "n", (GpuSample("0", "H100", "on_demand"),), (Placement("0", A),),
                        (TargetScrape("a", A, "vllm", True, models),))  # fmt: skip
        return meter.tick(inp, PRICES, 60)

    both(T0)
    for _ in range(30):
        engines[0].serve(150, 10)  # prompt (100, 200], output (5, 10]
    for _ in range(10):
        engines[1].serve(800, 300)  # prompt (500, 1000], output (200, 500]
    snap = both(T0 + 10 * S)
    (line,) = meter._lines.lengths
    assert meter._lines.lengths[line].prompt == {**dict.fromkeys(VLLM_BOUNDS, 0.0), 200.0: 30.0, 1000.0: 10.0}
    (view,) = snap.lines
    t = view.totals
    price_in, price_out = t.cost_input / 1e9 / t.input_tokens, t.cost_output / 1e9 / t.output_tokens
    # p50 is among the short requests (rank 20 of 40), p90 among the long ones (rank 36: 6th of 10).
    got = quantiles(snap)
    assert got[0.5] == pytest.approx(price_in * (100 + 100 * 20 / 30) + price_out * (5 + 5 * 20 / 30))
    assert got[0.9] == pytest.approx(price_in * (500 + 500 * 6 / 10) + price_out * (200 + 300 * 6 / 10))
