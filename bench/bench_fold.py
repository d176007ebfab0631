"""One hostile target: a vLLM-like /metrics with N models, through the reader and the meter.

Run from the repo root: ``python bench/bench_fold.py [--models 1000 10000 100000]``.

The payload: N models, each with vLLM v1's prompt and generation token counters, requests
by two finish reasons and a running gauge (5 samples a model, ~110 bytes each). One target
holds one GPU. Two ticks: the first reads a baseline, the second (every counter moved)
is measured: ``read_payload`` (parse + group by model), then ``Meter.tick`` (token deltas,
the owner cap folding models past ``max_owners`` into ``__overflow__``, booking), CPU
seconds (time.process_time) and the growth of the process's peak RSS (VmHWM). Then the
same payloads under the default ``limits.max_series``: read as above, or refused
(``series_limit``) at the cost of finding the lines.
"""

from __future__ import annotations

import argparse
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exporter.config.schema import ScrapeLimits
from exporter.engines.read import read_payload
from exporter.errors import ParseError
from exporter.meter.ledger import Meter
from exporter.pricing.prices import GpuPrice, PricingConfig
from exporter.records import GpuSample, Owner, Placement, TargetScrape, TickInput

S = 10**9
SAMPLES_PER_MODEL = 5
OWNER = Owner("ml", "hostile-0", "search", "m")
PRICES = PricingConfig(
    {("H100", "on_demand"): GpuPrice("H100", "on_demand", Decimal("4.50"), "config", "bench")}
)


def payload(models: int, step: int) -> str:
    lines = []
    for i in range(models):
        lab = f'engine="0",model_name="adapter-{i:06d}"'
        lines += [
            f"vllm:prompt_tokens_total{{{lab}}} {100.0 * step + i}",
            f"vllm:generation_tokens_total{{{lab}}} {10.0 * step + i}",
            f'vllm:request_success_total{{{lab},finished_reason="stop"}} {float(step)}',
            f'vllm:request_success_total{{{lab},finished_reason="length"}} {float(step)}',
            f"vllm:num_requests_running{{{lab}}} 1.0",
        ]
    return "\n".join(lines) + "\n"


def peak_rss_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def refusal(models: int, max_series: int) -> None:
    """The default bound: what refusing the payload costs (the wanted lines are found, not parsed)."""
    text = payload(models, 1)
    began = time.process_time()
    try:
        read_payload(text, "vllm", max_samples=10**7, max_series=max_series)
    except ParseError as e:
        print(f"{models:>7} models: refused ({e.reason}) in {time.process_time() - began:.3f} s CPU")


def measure(models: int, max_series: int | None) -> None:
    meter = Meter("n")
    gpus, held = (GpuSample("0", "H100", "on_demand"),), (Placement("0", OWNER),)
    rss0 = peak_rss_mib()
    for step in (1, 2):
        text = payload(models, step)
        began = time.process_time()
        read = read_payload(text, "vllm", max_samples=10**7, max_series=max_series)
        parsed = time.process_time()
        scrape = TargetScrape("hostile", OWNER, "vllm", True, tuple(read))
        t = 1_800_000_000 * S + step * 5 * S
        meter.tick(TickInput(t - 5 * S, t, "n", gpus, held, (scrape,)), PRICES, 60)
        ticked = time.process_time()
    print(
        f"{models:>7} models ({len(text) / 2**20:6.1f} MiB): read_payload {parsed - began:7.3f} s CPU, "
        f"Meter.tick {ticked - parsed:7.3f} s CPU, peak RSS +{peak_rss_mib() - rss0:6.1f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, nargs="+", default=[1_000, 4_000, 10_000, 100_000])
    args = parser.parse_args()
    print("Unbounded (limits.max_series lifted): the whole fold")
    for n in args.models:
        measure(n, None)
    bound = ScrapeLimits().max_series
    print(f"Default limits.max_series = {bound}:")
    for n in args.models:
        if n * SAMPLES_PER_MODEL > bound:
            refusal(n, bound)
        else:
            measure(n, bound)


if __name__ == "__main__":
    main()
