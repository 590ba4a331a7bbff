"""Keep the demo cinema's rolling week of showtimes and duty shifts topped up, once an hour."""

from __future__ import annotations

import logging
from typing import Any

from domain.cinemas import Cinema
from domain.demo import DEMO_CINEMA_CODE, ensure_roster, ensure_schedule
from jobs.context import JobContext
from jobs.interval import every

log = logging.getLogger(__name__)
JOB_ID = "demo-schedule"


async def top_up_demo_schedule(ctx: JobContext) -> int:
    """How many showtimes were new (the shifts added alongside are only logged)."""
    async with ctx.locks.leader(JOB_ID, ttl_seconds=120) as is_leader:
        if not is_leader:
            return 0
        cinema = await Cinema.get_or_none(code=DEMO_CINEMA_CODE)
        if cinema is None:
            return 0
        now = ctx.clock.now()
        created = await ensure_schedule(cinema, now)
        shifts = await ensure_roster(cinema, now)
        if created or shifts:
            log.info("demo schedule topped up", extra={"showtimes": created, "shifts": shifts})
        return created


def register(scheduler: Any, ctx: JobContext) -> None:
    every(scheduler, top_up_demo_schedule, ctx, job_id=JOB_ID, seconds=3600, misfire_grace_s=600)
