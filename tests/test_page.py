"""The landing page's history and charts over time: the same definitions as the gauges, unknown
values as gaps, a bounded history, every label value escaped (exposition/history.py, charts.py,
page.py). The page in a browser: tests/integration/test_landing_page.py."""

from __future__ import annotations

import html
import re
from decimal import Decimal

import pytest

from exporter.exposition import charts as charts_module
from exporter.exposition.charts import MAX_SERIES, page_charts
from exporter.exposition.history import HORIZON_SECONDS, MAX_POINTS, PageHistory, delta
from exporter.exposition.page import CONTENT_SECURITY_POLICY, SCRIPT, STYLE, LandingPage, _sha256
from exporter.exposition.status import ExportView, RuntimeStatus
from exporter.meter.ledger import Meter
from exporter.meter.snapshot import MeterSnapshot
from exporter.pricing.prices import GpuPrice, PricingConfig
from exporter.records import GpuSample, ModelCounters, Owner, Placement, TargetScrape, TickInput

T0 = 1_767_225_600 * 10**9
TICK_NS = 5 * 10**9
WINDOW_S = 30
PRICES = PricingConfig(
    gpu_prices={("H100", "on_demand"): GpuPrice("H100", "on_demand", Decimal("3.60"), "config", "t")}
)


class Node:
    """One GPU node ticking through a script of served tokens: ``serve(tick) -> (input, output) or None``
    (None: the server answered nothing that tick, its counters still)."""

    def __init__(self, owner: Owner, utilization: float = 0.5, tick_ns: int = TICK_NS) -> None:
        self.meter, self.owner, self.util, self.tick_ns = Meter("n"), owner, utilization, tick_ns
        self.tokens = [0.0, 0.0]

    def tick(self, k: int, served: tuple[float, float] | None) -> MeterSnapshot:
        if served:
            self.tokens = [self.tokens[0] + served[0], self.tokens[1] + served[1]]
        counters = ModelCounters(
            self.owner.model, self.tokens[0], self.tokens[1], requests=self.tokens[1] / 50
        )
        scrape = (TargetScrape(self.owner.pod, self.owner, "vllm", True, (counters,)),)
        start = T0 + k * self.tick_ns
        gpu = (GpuSample("0", "H100", "on_demand", utilization=self.util),)
        inp = TickInput(start, start + self.tick_ns, "n", gpu, (Placement("0", self.owner),), scrape)
        return self.meter.tick(inp, PRICES, WINDOW_S)


def view(snap: MeterSnapshot) -> ExportView:
    return ExportView(snap, RuntimeStatus("run", "test", PRICES, window_seconds=WINDOW_S))


def run(node: Node, script: list[tuple[float, float] | None]) -> tuple[LandingPage, list[MeterSnapshot]]:
    page, snaps = LandingPage(), []
    for k, served in enumerate(script):
        snaps.append(node.tick(k, served))
        page.render(view(snaps[-1]), TICK_NS / 1e9)
    return page, snaps


def legend_value(charts: str, chart_id: str, name: str) -> str:
    figure = charts.split(f'id="{chart_id}"')[1].split("</figure>")[0]
    m = re.search(rf"</svg>{re.escape(html.escape(name))} <b>([^<]+)</b>", figure)
    assert m, figure[-800:]
    return m.group(1)


def test_each_chart_ends_on_the_gauge_it_stands_for() -> None:
    """One number, one definition: after a steady minute, the CPM chart's last value is the line's
    $/M total gauge, the spend chart's is its $/h, the utilisation chart's its utilisation."""
    pod = Owner("serve", "llama-0", "platform", "llama")
    node = Node(pod, utilization=0.8)
    page, snaps = run(node, [(900.0 + 10 * k, 300.0 + 5 * k) for k in range(20)])
    (line,) = [v for v in snaps[-1].lines if v.line.owner == pod]
    charts = page_charts(page.history, WINDOW_S)
    g = line.gauges
    assert g.usd_per_million_total is not None and g.burn_usd_per_hour is not None
    assert legend_value(charts, "chart-cpm", "llama") == f"${g.usd_per_million_total:,.3f}"
    assert legend_value(charts, "chart-spend", "platform") == f"${g.burn_usd_per_hour:,.2f}/h"
    assert legend_value(charts, "chart-util", "H100") == "80 %"


def test_the_charts_leave_out_what_the_rules_leave_out() -> None:
    """GPU 1 is held by nobody (0 % busy) and llama-1's server never answers: the utilisation chart is
    held GPUs only (80 % and 50 % → 65 %, node_hardware:cpm_gpu_utilization), and the model's CPM
    leaves out the money of a line whose tokens were never read (cpm_cost_by_direction_usd_total)."""
    meter, page = Meter("n"), LandingPage()
    read, silent = (
        Owner("serve", "llama-0", "platform", "llama"),
        Owner("serve", "llama-1", "platform", "llama"),
    )
    gpus = tuple(GpuSample(str(i), "H100", "on_demand", utilization=u) for i, u in enumerate((0.8, 0.0, 0.5)))
    placed = (Placement("0", read), Placement("2", silent))
    for k in range(12):
        scrapes = (
            TargetScrape(read.pod, read, "vllm", True, (ModelCounters("llama", 900.0 * k, 300.0 * k),)),
            TargetScrape(silent.pod, silent, "vllm", False),
        )
        start = T0 + k * TICK_NS
        snap = meter.tick(TickInput(start, start + TICK_NS, "n", gpus, placed, scrapes), PRICES, WINDOW_S)
        page.render(view(snap), 5.0)
    (line,) = [v for v in snap.lines if v.line.owner == read]
    assert line.gauges.usd_per_million_total is not None
    charts = page_charts(page.history, WINDOW_S)
    assert legend_value(charts, "chart-cpm", "llama") == f"${line.gauges.usd_per_million_total:,.3f}"
    assert legend_value(charts, "chart-util", "H100") == "65 %"


def test_a_quiet_spell_is_a_gap_in_the_cpm_line_not_a_zero() -> None:
    """Tokens stop for longer than the window: no CPM (nothing to divide by), drawn as a break
    in the line; when they come back the line resumes."""
    node = Node(Owner("serve", "llama-0", "platform", "llama"))
    script: list[tuple[float, float] | None] = [(1000.0, 200.0)] * 10 + [None] * 10 + [(1000.0, 200.0)] * 10
    page, _ = run(node, script)
    figure = page_charts(page.history, WINDOW_S).split('id="chart-cpm"')[1].split("</figure>")[0]
    assert figure.count("<polyline") == 2, "two runs of values around the quiet spell"
    assert "$0.000" not in figure.split("</svg>")[1], "no zero in the legend"
    # Quiet at the end: the legend says unknown, not the last price it had.
    page, _ = run(Node(Owner("serve", "llama-0", "platform", "llama")), [(1000.0, 200.0)] * 10 + [None] * 10)
    assert legend_value(page_charts(page.history, WINDOW_S), "chart-cpm", "llama") == "–"


def test_the_history_is_bounded_by_its_horizon_and_point_count() -> None:
    history = PageHistory()
    node = Node(Owner("serve", "llama-0", "platform", "llama"))
    kept = 0
    for k in range(400):  # 2 000 s of 5-s ticks
        kept += history.add(node.tick(k, (100.0, 10.0)), WINDOW_S, 5.0)
    assert kept == 400  # a 5-s tick is coarser than the finest step (3 s): every tick kept...
    # ...for 15 minutes drawn, and one window before them (the first drawn point's window is whole).
    assert history.points[-1].t - history.points[0].t <= HORIZON_SECONDS + WINDOW_S
    assert len(history.points) <= MAX_POINTS + WINDOW_S / 5 + 1
    spans = history.spans(WINDOW_S)
    assert spans[-1][1].t - spans[0][1].t <= HORIZON_SECONDS
    assert all(end.t - start.t == WINDOW_S for start, end in spans)
    fast, second = PageHistory(), Node(Owner("serve", "p", "t", "m"), tick_ns=10**9)
    kept_fast = [fast.add(second.tick(k, (1.0, 1.0)), WINDOW_S, 1.0) for k in range(12)]
    assert kept_fast == [k % 3 == 0 for k in range(12)], "1-s ticks: a point every 3 s"


def test_every_label_value_is_escaped_in_tables_and_charts() -> None:
    evil = '<img src=x onerror="alert(1)">'
    node = Node(Owner("serve", evil, evil, evil))
    page, snaps = run(node, [(500.0, 50.0)] * 8)
    whole, live = page.render(view(snaps[-1]), 5.0)
    text = whole.decode()
    assert evil not in text
    assert text.count(html.escape(evil)) >= 4, "model and team in the table, the CPM and spend legends"
    assert live.decode() in text, "the page is the shell around the live body"


def test_the_script_and_style_are_allowed_by_hash_and_nothing_else() -> None:
    """The CSP names our inline script and style by hash: an injected one would not run."""
    assert f"script-src '{_sha256(SCRIPT)}'" in CONTENT_SECURITY_POLICY
    assert f"style-src '{_sha256(STYLE)}'" in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY and "default-src 'none'" in CONTENT_SECURITY_POLICY
    node = Node(Owner("serve", "p", "t", "m"))
    _, snaps = run(node, [(1.0, 1.0)] * 2)
    page = LandingPage().render(view(snaps[-1]), 5.0)[0].decode()
    assert page.count("<script>") == 1 and f"<script>{SCRIPT}</script>" in page
    assert page.count("<style>") == 1 and f"<style>{STYLE}</style>" in page
    assert ' style="' not in page, "an inline style attribute would be blocked by the CSP"


def test_a_total_that_shrinks_is_unknown_for_the_windows_it_spans() -> None:
    """A line retired after the retention period takes its totals with it: the window across
    that drop has no value (never a negative spend)."""
    assert delta({"a": 10}, {"a": 4}, "a") is None
    assert delta({"a": 10}, {}, "a") is None
    assert delta({}, {"a": 4}, "a") == 4


def test_a_models_tokens_per_second_per_user_is_its_lines_weighted_by_their_output() -> None:
    """Two pods serve one model at 20 and 50 tokens/s per user, the second with three times the
    output: the legend's figure is (20 × 1 + 50 × 3) ÷ 4, the recording rule's output-weighted mean."""
    meter, page = Meter("n"), LandingPage()
    pods = [Owner("serve", f"llama-{i}", "platform", "llama") for i in range(2)]
    out_per_tick, itl = (100.0, 300.0), (1 / 20, 1 / 50)
    gpus = tuple(GpuSample(str(i), "H100", "on_demand", utilization=0.5) for i in range(2))
    for k in range(12):
        scrapes = tuple(
            TargetScrape(p.pod, p, "vllm", True, (ModelCounters(
                "llama", 1000.0 * k, out_per_tick[i] * k, requests=float(k),
                itl_seconds=out_per_tick[i] * k * itl[i], itl_count=out_per_tick[i] * k),))
            for i, p in enumerate(pods)
        )  # fmt: skip
        start = T0 + k * TICK_NS
        placed = tuple(Placement(str(i), p) for i, p in enumerate(pods))
        snap = meter.tick(TickInput(start, start + TICK_NS, "n", gpus, placed, scrapes), PRICES, WINDOW_S)
        page.render(view(snap), 5.0)
    speeds = sorted(
        v.gauges.tokens_per_second_per_user or 0 for v in snap.lines if v.line.owner.model == "llama"
    )
    assert speeds == pytest.approx([20.0, 50.0])
    charts = page_charts(page.history, WINDOW_S)
    assert f"at {(20 * 1 + 50 * 3) / 4:.1f} tokens/s per user" in charts


def test_a_retired_line_leaves_its_totals_so_its_teams_spend_stays_exact() -> None:
    """Pod a of team platform leaves after 15 s and its line is retired 60 s later (the meter's
    retention): the team's spend chart goes on at pod b's $3.60/h, never dips, never a gap."""
    meter, history = Meter("n", retention_s=60), PageHistory()
    a, b = (Owner("serve", p, "platform", "llama") for p in ("a", "b"))
    gpus = tuple(GpuSample(str(i), "H100", "on_demand", utilization=0.5) for i in range(2))
    gone_at = None
    for k in range(60):
        placed = (Placement("0", a),) * (k < 3) + (Placement("1", b),)
        start = T0 + k * TICK_NS
        snap = meter.tick(TickInput(start, start + TICK_NS, "n", gpus, placed, ()), PRICES, WINDOW_S)
        if gone_at is None and k > 3 and all(v.line.owner != a for v in snap.lines):
            gone_at = snap.end_ns / 1e9
        history.add(snap, WINDOW_S, 5.0)
    assert gone_at is not None, "the line was retired within the run"
    (series,), _ = charts_module._keyed(history, WINDOW_S, charts_module._spend, lambda t: ["platform"])
    after = [v for t, v in series.values if t >= 15 + T0 / 1e9 + WINDOW_S]  # a's money out of the window
    assert after and all(v == pytest.approx(3.60) for v in after), after


def test_only_the_largest_series_are_drawn_and_the_rest_counted() -> None:
    """A node with more models than colours: the MAX_SERIES costliest at the last point are drawn,
    the others counted under the legend (and computed only at the last point)."""
    meter, page = Meter("n"), LandingPage()
    pods = [Owner("serve", f"m{i}", "t", f"model-{i:02d}") for i in range(12)]
    gpus = tuple(GpuSample(str(i), "H100", "on_demand", utilization=0.5) for i in range(12))
    placed = tuple(Placement(str(i), p) for i, p in enumerate(pods))
    for k in range(10):
        scrapes = tuple(
            TargetScrape(
                p.pod, p, "vllm", True, (ModelCounters(p.model, 1000.0 * k * (i + 1), 100.0 * k * (i + 1)),)
            )
            for i, p in enumerate(pods)
        )
        start = T0 + k * TICK_NS
        snap = meter.tick(TickInput(start, start + TICK_NS, "n", gpus, placed, scrapes), PRICES, WINDOW_S)
        page.render(view(snap), 5.0)
    figure = page_charts(page.history, WINDOW_S).split('id="chart-cpm"')[1].split("</figure>")[0]
    drawn = re.findall(r"</svg>(model-\d\d) <b>", figure)
    # CPM falls with tokens: the costliest per token are the models serving least (model-00 … 07).
    assert drawn == [f"model-{i:02d}" for i in range(MAX_SERIES)], drawn
    assert f"… and {12 - MAX_SERIES} more" in figure


def test_a_window_longer_than_the_charts_is_charted_over_their_window_and_says_so() -> None:
    node = Node(Owner("serve", "llama-0", "platform", "llama"))
    history = PageHistory()
    for k in range(10):
        history.add(node.tick(k, (100.0, 10.0)), 3600, 5.0)
    assert "over the last 300 s at each point" in page_charts(history, 3600)


def test_a_team_gone_for_longer_than_the_charts_leaves_them() -> None:
    """Its retired totals are kept while a point remembers the team, then dropped: no flat zero line
    forever, no key kept forever; and every drawn point's window is whole (7-s ticks)."""
    meter, history = Meter("n", retention_s=60), PageHistory()
    ghost, live = Owner("serve", "g", "ghost-team", "llama"), Owner("serve", "b", "platform", "llama")
    gpus = tuple(GpuSample(str(i), "H100", "on_demand", utilization=0.5) for i in range(2))
    tick_ns = 7 * 10**9
    seen_ghost = False
    for k in range(300):  # 2 100 s
        placed = (Placement("0", ghost),) * (k < 2) + (Placement("1", live),)
        start = T0 + k * tick_ns
        snap = meter.tick(TickInput(start, start + tick_ns, "n", gpus, placed, ()), PRICES, WINDOW_S)
        history.add(snap, WINDOW_S, 7.0)
        if k == 100:
            seen_ghost = "ghost-team" in page_charts(history, WINDOW_S)
    assert seen_ghost, "charted while the history remembers its spend"
    assert "ghost-team" not in page_charts(history, WINDOW_S)
    assert "ghost-team" not in history._retired.team_cost
    assert all(end.t - start.t >= WINDOW_S for start, end in history.spans(WINDOW_S))
