"""The scheduler: started inside the app's startup context (so jobs reach the database)."""

from __future__ import annotations

import asyncio
import logging

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from jobs import alerts, digest, feedback, holds, payments, retention, schedule, sla
from jobs.context import JobContext

log = logging.getLogger(__name__)


def build_scheduler(ctx: JobContext, demo: bool = False) -> AsyncIOScheduler:
    """Every job, in every process that runs jobs (one run per tick across them all).

    ``demo`` (the process seeded the demo cinema) no longer changes the set: the demo
    top-up runs everywhere and acts only where a demo cinema was seeded, because the
    process that seeds it (``cinebot demo``, ``serve --demo``) is often not one that runs
    jobs — in the compose demo a one-shot ``cinebot demo`` seeds and ``cinebot worker``
    keeps the week topped up. Without a demo cinema it costs one query an hour.
    """
    scheduler = AsyncIOScheduler(timezone="Asia/Shanghai")
    holds.register(scheduler, ctx)
    payments.register(scheduler, ctx)  # payments a dead process left half-done
    sla.register(scheduler, ctx)
    alerts.register(scheduler, ctx)  # alert reminders, silences that end
    feedback.register(scheduler, ctx)
    digest.register(scheduler, ctx)  # managers' digest cards, from 09:00
    retention.register(scheduler, ctx)
    schedule.register(scheduler, ctx)  # the demo cinema's rolling week, where there is one
    return scheduler


async def stop_scheduler(scheduler: AsyncIOScheduler) -> None:
    if scheduler.running:
        scheduler.shutdown(wait=False)
        # shutdown() schedules its own cleanup on the loop and returns at once.
        await asyncio.sleep(0)
