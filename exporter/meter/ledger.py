"""The meter: one tick of inputs and prices in, cumulative ledger and live gauges out.

Order of one tick: token deltas per model → GPU, node and pod cost lines per holder →
split each holder's money and GPU time across the models it served (by tokens) → split
each line's money into input and output → add to the ledger and the windows.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction

from exporter.meter import state
from exporter.meter.attribution import NO_HARDWARE, Attribution, Charge, GpuAttributor, GpuTime, Line
from exporter.meter.idle import idle_cost
from exporter.meter.modelsplit import Plan, by_kind, held_by_kind, sum_deltas
from exporter.meter.money import NANO_PER_USD, allocate, weight
from exporter.meter.projection import Projection, project
from exporter.meter.request_cost import LengthWindow, cost_quantiles
from exporter.meter.snapshot import LineTotals, LineView, MeterSnapshot, copy_totals
from exporter.meter.tenants import DEFAULT_HORIZON_S, Booked, TenantBook
from exporter.meter.tokens import ModelDelta, TokenMeter
from exporter.meter.windows import TOKEN_TIME, LiveGauges, TickRecord, Window, held_and_busy
from exporter.pricing.prices import PricingConfig
from exporter.records import OVERFLOW, TOKEN_AMOUNTS, Owner, TickInput

NS_PER_S = 10**9
UNKNOWN_MODEL = "__unknown__"
MAX_TRACKED_FOLDED = 100_000  # distinct folded owners we count (the set must stay bounded too)
PodKey = tuple[str, str]  # (namespace, pod)


@dataclass(slots=True)
class _TickLine:
    charges: dict[str, int] = field(default_factory=dict)  # plain dicts: Counter is slow here
    time: list[int] = field(default_factory=lambda: [0, 0, 0])  # held, busy, measured
    deltas: list[ModelDelta] = field(default_factory=list)


class Meter:
    """Pure with respect to the world: no I/O, no clock; state is in-memory only."""

    def __init__(
        self,
        node: str,
        *,
        max_owners: int = 2000,
        retention_s: float = 600.0,
        max_tenants: int = 200,
        settle_s: float = DEFAULT_HORIZON_S,
    ) -> None:
        self.node = node
        self.max_owners = max_owners
        self.retention_ns = int(retention_s * NS_PER_S)
        self._tokens = TokenMeter()
        self._gateway_tokens = TokenMeter()  # gateways' (model, tenant) counters, a server's rules
        self._tenants = TenantBook(max_tenants, settle_s)  # lines a gateway's tenants called
        self._gpus = GpuAttributor()
        self._totals: dict[Line, LineTotals] = {}
        self._windows: dict[Line, Window] = {}
        self._lengths: dict[Line, LengthWindow] = {}  # lines whose server exports length histograms
        self._split: dict[Line, str] = {}
        self._itl_method: dict[Line, str] = {}
        self._done: dict[PodKey, float] = {}  # training: tokens each job's counter shows
        self._targets: Mapping[PodKey, float] = {}
        self._roles: Mapping[PodKey, str] = {}
        self._last_ratio: dict[Line, tuple[int | Fraction, int | Fraction]] = {}
        self._last_model: dict[PodKey, str] = {}
        self._served_lines: dict[PodKey, set[Line]] = {}  # model lines of a pod that served tokens
        self._admitted: set[Owner] = set()
        self._folded: set[Owner] = set()  # distinct owners folded into __overflow__
        self._coverage = Window()
        self._resets: Counter[str] = Counter()
        self._rejected: Counter[tuple[str, str]] = Counter()
        self._overflowed = 0
        self._unpriced_ns = 0
        self._bill = 0
        self._retired = 0  # cost of lines expired after the retention period
        self._snapshot = MeterSnapshot(node=node, end_ns=0)

    def tick(
        self,
        inp: TickInput,
        pricing: PricingConfig,
        window_s: float,
        *,
        price_change: tuple[int, PricingConfig] | None = None,
    ) -> MeterSnapshot:
        """One tick. ``price_change`` = (when, the prices before): a reload within the tick cuts
        it there, so the new prices apply from the swap on, not to the whole tick."""
        if inp.dt_ns < 0:  # 0 is the baseline tick at start: readings, no money
            self._rejected[("clock", "non_positive_tick")] += 1
            self._snapshot = replace(self._snapshot, rejected=dict(self._rejected))
            return self._snapshot
        tok = self._tokens.tick(inp.scrapes, inp.start_ns / NS_PER_S, inp.dt_ns / NS_PER_S)
        self._resets.update(tok.resets)
        self._done.update(tok.done)
        self._targets = inp.token_targets
        self._roles = inp.roles
        self._rejected.update(tok.rejected)
        window_ns = int(window_s * NS_PER_S)
        gw = self._gateway_tokens.tick(inp.gateways, inp.start_ns / NS_PER_S, inp.dt_ns / NS_PER_S)
        self._resets.update(gw.resets)
        self._rejected.update(gw.rejected)
        att = self._attribute(inp, pricing, price_change)
        if att.bad_readings:
            self._rejected[("gpu", "bad_reading")] += len(att.bad_readings)
        lines = self._by_model(att, tok.deltas)
        booked: list[Booked] = []
        for line, tl in lines.items():
            booked.append(self._book(line, tl, inp, pricing, window_ns))
            self._book_idle(line, tl, tok.read_pods - tok.baselined, inp)
        if inp.gateways or self._tenants.busy():  # no gateway and nothing waiting: no tenant pass at all
            self._tenants.tick(inp.end_ns, window_ns, gw.deltas, self._served_models(tok.deltas), booked,
                               self._line_totals)  # fmt: skip
        for line, window in self._windows.items():
            if line not in lines:  # quiet this tick: its window still slides, so gauges decay
                window.add(TickRecord(end_ns=inp.end_ns, dt_ns=inp.dt_ns), window_ns)
                if line in self._lengths:
                    self._lengths[line].add(inp.end_ns, (), (), window_ns)
        self._book_coverage(att.times, tok.read_pods, inp, window_ns)
        self._expire(inp.end_ns, max(self.retention_ns, 2 * window_ns))
        self._snapshot = self._snap(inp.end_ns)
        return self._snapshot

    def _attribute(
        self, inp: TickInput, pricing: PricingConfig, change: tuple[int, PricingConfig] | None
    ) -> Attribution:
        """GPU, node and pod charges of the tick; cut at a price swap inside it. Time-based money
        (GPU-hours, overhead, storage) follows the cut; counter-based amounts measured once per
        tick (energy joules, bytes sent) are priced at the prices the tick started with."""
        if change is None or not inp.start_ns < change[0] < inp.end_ns:
            att = self._gpus.attribute(inp, pricing)
            self._unpriced_ns += inp.dt_ns * len(att.unpriced)
            return att
        at, before = change
        first = self._gpus.attribute(replace(inp, end_ns=at), before)
        second = self._gpus.attribute(replace(inp, start_ns=at), pricing)
        self._unpriced_ns += (at - inp.start_ns) * len(first.unpriced) + (inp.end_ns - at) * len(
            second.unpriced
        )
        return Attribution(
            first.charges + second.charges,
            first.times + second.times,
            tuple(sorted({*first.unpriced, *second.unpriced})),
            second.primary,
            tuple(sorted({*first.bad_readings, *second.bad_readings})),
        )

    def reject(self, source: str, reason: str) -> None:
        """Count an input rejected outside a tick (a state file): cpm_input_rejected_total."""
        self._rejected[(source, reason)] += 1
        self._snapshot = replace(self._snapshot, rejected=dict(self._rejected))

    def to_state(self) -> state.Json:
        """Everything needed to go on exactly after a restart, as JSON values (meter.state)."""
        return state.meter_to(self)

    def restore(self, saved: state.Json) -> None:
        """Go on from ``to_state()``'s values: counters continue, baselines too."""
        state.meter_restore(self, saved)

    def _served_models(self, deltas: tuple[ModelDelta, ...]) -> frozenset[str]:
        """The model names this node's servers answer with: this tick's and its lines'."""
        return frozenset(d.owner.model for d in deltas) | {
            line.owner.model for line in self._totals if not line.owner.is_idle
        }

    def set_tenant_limits(self, max_tenants: int, settle_s: float) -> None:
        """A reloaded cap (tenants already admitted stay, new ones fold past it) and settle time."""
        self._tenants.max_tenants = max_tenants
        self._tenants.horizon_ns = int(settle_s * NS_PER_S)

    def forget_targets(self, keep: set[str]) -> None:
        """Targets and gateways removed: drop their last readings (a re-added one re-baselines)."""
        self._tokens.forget_targets(keep)
        self._gateway_tokens.forget_targets(keep)

    # -- splitting a holder's tick across the models it served ---------------------------

    def _by_model(self, att: Attribution, deltas: tuple[ModelDelta, ...]) -> dict[Line, _TickLine]:
        served: dict[PodKey, dict[Owner, float]] = defaultdict(lambda: defaultdict(float))
        out: dict[Line, _TickLine] = defaultdict(_TickLine)
        spread = held_by_kind(att.times)
        for d in deltas:
            pod = (d.owner.namespace, d.owner.pod)
            served[pod][d.owner] += d.tokens
            if d.tokens:
                self._last_model[pod] = d.owner.model
            primary = att.primary.get(pod, (NO_HARDWARE, NO_HARDWARE))
            for (hw, cap), share in by_kind(d, spread.get(pod), primary):
                line = self._admit(Line(d.owner, hw, cap))
                out[line].deltas.append(share)
                if share.tokens:
                    self._served_lines.setdefault(pod, set()).add(line)
        for pod, models in served.items():  # a single served name is known before any traffic
            if pod not in self._last_model and len(models) == 1:
                self._last_model[pod] = next(iter(models)).model
        plans: dict[Line, Plan] = {}
        for c in att.charges:
            plan = plans.get(c.line) or plans.setdefault(c.line, self._model_plan(c.line, served))
            for line, part in plan.split(c.nano):
                charges = out[line].charges
                charges[c.component] = charges.get(c.component, 0) + part
        for t in att.times:
            plan = plans.get(t.line) or plans.setdefault(t.line, self._model_plan(t.line, served))
            for i, amount in enumerate((t.held_ns, t.busy_ns, t.measured_ns)):
                for line, part in plan.split(amount):
                    out[line].time[i] += part
        return out

    def _model_plan(self, line: Line, served: Mapping[PodKey, Mapping[Owner, float]]) -> Plan:
        """Where a holder's money goes this tick: its models by token share, else one model."""
        if line.owner.is_idle:
            return Plan((line,), ())
        pod = (line.owner.namespace, line.owner.pod)
        models = {o: w for o, w in served.get(pod, {}).items() if w > 0}
        if not models and (quiet := self._window_shares(pod, line)) is not None:
            return quiet
        if not models:
            # The name the server last served under wins over the declared one, so quiet ticks
            # land on the same series as busy ones even if --served-model-name differs.
            model = self._last_model.get(pod) or line.owner.model or UNKNOWN_MODEL
            owner = line.owner if model == line.owner.model else line.owner._replace(model=model)
            return Plan((self._admit(Line(owner, line.hardware, line.capacity)),), ())
        owners = sorted(models, key=lambda o: o.model)
        lines = tuple(self._admit(Line(o, line.hardware, line.capacity)) for o in owners)
        return Plan(lines, tuple(weight(models[o]) for o in owners))

    def _window_shares(self, pod: PodKey, line: Line) -> Plan | None:
        """A quiet tick of a pod serving several models (LoRA adapters): its money goes to them
        by their token shares over the window, not all to one of them."""
        served = self._served_lines.get(pod)
        if not served or len(served) < 2:
            return None
        found = []
        for model_line in sorted(served, key=lambda x: x.owner.model):
            window = self._windows.get(model_line)
            if (
                window is not None
                and model_line.hardware == line.hardware
                and model_line.capacity == line.capacity
            ):
                sums = window.sums()
                if (tokens := sums.input_tokens + sums.output_tokens) > 0:
                    found.append((model_line, weight(tokens)))
        if not found:
            return None
        return Plan(tuple(x for x, _ in found), tuple(w for _, w in found))

    def _admit(self, line: Line) -> Line:
        """Bound label cardinality: owners past the cap fold into one overflow owner."""
        if line.owner in self._admitted or line.owner.is_idle:
            return line
        if len(self._admitted) < self.max_owners:
            self._admitted.add(line.owner)
            return line
        if len(self._folded) < MAX_TRACKED_FOLDED and line.owner not in self._folded:
            self._folded.add(line.owner)
            self._overflowed += 1
        return Line(OVERFLOW, line.hardware, line.capacity)

    # -- booking --------------------------------------------------------------------------

    def _book(
        self, line: Line, tl: _TickLine, inp: TickInput, pricing: PricingConfig, window_ns: int
    ) -> Booked:
        """Book one line's tick; (line, (input, output, other) money, (input, output) tokens) for
        the tenant split."""
        totals = self._totals.setdefault(line, LineTotals())
        d = sum_deltas(tl.deltas)
        cost = sum(tl.charges.values())
        cost_in, cost_out = self._direction_split(line, cost, d, tl.deltas, pricing)
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
        self._bill += cost
        running = sum(x.running or 0.0 for x in tl.deltas) * inp.dt_ns / NS_PER_S
        waiting = sum(x.waiting or 0.0 for x in tl.deltas) * inp.dt_ns / NS_PER_S
        running_ns = inp.dt_ns if any(x.running is not None for x in tl.deltas) else 0
        waiting_ns = inp.dt_ns if any(x.waiting is not None for x in tl.deltas) else 0
        if d.itl_count:
            self._itl_method[line] = next(x.itl_method for x in tl.deltas if x.itl_count)
        record = TickRecord(
            inp.end_ns,
            inp.dt_ns,
            cost,
            cost_in,
            cost_out,
            d.input_tokens,
            d.output_tokens,
            d.requests,
            d.itl_seconds,
            d.itl_count,
            running,
            tl.time[0],
            tl.time[1],
            tl.time[2],
            d.cached_input_tokens,
            0,
            running_ns,
            waiting,
            waiting_ns,
        )  # fmt: skip  (positional: this runs for every line every tick)
        accrued_ns = int(max((x.accrued_s for x in tl.deltas), default=0.0) * NS_PER_S)
        self._windows.setdefault(line, Window()).add(record, window_ns, accrued_ns=accrued_ns)
        prompt = [x.prompt_lengths for x in tl.deltas if x.prompt_lengths]
        output = [x.generation_lengths for x in tl.deltas if x.generation_lengths]
        if prompt or output or line in self._lengths:
            self._lengths.setdefault(line, LengthWindow()).add(inp.end_ns, prompt, output, window_ns)
        return line, (cost_in, cost_out, cost - cost_in - cost_out), (d.input_tokens, d.output_tokens)

    def _line_totals(self, line: Line) -> tuple[int, float, float]:
        t = self._totals[line]
        return sum(t.cost.values()), t.input_tokens, t.output_tokens

    def _book_idle(self, line: Line, tl: _TickLine, read: frozenset[PodKey], inp: TickInput) -> None:
        window = self._windows.get(line)
        sums = window.sums() if window is not None else None
        tokens = (
            sums.input_tokens + sums.output_tokens if sums is not None else sum(x.tokens for x in tl.deltas)
        )
        was_read = (line.owner.namespace, line.owner.pod) in read
        found = idle_cost(line, tl.charges, tl.time, tokens, was_read, inp.starved_below, inp.idle_reason)
        if found is not None:
            reason, nano = found
            idle = self._totals[line].idle_cost
            idle[reason] = idle.get(reason, 0) + nano
            if window is not None:
                window.add_idle(nano)

    def _direction_split(
        self, line: Line, cost: int, d: ModelDelta, deltas: list[ModelDelta], pricing: PricingConfig
    ) -> tuple[int, int]:
        """Input vs output money: by measured prefill/decode time, else by token weight."""
        if line.owner.is_idle:
            return 0, 0  # idle money served no direction
        if line.owner.workload == "training":
            self._split[line] = "training"  # training tokens are all "input": no decode phase
            return cost, 0
        role = self._roles.get((line.owner.namespace, line.owner.pod))
        if role is not None:  # disaggregated serving: the pod does one phase only
            self._split[line] = "disaggregated"
            return (cost, 0) if role == "prefill" else (0, cost)
        weights: tuple[int | Fraction, int | Fraction] | None = None
        phase = bool(deltas) and all(x.has_phase_time for x in deltas)
        if phase and d.prefill_seconds + d.decode_seconds > 0:
            weights = (weight(d.prefill_seconds), weight(d.decode_seconds))
            self._split[line] = "phase_time"
        elif phase and self._split.get(line) == "phase_time":
            pass  # phase times move only when a request finishes: keep its last ratio, not flap
        elif d.tokens > 0:
            weights = (
                weight(d.computed_input_tokens),
                Fraction(pricing.output_input_weight) * weight(d.output_tokens),
            )
            self._split[line] = "token_weight"
        if weights is not None:
            self._last_ratio[line] = weights
        if not cost:
            return 0, 0
        weights = weights or self._last_ratio.get(line)
        if weights is None:  # never served: an even split (the odd unit to input, as allocate would)
            return cost - cost // 2, cost // 2
        cost_in, cost_out = allocate(cost, list(weights))
        return cost_in, cost_out

    def _book_coverage(
        self, times: tuple[GpuTime, ...], read: frozenset[PodKey], inp: TickInput, window_ns: int
    ) -> None:
        held = [t for t in times if not t.line.owner.is_idle]
        covered = sum(t.held_ns for t in held if (t.line.owner.namespace, t.line.owner.pod) in read)
        self._coverage.add(
            TickRecord(
                end_ns=inp.end_ns, dt_ns=inp.dt_ns, held_ns=sum(t.held_ns for t in held), busy_ns=covered
            ),
            window_ns,
        )

    def _expire(self, now_ns: int, retention_ns: int) -> None:
        """Forget lines untouched for the retention period, so their series go stale.

        Their money moves to the retired total, so bill = Σ exported lines + retired holds.
        """
        old = [line for line, t in self._totals.items() if now_ns - t.last_ns > retention_ns]
        for line in old:
            self._retired += sum(self._totals.pop(line).cost.values())
            self._windows.pop(line, None)
            self._lengths.pop(line, None)
            self._split.pop(line, None)
            self._itl_method.pop(line, None)
            self._last_ratio.pop(line, None)
        self._tenants.drop(old)
        if old:  # owners whose every line expired leave room under the cardinality cap
            live = {line.owner for line in self._totals}
            self._admitted &= live
            self._gpus.accruals.drop(lambda key: (o := _owner_of(key)) is not None and o not in live)
            pods = {(o.namespace, o.pod) for o in live}
            self._last_model = {p: m for p, m in self._last_model.items() if p in pods}
            self._served_lines = {
                p: {x for x in lines if x in self._totals}
                for p, lines in self._served_lines.items()
                if p in pods
            }

    def _gauges(self, line: Line) -> LiveGauges:
        gauges = self._windows[line].gauges()
        if gauges.interactivity_method == TOKEN_TIME:  # say which series: ITL, per-request TPOT…
            method = self._itl_method.get(line) or "inter_token_latency"
            gauges = replace(gauges, interactivity_method=method)
        lengths = self._lengths.get(line)
        if lengths is not None and not lengths.empty():
            w = self._windows[line].sums()
            per_token = (
                _usd_per_token(w.cost_input, w.input_tokens),
                _usd_per_token(w.cost_output, w.output_tokens),
            )
            gauges = replace(gauges, usd_per_request_quantiles=cost_quantiles(*per_token, lengths))
        return gauges

    def _projection(self, line: Line, totals: LineTotals) -> Projection | None:
        pod = (line.owner.namespace, line.owner.pod)
        target = self._targets.get(pod)
        if line.owner.workload != "training" or target is None:
            return None
        w = self._windows[line].sums()
        return project(
            target=target,
            done=self._done.get(pod, 0.0),
            cost_so_far_usd=sum(totals.cost.values()) / NANO_PER_USD,
            window_usd=w.cost / NANO_PER_USD,
            window_tokens=w.input_tokens,
            window_s=w.dt_ns / NS_PER_S,
        )

    def _snap(self, end_ns: int) -> MeterSnapshot:
        waiting = self._tenants.settlement.pending()
        views = tuple(
            LineView(
                line,
                copy_totals(t),
                self._gauges(line),
                self._split.get(line, ""),
                self._projection(line, t),
                self._tenants.view(line, waiting),
            )
            for line, t in self._totals.items()
        )
        cov = held_and_busy(self._coverage)
        return MeterSnapshot(
            node=self.node,
            end_ns=end_ns,
            lines=views,
            resets=dict(self._resets),
            rejected=dict(self._rejected),
            coverage=cov[1] / cov[0] if cov[0] else None,
            overflowed_owners=self._overflowed,
            unpriced_gpu_seconds=self._unpriced_ns / NS_PER_S,
            bill_nano=self._bill,
            retired_nano=self._retired,
            gateway_unmatched={
                (model, ("input", "output")[d]): n
                for (model, d), n in self._tenants.settlement.unmatched.items()
            },
        )


def _usd_per_token(nano: int, tokens: float) -> float | None:
    """USD per token of one direction; 0 when it cost nothing, None when money has no tokens."""
    if nano == 0:
        return 0.0
    return nano / NANO_PER_USD / tokens if tokens > 0 else None


def _owner_of(key: object) -> Owner | None:
    """The owner in a per-owner carry key ((owner, component) or (line, "support")), if any."""
    head = key[0] if isinstance(key, tuple) and key else None
    if isinstance(head, Line):
        return head.owner
    return head if isinstance(head, Owner) else None


__all__ = ["Charge", "Meter"]
