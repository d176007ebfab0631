"""P8: parse_wanted never crashes on arbitrary input, and reads back what a renderer wrote.

Arbitrary text may only ever raise ParseError. The round trip renders random samples
(names with ':', label values with every escape, finite floats via repr, shuffled label
order, optional timestamps, comment and unwanted lines in between) and expects exactly
those samples back.
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.errors import ParseError
from exporter.http.textformat import Sample, parse_wanted

NAMES = st.from_regex(r"[ab:_][ab0-9:_]{0,3}", fullmatch=True)
LABEL_NAMES = st.from_regex(r"[xy_][xy0-9_]{0,2}", fullmatch=True)
WANTED = frozenset({"a", "a:b", "b_total", "a_sum", "_"})
# Pieces of the grammar, so random text often looks like (almost) valid sample lines.
FRAGMENTS = [*WANTED, "{", "}", '"', "\\", "\\n", '\\"', "\n", " ", "\t", "=", ",", "x", "x=", '"v"']
FRAGMENTS += ["1", "-0", "1e5", "1_2", ".", "e", "+Inf", "-Inf", "NaN", "nan", "١٢", "0x1p-3", "#", "\r"]
GRAMMARISH = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=3)), max_size=40).map("".join)


def parse_or_refuse(text: str, wanted: frozenset[str] = WANTED) -> list[Sample] | None:
    try:
        return parse_wanted(text, wanted)
    except ParseError as e:
        assert e.reason in {"parse", "truncated", "duplicate", "sample_limit"}
        assert str(e).startswith("line ") or e.reason == "sample_limit"
        # The error-path walker and the fast pattern agree on the grammar, so the walker
        # always names the problem instead of falling back to a generic message.
        assert "malformed sample line" not in str(e)
        return None


@settings(max_examples=500)
@given(st.text())
def test_any_text_gives_samples_or_a_parse_error(text: str) -> None:
    parse_or_refuse(text)
    parse_or_refuse(text + "\n")


@settings(max_examples=600)
@given(GRAMMARISH)
def test_grammar_like_text_gives_samples_or_a_parse_error(text: str) -> None:
    for candidate in (text, text + "\n", "a" + text + "\n", "a{" + text + "\n"):
        samples = parse_or_refuse(candidate)
        for s in samples or []:
            assert s.name in WANTED
            assert isinstance(s.value, float)


@settings(max_examples=300)
@given(st.binary())
def test_any_bytes_decoded_leniently_give_samples_or_a_parse_error(data: bytes) -> None:
    parse_or_refuse(data.decode("utf-8", errors="surrogateescape") + "\n")
    parse_or_refuse(data.decode("latin-1") + "\n")


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


SAMPLES = st.lists(
    st.builds(
        Sample,
        name=NAMES,
        labels=st.dictionaries(LABEL_NAMES, st.text(), max_size=4),
        value=st.floats(allow_nan=False, allow_infinity=False),
    ),
    unique_by=lambda s: (s.name, frozenset(s.labels.items())),
    max_size=20,
)


@st.composite
def rendered(draw: st.DrawFn) -> tuple[list[Sample], str]:
    """Random samples and one valid text rendering of them, with noise lines in between."""
    samples = draw(SAMPLES)
    lines = []
    for s in samples:
        rendered_pairs = [f'{k}{draw(blank())}={draw(blank())}"{escape(v)}"' for k, v in s.labels.items()]
        pairs: list[str] = draw(st.permutations(rendered_pairs))
        trailing = draw(st.sampled_from(["", ",", " ,\t"])) if pairs else ""  # "{,}" is invalid
        braces = bool(pairs) or draw(st.booleans())  # "m{} 1" is valid too
        labels = "{" + ",".join(pairs) + trailing + "}" if braces else ""
        stamp = draw(st.sampled_from(["", " 1763904812345", "\t-1"]))
        lines.append(f"{s.name}{labels}{draw(blank(minimum=not labels))}{s.value!r}{stamp}{draw(blank())}")
        if draw(st.booleans()):
            lines.append(draw(st.sampled_from([f"# TYPE {s.name} counter", "", "# HELP x y", 'zz{a="1"} 2'])))
    return samples, "".join(line + "\n" for line in lines)


def blank(minimum: bool = False) -> st.SearchStrategy[str]:
    return st.text(alphabet=" \t", min_size=1 if minimum else 0, max_size=2)


@settings(max_examples=200)
@given(rendered())
def test_rendered_samples_read_back_exactly(case: tuple[list[Sample], str]) -> None:
    samples, text = case
    got = parse_wanted(text, {s.name for s in samples})
    assert [(s.name, dict(s.labels), s.value) for s in got] == [
        (s.name, dict(s.labels), s.value) for s in samples
    ]
    assert all(
        math.copysign(1, g.value) == math.copysign(1, s.value) for g, s in zip(got, samples, strict=True)
    )


@settings(max_examples=100)
@given(rendered(), st.data())
def test_a_wanted_subset_reads_back_exactly_that_subset(
    case: tuple[list[Sample], str], data: st.DataObject
) -> None:
    samples, text = case
    wanted = data.draw(
        st.sets(st.sampled_from(sorted({s.name for s in samples}))) if samples else st.just(set())
    )
    got = parse_wanted(text, wanted)
    assert [(s.name, dict(s.labels)) for s in got] == [
        (s.name, dict(s.labels)) for s in samples if s.name in wanted
    ]


@given(st.sampled_from(["+Inf", "-Inf", "Inf", "NaN"]), NAMES)
def test_special_values_read_back(token: str, name: str) -> None:
    [s] = parse_wanted(f"{name} {token}\n", {name})
    assert repr(s.value) == repr(float(token))
