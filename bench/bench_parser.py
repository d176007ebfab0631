"""How fast parse_wanted reads what a vLLM reader wants, against two yardsticks.

For each fixture payload, and a synthetic ~350 KB payload of 8 vLLM V1 models, prints the
best of N runs (time.perf_counter) of:

* ours:   ``parse_wanted`` with the 15 names the vLLM profile reads;
* pc:     ``prometheus_client.parser.text_string_to_metric_families`` consuming the payload;
* floor:  ``for line in text.splitlines(): if line.startswith(wanted): ...`` (finds the
  lines, parses nothing; no real parser can be much faster in pure Python).

Goals on the synthetic payload: pc / ours >= 15, ours / floor <= 2.

    python bench/bench_parser.py [--repeat N]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from exporter.http.textformat import parse_wanted  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
VLLM_V1 = FIXTURES / "vllm" / "v1-0.33.0.txt"
WANTED = frozenset(
    {
        "vllm:prompt_tokens_total",
        "vllm:prompt_tokens_created",
        "vllm:generation_tokens_total",
        "vllm:generation_tokens_created",
        "vllm:request_success_total",
        "vllm:num_requests_running",
        "vllm:inter_token_latency_seconds_sum",
        "vllm:inter_token_latency_seconds_count",
        "vllm:time_per_output_token_seconds_sum",
        "vllm:time_per_output_token_seconds_count",
        "vllm:request_prefill_time_seconds_sum",
        "vllm:request_prefill_time_seconds_count",
        "vllm:request_decode_time_seconds_sum",
        "vllm:request_decode_time_seconds_count",
        "process_start_time_seconds",
    }
)
MODEL = 'model_name="meta-llama/Llama-3.1-8B-Instruct"'


def eight_models(text: str, models: int = 8) -> str:
    """The fixture with each vllm: family's samples repeated for ``models`` model names.

    Families stay grouped (HELP and TYPE once, then every model's samples), as one
    prometheus_client registry prints them; the other families are kept as they are.
    """
    out: list[str] = []
    family: list[str] = []
    for line in text.splitlines(keepends=True):
        if line.startswith("vllm:"):
            family.append(line)
            continue
        out += [s.replace(MODEL, f'model_name="org/model-{m}"') for m in range(models) for s in family]
        family = []
        out.append(line)
    out += [s.replace(MODEL, f'model_name="org/model-{m}"') for m in range(models) for s in family]
    return "".join(out)


def best(fn: Callable[[], object], repeat: int) -> float:
    """Best wall time of ``repeat`` calls, in seconds."""
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return min(times)


def measure(text: str, repeat: int) -> tuple[float, float, float]:
    prefixes = tuple(WANTED)

    def floor() -> list[str]:
        return [line for line in text.splitlines() if line.startswith(prefixes)]

    ours = best(lambda: parse_wanted(text, WANTED), repeat)
    pc = best(lambda: list(text_string_to_metric_families(text)), max(3, repeat // 10))
    return ours, pc, best(floor, repeat)


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--repeat", type=int, default=200, help="runs per measurement (pc: a tenth)")
    args = parser.parse_args()
    files = sorted(FIXTURES.glob("*/*.txt"))
    payloads = {f"{p.parent.name}/{p.stem}": p.read_text(encoding="utf-8") for p in files}
    payloads["synthetic: vllm v1 x 8 models"] = eight_models(VLLM_V1.read_text(encoding="utf-8"))
    columns = [("KB", 6), ("hits", 5), ("ours µs", 9), ("pc µs", 10), ("floor µs", 9)]
    columns += [("pc/ours", 8), ("ours/floor", 10)]
    header = f"{'payload':34}" + "".join(f" {title:>{width}}" for title, width in columns)
    print(header)
    print("-" * len(header))
    for name, text in payloads.items():
        hits = len(parse_wanted(text, WANTED))
        ours, pc, floor = measure(text, args.repeat)
        print(
            f"{name:34} {len(text) / 1024:6.0f} {hits:5d} {ours * 1e6:9.0f} {pc * 1e6:10.0f} "
            f"{floor * 1e6:9.0f} {pc / ours:7.1f}x {ours / floor:9.2f}x"
        )
    print("\ngoals on the synthetic payload: pc/ours >= 15x, ours/floor <= 2x")
    print(f"python {platform.python_version()}")


if __name__ == "__main__":
    main()
