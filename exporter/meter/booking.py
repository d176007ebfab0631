"""The book of lines (``LineBook``, the meter's): booking one line's tick, its money into the cumulative
totals and split into input and output, its tokens and figures into the window, its idle money by reason;
the coverage window; the bill; lines retired after the retention period; each line's live gauges."""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import replace
from fractions import Fraction
from operator import attrgetter

from exporter.meter.attribution import GpuTime, Line
from exporter.meter.deltas import ModelDelta
from exporter.meter.idle import idle_cost
from exporter.meter.modelsplit import PodKey, TickLine, sum_deltas
from exporter.meter.money import NANO_PER_USD, allocate, weight
from exporter.meter.request_cost import LengthWindow, cost_quantiles
from exporter.meter.snapshot import LineTotals
from exporter.meter.tenants import Booked
from exporter.meter.windows import TOKEN_TIME, LiveGauges, TickRecord, Window
from exporter.pricing.prices import PricingConfig
from exporter.records import LEVELS, TOKEN_AMOUNTS, WINDOWED, TickInput

NS_PER_S = 10**9
_windowed = attrgetter(*WINDOWED)  # a line's summed deltas → TickRecord's WINDOWED fields


class LineBook:
    """Books each line's tick: owns every line's cumulative totals and live window, how its money
    was split into input and output, the coverage window, the bill and the money of retired lines
    (bill = Σ lines + retired)."""

    def __init__(self) -> None:
        self.totals: dict[Line, LineTotals] = {}
        self.windows: dict[Line, Window] = {}
        self.lengths: dict[Line, LengthWindow] = {}  # lines whose server exports length histograms
        self.split_by: dict[Line, str] = {}  # how each line's money was split into input and output
        self.itl_method: dict[Line, str] = {}
        self.last_ratio: dict[Line, tuple[int | Fraction, int | Fraction]] = {}
        self.coverage = Window()
        self.bill = 0
        self.retired = 0  # cost of lines expired after the retention period

    def book(
        self, line: Line, tl: TickLine, inp: TickInput, pricing: PricingConfig, window_ns: int
    ) -> Booked:
        """Book one line's tick; (line, (input, output, other) money, (input, output) tokens) for
        the tenant split."""
        totals = self.totals.setdefault(line, LineTotals())
        d = sum_deltas(tl.deltas)
        cost = sum(tl.charges.values())
        cost_in, cost_out = self._direction_split(line, cost, d, tl.deltas, pricing, inp.roles)
        for component, nano in tl.charges.items():
            totals.cost[component] = totals.cost.get(component, 0) + nano
        totals.cost_input += cost_in
        totals.cost_output += cost_out
        for f in TOKEN_AMOUNTS:
            setattr(totals, f, getattr(totals, f) + getattr(d, f))
        for x in tl.deltas:
            for why, n in x.requests_by_reason:
                totals.requests_by_reason[why] = totals.requests_by_reason.get(why, 0.0) + n
        totals.held_ns += tl.time[0]
        totals.busy_ns += tl.time[1]
        totals.measured_ns += tl.time[2]
        totals.last_ns = inp.end_ns
        if d.known - totals.known:
            totals.known |= d.known
        self.bill += cost
        levels: list[float] = []
        for f in LEVELS:  # each gauge integrated over the tick, and the time it was read
            read = [v for x in tl.deltas if (v := getattr(x, f)) is not None]
            levels += (sum(read) * inp.dt_ns / NS_PER_S, inp.dt_ns if read else 0)
        if d.itl_count:
            self.itl_method[line] = next(x.itl_method for x in tl.deltas if x.itl_count)
        # positional, in TickRecord's order (this runs for every line every tick)
        record = TickRecord._make(
            (inp.end_ns, inp.dt_ns, cost, cost_in, cost_out, 0, *tl.time, *_windowed(d), *levels)
        )
        accrued_ns = int(max((x.accrued_s for x in tl.deltas), default=0.0) * NS_PER_S)
        self.windows.setdefault(line, Window()).add(record, window_ns, accrued_ns=accrued_ns)
        prompt = [x.prompt_lengths for x in tl.deltas if x.prompt_lengths]
        output = [x.generation_lengths for x in tl.deltas if x.generation_lengths]
        if prompt or output or line in self.lengths:
            self.lengths.setdefault(line, LengthWindow()).add(inp.end_ns, prompt, output, window_ns)
        return line, (cost_in, cost_out, cost - cost_in - cost_out), (d.input_tokens, d.output_tokens)

    def line_totals(self, line: Line) -> tuple[int, float, float]:
        t = self.totals[line]
        return sum(t.cost.values()), t.input_tokens, t.output_tokens

    def book_idle(self, line: Line, tl: TickLine, read: frozenset[PodKey], inp: TickInput) -> None:
        window = self.windows.get(line)
        sums = window.sums() if window is not None else None
        tokens = (
            sums.input_tokens + sums.output_tokens if sums is not None else sum(x.tokens for x in tl.deltas)
        )
        was_read = (line.owner.namespace, line.owner.pod) in read
        found = idle_cost(line, tl.charges, tl.time, tokens, was_read, inp.starved_below, inp.idle_reason)
        if found is not None:
            reason, nano = found
            idle = self.totals[line].idle_cost
            idle[reason] = idle.get(reason, 0) + nano
            if window is not None:
                window.add_idle(nano)

    def _direction_split(
        self,
        line: Line,
        cost: int,
        d: ModelDelta,
        deltas: list[ModelDelta],
        pricing: PricingConfig,
        roles: Mapping[PodKey, str],
    ) -> tuple[int, int]:
        """Input vs output money: by measured prefill/decode time, else by token weight."""
        if line.owner.is_idle:
            return 0, 0  # idle money served no direction
        if line.owner.workload == "training":
            self.split_by[line] = "training"  # training tokens are all "input": no decode phase
            return cost, 0
        role = roles.get((line.owner.namespace, line.owner.pod))
        if role is not None:  # disaggregated serving: the pod does one phase only
            self.split_by[line] = "disaggregated"
            return (cost, 0) if role == "prefill" else (0, cost)
        weights: tuple[int | Fraction, int | Fraction] | None = None
        phase = bool(deltas) and all(x.has_phase_time for x in deltas)
        if phase and d.prefill_seconds + d.decode_seconds > 0:
            weights = (weight(d.prefill_seconds), weight(d.decode_seconds))
            self.split_by[line] = "phase_time"
        elif phase and self.split_by.get(line) == "phase_time":
            pass  # phase times move only when a request finishes: keep its last ratio, not flap
        elif d.tokens > 0:
            weights = (
                weight(d.computed_input_tokens),
                Fraction(pricing.output_input_weight) * weight(d.output_tokens),
            )
            self.split_by[line] = "token_weight"
        if weights is not None:
            self.last_ratio[line] = weights
        if not cost:
            return 0, 0
        weights = weights or self.last_ratio.get(line)
        if weights is None:  # never served: an even split (the odd unit to input, as allocate would)
            return cost - cost // 2, cost // 2
        cost_in, cost_out = allocate(cost, list(weights))
        return cost_in, cost_out

    def slide_quiet(self, booked: Container[Line], inp: TickInput, window_ns: int) -> None:
        """Lines quiet this tick: their windows still slide, so their gauges decay."""
        for line, window in self.windows.items():
            if line not in booked:
                window.add(TickRecord(end_ns=inp.end_ns, dt_ns=inp.dt_ns), window_ns)
                if line in self.lengths:
                    self.lengths[line].add(inp.end_ns, (), (), window_ns)

    def book_coverage(
        self, times: tuple[GpuTime, ...], read: frozenset[PodKey], inp: TickInput, window_ns: int
    ) -> None:
        held = [t for t in times if not t.line.owner.is_idle]
        covered = sum(t.held_ns for t in held if (t.line.owner.namespace, t.line.owner.pod) in read)
        self.coverage.add(
            TickRecord(
                end_ns=inp.end_ns, dt_ns=inp.dt_ns, held_ns=sum(t.held_ns for t in held), busy_ns=covered
            ),
            window_ns,
        )

    def expire(self, now_ns: int, retention_ns: int) -> list[Line]:
        """Forget lines untouched for the retention period, so their series go stale; returns them.

        Their money moves to the retired total, so bill = Σ exported lines + retired holds.
        """
        old = [line for line, t in self.totals.items() if now_ns - t.last_ns > retention_ns]
        for line in old:
            self.retired += sum(self.totals.pop(line).cost.values())
            self.windows.pop(line, None)
            self.lengths.pop(line, None)
            self.split_by.pop(line, None)
            self.itl_method.pop(line, None)
            self.last_ratio.pop(line, None)
        return old

    def gauges(self, line: Line) -> LiveGauges:
        """The line's live gauges over its window."""
        gauges = self.windows[line].gauges()
        if gauges.interactivity_method == TOKEN_TIME:  # say which series: ITL, per-request TPOT…
            method = self.itl_method.get(line) or "inter_token_latency"
            gauges = replace(gauges, interactivity_method=method)
        lengths = self.lengths.get(line)
        if lengths is not None and not lengths.empty():
            w = self.windows[line].sums()
            per_token = (
                _usd_per_token(w.cost_input, w.input_tokens),
                _usd_per_token(w.cost_output, w.output_tokens),
            )
            gauges = replace(gauges, usd_per_request_quantiles=cost_quantiles(*per_token, lengths))
        return gauges


def _usd_per_token(nano: int, tokens: float) -> float | None:
    """USD per token of one direction; 0 when it cost nothing, None when money has no tokens."""
    if nano == 0:
        return 0.0
    return nano / NANO_PER_USD / tokens if tokens > 0 else None
