"""The ``calc`` and ``compare`` subcommands: flags -> records -> ``render``.

``add_parsers`` only declares flags (cheap: ``cli --help`` stays fast); ``run`` does the work
and turns a ``WhatIfError`` into exit code 2 with the message on stderr.
"""

from __future__ import annotations

import argparse
import re
import sys
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from exporter.whatif import WhatIfError
from exporter.whatif.render import FORMATS

if TYPE_CHECKING:  # the modules themselves are imported when a command runs
    from exporter.whatif.benchmarks import OperatingPoint

_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12}
CALC_HELP = """\
CPM from a price, a GPU count and a throughput, every line of the breakdown shown.
Inference: $/M tokens (input/output with --input-share), $/request, $/h, $/month (730 h).
Training (--train-tokens): run cost, $/M training tokens, wall-clock time.

  cpm-exporter calc --usd-per-gpu-hour 4.50 --gpus 8 --tokens-per-second 3000 --utilisation 70%
  cpm-exporter calc --hardware B200 --capacity spot --gpus 64 --tokens-per-second 9000 --train-tokens 1T
"""
COMPARE_HELP = """\
From throughput measured on one hardware type, the CPM on others and on each capacity class,
at the same tokens/s per user, using the dated table of published figures (same model class
and precision only; each projection names its rows and how uncertain it is).

  cpm-exporter compare --hardware B200 --capacity contract --model-class glm-5 --precision fp8 \\
      --point 1500@18 --point 900@40
  cpm-exporter compare --hardware H100 --usd-per-gpu-hour 2.50 --model-class llama-70b \\
      --precision fp8 --gpus 8 --vllm-bench c16.json --vllm-bench c64.json --target-tokens-per-second-per-user 30
  cpm-exporter compare --list-table
"""


def decimal_arg(text: str) -> Decimal:
    """A plain decimal number ("4.50", "1e12"); never a float."""
    try:
        value = Decimal(text.strip().replace(",", "").replace("_", ""))
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value.is_finite():
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def fraction_arg(text: str) -> Decimal:
    """A fraction: "0.7" or a percentage "70%"."""
    if text.strip().endswith("%"):
        return decimal_arg(text.strip()[:-1]) / 100
    return decimal_arg(text)


def count_arg(text: str) -> Decimal:
    """A token count, with an optional k/M/B/T suffix: "15T", "2.5e12", "300B"."""
    m = re.fullmatch(r"\s*([0-9.eE+_,-]+)\s*([kKmMbBgGtT]?)\s*", text)
    if m is None:
        raise argparse.ArgumentTypeError(f"expected a token count like 300B, 15T or 2.5e12, got {text!r}")
    return decimal_arg(m[1]) * _SUFFIX[m[2].lower()]


def point_arg(text: str) -> tuple[Decimal, Decimal]:
    """GPU_TPS@USER_TPS: tokens/s per GPU at tokens/s per user, e.g. 3000@80."""
    gpu, sep, user = text.partition("@")
    if not sep:
        raise argparse.ArgumentTypeError(
            f"expected TOKENS_PER_S_PER_GPU@TOKENS_PER_S_PER_USER (e.g. 3000@80), got {text!r}"
        )
    return decimal_arg(gpu), decimal_arg(user)


def price_arg(text: str) -> tuple[str, str, Decimal]:
    """HARDWARE:CLASS=USD, e.g. H100:on_demand=6.98."""
    m = re.fullmatch(r"([^:=]+):([^:=]+)=(.+)", text.strip())
    if m is None:
        raise argparse.ArgumentTypeError(
            f"expected HARDWARE:CLASS=USD_PER_GPU_HOUR (e.g. H100:on_demand=6.98), got {text!r}"
        )
    return m[1], m[2], decimal_arg(m[3])


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--usd-per-gpu-hour", type=decimal_arg, metavar="USD", help="your price per GPU-hour")
    p.add_argument(
        "--hardware",
        metavar="H",
        help="hardware type (H100, B200, ...): with --capacity, price from the catalogue",
    )
    p.add_argument(
        "--capacity",
        metavar="CLASS",
        help="on_demand | spot | reserved | contract (catalogue price of --hardware)",
    )
    p.add_argument(
        "--utilisation",
        "--utilization",
        dest="utilisation",
        type=fraction_arg,
        default=Decimal(1),
        metavar="U",
        help="share of paid time serving at the measured rate: 0.7 or 70%% (default 100%%)",
    )
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (table)")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``calc`` and ``compare`` on the ``cpm-exporter`` subcommand list."""
    raw = argparse.RawDescriptionHelpFormatter
    calc = sub.add_parser(
        "calc",
        help="offline CPM, $/request, $/month or a training run's cost, line by line",
        description=CALC_HELP,
        formatter_class=raw,
    )
    _common(calc)
    calc.add_argument("--gpus", type=int, default=1, metavar="N", help="number of GPUs (1)")
    calc.add_argument(
        "--tokens-per-second",
        type=decimal_arg,
        required=True,
        metavar="TPS",
        help="measured tokens/s per GPU (input + output; training: tokens trained on)",
    )
    calc.add_argument("--egress-gb-per-million-tokens", type=decimal_arg, default=Decimal(0), metavar="GB")
    calc.add_argument(
        "--egress-usd-per-gb",
        type=decimal_arg,
        default=None,
        metavar="USD",
        help="internet egress price (market 2026: 0.08-0.12, GMI Cloud)",
    )
    calc.add_argument("--storage-usd-per-month", type=decimal_arg, default=Decimal(0), metavar="USD")
    calc.add_argument(
        "--support-uplift-percent",
        type=decimal_arg,
        default=Decimal(0),
        metavar="PCT",
        help="support plan, %% of GPU + egress + storage",
    )
    calc.add_argument(
        "--all-in-uplift-percent",
        type=decimal_arg,
        default=Decimal(0),
        metavar="PCT",
        help="overheads not itemised, %% of the GPU rate (hyperscalers 2026: 20-40)",
    )
    calc.add_argument(
        "--input-share", type=fraction_arg, metavar="S", help="input tokens / all tokens: 0.8 or 80%%"
    )
    calc.add_argument(
        "--output-input-weight",
        type=decimal_arg,
        default=Decimal(4),
        metavar="W",
        help="an output token costs W input tokens (4), to split CPM input/output",
    )
    calc.add_argument(
        "--tokens-per-request", type=decimal_arg, metavar="N", help="input + output tokens per request"
    )
    calc.add_argument(
        "--train-tokens", type=count_arg, metavar="N", help="training mode: tokens to train (15T, 300B)"
    )

    cmp_ = sub.add_parser(
        "compare",
        help="project a measured CPM onto other hardware and capacity classes",
        description=COMPARE_HELP,
        formatter_class=raw,
    )
    _common(cmp_)
    cmp_.add_argument(
        "--model-class", metavar="C", help="model class as in the table: llama-70b, gpt-oss-120b, glm-5, ..."
    )
    cmp_.add_argument("--precision", metavar="P", help="fp8, fp4, bf16, ...: rows must match it")
    cmp_.add_argument(
        "--engine", default="", metavar="E", help="vLLM, SGLang, TensorRT-LLM, ... (grades uncertainty)"
    )
    cmp_.add_argument(
        "--gpus", type=int, metavar="N", help="GPUs behind a benchmark file (or instead of the GPU query)"
    )
    cmp_.add_argument(
        "--tokens-per-second", type=decimal_arg, metavar="TPS", help="measured tokens/s per GPU"
    )
    cmp_.add_argument(
        "--tokens-per-second-per-user", type=decimal_arg, metavar="U", help="interactivity of that point"
    )
    cmp_.add_argument(
        "--point",
        type=point_arg,
        action="append",
        default=[],
        metavar="TPS@U",
        help="an operating point: tokens/s per GPU @ tokens/s per user (repeat)",
    )
    cmp_.add_argument(
        "--vllm-bench",
        "--benchmark",
        dest="benchmarks",
        action="append",
        default=[],
        metavar="FILE",
        help="vllm bench serve --save-result JSON, or GenAI-Perf/AIPerf profile export (repeat)",
    )
    cmp_.add_argument("--prometheus", metavar="URL", help="read the measured point from Prometheus")
    from exporter.whatif.benchmarks import DEFAULT_GPUS_QUERY, DEFAULT_PER_USER_QUERY, DEFAULT_TOKENS_QUERY

    cmp_.add_argument(
        "--prometheus-tokens-query",
        default=DEFAULT_TOKENS_QUERY,
        metavar="Q",
        help=f"tokens/s served ({DEFAULT_TOKENS_QUERY})".replace("%", "%%"),
    )
    cmp_.add_argument(
        "--prometheus-gpus-query",
        default=DEFAULT_GPUS_QUERY,
        metavar="Q",
        help=f"GPUs held ({DEFAULT_GPUS_QUERY})".replace("%", "%%"),
    )
    cmp_.add_argument(
        "--prometheus-per-user-query",
        default=DEFAULT_PER_USER_QUERY,
        metavar="Q",
        help=f"tokens/s per user ({DEFAULT_PER_USER_QUERY})".replace("%", "%%"),
    )
    cmp_.add_argument(
        "--price",
        type=price_arg,
        action="append",
        default=[],
        metavar="HW:CLASS=USD",
        help="add or override a $/GPU-hour (repeat)",
    )
    cmp_.add_argument(
        "--to", action="append", default=[], metavar="HW[,HW]", help="hardware to project onto (all known)"
    )
    cmp_.add_argument(
        "--target-tokens-per-second-per-user",
        type=decimal_arg,
        metavar="T",
        help="interpolate between >= 2 measured points at this interactivity",
    )
    cmp_.add_argument("--table", metavar="FILE", help="a table of published rows instead of the packaged one")
    cmp_.add_argument("--list-table", action="store_true", help="print the table of published rows and exit")
    cmp_.add_argument(
        "--plot", metavar="FILE.png", help="CPM vs tokens/s per user, one line per hardware (needs [plot])"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``calc`` or ``compare``; bad input is exit code 2 with what was expected."""
    try:
        if args.command == "calc":
            print(run_calc(args))
        else:
            print(run_compare(args))
    except WhatIfError as e:
        print(f"cpm-exporter {args.command}: {e}", file=sys.stderr)
        return 2
    return 0


def _catalogue_price(hardware: str | None, capacity: str | None) -> tuple[Decimal, str]:
    """$/GPU-hour of ``hardware`` ``capacity`` from the dated catalogue, with its source and date."""
    from exporter.pricing.catalogue import load_catalogue

    catalogue = load_catalogue()
    known = sorted({r.hardware for r in catalogue.rows})
    if not hardware or not capacity:
        raise WhatIfError(
            "expected a price: --usd-per-gpu-hour USD, or --hardware H --capacity CLASS from the catalogue"
        )
    if hardware not in known:
        raise WhatIfError(
            f"unknown hardware {hardware!r}: the catalogue {catalogue.date} prices {', '.join(known)};"
            " pass --usd-per-gpu-hour for anything else"
        )
    row = catalogue.row(hardware, capacity)
    if row is None:
        have = ", ".join(sorted(r.capacity for r in catalogue.rows if r.hardware == hardware))
        raise WhatIfError(
            f"no catalogue price for {hardware} {capacity} (catalogue {catalogue.date} has {hardware}: {have});"
            " pass --usd-per-gpu-hour"
        )
    note = f"; {row.note}" if row.note else ""
    return (
        row.usd_per_hour,
        f"catalogue {catalogue.date}: {hardware} {capacity}, {row.source}, {row.date}{note}",
    )


def _price(args: argparse.Namespace) -> tuple[Decimal, str]:
    if args.usd_per_gpu_hour is not None:
        return args.usd_per_gpu_hour, "--usd-per-gpu-hour"
    return _catalogue_price(args.hardware, args.capacity)


def run_calc(args: argparse.Namespace) -> str:
    from exporter.whatif import calc, render

    if args.egress_gb_per_million_tokens and args.egress_usd_per_gb is None:
        raise WhatIfError(
            "--egress-gb-per-million-tokens needs --egress-usd-per-gb"
            " (market 2026: 0.08-0.12 $/GB, GMI Cloud; the catalogue uses 0.10)"
        )
    price, source = _price(args)
    overheads = calc.Overheads(
        args.egress_gb_per_million_tokens,
        args.egress_usd_per_gb or Decimal(0),
        args.storage_usd_per_month,
        args.support_uplift_percent,
        args.all_in_uplift_percent,
    )
    fleet = calc.Fleet(price, args.gpus, args.tokens_per_second, args.utilisation, overheads, source)
    if args.train_tokens is not None:
        result = calc.training(fleet, args.train_tokens)
    else:
        mix = calc.Mix(args.input_share, args.output_input_weight) if args.input_share is not None else None
        result = calc.inference(fleet, mix, args.tokens_per_request)
    return render.breakdown(result, args.format)


def _points(args: argparse.Namespace) -> list[OperatingPoint]:
    from exporter.whatif import benchmarks as b

    points: list[OperatingPoint] = []
    if args.tokens_per_second is not None:
        points.append(b.OperatingPoint(args.tokens_per_second, args.tokens_per_second_per_user, "flags"))
    points += [b.OperatingPoint(gpu, user, "--point") for gpu, user in args.point]
    if args.benchmarks and args.gpus is None:
        raise WhatIfError(
            "--gpus is required with --vllm-bench: a benchmark measures the whole server, not one GPU"
        )
    points += [b.read_benchmark(path, args.gpus) for path in args.benchmarks]
    if args.prometheus:
        queries = b.PrometheusQueries(
            args.prometheus_tokens_query, args.prometheus_gpus_query, args.prometheus_per_user_query
        )
        points.append(b.prometheus_point(args.prometheus, queries, args.gpus))
    for p in points:
        if p.tokens_per_second_per_gpu <= 0:
            raise WhatIfError(
                f"{p.source}: expected a throughput > 0 tokens/s per GPU, got {p.tokens_per_second_per_gpu}"
            )
        if p.tokens_per_second_per_user is not None and p.tokens_per_second_per_user <= 0:
            raise WhatIfError(
                f"{p.source}: expected tokens/s per user > 0, got {p.tokens_per_second_per_user}"
            )
    if not points:
        raise WhatIfError(
            "expected a measurement: --tokens-per-second, --point TPS@U, --vllm-bench FILE or --prometheus URL"
        )
    return points


def run_compare(args: argparse.Namespace) -> str:
    from exporter.pricing.catalogue import load_catalogue
    from exporter.pricing.published import load_table, read_table
    from exporter.whatif import compare as c
    from exporter.whatif import render

    table = read_table(args.table) if args.table else load_table()
    if args.list_table:
        return render.published_table(table)
    missing = [
        flag
        for flag, v in (
            ("--hardware", args.hardware),
            ("--model-class", args.model_class),
            ("--precision", args.precision),
        )
        if not v
    ]
    if missing:
        raise WhatIfError(f"expected {', '.join(missing)}: what was measured, on which hardware")
    catalogue = load_catalogue()
    prices = c.catalogue_prices(catalogue)
    prices = [p for p in prices if (p.hardware, p.capacity) not in {(h, k) for h, k, _ in args.price}]
    prices += [c.Price(h, k, usd, "--price") for h, k, usd in args.price]
    own = None
    if args.usd_per_gpu_hour is not None:
        own = c.Price(args.hardware, args.capacity or "yours", args.usd_per_gpu_hour, "--usd-per-gpu-hour")
    elif args.capacity:
        own = next((p for p in prices if (p.hardware, p.capacity) == (args.hardware, args.capacity)), None)
        if own is None:
            _catalogue_price(args.hardware, args.capacity)  # raises with what the catalogue has
    known = {p.hardware for p in prices} | {r.hardware for r in table.rows}
    targets = [t.strip() for item in args.to for t in item.split(",") if t.strip()]
    for name in [args.hardware if own is None else "", *targets]:
        if name and name not in known:
            raise WhatIfError(
                f"unknown hardware {name!r}: known are {', '.join(sorted(known))} (catalogue, table, --price)"
            )
    points = tuple(_points(args))
    measured = c.Measured(
        args.hardware, args.model_class, args.precision.lower(), points, args.engine, args.utilisation, own
    )
    if not 0 < measured.utilisation <= 1:
        raise WhatIfError(
            f"--utilisation: expected a fraction in (0, 1] (0.7 or 70%), got {measured.utilisation}"
        )
    result = c.compare(measured, table, prices, targets, args.target_tokens_per_second_per_user)
    if args.plot:
        render.plot(result, args.plot)
    return render.comparison(result, args.format)
