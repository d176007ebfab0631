"""The tick loop with injected fetch and clock: sources → meter → exposition, no network."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.config.load import load_config_text
from exporter.config.schema import ExporterConfig
from exporter.demo.simulation import SimEngine
from exporter.errors import FetchError
from exporter.http.textformat import FetchLimits
from exporter.runtime.loop import Runtime

CONFIG = """
node: test-node
tick_seconds: 5
window_seconds: 60
pricing:
  catalogue: true
  gpus: {H100: {on_demand: 3.60}}
inventory:
  gpus: [{hardware: H100, count: 4, capacity: on_demand}, {hardware: B200, count: 1, capacity: spot}]
  workloads:
    - {pod: good-0, namespace: a, team: a, model: m-good, gpus: ["0"], targets: [{url: "http://good:1/metrics"}]}
    - {pod: bad-0, namespace: b, team: b, model: m-bad, gpus: ["1"], targets: [{url: "http://bad:1/metrics"}]}
"""


class World:
    """Fake network and clock: each URL answers from a SimEngine, or raises."""

    def __init__(self) -> None:
        self.now_ns = 1_767_225_600 * 10**9
        self.sims = {"http://good:1/metrics": SimEngine("m-good"), "http://bad:1/metrics": SimEngine("m-bad")}
        self.broken: set[str] = set()

    def fetch(self, url: str, limits: FetchLimits, client: object = None) -> str:
        if url in self.broken:
            raise FetchError(f"{url}: connection refused", reason="connect")
        return self.sims[url].text()

    def clock(self) -> int:
        return self.now_ns

    def advance(self, seconds: int) -> None:
        self.now_ns += seconds * 10**9


@pytest.fixture
def world() -> World:
    return World()


def make(world: World, text: str = CONFIG) -> Runtime:
    def load() -> ExporterConfig:
        return load_config_text(text)

    return Runtime(load, clock=world.clock, fetch=world.fetch)


def samples(rt: Runtime) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    cur = rt.published.current
    assert cur is not None
    out = {}
    for fam in text_string_to_metric_families(cur.metrics.decode()):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(rt: Runtime, name: str, **labels: str) -> float:
    found = [v for (n, ls), v in samples(rt).items() if n == name and set(labels.items()) <= ls]
    assert len(found) == 1, (name, labels, len(found))
    return found[0]


def test_one_bad_target_never_stops_the_others(world: World) -> None:
    rt = make(world)
    rt.tick()
    world.sims["http://good:1/metrics"].serve(100, 10)
    world.sims["http://bad:1/metrics"].serve(100, 10)
    world.advance(5)
    rt.tick()
    world.broken.add("http://bad:1/metrics")
    world.sims["http://good:1/metrics"].serve(50, 5)
    world.sims["http://bad:1/metrics"].serve(50, 5)
    world.advance(5)
    rt.tick()
    assert value(rt, "cpm_tokens_total", pod="good-0", direction="input") == 150
    assert value(rt, "cpm_tokens_total", pod="bad-0", direction="input") == 100  # frozen
    assert value(rt, "cpm_target_up", target="bad-0") == 0
    assert value(rt, "cpm_target_up", target="good-0") == 1
    assert value(rt, "cpm_target_scrape_errors_total", target="bad-0", reason="connect") == 1
    cur = rt.published.current
    assert cur is not None and b"Target bad-0 is down: http://bad:1/metrics: connection refused" in cur.page
    world.broken.clear()
    world.advance(5)
    rt.tick()
    assert value(rt, "cpm_tokens_total", pod="bad-0", direction="input") == 150  # the gap, once


def test_money_follows_the_clock_and_is_conserved(world: World) -> None:
    rt = make(world)
    rt.tick()
    world.advance(10)
    rt.tick()
    costs = [v for (n, _), v in samples(rt).items() if n == "cpm_cost_usd_total"]
    bill = value(rt, "cpm_bill_usd_total")
    assert sum(costs) == pytest.approx(bill)
    # 4 H100 at $3.60 for 10 s = $0.04 of GPU; the B200 spot is priced by the catalogue
    assert value(rt, "cpm_cost_usd_total", pod="good-0", component="gpu") == pytest.approx(0.01)
    assert value(rt, "cpm_gpu_seconds_total", workload="idle", hardware="H100", state="idle") == 20


def test_catalogue_prices_are_flagged(world: World, caplog: pytest.LogCaptureFixture) -> None:
    rt = make(world)
    rt.tick()
    assert value(rt, "cpm_price_info", hardware="B200", capacity_class="spot", source="catalogue") == 1
    assert value(rt, "cpm_price_info", hardware="H100", capacity_class="on_demand", source="config") == 1
    assert any("catalogue default" in r.getMessage() for r in caplog.records)
    cur = rt.published.current
    assert cur is not None and b"catalogue default" in cur.page


def test_a_broken_reload_keeps_the_last_good_config(world: World) -> None:
    texts = iter([CONFIG, CONFIG.replace("3.60", "-1"), CONFIG.replace("3.60", "7.20")])
    holder = {"text": next(texts)}

    def load() -> ExporterConfig:
        return load_config_text(holder["text"])

    rt = Runtime(load, clock=world.clock, fetch=world.fetch)
    rt.tick()
    holder["text"] = next(texts)
    ok, message = rt.reload()
    assert not ok and "on_demand" in message
    world.advance(10)
    rt.tick()
    assert value(rt, "cpm_config_last_reload_successful") == 0
    assert value(rt, "cpm_gpu_price_usd_per_hour", hardware="H100") == 3.6  # last good price kept
    assert value(rt, "cpm_cost_usd_total", pod="good-0", component="gpu") == pytest.approx(0.01)
    holder["text"] = next(texts)
    assert rt.reload()[0]
    world.advance(10)
    rt.tick()
    assert value(rt, "cpm_config_last_reload_successful") == 1
    assert value(rt, "cpm_cost_usd_total", pod="good-0", component="gpu") == pytest.approx(
        0.03
    )  # new price from the swap


@pytest.fixture
def demo_output() -> Iterator[bytes]:
    from exporter.demo.demo import DemoNode, start_demo

    demo = start_demo()
    try:
        rt = Runtime(demo.load, mode="demo", node_source=DemoNode(demo))
        rt.tick()
        for sim in demo.servers.values():
            sim.sim.serve(1000, 100)
        rt.tick()
        cur = rt.published.current
        assert cur is not None
        yield cur.metrics
    finally:
        demo.stop()


def test_promtool_accepts_our_exposition(demo_output: bytes) -> None:
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=demo_output, capture_output=True, check=False
    )
    assert result.returncode == 0, result.stderr.decode()


def test_the_demo_labels_itself_a_simulation(demo_output: bytes) -> None:
    assert b'cpm_build_info{version="' in demo_output and b'mode="demo"' in demo_output


def test_the_heavy_node_clients_load_only_where_they_are_used() -> None:
    """The demo and plain nodes must not pay ~20 MiB for the Kubernetes client (bench/bench_rss.py)."""
    import subprocess
    import sys

    probe = (
        "import sys, exporter.runtime.loop, exporter.cli, exporter.sources.discovery; "
        "print(sorted(m for m in ('kubernetes', 'grpc', 'pynvml', 'bcrypt', 'google.protobuf') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_price_reload_applies_from_the_swap_on_not_to_the_whole_tick(world: World) -> None:
    """Issue 13.10: the tick a reload lands in is cut at the swap."""
    holder = {"text": CONFIG}
    rt = Runtime(lambda: load_config_text(holder["text"]), clock=world.clock, fetch=world.fetch)
    rt.tick()
    world.advance(4)
    holder["text"] = CONFIG.replace("3.60", "7.20")
    assert rt.reload()[0]
    world.advance(6)
    rt.tick()
    # 4 s at $3.60/h ($0.001/s) + 6 s at $7.20/h ($0.002/s)
    assert value(rt, "cpm_cost_usd_total", pod="good-0", component="gpu") == pytest.approx(0.016)
    world.advance(10)
    rt.tick()  # the next tick is wholly at the new price
    assert value(rt, "cpm_cost_usd_total", pod="good-0", component="gpu") == pytest.approx(0.036)


def test_gone_targets_bookkeeping_is_pruned(world: World) -> None:
    """Issue 15.6: per-target maps grew with every target name ever seen (pods come and go)."""
    holder = {"text": CONFIG}
    rt = Runtime(lambda: load_config_text(holder["text"]), clock=world.clock, fetch=world.fetch)
    world.broken.add("http://bad:1/metrics")
    rt.tick()
    assert set(rt._target_errors) == {"good-0", "bad-0"}
    holder["text"] = CONFIG.replace(', targets: [{url: "http://bad:1/metrics"}]', "")
    assert rt.reload()[0]
    world.advance(5)
    rt.tick()
    assert set(rt._target_errors) == set(rt._server_of) == {"good-0"}


def test_the_exporters_own_process_series_are_exported(world: World) -> None:
    rt = make(world)
    rt.tick()
    assert value(rt, "process_resident_memory_bytes") > 10 * 2**20
    assert value(rt, "process_start_time_seconds") > 1.7e9
