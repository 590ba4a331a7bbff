"""What a console section reads from its request: the period of the page and a figure's own
parameters (``?film=12&day=2025-05-01``), parsed strictly — ids as ASCII digits, days as ISO
dates, words from a fixed list. Anything else is a 400, never a 500 or a silently wider list.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date

from aiohttp import web

from domain import reports
from handlers.console.base import PageContext


def period(ctx: PageContext) -> reports.Period:
    """The page's cinemas and business days as the reports read them."""
    return reports.Period(ctx.scope.cinema_ids, ctx.scope.start, ctx.scope.end)


def _refuse(name: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=f"参数 {name} 有误")


def integer(ctx: PageContext, name: str, *, maximum: int = 2**31 - 1) -> int | None:
    raw = ctx.query.get(name)
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 10) or int(raw) > maximum:
        raise _refuse(name)
    return int(raw)


def day(ctx: PageContext, name: str = "day") -> date | None:
    raw = ctx.query.get(name)
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and len(raw) == 10):
        raise _refuse(name)
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise _refuse(name) from None


def choice(ctx: PageContext, name: str, allowed: Collection[str]) -> str | None:
    raw = ctx.query.get(name)
    if raw is None or raw == "":
        return None
    if raw not in allowed:
        raise _refuse(name)
    return raw


def text(ctx: PageContext, name: str, *, max_length: int = 32) -> str | None:
    """A free word (a hall's name, a device id): printable, short. ``""`` stays ``""`` (the
    reports' "unknown"), absent is ``None``."""
    raw = ctx.query.get(name)
    if raw is None:
        return None
    if len(raw) > max_length or not raw.isprintable():
        raise _refuse(name)
    return raw


def flag(ctx: PageContext, name: str) -> bool:
    return choice(ctx, name, ("1", "0")) == "1"


def page(ctx: PageContext, name: str = "page") -> int:
    """The page asked for, 1 when absent."""
    value = integer(ctx, name, maximum=100_000)
    return max(1, value or 1)
