"""Chargeback per tenant (issue 17): gateways' per-team counters read like a server's, and each
model's money split among the teams that called it, to the nano-dollar, over time."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.engines.gateways import GATEWAYS, NO_TENANT, read_gateway
from exporter.errors import ParseError
from exporter.meter.tenants import DIRECT, OTHER_TENANTS, TenantShares, TenantTotals, add_to, served_name
from exporter.meter.tokens import ModelDelta, TokenMeter
from exporter.records import ModelCounters, Owner, TargetScrape

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
SERVED = frozenset({LLAMA, "qwen"})
WINDOW_NS = 60 * 10**9


def litellm(rows: list[tuple[str, str, float, float]]) -> str:
    """LiteLLM 1.108's exposition (prometheus_client): (deployment, team, input, output), one API key each."""
    out = ["# HELP litellm_input_tokens_metric_total Total number of input tokens from LLM requests",
           "# TYPE litellm_input_tokens_metric_total counter"]  # fmt: skip
    labels = 'api_key_alias="k",api_provider="hosted_vllm",end_user="None",hashed_api_key="h{k}",model="{m}",model_id="id",org_alias="None",org_id="None",requested_model="tiny",team="{t}",team_alias="{t}-alias",user="None",user_email="None"'
    for k, (m, t, i, _) in enumerate(rows):
        out.append(f"litellm_input_tokens_metric_total{{{labels.format(m=m, t=t, k=k)}}} {i}")
    out += ["# HELP litellm_output_tokens_metric_total Total number of output tokens from LLM requests",
            "# TYPE litellm_output_tokens_metric_total counter"]  # fmt: skip
    for k, (m, t, _, o) in enumerate(rows):
        out.append(f"litellm_output_tokens_metric_total{{{labels.format(m=m, t=t, k=k)}}} {o}")
    return "\n".join(out) + "\n"


def test_litellm_counters_become_one_series_per_served_model_and_team() -> None:
    text = litellm([
        (f"hosted_vllm/{LLAMA}", "search", 100, 10), (f"hosted_vllm/{LLAMA}", "search", 5, 1),
        (f"hosted_vllm/{LLAMA}", "chat", 40, 4), (f"hosted_vllm/{LLAMA}", "None", 7, 7),
        ("openai/gpt-4o", "search", 999, 999),  # routed elsewhere: no server here serves it
    ])  # fmt: skip
    read = read_gateway(
        text, GATEWAYS["litellm"]
    )  # every model is read: which ones are served is the meter's
    assert ("openai/gpt-4o", "search") in {(m.model, m.instance) for m in read}
    got = {
        (served_name(m.model, SERVED), m.instance): (m.input_tokens, m.output_tokens)
        for m in read
        if served_name(m.model, SERVED) is not None
    }
    assert got == {(LLAMA, "search"): (105, 11), (LLAMA, "chat"): (40, 4), (LLAMA, NO_TENANT): (7, 7)}


def test_envoy_ai_gateway_token_usage_histogram_by_token_type_and_a_configured_tenant_label() -> None:
    text = (
        "# TYPE gen_ai_client_token_usage histogram\n"
        'gen_ai_client_token_usage_bucket{gen_ai_request_model="qwen",gen_ai_token_type="input",tenant="a",le="+Inf"} 3\n'
        'gen_ai_client_token_usage_sum{gen_ai_request_model="qwen",gen_ai_token_type="input",tenant="a"} 300\n'
        'gen_ai_client_token_usage_count{gen_ai_request_model="qwen",gen_ai_token_type="input",tenant="a"} 3\n'
        'gen_ai_client_token_usage_sum{gen_ai_request_model="qwen",gen_ai_token_type="output",tenant="a"} 90\n'
        'gen_ai_client_token_usage_sum{gen_ai_request_model="qwen",gen_ai_token_type="output",tenant="b"} 10\n'
    )
    profile = GATEWAYS["envoy_ai_gateway"]
    with pytest.raises(ParseError, match="no tenant label"):
        read_gateway(text, profile)  # the tenant header's label must be named
    got = {
        (m.instance): (m.input_tokens, m.output_tokens)
        for m in read_gateway(text, profile, tenant_label="tenant")
    }
    assert got == {"a": (300, 90), "b": (0, 10)}


def test_a_gateway_model_name_maps_to_a_served_model() -> None:
    assert served_name(f"hosted_vllm/{LLAMA}", SERVED) == LLAMA  # the provider prefix goes
    assert served_name("qwen", SERVED) == "qwen"
    text = litellm([("chat-large", "search", 1, 1)])  # an explicit map renames it when it is read
    (m,) = read_gateway(text, GATEWAYS["litellm"], {"chat-large": "qwen"})
    assert served_name(m.model, SERVED) == "qwen"
    assert served_name("openai/gpt-4o", SERVED) is None


def test_a_bad_counter_refuses_the_scrape() -> None:
    for bad in ("NaN", "-1", "+Inf"):
        with pytest.raises(ParseError) as e:
            read_gateway(
                litellm([(LLAMA, "search", 1, 1)]).replace(" 1\n", f" {bad}\n", 1),
                GATEWAYS["litellm"],
            )
        assert e.value.reason == "bad_value"


def test_a_family_missing_from_one_scrape_is_unknown_not_zero() -> None:
    text = litellm([(LLAMA, "search", 100, 10)]).split("# HELP litellm_output")[0]
    (m,) = read_gateway(text, GATEWAYS["litellm"])
    assert (m.input_tokens, m.output_tokens) == (100, None)


# --- the split -------------------------------------------------------------------------------------------


def gateway_delta(model: str, tenant: str, i: float, o: float) -> ModelDelta:
    return ModelDelta(owner=Owner("", "", "", model), input_tokens=i, output_tokens=o, instance=tenant)


def test_money_follows_the_window_shares_and_direct_calls_stay_with_the_pod() -> None:
    shares = TenantShares()
    shares.add(
        10**9,
        WINDOW_NS,
        [gateway_delta(LLAMA, "search", 300, 30), gateway_delta(LLAMA, "chat", 100, 10)],
        SERVED,
    )
    # The node's servers counted 500 input and 40 output tokens: 100 input the gateway never saw.
    split = shares.split(LLAMA, (500, 40), (1000, 400, 7), (50, 4))
    # The rest (7) by all tokens, 330 : 110 : 100, largest remainder: 4.28, 1.43, 1.30 -> 4, 2, 1.
    assert {t: x.cost for t, x in split.items()} == {
        "search": 600 + 300 + 4,
        "chat": 200 + 100 + 2,
        DIRECT: 200 + 0 + 1,
    }
    assert sum(x.cost for x in split.values()) == 1407
    assert {t: (x.input_tokens, x.output_tokens) for t, x in split.items()} == {
        "search": (30, 3), "chat": (10, 1), DIRECT: (10, 0)}  # fmt: skip


def test_a_model_no_gateway_counted_stays_whole_with_the_pod() -> None:
    shares = TenantShares()
    assert shares.split("qwen", (0, 0), (5, 6, 7), (0, 0)) == {DIRECT: TenantTotals(18, 0, 0)}


def test_shares_last_a_window_then_the_span_then_go() -> None:
    shares = TenantShares()
    shares.add(10**9, WINDOW_NS, [gateway_delta(LLAMA, "search", 10, 1)], SERVED)
    shares.add(30 * 10**9, WINDOW_NS, [], SERVED)  # a quiet tick: the window still says search
    assert set(shares.split(LLAMA, (10, 1), (9, 9, 0), (0, 0))) == {"search"}
    shares.add(61 * 10**9, WINDOW_NS, [], SERVED)  # a quiet window: the span's shares still say search
    assert set(shares.split(LLAMA, (10, 1), (9, 9, 0), (0, 0))) == {"search"}
    shares.add(601 * 10**9, WINDOW_NS, [], SERVED)  # nothing counted for ten windows: forgotten
    assert not shares.knows(LLAMA) and set(shares.split(LLAMA, (0, 0), (9, 9, 0), (0, 0))) == {DIRECT}


def test_tenants_past_the_cap_fold_into_one_with_their_money() -> None:
    shares = TenantShares(max_tenants=2)
    shares.add(10**9, WINDOW_NS, [gateway_delta(LLAMA, t, 1, 0) for t in ("a", "b", "c", "d")], SERVED)
    split = shares.split(LLAMA, (4, 0), (4, 0, 0), (0, 0))
    assert split == {"a": TenantTotals(1), "b": TenantTotals(1), OTHER_TENANTS: TenantTotals(2)}


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 10**6), st.integers(0, 10**5)), max_size=6
    ),
    st.tuples(st.floats(0, 1e7), st.floats(0, 1e6)),
    st.tuples(st.integers(0, 10**12), st.integers(0, 10**12), st.integers(0, 10**9)),
    st.tuples(st.integers(0, 10**6), st.integers(0, 10**5)),
)
def test_every_nano_dollar_and_token_lands_on_exactly_one_tenant(rows, served, money, tokens) -> None:  # type: ignore[no-untyped-def]
    shares = TenantShares()
    shares.add(10**9, WINDOW_NS, [gateway_delta(LLAMA, t, i, o) for t, i, o in rows], SERVED)
    split = shares.split(LLAMA, served, money, (float(tokens[0]), float(tokens[1])))
    assert sum(x.cost for x in split.values()) == sum(money)
    assert sum(x.input_tokens for x in split.values()) == tokens[0]
    assert sum(x.output_tokens for x in split.values()) == tokens[1]
    assert all(x.cost >= 0 for x in split.values())


def test_over_time_with_gateway_restarts_each_team_pays_its_share_of_the_servers_tokens() -> None:
    """A gateway in front of one server, read through the token meter over 300 ticks: the gateway
    restarts twice (counters back to 0), misses scrapes, and a team appears late. The money of a
    constant-cost line splits like the teams' true token shares, within the window's edge effects,
    and every nano-dollar is kept."""
    rng = random.Random(7)
    mix = {"search": 0.6, "chat": 0.3, "batch": 0.1}
    meter, shares = TokenMeter(), TenantShares()
    cumulative = dict.fromkeys(mix, 0.0)
    truth = dict.fromkeys(mix, 0.0)
    books: dict[str, TenantTotals] = {}
    served_window: list[tuple[int, float]] = []
    for tick in range(300):
        end_ns = (tick + 1) * 10**9
        tick_tokens = 0.0
        for team, p in mix.items():
            if team == "batch" and tick < 100:
                continue  # a team that starts calling late: its first tokens count from 0
            n = float(rng.randint(0, 200) * p // 1)
            cumulative[team] += n
            truth[team] += n
            tick_tokens += n
        if tick in (120, 220):
            cumulative = dict.fromkeys(mix, 0.0)  # the gateway restarted: its counters start over
        models = tuple(ModelCounters(model=LLAMA, instance=t, input_tokens=v, output_tokens=0.0)
                       for t, v in cumulative.items() if v or t != "batch")  # fmt: skip
        ok = tick % 37 != 5  # a scrape lost now and then: the next one catches up
        scrape = TargetScrape("gateway:litellm", Owner("", "", "", ""), "litellm", ok, models if ok else ())
        shares.add(end_ns, WINDOW_NS, meter.tick([scrape], tick, 1.0).deltas, SERVED)
        served_window = [(t, n) for t, n in served_window if t > end_ns - WINDOW_NS] + [(end_ns, tick_tokens)]
        served = sum(n for _, n in served_window)
        add_to(books, shares.split(LLAMA, (served, 0.0), (1_000_000, 0, 0), (tick_tokens, 0.0)))
    assert sum(x.cost for x in books.values()) == 300 * 1_000_000
    paid = sum(x.cost for t, x in books.items() if t in mix)
    for team in mix:
        assert books[team].cost / paid == pytest.approx(truth[team] / sum(truth.values()), abs=0.03), team
    assert books[DIRECT].cost / (300 * 1_000_000) < 0.05  # only the window's edges: no direct calls
    assert not math.isnan(books["search"].input_tokens)


# --- through the meter's public entry: a tick of inputs -------------------------------------------------


def test_through_the_meter_each_line_money_is_its_tenants_money_over_time_and_a_restart() -> None:
    """Two vLLM pods of one model on two GPUs behind a LiteLLM gateway with three teams, 60 ticks; the
    exporter restarts from its state file at tick 30. Every line's money equals the sum over its
    tenants (DIRECT included) to the nano-dollar, at every tick; the teams pay their true shares."""
    from decimal import Decimal

    from exporter.meter.ledger import Meter
    from exporter.pricing.prices import GpuPrice, PricingConfig
    from exporter.records import GpuSample, Placement, TickInput

    prices = PricingConfig(
        gpu_prices={("H100", "on_demand"): GpuPrice("H100", "on_demand", Decimal("3.60"), "config", "t")},
        output_input_weight=Decimal(4),
    )
    pods = [Owner("serve", f"llama-{k}", "platform", LLAMA) for k in range(2)]
    gpus = tuple(GpuSample(str(k), "H100", "on_demand", utilization=0.8) for k in range(2))
    held = tuple(Placement(str(k), pods[k]) for k in range(2))
    mix = {"search": 5, "chat": 3, "batch": 2}  # tokens per tick per team and pod
    server = [[0.0, 0.0], [0.0, 0.0]]
    gateway = dict.fromkeys(mix, 0.0)
    meter = Meter("n")
    t0 = 1_767_225_600 * 10**9
    for tick in range(60):
        if tick == 30:  # the exporter restarts: a new meter goes on from the saved state
            saved = meter.to_state()
            meter = Meter("n")
            meter.restore(saved)
        for k in range(2):
            server[k][0] += 10 * sum(mix.values())
            server[k][1] += sum(mix.values())
        for team, n in mix.items():
            gateway[team] += 2 * 10 * n  # input and output counted once per request, for both pods
        scrapes = tuple(
            TargetScrape(p.pod, p, "vllm", True, (ModelCounters(LLAMA, server[k][0], server[k][1]),))
            for k, p in enumerate(pods)
        )
        gw = TargetScrape("gateway/litellm", Owner("", "", "", ""), "litellm", True,
                          tuple(ModelCounters(LLAMA, v, v / 10, instance=t) for t, v in gateway.items()))  # fmt: skip
        start = t0 + tick * 10**10
        snap = meter.tick(
            TickInput(start, start + 10**10, "n", gpus, held, scrapes, gateways=(gw,)), prices, 60
        )
        for view in snap.lines:  # once a gateway counted the model, every tick: money = its tenants' money
            if view.line.owner.pod and tick >= 1:
                assert sum(x.cost for x in view.tenants.values()) == sum(view.totals.cost.values())
    served = [v for v in snap.lines if v.line.owner.pod]
    assert len(served) == 2
    for view in served:
        # The first tick (the servers' and the gateway's baselines: no shares yet) stayed DIRECT.
        assert view.tenants[DIRECT].cost == pytest.approx(sum(view.totals.cost.values()) / 60, rel=0.05)
        paid = {t: x.cost for t, x in view.tenants.items() if t in mix}
        for team, n in mix.items():
            assert paid[team] / sum(paid.values()) == pytest.approx(n / sum(mix.values()), abs=0.01)


def test_a_gateway_added_later_leaves_the_money_before_it_with_the_pod() -> None:
    """The line's money from before any gateway counted its model is DIRECT: its tenants still add up
    to its money (found against a real LiteLLM, which starts after the exporter's first ticks)."""
    from decimal import Decimal

    from exporter.meter.ledger import Meter
    from exporter.pricing.prices import GpuPrice, PricingConfig
    from exporter.records import GpuSample, Placement, TickInput

    prices = PricingConfig(
        gpu_prices={("H100", "on_demand"): GpuPrice("H100", "on_demand", Decimal("3.60"), "config", "t")}
    )
    pod = Owner("serve", "llama-0", "platform", LLAMA)
    meter, t0 = Meter("n"), 1_767_225_600 * 10**9
    for tick in range(10):
        server = (
            TargetScrape(pod.pod, pod, "vllm", True, (ModelCounters(LLAMA, 100.0 * tick, 10.0 * tick),)),
        )
        gateway = () if tick < 5 else (TargetScrape("gateway/litellm", Owner("", "", "", ""), "litellm", True,
                                                    (ModelCounters(LLAMA, 100.0 * tick, 10.0 * tick, instance="search"),)),)  # fmt: skip
        start = t0 + tick * 10**10
        snap = meter.tick(TickInput(start, start + 10**10, "n", (GpuSample("0", "H100", "on_demand"),),
                                    (Placement("0", pod),), server, gateways=gateway), prices, 60)  # fmt: skip
    (view,) = [v for v in snap.lines if v.line.owner.pod]
    assert sum(x.cost for x in view.tenants.values()) == sum(view.totals.cost.values())
    # Five ticks before the gateway, and the tick of its first reading (a baseline: no shares yet).
    assert view.tenants[DIRECT].cost == 6 * 10_000_000
    assert view.tenants["search"].cost == 4 * 10_000_000


def test_a_gateway_restart_is_seen_through_created_even_when_its_counters_overtake() -> None:
    """LiteLLM (prometheus_client) exports each series' _created: a new process is a restart even if its
    counters already passed the old values by the next scrape; nothing is counted twice."""

    def payload(created: float, value: float) -> str:
        return litellm([(LLAMA, "search", value, value)]).replace(
            "# HELP litellm_output",
            f'litellm_input_tokens_metric_created{{model="{LLAMA}",team="search"}} {created}\n# HELP litellm_output',
        )

    meter = TokenMeter()
    read = [(100.0, 50), (100.0, 80), (500.0, 95)]  # restarted at 500 s and served 95 since: overtook 80
    got = []
    for k, (created, value) in enumerate(read):
        models = read_gateway(payload(created, value), GATEWAYS["litellm"])
        got.append(
            meter.tick(
                [TargetScrape("gateway/litellm", Owner("", "", "", ""), "litellm", True, models)], 10 * k, 10
            ).deltas
        )
    assert [d.input_tokens for d in got[1]] == [30]
    assert [d.input_tokens for d in got[2]] == [95]  # from zero, not 95 - 80


def test_a_model_this_node_starts_serving_late_takes_the_gateways_counts_since_not_its_life() -> None:
    """Over time, through the runtime: the gateway counted a model for long (tenant ads: a million
    tokens before) while this node's server was down; when it comes up, the two tenants calling it
    equally from then on pay equally. Read only once served, the gateway's series would look born
    then and their whole life would count as one tick's."""
    from exporter.config.load import load_config_text
    from exporter.demo.simulation import SimEngine
    from exporter.errors import FetchError
    from exporter.runtime.loop import Runtime

    config = """
node: n
tick_seconds: 5
window_seconds: 60
pricing: {catalogue: false, gpus: {H100: {on_demand: 3.60}}}
gateways: [{kind: litellm, url: "http://gw:1/metrics"}]
inventory:
  gpus: [{hardware: H100, count: 1, capacity: on_demand}]
  workloads:
    - {pod: p-0, namespace: a, team: platform, model: declared, gpus: ["0"], targets: [{url: "http://vllm:1/metrics"}]}
"""
    server, counted = SimEngine("served"), {"ads": 1e6, "search": 0.0}
    clock = {"ns": 1_767_225_600 * 10**9, "tick": 0}

    def fetch(url: str, limits: object, client: object = None) -> str:
        if url == "http://gw:1/metrics":
            return litellm([("hosted_vllm/served", team, n, n) for team, n in counted.items()])
        if clock["tick"] < 3:
            raise FetchError("connection refused", reason="connect")
        return server.text()

    rt = Runtime(lambda: load_config_text(config), clock=lambda: clock["ns"], fetch=fetch)
    for tick in range(15):
        clock["tick"], clock["ns"] = tick, clock["ns"] + 5 * 10**9
        for team in counted:  # each tenant: one request of 100 + 100 tokens per tick
            counted[team] += 100
            server.serve(100, 100)
        snap = rt.tick()
    (view,) = [v for v in snap.lines if v.line.owner.pod == "p-0" and v.line.owner.model == "served"]
    paid = {t: x.cost for t, x in view.tenants.items() if t in counted}
    assert paid["ads"] / (paid["ads"] + paid["search"]) == pytest.approx(0.5, abs=0.05), view.tenants
