"""How every cinebot job is put on the scheduler: at a fixed interval, one run per tick across
all replicas, missed runs coalesced into one (each job is idempotent and works off the
current state).

Every replica runs APScheduler. Ticks are aligned to the Unix epoch (a 60 s job fires at
:00 of every minute in every process), so the replicas' schedulers fire the *same* tick,
numbered ``floor(time / interval)``; the first to claim that number in Redis runs the job
(``LeaderLocks.claim_tick``) and the claim outlives the tick, so a replica that fires a
little later does not run it again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from apscheduler.triggers.interval import IntervalTrigger
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from jobs.context import JobContext

log = logging.getLogger(__name__)

EPOCH = datetime.fromtimestamp(0, UTC)
# A fire is late by a little (event loop, executor); it may also be computed a hair early
# in floating point. Either way it belongs to the tick it was scheduled for. One that comes
# more than an interval late counts as the next tick, which then runs once, not twice.
_EARLY_US = 1_000
# How long a tick claim is kept beyond the tick: covers replicas whose clocks run behind.
CLOCK_SKEW_S = 60.0


def tick_of(timestamp: float, seconds: float) -> int:
    """The number of the interval tick a fire at ``timestamp`` belongs to."""
    return (round(timestamp * 1_000_000) + _EARLY_US) // round(seconds * 1_000_000)


async def run_once_per_tick(
    job: Callable[[JobContext], Awaitable[Any]],
    ctx: JobContext,
    job_id: str,
    seconds: float,
    at: float | None = None,
) -> Any:
    """Run ``job`` for the tick fired at ``at`` (default: now) unless another replica already
    claimed that tick. The job's result, or None when the tick was not ours."""
    tick = tick_of(time.time() if at is None else at, seconds)
    try:
        if not await ctx.locks.claim_tick(job_id, tick, ttl_seconds=2 * seconds + CLOCK_SKEW_S):
            log.debug("tick already run by another replica", extra={"job": job_id, "tick": tick})
            return None
        return await job(ctx)
    except (RedisConnectionError, RedisTimeoutError) as exc:
        # Redis is down: this tick is skipped (every job works off the current state, so
        # the next tick catches up); one line per job and interval, not a traceback a tick.
        _outage(job_id, exc)
        return None


_OUTAGE_EVERY_S = 10.0
_outage_seen: dict[str, float] = {}


def _outage(job_id: str, exc: BaseException) -> None:
    now = time.monotonic()
    if now - _outage_seen.get(job_id, float("-inf")) >= _OUTAGE_EVERY_S:
        _outage_seen[job_id] = now
        log.error("job skipped: redis unavailable",
                  extra={"job": job_id, "error": f"{type(exc).__name__}: {exc}"})


def every(
    scheduler: Any, job: Callable[..., Any], ctx: JobContext, *, job_id: str, seconds: float,
    misfire_grace_s: float,
) -> None:
    scheduler.add_job(
        run_once_per_tick,
        # The trigger fires by the system clock, so the tick is numbered by it too
        # (``time.time()``), not by the app's clock.
        IntervalTrigger(seconds=seconds, start_date=EPOCH, timezone=UTC),
        args=(job, ctx, job_id, seconds),
        id=job_id,
        replace_existing=True,
        coalesce=True,
        max_instances=1,
        misfire_grace_time=misfire_grace_s,
    )
