"""Every worked example in the README's formula table, recomputed through the real code."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from exporter.meter.attribution import GpuAttributor
from exporter.meter.ledger import Meter
from exporter.meter.money import allocate, to_usd
from exporter.pricing.prices import Energy, GpuPrice, Overhead, OwnedHardware, PricingConfig
from exporter.records import GpuSample, ModelCounters, Owner, Placement, PodUsage, TargetScrape, TickInput

APRIL = 1_775_001_600 * 10**9  # 2026-04-01T00:00:00Z: a 30-day month
S = 10**9
POD = Owner("search", "llama-70b-0", "search", "llama")


def h100(price: str = "4.50", **kw: object) -> PricingConfig:
    row = GpuPrice("H100", "on_demand", Decimal(price), "config", "readme")
    return PricingConfig(gpu_prices={("H100", "on_demand"): row}, **kw)  # type: ignore[arg-type]


def one_tick(
    prices: PricingConfig, n_gpus: int = 8, held: int = 4, pods: tuple[PodUsage, ...] = ()
) -> dict[str, int]:
    gpus = tuple(GpuSample(str(i), "H100", "on_demand") for i in range(n_gpus))
    placements = tuple(Placement(str(i), POD) for i in range(held))
    att = GpuAttributor().attribute(TickInput(APRIL, APRIL + 5 * S, "n", gpus, placements, (), pods), prices)
    out: dict[str, int] = {}
    for c in att.charges:
        if c.line.owner == POD:
            out[c.component] = out.get(c.component, 0) + c.nano
    return out


def test_1_gpu_cost() -> None:
    assert to_usd(one_tick(h100())["gpu"]) == 0.025


def test_2_overhead() -> None:
    percent = one_tick(h100(overhead=Overhead(percent=Decimal(5))))["overhead"]
    assert to_usd(percent) == 0.00125
    node = one_tick(h100(overhead=Overhead(usd_per_node_hour=Decimal("0.40"))), held=1)["overhead"]
    assert to_usd(node) == pytest.approx(0.0000694, abs=5e-8)


def test_3_storage_in_a_30_day_month() -> None:
    pod = PodUsage(POD, storage_bytes=400 * 2**30)
    nano = one_tick(h100(storage_usd_per_gb_month=Decimal("0.08")), pods=(pod,))["storage"]
    assert to_usd(nano) == pytest.approx(0.0000617, abs=1e-7)


def test_4_support() -> None:
    assert to_usd(one_tick(h100(support_uplift_percent=Decimal(10)))["support"]) == 0.0025


def test_5_energy_of_an_owned_gpu() -> None:
    row = GpuPrice("H100", "owned", Decimal(1), "config", "readme")
    prices = PricingConfig(
        gpu_prices={("H100", "owned"): row}, energy=Energy(Decimal("0.12"), Decimal("1.3"))
    )
    gpu = GpuSample("0", "H100", "owned", power_watts=700)
    att = GpuAttributor().attribute(TickInput(APRIL, APRIL + 5 * S, "n", (gpu,), ()), prices)
    energy = sum(c.nano for c in att.charges if c.component == "energy")
    assert to_usd(energy) == pytest.approx(0.000152, abs=1e-6)


def test_6_owned_gpu_hour() -> None:
    owned = OwnedHardware(capex_usd=Decimal(30000), amortisation_years=Decimal(4))
    assert float(owned.usd_per_hour) == pytest.approx(0.8556, abs=1e-4)


def test_7_exact_split() -> None:
    assert allocate(10_000_000, [1, 2]) == [3_333_333, 6_666_667]


def _served(meter: Meter, prices: PricingConfig, c0: ModelCounters, c1: ModelCounters):  # type: ignore[no-untyped-def]
    gpu, place = (GpuSample("0", "H100", "on_demand"),), (Placement("0", POD),)
    # A zero-length baseline tick (as at start-up), then one 10 s tick that served c1 - c0.
    for start, c in ((APRIL + 10 * S, c0), (APRIL, c1)):
        scrape = TargetScrape("t", POD, "vllm", True, (c,))
        snap = meter.tick(TickInput(start, APRIL + 10 * S, "n", gpu, place, (scrape,)), prices, 10)
    return snap.lines[0]


def test_8_input_output_split() -> None:
    c0 = ModelCounters("llama", 0, 0, prefill_seconds=0, decode_seconds=0)
    v = _served(
        Meter("n"), h100("3.60"), c0, ModelCounters("llama", 100, 100, prefill_seconds=1, decode_seconds=3)
    )
    assert Fraction(v.totals.cost_input, v.totals.cost_input + v.totals.cost_output) == Fraction(1, 4)
    v = _served(Meter("n"), h100("3.60"), ModelCounters("llama", 0, 0), ModelCounters("llama", 400, 100))
    assert v.totals.cost_input == v.totals.cost_output


def test_9_10_11_cpm_per_request_and_interactivity() -> None:
    c0 = ModelCounters(
        "llama", 0, 0, requests=0, itl_seconds=0, itl_count=0, prefill_seconds=0, decode_seconds=0
    )
    c1 = ModelCounters(
        "llama", 6000, 4000, requests=10, itl_seconds=80, itl_count=4000, prefill_seconds=1, decode_seconds=3
    )
    # $7.20/h for 10 s = $0.02 in the (10 s) window
    v = _served(Meter("n"), h100("7.20"), c0, c1)
    assert v.gauges.usd_per_million_total == pytest.approx(2.00)
    assert (v.totals.cost_input, v.totals.cost_output) == (5_000_000, 15_000_000)  # $0.005 / $0.015
    assert round(v.gauges.usd_per_million_input or 0, 2) == 0.83
    assert v.gauges.usd_per_million_output == pytest.approx(3.75)
    assert v.gauges.usd_per_request == pytest.approx(0.002)
    assert v.gauges.tokens_per_second_per_user == pytest.approx(50)


def test_12_utilisation_and_its_cost_multiplier() -> None:
    gpu = (GpuSample("0", "H100", "on_demand", utilization=0.30),)
    snap = Meter("n").tick(
        TickInput(APRIL, APRIL + 10 * S, "n", gpu, (Placement("0", POD),)), h100("3.60"), 10
    )
    v = snap.lines[0]
    assert v.gauges.utilization == pytest.approx(0.30)
    cost_per_busy_second = sum(v.totals.cost.values()) / (v.totals.busy_ns / S)
    list_price_per_second = 1_000_000  # $3.60/h in nano-dollars per second
    assert round(cost_per_busy_second / list_price_per_second, 2) == 3.33


def test_13_offline_cpm_from_the_design_example() -> None:
    """8 GPUs at $4.50/h for an hour serving 3,000 tok/s/GPU at 70 % → $0.595/M, metered."""
    tokens = 3000 * 8 * 3600 * 7 // 10
    assert tokens == 60_480_000
    gpus = tuple(GpuSample(str(i), "H100", "on_demand") for i in range(8))
    place = tuple(Placement(str(i), POD) for i in range(8))
    meter = Meter("n")
    for i, out in enumerate((0, tokens)):
        scrape = TargetScrape("t", POD, "vllm", True, (ModelCounters("llama", 0, float(out)),))
        snap = meter.tick(
            TickInput(APRIL + i * 3600 * S, APRIL + (i + 1) * 3600 * S, "n", gpus, place, (scrape,)),
            h100(),
            3600,
        )
    assert round(snap.lines[0].gauges.usd_per_million_total, 3) == 0.595


def test_11_interactivity_fallback() -> None:
    c0 = ModelCounters("llama", 0, 0, running=4)
    c1 = ModelCounters("llama", 0, 800, running=4)
    meter = Meter("n")
    gpu, place = (GpuSample("0", "H100", "on_demand"),), (Placement("0", POD),)
    for start, c in ((APRIL, c0), (APRIL, c1)):  # 0 s baseline, then 20 s
        end = start if c is c0 else APRIL + 20 * S
        snap = meter.tick(
            TickInput(start, end, "n", gpu, place, (TargetScrape("t", POD, "vllm", True, (c,)),)), h100(), 20
        )
    g = snap.lines[0].gauges
    assert (g.tokens_per_second_per_user, g.interactivity_method) == (10, "output_rate_per_running_request")


def test_14_coverage() -> None:
    other = Owner("chat", "qwen-0", "chat", "qwen")
    gpus = (GpuSample("0", "H100", "on_demand"), GpuSample("1", "H100", "on_demand"))
    place = (Placement("0", POD), Placement("1", other))
    scrapes = (
        TargetScrape("a", POD, "vllm", True, (ModelCounters("llama", 0, 0),)),
        TargetScrape("b", other, "vllm", False),
    )
    snap = Meter("n").tick(TickInput(APRIL, APRIL + 10 * S, "n", gpus, place, scrapes), h100(), 10)
    assert snap.coverage == 0.5


def test_15_mig_instances_pay_their_slices() -> None:
    units = tuple(
        GpuSample(f"MIG-{k}", "H100", "on_demand", price_share=Fraction(n, 7), profile=f"{n}g")
        for k, n in enumerate((3, 3, 1))
    )
    hour = 3600 * S
    att = GpuAttributor().attribute(TickInput(APRIL, APRIL + hour, "n", units, ()), h100())
    by_unit = {}
    for u in units:  # one unit at a time: what each instance alone pays per hour
        one = GpuAttributor().attribute(TickInput(APRIL, APRIL + hour, "n", (u,), ()), h100())
        by_unit[u.profile] = to_usd(sum(c.nano for c in one.charges if c.component == "gpu"))
    assert by_unit["3g"] == pytest.approx(1.929, abs=5e-4) and by_unit["1g"] == pytest.approx(0.643, abs=5e-4)
    # Together: the whole GPU-hour, short at most one carried nano-dollar per instance.
    assert 0 <= 4_500_000_000 - sum(c.nano for c in att.charges if c.component == "gpu") < 3


def test_16_starved_idle_money() -> None:
    meter = Meter("n")
    prices = h100("3.60")
    place = (Placement("0", POD),)
    for i, (tokens, busy) in enumerate(((0.0, 0.5), (100.0, 0.05))):  # a busy baseline tick, then 5 %
        gpu = (GpuSample("0", "H100", "on_demand", utilization=busy),)
        scrape = TargetScrape("t", POD, "vllm", True, (ModelCounters("llama", tokens, tokens),))
        t = APRIL + i * 10 * S
        snap = meter.tick(TickInput(t, t + 10 * S, "n", gpu, place, (scrape,)), prices, 60)
    (line,) = [v for v in snap.lines if v.line.owner == POD]
    assert to_usd(line.totals.idle_cost["starved"]) == 0.0095


def test_17_egress_and_cross_zone_from_bytes_sent() -> None:
    prices = h100(egress_usd_per_gb=Decimal("0.10"), cross_zone_usd_per_gb=Decimal("0.01"))
    att, charged = GpuAttributor(), {}
    for sent in (10**9, 10**9 + 4 * 2**30):
        pod = PodUsage(POD, transmit_bytes_total=float(sent))
        inp = TickInput(APRIL, APRIL + 5 * S, "n", (), (), (), (pod,),
                        egress_share=Fraction(1, 4), cross_zone_share=Fraction(1, 2))  # fmt: skip
        for c in att.attribute(inp, prices).charges:
            charged[c.component] = charged.get(c.component, 0) + c.nano
    assert (to_usd(charged["egress"]), to_usd(charged["cross_zone"])) == (0.10, 0.02)


def test_18_request_cost_quantiles() -> None:
    def lengths(prompt: tuple[float, float, float], output: tuple[float, float, float]) -> dict[str, object]:
        return {
            "prompt_lengths": ((500.0, prompt[0]), (1000.0, prompt[1]), (float("inf"), prompt[2])),
            "generation_lengths": ((200.0, output[0]), (500.0, output[1]), (float("inf"), output[2])),
        }

    c0 = ModelCounters(
        "llama", 0, 0, requests=0, prefill_seconds=0, decode_seconds=0, **lengths((0, 0, 0), (0, 0, 0))
    )  # type: ignore[arg-type]
    c1 = ModelCounters("llama", 6000, 4000, requests=10, prefill_seconds=1, decode_seconds=3,
                       **lengths((5, 10, 10), (2, 10, 10)))  # type: ignore[arg-type]  # fmt: skip
    v = _served(Meter("n"), h100("7.20"), c0, c1)  # $0.005 on input, $0.015 on output, as in row 9
    quantiles = dict(v.gauges.usd_per_request_quantiles)
    assert quantiles[0.5] == pytest.approx(500 * 0.005 / 6000 + 312.5 * 0.015 / 4000)
    assert round(quantiles[0.5], 5) == 0.00159
    assert quantiles[0.9] == pytest.approx(900 * 0.005 / 6000 + 462.5 * 0.015 / 4000)
    assert round(quantiles[0.9], 5) == 0.00248


def test_19_tenant_split() -> None:
    from exporter.meter.attribution import Line
    from exporter.meter.settlement import DIRECT
    from exporter.meter.tenants import TenantBook
    from exporter.meter.tokens import ModelDelta

    line = Line(Owner("serve", "llama-0", "platform", "llama"), "H100", "on_demand")
    book, served = TenantBook(horizon_s=300), frozenset({"llama"})
    books = {line: (14_000_000, 500.0, 40.0)}
    # The servers' tick: 500 input tokens with $0.010, 40 output with $0.004; no answer has ended yet.
    book.tick(
        APRIL, 60 * S, [], served, [(line, (10_000_000, 4_000_000, 0), (500.0, 40.0))], books.__getitem__
    )
    assert book.settlement.pending() == {line: (14_000_000, 500.0, 40.0)}  # waiting: $0.014
    # Five seconds later the answers end and the gateway counts them.
    gateway = [ModelDelta(Owner("", "", "", "llama"), input_tokens=300, output_tokens=30, instance="search"),
               ModelDelta(Owner("", "", "", "llama"), input_tokens=100, output_tokens=10, instance="chat")]  # fmt: skip
    book.tick(APRIL + 5 * S, 60 * S, gateway, served, [], books.__getitem__)
    book.tick(APRIL + 300 * S, 60 * S, [], served, [], books.__getitem__)  # the horizon: the rest was direct
    split = book.tenants[line]
    assert {t: to_usd(x.cost) for t, x in split.items()} == {"search": 0.009, "chat": 0.003, DIRECT: 0.002}
    assert book.settlement.pending() == {}


def test_20_report_period_increase() -> None:
    from decimal import Decimal

    from exporter.report.increase import Increases

    inc = Increases([0.0, 10.0, 20.0])
    key = (("__name__", "cpm_cost_usd_total"),)
    inc.start(key, 0.0, Decimal(5))
    inc.add(key, [(5.0, Decimal(7)), (10.0, Decimal(9)), (15.0, Decimal(2)), (20.0, Decimal(4))])
    assert inc.series[key].per_period == [Decimal(4), Decimal(4)]
