"""The meter on hand-built ticks: who pays, how money splits, what is rejected."""

from __future__ import annotations

import math
from dataclasses import replace
from decimal import Decimal
from itertools import pairwise

import pytest

from exporter.meter.ledger import Meter
from exporter.meter.snapshot import MeterSnapshot
from exporter.pricing.prices import GpuPrice, PricingConfig
from exporter.records import OVERFLOW, GpuSample, ModelCounters, Owner, Placement, TargetScrape, TickInput

T0 = 1_767_225_600 * 10**9
S = 10**9
H100 = GpuPrice("H100", "on_demand", Decimal("3.60"), "config", "test")  # $0.001 per GPU-second
PRICES = PricingConfig(gpu_prices={("H100", "on_demand"): H100}, output_input_weight=Decimal(4))
A = Owner("search", "a-0", "search", "llama")
B = Owner("chat", "b-0", "chat", "qwen")


def gpus(n: int, util: float | None = None) -> tuple[GpuSample, ...]:
    return tuple(GpuSample(str(i), "H100", "on_demand", utilization=util) for i in range(n))


def counters(model: str, i: float, o: float, **kw: float) -> ModelCounters:
    return ModelCounters(model, i, o, **kw)  # type: ignore[arg-type]


def scrape(owner: Owner, *models: ModelCounters, ok: bool = True, name: str = "") -> TargetScrape:
    return TargetScrape(name or owner.pod, owner, "vllm", ok, tuple(models))


def run(
    meter: Meter, *ticks: tuple[tuple[GpuSample, ...], tuple[Placement, ...], tuple[TargetScrape, ...]]
) -> MeterSnapshot:
    snap = MeterSnapshot("n", 0)
    t = T0
    for g, p, s in ticks:
        snap = meter.tick(TickInput(t, t + 10 * S, "n", g, p, s), PRICES, 60)
        t += 10 * S
    return snap


def line(snap: MeterSnapshot, pod: str, model: str | None = None):  # type: ignore[no-untyped-def]
    found = [
        v for v in snap.lines if v.line.owner.pod == pod and (model is None or v.line.owner.model == model)
    ]
    assert len(found) == 1, [v.line for v in snap.lines]
    return found[0]


def test_held_gpus_are_charged_to_the_holder_and_the_rest_is_idle() -> None:
    snap = run(Meter("n"), (gpus(3), (Placement("0", A), Placement("1", A)), ()))
    assert line(snap, "a-0").totals.cost["gpu"] == 20_000_000  # 2 GPUs x 10 s x $0.001
    idle = line(snap, "")
    assert idle.line.owner.is_idle and idle.totals.cost["gpu"] == 10_000_000
    assert snap.bill_nano == 30_000_000


def test_a_time_sliced_gpu_splits_by_share_exactly() -> None:
    snap = run(Meter("n"), (gpus(1), (Placement("0", A, 1), Placement("0", B, 2)), ()))
    a, b = line(snap, "a-0").totals, line(snap, "b-0").totals
    assert a.cost["gpu"] + b.cost["gpu"] == 10_000_000
    assert (a.cost["gpu"], b.cost["gpu"]) == (
        3_333_333,
        6_666_667,
    )  # the unit left goes to the larger remainder
    assert a.held_ns + b.held_ns == 10 * S


def test_a_pod_serving_several_models_splits_by_token_share() -> None:
    m = Meter("n")
    tick0 = (gpus(1), (Placement("0", A),), (scrape(A, counters("x", 0, 0), counters("y", 0, 0)),))
    tick1 = (gpus(1), (Placement("0", A),), (scrape(A, counters("x", 300, 0), counters("y", 100, 0)),))
    snap = run(m, tick0, tick1)
    x, y = line(snap, "a-0", "x").totals, line(snap, "a-0", "y").totals
    assert (x.cost["gpu"], y.cost["gpu"]) == (7_500_000, 2_500_000)  # second tick: 3:1 by tokens
    # first tick: no tokens yet (baseline) → the pod's declared model pays
    assert line(snap, "a-0", "llama").totals.cost["gpu"] == 10_000_000


def test_a_pod_that_serves_nothing_still_pays_under_its_declared_model() -> None:
    snap = run(Meter("n"), (gpus(1), (Placement("0", A),), (scrape(A, counters("llama", 0, 0)),)))
    v = line(snap, "a-0")
    assert v.totals.cost["gpu"] == 10_000_000
    assert v.gauges.usd_per_million_total is None  # no tokens: no CPM, never Inf or NaN
    assert v.gauges.burn_usd_per_hour == pytest.approx(3.60)


def test_input_output_split_by_phase_time_then_by_token_weight() -> None:
    m = Meter("n")
    g, p = gpus(1), (Placement("0", A),)
    base = counters("llama", 0, 0, prefill_seconds=0, decode_seconds=0)
    timed = counters("llama", 1000, 1000, prefill_seconds=1, decode_seconds=3)
    snap = run(m, (g, p, (scrape(A, base),)), (g, p, (scrape(A, timed),)))
    v = line(snap, "a-0")
    assert v.split == "phase_time"
    # tick 1 (no traffic) splits evenly; tick 2 by time 1:3
    assert (v.totals.cost_input, v.totals.cost_output) == (5_000_000 + 2_500_000, 5_000_000 + 7_500_000)

    m2 = Meter("n")
    snap = run(
        m2, (g, p, (scrape(A, counters("llama", 0, 0)),)), (g, p, (scrape(A, counters("llama", 400, 100)),))
    )
    v = line(snap, "a-0")
    assert v.split == "token_weight"  # weight 4: 400 : 4 x 100
    assert v.totals.cost_input - 5_000_000 == v.totals.cost_output - 5_000_000 == 5_000_000


def test_cpm_and_interactivity_over_the_window() -> None:
    m = Meter("n")
    g, p = gpus(1), (Placement("0", A),)
    c0 = counters("llama", 0, 0, requests=0, itl_seconds=0, itl_count=0)
    c1 = counters("llama", 6000, 4000, requests=10, itl_seconds=80, itl_count=4000)
    snap = run(m, (g, p, (scrape(A, c0),)), (g, p, (scrape(A, c1),)))
    gauges = line(snap, "a-0").gauges
    assert gauges.usd_per_million_total == pytest.approx(0.020 / 10_000 * 1e6)  # $0.02 over 10k tokens
    assert gauges.usd_per_request == pytest.approx(0.002)
    assert gauges.tokens_per_second_per_user == pytest.approx(50.0)  # 1 / 20 ms
    assert gauges.interactivity_method == "inter_token_latency"


def test_interactivity_falls_back_to_output_rate_per_running_request() -> None:
    m = Meter("n")
    g, p = gpus(1), (Placement("0", A),)
    snap = run(m, (g, p, (scrape(A, counters("llama", 0, 0, running=4)),)),
               (g, p, (scrape(A, counters("llama", 0, 800, running=4)),)))  # fmt: skip
    gauges = line(snap, "a-0").gauges
    # 800 tokens over a 20 s window (baseline tick included) with 4 running: 10 tokens/s per user
    assert gauges.tokens_per_second_per_user == pytest.approx(800 / 20 / 4)
    assert gauges.interactivity_method == "output_rate_per_running_request"


@pytest.mark.parametrize("value", [math.nan, math.inf, -5.0])
def test_a_bad_counter_that_reaches_the_meter_freezes_alone(value: float) -> None:
    """The reader refuses such a scrape (test_inference); should one reach the meter, the
    bad counter alone freezes and is counted, and nothing is lost when it is good again."""
    m = Meter("n")
    g, p = gpus(1), (Placement("0", A),)
    good = (g, p, (scrape(A, counters("llama", 100, 10)),))
    snap = run(m, good, (g, p, (scrape(A, counters("llama", 200, 20)),)))
    before = line(snap, "a-0").totals.input_tokens
    snap = m.tick(
        TickInput(T0 + 20 * S, T0 + 30 * S, "n", g, p, (scrape(A, counters("llama", value, 30)),)), PRICES, 60
    )
    assert snap.rejected[("a-0", "bad_value")] == 1
    assert line(snap, "a-0").totals.input_tokens == before  # frozen, not reset
    assert line(snap, "a-0").totals.output_tokens == 20 - 10 + 30 - 20
    snap = m.tick(
        TickInput(T0 + 30 * S, T0 + 40 * S, "n", g, p, (scrape(A, counters("llama", 250, 35)),)), PRICES, 60
    )
    assert line(snap, "a-0").totals.input_tokens == before + 50  # resumes without loss


def test_a_failed_scrape_freezes_counters_and_the_next_good_one_adds_the_gap() -> None:
    m = Meter("n")
    g, p = gpus(1), (Placement("0", A),)
    snap = run(
        m,
        (g, p, (scrape(A, counters("llama", 100, 10)),)),
        (g, p, (scrape(A, ok=False),)),
        (g, p, (scrape(A, counters("llama", 160, 16)),)),
    )
    assert line(snap, "a-0").totals.input_tokens == 60
    assert line(snap, "a-0").totals.output_tokens == 6


def test_a_restart_counts_as_restart_from_zero_and_is_counted() -> None:
    m = Meter("n")
    g, p = gpus(1), (Placement("0", A),)
    snap = run(
        m,
        (g, p, (scrape(A, counters("llama", 1000, 100, created=1.0)),)),
        (g, p, (scrape(A, counters("llama", 1100, 110, created=1.0)),)),
        (g, p, (scrape(A, counters("llama", 1500, 150, created=2.0)),)),  # restarted and overtook
    )
    assert line(snap, "a-0").totals.input_tokens == 100 + 1500
    assert snap.resets["a-0"] == 1


def test_an_implausible_jump_is_held_back_then_taken_as_the_new_baseline() -> None:
    m = Meter("n")
    g, p = gpus(1), (Placement("0", A),)
    snap = run(
        m,
        (g, p, (scrape(A, counters("llama", 100, 10)),)),
        (g, p, (scrape(A, counters("llama", 1e15, 10)),)),
        (g, p, (scrape(A, counters("llama", 1e15 + 50, 10)),)),
    )
    assert snap.rejected[("a-0", "implausible_jump")] == 1
    assert line(snap, "a-0").totals.input_tokens == 50


def test_an_implausible_glitch_that_passes_loses_nothing() -> None:
    m = Meter("n")
    g, p = gpus(1), (Placement("0", A),)
    snap = run(
        m,
        (g, p, (scrape(A, counters("llama", 100, 10)),)),
        (g, p, (scrape(A, counters("llama", 1e15, 10)),)),  # one bogus reading
        (g, p, (scrape(A, counters("llama", 180, 20)),)),  # goes on from before it
    )
    assert snap.rejected[("a-0", "implausible_jump")] == 1
    totals = line(snap, "a-0").totals
    assert (totals.input_tokens, totals.output_tokens, snap.resets.get("a-0", 0)) == (80, 10, 0)


def test_owners_past_the_cap_fold_into_overflow_and_money_is_kept() -> None:
    m = Meter("n", max_owners=3)
    owners = [Owner("ns", f"p{i}", "t", "m") for i in range(10)]
    g = gpus(10)
    p = tuple(Placement(str(i), o) for i, o in enumerate(owners))
    snap = run(m, (g, p, ()))
    assert len([v for v in snap.lines if v.line.owner != OVERFLOW]) == 3
    overflow = [v for v in snap.lines if v.line.owner == OVERFLOW]
    assert len(overflow) == 1 and overflow[0].totals.cost["gpu"] == 7 * 10_000_000
    assert snap.overflowed_owners > 0
    assert snap.bill_nano == 10 * 10_000_000


def test_a_baseline_tick_of_zero_length_charges_nothing() -> None:
    m = Meter("n")
    snap = m.tick(TickInput(T0, T0, "n", gpus(2), (), ()), PRICES, 60)
    assert snap.bill_nano == 0
    snap = m.tick(TickInput(T0, T0 - 1, "n", gpus(2), (), ()), PRICES, 60)
    assert snap.rejected[("clock", "non_positive_tick")] == 1


def test_utilisation_is_busy_over_held() -> None:
    snap = run(Meter("n"), (gpus(2, util=0.25), (Placement("0", A), Placement("1", A)), ()))
    v = line(snap, "a-0")
    assert v.gauges.utilization == pytest.approx(0.25)
    assert v.totals.busy_ns == 5 * S


def test_an_unpriced_gpu_costs_nothing_and_is_counted() -> None:
    g = (GpuSample("0", "MI355X", "spot"),)
    snap = run(Meter("n"), (g, (), ()))
    assert snap.bill_nano == 0
    assert snap.unpriced_gpu_seconds == 10


def test_coverage_is_the_share_of_held_time_whose_tokens_we_read() -> None:
    g, p = gpus(2), (Placement("0", A), Placement("1", B))
    snap = run(Meter("n"), (g, p, (scrape(A, counters("llama", 0, 0)), scrape(B, ok=False))))
    assert snap.coverage == pytest.approx(0.5)


def test_a_model_that_stopped_serving_keeps_its_burn_and_loses_its_cpm() -> None:
    m = Meter("n")
    g, p = gpus(1), (Placement("0", A),)
    snap = run(m, (g, p, (scrape(A, counters("x", 0, 0)),)), (g, p, (scrape(A, counters("x", 100, 100)),)))
    assert line(snap, "a-0", "x").gauges.usd_per_million_total is not None
    t = T0 + 20 * S
    for _ in range(8):  # 80 s of silence > the 60 s window
        snap = m.tick(TickInput(t, t + 10 * S, "n", g, p, (scrape(A, counters("x", 100, 100)),)), PRICES, 60)
        t += 10 * S
    quiet = line(snap, "a-0", "x")
    assert quiet.gauges.usd_per_million_total is None  # no tokens left in the window: no CPM
    # Quiet ticks stay on the last served model (not the declared "llama"): idle burn shows there.
    assert quiet.gauges.burn_usd_per_hour == pytest.approx(3.60)


def test_expired_owners_make_room_under_the_cap() -> None:
    m = Meter("n", max_owners=2, retention_s=30)
    t = T0
    for i in range(6):  # a new pod every tick, each gone after its tick (pod churn)
        owner = Owner("ns", f"p{i}", "t", "m")
        snap = m.tick(TickInput(t, t + 10 * S, "n", gpus(1), (Placement("0", owner),)), PRICES, 10)
        t += 10 * S
    # Without expiry every pod after p1 would fold into __overflow__ forever; with it the
    # newest pod gets its own series again, and no more than the cap is ever admitted.
    assert line(snap, "p5").line.owner.pod == "p5"
    named = {
        v.line.owner.pod for v in snap.lines if v.line.owner not in (OVERFLOW,) and not v.line.owner.is_idle
    }
    assert len(named) <= 2


def test_one_engine_restarting_does_not_recount_the_others() -> None:
    m = Meter("n")
    g, p = gpus(1), (Placement("0", A),)

    def engines(e0: float, c0: float, e1: float, c1: float) -> tuple[TargetScrape, ...]:
        return (
            scrape(
                A,
                ModelCounters("llama", e0, 0, created=c0, instance="0"),
                ModelCounters("llama", e1, 0, created=c1, instance="1"),
            ),
        )

    snap = run(
        m,
        (g, p, engines(1e6, 1.0, 2e6, 1.0)),  # history before the exporter: a baseline
        (g, p, engines(1e6 + 10, 1.0, 2e6 + 20, 1.0)),
        (g, p, engines(1e6 + 15, 1.0, 7, 2.0)),  # engine 1 restarted: 7 new, engine 0: 5 new
    )
    assert line(snap, "a-0").totals.input_tokens == 10 + 20 + 5 + 7
    assert snap.resets["a-0"] == 1


def test_expired_lines_keep_the_bill_whole() -> None:
    m = Meter("n", retention_s=15)
    t = T0
    for i in range(4):  # each tick a new pod; older ones expire
        owner = Owner("ns", f"p{i}", "t", "m")
        snap = m.tick(TickInput(t, t + 10 * S, "n", gpus(1), (Placement("0", owner),)), PRICES, 5)
        t += 10 * S
    assert snap.retired_nano > 0
    assert (
        sum(sum(v.totals.cost.values()) for v in snap.lines) + snap.retired_nano
        == snap.bill_nano
        == 40_000_000
    )


@pytest.mark.parametrize("util", [math.nan, math.inf, -0.1, 1.5])
def test_bad_gpu_readings_are_rejected_and_counted_not_crashed_on(util: float) -> None:
    g = (
        GpuSample("0", "H100", "on_demand", utilization=util),
        GpuSample("1", "H100", "on_demand", power_watts=math.nan),
    )
    snap = run(Meter("n"), (g, (Placement("0", A), Placement("1", A)), ()))
    assert snap.rejected[("gpu", "bad_reading")] == 2
    v = line(snap, "a-0")
    assert v.totals.cost["gpu"] == 20_000_000  # held time is still billed
    assert v.gauges.utilization is None  # busy time unknown, not zero


def test_prefix_cache_hits_do_not_dilute_the_input_price() -> None:
    m = Meter("n")
    g, p = gpus(1), (Placement("0", A),)
    c0 = ModelCounters("llama", 0, 0, cached_input_tokens=0)
    c1 = ModelCounters("llama", 5000, 250, cached_input_tokens=4000)  # 1000 prefilled, 4000 from cache
    snap = run(m, (g, p, (scrape(A, c0),)), (g, p, (scrape(A, c1),)))
    v = line(snap, "a-0")
    # token weight over prefilled tokens: 1000 : 4 x 250 → even; tick 1 (no traffic) also even
    assert (v.totals.cost_input, v.totals.cost_output) == (10_000_000, 10_000_000)
    assert v.gauges.usd_per_million_input == pytest.approx(0.010 / 1000 * 1e6)  # over 1000, not 5000
    assert v.totals.cached_input_tokens == 4000 and v.totals.input_tokens == 5000


def test_disaggregated_prefill_and_decode_pods_pay_one_direction_each() -> None:
    m = Meter("n")
    g, p = gpus(2), (Placement("0", A), Placement("1", B))
    roles = {("search", "a-0"): "prefill", ("chat", "b-0"): "decode"}
    scrapes = (scrape(A, counters("llama", 1000, 1)), scrape(B, counters("qwen", 1000, 500)))
    snap = m.tick(TickInput(T0, T0 + 10 * S, "n", g, p, scrapes, roles=roles), PRICES, 60)
    a, b = line(snap, "a-0"), line(snap, "b-0")
    assert (a.totals.cost_input, a.totals.cost_output, a.split) == (10_000_000, 0, "disaggregated")
    assert (b.totals.cost_input, b.totals.cost_output, b.split) == (0, 10_000_000, "disaggregated")


def test_finished_requests_are_counted_per_reason_with_resets() -> None:
    m = Meter("n")
    g, p = gpus(1), (Placement("0", A),)

    def c(stop: float, abort: float, created: float) -> ModelCounters:
        return ModelCounters("llama", 0, 0, requests=stop + abort, created=created,
                             requests_by_reason=(("abort", abort), ("stop", stop)))  # fmt: skip

    snap = run(m, (g, p, (scrape(A, c(10, 1, 1.0)),)), (g, p, (scrape(A, c(15, 3, 1.0)),)),
               (g, p, (scrape(A, c(4, 0, 2.0)),)))  # fmt: skip
    v = line(snap, "a-0")
    assert v.totals.requests_by_reason == {"stop": 5 + 4, "abort": 2 + 0}
    assert v.totals.requests == 7 + 4


def test_a_model_missing_from_one_payload_loses_nothing_and_one_gone_for_long_is_forgotten() -> None:
    m = Meter("n")
    g, p = gpus(1), (Placement("0", A),)
    both = (counters("llama", 100, 10), counters("lora-a", 50, 5))
    run(m, (g, p, (scrape(A, *both),)))
    t = T0 + 10 * S
    snap = m.tick(TickInput(t, t + 10 * S, "n", g, p, (scrape(A, counters("llama", 200, 20)),)), PRICES, 60)
    t += 10 * S
    back = (counters("llama", 200, 20), counters("lora-a", 90, 9))  # back: its 40 + 4 count
    snap = m.tick(TickInput(t, t + 10 * S, "n", g, p, (scrape(A, *back),)), PRICES, 60)
    assert line(snap, "a-0", "lora-a").totals.input_tokens == 40
    keys = lambda: {k[0] for k in m._tokens._targets["a-0"].series}  # noqa: E731
    assert keys() == {"llama", "lora-a"}
    for _ in range(362):  # an hour of scrapes without the adapter
        t += 10 * S
        m.tick(TickInput(t, t + 10 * S, "n", g, p, (scrape(A, counters("llama", 200, 20)),)), PRICES, 60)
    assert keys() == {"llama"}


def test_cache_hits_above_the_prompt_tokens_are_capped_and_counted() -> None:
    m = Meter("n")
    g, p = gpus(1), (Placement("0", A),)
    first = replace(counters("llama", 100, 10), cached_input_tokens=50.0)
    more_hits_than_prompts = replace(counters("llama", 110, 20), cached_input_tokens=80.0)
    snap = run(m, (g, p, (scrape(A, first),)), (g, p, (scrape(A, more_hits_than_prompts),)))
    totals = line(snap, "a-0").totals
    assert (totals.input_tokens, totals.cached_input_tokens) == (10, 10)
    assert snap.rejected[("a-0", "cached_above_input")] == 1
    assert line(snap, "a-0").gauges.usd_per_million_output is not None


def test_the_phase_time_split_holds_while_no_request_finishes() -> None:
    """vLLM's phase histograms move only when a request finishes: ticks between keep the last
    ratio and the split label, rather than flapping to token_weight (series appearing and going stale)."""
    m = Meter("n")
    g, p = gpus(1), (Placement("0", A),)
    ticks = [
        (100, 10, 1.0, 3.0),
        (200, 50, 2.0, 6.0),  # a request finished: prefill +1 s, decode +3 s → 25 % input
        (300, 90, 2.0, 6.0),  # tokens flow, nothing finished
        (400, 130, 2.0, 6.0),
    ]
    splits, money = [], []
    for i, (tokens_in, tokens_out, prefill, decode) in enumerate(ticks):
        c = counters("llama", tokens_in, tokens_out, prefill_seconds=prefill, decode_seconds=decode)
        snap = m.tick(
            TickInput(T0 + i * 10 * S, T0 + (i + 1) * 10 * S, "n", g, p, (scrape(A, c),)), PRICES, 60
        )
        splits.append(line(snap, "a-0").split)
        money.append((line(snap, "a-0").totals.cost_input, line(snap, "a-0").totals.cost_output))
    assert splits[1:] == ["phase_time"] * 3
    for (in0, out0), (in1, out1) in pairwise(money):
        assert (in1 - in0) * 3 == out1 - out0  # 25 % / 75 % on every tick after the first request


def test_a_window_holds_exactly_its_length() -> None:
    """Ticks of ~1 s do not fit a 30 s window evenly: the oldest straddling tick counts by its part
    inside, so a gauge equals increase-over-30s ÷ 30 s, never a 31-tick figure."""
    from exporter.meter.windows import TickRecord, Window

    w, end, dt = Window(), 0, 1_000_300_000  # 1.0003 s ticks
    for _ in range(100):
        end += dt
        w.add(TickRecord(end, dt, cost=dt, input_tokens=1.0), 30 * S)
        assert w.sums().dt_ns == pytest.approx(min(end, 30 * S))
        assert w.sums().cost == pytest.approx(min(end, 30 * S))  # cost accrues 1 nano-$ per ns


def test_a_catch_up_after_an_outage_is_spread_over_the_ticks_it_accrued_in() -> None:
    """Tokens frozen while a target was down arrive at once; the window's CPM must stay the steady
    one, not fall 5-6x for one window."""
    m = Meter("n")
    g, p = gpus(1), (Placement("0", A),)
    cpm = {}
    for i in range(16):
        down = 8 <= i < 13  # five scrapes fail; the one at 13 catches up 50 s of tokens
        c = counters("llama", 1000 * (i + 1), 500 * (i + 1))
        snap = m.tick(
            TickInput(T0 + i * 10 * S, T0 + (i + 1) * 10 * S, "n", g, p, (scrape(A, c, ok=not down),)),
            PRICES,
            60,
        )
        cpm[i] = line(snap, "a-0").gauges.usd_per_million_total
    for i in (13, 14, 15):  # windows holding the catch-up and part of the outage
        assert cpm[i] == pytest.approx(cpm[7], rel=1e-9), (i, cpm)
    assert line(snap, "a-0").totals.input_tokens == 15_000  # the counters themselves got it all, once


def test_a_created_series_missing_once_is_no_restart() -> None:
    """vLLM's _created is read first, process_start_time_seconds second: a scrape without the
    _created family must not compare one with the other and count a lifetime twice."""
    m = Meter("n")
    g, p = gpus(1), (Placement("0", A),)
    with_created = replace(
        counters("llama", 100, 10), created=1000.0, created_by="vllm:prompt_tokens_created"
    )
    process_only = replace(counters("llama", 150, 15), created=900.0, created_by="process_start_time_seconds")
    back = replace(counters("llama", 200, 20), created=1000.0, created_by="vllm:prompt_tokens_created")
    snap = run(m, *((g, p, (scrape(A, c),)) for c in (with_created, process_only, back)))
    totals = line(snap, "a-0").totals
    assert (totals.input_tokens, totals.output_tokens, snap.resets.get("a-0", 0)) == (100, 10, 0)


def test_llamacpp_input_is_the_increase_of_computed_and_cached_each_frozen_alone() -> None:
    """llama.cpp counts computed prompt tokens apart from cache hits; a cached family missing
    once must freeze the hits, not make input fall (which read as a restart: a lifetime twice)."""
    m = Meter("n")
    g, p = gpus(1), (Placement("0", A),)

    def llamacpp(computed: float, cached: float | None, out: float) -> ModelCounters:
        return ModelCounters("", None, out, computed_input_tokens=computed, cached_input_tokens=cached)

    ticks = [llamacpp(1000, 500, 100), llamacpp(1100, None, 110), llamacpp(1200, 540, 120)]
    snap = run(m, *((g, p, (scrape(A, c),)) for c in ticks))
    totals = line(snap, "a-0").totals
    assert (totals.input_tokens, totals.cached_input_tokens, snap.resets.get("a-0", 0)) == (240, 40, 0)
    assert "input_tokens" in totals.known


def test_a_counter_read_from_another_alternative_once_is_unknown_not_a_restart() -> None:
    """vLLM's cache hits: prompt_tokens_cached_total, else prefix_cache_hits_total. A scrape missing
    the first must not compare the second's value with the first's."""
    m = Meter("n")
    g, p = gpus(1), (Placement("0", A),)
    new, old = "vllm:prompt_tokens_cached_total", "vllm:prefix_cache_hits_total"

    def vllm(i: float, cached: float, source: str) -> ModelCounters:
        return replace(
            counters("llama", i, i / 10),
            cached_input_tokens=cached,
            sources=(("cached_input_tokens", source),),
        )

    ticks = [vllm(1000, 500, new), vllm(1100, 90, old), vllm(1200, 560, new)]
    snap = run(m, *((g, p, (scrape(A, c),)) for c in ticks))
    totals = line(snap, "a-0").totals
    assert (totals.input_tokens, totals.cached_input_tokens, snap.resets.get("a-0", 0)) == (200, 60, 0)


def test_a_container_start_that_the_watch_reports_late_is_not_taken_for_a_new_restart() -> None:
    """Over time: the pod watch can report a container's new startedAt a tick after the restart.
    A start before our last good reading is already in what we read: no second restart, no lifetime
    counted twice. A start after it is a restart: the new life counts whole."""
    m = Meter("n")
    g, p = gpus(1), (Placement("0", A),)

    def at(i: int, value: float, started: float | None) -> TickInput:
        t = T0 + i * 10 * S
        s = replace(scrape(A, counters("llama", value, value / 10)), started_at=started)
        return TickInput(t, t + 10 * S, "n", g, p, (s,))

    m.tick(at(0, 100, None), PRICES, 60)  # baseline
    m.tick(at(1, 150, None), PRICES, 60)  # restarted meanwhile, already past 100: nobody can tell yet
    late = (T0 + 15 * S) / S  # the container started in tick 1, before its reading at T0 + 20 s
    snap = m.tick(at(2, 160, late), PRICES, 60)
    assert line(snap, "a-0").totals.input_tokens == 50 + 10 and snap.resets.get("a-0", 0) == 0
    after = (T0 + 35 * S) / S  # a real restart after the reading at T0 + 30 s, its new life already past 160
    snap = m.tick(at(3, 200, after), PRICES, 60)
    assert line(snap, "a-0").totals.input_tokens == 60 + 200 and snap.resets["a-0"] == 1


def test_concurrency_is_the_mean_batch_and_queue_over_the_time_their_gauges_were_read() -> None:
    """Issue 20: cpm_running_requests / cpm_waiting_requests beside the interactivity: the window's
    mean of the servers' gauges, over the ticks they were read (a lost scrape does not dilute it);
    never read, no value."""
    m = Meter("n")
    g, p = gpus(1), (Placement("0", A),)
    snap = run(
        m,
        (g, p, (scrape(A, counters("llama", 0, 0, running=2, waiting=6)),)),
        (g, p, (scrape(A, counters("llama", 100, 800, running=6, waiting=2)),)),
        (g, p, ()),
    )  # fmt: skip  (the last scrape is lost)
    gauges = line(snap, "a-0").gauges
    assert (gauges.running_requests, gauges.waiting_requests) == (pytest.approx(4.0), pytest.approx(4.0))
    quiet = run(
        Meter("n"),
        (g, p, (scrape(A, counters("llama", 0, 0)),)),
        (g, p, (scrape(A, counters("llama", 9, 9)),)),
    )
    assert (
        line(quiet, "a-0").gauges.running_requests is None
        and line(quiet, "a-0").gauges.waiting_requests is None
    )
