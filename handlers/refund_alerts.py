"""The duty manager hears of a refund that needs a person: abnormal, closed, failed or stalled.

``RefundAlerts`` is the ``alert`` of ``domain.refunds``: called inside the
transaction that moved the refund, it records (outbox) one WeCom message per
manager on duty — else every manager of the cinema — once per refund and event.
The buyer is not named: the order number finds everything else in the console.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from bot.infra.clock import Clock
from domain.orders import Order, Refund
from domain.outbox import enqueue
from domain.pricing import format_fen
from domain.workorders import managers, on_duty

log = logging.getLogger(__name__)

# What happened, and what the manager is to do about it.
WHAT = {
    "abnormal": (
        "⚠️ 退款异常",
        "微信支付返回「退款异常」，多为顾客的银行卡已注销或冻结。"
        "请在微信支付商户平台「交易中心 → 退款管理」按异常退款处理，或联系顾客改退到其他账户。",
    ),
    "closed": (
        "⚠️ 退款已关闭",
        "微信支付关闭了这笔退款，钱没有退回顾客。请在商户平台核实后重新发起退款，并告知顾客。",
    ),
    "failed": (
        "⚠️ 退款发起失败",
        "多次向微信支付发起退款都没有成功。请在商户平台核实（如商户余额不足）后手动退款。",
    ),
    "unissued": (
        "⚠️ 已付款未出票，已全额退款",
        (
            "顾客付款后系统出票中断，恢复时未能出票（原座位已被他人购买、场次已取消"
            "或订单已由另一笔付款支付），系统已原路全额退款并通知顾客。"
            "如顾客来问，请协助重新购票；多次出现请联系技术支持。"
        ),
    ),
    "stalled": (
        "⏳ 退款超过3天未到账",
        "微信支付仍显示处理中。请在商户平台核实这笔退款，必要时联系微信支付客服。",
    ),
}


class RefundAlerts:
    """The ``alert`` callback of ``domain.refunds``."""

    def __init__(
        self, agent_id: int, clock: Clock, wake: Callable[[], None] | None = None
    ) -> None:
        self.agent_id = agent_id
        self.clock = clock
        self._wake = wake

    async def __call__(
        self, event: str, refund: Refund, order: Order, *, using: BaseDBAsyncClient, **info: Any
    ) -> None:
        now = self.clock.now()
        people = await on_duty(order.cinema_id, "management", now, using) or await managers(
            order.cinema_id, using
        )
        if not people:
            log.error("no manager to tell of a refund", extra={"refund": refund.no, "event": event})
            return
        title, advice = WHAT.get(event, (f"⚠️ 退款{event}", "请在商户平台核实。"))
        lines = [
            title,
            f"订单：{order.no}",
            f"退款单：{refund.no}（{format_fen(refund.amount_fen)}）",
        ]
        if event == "failed" and refund.last_error:
            lines.append(f"最后一次错误：{refund.last_error[:80]}")
        if event == "unissued" and info.get("reason"):
            lines.append(f"原因代码：{info['reason']}")
        lines.append(advice)
        payload = {
            "msgtype": "text", "agentid": self.agent_id, "text": {"content": "\n".join(lines)},
        }
        for person in people:
            await enqueue(
                channel="wecom", recipient=person.userid, payload=payload,
                idempotency_key=f"refund:{refund.no}:{event}:{person.userid}", now=now,
                using=using,
            )
        if self._wake is not None:
            self._wake()
