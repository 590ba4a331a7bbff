"""Every morning from 09:00 (Shanghai): each active manager gets yesterday's digest card.

The job runs every five minutes on the usual one-run-per-tick machinery (``jobs.interval``:
a tick claim, then the run lock). From 09:00 to midnight a run sends yesterday's card to
every manager who has not had it; the outbox records one card per (manager, business day)
(``handlers.digest_card``, key ``digest:<day>:<userid>``), so later ticks, other replicas
and ``cinebot digest send`` send nothing twice, and a process that was down at 09:00 sends
on its first tick after.

What is sent comes from the app (``JobContext.digest``): jobs do not word cards.
"""

from __future__ import annotations

import logging
from datetime import time
from typing import Any

from bot.infra.clock import SHANGHAI
from jobs.context import JobContext
from jobs.interval import every

log = logging.getLogger(__name__)
JOB_ID = "daily-digest"
INTERVAL_S = 300
LOCK_TTL_S = 600
SEND_FROM = time(9, 0)  # local time


async def send_digest(ctx: JobContext) -> int:
    """Cards recorded on this tick (0 before 09:00, when not the leader, or all sent)."""
    if ctx.digest is None:
        return 0
    now = ctx.clock.now()
    if now.astimezone(SHANGHAI).time() < SEND_FROM:
        return 0
    async with ctx.locks.leader(JOB_ID, ttl_seconds=LOCK_TTL_S) as is_leader:
        if not is_leader:
            return 0
        sent = await ctx.digest(now)
        if sent:
            log.info("daily digest recorded", extra={"cards": sent})
        return sent


def register(scheduler: Any, ctx: JobContext) -> None:
    every(scheduler, send_digest, ctx, job_id=JOB_ID, seconds=INTERVAL_S, misfire_grace_s=INTERVAL_S)
