"""Numbers from outside, read by their real grammar: ASCII digits and nothing else.

``str.isdigit()`` is true for ``²``, ``٣`` and ``３``; ``int()`` then refuses the first
(a 500 where a 400 belonged) and quietly accepts the others, along with spaces, a sign and
underscores ("1_0" is 10). Neither is what WeChat, a page or a payment notify sends, so
every number that crosses the edge goes through :func:`parse_ascii_int`.
"""

from __future__ import annotations

# Enough for any id, timestamp or MsgId (a 64-bit MsgId has up to 20 digits); far below
# the 4,300 digits at which int() itself gives up with a ValueError.
MAX_DIGITS = 20


def is_ascii_digits(text: object, max_digits: int = MAX_DIGITS) -> bool:
    """True when ``text`` is 1 to ``max_digits`` of the characters 0-9."""
    return (
        isinstance(text, str)
        and 0 < len(text) <= max_digits
        and text.isascii()
        and text.isdigit()
    )


def parse_ascii_int(text: object, max_digits: int = MAX_DIGITS) -> int | None:
    """``text`` as a non-negative int when it is 1 to ``max_digits`` ASCII digits, else None."""
    return int(text) if is_ascii_digits(text, max_digits) else None  # type: ignore[arg-type]
