"""Every 30 s: payments a dead process left half-done are finished (``domain.reconcile``).

A process that dies between taking a payment and issuing its tickets leaves the order
paid without tickets; WeChat Pay's retried notify would finish it, but only minutes to
hours later, and the sandbox bank never retries. This job finishes it within about
``GRACE`` + 30 s: tickets on the buyer's seats, or the whole payment refunded.
"""

from __future__ import annotations

import logging
from typing import Any

from domain import reconcile
from jobs.context import JobContext
from jobs.interval import every

log = logging.getLogger(__name__)
JOB_ID = "payment-repair"


async def finish_stranded_payments(ctx: JobContext) -> reconcile.Finished | None:
    if ctx.inventory is None or ctx.gateway is None or ctx.buyer_notify is None:
        return None
    async with ctx.locks.leader(JOB_ID, ttl_seconds=120) as is_leader:
        if not is_leader:
            return None
        done = await reconcile.finish_payments(
            ctx.inventory, ctx.gateway, ctx.clock.now(), ctx.buyer_notify, ctx.refund_alert
        )
        if done.outcomes or done.failed:
            log.warning(
                "stranded payments finished",
                extra={"outcomes": done.outcomes, "failed": done.failed},
            )
        return done


def register(scheduler: Any, ctx: JobContext) -> None:
    every(scheduler, finish_stranded_payments, ctx, job_id=JOB_ID, seconds=30, misfire_grace_s=60)
