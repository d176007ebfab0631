"""``cpm-exporter report``'s arithmetic (issue 18): exact counter increases per period from raw samples,
rows per group, and the reconciliation against each node's bill. The real stores: tests/integration."""

from __future__ import annotations

import itertools
import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.report.increase import Increases
from exporter.report.rows import Period, build
from exporter.report.tables import FOCUS_COLUMNS, flat_rows, focus_rows

D = Decimal


def labels(name: str = "", **kv: str) -> tuple[tuple[str, str], ...]:
    named = {"__name__": name} if name else {}
    return tuple(sorted({**named, **kv}.items()))


def test_a_period_owns_the_increase_between_the_last_samples_at_its_edges() -> None:
    inc = Increases([0.0, 10.0, 20.0])
    inc.start(labels("c"), 0.0, D(5))
    inc.add(labels("c"), [(5.0, D(7)), (10.0, D(9)), (15.0, D(2)), (20.0, D(4))])  # a reset at 15
    s = inc.series[labels("c")]
    assert s.per_period == [D(4), D(2 + 2)] and s.resets == 1


def test_a_series_born_within_the_report_counts_from_zero_and_samples_outside_are_ignored() -> None:
    inc = Increases([100.0, 200.0])
    inc.add(labels("c"), [(90.0, D(1)), (150.0, D(3)), (160.0, D(3)), (250.0, D(9))])
    assert inc.series[labels("c")].per_period == [D(3)]


def test_a_node_silent_longer_than_max_gap_is_listed_and_so_is_one_that_stops() -> None:
    inc = Increases([0.0, 1000.0], max_gap_s=60)
    inc.start(labels("bill"), 0.0, D(1))
    inc.add(labels("bill"), [(30.0, D(2)), (400.0, D(5)), (700.0, D(6))])
    inc.finish()
    assert [(g.after, g.before) for g in inc.gaps] == [(30.0, 400.0), (400.0, 700.0), (700.0, None)]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 10**6), st.booleans()), min_size=1, max_size=60),
    st.lists(st.integers(1, 59), max_size=6, unique=True),
)
def test_periods_partition_the_whole_exactly_whatever_the_edges(steps, cuts) -> None:  # type: ignore[no-untyped-def]
    """Random counter histories with resets: the per-period increases add up to the whole-range
    increase, for any set of period edges, to the unit."""
    points, value, truth = [], 0, 0
    for k, (step, reset) in enumerate(steps, 1):
        reset = reset and step < value  # a reset shows as a fall (to the same value it cannot be seen)
        value = step if reset else value + step
        truth += step
        points.append((float(k), D(value) / D(10**9)))
    whole = Increases([0.0, 100.0])
    whole.add(labels("c"), points)
    edges = [0.0, *sorted(float(c) + 0.5 for c in cuts), 100.0]
    split = Increases(edges)
    for a, b in itertools.pairwise(edges):  # fed chunk by chunk, like the collector
        split.add(labels("c"), [p for p in points if a < p[0] <= b])
    assert sum(whole.series[labels("c")].per_period) == D(truth) / D(10**9)
    assert sum(split.series[labels("c")].per_period) == D(truth) / D(10**9)


def fleet_increases() -> dict[str, Increases]:
    bounds = [0.0, 60.0, 120.0]
    out = {m: Increases(bounds) for m in ("cpm_cost_usd_total", "cpm_bill_usd_total", "cpm_tokens_total",
                                          "cpm_cost_by_direction_usd_total", "cpm_gpu_seconds_total")}  # fmt: skip
    line = {"node": "n1", "namespace": "serve", "pod": "llama-0", "team": "search", "model": "llama",
            "workload": "inference", "hardware": "H100", "capacity_class": "on_demand", "instance": "10.0.0.1:9400",
            "job": "cpm"}  # fmt: skip
    idle = {**line, "pod": "", "namespace": "", "team": "__idle__", "model": "__idle__", "workload": "idle"}
    # to_usd's floats, as Prometheus prints them: 0.1 + 0.2 is not 0.3 in binary, the nano-dollars are.
    out["cpm_cost_usd_total"].add(labels("cpm_cost_usd_total", **line, component="gpu"),
                                  [(30.0, D("0.1")), (90.0, D("0.30000000000000004"))])  # fmt: skip
    out["cpm_cost_usd_total"].add(labels("cpm_cost_usd_total", **idle, component="gpu"),
                                  [(30.0, D("0.2")), (90.0, D("0.4"))])  # fmt: skip
    out["cpm_bill_usd_total"].add(labels("cpm_bill_usd_total", node="n1", instance="10.0.0.1:9400", job="cpm"),
                                  [(30.0, D("0.30000000000000004")), (90.0, D("0.7000000000000001"))])  # fmt: skip
    for direction, usd, tokens in (("input", "0.04", "1000"), ("output", "0.06", "250")):
        out["cpm_cost_by_direction_usd_total"].add(
            labels("cpm_cost_by_direction_usd_total", **line, direction=direction), [(30.0, D(usd))]
        )
        out["cpm_tokens_total"].add(
            labels("cpm_tokens_total", **line, direction=direction), [(30.0, D(tokens))]
        )
    out["cpm_gpu_seconds_total"].add(labels("cpm_gpu_seconds_total", **idle, state="idle"), [(30.0, D(1800))])
    return out


def test_rows_reconcile_to_each_nodes_bill_to_the_nano_dollar() -> None:
    report = build([Period(0, 60), Period(60, 120)], ("team", "model"), fleet_increases())
    assert report.reconciled, report.checks
    assert [(c.period, c.rows_usd) for c in report.checks] == [(0, D("0.3")), (1, D("0.4"))]
    first = {r.key: r.total for r in report.rows if r.period == 0}
    assert first == {("search", "llama"): D("0.1"), ("__idle__", "__idle__"): D("0.2")}


def test_a_missing_or_different_bill_is_not_reconciled() -> None:
    inc = fleet_increases()
    inc["cpm_bill_usd_total"].add(
        labels("cpm_bill_usd_total", node="n1", instance="10.0.0.1:9400", job="cpm"),
        [(100.0, D("0.7000000010000001"))],
    )  # fmt: skip  (one nano-dollar more)
    report = build([Period(0, 60), Period(60, 120)], ("team",), inc)
    assert not report.reconciled
    assert [c.ok for c in report.checks] == [True, False]


def test_one_exporter_scraped_twice_or_restarted_on_a_new_address_is_one_series() -> None:
    """Raw series that differ only by the scrape's labels are one counter: interleaved (two jobs
    scrape it) they merge into one rising series, counted once, with a warning; one after the other
    (the DaemonSet pod came back on a new IP, its counters from zero) they are one series with a reset.
    A scrape without honor_labels (exported_pod) reads as our own labels."""
    from exporter.report.collect import _merged

    ours = {"__name__": "cpm_cost_usd_total", "node": "n1", "pod": "llama-0", "component": "gpu"}
    job_a = labels(**{**ours, "instance": "10.0.0.1:9400", "job": "a"})
    job_b = labels(**{**ours, "instance": "10.0.0.1:9400", "job": "b"})
    warnings: dict[str, None] = {}
    merged = _merged({job_a: [(1.0, D(1)), (3.0, D(3))], job_b: [(2.0, D(2)), (4.0, D(4))]}, warnings)
    assert list(merged.values()) == [[(1.0, D(1)), (2.0, D(2)), (3.0, D(3)), (4.0, D(4))]]
    assert any("scraped more than once" in w for w in warnings)
    old = labels(**{**ours, "instance": "10.0.0.1:9400", "job": "cpm"})
    new = labels(**{**ours, "instance": "10.0.0.7:9400", "job": "cpm"})
    warnings = {}
    (points,) = _merged({new: [(5.0, D(1))], old: [(1.0, D(8)), (2.0, D(9))]}, warnings).values()
    inc = Increases([0.0, 10.0])
    inc.add(labels("c"), points)
    assert inc.series[labels("c")].per_period == [D(10)] and warnings == {}  # 9, then a reset to 1
    renamed = labels(**{**ours, "exported_pod": "llama-0", "pod": "cpm-exporter-x"})
    warnings = {}
    (key,) = _merged({renamed: [(1.0, D(1))]}, warnings)
    assert dict(key)["pod"] == "llama-0" and any("honor_labels" in w for w in warnings)


def test_focus_rows_split_a_groups_money_into_tokens_and_gpu_hours_without_counting_twice() -> None:
    report = build([Period(0, 60), Period(60, 120)], ("team", "model", "workload"), fleet_increases())
    rows = focus_rows(report, "acme")
    assert all(list(r)[: len(FOCUS_COLUMNS)] == list(FOCUS_COLUMNS) for r in rows)
    first = [r for r in rows if r["ChargePeriodStart"] == "1970-01-01T00:00:00Z"]
    by_kind = {(json.loads(r["Tags"])["team"], r["x_CostKind"]): r for r in first}
    search = [r for (team, _), r in by_kind.items() if team == "search"]
    assert sum(D(r["BilledCost"]) for r in search) == D(
        "0.1"
    )  # tokens 0.04 + 0.06, nothing left for GPU-hours
    assert by_kind[("search", "input_tokens")]["ConsumedQuantity"] == "1000"
    assert by_kind[("search", "input_tokens")]["ListUnitPrice"] == "0.00004"
    idle = by_kind[("__idle__", "gpu_hours")]
    assert (idle["BilledCost"], idle["ConsumedQuantity"], idle["ConsumedUnit"]) == ("0.2", "0.5", "GPU-Hours")
    assert sum(D(r["BilledCost"]) for r in rows) == sum(r.total for r in report.rows)
    assert flat_rows(report)[0]["cost_usd"] in ("0.1", "0.2")


def test_by_tenant_a_split_line_goes_to_its_calling_teams_and_the_rest_to_the_pods_team() -> None:
    """--by tenant: the gateway split's money per calling team; what no team was charged (direct
    calls, money still waiting) and the lines nobody split stay with the pod's own team. The rows
    still add up to the bill."""
    inc = fleet_increases()
    line = {"node": "n1", "namespace": "serve", "pod": "llama-0", "team": "search", "model": "llama",
            "workload": "inference", "hardware": "H100", "capacity_class": "on_demand"}  # fmt: skip
    inc["cpm_tenant_cost_usd_total"] = Increases([0.0, 60.0, 120.0])
    inc["cpm_tenant_tokens_total"] = Increases([0.0, 60.0, 120.0])
    for tenant, usd, tokens in (("ads", "0.06", "750"), ("__direct__", "0.01", "100")):
        inc["cpm_tenant_cost_usd_total"].add(
            labels("cpm_tenant_cost_usd_total", **line, tenant=tenant), [(30.0, D(usd))]
        )
        inc["cpm_tenant_tokens_total"].add(
            labels("cpm_tenant_tokens_total", **line, tenant=tenant, direction="input"), [(30.0, D(tokens))]
        )
    report = build([Period(0, 60), Period(60, 120)], ("tenant", "model"), inc)
    first = {r.key: r for r in report.rows if r.period == 0}
    assert first[("ads", "llama")].total == D("0.06") and first[("ads", "llama")].tokens == {"total": D(750)}
    # search's pod kept 0.1 - 0.06: the direct calls' 0.01 and 0.03 not yet claimed; 1250 - 750 tokens.
    assert first[("search", "llama")].total == D("0.04") and first[("search", "llama")].tokens == {
        "total": D(500)
    }
    assert first[("__idle__", "__idle__")].total == D("0.2")
    assert report.reconciled and sum(r.total for r in report.rows) == D("0.7")
    (ads,) = [r for r in focus_rows(report, "acme") if r["x_CallingTeam"] == "ads"]
    assert (ads["ConsumedQuantity"], ads["ConsumedUnit"], ads["SubAccountId"]) == ("750", "Tokens", "ads")


def test_a_rows_cpm_leaves_prefix_cache_hits_out_as_the_gauge_and_the_rules_do() -> None:
    """One definition of a CPM: money ÷ the tokens the GPUs computed (input - cached + output)."""
    from exporter.report.tables import usd_per_million

    inc = fleet_increases()
    line = {"node": "n1", "namespace": "serve", "pod": "llama-0", "team": "search", "model": "llama",
            "workload": "inference", "hardware": "H100", "capacity_class": "on_demand"}  # fmt: skip
    inc["cpm_cached_input_tokens_total"] = Increases([0.0, 60.0, 120.0])
    inc["cpm_cached_input_tokens_total"].add(
        labels("cpm_cached_input_tokens_total", **line), [(30.0, D(750))]
    )
    report = build([Period(0, 60), Period(60, 120)], ("team", "model"), inc)
    (search,) = [r for r in report.rows if r.period == 0 and r.key == ("search", "llama")]
    assert search.cached == D(750)
    assert usd_per_million(search) == D("0.1") / D(1250 - 750) * 1_000_000  # $0.10 over 500 computed tokens
    assert (
        flat_rows(report)[[r["team"] for r in flat_rows(report)].index("search")]["cached_input_tokens"]
        == "750"
    )


def test_a_token_file_that_is_no_token_is_a_clear_error_not_a_crash(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The report reads a bearer token as our targets do (one line of ASCII, read per request): two
    lines are refused by name before any request, as an unreadable file is."""
    import gzip as gz

    from exporter.report.promapi import PrometheusClient, PrometheusError, _gunzip

    two = tmp_path / "token"
    two.write_text("abc\ndef\n")
    client = PrometheusClient("https://127.0.0.1:1", bearer_token_file=str(two), timeout_s=1)
    with pytest.raises(PrometheusError, match="holds no single-line ASCII token"):
        client.query("up", 0)
    missing = PrometheusClient("https://127.0.0.1:1", bearer_token_file=str(tmp_path / "nope"), timeout_s=1)
    with pytest.raises(PrometheusError, match="No such file"):
        missing.query("up", 0)
    # A gzip answer is inflated up to a cap (a small body can inflate to anything).
    assert _gunzip(gz.compress(b"x" * 1000), "here") == b"x" * 1000
    with pytest.raises(PrometheusError, match="use a smaller --chunk"):
        _gunzip(gz.compress(b"\0" * 101), "here", cap=100)


def test_a_teams_cpm_leaves_its_training_out_as_the_rules_do() -> None:
    """A team that serves and trains: its $/M is inference money over the tokens the GPUs computed
    (team:cpm_usd_per_million_tokens:rate5m, input|output); a row that only trained, its training CPM."""
    from exporter.report.rows import Row
    from exporter.report.tables import usd_per_million

    both = Row(0, ("search",), by_direction={"input": D("1"), "output": D("3"), "training": D("50")},
               tokens={"input": D("1500000"), "output": D("500000"), "training": D("9000000")},
               cached=D("500000"))  # fmt: skip
    assert usd_per_million(both) == D("2.666666667")  # (1 + 3) / (1.5 M − 0.5 M + 0.5 M) × 1 M
    trained = Row(0, ("research",), by_direction={"training": D("5")}, tokens={"training": D("1000000")})
    assert usd_per_million(trained) == D("5")
