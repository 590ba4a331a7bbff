"""Every 60 s: warn about work orders at 80 % of their SLA and escalate breached ones.

One replica leads each tick (a Redis lock). Every step is idempotent on its own —
``check_sla`` reads the timeline and warns or escalates once per clock and level — so
a second run in the same tick finds nothing left to do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from domain import workorders
from domain.workorders import Notify, WorkOrder, WorkOrderError
from jobs.context import JobContext
from jobs.interval import every

log = logging.getLogger(__name__)
JOB_ID = "sla-check"
INTERVAL_S = 60
# Longer than a tick: were a slow run still going, the next tick of another replica
# must not start a second one. A crashed leader delays checks by this much at most.
LOCK_TTL_S = 120


@dataclass(frozen=True, slots=True)
class SlaRun:
    checked: int = 0
    warned: int = 0
    escalated: int = 0
    failed: int = 0
    leader: bool = False


async def _timeline_only(
    event: str, order: WorkOrder, *, using: BaseDBAsyncClient, **info: Any
) -> None:
    """No desk wired in (a bare worker, a test): the timeline row is the whole record."""


PAGE = 500  # active orders read at a time; every page is checked each tick


async def _active_orders() -> list[WorkOrder]:
    """Every active order, read a page at a time (a busy chain may have thousands)."""
    out: list[WorkOrder] = []
    after = 0
    while True:
        page = await workorders.due_for_check(after, PAGE)
        out.extend(page)
        if len(page) < PAGE:
            return out
        after = page[-1].id


async def check_slas(ctx: JobContext) -> SlaRun:
    async with ctx.locks.leader(JOB_ID, ttl_seconds=LOCK_TTL_S) as is_leader:
        if not is_leader:
            return SlaRun()
        now = ctx.clock.now()
        notify: Notify = ctx.desk_notify or _timeline_only
        checked = warned = escalated = failed = 0
        for order in await _active_orders():
            checked += 1
            try:
                outcome = await workorders.check_sla(order, now, notify)
            except WorkOrderError as exc:
                # Someone acted on the order since it was read: the next tick sees it fresh.
                failed += 1
                log.info("sla check skipped", extra={"ref": order.ref, "reason": exc.code})
                continue
            except Exception:
                # One broken order must not keep the others from being escalated.
                failed += 1
                log.exception("sla check failed", extra={"ref": order.ref})
                continue
            if outcome == "warning":
                warned += 1
            elif outcome == "escalated":
                escalated += 1
        if warned or escalated or failed:
            log.info(
                "sla check",
                extra={
                    "checked": checked, "warned": warned, "escalated": escalated, "failed": failed,
                },
            )
        return SlaRun(checked, warned, escalated, failed, leader=True)


def register(scheduler: Any, ctx: JobContext) -> None:
    every(scheduler, check_slas, ctx, job_id=JOB_ID, seconds=INTERVAL_S, misfire_grace_s=INTERVAL_S)
