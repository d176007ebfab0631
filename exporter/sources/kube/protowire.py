"""Protocol Buffers wire format, read strictly: just enough to decode a few small messages
without generated classes (``podresources``). Rejects truncated or over-long varints and
lengths, invalid wire types, out-of-range field numbers, unbalanced or over-deep groups and
bad UTF-8; skips unknown fields of every wire type (groups included) so newer senders' additions
pass through. Spec: https://protobuf.dev/programming-guides/encoding/
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

_VARINT, _I64, _LEN, _SGROUP, _EGROUP, _I32 = 0, 1, 2, 3, 4, 5
_MAX_FIELD_NUMBER = (1 << 29) - 1
_MAX_GROUP_DEPTH = 100  # protobuf's own default recursion limit

_T = TypeVar("_T")


class Malformed(ValueError):
    """The bytes are not a valid encoding; the message says where and why."""


def repeated(buf: memoryview, field: int, decoder: Callable[[memoryview], _T]) -> Iterator[_T]:
    for number, wire, value in fields(buf):
        if number == field:
            yield decoder(message(wire, value, f"field {field}"))


def message(wire: int, value: int | memoryview, what: str) -> memoryview:
    if wire != _LEN or not isinstance(value, memoryview):
        raise Malformed(f"{what} has wire type {wire}, expected {_LEN} (length-delimited)")
    return value


def text(wire: int, value: int | memoryview, what: str) -> str:
    try:
        return bytes(message(wire, value, what)).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Malformed(f"{what} is not UTF-8 ({exc.reason} at byte {exc.start})") from None


def fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) of each field; groups are skipped whole."""
    pos = 0
    while pos < len(buf):
        number, wire, value, pos = _field(buf, pos)
        if wire == _EGROUP:
            raise Malformed(f"end of group {number} that never started")
        if wire == _SGROUP:
            pos = _skip_group(buf, pos, number)
        yield number, wire, value


def _field(buf: memoryview, pos: int) -> tuple[int, int, int | memoryview, int]:
    key, pos = _varint(buf, pos)
    number, wire = key >> 3, key & 7
    if not 1 <= number <= _MAX_FIELD_NUMBER:
        raise Malformed(f"field number {number} out of range")
    value: int | memoryview = 0
    if wire == _VARINT:
        value, pos = _varint(buf, pos)
    elif wire in (_I64, _I32):
        size = 8 if wire == _I64 else 4
        if pos + size > len(buf):
            raise Malformed(f"field {number} truncated: {size}-byte value at byte {pos}")
        value, pos = int.from_bytes(buf[pos : pos + size], "little"), pos + size
    elif wire == _LEN:
        length, pos = _varint(buf, pos)
        if length > len(buf) - pos:
            raise Malformed(f"field {number} truncated: {length} bytes announced at byte {pos}")
        value, pos = buf[pos : pos + length], pos + length
    elif wire not in (_SGROUP, _EGROUP):
        raise Malformed(f"field {number} has invalid wire type {wire}")
    return number, wire, value, pos


def _skip_group(buf: memoryview, pos: int, number: int) -> int:
    open_groups = [number]
    while open_groups:
        if pos >= len(buf):
            raise Malformed(f"group {open_groups[-1]} not closed")
        inner, wire, _, pos = _field(buf, pos)
        if wire == _SGROUP:
            if len(open_groups) >= _MAX_GROUP_DEPTH:
                raise Malformed(f"groups nested deeper than {_MAX_GROUP_DEPTH}")
            open_groups.append(inner)
        elif wire == _EGROUP and open_groups.pop() != inner:
            raise Malformed(f"group ended with field {inner}, not the one that started it")
    return pos


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    for i in range(pos, min(pos + 10, len(buf))):
        byte = buf[i]
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if result >> 64:
                raise Malformed(f"varint at byte {pos} exceeds 64 bits")
            return result, i + 1
        shift += 7
    if len(buf) - pos >= 10:
        raise Malformed(f"varint at byte {pos} longer than 10 bytes")
    raise Malformed(f"varint at byte {pos} truncated")
