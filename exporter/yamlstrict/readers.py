"""Typed readers over the strict YAML node tree: exact numbers, text, fields, with paths.

PyYAML's ``safe_load`` is too forgiving for money: it keeps the last of two duplicate keys
without a word, reads ``1e-12`` as a *string* but ``1.0e-12`` as a float, turns ``.nan``
and ``.inf`` into floats, ``yes`` into ``True`` and ``010`` into 8. So ``compose`` (from
``yamlstrict.compose``, re-exported here) only builds a node tree, refusing aliases, anchors, tags,
duplicate keys and deep nesting, and the readers below read every scalar themselves:

- numbers must match a plain decimal grammar (``12``, ``-0.5``, ``.5``, ``1e-12``,
  ``2.5E3``) and become ``Decimal(text)`` exactly — never a float on the way;
- hex, octal, ``1_000``, sexagesimal, ``.nan`` and ``.inf`` are refused with a reason;
- only ``true``/``false`` are booleans; unknown fields get a "did you mean".

Readers never raise on bad input: they record ``path (line N): message`` in a
``Problems`` list and return ``None``, so one pass reports every problem at once.
"""

from __future__ import annotations

import difflib
import importlib.resources
import re
from collections.abc import Callable, Collection
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from exporter.errors import ConfigError
from exporter.yamlstrict.compose import MAX_BYTES as MAX_BYTES
from exporter.yamlstrict.compose import MAX_DEPTH as MAX_DEPTH
from exporter.yamlstrict.compose import MAX_PROBLEMS as MAX_PROBLEMS
from exporter.yamlstrict.compose import NULL_TAG
from exporter.yamlstrict.compose import Problems as Problems
from exporter.yamlstrict.compose import compose as compose
from exporter.yamlstrict.compose import index_path as index_path
from exporter.yamlstrict.compose import key_path as key_path

MAX_TEXT = 256  # label values and names
MAX_NUMBER_TEXT = 64
MAX_EXPONENT = 30  # |adjusted exponent| of any number: 1e-30 .. 1e30 (keeps Decimal ops safe)
NANO_PLACES = 9  # the meter keeps nano-dollars

_DECIMAL = re.compile(r"[+-]?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INTEGER = re.compile(r"[+-]?(?:0|[1-9][0-9]*)")
_NAN = re.compile(r"[+-]?\.(?:nan|NaN|NAN)|[+-]?nan", re.IGNORECASE)
_INF = re.compile(r"[+-]?\.?inf(?:inity)?", re.IGNORECASE)

T = TypeVar("T")
Reader = Callable[[str, Node], T | None]  # (path, node) -> value, or None once reported
_BOOL = "tag:yaml.org,2002:bool"


def suggest(word: str, candidates: Collection[str]) -> str:
    """A "did you mean" hint, else the allowed values."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return "allowed: " + ", ".join(sorted(candidates))


def _skip(problems: Problems, node: Node) -> bool:
    return id(node) in problems.poisoned


def _kind(node: Node) -> str:
    if isinstance(node, ScalarNode) and node.style is None and node.tag == NULL_TAG:
        return "nothing (empty value)"
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return f"{node.value!r}"


def fields(
    problems: Problems, node: Node, path: str, allowed: Collection[str] | None, what: str = "field"
) -> dict[str, Node] | None:
    """A mapping's values by key; unknown keys reported as unknown ``what`` (``allowed=None``: any key)."""
    if _skip(problems, node):
        return None
    if not isinstance(node, MappingNode):
        problems.add(path, node, f"expected a mapping, got {_kind(node)}")
        return None
    out: dict[str, Node] = {}
    for key, value in node.value:
        if not isinstance(key, ScalarNode) or _skip(problems, key):
            continue  # reported by the audit
        if allowed is not None and key.value not in allowed:
            hint = suggest(key.value, allowed)
            problems.add(key_path(path, key.value), key, f"unknown {what} {key.value!r}; {hint}")
            continue
        out.setdefault(key.value, value)
    return out


def items(problems: Problems, node: Node, path: str) -> list[Node] | None:
    """A sequence's elements, or ``None`` (reported) if ``node`` is not a list."""
    if _skip(problems, node):
        return None
    if not isinstance(node, SequenceNode):
        problems.add(path, node, f"expected a list, got {_kind(node)}")
        return None
    return list(node.value)


def parse_decimal(text: str) -> Decimal | None:
    """``Decimal(text)`` if ``text`` is a plain decimal number (``1e-12`` included), else ``None``."""
    if len(text) > MAX_NUMBER_TEXT or not _DECIMAL.fullmatch(text):
        return None
    value = Decimal(text)
    return Decimal(0) if value.is_zero() else value  # "-0", "0e-99": plain zero


def decimal_places(value: Decimal) -> int:
    """Places after the point, ignoring trailing zeros (exact: no context rounding)."""
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite by construction
    trailing = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -(exponent + trailing))


def _scalar(problems: Problems, node: Node, path: str, expected: str) -> ScalarNode | None:
    if _skip(problems, node):
        return None
    if not isinstance(node, ScalarNode):
        problems.add(path, node, f"expected {expected}, got {_kind(node)}")
        return None
    return node


def _not_a_number(node: ScalarNode) -> str:
    """Why a scalar is not a number we accept, in words that say how to fix it."""
    text = node.value
    if node.style is not None:
        if parse_decimal(text.strip()) is not None:
            return f"is a string ({text!r}); write it without quotes"
        return f"is a string ({text!r}); expected a number"
    if node.tag == _BOOL:
        return f"is a boolean ({text}); expected a number"
    if node.tag == NULL_TAG:
        return "is empty; expected a number"
    if _NAN.fullmatch(text):
        return "is NaN; expected a finite number"
    if _INF.fullmatch(text):
        return "is infinite; expected a finite number"
    if len(text) > MAX_NUMBER_TEXT:
        return f"is too long for a number ({len(text)} characters)"
    return f"is not a plain decimal number ({text!r}); hex, octal, 1_000 and 1:30 forms are not accepted"


def number(
    problems: Problems,
    node: Node,
    path: str,
    *,
    ge: Decimal | None = None,
    gt: Decimal | None = None,
    le: Decimal | None = None,
    usd: bool = False,
) -> Decimal | None:
    """An exact ``Decimal`` within bounds; ``usd`` also caps it at nano-dollar precision."""
    scalar = _scalar(problems, node, path, "a number")
    if scalar is None:
        return None
    value = parse_decimal(scalar.value) if scalar.style is None else None
    if value is None:
        problems.add(path, node, _not_a_number(scalar))
        return None
    if not value.is_zero() and abs(value.adjusted()) > MAX_EXPONENT:
        problems.add(path, node, f"is out of range ({scalar.value}); keep it within 1e-30 .. 1e30")
        return None
    return _bounded(problems, node, path, value, scalar.value, ge=ge, gt=gt, le=le, usd=usd)


def _bounded(
    problems: Problems,
    node: Node,
    path: str,
    value: Decimal,
    text: str,
    *,
    ge: Decimal | None,
    gt: Decimal | None,
    le: Decimal | None,
    usd: bool,
) -> Decimal | None:
    for bad, message in (
        (ge is not None and value < ge, f"must be >= {ge}, got {text}"),
        (gt is not None and value <= gt, f"must be > {gt}, got {text}"),
        (le is not None and value > le, f"must be <= {le}, got {text}"),
        (
            usd and decimal_places(value) > NANO_PLACES,
            f"has more than {NANO_PLACES} decimal places ({text}); the meter keeps whole"
            " nano-dollars (0.000000001 USD)",
        ),
    ):
        if bad:
            problems.add(path, node, message)
            return None
    return value


def integer(
    problems: Problems, node: Node, path: str, *, ge: int | None = None, le: int | None = None
) -> int | None:
    """A whole number written in plain digits."""
    scalar = _scalar(problems, node, path, "a whole number")
    if scalar is None:
        return None
    if scalar.style is None and _INTEGER.fullmatch(scalar.value):
        value = int(scalar.value)
        if ge is not None and value < ge:
            problems.add(path, node, f"must be >= {ge}, got {value}")
            return None
        if le is not None and value > le:
            problems.add(path, node, f"must be <= {le}, got {value}")
            return None
        return value
    if scalar.style is None and parse_decimal(scalar.value) is not None:
        problems.add(path, node, f"must be a whole number, got {scalar.value}")
    else:
        problems.add(path, node, _not_a_number(scalar).replace("a number", "a whole number"))
    return None


def boolean(problems: Problems, node: Node, path: str) -> bool | None:
    """Only ``true`` or ``false``: YAML 1.1's yes/no/on/off are refused as ambiguous."""
    scalar = _scalar(problems, node, path, "true or false")
    if scalar is None:
        return None
    if scalar.style is None and scalar.value.lower() in ("true", "false"):
        return str(scalar.value).lower() == "true"
    problems.add(path, node, f"must be true or false, got {scalar.value!r}")
    return None


def text(
    problems: Problems,
    node: Node,
    path: str,
    *,
    choices: Collection[str] | None = None,
    what: str = "value",
) -> str | None:
    """Non-empty text (plain numbers are read as their text, e.g. GPU id ``0``)."""
    scalar = _scalar(problems, node, path, "text")
    if scalar is None:
        return None
    value = str(scalar.value)
    if scalar.style is None and scalar.tag == NULL_TAG:
        problems.add(path, node, "is empty")
    elif scalar.style is None and scalar.tag == _BOOL:
        problems.add(path, node, f"is a boolean ({value}) to YAML; quote it if you mean the text")
    elif not value.strip():
        problems.add(path, node, "must not be empty")
    elif len(value) > MAX_TEXT:
        problems.add(path, node, f"is {len(value)} characters; the limit is {MAX_TEXT}")
    elif choices is not None and value not in choices:
        problems.add(path, node, f"unknown {what} {value!r}; {suggest(value, choices)}")
    else:
        return value
    return None


def optional(m: dict[str, Node], key: str, path: str, read: Reader[T], default: T) -> T:
    """``read`` the field if present; the default if absent *or* invalid (already reported)."""
    node = m.get(key)
    if node is None:
        return default
    value = read(key_path(path, key), node)
    return default if value is None else value


def required(
    problems: Problems, m: dict[str, Node], key: str, path: str, parent: Node, read: Reader[T]
) -> T | None:
    """``read`` the field, reporting it at the parent's line when it is missing."""
    node = m.get(key)
    if node is None:
        problems.add(key_path(path, key), parent, "required field is missing")
        return None
    return read(key_path(path, key), node)


def number_reader(
    problems: Problems,
    *,
    ge: Decimal | None = None,
    gt: Decimal | None = None,
    le: Decimal | None = None,
    usd: bool = False,
) -> Reader[Decimal]:
    """A reader for ``optional``/``required`` with the given bounds."""
    return lambda at, n: number(problems, n, at, ge=ge, gt=gt, le=le, usd=usd)


def text_reader(problems: Problems) -> Reader[str]:
    return lambda at, n: text(problems, n, at)


def choice_reader(problems: Problems, choices: tuple[str, ...], what: str) -> Reader[str]:
    return lambda at, n: text(problems, n, at, choices=choices, what=what)


def read_document(text: str, name: str, reader: Callable[[Problems, Node, str], T | None]) -> T:
    """A whole packaged or user document read strictly with ``reader``, or one ``ConfigError``."""
    problems = Problems()
    root = compose(text, problems)
    document = reader(problems, root, name) if root is not None else None
    if problems or document is None:
        raise ConfigError(problems.report() or ["document: unusable"], name)
    return document


def read_file(path: str | Path) -> tuple[str, bytes]:
    """(text, bytes) of a user's YAML file: at most MAX_BYTES, UTF-8, else one ``ConfigError``
    (``OSError`` passes: the caller says which file it could not read)."""
    with Path(path).open("rb") as fh:
        data = fh.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise ConfigError([f"document: is larger than {MAX_BYTES} bytes (1 MiB)"], str(path))
    try:
        return data.decode("utf-8"), data
    except UnicodeDecodeError as exc:
        raise ConfigError([f"document: is not UTF-8 (byte {exc.start})"], str(path)) from exc


def newest_packaged(prefix: str, what: str) -> tuple[str, str]:
    """(text, file name) of the newest ``exporter/data/<prefix>*`` file (dated names sort by date)."""
    data_dir = importlib.resources.files("exporter").joinpath("data")
    names = sorted(e.name for e in data_dir.iterdir() if e.name.startswith(prefix))
    if not names:
        raise ConfigError([f"document: no {what} in the package"], what)
    return data_dir.joinpath(names[-1]).read_text(encoding="utf-8"), names[-1]
