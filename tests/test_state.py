"""The meter's saved state: a meter restored from it goes on exactly as one never stopped.

Issue 14: every exported counter continues (Prometheus sees no reset), every carry and every
baseline too, so the money and tokens after a restart equal those of an uninterrupted run.
"""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction

from exporter.meter.ledger import Meter
from exporter.meter.snapshot import MeterSnapshot
from exporter.pricing.prices import Energy, GpuPrice, Overhead, PricingConfig
from exporter.records import GpuSample, ModelCounters, Owner, Placement, PodUsage, TargetScrape, TickInput

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
    joules = 1e6 + 7e3 * i  # one owned GPU split 3/7 + 4/7 (MIG): one energy counter
    mig = {"power_watts": 700.0, "device": "GPU-1", "energy_joules_total": joules}
    gpus = (
        GpuSample("0", "H100", "on_demand", utilization=0.3 + 0.01 * (i % 7)),
        *(GpuSample(unit, "H100", "owned", price_share=Fraction(n, 7), **mig)  # type: ignore[arg-type]
          for unit, n in (("MIG-a", 3), ("GPU-1/unused", 4))),
    )  # fmt: skip
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


# ---- the runtime: the file, the downtime, bad files -------------------------------------------
import logging  # noqa: E402
import os  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from exporter import statefile  # noqa: E402
from exporter.config.load import load_config_text  # noqa: E402
from exporter.runtime.loop import Runtime  # noqa: E402
from tests.test_runtime import CONFIG, World, value  # noqa: E402


def runtime(world: World, path: Path, extra: str = "") -> Runtime:
    text = f"state_file: {path}\n{extra}" + CONFIG
    return Runtime(lambda: load_config_text(text), clock=world.clock, fetch=world.fetch)


def serve(world: World, requests: int) -> None:
    for _ in range(requests):
        world.sims["http://good:1/metrics"].serve(100, 20)


def test_a_restart_continues_every_counter_and_bills_the_downtime_to_the_holders(tmp_path: Path) -> None:
    world, path = World(), tmp_path / "state.json"
    rt = runtime(world, path)
    rt.tick()
    serve(world, 3)
    world.advance(10)
    rt.tick()
    before = value(rt, "cpm_tokens_total", pod="good-0", direction="input")
    assert before == 300 and path.exists()
    # The exporter stops for 44 s; the server goes on serving.
    serve(world, 5)
    world.advance(44)
    rt = runtime(world, path)
    rt.tick()
    assert value(rt, "cpm_tokens_total", pod="good-0", direction="input") == 300 + 500  # the gap's tokens too
    # $3.60/h = $0.001/s for 10 s + 44 s: the holders found at start pay the downtime.
    assert value(rt, "cpm_cost_usd_total", pod="good-0", component="gpu") == pytest.approx(0.054)
    assert value(rt, "cpm_ticks_total") == 3


def test_a_downtime_longer_than_the_maximum_is_billed_idle_not_to_holders(tmp_path: Path) -> None:
    world, path = World(), tmp_path / "state.json"
    rt = runtime(world, path, "state_max_gap_seconds: 30\n")
    rt.tick()
    world.advance(10)
    rt.tick()
    world.advance(120)
    rt = runtime(world, path, "state_max_gap_seconds: 30\n")
    rt.tick()
    assert value(rt, "cpm_cost_usd_total", pod="good-0", component="gpu") == pytest.approx(0.010)
    # All 4 H100 at $0.001/s for the 120 s: the money is kept, as idle with its reason.
    down = value(rt, "cpm_idle_cost_usd_total", hardware="H100", reason="exporter_down")
    assert down == pytest.approx(4 * 0.120)


GOOD = {"format": statefile.FORMAT, "version": statefile.VERSION, "node": "test-node"}


@pytest.mark.parametrize(
    ("reason", "content"),
    [
        ("truncated", b'{"format": "cpm-exporter-state", "vers'),
        ("corrupt", b"\x00\xff garbage\n"),
        ("foreign_format", b'{"hello": "world"}\n'),
        ("future_version", json.dumps({**GOOD, "version": 99}).encode() + b"\n"),
        (
            "foreign_node",
            json.dumps({**GOOD, "node": "other", "end_ns": 1, "meter": {}, "runtime": {}}).encode() + b"\n",
        ),
        (
            "dated",
            json.dumps({**GOOD, "end_ns": 4_000_000_000 * 10**9, "meter": {}, "runtime": {}}).encode()
            + b"\n",
        ),
        (
            "corrupt",
            json.dumps(
                {**GOOD, "end_ns": 1_767_225_000 * 10**9, "meter": {"lines": 7}, "runtime": {}}
            ).encode()
            + b"\n",
        ),
    ],
)
def test_a_bad_state_file_is_reported_set_aside_and_metering_starts_fresh(
    tmp_path: Path, reason: str, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    world, path = World(), tmp_path / "state.json"
    path.write_bytes(content)
    rt = runtime(world, path)
    rt.tick()
    world.advance(10)
    rt.tick()
    assert value(rt, "cpm_input_rejected_total", source="state", reason=reason) == 1
    assert (tmp_path / "state.json.bad").read_bytes() == content  # kept for a post-mortem
    assert any(reason in r.getMessage() and "starts fresh" in r.getMessage() for r in caplog.records)
    assert value(rt, "cpm_cost_usd_total", pod="good-0", component="gpu") == pytest.approx(0.010)
    assert json.loads(path.read_text())["node"] == "test-node"  # a good file written again


def test_no_state_file_is_said_once_and_a_missing_one_is_a_first_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    Runtime(lambda: load_config_text(CONFIG), clock=World().clock, fetch=World().fetch)
    assert sum("no state_file" in r.getMessage() for r in caplog.records) == 1
    path = tmp_path / "new" / "state.json"  # the directory does not exist either
    rt = runtime(World(), path)
    rt.tick()
    assert any("does not exist yet: a first start" in r.getMessage() for r in caplog.records)
    assert path.exists() and 'source="state",' not in rt.published.current.metrics.decode()  # type: ignore[union-attr]


def test_a_crash_mid_write_leaves_the_last_whole_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world, path = World(), tmp_path / "state.json"
    rt = runtime(world, path)
    rt.tick()
    whole = path.read_bytes()

    def killed(fd: int) -> None:
        raise OSError("killed mid-write")

    monkeypatch.setattr(os, "fsync", killed)
    world.advance(10)
    rt.tick()
    assert path.read_bytes() == whole  # the rename never happened: the last whole state stays
    monkeypatch.undo()
    assert statefile.read(str(path), node="test-node", now_ns=world.now_ns) is not None
