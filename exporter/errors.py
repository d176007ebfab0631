"""One error hierarchy for the whole package.

    CpmError
    ├── ConfigError          a config file is unusable; carries every problem found
    └── SourceError          one source or target failed this tick; the others go on
        ├── FetchError       transport: refused, timeout, HTTP status, size limits
        └── ParseError       the payload is not the text format we expect

Every SourceError has a short ``reason`` (a bounded label value for
``cpm_target_scrape_errors_total{reason}``) and a human message.
"""

from __future__ import annotations


class CpmError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(CpmError):
    """A config could not be loaded; ``problems`` lists every problem with its path and line."""

    def __init__(self, problems: list[str], source: str = "config") -> None:
        self.problems = list(problems)
        self.source = source
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s):\n{lines}")


class SourceError(CpmError):
    """A source failed for this tick. ``reason`` is a bounded label value."""

    reason = "error"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class FetchError(SourceError):
    """Transport failure: connect, timeout, HTTP status, body or sample limits."""

    reason = "fetch"


class ParseError(SourceError):
    """The payload breaks the exposition grammar (or is not an exposition at all)."""

    reason = "parse"
