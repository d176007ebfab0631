"""The offline formulas (DESIGN §3), pure and in ``Decimal``: every result is a ``Breakdown``.

    GPU $/h          = $/GPU-h × GPUs
    tokens/h         = tokens/s per GPU × GPUs × 3600 × utilisation
    all-in $/h       = all-in uplift % × GPU $/h          (overheads you do not itemise)
    egress $/h       = tokens/h ÷ 10⁶ × GB per M tokens × $/GB
    storage $/h      = $/month ÷ 730                       (a month is 730 h: 8 760 h ÷ 12)
    support $/h      = support uplift % × (GPU + egress + storage)
    total $/h        = GPU + all-in + egress + storage + support
    CPM              = total $/h ÷ tokens/h × 10⁶
    CPM input/output = CPM ÷ (s + w(1 − s)) and CPM × w ÷ (s + w(1 − s)),
                       s = input share of tokens, w = output:input cost weight
    $/request        = CPM × tokens per request ÷ 10⁶
    $/month          = total $/h × 730
    training:  wall-clock h = tokens to train ÷ tokens/h;  run cost = total $/h × wall-clock h;
               $/M training tokens = run cost ÷ tokens to train × 10⁶

Products and sums are exact; quotients carry 50 significant digits (far below a nano-dollar).
Rounding happens only when a result is shown (``render``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Context, Decimal, DivisionByZero, InvalidOperation, Overflow, localcontext

from exporter.whatif import WhatIfError

ZERO = Decimal(0)
ONE = Decimal(1)
HUNDRED = Decimal(100)
MILLION = Decimal(10**6)
SECONDS_PER_HOUR = Decimal(3600)
HOURS_PER_MONTH = Decimal(730)  # 8 760 h ÷ 12; said in every breakdown that uses it
DEFAULT_OUTPUT_INPUT_WEIGHT = Decimal(4)  # as pricing.output_input_weight
CONTEXT = Context(prec=50, traps=[InvalidOperation, DivisionByZero, Overflow])


@dataclass(frozen=True, slots=True)
class Overheads:
    """Costs on top of the GPU rate. Zero means "not counted", and the breakdown omits the line."""

    egress_gb_per_million_tokens: Decimal = ZERO
    egress_usd_per_gb: Decimal = ZERO
    storage_usd_per_month: Decimal = ZERO
    support_uplift_percent: Decimal = ZERO
    all_in_uplift_percent: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class Fleet:
    """GPUs at a price, serving (or training) at a throughput, busy a fraction of the time."""

    usd_per_gpu_hour: Decimal
    gpus: int
    tokens_per_second_per_gpu: Decimal
    utilisation: Decimal = ONE  # fraction of held time spent at that throughput, in (0, 1]
    overheads: Overheads = field(default_factory=Overheads)
    price_source: str = "--usd-per-gpu-hour"


@dataclass(frozen=True, slots=True)
class Mix:
    """Which share of the tokens are input (prompt), and how much more an output token costs."""

    input_share: Decimal
    output_input_weight: Decimal = DEFAULT_OUTPUT_INPUT_WEIGHT


@dataclass(frozen=True, slots=True)
class Line:
    """One step of a breakdown: ``key`` names it in JSON and CSV."""

    key: str
    label: str
    value: Decimal
    unit: str
    formula: str


@dataclass(frozen=True, slots=True)
class Breakdown:
    mode: str  # "inference" | "training"
    lines: tuple[Line, ...]
    notes: tuple[str, ...] = ()

    def __getitem__(self, key: str) -> Decimal:
        for line in self.lines:
            if line.key == key:
                return line.value
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return any(line.key == key for line in self.lines)


def inference(fleet: Fleet, mix: Mix | None = None, tokens_per_request: Decimal | None = None) -> Breakdown:
    """CPM (total, and input/output given a mix), $/request, $/h and $/month for a serving fleet."""
    _check(fleet, mix=mix, tokens_per_request=tokens_per_request)
    with localcontext(CONTEXT):
        lines = [*_throughput(fleet), *_hourly(fleet)]
        total, tokens = _value(lines, "total_usd_per_hour"), _value(lines, "tokens_per_hour")
        cpm = total / tokens * MILLION
        lines.append(
            Line(
                "usd_per_million_tokens", "CPM (all tokens)", cpm, "$/M tokens", "total $/h ÷ tokens/h × 10⁶"
            )
        )
        lines += _split(cpm, mix) if mix is not None else []
        lines += _per_request(cpm, tokens, tokens_per_request) if tokens_per_request is not None else []
        lines.append(
            Line("usd_per_month", "cost per month", total * HOURS_PER_MONTH, "$/month", "total $/h × 730 h")
        )
    return Breakdown("inference", tuple(lines), _notes(fleet))


def training(fleet: Fleet, train_tokens: Decimal) -> Breakdown:
    """Run cost, $/M training tokens and wall-clock time to train ``train_tokens`` tokens."""
    _check(fleet, train_tokens=train_tokens)
    with localcontext(CONTEXT):
        lines = [*_throughput(fleet), *_hourly(fleet)]
        total, tokens = _value(lines, "total_usd_per_hour"), _value(lines, "tokens_per_hour")
        hours = train_tokens / tokens
        run = total * hours
        lines += [
            Line("train_tokens", "tokens to train", train_tokens, "tokens", "--train-tokens"),
            Line("wall_clock_hours", "wall-clock time", hours, "h", "tokens to train ÷ tokens/h"),
            Line("wall_clock_days", "wall-clock time", hours / 24, "days", "wall-clock h ÷ 24"),
            Line("gpu_hours", "GPU-hours", hours * fleet.gpus, "GPU-h", "wall-clock h × GPUs"),
            Line("run_cost_usd", "run cost", run, "$", "total $/h × wall-clock h"),
            Line(
                "usd_per_million_tokens",
                "$/M training tokens",
                run / train_tokens * MILLION,
                "$/M tokens",
                "run cost ÷ tokens to train × 10⁶",
            ),
        ]
    return Breakdown("training", tuple(lines), _notes(fleet))


def cpm(usd_per_gpu_hour: Decimal, tokens_per_second_per_gpu: Decimal, utilisation: Decimal = ONE) -> Decimal:
    """GPU-only CPM = $/GPU-h ÷ (tokens/s per GPU × 3600 × utilisation) × 10⁶ (the GPU count cancels)."""
    _check(Fleet(usd_per_gpu_hour, 1, tokens_per_second_per_gpu, utilisation))
    with localcontext(CONTEXT):
        return usd_per_gpu_hour / (tokens_per_second_per_gpu * SECONDS_PER_HOUR * utilisation) * MILLION


def _throughput(f: Fleet) -> Iterator[Line]:
    yield Line("usd_per_gpu_hour", "GPU price", f.usd_per_gpu_hour, "$/GPU-h", f.price_source)
    yield Line("gpus", "GPUs", Decimal(f.gpus), "GPUs", "--gpus")
    yield Line(
        "tokens_per_second_per_gpu", "throughput", f.tokens_per_second_per_gpu, "tokens/s/GPU", "measured"
    )
    yield Line("utilisation", "utilisation", f.utilisation, "ratio", "share of paid time spent at that rate")
    tokens = f.tokens_per_second_per_gpu * f.gpus * SECONDS_PER_HOUR * f.utilisation
    yield Line(
        "tokens_per_hour", "tokens per hour", tokens, "tokens/h", "tokens/s/GPU × GPUs × 3600 × utilisation"
    )


def _hourly(f: Fleet) -> list[Line]:
    o = f.overheads
    gpu = f.usd_per_gpu_hour * f.gpus
    tokens = f.tokens_per_second_per_gpu * f.gpus * SECONDS_PER_HOUR * f.utilisation
    all_in = o.all_in_uplift_percent / HUNDRED * gpu
    egress = tokens / MILLION * o.egress_gb_per_million_tokens * o.egress_usd_per_gb
    storage = o.storage_usd_per_month / HOURS_PER_MONTH
    support = o.support_uplift_percent / HUNDRED * (gpu + egress + storage)
    lines = [Line("gpu_usd_per_hour", "GPU cost", gpu, "$/h", "$/GPU-h × GPUs")]
    optional = [
        Line("all_in_usd_per_hour", "all-in uplift", all_in, "$/h", "all-in % × GPU $/h"),
        Line("egress_usd_per_hour", "egress", egress, "$/h", "tokens/h ÷ 10⁶ × GB per M tokens × $/GB"),
        Line("storage_usd_per_hour", "storage", storage, "$/h", "$/month ÷ 730 h"),
        Line(
            "support_usd_per_hour", "support uplift", support, "$/h", "support % × (GPU + egress + storage)"
        ),
    ]
    lines += [line for line in optional if line.value]
    total = gpu + all_in + egress + storage + support
    lines.append(Line("total_usd_per_hour", "total cost", total, "$/h", " + ".join(_parts(lines))))
    return lines


def _parts(lines: list[Line]) -> list[str]:
    names = {"gpu_usd_per_hour": "GPU", "all_in_usd_per_hour": "all-in", "egress_usd_per_hour": "egress"}
    names |= {"storage_usd_per_hour": "storage", "support_usd_per_hour": "support"}
    return [names[line.key] for line in lines]


def _split(cpm_total: Decimal, mix: Mix) -> list[Line]:
    """Input and output CPM from the token mix, so that s × CPM_in + (1 − s) × CPM_out = CPM."""
    s, w = mix.input_share, mix.output_input_weight
    denominator = s + w * (ONE - s)
    lines = [
        Line("input_share", "input share of tokens", s, "ratio", "--input-share"),
        Line("output_input_weight", "output:input cost weight", w, "ratio", "--output-input-weight"),
    ]
    if s > 0:
        lines.append(
            Line(
                "usd_per_million_input_tokens",
                "CPM input",
                cpm_total / denominator,
                "$/M tokens",
                "CPM ÷ (s + w(1 − s))",
            )
        )
    if s < 1:
        lines.append(
            Line(
                "usd_per_million_output_tokens",
                "CPM output",
                cpm_total * w / denominator,
                "$/M tokens",
                "CPM × w ÷ (s + w(1 − s))",
            )
        )
    return lines


def _per_request(cpm_total: Decimal, tokens_per_hour: Decimal, tokens_per_request: Decimal) -> list[Line]:
    return [
        Line(
            "tokens_per_request", "tokens per request", tokens_per_request, "tokens", "--tokens-per-request"
        ),
        Line(
            "requests_per_hour",
            "requests per hour",
            tokens_per_hour / tokens_per_request,
            "requests/h",
            "tokens/h ÷ tokens per request",
        ),
        Line(
            "usd_per_request",
            "cost per request",
            cpm_total * tokens_per_request / MILLION,
            "$",
            "CPM × tokens per request ÷ 10⁶",
        ),
    ]


def _value(lines: list[Line], key: str) -> Decimal:
    return next(line.value for line in lines if line.key == key)


def _notes(f: Fleet) -> tuple[str, ...]:
    notes = ["a month is 730 h (8 760 h ÷ 12)"]
    if f.utilisation == ONE:
        notes.append("utilisation 100 %: the GPUs serve at the measured rate all the time they are paid for")
    if f.overheads.all_in_uplift_percent and f.overheads.support_uplift_percent:
        notes.append(
            "all-in and support uplifts are both applied: make sure they do not count the same costs"
        )
    return tuple(notes)


def _check(
    f: Fleet,
    *,
    mix: Mix | None = None,
    tokens_per_request: Decimal | None = None,
    train_tokens: Decimal | None = None,
) -> None:
    """Every problem at once, each naming the flag and what was expected."""
    o = f.overheads
    rules = [
        (
            f.usd_per_gpu_hour > 0,
            f"--usd-per-gpu-hour: expected a price > 0 $/GPU-hour, got {f.usd_per_gpu_hour}",
        ),
        (f.gpus >= 1, f"--gpus: expected a whole number of GPUs >= 1, got {f.gpus}"),
        (
            f.tokens_per_second_per_gpu > 0,
            f"--tokens-per-second: expected a throughput > 0 tokens/s per GPU, got {f.tokens_per_second_per_gpu}",
        ),
        (
            0 < f.utilisation <= 1,
            f"--utilisation: expected a fraction in (0, 1] (0.7 or 70%), got {f.utilisation}",
        ),
        (o.egress_gb_per_million_tokens >= 0, "--egress-gb-per-million-tokens: expected >= 0"),
        (o.egress_usd_per_gb >= 0, "--egress-usd-per-gb: expected >= 0"),
        (o.storage_usd_per_month >= 0, "--storage-usd-per-month: expected >= 0"),
        (o.support_uplift_percent >= 0, "--support-uplift-percent: expected a percentage >= 0"),
        (o.all_in_uplift_percent >= 0, "--all-in-uplift-percent: expected a percentage >= 0"),
    ]
    if mix is not None:
        rules.append(
            (
                0 <= mix.input_share <= 1,
                f"--input-share: expected a fraction in [0, 1], got {mix.input_share}",
            )
        )
        rules.append((mix.output_input_weight > 0, "--output-input-weight: expected a weight > 0"))
    if tokens_per_request is not None:
        rules.append(
            (tokens_per_request > 0, f"--tokens-per-request: expected > 0, got {tokens_per_request}")
        )
    if train_tokens is not None:
        rules.append((train_tokens > 0, f"--train-tokens: expected a token count > 0, got {train_tokens}"))
    problems = [message for ok, message in rules if not ok]
    if problems:
        raise WhatIfError("; ".join(problems))
