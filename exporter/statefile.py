"""The state file: written atomically after every tick, read once at start.

A restart (rollout, OOM kill, node drain) then goes on exactly: counters continue, the downtime is
billed, each target's first scrape is a delta. A file that cannot be used is never fatal: it is
reported with a reason, set aside (``<file>.bad``) and metering starts fresh.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT = "cpm-exporter-state"
VERSION = 1
# A saved tick ending this far in our future, or this far in the past, is not ours to go on from.
FUTURE_TOLERANCE_NS = 60 * 10**9
MAX_AGE_NS = 7 * 86_400 * 10**9
# Bigger than any real state (1 000 lines ≈ 1 MiB): a bigger file is not ours either.
MAX_BYTES = 256 * 2**20


@dataclass(frozen=True, slots=True)
class SavedState:
    node: str
    end_ns: int  # wall-clock end of the last saved tick
    meter: Any  # Meter.to_state()
    runtime: Any  # the runtime's own counters


class StateProblem(Exception):
    """Why a state file cannot be used: ``reason`` is a short label for the counter."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def write(path: str, saved: SavedState) -> int:
    """Write ``saved`` atomically (temp file, fsync, rename, fsync the directory); bytes written.

    A crash at any point leaves either the old file or the new one, whole."""
    doc = {"format": FORMAT, "version": VERSION, "node": saved.node, "end_ns": saved.end_ns}
    doc |= {"meter": saved.meter, "runtime": saved.runtime}
    data = (json.dumps(doc, separators=(",", ":"), allow_nan=False) + "\n").encode()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    _fsync_dir(target.parent)
    return len(data)


def read(path: str, *, node: str, now_ns: int) -> SavedState | None:
    """The saved state to go on from; None when there is no file (a first start).

    Raises StateProblem for a file that exists but cannot be used: ``unreadable``, ``too_large``,
    ``truncated``, ``corrupt``, ``foreign_format``, ``future_version``, ``old_version``,
    ``foreign_node``, ``dated`` (its last tick is in the future or over a week old)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StateProblem("unreadable", f"cannot read: {e.strerror or e}") from e
    if len(data) > MAX_BYTES:
        raise StateProblem("too_large", f"larger than {MAX_BYTES} bytes")
    if not data.endswith(b"\n"):
        raise StateProblem("truncated", f"ends without a newline after {len(data)} bytes (a cut write)")
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, ValueError) as e:
        raise StateProblem("corrupt", f"not JSON: {e}") from e
    return _checked(doc, node, now_ns)


def set_aside(path: str) -> str:
    """Move an unusable file out of the way (kept for a post-mortem); the new path, or ""."""
    aside = path + ".bad"
    try:
        os.replace(path, aside)
    except OSError:
        return ""
    return aside


def _checked(doc: Any, node: str, now_ns: int) -> SavedState:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise StateProblem("foreign_format", f"not a {FORMAT} file")
    version = doc.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise StateProblem("future_version", f"format version {version!r}; this exporter reads {VERSION}")
    if version < VERSION:
        raise StateProblem("old_version", f"format version {version}; this exporter reads {VERSION}")
    if doc.get("node") != node:
        raise StateProblem("foreign_node", f"saved by node {doc.get('node')!r}, this is {node!r}")
    end_ns = doc.get("end_ns")
    if not isinstance(end_ns, int) or isinstance(end_ns, bool):
        raise StateProblem("corrupt", "end_ns is not an integer")
    if end_ns > now_ns + FUTURE_TOLERANCE_NS:
        raise StateProblem("dated", f"its last tick ends {(end_ns - now_ns) / 1e9:.0f} s in the future")
    if now_ns - end_ns > MAX_AGE_NS:
        raise StateProblem("dated", f"its last tick ended {(now_ns - end_ns) / 86_400e9:.1f} days ago")
    if not isinstance(doc.get("meter"), dict) or not isinstance(doc.get("runtime"), dict):
        raise StateProblem("corrupt", "meter or runtime section missing")
    return SavedState(node, end_ns, doc["meter"], doc["runtime"])


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (a power loss right after must not bring back the old file)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
