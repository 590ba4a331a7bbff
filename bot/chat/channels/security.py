"""Signature and freshness checks shared by both channels."""

from __future__ import annotations

import hashlib
import hmac


class CallbackRejected(Exception):
    """A callback we refuse. ``status`` is the 4xx to answer, ``reason`` a short log tag."""

    def __init__(self, status: int, reason: str, detail: str = "") -> None:
        super().__init__(f"{status} {reason}{': ' + detail if detail else ''}")
        self.status = status
        self.reason = reason
        self.detail = detail


def sha1_signature(*parts: str) -> str:
    """WeChat's signature: sha1 over the lexicographically sorted parts, concatenated."""
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


def require_signature(expected: str, given: str | None) -> None:
    # Constant-time: a timing oracle on signatures is a forgery oracle.
    if not given or not hmac.compare_digest(expected.encode(), given.lower().encode("utf-8")):
        raise CallbackRejected(403, "bad_signature")


def require_fresh(timestamp: str | None, now: float, tolerance: int) -> int:
    if not timestamp:
        raise CallbackRejected(400, "missing_timestamp")
    try:
        ts = int(timestamp)
    except ValueError:
        raise CallbackRejected(400, "bad_timestamp") from None
    if abs(now - ts) > tolerance:
        raise CallbackRejected(403, "stale_timestamp", f"skew {int(now - ts)} s")
    return ts


def require_params(query: dict[str, str], *names: str) -> list[str]:
    missing = [n for n in names if not query.get(n)]
    if missing:
        raise CallbackRejected(400, "missing_params", ",".join(missing))
    return [query[n] for n in names]
