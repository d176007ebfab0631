"""The dated default catalogue: cited, dated, valid, and only the sourced facts it names."""

from __future__ import annotations

import datetime
import re
from decimal import Decimal

import pytest

from exporter.config.load import (
    Catalogue,
    CatalogueFact,
    CatalogueRow,
    fact_date,
    load_catalogue,
    parse_catalogue,
)
from exporter.errors import ConfigError
from exporter.records import CAPACITY_CLASSES
from exporter.yamlstrict.readers import decimal_places


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue()


def test_the_newest_packaged_catalogue_loads(catalogue: Catalogue) -> None:
    assert catalogue.date == "2026-12-07"
    assert catalogue.name == "catalogue-2026-12-07.yaml"
    assert load_catalogue() is catalogue  # read once per process


def test_every_row_has_a_source_and_a_date_no_later_than_the_catalogue(catalogue: Catalogue) -> None:
    as_of = datetime.date.fromisoformat(catalogue.date)
    facts: list[CatalogueRow | CatalogueFact] = [*catalogue.rows, catalogue.egress_usd_per_gb]
    for fact in [*facts, catalogue.all_in_uplift_percent]:
        assert fact.source.strip() and fact.date.strip(), fact
        assert datetime.date(2026, 1, 1) <= fact_date(fact.date) <= as_of, fact


def test_classes_are_valid_and_prices_positive_in_nano_dollars(catalogue: Catalogue) -> None:
    assert catalogue.rows
    for row in catalogue.rows:
        assert row.capacity in CAPACITY_CLASSES
        assert isinstance(row.usd_per_hour, Decimal) and row.usd_per_hour > 0
        assert decimal_places(row.usd_per_hour) <= 9
    pairs = [(r.hardware, r.capacity) for r in catalogue.rows]
    assert len(pairs) == len(set(pairs))


def test_rows_are_exactly_the_reported_facts(catalogue: Catalogue) -> None:
    prices = {(r.hardware, r.capacity): r.usd_per_hour for r in catalogue.rows}
    assert prices == {
        # AWS EC2 list prices, us-east-1 (instance price ÷ GPUs per instance)
        ("A100-40GB", "on_demand"): Decimal("2.74470525"),
        ("A100-80GB", "on_demand"): Decimal("3.43088125"),
        ("H100", "on_demand"): Decimal("6.88"),
        ("H200", "on_demand"): Decimal("7.912"),
        ("L4", "on_demand"): Decimal("0.8048"),
        ("L40S", "on_demand"): Decimal("1.861"),
        ("A10G", "on_demand"): Decimal("1.006"),
        ("A100-40GB", "reserved"): Decimal("1.74013675"),
        ("A100-80GB", "reserved"): Decimal("2.175170625"),
        ("L4", "reserved"): Decimal("0.52392"),
        ("L40S", "reserved"): Decimal("1.17243"),
        ("A10G", "reserved"): Decimal("0.63378"),
        # DigitalOcean list price
        ("MI300X", "on_demand"): Decimal("2.59"),
        # market-2026.md
        ("H100", "contract"): Decimal("2.50"),
        ("H200", "contract"): Decimal("3.00"),
        ("B200", "contract"): Decimal("4.50"),
        ("B300", "contract"): Decimal("4.50"),
        ("B200", "spot"): Decimal("2.07"),
        ("B200", "on_demand"): Decimal("7.00"),
        ("B200", "reserved"): Decimal("4.20"),
    }
    # The driver names both A100 sizes "A100"; their prices differ, so no row guesses which one.
    assert not [r for r in catalogue.rows if r.hardware == "A100"]
    # No source prices owned hardware or H100/H200 reserved: those are absent, not guessed.
    assert not [r for r in catalogue.rows if r.capacity == "owned"]
    assert catalogue.row("H100", "reserved") is None and catalogue.row("H200", "reserved") is None


# Issue 19 item 4: the GPUs users actually run each have at least an on-demand row.
ISSUE_HARDWARE = ("A100-40GB", "A100-80GB", "L4", "L40S", "A10G", "H100", "H200", "MI300X", "B200")


@pytest.mark.parametrize("hardware", ISSUE_HARDWARE)
def test_every_hardware_users_run_has_an_on_demand_row(catalogue: Catalogue, hardware: str) -> None:
    row = catalogue.row(hardware, "on_demand")
    assert row is not None, hardware
    assert row.source.strip() and row.date.strip()


_PER_INSTANCE = re.compile(r"\$(\d+(?:\.\d+)?)/h ÷ (\d+)")


def test_per_gpu_prices_are_the_instance_price_divided_as_the_note_says(catalogue: Catalogue) -> None:
    divided = [r for r in catalogue.rows if "÷" in r.note]
    assert len(divided) == 13
    for row in divided:
        m = _PER_INSTANCE.search(row.note)
        assert m is not None, row
        assert row.usd_per_hour == Decimal(m[1]) / int(m[2]), row
        assert "us-east-1" in row.source or row.hardware == "MI300X", row  # one region, stated


def test_every_priced_entry_names_its_source_and_date(catalogue: Catalogue) -> None:
    entries: list[CatalogueRow | CatalogueFact] = [
        *catalogue.rows,
        catalogue.egress_usd_per_gb,
        catalogue.all_in_uplift_percent,
    ]
    for entry in entries:
        assert entry.source.strip(), entry
        assert entry.date.strip(), entry
        fact_date(entry.date)  # a date the loader can read, not free text


def test_points_picked_in_ranges_say_so(catalogue: Catalogue) -> None:
    on_demand, reserved = catalogue.row("B200", "on_demand"), catalogue.row("B200", "reserved")
    assert on_demand is not None and reserved is not None
    assert Decimal(6) <= on_demand.usd_per_hour <= Decimal(8) and "midpoint" in on_demand.note
    assert reserved.usd_per_hour == on_demand.usd_per_hour * Decimal("0.60")  # 30-50 % below: 40 %
    assert "midpoint" in reserved.note
    for row in catalogue.rows:
        if row.source == "GPUaaS.com":
            assert row.note.startswith("reported as ~")


def test_egress_is_a_point_in_the_reported_range_and_uplift_is_information(catalogue: Catalogue) -> None:
    egress = catalogue.egress_usd_per_gb
    assert egress.low == egress.high and Decimal("0.08") <= egress.high <= Decimal("0.12")
    assert (egress.source, egress.date) == ("GMI Cloud", "2026") and egress.note
    uplift = catalogue.all_in_uplift_percent
    assert (uplift.low, uplift.high) == (Decimal(20), Decimal(40))


def test_a_row_becomes_a_catalogue_price_with_its_citation(catalogue: Catalogue) -> None:
    row = catalogue.row("B200", "on_demand")
    assert row is not None
    price = row.price()
    assert (price.source, price.date, price.usd_per_hour) == ("catalogue", "2026", Decimal("7.00"))
    assert price.reference.startswith("market survey; midpoint")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026", datetime.date(2026, 1, 1)),
        ("mid-2026", datetime.date(2026, 7, 1)),
        ("Q2 2026", datetime.date(2026, 4, 1)),
        ("April 2026", datetime.date(2026, 4, 1)),
        ("Apr 2026", datetime.date(2026, 4, 1)),
        ("2026-05", datetime.date(2026, 5, 1)),
        ("2026-05-17", datetime.date(2026, 5, 17)),
    ],
)
def test_fact_dates_parse(text: str, expected: datetime.date) -> None:
    assert fact_date(text) == expected


@pytest.mark.parametrize("text", ["soon", "Q5 2026", "Smarch 2026", "2026-13", "26"])
def test_unreadable_fact_dates_raise(text: str) -> None:
    with pytest.raises(ValueError):
        fact_date(text)


_GOOD_TAIL = """\
egress_usd_per_gb: {value: 0.10, source: s, date: "2026"}
all_in_uplift_percent: {low: 20, high: 40, source: s, date: "2026"}
"""


def test_a_broken_catalogue_lists_every_problem() -> None:
    text = (
        'date: "2026-11-23"\ncurrency: USD\ngpus:\n'
        "  - {hardware: X1, capacity: spot, usd_per_hour: 0, date: 2026}\n"
        "  - {hardware: X1, capacity: rental, usd_per_hour: 1, source: s, date: sometime}\n"
        "  - {hardware: X2, capacity: spot, usd_per_hour: 1, source: s, date: 2027}\n" + _GOOD_TAIL
    )
    with pytest.raises(ConfigError) as info:
        parse_catalogue(text, "catalogue-2026-11-23.yaml")
    assert info.value.problems == [
        "gpus[0].usd_per_hour (line 4): must be > 0, got 0",
        "gpus[0].source (line 4): required field is missing",
        "gpus[1].capacity (line 5): unknown capacity class 'rental'; allowed: "
        "contract, on_demand, owned, reserved, spot",
        "gpus[1].date (line 5): unreadable date 'sometime' (write 2026, mid-2026, Q1 2026, April 2026 or "
        "2026-04-01)",
        "gpus[2].date (line 6): '2027' is after the catalogue's date 2026-11-23",
    ]


def test_the_catalogue_date_must_match_its_file_name() -> None:
    text = 'date: "2026-11-24"\ncurrency: USD\ngpus: []\n' + _GOOD_TAIL
    with pytest.raises(ConfigError, match="does not match the file name"):
        parse_catalogue(text, "catalogue-2026-11-23.yaml")


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (
            '{hardware: X1, capacity: spot, usd_per_hour: 1, date: "2026"}',
            "gpus[1].source (line 5): required field is missing",
        ),
        (
            "{hardware: X1, capacity: spot, usd_per_hour: 1, source: s}",
            "gpus[1].date (line 5): required field is missing",
        ),
        (
            '{hardware: X1, capacity: spot, usd_per_hour: 1, source: "", date: "2026"}',
            "gpus[1].source (line 5): must not be empty",
        ),
        (
            '{hardware: X1, capacity: spot, usd_per_hour: 1, source: s, date: "  "}',
            "gpus[1].date (line 5): must not be empty",
        ),
        (
            "{hardware: X1, capacity: spot, usd_per_hour: 1, source: s, date: }",
            "gpus[1].date (line 5): is empty",
        ),
    ],
)
def test_a_row_without_source_or_date_is_refused_by_name(row: str, problem: str) -> None:
    text = (
        'date: "2026-12-07"\ncurrency: USD\ngpus:\n'
        '  - {hardware: X0, capacity: spot, usd_per_hour: 1, source: s, date: "2026"}\n'
        f"  - {row}\n" + _GOOD_TAIL
    )
    with pytest.raises(ConfigError) as info:
        parse_catalogue(text, "catalogue-2026-12-07.yaml")
    assert info.value.problems == [problem]


@pytest.mark.parametrize(
    "fact",
    ['{value: 0.10, date: "2026"}', "{value: 0.10, source: s}", '{value: 0.10, source: "", date: "2026"}'],
)
def test_a_fact_without_source_or_date_is_refused(fact: str) -> None:
    text = (
        'date: "2026-12-07"\ncurrency: USD\ngpus: []\n'
        f"egress_usd_per_gb: {fact}\n"
        'all_in_uplift_percent: {low: 20, high: 40, source: s, date: "2026"}\n'
    )
    with pytest.raises(ConfigError, match=r"egress_usd_per_gb\.(source|date)"):
        parse_catalogue(text, "catalogue-2026-12-07.yaml")
