"""Every 30 s: unpaid orders whose seat hold ran out expire; refunds are chased.

Redis lets an expired hold's seats go by itself; this job moves the orders
(and their audit trail) to match, so "我的订单" never shows a dead hold as
waiting for payment. No refund stays stuck behind a payment-API outage or a
lost notify: requests are asked again, accepted refunds queried, and the duty
manager told of any that fail or stall (``domain.refunds``).
"""

from __future__ import annotations

import logging
from typing import Any

from domain import refunds, ticketing
from jobs.context import JobContext
from jobs.interval import every

log = logging.getLogger(__name__)
JOB_ID = "ticket-holds"


async def expire_and_retry(ctx: JobContext) -> tuple[int, int]:
    if ctx.inventory is None or ctx.gateway is None:
        return 0, 0
    async with ctx.locks.leader(JOB_ID, ttl_seconds=60) as is_leader:
        if not is_leader:
            return 0, 0
        now = ctx.clock.now()
        expired = await ticketing.expire_orders(ctx.inventory, now)
        refunded = await refunds.chase_refunds(ctx.gateway, now, ctx.refund_alert)
        if expired or refunded:
            log.info("ticket housekeeping", extra={"expired": expired, "refunds_moved": refunded})
        return expired, refunded


def register(scheduler: Any, ctx: JobContext) -> None:
    every(scheduler, expire_and_retry, ctx, job_id=JOB_ID, seconds=30, misfire_grace_s=60)
