"""The YAML config loader: records for a valid file, and one ConfigError naming every problem."""

# Expected messages stay on one line each, so a failure diff reads like the user's output.

from __future__ import annotations

import logging
import re
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.config.load import format_price_table, known_servers, load_config, load_config_text
from exporter.config.schema import ExporterConfig, ScrapeLimits, StaticGpu, StaticWorkload
from exporter.errors import ConfigError
from exporter.pricing.prices import Budgets, Energy, GpuPrice, Overhead, OwnedHardware
from exporter.records import Owner, Target
from exporter.yamlstrict import readers as yamlnodes

FIXTURES = Path(__file__).parent / "fixtures" / "config"

# The smallest valid file the rule tests below edit: one priced GPU, one workload.
BASE = """\
pricing:
  gpus:
    H100: {on_demand: 4.50}
inventory:
  gpus:
    - {hardware: H100, count: 2, capacity: on_demand}
  workloads:
    - {pod: p0, namespace: ns, model: m, gpus: ["0"]}
"""


def load(text: str) -> ExporterConfig:
    return load_config_text(textwrap.dedent(text))


def problems(text: str) -> list[str]:
    """The problems of a file that must fail, after checking they all carry a line."""
    with pytest.raises(ConfigError) as info:
        load(text)
    for problem in info.value.problems:
        assert re.match(r"^\S.* \(line \d+\): ", problem), problem
    return info.value.problems


def only(text: str) -> str:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


# --- a valid file ------------------------------------------------------------------------


def test_full_config_round_trips_to_the_expected_records(caplog: pytest.LogCaptureFixture) -> None:
    cfg = load_config(FIXTURES / "full.yaml")
    assert (cfg.node, cfg.tick_seconds, cfg.window_seconds, cfg.max_owners) == ("gpu-node-1", 5.0, 60.0, 2000)
    assert cfg.limits == ScrapeLimits(timeout_seconds=2.0, max_body_bytes=33554432, max_samples=500000)
    assert cfg.path == str(FIXTURES / "full.yaml")
    assert re.fullmatch(r"[0-9a-f]{64}", cfg.sha256)

    p = cfg.pricing
    assert p.gpu_price("H100", "on_demand") == GpuPrice(
        "H100", "on_demand", Decimal("4.50"), "config", "pricing.gpus.H100.on_demand (line 12)"
    )
    assert p.gpu_price("H100", "spot").usd_per_hour == Decimal("2.10")  # type: ignore[union-attr]
    # The A100 the file owns covers both sizes the GPU names tell apart (PRICE_FAMILIES).
    a100_owned = OwnedHardware(Decimal(30000), Decimal(4), Decimal(700))
    assert p.owned == {"A100": a100_owned, "A100-40GB": a100_owned, "A100-80GB": a100_owned}
    a100 = p.gpu_price("A100", "owned")
    assert a100 is not None and a100.source == "config"
    assert a100.usd_per_hour == Decimal(30000) / (Decimal(4) * Decimal(8766))
    assert p.energy == Energy(Decimal("0.12"), Decimal("1.3"))
    assert (p.egress_usd_per_gb, p.cross_zone_usd_per_gb, p.storage_usd_per_gb_month) == (
        Decimal("0.09"),
        Decimal("0.01"),
        Decimal("0.08"),
    )
    assert (p.month, p.support_uplift_percent, p.output_input_weight) == ("calendar", Decimal(10), Decimal(4))
    assert p.overhead == Overhead(Decimal("0.50"), Decimal(0))
    assert p.budgets == Budgets(
        models={"meta-llama/Llama-3.3-70B-Instruct": Decimal("0.80")}, teams={"search": Decimal("1.00")}
    )
    assert p.catalogue_date == "2026-12-07"
    assert all(isinstance(v.usd_per_hour, Decimal) for v in p.gpu_prices.values())

    assert cfg.gpus == (
        *(StaticGpu(str(i), "H100", "on_demand") for i in range(8)),
        StaticGpu("8", "H100", "spot", 0.5, 500.0),
        StaticGpu("9", "H100", "spot", 0.5, 500.0),
        StaticGpu("10", "A100", "owned"),
        StaticGpu("b0", "B200", "spot"),
    )
    llama = Owner("search", "llama-70b-0", "search", "meta-llama/Llama-3.3-70B-Instruct", "inference")
    trainer = Owner("research", "trainer-0", "research", "my-7b", "training")  # team defaults to namespace
    assert cfg.workloads == (
        StaticWorkload(
            llama,
            gpus=(("0", 1), ("1", 1)),
            storage_gb=Decimal(200),
            targets=(Target("llama-70b-0", "http://127.0.0.1:8001/metrics", llama, "auto"),),
        ),
        StaticWorkload(trainer, gpus=(("8", 2), ("9", 1), ("10", 1))),
    )
    assert cfg.targets == cfg.workloads[0].targets


def test_defaults_of_a_minimal_file() -> None:
    cfg = load(BASE)
    assert (cfg.node, cfg.tick_seconds, cfg.window_seconds, cfg.max_owners) == ("node", 5.0, 60.0, 2000)
    assert cfg.limits == ScrapeLimits()
    assert cfg.pricing.month == "calendar" and cfg.pricing.egress_usd_per_gb == 0
    assert cfg.workloads[0].owner == Owner("ns", "p0", "ns", "m", "inference")
    assert cfg.path == "<string>"


def test_count_numbering_continues_after_earlier_entries() -> None:
    cfg = load(
        """\
        pricing: {gpus: {H100: {on_demand: 1, spot: 1}}}
        inventory:
          gpus:
            - {hardware: H100, count: 2, capacity: on_demand}
            - {hardware: H100, ids: [x, y], capacity: spot}
            - {hardware: H100, count: 2, capacity: spot}
        """
    )
    assert [g.gpu_id for g in cfg.gpus] == ["0", "1", "x", "y", "4", "5"]


def test_target_name_defaults_to_pod_and_two_workloads_may_time_slice_a_gpu() -> None:
    cfg = load(
        BASE
        + """\
    - pod: p1
      namespace: ns
      model: m
      gpus: ["0", {id: "1", share: 3}]
      targets: [{url: "http://vllm.ns.svc:8000/metrics", server: vllm}]
"""
    )
    assert cfg.workloads[0].gpus == (("0", 1),)
    assert cfg.workloads[1].gpus == (("0", 1), ("1", 3))
    assert cfg.targets[0].name == "p1" and cfg.targets[0].server == "vllm"


def test_numbers_are_exact_decimals_and_1e_minus_12_is_a_number() -> None:
    """PyYAML reads ``1e-12`` as a string and ``0.1`` as a float; we read both exactly."""
    text = BASE.replace("4.50", "45e-1").replace("pricing:\n", "pricing:\n  support_uplift_percent: 1e-12\n")
    cfg = load(text)
    assert cfg.pricing.support_uplift_percent == Decimal("1e-12")
    assert cfg.pricing.gpu_price("H100", "on_demand").usd_per_hour == Decimal("4.5")  # type: ignore[union-attr]
    assert load(BASE.replace("4.50", "0.1")).pricing.gpu_prices["H100", "on_demand"].usd_per_hour == Decimal(
        "0.1"
    )
    # As a price it is a number too: refused for its precision, not as a string.
    assert "more than 9 decimal places" in only(BASE.replace("4.50", "1e-12"))


# --- one test per rule ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "pricing.gpus.H100.on_demand (line 3): must be >= 0, got -1"),
        (".nan", "pricing.gpus.H100.on_demand (line 3): is NaN; expected a finite number"),
        (".NaN", "is NaN"),
        (".inf", "pricing.gpus.H100.on_demand (line 3): is infinite; expected a finite number"),
        ("-.inf", "is infinite"),
        ('"0.1"', "pricing.gpus.H100.on_demand (line 3): is a string ('0.1'); write it without quotes"),
        ("'0.1'", "is a string ('0.1'); write it without quotes"),
        ('"cheap"', "is a string ('cheap'); expected a number"),
        ("true", "pricing.gpus.H100.on_demand (line 3): is a boolean (true); expected a number"),
        ("yes", "is a boolean (yes); expected a number"),
        ("0x10", "is not a plain decimal number ('0x10')"),
        ("010", "is not a plain decimal number ('010')"),
        ("1_000", "is not a plain decimal number ('1_000')"),
        ("1:30", "is not a plain decimal number ('1:30')"),
        ("[1]", "pricing.gpus.H100.on_demand (line 3): expected a number, got a list"),
        ("{a: 1}", "expected a number, got a mapping"),
        ("1e999", "is out of range"),
        ("4.5000000001", "pricing.gpus.H100.on_demand (line 3): has more than 9 decimal places"),
    ],
)
def test_a_price_must_be_a_finite_non_negative_plain_decimal(value: str, message: str) -> None:
    problem = only(BASE.replace("4.50", value))
    assert message in problem
    assert problem.startswith("pricing.gpus.H100.on_demand (line 3): ")


def test_the_decimal_places_message_says_why() -> None:
    assert "the meter keeps whole nano-dollars" in only(BASE.replace("4.50", "0.0000000001"))
    load(BASE.replace("4.50", "4.500000000000"))  # trailing zeros are not precision


def test_an_empty_value_where_a_number_is_expected() -> None:
    assert only(BASE + "tick_seconds:\n") == "tick_seconds (line 9): is empty; expected a number"


def test_integers_must_be_whole() -> None:
    assert only(BASE + "max_owners: 2.5\n") == "max_owners (line 9): must be a whole number, got 2.5"
    assert "is a string" in only(BASE + "max_owners: '20'\n")
    assert only(BASE + "max_owners: 0\n") == "max_owners (line 9): must be >= 1, got 0"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("tick_seconds: 0\n", "tick_seconds (line 9): must be > 0, got 0"),
        ("tick_seconds: 301\n", "tick_seconds (line 9): must be <= 300, got 301"),
        ("tick_seconds: 10\nwindow_seconds: 5\n", "window_seconds (line 10): must be >= tick_seconds (10)"),
        (
            "limits: {scrape_timeout_seconds: 9}\n",
            "limits.scrape_timeout_seconds (line 9): must be <= tick_seconds",
        ),
        ("limits: {max_body_bytes: -1}\n", "limits.max_body_bytes (line 9): must be >= 1, got -1"),
    ],
)
def test_timing_bounds(extra: str, expected: str) -> None:
    assert only(BASE + extra) == expected


def test_duplicate_keys_at_any_depth_are_refused() -> None:
    found = problems(
        """\
        node: a
        pricing:
          gpus:
            H100: {on_demand: 4.50, on_demand: 1}
        inventory:
          gpus:
            - {hardware: H100, count: 1, capacity: on_demand, count: 2}
        node: b
        """
    )
    assert found == [
        "pricing.gpus.H100.on_demand (line 4): duplicate key (first at line 4); YAML would keep the last",
        "inventory.gpus[0].count (line 7): duplicate key (first at line 7); YAML would keep the last",
        "node (line 8): duplicate key (first at line 1); YAML would keep the last",
    ]


def test_unknown_fields_at_every_level_suggest_the_right_name() -> None:
    found = problems(BASE.replace("pricing:\n", "pricing:\n  egres_usd_per_gb: 1\n") + "tick_second: 5\n")
    assert found == [
        "tick_second (line 10): unknown field 'tick_second'; did you mean 'tick_seconds'?",
        "pricing.egres_usd_per_gb (line 2): unknown field 'egres_usd_per_gb'; did you mean 'egress_usd_per_gb'?",
    ]
    deep = only(BASE.replace('gpus: ["0"]}', 'gpu: ["0"]}'))
    assert deep == "inventory.workloads[0].gpu (line 8): unknown field 'gpu'; did you mean 'gpus'?"
    assert "allowed: " in only(BASE + "zzz: 1\n")


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("{on_demand: 4.50}", "{ondemand: 4.50}", "pricing.gpus.H100.ondemand (line 3): unknown capacity class 'ondemand'; did you mean 'on_demand'?"),
        ("capacity: on_demand}", "capacity: preemptible}", "inventory.gpus[0].capacity (line 6): unknown capacity class 'preemptible'; allowed: "),
        ("model: m,", "model: m, kind: serving,", "inventory.workloads[0].kind (line 8): unknown workload kind 'serving'"),
    ],
)  # fmt: skip
def test_unknown_choices(old: str, new: str, expected: str) -> None:
    assert only(BASE.replace(old, new)).startswith(expected)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            'gpus: ["0"]}',
            "gpus: {a: 0}}",
            "inventory.workloads[0].gpus (line 8): expected a list, got a mapping",
        ),
        (
            "H100: {on_demand: 4.50}",
            "H100: 4.50",
            "pricing.gpus.H100 (line 3): expected a mapping, got '4.50'",
        ),
        ("model: m,", "model: [m],", "inventory.workloads[0].model (line 8): expected text, got a list"),
        ("model: m,", "model: no,", "inventory.workloads[0].model (line 8): is a boolean (no) to YAML"),
        ("model: m,", "model: ~,", "inventory.workloads[0].model (line 8): is empty"),
        ("model: m,", "model: '',", "inventory.workloads[0].model (line 8): must not be empty"),
    ],
)
def test_wrong_types(old: str, new: str, expected: str) -> None:
    assert only(BASE.replace(old, new)).startswith(expected)


def test_the_document_must_be_a_mapping() -> None:
    assert only("- a\n- b\n") == "document (line 1): expected a mapping, got a list"


def test_booleans_are_true_or_false_only() -> None:
    assert only(BASE.replace("pricing:\n", "pricing:\n  catalogue: yes\n")) == (
        "pricing.catalogue (line 2): must be true or false, got 'yes'"
    )


@pytest.mark.parametrize(
    ("value", "tag"),
    [
        ("!!python/object:os.system x", "!!python/object:os.system"),
        ("!!python/object/apply:os.system [echo hi]", "!!python/object/apply:os.system"),
        ("!!float 4.5", "!!float"),
        ("!!str 4.5", "!!str"),
        ("!price 4.5", "!price"),
        ("! 4.5", "!"),
    ],
)
def test_explicit_tags_are_refused(value: str, tag: str) -> None:
    assert only(BASE.replace("4.50", value)) == (
        f"pricing.gpus.H100.on_demand (line 3): explicit tag {tag} is not allowed; remove it (no tags are needed)"
    )


def test_anchors_and_aliases_are_refused() -> None:
    found = problems(BASE.replace("{on_demand: 4.50}", "&h {on_demand: 4.50}\n    H200: *h"))
    assert found == [
        "pricing.gpus.H100 (line 3): anchor &h is not allowed; write each value out",
        "pricing.gpus.H200 (line 4): alias *h is not allowed (aliases can expand exponentially: "
        "'billion laughs'); write the value out",
    ]


def test_billion_laughs_is_refused_quickly() -> None:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    with pytest.raises(ConfigError) as info:
        load_config_text("\n".join(lines) + "\n")
    found = info.value.problems
    assert any("alias *a8 is not allowed" in p for p in found)  # reported, never expanded
    assert len(found) == 101  # 10 anchors + 81 aliases + 10 unknown fields: 100 listed, 1 counted


def test_at_most_100_problems_are_listed_then_counted() -> None:
    text = BASE + "".join(f"x{i}: 1\n" for i in range(150))
    with pytest.raises(ConfigError) as info:
        load_config_text(text)
    assert len(info.value.problems) == 101
    assert info.value.problems[-1] == "document: 50 more problem(s) not shown"


def test_merge_keys_need_aliases_and_are_refused() -> None:
    assert any("alias" in p for p in problems(BASE + "base: &b {node: x}\n<<: *b\n"))


def test_a_file_over_1_mib_is_refused(tmp_path: Path) -> None:
    big = BASE + "#" + "x" * yamlnodes.MAX_BYTES + "\n"
    path = tmp_path / "big.yaml"
    path.write_text(big)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [f"document: is larger than {yamlnodes.MAX_BYTES} bytes (1 MiB)"]
    with pytest.raises(ConfigError, match="the limit is 1048576"):
        load_config_text(big)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The parser's own wording differs between libyaml and pure PyYAML: only the line is ours.
        (BASE + "node: [a\n", "document (line 10): invalid YAML: "),
        ("node: a\n  bad: indent\n", "document (line 2): invalid YAML: mapping values are not allowed"),
        ("node: 'open\n", "document (line 2): invalid YAML: "),
        ("\tnode: a\n", "document (line 1): invalid YAML: "),
        ("node: a\x07\n", "document (line 1): invalid YAML: character #x0007 is not allowed"),
        ("node: a\n---\nnode: b\n", "document (line 2): a second document (---) is not allowed"),
        ("[" * 100, "document (line 1): nested deeper than 20 levels"),
    ],
)
def test_invalid_yaml_names_the_line(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(text)
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith(expected), info.value.problems


def test_a_tab_in_the_indentation_is_named() -> None:
    with pytest.raises(ConfigError, match=r"a tab: indent with spaces"):
        load_config_text("pricing:\n\tcatalogue: true\n")


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n", "~\n"])
def test_an_empty_file_is_refused(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(text)
    assert info.value.problems == ["document (line 1): is empty; expected a mapping of settings"]


def test_unreadable_and_non_utf8_files_raise_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"node: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"is not UTF-8 \(byte 9\)"):
        load_config(bad)


def test_missing_required_fields_are_named_at_their_parent_line() -> None:
    found = problems(
        BASE.replace("{hardware: H100, count: 2, capacity: on_demand}", "{count: 2}").replace(
            "{pod: p0, namespace: ns, model: m,", "{namespace: ns,"
        )
    )
    assert found == [
        "inventory.gpus[0].hardware (line 6): required field is missing",
        "inventory.gpus[0].capacity (line 6): required field is missing",
        "inventory.workloads[0].pod (line 8): required field is missing",
        "inventory.workloads[0].model (line 8): required field is missing",
    ]


def test_owned_hardware_requires_capex_and_years() -> None:
    found = problems(BASE.replace("pricing:\n", "pricing:\n  owned: {A100: {watts: 1}}\n"))
    assert found == [
        "pricing.owned.A100.capex_usd (line 2): required field is missing",
        "pricing.owned.A100.amortisation_years (line 2): required field is missing",
    ]


def test_owned_price_given_twice_is_refused() -> None:
    text = BASE.replace("{on_demand: 4.50}", "{on_demand: 4.50, owned: 1}").replace(
        "pricing:\n", "pricing:\n  owned: {H100: {capex_usd: 1, amortisation_years: 1}}\n"
    )
    assert only(text) == "pricing.owned.H100 (line 2): pricing.gpus.H100.owned also prices it; keep one"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("count: 2,", "count: 2, ids: [a],", "inventory.gpus[0] (line 6): give exactly one of count or ids"),
        ("count: 2,", "", "inventory.gpus[0] (line 6): give exactly one of count or ids"),
        ("count: 2,", "count: 100000,", "inventory.gpus[0].count (line 6): must be <= 1024, got 100000"),
        ('gpus: ["0"]}', 'gpus: ["7"]}', "inventory.workloads[0].gpus[0] (line 8): GPU id '7' is not in inventory.gpus (known: 0, 1)"),
        ('gpus: ["0"]}', 'gpus: ["0", 0]}', "inventory.workloads[0].gpus[1] (line 8): GPU id '0' is listed twice"),
        ('gpus: ["0"]}', 'gpus: [{id: "0", share: 0}]}', "inventory.workloads[0].gpus[0].share (line 8): must be >= 1, got 0"),
        ('gpus: ["0"]}', 'gpus: [{share: 2}]}', "inventory.workloads[0].gpus[0].id (line 8): required field is missing"),
        ("capacity: on_demand}", "capacity: on_demand, utilization: 1.5}", "inventory.gpus[0].utilization (line 6): must be <= 1"),
        ("model: m,", "model: m, storage_gb: -5,", "inventory.workloads[0].storage_gb (line 8): must be >= 0, got -5"),
    ],
)  # fmt: skip
def test_inventory_rules(old: str, new: str, expected: str) -> None:
    assert only(BASE.replace(old, new)).startswith(expected)


def test_gpu_ids_are_unique() -> None:
    text = BASE.replace("count: 2,", 'ids: ["0", "1"],')
    text = text.replace(
        "  workloads:", '    - {hardware: H100, ids: ["1"], capacity: on_demand}\n  workloads:'
    )
    assert (
        only(text)
        == "inventory.gpus[1].ids[0] (line 7): duplicate GPU id '1' (already defined by inventory.gpus[0])"
    )


def test_count_after_explicit_ids_cannot_collide_silently() -> None:
    text = (
        BASE.replace("count: 2,", 'ids: ["1"],')
        .replace('gpus: ["0"]}', 'gpus: ["1"]}')
        .replace("  workloads:", "    - {hardware: H100, count: 2, capacity: on_demand}\n  workloads:")
    )
    assert only(text).startswith("inventory.gpus[1].count (line 7): duplicate GPU id '1'")


def test_pod_and_namespace_are_unique() -> None:
    text = BASE + "    - {pod: p0, namespace: ns, model: other}\n"
    assert (
        only(text)
        == "inventory.workloads[1] (line 9): duplicate pod 'p0' in namespace 'ns' (first at line 8)"
    )
    load(BASE + "    - {pod: p0, namespace: other, model: m}\n")  # same pod name, other namespace


def test_targets_of_an_invalid_workload_are_still_checked() -> None:
    found = problems(BASE.replace('model: m, gpus: ["0"]}', 'gpus: ["0"], targets: [{url: "ftp://a:1/m"}]}'))
    assert found == [
        "inventory.workloads[0].model (line 8): required field is missing",
        "inventory.workloads[0].targets[0].url (line 8): must start with http:// or https:// (or be file:///path), got 'ftp://a:1/m'",
    ]


def test_target_names_are_unique() -> None:
    text = (
        BASE.replace('gpus: ["0"]}', 'targets: [{url: "http://a:1/m", name: t}]}')
        + '    - {pod: p1, namespace: ns, model: m, targets: [{url: "http://b:1/m", name: t}]}\n'
    )
    assert (
        only(text)
        == "inventory.workloads[1].targets (line 9): target name 't' is used twice; names must be unique"
    )


def test_an_inference_target_may_name_its_adapter_label() -> None:
    text = BASE.replace('gpus: ["0"]}', 'targets: [{url: "http://a:1/m", adapter_label: lora}]}')
    (workload,) = load(text).workloads
    assert workload.targets[0].adapter_label == "lora"
    assert workload.targets[0].owner == workload.owner


def test_an_inference_target_may_name_its_callers_label_but_not_a_training_one() -> None:
    text = BASE.replace('gpus: ["0"]}', 'targets: [{url: "http://a:1/m", tenant_label: team}]}')
    assert load(text).workloads[0].targets[0].tenant_label == "team"
    for target, expected in (
        (
            '{url: "http://a:1/m", server: training, tenant_label: team}',
            "is for inference targets, not training",
        ),
        ('{url: "http://a:1/m", adapter_label: lora, tenant_label: lora}', "one label, one job"),
        ('{url: "http://a:1/m", tenant_label: "team-id"}', "is not a Prometheus label name"),
    ):
        problem = only(BASE.replace('gpus: ["0"]}', f"targets: [{target}]}}"))
        assert "targets[0].tenant_label" in problem and expected in problem, problem


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (
            '{url: "http://a:1/m", adapter_label: "lora-name"}',
            "is not a Prometheus label name, got 'lora-name'",
        ),
        (
            '{url: "http://a:1/m", server: training, adapter_label: lora}',
            "is for inference targets, not training",
        ),
        ('{url: "http://a:1/m", adapter_label: le}', "'le' is a label Prometheus reserves"),
    ],
)
def test_a_bad_adapter_label_is_refused(target: str, expected: str) -> None:
    problem = only(BASE.replace('gpus: ["0"]}', f"targets: [{target}]}}"))
    assert problem.startswith("inventory.workloads[0].targets[0].adapter_label (line 8): "), problem
    assert expected in problem


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ftp://a:1/m", "must start with http:// or https:// (or be file:///path)"),
        ("file:relative.prom", "a file target is file:///absolute/path"),
        ("http://:1/m", "has no host"),
        ("http://a/metrics", "needs an explicit port"),
        ("http://a:99999/m", "is not a valid URL"),
        ("http://a:1", "needs a path, e.g. /metrics"),
        ("http://u:secret@a:1/m", "must not carry credentials"),
        ("http://a:1/m#x", "must not have a #fragment"),
        ("127.0.0.1:8000/metrics", "must start with http:// or https:// (or be file:///path)"),
    ],
)
def test_target_urls_are_http_host_port_path(url: str, expected: str) -> None:
    problem = only(BASE.replace('gpus: ["0"]}', f'targets: [{{url: "{url}"}}]}}'))
    assert problem.startswith("inventory.workloads[0].targets[0].url (line 8): ")
    assert expected in problem


def test_server_names_come_from_the_servers_table() -> None:
    from exporter.engines.profiles import SERVERS

    assert known_servers() == ("auto", *sorted(SERVERS))
    text = BASE.replace('gpus: ["0"]}', 'targets: [{url: "http://a:1/m", server: sglang}]}')
    assert load(text).targets[0].server == "sglang"
    wrong = BASE.replace('gpus: ["0"]}', 'targets: [{url: "http://a:1/m", server: sglangg}]}')
    assert only(wrong).startswith(
        "inventory.workloads[0].targets[0].server (line 8): unknown server 'sglangg'"
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("currency: EUR", "pricing.currency (line 2): unknown currency (only USD is supported) 'EUR'"),
        ("month: 720h", "pricing.month (line 2): unknown month convention '720h'; did you mean '730h'?"),
        ("energy: {pue: 0.9}", "pricing.energy.pue (line 2): must be >= 1, got 0.9"),
        ("budgets: {usd_per_million_tokens: {teams: {a: 0}}}", "pricing.budgets.usd_per_million_tokens.teams.a (line 2): must be > 0"),
        ('budgets: {usd_per_million_tokens: {models: {"org/m-1.5": -1}}}', 'pricing.budgets.usd_per_million_tokens.models["org/m-1.5"] (line 2): must be > 0'),
        ("output_input_weight: 0", "pricing.output_input_weight (line 2): must be > 0, got 0"),
    ],
)  # fmt: skip
def test_pricing_rules(line: str, expected: str) -> None:
    assert only(BASE.replace("pricing:\n", f"pricing:\n  {line}\n")).startswith(expected)


def test_five_problems_come_back_together_in_one_error() -> None:
    text = """\
        tick_seconds: -5
        pricing:
          gpus:
            H100: {on_demand: "4.50", spot: .nan}
          egress_usd_per_gb: 0.1
          egress_usd_per_gb: 0.2
        inventory:
          gpus:
            - {hardware: H100, count: 1, capacity: spot}
          workloads:
            - {pod: p, namespace: n, model: m, gpus: ["3"], colour: red}
        """
    with pytest.raises(ConfigError) as info:
        load(text)
    assert info.value.problems == [
        "pricing.egress_usd_per_gb (line 6): duplicate key (first at line 5); YAML would keep the last",
        "tick_seconds (line 1): must be > 0, got -5",
        "pricing.gpus.H100.on_demand (line 4): is a string ('4.50'); write it without quotes",
        "pricing.gpus.H100.spot (line 4): is NaN; expected a finite number",
        "inventory.workloads[0].colour (line 11): unknown field 'colour'; allowed: gpus, kind, model, "
        "namespace, pod, role, storage_gb, target_tokens, targets, team",
        "inventory.workloads[0].gpus[0] (line 11): GPU id '3' is not in inventory.gpus (known: 0)",
    ]
    assert str(info.value).startswith("<string>: 6 problem(s):\n  - pricing.egress_usd_per_gb")


# --- prices from the catalogue ---------------------------------------------------------------


def test_catalogue_fallback_is_marked_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    text = BASE.replace(
        "capacity: on_demand}", "capacity: on_demand}\n    - {hardware: B200, ids: [b], capacity: spot}"
    )
    with caplog.at_level(logging.WARNING, logger="exporter.config.pricing"):
        cfg = load(text)
    price = cfg.pricing.gpu_price("B200", "spot")
    assert price is not None
    assert (price.source, price.usd_per_hour, price.date) == ("catalogue", Decimal("2.07"), "April 2026")
    assert "Spheron" in price.reference
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "hardware=B200 capacity=spot" in message and "set pricing.gpus.B200.spot" in message


def test_all_catalogue_rows_not_overridden_are_kept_for_hardware_found_at_run_time() -> None:
    cfg = load(BASE.replace("{on_demand: 4.50}", "{on_demand: 4.50}\n    B200: {spot: 1.99}"))
    assert cfg.pricing.gpu_price("B200", "spot").source == "config"  # type: ignore[union-attr]
    assert cfg.pricing.gpu_price("B200", "on_demand").source == "catalogue"  # type: ignore[union-attr]
    assert cfg.pricing.gpu_price("H200", "contract").source == "catalogue"  # type: ignore[union-attr]
    assert cfg.pricing.gpu_price("H100", "on_demand").source == "config"  # type: ignore[union-attr]


def test_a_price_for_a100_prices_both_memory_sizes_the_gpu_names_tell_apart() -> None:
    """NVML says "A100-SXM4-80GB" → A100-80GB (sources/gpu/names.py). A file that prices plain A100
    prices both sizes at its own price, over the catalogue's rows for them; without it, the
    catalogue's rows apply; a plain "A100" in a static inventory is told how to name it."""
    cfg = load(
        BASE.replace("{on_demand: 4.50}", "{on_demand: 4.50}\n    A100: {on_demand: 1.10, spot: 0.70}")
    )
    for variant in ("A100-40GB", "A100-80GB"):
        for capacity, usd in (("on_demand", "1.10"), ("spot", "0.70")):
            price = cfg.pricing.gpu_price(variant, capacity)
            assert price is not None and price.source == "config" and price.usd_per_hour == Decimal(usd)
            assert price.hardware == variant and "pricing.gpus.A100" in price.reference, price
    a80 = cfg.pricing.gpu_price("A100-80GB", "reserved")  # not in the file: the catalogue's row
    assert a80 is not None and a80.source == "catalogue"
    plain = load(BASE)
    assert plain.pricing.gpu_price("A100-80GB", "on_demand").source == "catalogue"  # type: ignore[union-attr]
    assert plain.pricing.gpu_price("A100", "on_demand") is None
    message = only(BASE.replace("{hardware: H100, count: 2, capacity: on_demand}",
                                "{hardware: A100, count: 2, capacity: on_demand}"))  # fmt: skip
    assert "name the GPUs A100-40GB or A100-80GB: the catalogue prices those" in message, message


def test_catalogue_false_uses_only_the_file_and_names_the_fix() -> None:
    text = BASE.replace("pricing:\n", "pricing:\n  catalogue: false\n").replace(
        "capacity: on_demand}", "capacity: on_demand}\n    - {hardware: B200, ids: [b], capacity: on_demand}"
    )
    assert only(text) == (
        "inventory.gpus[1] (line 8): no price for B200 on_demand and pricing.catalogue is false: "
        "set pricing.gpus.B200.on_demand (or set pricing.catalogue: true for the catalogue default "
        "7.00 from market survey, 2026)"
    )
    cfg = load(BASE.replace("pricing:\n", "pricing:\n  catalogue: false\n"))
    assert set(cfg.pricing.gpu_prices) == {("H100", "on_demand")}
    assert cfg.pricing.catalogue_date == ""


def test_a_gpu_nobody_prices_is_an_error_even_with_the_catalogue() -> None:
    assert only(BASE.replace("capacity: on_demand", "capacity: spot")) == (
        "inventory.gpus[0] (line 6): no price for H100 spot: set pricing.gpus.H100.spot "
        "(the catalogue of 2026-12-07 has none)"
    )
    owned = only(BASE.replace("capacity: on_demand", "capacity: owned"))
    assert "set pricing.gpus.H100.owned, or pricing.owned.H100 with capex_usd and amortisation_years" in owned


def test_format_price_table_marks_catalogue_rows() -> None:
    cfg = load_config(FIXTURES / "full.yaml")
    table = format_price_table(cfg)
    lines = table.splitlines()
    b200 = next(i for i, line in enumerate(lines) if line.split()[:2] == ["B200", "spot"])
    assert "2.07" in lines[b200] and "CATALOGUE" in lines[b200] and "April 2026" in lines[b200]
    assert "CATALOGUE DEFAULT — set pricing.gpus.B200.spot to your real price" in lines[b200 + 1]
    h100 = next(line for line in lines if line.split()[:2] == ["H100", "on_demand"])
    assert "4.50" in h100 and "config" in h100 and "pricing.gpus.H100.on_demand (line 12)" in h100
    assert "CATALOGUE" not in h100
    assert sum(line.split()[:1] == ["H100"] for line in lines) == 5  # every capacity class
    for needle in (
        *("egress      0.09 $/GB", "cross-zone  0.01", "storage     0.08 $/GB-month", "calendar"),
        *("+10 %", "0.50 $/node-hour", "PUE 1.3", "owned A100", "~0.855578371", "20-40 %"),
        *("meta-llama/Llama-3.3-70B-Instruct: 0.80", "catalogue 2026-12-07 in use"),
    ):  # the columns' widths follow the longest label: compared with runs of blanks as one
        assert " ".join(needle.split()) in " ".join(table.split()), needle


def test_format_price_table_hints_at_the_catalogue_egress_when_unset() -> None:
    table = format_price_table(load(BASE))
    assert "Egress is 0: the catalogue's 0.10 $/GB (GMI Cloud, 2026" in table


# --- properties ------------------------------------------------------------------------------


@st.composite
def decimal_texts(draw: st.DrawFn) -> tuple[str, Decimal]:
    value = draw(st.decimals(min_value=0, max_value=Decimal("1e12"), places=9, allow_nan=False))
    style = draw(st.sampled_from(["str", "f", "e", "E"]))
    text = {"str": str(value), "f": f"{value:f}", "e": f"{value:e}", "E": f"{value:E}"}[style]
    return text, value


@given(decimal_texts())
def test_valid_decimal_texts_round_trip_exactly(case: tuple[str, Decimal]) -> None:
    text, value = case
    assert yamlnodes.parse_decimal(text) == value
    cfg = load_config_text(BASE.replace("pricing:\n", f"pricing:\n  egress_usd_per_gb: {text}\n"))
    assert cfg.pricing.egress_usd_per_gb == value
    assert isinstance(cfg.pricing.egress_usd_per_gb, Decimal)


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_parse_decimal_reads_every_finite_decimal_it_accepts_exactly(value: Decimal) -> None:
    text = f"{value:f}" if abs(value.adjusted()) < 20 else f"{value:e}"
    parsed = yamlnodes.parse_decimal(text)
    assert parsed is None or parsed == value


_VOCABULARY = [
    "node", "tick_seconds", "window_seconds", "pricing", "gpus", "inventory", "workloads", "H100",
    "on_demand", "spot", "owned", "capex_usd", "ids", "count", "hardware", "capacity", "pod", "url",
]  # fmt: skip
_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8), st.sampled_from(_VOCABULARY)
)
_trees = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.sampled_from(_VOCABULARY), children, max_size=5)
    ),
    max_leaves=30,
)


def _load_or_config_error(text: str) -> None:
    try:
        cfg = load_config_text(text)
    except ConfigError as exc:
        assert exc.problems and all(isinstance(p, str) for p in exc.problems)
    else:
        assert isinstance(cfg, ExporterConfig)


@settings(max_examples=300)
@given(st.text(alphabet=st.sampled_from(list("{}[]:,-!&*#|>'\"\n\t ?%@`ab01.~\\\x00\x85é")), max_size=80))
def test_garbage_yaml_only_ever_raises_config_error(text: str) -> None:
    _load_or_config_error(text)


@settings(max_examples=300)
@given(_trees)
def test_random_documents_only_ever_raise_config_error(tree: object) -> None:
    _load_or_config_error(yaml.dump(tree, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper)))


@given(st.text())
def test_arbitrary_text_only_ever_raises_config_error(text: str) -> None:
    _load_or_config_error(text)


def test_a_serving_role_is_read_and_checked() -> None:
    text = BASE.replace('model: m, gpus: ["0"]}', 'model: m, role: decode, gpus: ["0"]}')
    assert load(text).workloads[0].role == "decode"
    wrong = BASE.replace('model: m, gpus: ["0"]}', 'model: m, role: both, gpus: ["0"]}')
    assert "unknown serving role 'both'" in only(wrong)


# --- https endpoints -----------------------------------------------------------------------


def test_an_https_target_carries_its_trust_and_token() -> None:
    target = '{url: "https://10.0.0.7:8443/metrics", https: {ca_file: /etc/cpm/ca.crt, server_name: vllm.internal, bearer_token_file: /var/run/token}}'
    (workload,) = load(BASE.replace('gpus: ["0"]}', f"targets: [{target}]}}")).workloads
    client = workload.targets[0].client
    assert (client.ca_file, client.server_name, client.bearer_token_file) == (
        "/etc/cpm/ca.crt", "vllm.internal", "/var/run/token"
    )  # fmt: skip
    assert not client.insecure_skip_verify


@pytest.mark.parametrize(
    ("https", "url", "expected"),
    [
        ("{bearer_token_file: /t}", "http://a:1/m", "is for https:// URLs, got 'http://a:1/m'"),
        ("{ca_file: relative.crt}", "https://a:1/m", "must be an absolute path, got 'relative.crt'"),
        ("{insecure_skip_verify: yes}", "https://a:1/m", "true or false"),
        ("{insecure_skip_verify: true, ca_file: /ca.crt}", "https://a:1/m", "verifies nothing"),
        ("{client_cert: /c.crt}", "https://a:1/m", "unknown field 'client_cert'"),
        ("{server_name: a..b}", "https://a:1/m", "is not a host name or IP address, got 'a..b'"),
    ],
)
def test_bad_https_settings_are_refused(https: str, url: str, expected: str) -> None:
    problem = only(BASE.replace('gpus: ["0"]}', f'targets: [{{url: "{url}", https: {https}}}]}}'))
    assert problem.startswith("inventory.workloads[0].targets[0].https"), problem
    assert expected in problem


def test_the_kubelets_cadvisor_over_https_with_the_nodes_ip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOST_IP", "10.1.2.3")
    cfg = load(
        BASE
        + textwrap.dedent("""\
        node_source:
          cadvisor_url: https://${HOST_IP}:10250/metrics/cadvisor
          cadvisor_https: {insecure_skip_verify: true, bearer_token_file: /var/run/secrets/kubernetes.io/serviceaccount/token}
        kubernetes:
          scrape_https: {ca_file: /etc/cpm/pods-ca.crt}
        """)
    )
    assert cfg.node_source.cadvisor_url == "https://10.1.2.3:10250/metrics/cadvisor"
    assert cfg.node_source.cadvisor_client.insecure_skip_verify
    assert cfg.node_source.cadvisor_client.bearer_token_file.endswith("/serviceaccount/token")
    assert cfg.kubernetes.scrape_client.ca_file == "/etc/cpm/pods-ca.crt"


def test_an_unset_environment_variable_in_a_url_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOST_IP", raising=False)
    problem = only(  # one problem: the https settings of the unusable URL are not a second one
        BASE + "node_source:\n  cadvisor_url: https://${HOST_IP}:10250/metrics/cadvisor\n"
        "  cadvisor_https: {insecure_skip_verify: true}\n"
    )
    assert problem == (
        "node_source.cadvisor_url (line 10): environment variable HOST_IP is not set, "
        "in 'https://${HOST_IP}:10250/metrics/cadvisor'"
    )


def test_an_ipv6_node_ip_gets_its_brackets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOST_IP", "fd00::7")
    cfg = load(BASE + "node_source:\n  cadvisor_url: https://${HOST_IP}:10250/metrics/cadvisor\n")
    assert cfg.node_source.cadvisor_url == "https://[fd00::7]:10250/metrics/cadvisor"
    cfg = load(BASE + "node_source:\n  cadvisor_url: https://[${HOST_IP}]:10250/metrics/cadvisor\n")
    assert cfg.node_source.cadvisor_url == "https://[fd00::7]:10250/metrics/cadvisor"


def test_the_documented_empty_defaults_of_kubernetes_may_be_written_out() -> None:
    """``node_name: ""`` and ``kubeconfig: ""`` are the defaults ($NODE_NAME, in-cluster), as written
    in the README's reference; nothing at all (YAML null) is still a value forgotten."""
    written = load(BASE + "kubernetes: {enabled: true, node_name: \"\", kubeconfig: ''}\n").kubernetes
    assert (written.node_name, written.kubeconfig) == ("", "")
    assert written == load(BASE + "kubernetes: {enabled: true}\n").kubernetes
    named = load(BASE + "kubernetes: {node_name: gpu-7, kubeconfig: kube/dev-cluster.yaml}\n").kubernetes
    assert (named.node_name, named.kubeconfig) == ("gpu-7", "kube/dev-cluster.yaml")
    assert problems(BASE + "kubernetes:\n  node_name:\n  kubeconfig: ' '\n") == [
        "kubernetes.node_name (line 10): is empty",
        "kubernetes.kubeconfig (line 11): must not be empty",
    ]


def test_a_token_for_pods_is_never_sent_unverified() -> None:
    problem = only(
        BASE + "kubernetes:\n  scrape_https: {insecure_skip_verify: true, bearer_token_file: /t}\n"
    )
    assert problem.startswith(
        "kubernetes.scrape_https (line 10): bearer_token_file with insecure_skip_verify"
    )


def test_https_settings_without_their_url_are_reported() -> None:
    problem = only(BASE + "node_source:\n  cadvisor_https: {insecure_skip_verify: true}\n")
    assert problem == "node_source.cadvisor_https (line 10): has no cadvisor_url to apply to"


TARGET = BASE.replace('gpus: ["0"]}', 'gpus: ["0"], targets: [{url: "http://a:1/metrics", %s}]}')


def test_a_targets_model_map_is_read_and_each_declared_name_checked() -> None:
    llama = "meta-llama/Llama-3.1-8B-Instruct"
    (target,) = load(TARGET % f"models: {{tensorrt_llm: {llama}, ensemble: {llama}}}").targets
    assert dict(target.models) == {"tensorrt_llm": llama, "ensemble": llama}
    (target,) = load(TARGET % "server: auto").targets
    assert dict(target.models) == {}
    assert problems(TARGET % 'models: {a: "", b: , c: {x: y}, "": m, d: %s}' % ("m" * 129)) == [
        "inventory.workloads[0].targets[0].models.a (line 8): must not be empty",
        "inventory.workloads[0].targets[0].models.b (line 8): is empty",
        "inventory.workloads[0].targets[0].models.c (line 8): expected text, got a mapping",
        'inventory.workloads[0].targets[0].models[""] (line 8): the server\'s model name must not be empty',
        "inventory.workloads[0].targets[0].models.d (line 8): the declared model is 129 characters; "
        "model names are cut at 128",
    ]
    assert only(TARGET % "models: [tensorrt_llm]") == (
        "inventory.workloads[0].targets[0].models (line 8): expected a mapping, got a list"
    )


@pytest.mark.parametrize(
    ("target", "why"),
    [
        (
            "server: tgi, models: {a: b}",
            "server 'tgi' exports no model name: its tokens are filed under the workload's model",
        ),
        (
            "server: llamacpp, models: {a: b}",
            "server 'llamacpp' exports no model name: its tokens are filed under the workload's model",
        ),
        ("token_metric: job_tokens_total, models: {a: b}", "is for inference targets, not training"),
        ("server: training, models: {a: b}", "is for inference targets, not training"),
    ],
)
def test_a_model_map_where_no_model_name_is_read_is_refused(target: str, why: str) -> None:
    assert only(TARGET % target) == f"inventory.workloads[0].targets[0].models (line 8): {why}"


def test_gateways_are_read_with_their_tenant_label_and_model_map() -> None:
    cfg = load(
        BASE
        + """\
gateways:
  - {kind: litellm, url: "http://litellm.gw:4000/metrics/", models: {chat-large: m}}
  - {name: envoy, kind: envoy_ai_gateway, url: "https://envoy.gw:9090/metrics", tenant_label: x_tenant,
     https: {ca_file: /etc/ca.crt}}
max_tenants: 50
gateway_settle_seconds: 900
"""
    )
    litellm, envoy = cfg.gateways
    assert (litellm.name, litellm.kind, litellm.tenant_label, dict(litellm.models)) == (
        "litellm",
        "litellm",
        "",
        {"chat-large": "m"},
    )
    assert (envoy.name, envoy.tenant_label, envoy.client.ca_file) == ("envoy", "x_tenant", "/etc/ca.crt")
    assert (cfg.max_tenants, cfg.gateway_settle_seconds) == (50, 900.0)
    assert load(BASE).gateway_settle_seconds == 300.0
    assert "gateway_settle_seconds" in "\n".join(problems(BASE + "gateway_settle_seconds: 0\n"))


def test_a_bad_gateway_is_refused_with_every_reason() -> None:
    found = problems(
        BASE
        + """\
gateways:
  - {kind: kong, url: "http://a:1/metrics"}
  - {kind: envoy_ai_gateway, url: "http://b:2/metrics"}
  - {kind: litellm, url: "http://c:3/metrics", https: {ca_file: /etc/ca.crt}}
  - {kind: litellm, url: "http://d:4/metrics", tenant_label: "team-id"}
"""
    )
    text = "\n".join(found)
    assert "gateways[0].kind" in text and "unknown gateway kind 'kong'" in text
    assert "gateways[1].tenant_label" in text and "required for envoy_ai_gateway" in text
    assert "gateways[2].https" in text and "is for https:// URLs" in text
    found = "\n".join(
        problems(
            BASE
            + """\
gateways:
  - {kind: counters, url: "http://r:1/metrics", tenant_label: tenant, input_counter: "router prompt"}
  - {kind: litellm, url: "http://c:3/metrics", output_counter: x_total}
"""
        )
    )
    assert "gateways[0].input_counter" in found and "not a Prometheus metric name" in found
    assert "gateways[0].output_counter" in found and "required" in found
    assert "gateways[1].output_counter" in found and "is for kind counters" in found
    assert "gateways[3].tenant_label" in text and "not a Prometheus label name" in text
    assert "gateways[3].name" in text and "names another gateway" in text  # two named litellm


def test_a_published_table_of_ones_own_is_read_at_load_and_a_bad_one_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    good = tmp_path / "rows.yaml"
    good.write_text('date: "2026-12-01"\nrows:\n  - {id: r1, metric: usd_per_million_tokens, value: 0.1, hardware: H100, '
                    "model: m, model_class: llama-8b, precision: bf16, engine: vLLM, conditions: c, source: s, "
                    "date: December 2026}\n")  # fmt: skip
    cfg = load(BASE + f'published_table: "{good}"\n')
    assert cfg.published is not None and [r.id for r in cfg.published] == ["r1"]
    assert load(BASE).published is None  # the packaged table, read by the runtime
    missing = "\n".join(problems(BASE + f'published_table: "{tmp_path / "nope.yaml"}"\n'))
    assert "published_table" in missing and "cannot read" in missing
    bad = tmp_path / "bad.yaml"
    bad.write_text('date: "2026-12-01"\nrows:\n  - {id: r1, metric: cost}\n')
    assert "published_table" in "\n".join(problems(BASE + f'published_table: "{bad}"\n'))
    # Not UTF-8, or too large: a problem of the config (a reload keeps the last good one), not a crash.
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b'date: "2026-12-01"\n# caf\xe9\nrows: []\n')
    assert "is not UTF-8" in "\n".join(problems(BASE + f'published_table: "{latin}"\n'))
    huge = tmp_path / "huge.yaml"
    huge.write_bytes(b"#" * (2**20 + 1))
    assert "larger than" in "\n".join(problems(BASE + f'published_table: "{huge}"\n'))
