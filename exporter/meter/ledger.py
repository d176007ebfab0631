"""The meter: one tick of inputs and prices in, cumulative ledger and live gauges out.

Order of one tick: token deltas per model → GPU, node and pod cost lines per holder →
split each holder's money and GPU time across the models it served (by tokens,
modelsplit.ModelSplit) → split each line's money into input and output and add it to the
ledger and the windows (booking.Booking) → retire lines untouched for the retention period
→ the snapshot. This module runs the tick, keeps the state, retires lines and snapshots.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from fractions import Fraction

from exporter.meter import state
from exporter.meter.attribution import Attribution, Charge, GpuAttributor, Line
from exporter.meter.booking import Booking
from exporter.meter.deltas import ModelDelta
from exporter.meter.modelsplit import ModelSplit, PodKey
from exporter.meter.money import NANO_PER_USD
from exporter.meter.projection import Projection, project
from exporter.meter.request_cost import LengthWindow, cost_quantiles
from exporter.meter.snapshot import LineTotals, LineView, MeterSnapshot, copy_totals
from exporter.meter.tenants import DEFAULT_HORIZON_S, Booked, TenantBook
from exporter.meter.tokens import TokenMeter
from exporter.meter.windows import TOKEN_TIME, LiveGauges, TickRecord, Window, held_and_busy
from exporter.pricing.prices import PricingConfig
from exporter.records import Owner, TickInput

NS_PER_S = 10**9


class Meter(ModelSplit, Booking):
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

    # -- retention and the snapshot ----------------------------------------------------------

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
