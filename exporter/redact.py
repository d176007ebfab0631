"""URLs as we may print them: never a password, a token or a query string (they may hold secrets)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """``url`` with its userinfo and query replaced by ``***``: safe for logs, answers and pages."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparsable URL>"
    if parts.username is None and parts.password is None and not parts.query:
        return url
    netloc = ("***@" if parts.username is not None or parts.password is not None else "") + (
        f"[{host}]" if ":" in host else host
    )
    netloc += f":{port}" if port is not None else ""
    return urlunsplit((parts.scheme, netloc, parts.path, "***" if parts.query else "", parts.fragment))
