"""What a buyer is told when their order changes: the e-ticket, a re-seat, a refund.

Called by ``domain.ticketing`` inside the transaction that made the change, so
the message is recorded (outbox) exactly when the change is, and once per
order and event however often a notify is replayed.
"""

from __future__ import annotations

from typing import Any

from bot.infra.clock import Clock, local_date_time_text
from tortoise.backends.base.client import BaseDBAsyncClient

from domain.catalog import Showtime
from domain.orders import Order, Ticket
from domain.outbox import enqueue
from domain.pricing import format_fen
from domain.ticketing import seat_names


REASONS = {
    "seats_gone": "座位保留已超时，原座位已被他人购买，且没有同样好的空座",
    "unissued": "您付款后我们的系统出票中断，恢复时您选的座位已被他人购买，未能出票",
    "duplicate_payment": "这笔订单已经支付过了，重复的付款原路退回",
    "change_void": "改签未能完成",
    "showtime_cancelled": "影城取消了这一场",
    "buyer": "您申请了退票",
    "change_difference": "改签后的差价",
}


def ticket_url(public_url: str, secret: str) -> str:
    return f"{public_url.rstrip('/')}/t/{secret}"


def show_line(showtime: Showtime) -> str:
    when = local_date_time_text(showtime.starts_at)
    return f"《{showtime.film.title}》{when} {showtime.hall.name}"


class TicketMessages:
    """The ``notify`` callback of ``domain.ticketing``."""

    def __init__(self, public_url: str, clock: Clock) -> None:
        self.public_url = public_url.rstrip("/")
        self.clock = clock

    async def __call__(
        self, event: str, order: Order, *, using: BaseDBAsyncClient, **info: Any
    ) -> None:
        if order.channel == "miniprogram":
            return  # the mini-program shows its own order pages
        payload = await self.payload(event, order, using=using, **info)
        if payload is None:
            return
        await enqueue(
            channel="wechat",
            recipient=order.openid,
            payload=payload,
            idempotency_key=f"order:{order.no}:{event}",
            now=self.clock.now(),
            using=using,
        )

    async def payload(
        self, event: str, order: Order, *, using: BaseDBAsyncClient, **info: Any
    ) -> dict[str, Any] | None:
        showtime: Showtime | None = info.get("showtime")
        if showtime is None:
            showtime = await Showtime.get(id=order.showtime_id).using_db(using)  # type: ignore[attr-defined]
        await showtime.fetch_related("film", "hall", using_db=using)
        tickets: list[Ticket] = info.get("tickets") or []
        if event in ("issued", "reseated", "changed"):
            head = {
                "issued": "🎟️ 出票成功",
                "reseated": "🎟️ 出票成功（已为您换座）",
                "changed": "🎟️ 改签成功",
            }[event]
            lines = [show_line(showtime), f"座位：{seat_names([t.seat for t in tickets])}"]
            if event == "reseated":
                lines.append("原座位保留超时后被他人购买，已为您换到同样的好位置。")
            if event == "changed" and info.get("refund_fen"):
                lines.append(f"差价 {format_fen(info['refund_fen'])} 将原路退回。")
            lines.append("入场时出示二维码即可，点开查看电子票。")
            article = {
                "title": f"{head}《{showtime.film.title}》",
                "description": "\n".join(lines),
                "url": ticket_url(self.public_url, tickets[0].secret) if tickets else "",
                "picurl": f"{ticket_url(self.public_url, tickets[0].secret)}.png" if tickets else "",
            }
            return {"msgtype": "news", "news": {"articles": [article]}}
        if event in ("refunded", "payment_refunded"):
            amount = format_fen(info.get("amount_fen", order.paid_fen))
            reason = info.get("reason", "")
            money = f"💰 退款 {amount} 已发起，将原路退回（1–3个工作日到账）。"
            if reason == "showtime_cancelled":
                text = f"抱歉，{show_line(showtime)} 已取消。\n{money}\n可以回复「买票」选择其他场次。"
            elif reason == "unissued":
                text = (
                    f"抱歉，{REASONS[reason]}。\n{money}\n{show_line(showtime)}\n"
                    "可以回复「买票」重新选座。"
                )
            else:
                text = f"{money}\n{show_line(showtime)}"
                if REASONS.get(reason):
                    text += f"\n原因：{REASONS[reason]}。"
            return {"msgtype": "text", "text": {"content": text}}
        return None
