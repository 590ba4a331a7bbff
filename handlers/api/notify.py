"""``POST /api/pay/notify``: WeChat Pay (or the sandbox bank) says an order was paid.

Verified (signature, time window, decryption) before anything is read; then
handed to ``domain.ticketing.record_payment``, which is idempotent. The HTTP
status is the answer WeChat Pay acts on: 204 done, 4xx refused (logged), 5xx
"try again later" (its retry schedule runs for a day).
"""

from __future__ import annotations

import logging

from aiohttp import web

from bot.wechatpay import NotifyRejected, RefundNotice
from domain import ticketing
from handlers.api.context import API

log = logging.getLogger(__name__)
MAX_NOTIFY_BYTES = 64 * 1024


def _fail(status: int, message: str) -> web.Response:
    return web.json_response({"code": "FAIL", "message": message}, status=status)


async def pay_notify(request: web.Request) -> web.Response:
    ctx = request.app[API]
    if request.content_length is not None and request.content_length > MAX_NOTIFY_BYTES:
        return _fail(413, "body too large")
    body = await request.read()
    if len(body) > MAX_NOTIFY_BYTES:
        return _fail(413, "body too large")
    try:
        notice = ctx.payments.verify(request.headers, body)
    except NotifyRejected as exc:
        log.warning("payment notify rejected", extra={"reason": exc.reason, "peer": request.remote})
        ctx.metrics_notify("rejected")
        return _fail(401, exc.reason)
    if isinstance(notice, RefundNotice):
        log.info("refund notify", extra={"refund": notice.out_refund_no, "status": notice.refund_status})
        return web.Response(status=204)
    if notice.trade_state != "SUCCESS":
        return web.Response(status=204)  # nothing to do for NOTPAY/CLOSED notifies
    try:
        outcome = await ticketing.record_payment(
            ctx.inventory,
            ctx.payments,
            ticketing.PaymentNotice(
                out_trade_no=notice.out_trade_no,
                transaction_id=notice.transaction_id,
                amount_fen=notice.amount_fen,
                payer_openid=notice.payer_openid,
            ),
            ctx.clock.now(),
            ctx.notify,
        )
    except ticketing.PaymentRefused as exc:
        log.error(
            "payment notify refused",
            extra={"reason": exc.reason, "order": notice.out_trade_no, "amount": notice.amount_fen},
        )
        ctx.metrics_notify("refused")
        return _fail(400, exc.reason)
    ctx.metrics_notify(outcome.outcome)
    if outcome.outcome == "processing":
        return _fail(503, "being processed; retry later")
    ctx.wake_sender()
    return web.Response(status=204)
