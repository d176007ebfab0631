"""Compose a config file's YAML into a node tree, refusing what PyYAML would let through.

We only *compose* (the parser's events, our own composer, ``SafeLoader``'s resolver, no
constructor), so nothing from the file ever becomes a Python object. Refused with a reason:

- aliases, anchors and explicit tags (``!!python/object``, ``!!str``, ``!foo``):
  aliases enable "billion laughs", tags are never needed in our files;
- duplicate keys at any depth, non-text keys and nesting deeper than ``MAX_DEPTH``;
- a second document; the document is capped at ``MAX_BYTES``.

Nothing here raises on bad input: problems are recorded as ``path (line N): message`` in a
``Problems`` list, which the typed readers of ``yamlstrict.readers`` then share.
"""

from __future__ import annotations

import json
import re
from typing import cast

import yaml
from yaml.error import Mark
from yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    Event,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.reader import ReaderError
from yaml.resolver import Resolver

MAX_BYTES = 2**20  # a pricing file is a few KB; 1 MiB stops accidents and bombs early
MAX_DEPTH = 20  # our schema nests 6 deep; PyYAML's composer recurses, so cap it
MAX_PROBLEMS = 100

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")

NULL_TAG = "tag:yaml.org,2002:null"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"


class Problems:
    """Collects ``path (line N): message`` strings; nothing here raises.

    Keeps the first ``MAX_PROBLEMS``: a generated file with 10,000 bad rows needs the
    first few fixed, not a 20 MB error message.
    """

    def __init__(self) -> None:
        self.items: list[str] = []
        self.dropped = 0
        # Nodes already reported by the audit (alias, tag, anchor): readers skip them.
        self.poisoned: set[int] = set()

    def add(self, path: str, node: Node | None, message: str) -> None:
        where = f" (line {node.start_mark.line + 1})" if node is not None else ""
        self.add_raw(f"{path or 'document'}{where}: {message}")

    def add_line(self, path: str, line: int, message: str) -> None:
        self.add_raw(f"{path or 'document'} (line {line}): {message}")

    def add_raw(self, problem: str) -> None:
        if len(self.items) < MAX_PROBLEMS:
            self.items.append(problem)
        else:
            self.dropped += 1

    def report(self) -> list[str]:
        """The problems, with a last line counting those left out."""
        more = [f"document: {self.dropped} more problem(s) not shown"] if self.dropped else []
        return self.items + more

    def __bool__(self) -> bool:
        return bool(self.items)


class _Refused(Exception):
    """The document cannot be composed at all (too deep, several documents)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


# libyaml's parser is ~20x faster than pure-Python PyYAML (a 1 MiB file: 0.5 s, not 10 s);
# we only take its *events* and compose nodes ourselves, so nothing is ever constructed.
_EventLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_RESOLVER = Resolver()  # YAML 1.1 implicit tags, used only to *recognise* null/bool forms
_ALIAS = "alias *{} is not allowed (aliases can expand exponentially: 'billion laughs'); write the value out"


def _line(mark: object) -> int:
    """1-based line of a PyYAML mark (pure or libyaml), 1 if unknown."""
    line = getattr(mark, "line", None)
    return line + 1 if isinstance(line, int) else 1


class _Composer:
    """Builds the node tree from parser events without recursion and without aliases.

    Aliases become empty placeholder nodes (never a shared sub-tree), so a "billion laughs"
    document stays linear in size. What was refused is remembered by node id in ``flags``
    for the audit, which reports it with the node's path.
    """

    def __init__(self) -> None:
        self.flags: dict[int, str] = {}
        self.root: Node | None = None
        self._open: list[tuple[Event, list[Node]]] = []  # collections being filled
        self._documents = 0

    def feed(self, event: Event) -> None:
        if isinstance(event, DocumentStartEvent):
            self._documents += 1
            if self._documents > 1:
                raise _Refused(_line(event.start_mark), "a second document (---) is not allowed")
        elif isinstance(event, (SequenceStartEvent, MappingStartEvent)):
            if len(self._open) >= MAX_DEPTH:
                raise _Refused(_line(event.start_mark), f"nested deeper than {MAX_DEPTH} levels")
            self._open.append((event, []))
        elif isinstance(event, (SequenceEndEvent, MappingEndEvent)):
            start, children = self._open.pop()
            self._add(self._collection(start, event, children), start)
        elif isinstance(event, ScalarEvent):
            resolved = _RESOLVER.resolve(ScalarNode, event.value, event.implicit)  # type: ignore[no-untyped-call]
            tag = event.tag or resolved
            style = event.style or None  # plain: libyaml says "", pure PyYAML None
            node = ScalarNode(tag, event.value, _mark(event.start_mark), _mark(event.end_mark), style)
            self._add(node, event)
        elif isinstance(event, AliasEvent):
            placeholder = ScalarNode(NULL_TAG, "", _mark(event.start_mark), _mark(event.end_mark))
            self.flags[id(placeholder)] = _ALIAS.format(event.anchor)
            self._add(placeholder, None)

    @staticmethod
    def _collection(start: Event, end: Event, children: list[Node]) -> Node:
        marks = (_mark(start.start_mark), _mark(end.end_mark))
        explicit = getattr(start, "tag", None)
        if isinstance(start, SequenceStartEvent):
            return SequenceNode(explicit or _SEQ, children, *marks, start.flow_style)
        pairs = list(zip(children[::2], children[1::2], strict=True))
        return MappingNode(explicit or _MAP, pairs, *marks, getattr(start, "flow_style", None))

    def _add(self, node: Node, event: Event | None) -> None:
        tag, anchor = getattr(event, "tag", None), getattr(event, "anchor", None)
        if tag is not None:
            short = str(tag).replace("tag:yaml.org,2002:", "!!")
            self.flags[id(node)] = f"explicit tag {short} is not allowed; remove it (no tags are needed)"
        elif anchor is not None:
            self.flags[id(node)] = f"anchor &{anchor} is not allowed; write each value out"
        if self._open:
            self._open[-1][1].append(node)
        else:
            self.root = node


def _mark(mark: object) -> Mark:
    return cast("Mark", mark)  # libyaml's marks have the same .line/.column; stubs differ


def compose(text: str, problems: Problems) -> Node | None:
    """Compose ``text`` into a node tree and audit it; ``None`` if nothing usable came out."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        problems.add("document", None, f"is {size} bytes; the limit is {MAX_BYTES} (1 MiB)")
        return None
    composer = _Composer()
    try:
        for event in yaml.parse(text, Loader=_EventLoader):
            composer.feed(event)
    except _Refused as exc:
        problems.add_line("document", exc.line, exc.message)
        return None
    except ReaderError as exc:  # control characters
        line = text.count("\n", 0, exc.position) + 1 if isinstance(exc.position, int) else 1
        problems.add_line("document", line, f"invalid YAML: character #x{exc.character:04x} is not allowed")
        return None
    except yaml.MarkedYAMLError as exc:
        line = _line(exc.problem_mark or exc.context_mark)
        lines = text.splitlines()
        tab = " (a tab: indent with spaces)" if line <= len(lines) and "\t" in lines[line - 1] else ""
        problems.add_line("document", line, f"invalid YAML: {exc.problem or exc.context}{tab}")
        return None
    except yaml.YAMLError as exc:  # anything else the parser refuses, without a mark
        problems.add("document", None, f"invalid YAML: {exc}")
        return None
    root = composer.root
    if root is None or (isinstance(root, ScalarNode) and root.tag == NULL_TAG and root.style is None):
        problems.add_line("document", 1, "is empty; expected a mapping of settings")
        return None
    _audit(root, "", composer.flags, problems)
    return root


def _audit(node: Node, path: str, flags: dict[int, str], problems: Problems) -> None:
    """Report refused constructs and duplicate/non-text keys anywhere, schema or not."""
    if id(node) in flags:  # report, then keep looking inside (aliases under an anchor)
        problems.add(path, node, flags[id(node)])
        problems.poisoned.add(id(node))
    if isinstance(node, SequenceNode):
        for i, child in enumerate(node.value):
            _audit(child, index_path(path, i), flags, problems)
    elif isinstance(node, MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            if not isinstance(key, ScalarNode) or id(key) in flags:
                problems.add(path, key, "keys must be plain text")
                continue
            child = key_path(path, key.value)
            line = key.start_mark.line + 1
            if key.value in seen:
                problems.add_line(
                    child, line, f"duplicate key (first at line {seen[key.value]}); YAML would keep the last"
                )
            seen.setdefault(key.value, line)
            _audit(value, child, flags, problems)


def key_path(parent: str, key: str) -> str:
    """``pricing.gpus.H100``, or ``models["meta-llama/Llama-3.3-70B"]`` for keys with dots."""
    if _IDENT.fullmatch(key):
        return f"{parent}.{key}" if parent else key
    return f"{parent}[{json.dumps(key)}]"


def index_path(parent: str, index: int) -> str:
    return f"{parent}[{index}]"
