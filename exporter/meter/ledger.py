"""The meter: one tick of inputs and prices in, cumulative ledger and live gauges out.

Order of one tick: token deltas per model (tokens.TokenMeter) → GPU, node and pod cost lines
per holder (attribution.GpuAttributor) → split each holder's money and GPU time across the
models it served, by tokens (modelsplit.ModelSplit) → split each line's money into input and
output and add it to the ledger and the windows (booking.LineBook) → the gateways' tenants
(tenants.TenantBook) → retire lines untouched for the retention period → the snapshot.
This module runs the tick in that order over the parts it owns, and assembles the snapshot.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import replace

from exporter.meter import state
from exporter.meter.attribution import Attribution, Charge, GpuAttributor, Line
from exporter.meter.booking import LineBook
from exporter.meter.deltas import ModelDelta
from exporter.meter.modelsplit import ModelSplit, PodKey
from exporter.meter.money import NANO_PER_USD
from exporter.meter.projection import Projection, project
from exporter.meter.snapshot import LineTotals, LineView, MeterSnapshot, copy_totals
from exporter.meter.tenants import DEFAULT_HORIZON_S, Booked, TenantBook
from exporter.meter.tokens import TokenMeter
from exporter.meter.windows import held_and_busy
from exporter.pricing.prices import PricingConfig
from exporter.records import Owner, TickInput

NS_PER_S = 10**9


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
        self.retention_ns = int(retention_s * NS_PER_S)
        self._tokens = TokenMeter()
        self._gateway_tokens = TokenMeter()  # gateways' (model, tenant) counters, a server's rules
        self._tenants = TenantBook(max_tenants, settle_s)  # lines a gateway's tenants called
        self._gpus = GpuAttributor()
        self._models = ModelSplit(max_owners)  # holders' ticks → model lines; the owner cap
        self._lines = LineBook()  # each line's totals and window, the bill, retired lines
        self._done: dict[PodKey, float] = {}  # training: tokens each job's counter shows
        self._targets: Mapping[PodKey, float] = {}
        self._resets: Counter[str] = Counter()
        self._rejected: Counter[tuple[str, str]] = Counter()
        self._unpriced_ns = 0
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
        self._rejected.update(tok.rejected)
        window_ns = int(window_s * NS_PER_S)
        gw = self._gateway_tokens.tick(inp.gateways, inp.start_ns / NS_PER_S, inp.dt_ns / NS_PER_S)
        self._resets.update(gw.resets)
        self._rejected.update(gw.rejected)
        att = self._attribute(inp, pricing, price_change)
        if att.bad_readings:
            self._rejected[("gpu", "bad_reading")] += len(att.bad_readings)
        lines = self._models.by_model(att, tok.deltas, self._lines.windows)
        booked: list[Booked] = []
        book = self._lines
        read = tok.read_pods - tok.baselined  # once a tick, not once a line
        for line, tl in lines.items():
            booked.append(book.book(line, tl, inp, pricing, window_ns))
            book.book_idle(line, tl, read, inp)
        if inp.gateways or self._tenants.busy():  # no gateway and nothing waiting: no tenant pass at all
            self._tenants.tick(inp.end_ns, window_ns, gw.deltas, self._served_models(tok.deltas), booked,
                               book.line_totals)  # fmt: skip
        book.slide_quiet(lines, inp, window_ns)
        book.book_coverage(att.times, tok.read_pods, inp, window_ns)
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
            line.owner.model for line in self._lines.totals if not line.owner.is_idle
        }

    @property
    def max_owners(self) -> int:
        """Owners with lines of their own; the rest fold into ``__overflow__`` (a reload sets it)."""
        return self._models.max_owners

    @max_owners.setter
    def max_owners(self, n: int) -> None:
        self._models.max_owners = n

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
        """Forget lines untouched for the retention period (their money moves to the retired
        total), and what the tenants, the model split and the carries kept for them."""
        old = self._lines.expire(now_ns, retention_ns)
        self._tenants.drop(old)
        if old:  # owners whose every line expired leave room under the cardinality cap
            live = {line.owner for line in self._lines.totals}
            self._gpus.accruals.drop(lambda key: (o := _owner_of(key)) is not None and o not in live)
            self._models.forget(live, self._lines.totals)

    def _projection(self, line: Line, totals: LineTotals) -> Projection | None:
        pod = (line.owner.namespace, line.owner.pod)
        target = self._targets.get(pod)
        if line.owner.workload != "training" or target is None:
            return None
        w = self._lines.windows[line].sums()
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
        book = self._lines
        views = tuple(
            LineView(
                line,
                copy_totals(t),
                book.gauges(line),
                book.split_by.get(line, ""),
                self._projection(line, t),
                self._tenants.view(line, waiting),
            )
            for line, t in book.totals.items()
        )
        cov = held_and_busy(book.coverage)
        return MeterSnapshot(
            node=self.node,
            end_ns=end_ns,
            lines=views,
            resets=dict(self._resets),
            rejected=dict(self._rejected),
            coverage=cov[1] / cov[0] if cov[0] else None,
            overflowed_owners=self._models.overflowed,
            unpriced_gpu_seconds=self._unpriced_ns / NS_PER_S,
            bill_nano=book.bill,
            retired_nano=book.retired,
            gateway_unmatched={
                (model, ("input", "output")[d]): n
                for (model, d), n in self._tenants.settlement.unmatched.items()
            },
        )


def _owner_of(key: object) -> Owner | None:
    """The owner in a per-owner carry key ((owner, component) or (line, "support")), if any."""
    head = key[0] if isinstance(key, tuple) and key else None
    if isinstance(head, Line):
        return head.owner
    return head if isinstance(head, Owner) else None


__all__ = ["Charge", "Meter"]
