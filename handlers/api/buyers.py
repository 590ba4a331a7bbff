"""The buyer's API: log in, browse, pick seats, hold, pay, see tickets, refund, change.

Thin views: parse and check the request, call ``domain.ticketing``, serialise.
A buyer sees and acts on their own orders only: anyone else's order is 404,
exactly like one that does not exist.
"""

from __future__ import annotations

import logging
from datetime import datetime, time, timedelta
from typing import Any

import aiohttp
from aiohttp import web

from bot.infra.logs import short_openid
from bot.wechat.pay import PayApiError
from bot.wechat.api import ApiError as WeChatError
from domain import ticketing
from domain.catalog import Film, Showtime, upcoming_showtimes
from domain.cinemas import Cinema, home_cinema
from domain.orders import (
    OPEN_STATES, ORDER_STATE_LABELS, SOLD_STATES, Order, OrderState, Refund, Ticket,
)
from domain.people import touch_member
from handlers.api import serialise
from handlers.api.auth import SESSION_TTL, Session, buyer_session, session_token
from handlers.api.context import API, ApiContext
from handlers.api.http import (
    MAX_SEATS,
    Problem,
    int_field,
    invalid,
    json_view,
    ok,
    path_int,
    query_date,
    query_int,
    read_json,
    seats_field,
    str_field,
)

log = logging.getLogger(__name__)
SHANGHAI = serialise.SHANGHAI
# A cinema day runs past midnight: late shows until 03:00 belong to it (as in chat).
DAY_SPILL = timedelta(hours=3)
# jscode2session errcodes that mean "this code is no good": wx.login again.
BAD_CODE = frozenset({40029, 40163, 41008})


# --- login and browsing ------------------------------------------------------------------------


@json_view
async def login(request: web.Request) -> web.Response:
    ctx = request.app[API]
    body = await read_json(request)
    code = str_field(body, "code", max_len=256)
    assert code is not None
    try:
        answer = await ctx.wechat.jscode2session(
            ctx.miniprogram_appid, ctx.miniprogram_secret, code
        )
    except WeChatError as exc:
        if exc.errcode in BAD_CODE:
            raise Problem(401, "bad_code", "登录凭证无效或已使用，请重新登录。") from None
        if exc.errcode == 45011:
            raise Problem(429, "too_frequent", "登录太频繁了，请稍后再试。") from None
        if exc.errcode == 40226:
            raise Problem(403, "risky_user", "该微信账号暂时无法登录，请联系影城客服。") from None
        if exc.retryable or exc.token_expired:
            raise Problem(503, "wechat_unavailable", "微信登录服务暂时不可用，请稍后再试。") from None
        # 40013/40125 and the like: our own appid or secret is wrong.
        log.error("mini-program login refused by WeChat", extra={"errcode": exc.errcode})
        raise Problem(502, "login_failed", "登录失败，请稍后再试。") from None
    openid = str(answer["openid"])
    now = ctx.clock.now()
    await touch_member(openid, now)
    return ok(
        {
            "token": session_token(ctx.secret_key, openid, now),
            "openid_hint": short_openid(openid),
            "expires_in": int(SESSION_TTL.total_seconds()),
        }
    )


@json_view
async def films(request: web.Request) -> web.Response:
    return ok({"films": [serialise.film(f) for f in await Film.all().order_by("id")]})


async def _cinema(request: web.Request) -> Cinema:
    cinema = await home_cinema(query_int(request, "cinema_id"))
    if cinema is None:
        raise Problem(404, "no_cinema", "没有找到这家影城。")
    return cinema


@json_view
async def showtimes(request: web.Request) -> web.Response:
    ctx = request.app[API]
    now = ctx.clock.now()
    day = query_date(request, "date") or now.astimezone(SHANGHAI).date()
    film_id = query_int(request, "film_id")
    cinema = await _cinema(request)
    start = datetime.combine(day, time(0), SHANGHAI)
    shows = await upcoming_showtimes(
        cinema.id, start, start + timedelta(days=1) + DAY_SPILL,
        [film_id] if film_id else None, limit=500,
    )
    return ok(
        {
            "cinema": {"id": cinema.id, "name": cinema.name},
            "date": day.isoformat(),
            "showtimes": [serialise.showtime(s, now) for s in shows],
        }
    )


async def _showtime(showtime_id: int) -> Showtime:
    show = await Showtime.get_or_none(id=showtime_id).prefetch_related("film", "hall", "cinema")
    if show is None:
        raise Problem(404, "no_showtime", "没有这一场。")
    return show


@json_view
async def seats(request: web.Request) -> web.Response:
    ctx = request.app[API]
    session = await buyer_session(request)
    show = await _showtime(path_int(request, "id"))
    now = ctx.clock.now()
    plan, states, mine = await ticketing.house(ctx.inventory, show, now, session.buyer.openid)
    # One seat of each kind prices every kind for this buyer (tier, today's discount).
    sample: dict[str, str] = {}
    for label, seat in plan.seats.items():
        if seat.kind != "blocked":
            sample.setdefault(seat.kind, label)
    prices = None
    if sample:
        quote = await ticketing.price(show, plan, list(sample.values()), session.buyer.tier, now)
        prices = serialise.prices(quote)
    hold = None
    held = await ticketing.open_order(session.buyer.openid, show.id)
    if held is not None and held.expires_at > now:
        hold = serialise.order(ctx, held, now)
    cinema: Cinema = show.cinema
    return ok(
        {
            "showtime": serialise.showtime(show, now),
            "map": serialise.seat_map(plan, states, mine),
            "prices": prices,
            "hold": hold,
            "limits": {
                "max_per_order": cinema.max_seats_per_order,
                "max_per_showtime": cinema.max_seats_per_showtime,
                "hold_minutes": cinema.hold_minutes,
            },
        }
    )


# --- holding and paying ------------------------------------------------------------------------


@json_view
async def hold(request: web.Request) -> web.Response:
    ctx = request.app[API]
    session = await buyer_session(request)
    body = await read_json(request)
    showtime_id = int_field(body, "showtime_id")
    chosen = seats_field(body)
    count = int_field(body, "count", required=False, high=MAX_SEATS)
    row = int_field(body, "row", required=False, high=999)
    if chosen is None and count is None:
        raise invalid("seats", "和 count 至少要给一个")
    if chosen is not None and count is not None and count != len(chosen):
        raise invalid("count", "与座位数不一致")
    assert showtime_id is not None
    show = await _showtime(showtime_id)
    now = ctx.clock.now()
    # Picking again replaces the buyer's unconfirmed hold for this show in one step,
    # rather than stacking a second order against the per-show limit.
    replacing = await ticketing.open_order(session.buyer.openid, show.id)
    if replacing is not None and replacing.state != OrderState.HELD:
        replacing = None
    order = await ticketing.hold_seats(
        ctx.inventory, show, session.buyer, now, count=count, seats=chosen, row=row,
        replacing=replacing, channel=session.channel,
    )
    return ok({"order": serialise.order(ctx, order, now, show=show)}, status=201)


async def _own_order(request: web.Request, session: Session) -> Order:
    order = await Order.get_or_none(no=request.match_info["no"], openid=session.buyer.openid)
    if order is None:
        raise Problem(404, "no_order", "没有这笔订单。")
    return order


async def _order_json(ctx: ApiContext, order: Order, now: datetime) -> dict[str, Any]:
    show = await _showtime(order.showtime_id)  # type: ignore[attr-defined]
    tickets = await Ticket.filter(order_id=order.id).order_by("id")
    changed_from = None
    old_id = order.changed_from_id  # type: ignore[attr-defined]
    if old_id is not None:
        changed_from = await Order.filter(id=old_id).first().values_list("no", flat=True)
    return serialise.order(
        ctx, order, now, show=show, tickets=tickets,
        changed_from=str(changed_from) if changed_from else None,
    )


@json_view
async def get_order(request: web.Request) -> web.Response:
    ctx = request.app[API]
    session = await buyer_session(request)
    order = await _own_order(request, session)
    return ok({"order": await _order_json(ctx, order, ctx.clock.now())})


@json_view
async def release(request: web.Request) -> web.Response:
    ctx = request.app[API]
    session = await buyer_session(request)
    order = await _own_order(request, session)
    now = ctx.clock.now()
    if not await ticketing.release_order(ctx.inventory, order, by=session.buyer.openid, now=now):
        await order.refresh_from_db()
        label = ORDER_STATE_LABELS.get(order.state, "已处理")
        raise Problem(409, "state", f"这笔订单{label}，不能取消。")
    return ok({"order": await _order_json(ctx, order, now)})


async def _pay_params(ctx: ApiContext, order: Order) -> dict[str, Any]:
    """What the client needs to pay ``order`` (already pending payment)."""
    try:
        params = await ctx.payments.jsapi(order, f"电影票 {order.no}")
    except (PayApiError, aiohttp.ClientError, TimeoutError) as exc:
        log.error(
            "could not start a payment", extra={"order": order.no, "error": type(exc).__name__}
        )
        raise Problem(502, "pay_unavailable", "微信支付暂时不可用，请稍后再试。") from None
    out: dict[str, Any] = {"pay": params, "sandbox": ctx.payments.sandbox}
    if ctx.payments.sandbox:
        # No wx.requestPayment in the demo: the sandbox bank's page takes the payment.
        out["pay_url"] = ctx.payments.pay_url(order)
    return out


@json_view
async def pay(request: web.Request) -> web.Response:
    ctx = request.app[API]
    session = await buyer_session(request)
    order = await _own_order(request, session)
    now = ctx.clock.now()
    if order.state in SOLD_STATES:
        raise Problem(409, "paid", "这笔订单已经支付过了。")
    if order.state not in OPEN_STATES:
        label = ORDER_STATE_LABELS.get(order.state, "已失效")
        raise Problem(409, "not_open", f"这笔订单{label}，请重新选座。")
    order = await ticketing.checkout(order, now=now)
    payment = await _pay_params(ctx, order)
    return ok({"order": await _order_json(ctx, order, now), **payment})


@json_view
async def my_tickets(request: web.Request) -> web.Response:
    ctx = request.app[API]
    session = await buyer_session(request)
    now = ctx.clock.now()
    orders = await ticketing.my_tickets(session.buyer.openid, now, limit=50)
    return ok(
        {
            "orders": [
                serialise.order(
                    ctx, o, now, show=o.showtime, tickets=sorted(o.tickets, key=lambda t: t.id)
                )
                for o in orders
            ]
        }
    )


# --- after paying ------------------------------------------------------------------------------


@json_view
async def refund(request: web.Request) -> web.Response:
    ctx = request.app[API]
    session = await buyer_session(request)
    order = await _own_order(request, session)
    now = ctx.clock.now()
    if order.state in OPEN_STATES:
        raise Problem(409, "not_paid", "这笔订单还没有支付，不用退票，直接取消即可。")
    done = await ticketing.refund_order(
        ctx.inventory, ctx.payments, order, by=session.buyer.openid, now=now, notify=ctx.notify
    )
    ctx.wake_sender()
    fresh = await Refund.get(id=done.id)
    return ok(
        {
            "order": await _order_json(ctx, order, now),
            "refund": {"no": fresh.no, "amount_fen": fresh.amount_fen, "state": str(fresh.state)},
        }
    )


@json_view
async def change(request: web.Request) -> web.Response:
    ctx = request.app[API]
    session = await buyer_session(request)
    body = await read_json(request)
    target_id = int_field(body, "showtime_id")
    chosen = seats_field(body)
    assert target_id is not None
    order = await _own_order(request, session)
    if chosen is not None and len(chosen) != len(order.seats):
        raise invalid("seats", f"应为 {len(order.seats)} 个座位（与原订单张数相同）")
    target = await _showtime(target_id)
    now = ctx.clock.now()
    outcome = await ticketing.change_order(
        ctx.inventory, ctx.payments, order, target, session.buyer, now=now, notify=ctx.notify,
        seats=chosen,
    )
    new = outcome.order
    if new.channel != order.channel:
        # change_order holds the new seats as a "chat" order whatever the old one was
        # (domain.ticketing does not pass the channel on); keep the buyer's channel.
        await Order.filter(id=new.id).update(channel=order.channel)
        new.channel = order.channel
    ctx.wake_sender()
    out: dict[str, Any] = {
        "order": await _order_json(ctx, new, now),
        "from": order.no,
        "due_fen": outcome.due_fen,
        "done": outcome.done,
    }
    if outcome.due_fen > 0 and not outcome.done:
        out.update(await _pay_params(ctx, new))
    return ok(out)
