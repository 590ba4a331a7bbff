"""``POST /api/pay/notify``: WeChat Pay (or the sandbox bank) says an order was paid, or
how a refund ended.

Verified (signature, time window, decryption) before anything is read; then
handed to ``domain.ticketing.record_payment``, which is idempotent. The HTTP
status is the answer WeChat Pay acts on: 204 done, 4xx refused (logged), 5xx
"try again later" (its retry schedule runs for a day).
"""

from __future__ import annotations

import logging

from aiohttp import web

from bot.wechat.pay import NotifyRejected, RefundNotice
from domain import refunds, ticketing
from handlers.api.context import API, ApiContext

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
        return await _refund_notify(ctx, notice)
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


async def _refund_notify(ctx: ApiContext, notice: RefundNotice) -> web.Response:
    """REFUND.SUCCESS / ABNORMAL / CLOSED: the refund's state follows, and the duty manager
    hears of one that needs a person."""
    try:
        await refunds.record_result(
            notice.out_refund_no, notice.refund_status, notice.refund_fen, ctx.clock.now(),
            ctx.refund_alerts,
        )
    except refunds.RefundRefused as exc:
        extra = {"reason": exc.reason, "refund": notice.out_refund_no, "order": notice.out_trade_no}
        if exc.reason == "unknown_refund":
            # Made outside cinebot (the merchant platform): nothing of ours to update, and a
            # 4xx would only have WeChat Pay send it again for a day.
            log.warning("refund notify for an unknown refund", extra=extra)
            return web.Response(status=204)
        log.error("refund notify refused", extra=extra)
        ctx.metrics_notify("refused")
        return _fail(400, exc.reason)
    ctx.metrics_notify(f"refund_{notice.refund_status.lower()}")
    ctx.wake_sender()
    return web.Response(status=204)
