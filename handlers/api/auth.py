"""Who is calling the API: a buyer's session token, or a staff member's gate token.

All are ``bot.infra.tokens`` signed tokens (HMAC with ``CINEBOT_SECRET_KEY``), sent
as ``Authorization: Bearer <token>``; their purpose says who holds them:

- ``mp``: a mini-program session (``POST /api/login``), value = the openid;
  its orders are ``channel="miniprogram"`` (the mini-program shows its own
  order pages, so nothing is sent to chat);
- ``h5``: an H5 page opened from chat (the seat picker), value = the Official
  Account openid; its orders are ``channel="chat"``, so the e-ticket arrives in
  the chat the buyer came from;
- ``staff``: a gate scanner or a staff member's device, value = the WeCom
  userid; checked against the staff table on every call, so deactivating the
  person ends the token at once.

A gate scanner gets its token from :func:`staff_token` — there is no CLI for it
yet; an operator can run
``python -c "from handlers.api.auth import staff_token; print(staff_token(KEY, 'staff01'))"``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from aiohttp import web

from bot.infra import tokens
from domain.people import Staff, find_staff, touch_member
from domain.ticketing import Buyer
from handlers.api.context import API
from handlers.api.http import Problem

MINIPROGRAM = "mp"
PAGE = "h5"
STAFF = "staff"
SESSION_TTL = timedelta(days=7)
PAGE_TTL = timedelta(hours=24)
STAFF_TTL = timedelta(days=30)
CHANNELS = {MINIPROGRAM: "miniprogram", PAGE: "chat"}


def session_token(secret_key: str, openid: str, now: datetime) -> str:
    """A mini-program session for ``openid``, valid ``SESSION_TTL``."""
    return tokens.sign(secret_key, MINIPROGRAM, openid, (now + SESSION_TTL).timestamp())


def page_token(secret_key: str, openid: str, now: datetime) -> str:
    """A token for an H5 page a chat buyer opens (the seat picker), valid ``PAGE_TTL``."""
    return tokens.sign(secret_key, PAGE, openid, (now + PAGE_TTL).timestamp())


def staff_token(
    secret_key: str, userid: str, now: datetime | None = None, ttl: timedelta = STAFF_TTL
) -> str:
    """A check-in token for the staff member ``userid`` (their WeCom userid)."""
    expires = (now.timestamp() if now is not None else time.time()) + ttl.total_seconds()
    return tokens.sign(secret_key, STAFF, userid, expires)


@dataclass(frozen=True, slots=True)
class Session:
    buyer: Buyer
    channel: str  # what orders made in this session record as their channel


def bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "unauthorized", "请先登录。")
    return token.strip()


def _verify(request: web.Request, token: str, purposes: tuple[str, ...]) -> tuple[str, str]:
    ctx = request.app[API]
    purpose = token.split(".", 1)[0]
    if purpose not in purposes:
        raise Problem(401, "bad_token", "登录凭证无效，请重新登录。")
    try:
        value = tokens.verify(ctx.secret_key, purpose, token, ctx.clock.now().timestamp())
    except tokens.BadToken as exc:
        if str(exc) == "expired":
            raise Problem(401, "token_expired", "登录已过期，请重新登录。") from None
        raise Problem(401, "bad_token", "登录凭证无效，请重新登录。") from None
    if not value:
        raise Problem(401, "bad_token", "登录凭证无效，请重新登录。")
    return purpose, value


async def session_from_token(request: web.Request, token: str) -> Session:
    purpose, openid = _verify(request, token, (MINIPROGRAM, PAGE))
    member, _ = await touch_member(openid, request.app[API].clock.now())
    return Session(Buyer(openid, member.id, member.tier), CHANNELS[purpose])


async def buyer_session(request: web.Request) -> Session:
    """The buyer behind the request's bearer token, or 401."""
    return await session_from_token(request, bearer(request))


async def staff_member(request: web.Request) -> Staff:
    """The active staff member behind the request's bearer token, or 401/403."""
    _, userid = _verify(request, bearer(request), (STAFF,))
    staff = await find_staff(userid)
    if staff is None:
        raise Problem(403, "not_staff", "您不是在职员工，不能检票。")
    return staff
