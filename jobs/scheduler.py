"""The scheduler: started inside the app's startup context (so jobs reach the database)."""

from __future__ import annotations

import asyncio
import logging

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from jobs import alerts, feedback, holds, payments, retention, schedule, sla
from jobs.context import JobContext

log = logging.getLogger(__name__)


def build_scheduler(ctx: JobContext, demo: bool) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(timezone="Asia/Shanghai")
    holds.register(scheduler, ctx)
    payments.register(scheduler, ctx)  # payments a dead process left half-done
    sla.register(scheduler, ctx)
    alerts.register(scheduler, ctx)  # alert reminders, silences that end
    feedback.register(scheduler, ctx)
    retention.register(scheduler, ctx)
    if demo:
        schedule.register(scheduler, ctx)
    return scheduler


async def stop_scheduler(scheduler: AsyncIOScheduler) -> None:
    if scheduler.running:
        scheduler.shutdown(wait=False)
        # shutdown() schedules its own cleanup on the loop and returns at once.
        await asyncio.sleep(0)
