"""Short signed tokens: mini-program sessions, links to a buyer's pay and seat pages.

``purpose.value.expiry.mac`` with an HMAC-SHA256 over the first three parts,
keyed by ``CINEBOT_SECRET_KEY``. A token made for one purpose never passes for
another, and an expired one is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac


class BadToken(ValueError):
    pass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, message: str) -> str:
    digest = hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()
    return _b64(digest[:18])  # 144 bits: plenty against forgery, short enough for a URL


def sign(secret: str, purpose: str, value: str, expires_at: float) -> str:
    if "." in purpose:
        raise ValueError("purpose must not contain '.'")
    body = f"{purpose}.{_b64(value.encode())}.{int(expires_at)}"
    return f"{body}.{_mac(secret, body)}"


def verify(secret: str, purpose: str, token: str, now: float) -> str:
    """The signed value, or BadToken (forged, other purpose, expired, garbage)."""
    parts = token.split(".")
    if len(parts) != 4:
        raise BadToken("malformed")
    body = ".".join(parts[:3])
    if not hmac.compare_digest(parts[3], _mac(secret, body)):
        raise BadToken("signature")
    if parts[0] != purpose:
        raise BadToken("purpose")
    try:
        expires = int(parts[2])
        value = _unb64(parts[1]).decode()
    except (ValueError, UnicodeDecodeError):
        raise BadToken("malformed") from None
    if now >= expires:
        raise BadToken("expired")
    return value
