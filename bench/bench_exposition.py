"""Exposition at ~10,000 series: render() CPU, and serving the cached bytes over HTTP.

Run from the repo root: ``python bench/bench_exposition.py``.

The snapshot is built directly (no meter): N served lines (owners: namespace/pod/team/
model on H100 on_demand) with five cost components, tokens, requests, GPU seconds and
every live gauge set, plus one idle line, with N chosen so that /metrics has ~10,000
series. Then:

- ``render()``: CPU ms per call (time.process_time), best of N calls;
- ``serve()`` on 127.0.0.1:0 with a ``Published`` holding those bytes: N sequential
  GET /metrics on one keep-alive ``http.client`` connection, wall ms per request
  (time.perf_counter; best batch mean, and p50/p99 over all requests), with and without
  ``Accept-Encoding: gzip``. Client and server share this process, so the CPU figure is
  both sides together.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import statistics
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exporter import __version__
from exporter.exposition.page import LandingPage
from exporter.exposition.render import render
from exporter.exposition.server import Published, serve
from exporter.exposition.status import ExportView, RuntimeStatus, TargetStatus
from exporter.meter.attribution import Line
from exporter.meter.snapshot import LineTotals, LineView, MeterSnapshot
from exporter.meter.windows import LiveGauges
from exporter.pricing.prices import GpuPrice, Overhead, PricingConfig
from exporter.records import IDLE, Owner

TARGET_SERIES = 10_000
END_NS = 1_795_392_000 * 10**9
NAMESPACES = ("search", "assistant", "research", "ads", "support", "growth", "legal", "finance")
MODELS = (
    "meta-llama/Llama-3.3-70B-Instruct",
    "Qwen/Qwen2.5-32B-Instruct",
    "meta-llama/Llama-3.1-8B-Instruct",
    "mistralai/Mistral-7B-Instruct-v0.3",
)


def _pricing() -> PricingConfig:
    h100 = GpuPrice("H100", "on_demand", Decimal("4.50"), "config", "pricing.gpus.H100.on_demand (line 7)")
    return PricingConfig(
        gpu_prices=MappingProxyType({("H100", "on_demand"): h100}),
        storage_usd_per_gb_month=Decimal("0.08"),
        egress_usd_per_gb=Decimal("0.09"),
        support_uplift_percent=Decimal("10"),
        overhead=Overhead(Decimal("0.40"), Decimal("5")),
        catalogue_date="2026-11-23",
    )


def _line(i: int) -> LineView:
    ns = NAMESPACES[i % len(NAMESPACES)]
    model = MODELS[i % len(MODELS)]
    owner = Owner(ns, f"{model.split('/')[1].lower()}-{i:04d}", ns, model)
    k = 1 + i % 97
    cost = Counter(
        {"gpu": 123_456_789_012 * k + i, "overhead": 6_172_839_451 * k, "support": 13_000_000_123 * k,
         "storage": 98_765_432 * k, "egress": 1_234_567 * k}
    )  # fmt: skip
    total = sum(cost.values())
    totals = LineTotals(
        cost=cost, cost_input=total // 5, cost_output=total - total // 5, input_tokens=1.234e9 * k + i,
        output_tokens=3.21e8 * k, requests=1.1e6 * k, cached_input_tokens=2.5e8 * k,
        requests_by_reason={"stop": 1.0e6 * k, "length": 1.0e5 * k}, held_ns=3_600 * 10**9 * k,
        busy_ns=2_700 * 10**9 * k + 123_456_789, measured_ns=3_600 * 10**9 * k, last_ns=END_NS,
    )  # fmt: skip
    gauges = LiveGauges(
        usd_per_million_input=0.1234567 * k, usd_per_million_output=0.987654321 * k,
        usd_per_million_total=0.3141592653 * k, usd_per_request=0.00123456 * k,
        tokens_per_second_per_user=42.123456 + k, interactivity_method="inter_token_latency",
        burn_usd_per_hour=4.95 + k / 1000, utilization=0.731 + k / 1e4, window_seconds=60.0,
    )  # fmt: skip
    return LineView(Line(owner, "H100", "on_demand"), totals, gauges, "phase_time")


def _idle() -> LineView:
    totals = LineTotals(Counter({"gpu": 45_000_000_000, "overhead": 2_250_000_000}), held_ns=36_000 * 10**9)
    return LineView(Line(IDLE, "H100", "on_demand"), totals, LiveGauges(burn_usd_per_hour=4.725), "")


def build_view(n_lines: int) -> ExportView:
    pricing = _pricing()
    snap = MeterSnapshot(
        node="gpu-node-1",
        end_ns=END_NS,
        lines=(*(_line(i) for i in range(n_lines)), _idle()),
        resets={"http://10.0.0.10:8000/metrics": 2},
        rejected={("http://10.0.0.11:8000/metrics", "nan"): 1},
        coverage=0.97,
        bill_nano=10**15,
    )
    status = RuntimeStatus(
        mode="run", version=__version__, pricing=pricing, prices_in_use=tuple(pricing.gpu_prices.values()),
        targets=tuple(TargetStatus(f"http://10.0.{i // 250}.{i % 250}:8000/metrics", "vllm", True, 0.004)
                      for i in range(64)),
        config_sha256="ab" * 32, tick_seconds=0.05, ticks=1000, window_seconds=60.0,
    )  # fmt: skip
    return ExportView(snap, status)


def series_of(metrics: bytes) -> int:
    return sum(1 for ln in metrics.split(b"\n") if ln and not ln.startswith(b"#"))


def lines_for(target: int) -> int:
    one, two = series_of(render(build_view(1))), series_of(render(build_view(2)))
    per_line, fixed = two - one, one - (two - one)
    return max(1, round((target - fixed) / per_line))


def time_render(view: ExportView, repeats: int) -> tuple[float, float]:
    best_cpu = best_wall = float("inf")
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        render(view)
        c1, w1 = time.process_time(), time.perf_counter()
        best_cpu, best_wall = min(best_cpu, c1 - c0), min(best_wall, w1 - w0)
    return best_cpu, best_wall


def time_gets(port: int, gzip: bool, batches: int, per_batch: int) -> dict[str, float]:
    headers = {"Accept-Encoding": "gzip"} if gzip else {}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    size = 0
    for _ in range(10):  # warm-up (also opens the keep-alive connection)
        conn.request("GET", "/metrics", headers=headers)
        size = len(conn.getresponse().read())
    samples: list[float] = []
    best_wall = best_cpu = float("inf")
    for _ in range(batches):
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(per_batch):
            t = time.perf_counter()
            conn.request("GET", "/metrics", headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            samples.append(time.perf_counter() - t)
            assert resp.status == 200 and len(body) == size
        c1, w1 = time.process_time(), time.perf_counter()
        best_wall = min(best_wall, (w1 - w0) / per_batch)
        best_cpu = min(best_cpu, (c1 - c0) / per_batch)
    conn.close()
    q = statistics.quantiles(samples, n=100)
    return {"bytes": size, "wall": best_wall, "cpu": best_cpu, "p50": q[49], "p99": q[98]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=TARGET_SERIES)
    ap.add_argument("--repeats", type=int, default=20, help="render() calls (best is kept)")
    ap.add_argument("--requests", type=int, default=100, help="GETs per batch (5 batches, best mean kept)")
    args = ap.parse_args()

    n = lines_for(args.series)
    view = build_view(n)
    metrics = render(view)
    gc.collect()
    cpu, wall = time_render(view, args.repeats)
    page, live = LandingPage().render(view, 5.0)

    published = Published()
    published.publish(metrics, page, live)
    cur = published.current
    assert cur is not None
    c0 = time.process_time()
    for _ in range(10):
        published.publish(metrics, page)
    gzip_cpu = (time.process_time() - c0) / 10

    server = serve("127.0.0.1", 0, published, None)
    port = server.server_address[1]
    try:
        plain = time_gets(port, False, 5, args.requests)
        gz = time_gets(port, True, 5, args.requests)
    finally:
        server.shutdown()
        server.server_close()

    ms = 1000.0
    print(f"python {sys.version.split()[0]}; {n} served lines + 1 idle line")
    print(f"/metrics: {series_of(metrics)} series, {len(metrics)} B ({len(cur.metrics_gzip)} B gzip level 1)")
    best = f"best of {args.repeats}  goal <= 50"
    print(f"render()            : {cpu * ms:7.2f} ms CPU ({wall * ms:.2f} ms wall), {best}")
    print(f"publish() gzip      : {gzip_cpu * ms:7.2f} ms CPU (once per tick)")
    for name, r in (("GET /metrics plain", plain), ("GET /metrics gzip ", gz)):
        print(
            f"{name}  : {r['wall'] * ms:7.3f} ms wall/request (best mean of 5 x {args.requests}), "
            f"p50 {r['p50'] * ms:.3f} ms, p99 {r['p99'] * ms:.3f} ms, "
            f"{r['cpu'] * ms:.3f} ms CPU client+server, {int(r['bytes'])} B body  goal <= 5"
        )


if __name__ == "__main__":
    main()
