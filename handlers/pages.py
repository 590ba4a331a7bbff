"""H5 pages a buyer opens from chat: the e-ticket with its QR code, and the pay page.

The ticket page is addressed by the ticket's secret (158 random bits) — holding
the link is holding the ticket, as with a paper one. The pay page is addressed
by a signed token that names the order and ends soon after the hold.
"""

from __future__ import annotations

import io
import logging
from html import escape

import segno
from aiohttp import web

from bot.infra.clock import local_date_time_text
from bot.infra.tokens import BadToken
from domain.orders import ORDER_STATE_LABELS, Order, OrderState, Ticket, TicketState
from domain.pricing import format_fen
from domain.ticketing import TicketingError, checkout, seat_names
from handlers.api.context import API
from handlers.style import STYLE

log = logging.getLogger(__name__)
SECRET = r"{secret:[a-z0-9]{16,40}}"


def _page(title: str, body: str, status: int = 200) -> web.Response:
    html = (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )
    return web.Response(text=html, content_type="text/html", status=status)


async def ticket_qr(request: web.Request) -> web.Response:
    secret = request.match_info["secret"]
    if not await Ticket.exists(secret=secret):
        raise web.HTTPNotFound(text="没有这张票")
    buffer = io.BytesIO()
    segno.make(secret, error="m").save(buffer, kind="png", scale=8, border=2)
    return web.Response(
        body=buffer.getvalue(),
        content_type="image/png",
        headers={"Cache-Control": "private, max-age=86400"},
    )


async def ticket_page(request: web.Request) -> web.Response:
    secret = request.match_info["secret"]
    ticket = await Ticket.get_or_none(secret=secret).prefetch_related("order")
    if ticket is None:
        return _page("电子票", '<div class="card"><h1>没有找到这张票</h1>'
                     '<p class="muted">链接可能不完整，请回到聊天里重新打开。</p></div>', 404)
    order: Order = ticket.order
    tickets = await Ticket.filter(order_id=order.id).order_by("id").prefetch_related(
        "showtime__film", "showtime__hall"
    )
    show = tickets[0].showtime
    cards = []
    for t in tickets:
        state = {
            TicketState.ISSUED: "可入场",
            TicketState.CHECKED_IN: "已检票",
            TicketState.REFUNDED: "已退票",
            TicketState.CHANGED: "已改签",
        }[t.state]
        qr = (
            f'<img class="qr" src="/t/{t.secret}.png" alt="入场二维码">'
            if t.state == TicketState.ISSUED
            else ""
        )
        cards.append(
            f'<div class="card"><b>{escape(seat_names([t.seat]))}</b> '
            f'<span class="state">{state}</span>{qr}'
            f'<div class="muted">票码 {t.secret[:4]}…{t.secret[-4:]}</div></div>'
        )
    body = (
        f'<div class="card"><h1>《{escape(show.film.title)}》</h1>'
        f"<div>{local_date_time_text(show.starts_at)} · {escape(show.hall.name)} · "
        f"{escape(show.format)}</div>"
        f'<div class="muted">订单 {order.no} · {ORDER_STATE_LABELS[order.state]}</div></div>'
        + "".join(cards)
        + '<p class="muted">开场前60分钟起凭二维码入场；一码一人，请勿转发截图给他人。</p>'
        + await _survey_link(order, secret)
    )
    return _page("电子票", body)


async def _survey_link(order: Order, secret: str) -> str:
    """The e-ticket page's feedback touchpoint: the survey knows the show from the ticket."""
    from domain.touchpoints import Touchpoint, TouchpointKind

    point = await Touchpoint.filter(
        cinema_id=order.cinema_id, kind=TouchpointKind.ETICKET, active=True
    ).first()
    if point is None:
        return ""
    return f'<p><a href="/s/{point.code}?ticket={secret}">⭐ 看完了？评价本次观影（约30秒）</a></p>'


async def _order_from_token(request: web.Request) -> Order:
    ctx = request.app[API]
    try:
        number = ctx.payments.order_no_from(request.match_info["token"])
    except BadToken:
        raise web.HTTPNotFound(text="支付链接无效或已过期") from None
    order = await Order.get_or_none(no=number).prefetch_related("showtime__film", "showtime__hall")
    if order is None:
        raise web.HTTPNotFound(text="没有这笔订单")
    return order


async def pay_page(request: web.Request) -> web.Response:
    ctx = request.app[API]
    order = await _order_from_token(request)
    show = order.showtime
    now = ctx.clock.now()
    head = (
        f'<div class="card"><h1>《{escape(show.film.title)}》</h1>'
        f"<div>{local_date_time_text(show.starts_at)} · {escape(show.hall.name)}</div>"
        f"<div>{escape(seat_names(order.seats))}</div>"
        f'<div class="amount">{format_fen(order.amount_fen)}</div>'
        f'<div class="muted">订单 {order.no}</div></div>'
    )
    if order.state in (OrderState.PAID, OrderState.ISSUED, OrderState.CHECKED_IN):
        return _page("支付成功", head + '<div class="card">✅ 已支付，电子票已发到聊天窗口。</div>')
    if order.state not in (OrderState.HELD, OrderState.PENDING_PAYMENT) or order.expires_at <= now:
        return _page("订单已失效", head + '<div class="card">座位保留已结束，请回到聊天重新选座。</div>')
    left = int((order.expires_at - now).total_seconds())
    countdown = (
        f'<p class="muted">座位保留剩余 <b id="left">{left // 60}:{left % 60:02d}</b>，超时自动释放。</p>'
        f"<script>var s={left};setInterval(function(){{if(s>0)s--;"
        "document.getElementById('left').textContent=Math.floor(s/60)+':'+('0'+s%60).slice(-2);"
        "}},1000)</script>"
    )
    if ctx.payments.sandbox:
        action = (
            f'<form method="post" action="/pay/{request.match_info["token"]}">'
            '<button class="btn">确认支付（演示沙箱，不扣真钱）</button></form>'
        )
    else:
        action = (
            '<button class="btn" id="pay">微信支付</button>'
            f"<script>document.getElementById('pay').onclick=function(){{"
            f"fetch('/pay/{request.match_info['token']}/jsapi',{{method:'POST'}}).then(r=>r.json())"
            ".then(p=>WeixinJSBridge.invoke('getBrandWCPayRequest',p,function(){location.reload()}))}"
            "</script>"
        )
    return _page("确认支付", head + f'<div class="card">{countdown}{action}</div>')


async def pay_submit(request: web.Request) -> web.Response:
    """The sandbox bank's "pay" button: it sends the signed notify to our notify endpoint."""
    ctx = request.app[API]
    if not ctx.payments.sandbox:
        raise web.HTTPNotFound()
    order = await _order_from_token(request)
    try:
        await checkout(order, now=ctx.clock.now())
    except TicketingError as exc:
        if order.state not in (OrderState.PAID, OrderState.ISSUED):
            return _page("无法支付", f'<div class="card">{escape(exc.message)}</div>', 409)
    status = await ctx.payments.sandbox_pay(order, _own_origin(request))
    if status >= 400:
        log.error("sandbox notify was refused", extra={"order": order.no, "status": status})
        return _page("支付失败", '<div class="card">支付未成功，请稍后再试或回复「转人工」。</div>', 502)
    raise web.HTTPSeeOther(f"/pay/{request.match_info['token']}")


def _own_origin(request: web.Request) -> str | None:
    """This server's own listening address: the sandbox bank calls back the very process
    that served the page (a test server's random port included), never a host named by
    the request's headers."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if not sockname or not isinstance(sockname, tuple):
        return None
    host, port = sockname[0], sockname[1]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


async def pay_jsapi(request: web.Request) -> web.Response:
    ctx = request.app[API]
    order = await _order_from_token(request)
    try:
        await checkout(order, now=ctx.clock.now())
    except TicketingError as exc:
        return web.json_response({"code": exc.code, "message": exc.message}, status=409)
    params = await ctx.payments.jsapi(order, f"电影票 {order.no}")
    return web.json_response(params)


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"/t/{SECRET}.png", ticket_qr)
    app.router.add_get(f"/t/{SECRET}", ticket_page)
    app.router.add_get("/pay/{token}", pay_page)
    app.router.add_post("/pay/{token}", pay_submit)
    app.router.add_post("/pay/{token}/jsapi", pay_jsapi)
