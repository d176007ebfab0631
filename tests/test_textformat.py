"""parse_wanted and has_prefix: agreement with prometheus_client on real payloads, and the
bad inputs of reliability.md §b 7-17 that apply to the text format, each with its behaviour."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.errors import ParseError
from exporter.http.textformat import Sample, has_prefix, parse_wanted

FIXTURES = Path(__file__).parent / "fixtures"
PAYLOADS = sorted(FIXTURES.glob("*/*.txt"))
VLLM_V1 = FIXTURES / "vllm" / "v1-0.33.0.txt"


def triples(samples: list[Sample]) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, dict(s.labels), s.value) for s in samples]


def same_values(
    a: list[tuple[str, dict[str, str], float]], b: list[tuple[str, dict[str, str], float]]
) -> bool:
    """Equality where NaN equals NaN."""
    return len(a) == len(b) and all(
        x[:2] == y[:2] and (x[2] == y[2] or (math.isnan(x[2]) and math.isnan(y[2])))
        for x, y in zip(a, b, strict=True)
    )


def reference_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """prometheus_client's reading, with sample names as they appear in the payload.

    Its parser appends ``_total`` to the samples of a counter whose name lacks it (TGI,
    Triton); a name that starts no line of the payload is one of those and is mapped back.
    """
    in_payload = set(re.findall(r"^([^#\s{]+)[{ ]", text, re.M))
    out = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            name = s.name if s.name in in_payload else s.name.removesuffix("_total")
            out.append((name, dict(s.labels), s.value))
    return out


def one(line: str) -> Sample:
    """The only sample of a one-line payload whose metric is ``m``."""
    [sample] = parse_wanted(line + "\n", {"m"})
    return sample


def refused(text: str, wanted: tuple[str, ...] = ("m",)) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse_wanted(text, set(wanted))
    return info.value


# --- Real payloads -------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAYLOADS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_fixture_reads_as_prometheus_client_reads_it(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    expected = reference_samples(text)
    ours = triples(parse_wanted(text, {name for name, _, _ in expected}))
    assert expected, "fixture has no samples"
    assert same_values(ours, expected)


def test_fixtures_cover_every_server() -> None:
    servers = {p.parent.name for p in PAYLOADS}
    assert servers >= {"vllm", "sglang", "tgi", "triton-trtllm", "llamacpp", "dcgm-exporter", "cadvisor"}


def test_a_wanted_subset_gives_exactly_that_subset_in_payload_order() -> None:
    text = VLLM_V1.read_text(encoding="utf-8")
    wanted = {
        "vllm:prompt_tokens_total",
        "vllm:request_success_total",
        "vllm:inter_token_latency_seconds_sum",
    }
    expected = [t for t in reference_samples(text) if t[0] in wanted]
    ours = parse_wanted(text, wanted)
    assert triples(ours) == expected
    assert [s.name for s in ours].count("vllm:request_success_total") == 5
    assert {s.name for s in ours} == wanted


def test_a_name_is_not_matched_as_a_prefix_of_a_longer_name() -> None:
    text = "m_total 1\nm_total_x 2\nm 3\nm:x 4\n"
    assert triples(parse_wanted(text, {"m", "m_total"})) == [("m_total", {}, 1.0), ("m", {}, 3.0)]


def test_the_first_line_is_read_and_comments_are_not() -> None:
    text = "m 1\n# HELP m not a sample\n# TYPE m counter\n"
    assert triples(parse_wanted(text, {"m"})) == [("m", {}, 1.0)]


def test_unwanted_lines_are_skipped_unread_even_when_malformed() -> None:
    # Documented leniency: speed comes from never parsing lines nobody asked for.
    text = 'garbage {{{ "\nother{a=unquoted} 1_2\nm 7\n'
    assert triples(parse_wanted(text, {"m"})) == [("m", {}, 7.0)]


def test_nothing_wanted_or_nothing_given() -> None:
    assert parse_wanted("m 1\n", set()) == []
    assert parse_wanted("", {"m"}) == []
    assert parse_wanted("# only comments\n\n", {"m"}) == []


def test_an_invalid_wanted_name_is_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="not a metric name"):
        parse_wanted("m 1\n", {"m{"})
    with pytest.raises(ValueError, match="not a metric name"):
        parse_wanted("m 1\n", {""})
    with pytest.raises(TypeError, match="not one str"):
        parse_wanted("m 1\n", "m")


def test_names_with_colons() -> None:
    text = "vllm:a:b 1\nvllm:a 2\n"
    assert triples(parse_wanted(text, {"vllm:a:b", "vllm:a"})) == [("vllm:a:b", {}, 1.0), ("vllm:a", {}, 2.0)]


def test_label_order_of_the_payload_does_not_matter() -> None:
    a = one('m{b="2",a="1"} 5')
    b = one('m{a="1",b="2"} 5')
    assert a.labels == b.labels == {"a": "1", "b": "2"}


# --- §b 7-8: labels --------------------------------------------------------------------------


def test_escapes_are_undone_exactly() -> None:
    assert one(r'm{model="a\"b\\c\nd"} 1').labels == {"model": 'a"b\\c\nd'}
    assert one(r'm{a="\\n"} 1').labels == {"a": "\\n"}  # an escaped backslash, then a plain n


def test_braces_commas_and_equals_inside_quotes_are_text() -> None:
    assert one('m{a="}",b=",",c="=",d="x=\\"y\\""} 2').labels == {"a": "}", "b": ",", "c": "=", "d": 'x="y"'}


def test_blanks_tabs_and_a_trailing_comma_are_allowed() -> None:
    sample = one('m{ a = "1" ,\tb="2", }\t3 ')
    assert (sample.labels, sample.value) == ({"a": "1", "b": "2"}, 3.0)
    assert one('m{a="1"}4').value == 4.0  # Go's expfmt needs no blank after "}"
    assert one("m{} 5").labels == {}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (r'm{a="x\t"} 1', r"invalid escape '\\t' in the value of label 'a'"),
        (r'm{a="x\'"} 1', "invalid escape"),
        (r'm{a="x\u0041"} 1', "invalid escape"),
        ('m{a="x} 1', "unterminated quoted value for label 'a'"),
        ("m{a=bla} 1", "expected a quoted value for label 'a' in m, got 'bla} 1'"),
        ('m{,a="b"} 1', "expected a label name or '}' in m at column 3"),
        ('m{a="b",,} 1', "expected a label name or '}'"),
        ('m{a "b"} 1', "expected '=' after label name 'a'"),
        ('m{a="b" c="d"} 1', "expected ',' or '}' after label 'a'"),
        ('m{"a"="b"} 1', "expected a label name"),  # quoted (UTF-8) label names: not supported
        ('m{1a="b"} 1', "expected a label name"),
        ('m{a="b" 1', "expected ',' or '}' after label 'a'"),
        ('m{a="b",a="c"} 1', "duplicate label name 'a' in m"),
        ('m{__name__="x"} 1', "label name '__name__' in m"),
    ],
)
def test_malformed_labels_are_refused_with_what_was_expected(line: str, message: str) -> None:
    error = refused(f"# first\n{line}\n")
    assert error.reason == "parse"
    assert str(error).startswith("line 2: ")
    assert message in str(error)


# --- §b 10-12: numbers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "value"),
    [
        ("1", 1.0),
        ("-0", -0.0),
        ("+5", 5.0),
        ("1.5e3", 1500.0),
        ("1E-3", 0.001),
        (".5", 0.5),
        ("5.", 5.0),
        ("1.84323e+06", 1843230.0),  # llama.cpp's 6 significant digits
        ("1e-400", 0.0),  # underflow is not an error in Go either
        ("+Inf", math.inf),
        ("-Inf", -math.inf),
        ("Inf", math.inf),
        ("inf", math.inf),
        ("+Infinity", math.inf),
        ("-iNfInItY", -math.inf),
    ],
)
def test_accepted_numbers(token: str, value: float) -> None:
    got = one(f"m {token}").value
    assert got == value
    assert math.copysign(1, got) == math.copysign(1, value)


@pytest.mark.parametrize("token", ["NaN", "nan", "NAN"])
def test_nan_is_read_as_nan(token: str) -> None:
    # Kept: the meter decides what NaN in a counter or gauge means (reliability.md §b 11-12).
    assert math.isnan(one(f"m {token}").value)


@pytest.mark.parametrize(
    "token",
    [
        "1_2",  # Python's float() takes it; Go's expfmt refuses "_"
        "0x1p-3",  # hex float
        "0x10",
        "١٢",  # Arabic-Indic digits: float() reads 12
        "１",  # fullwidth digit
        "+NaN",  # Go accepts no sign on NaN
        "-nan",
        "infin",
        "∞",
        "1.2.3",
        "1e",
        "e5",
        "--1",
        "0b1",
        "1\r",  # CRLF line ends
        "1\x0c",  # whitespace float() would strip
        "true",
    ],
)
def test_refused_numbers(token: str) -> None:
    error = refused(f"m {token}\n")
    assert error.reason == "parse"
    assert "(expected a decimal number, +Inf, -Inf or NaN)" in str(error)


@pytest.mark.parametrize("token", ["1e309", "-1e309", "9" * 400])
def test_a_finite_literal_beyond_float64_is_refused_as_go_does(token: str) -> None:
    error = refused(f"m {token}\n")
    assert error.reason == "parse"
    assert "beyond the float64 range" in str(error)


def test_an_empty_value_is_refused() -> None:
    assert "missing value for m" in str(refused("m \n"))
    assert "missing value for m" in str(refused('m{a="b"}\n'))


def test_the_error_message_names_line_number_value_metric_and_expectation() -> None:
    text = "# HELP vllm:prompt_tokens_total x\n# TYPE vllm:prompt_tokens_total counter\n"
    text += "vllm:prompt_tokens_total abc\n"
    error = refused(text, ("vllm:prompt_tokens_total",))
    assert str(error) == (
        "line 3: invalid number 'abc' for vllm:prompt_tokens_total "
        "(expected a decimal number, +Inf, -Inf or NaN)"
    )


# --- §b 13-16: duplicates, timestamps, payload shape -------------------------------------------


def test_the_same_series_twice_is_refused() -> None:
    error = refused("m 1\nm 2\n")
    assert (error.reason, str(error)) == ("duplicate", "line 2: duplicate series m{}")
    error = refused('m{a="1",b="2"} 1\nm{b="2",a="1"} 2\n')
    assert error.reason == "duplicate"


def test_different_label_values_are_different_series() -> None:
    assert len(parse_wanted('m{a="1"} 1\nm{a="2"} 2\nm 3\n', {"m"})) == 3


def test_interleaved_families_are_read_in_payload_order() -> None:
    text = 'a 1\nb 2\na{x="1"} 3\n'
    assert [s.value for s in parse_wanted(text, {"a", "b"})] == [1.0, 2.0, 3.0]


def test_a_second_type_line_or_a_counter_without_total_changes_nothing() -> None:
    text = "# TYPE m counter\nm 1\n# TYPE m gauge\ntgi_request_count 4\n"
    assert triples(parse_wanted(text, {"m", "tgi_request_count"})) == [
        ("m", {}, 1.0),
        ("tgi_request_count", {}, 4.0),
    ]


@pytest.mark.parametrize("stamp", ["1763904812345", "-5", "+7", "0", str(2**63 - 1), str(-(2**63))])
def test_timestamps_are_checked_then_ignored(stamp: str) -> None:
    assert one(f"m 3 {stamp}").value == 3.0


@pytest.mark.parametrize(
    ("stamp", "message"),
    [
        ("1.5", "invalid timestamp '1.5'"),
        ("1e3", "invalid timestamp"),
        (str(2**63), "beyond the int64 range"),
        ("9" * 5000, "beyond the int64 range"),  # int() itself refuses > 4300 digits
    ],
)
def test_bad_timestamps_are_refused(stamp: str, message: str) -> None:
    assert message in str(refused(f"m 3 {stamp}\n"))


def test_text_after_the_timestamp_is_refused() -> None:
    assert "unexpected text '3' after the timestamp" in str(refused("m 1 2 3\n"))


def test_a_payload_without_final_newline_was_truncated() -> None:
    error = refused("m 1\nm 2")
    assert (error.reason, str(error)) == ("truncated", "line 2: payload ends without a newline (truncated)")
    assert refused('m{a="cut').reason == "truncated"


def test_more_lines_than_max_samples_is_refused() -> None:
    text = "m 1\n" + "# c\n" * 9
    assert len(parse_wanted(text, {"m"}, max_samples=10)) == 1
    with pytest.raises(ParseError) as info:
        parse_wanted(text + "# c\n", {"m"}, max_samples=10)
    error = info.value
    assert error.reason == "sample_limit"
    assert "11 lines, more than the limit of 10" in str(error)


def test_a_million_lines_hit_the_default_sample_limit_before_any_parsing() -> None:
    error = refused("m 1\n" * 1_000_000)  # would also be a duplicate series, were it parsed
    assert error.reason == "sample_limit"


def test_openmetrics_eof_and_blank_lines_are_comments_to_us() -> None:
    assert triples(parse_wanted("m 1\n\n# EOF\n", {"m"})) == [("m", {}, 1.0)]


def test_quoted_utf8_metric_names_never_match_a_wanted_name() -> None:
    # Prometheus 3.x allows {"my.metric"}; our wanted names are legacy names only.
    assert parse_wanted('{"m"} 1\n{"m",a="b"} 2\n', {"m"}) == []


def test_a_line_with_leading_blanks_is_not_found() -> None:
    # Documented: a sample line must start with its name (no server we read indents).
    assert parse_wanted("  m 1\n", {"m"}) == []


# --- §b 20 and P8: size and pathological input -------------------------------------------------

MB = 2**20


def test_a_1mb_unwanted_line_is_skipped() -> None:
    assert triples(parse_wanted("x" * MB + "\nm 1\n", {"m"})) == [("m", {}, 1.0)]


def test_a_1mb_label_value_is_read() -> None:
    assert one('m{a="' + "v" * MB + '"} 1').labels["a"] == "v" * MB


def test_a_1mb_malformed_line_gives_a_short_message() -> None:
    error = refused("m " + "1" * MB + "x\n")
    assert error.reason == "parse"
    assert len(str(error)) < 300


@pytest.mark.parametrize(
    "line",
    [
        'm{a="' + "\\\\" * 200_000,  # unterminated after many escapes
        'm{a="' + "\\" * 200_001 + '"} 1',  # odd backslashes: the quote is escaped
        "m{" + 'a="b",' * 50_000 + "} x",  # many (duplicate) pairs, then a bad value
        'm{a="b"' + " " * 200_000 + "} " + " " * 200_000 + "1 " + " " * 200_000 + "x",
        "m " + "1" * 300_000 + "e" + "2" * 300_000 + "." + "3",
        "m{" + "a" * 300_000,
        "m{" + ",".join(f'k{i}="v"' for i in range(50_000)) + ',k0="v"} 1',  # a duplicate, last
    ],
)
def test_pathological_lines_end_quickly_with_a_parse_error(line: str) -> None:
    # A catastrophic backtrack would hang here for hours (CI's own time limit catches it).
    error = refused(line + "\n")
    assert error.reason == "parse"


# --- has_prefix ------------------------------------------------------------------------------


def test_has_prefix_looks_at_sample_lines_only() -> None:
    assert has_prefix("# HELP x\nvllm:a 1\n", "vllm:")
    assert has_prefix("vllm:a 1\n", "vllm:")
    assert not has_prefix("# HELP vllm:a x\n# TYPE vllm:a counter\nsglang:b 1\n", "vllm:")
    assert not has_prefix("", "vllm:")


def test_has_prefix_on_the_fixtures() -> None:
    texts = {p.parent.name: p.read_text(encoding="utf-8") for p in PAYLOADS}
    assert has_prefix(texts["vllm"], "vllm:") and not has_prefix(texts["vllm"], "sglang:")
    assert has_prefix(texts["sglang"], "sglang:") and not has_prefix(texts["sglang"], "vllm:")
    assert has_prefix(texts["llamacpp"], "llamacpp:")
    assert has_prefix(texts["tgi"], "tgi_")


def test_more_wanted_samples_than_the_series_limit_are_refused_before_parsing() -> None:
    text = "".join(f'a{{i="{i}"}} 1\nb{{i="{i}"}} 2\n' for i in range(10)) + "a{broken\n"
    assert len(parse_wanted(text.replace("a{broken\n", ""), {"a"}, max_wanted=10)) == 10
    with pytest.raises(ParseError) as e:  # 11 wanted lines: refused, the broken one never parsed
        parse_wanted(text, {"a"}, max_wanted=10)
    assert e.value.reason == "series_limit" and "limits.max_series" in str(e.value)
