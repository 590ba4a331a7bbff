"""Every 60 s: remind engineers of alerts nobody has acknowledged, and tell alerts that
fired under a silence which has since ended.

One replica leads each tick (a Redis lock). Both steps are idempotent on their own — a
reminder is a guarded update of its alert records (count and time), a released alert is
linked to a work order once — so a second run in the same tick finds nothing to do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from domain import alerts
from domain.workorders import Notify, WorkOrder
from jobs.context import JobContext
from jobs.interval import every
from telemetry.alerts import title

log = logging.getLogger(__name__)
JOB_ID = "alert-lifecycle"
INTERVAL_S = 60
LOCK_TTL_S = 120  # longer than a tick, as for the SLA job


@dataclass(frozen=True, slots=True)
class AlertRun:
    reminded: int = 0
    released: int = 0
    leader: bool = False


async def _timeline_only(
    event: str, order: WorkOrder, *, using: BaseDBAsyncClient, **info: Any
) -> None:
    """No desk wired in (a bare worker, a test): the timeline row is the whole record."""


async def run_alerts(ctx: JobContext) -> AlertRun:
    async with ctx.locks.leader(JOB_ID, ttl_seconds=LOCK_TTL_S) as is_leader:
        if not is_leader:
            return AlertRun()
        now = ctx.clock.now()
        notify: Notify = ctx.desk_notify or _timeline_only
        released = reminded = 0
        try:
            released = await alerts.release_silenced(now, notify, title)
        except Exception:  # the reminders still go out
            log.exception("releasing silenced alerts failed")
        try:
            reminded = await alerts.remind_due(now, notify)
        except Exception:
            log.exception("alert reminders failed")
        if reminded or released:
            log.info("alert lifecycle", extra={"reminded": reminded, "released": released})
            wake = getattr(ctx.desk_notify, "wake", None)
            if callable(wake):
                wake()
        return AlertRun(reminded, released, leader=True)


def register(scheduler: Any, ctx: JobContext) -> None:
    every(scheduler, run_alerts, ctx, job_id=JOB_ID, seconds=INTERVAL_S, misfire_grace_s=INTERVAL_S)
