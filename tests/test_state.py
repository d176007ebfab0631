"""The meter's saved state: a meter restored from it goes on exactly as one never stopped.

Issue 14: every exported counter continues (Prometheus sees no reset), every carry and every
baseline too, so the money and tokens after a restart equal those of an uninterrupted run.
"""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction

from exporter.meter.ledger import Meter, MeterSnapshot
from exporter.model import GpuSample, ModelCounters, Owner, Placement, PodUsage, TargetScrape, TickInput
from exporter.pricing import Energy, GpuPrice, Overhead, PricingConfig

S = 10**9
T0 = 1_767_225_600 * S
PRICES = PricingConfig(
    gpu_prices={
        ("H100", "on_demand"): GpuPrice("H100", "on_demand", Decimal("4.50"), "config", "t"),
        ("H100", "owned"): GpuPrice("H100", "owned", Decimal("1.30"), "config", "t"),
    },
    overhead=Overhead(percent=Decimal("5"), usd_per_node_hour=Decimal("0.40")),
    support_uplift_percent=Decimal("10"),
    storage_usd_per_gb_month=Decimal("0.08"),
    egress_usd_per_gb=Decimal("0.09"),
    energy=Energy(usd_per_kwh=Decimal("0.12"), pue=Decimal("1.3")),
)
A = Owner("search", "llama-0", "search", "llama")
B = Owner("chat", "qwen-0", "chat", "qwen")


def tick_input(i: int) -> TickInput:
    gpus = (
        GpuSample("0", "H100", "on_demand", utilization=0.3 + 0.01 * (i % 7)),
        GpuSample(
            "MIG-a",
            "H100",
            "owned",
            price_share=Fraction(3, 7),
            energy_joules_total=1e6 + 7e3 * i,
            power_watts=700.0,
            device="GPU-1",
        ),
        GpuSample(
            "GPU-1/unused",
            "H100",
            "owned",
            price_share=Fraction(4, 7),
            energy_joules_total=1e6 + 7e3 * i,
            power_watts=700.0,
            device="GPU-1",
        ),
    )
    models = (
        ModelCounters("llama", 1000.0 * i, 300.0 * i, requests=3.0 * i, created=1.0, cached_input_tokens=100.0 * i,
                      prefill_seconds=0.5 * i, decode_seconds=2.0 * i, requests_by_reason=(("stop", 3.0 * i),)),
        ModelCounters("lora-x", 50.0 * (i // 3), 10.0 * (i // 3)),
    )  # fmt: skip
    scrapes = (
        TargetScrape("search/llama-0", A, "vllm", True, models),
        TargetScrape("chat/qwen-0", B, "tgi", i % 5 != 2, (ModelCounters("qwen", 77.0 * i, 7.0 * i),)),
    )
    pods = (
        PodUsage(A, storage_bytes=400 * 2**30, transmit_bytes_total=1e6 * i),
        PodUsage(B, storage_bytes=3.0),
    )
    placements = (Placement("0", A), Placement("MIG-a", B))
    return TickInput(T0 + i * 5 * S, T0 + (i + 1) * 5 * S, "n", gpus, placements, scrapes, pods)


def counters(snap: MeterSnapshot) -> dict[object, object]:
    lines = {v.line: (v.totals.cost, v.totals.input_tokens, v.totals.output_tokens, v.totals.requests,
                      v.totals.cached_input_tokens, v.totals.requests_by_reason, v.totals.held_ns,
                      v.totals.busy_ns, v.totals.idle_cost, v.totals.cost_input, v.totals.cost_output,
                      v.totals.known) for v in snap.lines}  # fmt: skip
    return {"lines": lines, "bill": snap.bill_nano, "retired": snap.retired_nano, "resets": snap.resets,
            "rejected": snap.rejected, "unpriced": snap.unpriced_gpu_seconds}  # fmt: skip


def test_a_restored_meter_goes_on_exactly_as_one_never_stopped() -> None:
    straight, first = Meter("n"), Meter("n")
    for i in range(40):
        expected = straight.tick(tick_input(i), PRICES, 60)
        if i < 17:
            first.tick(tick_input(i), PRICES, 60)
    saved = json.loads(json.dumps(first.to_state()))  # through JSON, as the file does
    second = Meter("n")
    second.restore(saved)
    for i in range(17, 40):
        got = second.tick(tick_input(i), PRICES, 60)
    assert counters(got) == counters(expected)
    assert got.bill_nano == sum(sum(v.totals.cost.values()) for v in got.lines) + got.retired_nano


def test_the_state_is_plain_json_and_says_nothing_twice() -> None:
    m = Meter("n")
    for i in range(5):
        m.tick(tick_input(i), PRICES, 60)
    text = json.dumps(m.to_state(), sort_keys=True)
    assert json.loads(text) == json.loads(json.dumps(m.to_state(), sort_keys=True))
    assert len(text) < 20_000
