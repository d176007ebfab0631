"""The meter with what a real node adds: MIG price shares, energy counters, idle by reason."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from exporter.meter.ledger import Meter
from exporter.meter.snapshot import MeterSnapshot
from exporter.pricing.prices import Energy, GpuPrice, Overhead, PricingConfig
from exporter.records import GpuSample, ModelCounters, Owner, Placement, TargetScrape, TickInput

T0 = 1_767_225_600 * 10**9
S = 10**9
H100 = GpuPrice("H100", "on_demand", Decimal("3.60"), "config", "test")  # $0.001 per GPU-second
PRICES = PricingConfig(gpu_prices={("H100", "on_demand"): H100})
A = Owner("search", "a-0", "search", "llama")
B = Owner("chat", "b-0", "chat", "qwen")


def tick(meter: Meter, i: int, gpus, placements, scrapes=(), pricing=PRICES, **kw) -> MeterSnapshot:  # type: ignore[no-untyped-def]
    t = T0 + i * 10 * S
    return meter.tick(
        TickInput(t, t + 10 * S, "n", tuple(gpus), tuple(placements), tuple(scrapes), **kw), pricing, 60
    )


def cost(snap: MeterSnapshot, pod: str, component: str = "gpu") -> int:
    return sum(v.totals.cost.get(component, 0) for v in snap.lines if v.line.owner.pod == pod)


def idle_cost(snap: MeterSnapshot, pod: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in snap.lines:
        if v.line.owner.pod == pod:
            for reason, n in v.totals.idle_cost.items():
                out[reason] = out.get(reason, 0) + n
    return out


def mig(unit: str, slices: int) -> GpuSample:
    return GpuSample(unit, "H100", "on_demand", price_share=Fraction(slices, 7), profile=f"{slices}g.40gb")


def test_mig_instances_pay_their_slices_and_together_exactly_the_gpu() -> None:
    meter = Meter("n")
    units = [mig("MIG-a", 3), mig("MIG-b", 3), mig("MIG-c", 1)]
    for i in range(7):  # each unit carries its sub-nano remainder: 7 ticks make every share whole
        snap = tick(meter, i, units, [Placement("MIG-a", A), Placement("MIG-b", B)])
        a, b, idle = cost(snap, "a-0"), cost(snap, "b-0"), cost(snap, "")
        exact = Fraction(10_000_000 * (i + 1), 7)
        assert 0 <= 3 * exact - a < 1 and 0 <= exact - idle < 1 and a == b  # never over, < 1 nano under
        assert snap.bill_nano == a + b + idle
    assert (a, b, idle) == (30_000_000, 30_000_000, 10_000_000)  # 7 GPU-ticks of one whole GPU


def test_owned_energy_comes_from_the_counter_difference_and_survives_a_reset() -> None:
    owned = GpuPrice("H100", "owned", Decimal("1.80"), "config", "test")
    pricing = PricingConfig(
        gpu_prices={("H100", "owned"): owned}, energy=Energy(usd_per_kwh=Decimal("0.36"), pue=Decimal("1.5"))
    )

    def gpu(joules: float, watts: float = 9999.0) -> GpuSample:  # power is ignored when energy is counted
        return GpuSample("0", "H100", "owned", power_watts=watts, energy_joules_total=joules)

    meter = Meter("n")
    # First reading: no difference yet, so this tick's energy is power × time (1 kW × 10 s).
    snap = tick(meter, 0, [gpu(1_000_000, watts=1000)], [Placement("0", A)], pricing=pricing)
    first = cost(snap, "a-0", "energy")
    assert first == 1_500_000  # 10 kJ = 1/360 kWh; × 1.5 PUE × $0.36 = $0.0015
    snap = tick(meter, 1, [gpu(1_000_000 + 3_600_000)], [Placement("0", A)], pricing=pricing)  # +1 kWh
    assert cost(snap, "a-0", "energy") == first + 540_000_000  # 1 kWh × PUE 1.5 × $0.36 = $0.54
    # The driver reloaded: the counter restarted from 0 and now shows 1 kWh, all of it new.
    snap = tick(meter, 2, [gpu(3_600_000)], [Placement("0", A)], pricing=pricing)
    assert cost(snap, "a-0", "energy") == first + 2 * 540_000_000
    assert snap.bill_nano == sum(sum(v.totals.cost.values()) for v in snap.lines) + snap.retired_nano


def test_mig_and_node_overhead_are_shared_by_price_share() -> None:
    pricing = PricingConfig(
        gpu_prices=PRICES.gpu_prices, overhead=Overhead(usd_per_node_hour=Decimal("0.72"))
    )
    snap = tick(Meter("n"), 0, [mig("MIG-a", 6), mig("MIG-b", 1)], [Placement("MIG-a", A)], pricing=pricing)
    # $0.72/h × 10 s = $0.002 of node overhead, 6:1
    assert cost(snap, "a-0", "overhead") + cost(snap, "", "overhead") == 2_000_000
    assert abs(cost(snap, "a-0", "overhead") - 2_000_000 * 6 / 7) <= 1


def scrape(owner: Owner, i: float, o: float) -> TargetScrape:
    return TargetScrape(owner.pod, owner, "vllm", True, (ModelCounters(owner.model, i, o),))


def test_idle_money_is_labelled_by_reason_and_never_added_to_the_bill() -> None:
    meter = Meter("n")

    def gpus(util_a: float, util_b: float) -> list[GpuSample]:
        return [
            GpuSample("0", "H100", "on_demand", utilization=util_a),
            GpuSample("1", "H100", "on_demand", utilization=util_b),
            GpuSample("2", "H100", "on_demand", utilization=0.0),
        ]

    held = [Placement("0", A), Placement("1", B)]
    tick(meter, 0, gpus(0.9, 0.05), held, [scrape(A, 0, 0), scrape(B, 0, 0)])  # the tokens' baseline
    snap = tick(meter, 1, gpus(0.9, 0.05), held, [scrape(A, 100, 50), scrape(B, 0, 0)])
    # GPU 2: nobody holds it → all of it unallocated (both ticks).
    assert idle_cost(snap, "") == {"unallocated": 20_000_000}
    # B: tick 0 was its counters' first reading (no claim about traffic), but 5 % busy is starved;
    # in tick 1 it was read and served nothing.
    assert idle_cost(snap, "b-0") == {"starved": 9_500_000, "no_traffic": 10_000_000}
    assert idle_cost(snap, "a-0") == {}  # served, 90 % busy
    snap = tick(meter, 2, gpus(0.05, 0.05), held, [scrape(A, 200, 100), scrape(B, 10, 1)])
    # Both served but were 5 % busy (< 20 %): 95 % of each tick's GPU money was starved.
    assert idle_cost(snap, "a-0") == {"starved": 9_500_000}
    assert idle_cost(snap, "b-0") == {"starved": 19_000_000, "no_traffic": 10_000_000}
    assert snap.bill_nano == 3 * 30_000_000  # idle labels are a subset: the bill is unchanged
    snap = tick(meter, 3, gpus(0.05, 0.05), held, [scrape(A, 300, 100), scrape(B, 20, 1)], starved_below=0.01)
    assert idle_cost(snap, "a-0")["starved"] == 9_500_000  # 5 % busy is not starved under a 1 % bar


def test_no_traffic_is_not_claimed_when_the_tokens_could_not_be_read() -> None:
    meter = Meter("n")
    down = TargetScrape("a-0", A, "vllm", False, ())
    snap = tick(meter, 0, [GpuSample("0", "H100", "on_demand", utilization=0.5)], [Placement("0", A)], [down])
    assert idle_cost(snap, "a-0") == {}


def test_a_pod_deleted_mid_tick_pays_up_to_its_deletion_and_its_successor_from_its_start() -> None:
    t0 = T0  # tick 0 spans [t0, t0 + 10 s]
    gone_at, started_at = t0 + 4 * S, t0 + 7 * S
    held = [Placement("0", A, until_ns=gone_at), Placement("0", B, since_ns=started_at)]
    snap = tick(Meter("n"), 0, [GpuSample("0", "H100", "on_demand", utilization=0.5)], held)
    assert cost(snap, "a-0") == 4_000_000  # 4 s at $0.001/s
    assert cost(snap, "") == 3_000_000  # nobody held it from 4 s to 7 s
    assert cost(snap, "b-0") == 3_000_000
    seconds = {v.line.owner.pod: v.totals.held_ns / S for v in snap.lines}
    assert seconds == {"a-0": 4, "": 3, "b-0": 3}
    assert snap.bill_nano == 10_000_000


def test_holders_that_overlap_mid_tick_share_only_the_overlap() -> None:
    held = [Placement("0", A), Placement("0", B, since_ns=T0 + 5 * S)]  # B joins half-way
    snap = tick(Meter("n"), 0, [GpuSample("0", "H100", "on_demand")], held)
    assert (cost(snap, "a-0"), cost(snap, "b-0")) == (7_500_000, 2_500_000)


def test_a_bad_utilisation_does_not_cost_a_good_energy_counter_its_baseline() -> None:
    owned = GpuPrice("H100", "owned", Decimal("1.80"), "config", "test")
    pricing = PricingConfig(gpu_prices={("H100", "owned"): owned}, energy=Energy(usd_per_kwh=Decimal("0.36")))
    meter = Meter("n")
    tick(
        meter,
        0,
        [GpuSample("0", "H100", "owned", energy_joules_total=0.0)],
        [Placement("0", A)],
        pricing=pricing,
    )
    bad = GpuSample("0", "H100", "owned", utilization=float("nan"), energy_joules_total=3_600_000.0)
    snap = tick(meter, 1, [bad], [Placement("0", A)], pricing=pricing)
    assert cost(snap, "a-0", "energy") == 360_000_000  # the 1 kWh counted, at $0.36
    assert snap.rejected[("gpu", "bad_reading")] == 1
    (line,) = [v for v in snap.lines if v.line.owner.pod == "a-0"]
    assert line.totals.measured_ns == 0  # the NaN tick's busy time is unknown, not zero


def test_a_mig_instance_without_an_energy_counter_pays_its_share_of_the_gpus_power_once() -> None:
    """Readers pass the GPU's power whole; the meter applies the 3/7 share, once (not share²)."""
    owned = GpuPrice("H100", "owned", Decimal("1.80"), "config", "test")
    pricing = PricingConfig(
        gpu_prices={("H100", "owned"): owned}, energy=Energy(usd_per_kwh=Decimal("0.36"), pue=Decimal("1.5"))
    )
    unit = GpuSample("MIG-a", "H100", "owned", power_watts=700.0, price_share=Fraction(3, 7), device="GPU-a")
    snap = tick(Meter("n"), 0, [unit], [Placement("MIG-a", A)], pricing=pricing)
    # 300 W × 10 s = 3 kJ = 1/1200 kWh; × PUE 1.5 × $0.36 = $0.00045
    assert cost(snap, "a-0", "energy") == 450_000


def test_a_busy_training_job_between_steps_is_not_idle_and_traffic_is_judged_over_the_window() -> None:
    """Issue 13.7: a 100 %-busy job adding its tokens once per 30-s step was booked 82 % no_traffic."""
    meter = Meter("n")
    job = Owner("research", "train-0", "research", "ft", "training")
    step = 0
    for i in range(24):  # 10-s ticks, window 60 s; one step's tokens every 3 ticks
        step += 1_000_000 if i % 3 == 0 else 0
        busy = GpuSample("0", "H100", "on_demand", utilization=1.0)
        snap = tick(
            meter,
            i,
            [busy],
            [Placement("0", job)],
            [TargetScrape("t", job, "training", True, (ModelCounters("ft", step, None),))],
        )
    assert idle_cost(snap, "train-0") == {}
    # The same job's counters, utilisation unknown: tokens inside the window say it works; only the
    # two ticks before its first counted step (tick 0 is the counters' baseline) had nothing to say so.
    meter = Meter("n")
    step = 0
    for i in range(24):
        step += 1_000_000 if i % 3 == 0 else 0
        unknown = GpuSample("0", "H100", "on_demand")
        snap = tick(
            meter,
            i,
            [unknown],
            [Placement("0", job)],
            [TargetScrape("t", job, "training", True, (ModelCounters("ft", step, None),))],
        )
    assert idle_cost(snap, "train-0") == {"no_traffic": 2 * 10_000_000}


def test_a_gpu_busy_by_its_own_measurement_is_never_no_traffic() -> None:
    meter = Meter("n")
    held = [Placement("0", A)]
    for i in range(3):  # counters read and flat, but the GPU is 90 % busy (a warm-up, a batch job)
        snap = tick(
            meter, i, [GpuSample("0", "H100", "on_demand", utilization=0.9)], held, [scrape(A, 100, 10)]
        )
    assert idle_cost(snap, "a-0") == {}
    for i in range(3, 10):  # and idle once it is not
        snap = tick(
            meter, i, [GpuSample("0", "H100", "on_demand", utilization=0.0)], held, [scrape(A, 100, 10)]
        )
    assert idle_cost(snap, "a-0") == {"no_traffic": 7 * 10_000_000}


def test_two_incarnations_of_one_pod_in_a_tick_pay_their_own_spans_on_one_line() -> None:
    held = [Placement("0", A, until_ns=T0 + 4 * S), Placement("0", A, since_ns=T0 + 6 * S)]
    snap = tick(Meter("n"), 0, [GpuSample("0", "H100", "on_demand")], held)
    assert (cost(snap, "a-0"), cost(snap, "")) == (8_000_000, 2_000_000)  # 4 s + 4 s held, 2 s between


def test_a_pod_on_two_kinds_of_gpu_serves_its_tokens_on_both_lines() -> None:
    """Issue 13.6: a pod on an on-demand and a spot H100 filed all its tokens under one line; the
    other line's CPM was missing and its money was called no_traffic idle."""
    spot = GpuPrice("H100", "spot", Decimal("1.80"), "config", "test")
    pricing = PricingConfig(gpu_prices={**PRICES.gpu_prices, ("H100", "spot"): spot})
    gpus = [GpuSample("0", "H100", "on_demand"), GpuSample("1", "H100", "spot")]
    held = [Placement("0", A), Placement("1", A)]
    meter = Meter("n")
    tick(meter, 0, gpus, held, [scrape(A, 1000, 100)], pricing=pricing)
    snap = tick(meter, 1, gpus, held, [scrape(A, 2001, 301)], pricing=pricing)
    lines = {v.line.capacity: v for v in snap.lines if v.line.owner.pod == "a-0"}
    tokens = {c: (v.totals.input_tokens, v.totals.output_tokens) for c, v in lines.items()}
    assert tokens == {"on_demand": (501, 101), "spot": (500, 100)}  # whole tokens, adding up exactly
    assert idle_cost(snap, "a-0") == {}
    assert all(v.gauges.usd_per_million_total is not None for v in lines.values())


def test_the_page_idle_burn_is_the_idle_counters_rate_over_the_window() -> None:
    """Issue 15.3: the page said $28.03/h where the rules said $13.3/h. One definition: the idle money
    cpm_idle_cost_usd_total counts, over the window."""
    meter = Meter("n")
    held = [Placement("0", A)]
    totals = []
    for i in range(12):  # 10-s ticks, 60-s window: a starved pod, then an unallocated GPU too
        gpus = [GpuSample("0", "H100", "on_demand", utilization=0.05), GpuSample("1", "H100", "on_demand")]
        snap = tick(meter, i, gpus, held, [scrape(A, 100 * i, 10 * i)])
        totals.append(sum(sum(v.totals.idle_cost.values()) for v in snap.lines))
    window_idle_usd = (totals[-1] - totals[-7]) / 1e9  # the last 6 ticks = the 60-s window
    page = sum(v.gauges.idle_burn_usd_per_hour or 0.0 for v in snap.lines)  # what the page sums
    assert page == pytest.approx(window_idle_usd / 60 * 3600)
    assert page == pytest.approx(3.60 + 3.60 * 0.95)  # the free GPU whole, 95 % of the starved one
