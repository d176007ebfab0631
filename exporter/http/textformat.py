"""Fast, strict reader of the Prometheus text exposition format (0.0.4), and its fetch.

``parse_wanted`` returns only the samples whose metric name the caller asks for, and never
parses the rest: one regex scan finds ``"\\n"`` followed by any wanted name and then ``{``
or a blank (a real newline always starts a line: in label values it is escaped as two
characters), and only those lines are parsed. Everything else, comments included, is
skipped unread. That is why it is about 70x faster than ``prometheus_client.parser`` on a
300 KB vLLM payload (``bench/bench_parser.py``), and also why it is lenient on lines nobody
asked for: garbage on an unwanted line is not an error.

Wanted lines are parsed strictly, following prometheus/common ``expfmt`` (Go):

* ``name[{labels}] value [timestamp]``, tokens separated by blanks (space or tab), optional
  blanks at the end of the line. No blank is needed between ``}`` and the value.
* labels: ``name="value"`` pairs separated by ``,`` with optional blanks, a trailing comma
  allowed, label names ``[a-zA-Z_][a-zA-Z0-9_]*``. Escapes ``\\\\``, ``\\"`` and ``\\n``
  only. Rejected: other escapes, unterminated or missing quotes, a leading comma, duplicate
  label names, ``__name__`` as a label, quoted (UTF-8) label names.
* value: ASCII only, what Go's ``strconv.ParseFloat`` takes once expfmt has refused ``p``,
  ``P`` and ``_``: decimals ``[+-]?(digits[.digits]|.digits)([eE][+-]?digits)?``,
  ``Inf``/``Infinity`` with optional sign and ``NaN``, all case-insensitive, NaN unsigned.
  Rejected: ``1_2``, hex floats, Unicode digits (``١٢``), an empty value, and a finite
  literal that overflows a float64 (``1e309``): Go reports a range error, so do we.
  ``-0`` is -0.0.
* timestamp: an optional int64 in milliseconds, checked and then ignored (the meter uses
  its own monotonic clock).

Not accepted on wanted lines, as in Go: CRLF line ends, leading blanks (such a line does
not start with the name, so it is not found at all). A line starting ``{"name"...}``
(UTF-8 quoted metric names, Prometheus 3.x) never matches a wanted name.

The payload as a whole: it must end with ``\\n`` if non-empty (else it was truncated), have
at most ``max_samples`` lines, and carry no series twice among the wanted samples.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from exporter.errors import ParseError
from exporter.http.fetch import FetchLimits, fetch_text

__all__ = ["FetchLimits", "Sample", "fetch_text", "has_prefix", "parse_wanted"]


@dataclass(frozen=True, slots=True)
class Sample:
    """One sample line: exact sample name (``foo_total``, ``foo_sum``), labels, value."""

    name: str
    labels: Mapping[str, str]
    value: float


# Wanted names are ours (the SERVERS table); the length cap bounds the finder's recursion.
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,254}")
_LABEL_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
# The "unrolled loop" form: unambiguous, so a failing match backtracks in linear time.
_LABEL_VALUE_BODY = r'[^"\\]*(?:\\[\\"n][^"\\]*)*'
_PAIR = rf'{_LABEL_NAME}[ \t]*=[ \t]*"{_LABEL_VALUE_BODY}"'
_NUMBER = (
    r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
    r"|[+-]?[iI][nN][fF](?:[iI][nN][iI][tT][yY])?"
    r"|[nN][aA][nN]"
)
# Everything after the metric name, in one C-level match on the happy path. Blanks sit
# only where the next token cannot start with a blank, which keeps the match linear.
_TAIL = re.compile(
    rf"(?:\{{[ \t]*((?:{_PAIR}(?:[ \t]*,[ \t]*{_PAIR})*[ \t]*(?:,[ \t]*)?)?)\}})?"
    rf"[ \t]*({_NUMBER})(?:[ \t]+([+-]?[0-9]+))?[ \t]*"
)
_PAIRS = re.compile(rf'({_LABEL_NAME})[ \t]*=[ \t]*"({_LABEL_VALUE_BODY})"')
_ESCAPE = re.compile(r"\\(.)")
_UNESCAPED = {"\\": "\\", '"': '"', "n": "\n"}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_EXPECTED_NUMBER = "expected a decimal number, +Inf, -Inf or NaN"


def parse_wanted(
    text: str, wanted: Collection[str], *, max_samples: int = 500_000, max_wanted: int | None = None
) -> list[Sample]:
    """Every sample of ``text`` whose name is in ``wanted``, in payload order.

    Raises ParseError with reason "sample_limit", "series_limit" (more than ``max_wanted``
    wanted samples: refused before any is parsed), "truncated", "duplicate" or "parse".
    Raises ValueError (TypeError) if a wanted name is not a metric name, or ``wanted`` is
    a str: caller bugs.
    """
    if isinstance(wanted, str):  # a str is a Collection[str] of its characters
        raise TypeError("wanted must be a collection of names, not one str")
    if not text:
        return []
    # Each line holds at least its "\n", so short texts cannot exceed the limit: skip the count.
    if len(text) > max_samples and (lines := text.count("\n")) > max_samples:
        raise ParseError(f"payload has {lines} lines, more than the limit of {max_samples}", "sample_limit")
    if not text.endswith("\n"):
        line = text.count("\n") + 1
        raise ParseError(f"line {line}: payload ends without a newline (truncated)", "truncated")
    samples: list[Sample] = []
    seen: set[tuple[str, frozenset[tuple[str, str]]]] = set()
    hits = _locate(text, frozenset(wanted))
    if max_wanted is not None and len(hits) > max_wanted:
        raise ParseError(
            f"payload has {len(hits)} samples of the families read, more than the limit of {max_wanted}"
            " (limits.max_series)",
            "series_limit",
        )
    for start, name in hits:
        sample = _parse_line(text, start, text.find("\n", start), name)
        key = (name, frozenset(sample.labels.items()))
        if key in seen:
            raise ParseError(f"line {_line_no(text, start)}: duplicate series {_show(sample)}", "duplicate")
        seen.add(key)
        samples.append(sample)
    return samples


def has_prefix(text: str, prefix: str) -> bool:
    """True if some sample line's metric name starts with ``prefix`` (server auto-detection)."""
    return text.startswith(prefix) or ("\n" + prefix) in text


def _locate(text: str, wanted: frozenset[str]) -> list[tuple[int, str]]:
    """(line start, name) of each line starting with a wanted name then ``{`` or a blank, in order."""
    first_line, other_lines = _finders(wanted)
    hits = [(0, m.group(1))] if (m := first_line.match(text)) else []
    hits += [(m.start() + 1, m.group(1)) for m in other_lines.finditer(text)]
    return hits


@lru_cache(maxsize=64)
def _finders(wanted: frozenset[str]) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """Patterns for a wanted name at the start of the text, and right after a newline.

    The names are factored on common prefixes (``vllm:(?:prompt_tokens_(?:created|total)|...``)
    so one C-level scan tries every name at once: about 3x faster than one ``str.find`` per
    name for the 15 names a vLLM reader wants, and it yields hits already in payload order.
    """
    for name in wanted:
        if not _METRIC_NAME.fullmatch(name):
            raise ValueError(f"not a metric name (or longer than 255 characters): {name!r}")
    if not wanted:
        never = re.compile(r"(?!)()")
        return never, never
    names = _alternation(sorted(wanted))
    return re.compile(rf"({names})(?=[ \t{{])"), re.compile(rf"\n({names})(?=[ \t{{])")


def _alternation(names: list[str]) -> str:
    """A regex matching exactly ``names`` (sorted, distinct), factored on common prefixes."""
    alternatives = []
    optional = False
    for first, group in itertools.groupby(names, key=lambda n: n[:1]):
        members = list(group)
        if not first:  # "" sorts first: a name that is a prefix of the others ends here
            optional = True
            continue
        prefix = _common_prefix(members[0], members[-1])  # sorted: first and last suffice
        rests = sorted({m[len(prefix) :] for m in members})
        alternatives.append(re.escape(prefix) + (_alternation(rests) if rests != [""] else ""))
    body = "|".join(alternatives)
    if optional:
        return f"(?:{body})?"
    return body if len(alternatives) == 1 else f"(?:{body})"


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def _parse_line(text: str, start: int, end: int, name: str) -> Sample:
    """Parse text[start:end], a line known to begin with ``name``; raise ParseError if malformed."""
    m = _TAIL.fullmatch(text, start + len(name), end)
    if m is None:
        line = text[start:end]
        raise ParseError(f"line {_line_no(text, start)}: {_explain(line, name)}", "parse")
    block, number, stamp = m.groups()
    try:
        labels = _labels(block, name) if block else {}
        value = _number(number, name)
        if stamp is not None:
            _check_timestamp(stamp, name)
    except ValueError as e:
        raise ParseError(f"line {_line_no(text, start)}: {e}", "parse") from None
    return Sample(name, labels, value)


def _labels(block: str, name: str) -> dict[str, str]:
    """Labels of a block the line pattern already validated (structure and escapes)."""
    pairs = _PAIRS.findall(block)
    labels = dict(pairs)
    if len(labels) != len(pairs):
        raise ValueError(f"duplicate label name {_first_repeat(k for k, _ in pairs)!r} in {name}")
    if "__name__" in labels:
        raise ValueError(f"label name '__name__' in {name} (reserved: the metric name is not a label)")
    if "\\" in block:
        return {k: _ESCAPE.sub(_unescape, v) for k, v in labels.items()}
    return labels


def _first_repeat(keys: Iterable[str]) -> str:
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            return key
        seen.add(key)
    return ""


def _unescape(m: re.Match[str]) -> str:
    return _UNESCAPED[m.group(1)]


def _number(token: str, name: str) -> float:
    """A token that matched _NUMBER as a float; a finite literal beyond float64 is refused."""
    value = float(token)
    # Literals of infinity end in f/F/y/Y; any other token that became infinite overflowed.
    if value in (float("inf"), float("-inf")) and token[-1] not in "fFyY":
        raise ValueError(f"number {_clip(token)} for {name} is beyond the float64 range (max ~1.8e308)")
    return value


def _check_timestamp(stamp: str, name: str) -> None:
    # Length first: int() refuses strings of more than 4300 digits with its own ValueError.
    if len(stamp) > 20 or not _INT64_MIN <= int(stamp) <= _INT64_MAX:
        raise ValueError(f"timestamp {_clip(stamp)} for {name} is beyond the int64 range of milliseconds")


def _line_no(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _clip(s: str, limit: int = 40) -> str:
    """repr() of s, cut so a 1 MB token cannot blow up a log line."""
    return repr(s) if len(s) <= limit else repr(s[:limit]) + f"... ({len(s)} chars)"


def _show(sample: Sample) -> str:
    inner = ",".join(f"{k}={_clip(v)}" for k, v in sorted(sample.labels.items()))
    return f"{sample.name}{{{inner}}}"


# --- Error path: walk a line the fast pattern refused, to say where and what was expected.

_BLANKS = re.compile(r"[ \t]*")
_TOKEN = re.compile(r"[^ \t]*")
_LABEL_NAME_AT = re.compile(_LABEL_NAME)
_VALUE_BODY_AT = re.compile(_LABEL_VALUE_BODY)
_NUMBER_RE = re.compile(_NUMBER)
_TIMESTAMP_RE = re.compile(r"[+-]?[0-9]+")


def _explain(line: str, name: str) -> str:
    """What is wrong with a sample line of ``name`` that the fast pattern refused."""
    pos = len(name)
    if line.startswith("{", pos):
        pos, problem = _explain_labels(line, pos + 1, name)
        if problem:
            return problem
    return _explain_tail(line, pos, name)


def _explain_labels(line: str, pos: int, name: str) -> tuple[int, str | None]:
    """Walk ``{...}`` from just after ``{``: (position after ``}``, None) or (_, problem).

    Structure only: duplicate and reserved label names are checked on the fast path, which
    runs once the structure is right.
    """
    pos = _skip(line, pos)
    while not line.startswith("}", pos):
        m = _LABEL_NAME_AT.match(line, pos)
        if m is None:
            return pos, f"expected a label name or '}}' in {name} at column {pos + 1}, got {_rest(line, pos)}"
        label = m.group()
        pos = _skip(line, m.end())
        if not line.startswith("=", pos):
            return pos, f"expected '=' after label name {label!r} in {name}, got {_rest(line, pos)}"
        pos = _skip(line, pos + 1)
        if not line.startswith('"', pos):
            return pos, f"expected a quoted value for label {label!r} in {name}, got {_rest(line, pos)}"
        pos = _match_end(_VALUE_BODY_AT, line, pos + 1)
        if pos >= len(line):
            return pos, f"unterminated quoted value for label {label!r} in {name}"
        if line[pos] == "\\":
            escape = line[pos : pos + 2]
            return pos, (
                f"invalid escape {escape!r} in the value of label {label!r} in {name} "
                r"(expected \\, \" or \n)"
            )
        pos = _skip(line, pos + 1)
        if line.startswith(",", pos):
            pos = _skip(line, pos + 1)
        elif not line.startswith("}", pos):
            return pos, f"expected ',' or '}}' after label {label!r} in {name}, got {_rest(line, pos)}"
    return pos + 1, None


def _explain_tail(line: str, pos: int, name: str) -> str:
    """Value, timestamp and end of line, from just after the name or the ``}``."""
    pos = _skip(line, pos)
    end = _match_end(_TOKEN, line, pos)
    token = line[pos:end]
    if not token:
        return f"missing value for {name} ({_EXPECTED_NUMBER})"
    if not _NUMBER_RE.fullmatch(token):
        return f"invalid number {_clip(token)} for {name} ({_EXPECTED_NUMBER})"
    pos = _skip(line, end)
    end = _match_end(_TOKEN, line, pos)
    token = line[pos:end]
    if token and not _TIMESTAMP_RE.fullmatch(token):
        return f"invalid timestamp {_clip(token)} for {name} (expected an integer in milliseconds)"
    pos = _skip(line, end)
    if pos < len(line):
        return f"unexpected text {_rest(line, pos)} after the timestamp of {name} (expected end of line)"
    return f"malformed sample line for {name}"


def _skip(line: str, pos: int) -> int:
    return _match_end(_BLANKS, line, pos)


def _match_end(pattern: re.Pattern[str], line: str, pos: int) -> int:
    """End of pattern's match at pos; the patterns used here match the empty string too."""
    m = pattern.match(line, pos)
    return m.end() if m else pos


def _rest(line: str, pos: int) -> str:
    return _clip(line[pos:]) if pos < len(line) else "end of line"
