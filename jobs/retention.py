"""Hourly: per-minute telemetry aggregates older than the retention period are deleted.

One replica leads each tick (a Redis lock). Deleting by a cutoff is idempotent: a second
run in the same tick finds nothing left, and a missed tick is made up by the next one.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from domain import telemetry_minutes
from jobs.context import JobContext
from jobs.interval import every

log = logging.getLogger(__name__)
JOB_ID = "telemetry-retention"
INTERVAL_S = 3600
LOCK_TTL_S = 600


async def drop_old_minutes(ctx: JobContext) -> int:
    """Rows deleted (0 when another replica leads this tick)."""
    async with ctx.locks.leader(JOB_ID, ttl_seconds=LOCK_TTL_S) as is_leader:
        if not is_leader:
            return 0
        cutoff = ctx.clock.now() - timedelta(days=ctx.telemetry_retention_days)
        deleted = await telemetry_minutes.delete_minutes_before(cutoff)
        if deleted:
            log.info("telemetry minutes past retention deleted",
                     extra={"rows": deleted, "days": ctx.telemetry_retention_days})
        return deleted


def register(scheduler: Any, ctx: JobContext) -> None:
    every(scheduler, drop_old_minutes, ctx, job_id=JOB_ID, seconds=INTERVAL_S, misfire_grace_s=INTERVAL_S)
