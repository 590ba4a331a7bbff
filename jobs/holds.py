"""Every 30 s: unpaid orders whose seat hold ran out expire; failed refunds are retried.

Redis lets an expired hold's seats go by itself; this job moves the orders
(and their audit trail) to match, so "我的订单" never shows a dead hold as
waiting for payment, and no refund stays stuck behind a payment-API outage.
"""

from __future__ import annotations

import logging
from typing import Any

from domain import ticketing
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
        refunded = await ticketing.retry_refunds(ctx.gateway, now)
        if expired or refunded:
            log.info("ticket housekeeping", extra={"expired": expired, "refunds_sent": refunded})
        return expired, refunded


def register(scheduler: Any, ctx: JobContext) -> None:
    every(scheduler, expire_and_retry, ctx, job_id=JOB_ID, seconds=30, misfire_grace_s=60)
