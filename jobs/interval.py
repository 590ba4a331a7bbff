"""How every cinebot job is put on the scheduler: at a fixed interval, one run at a time,
missed runs coalesced into one (each job is idempotent and works off the current state)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jobs.context import JobContext


def every(
    scheduler: Any, job: Callable[..., Any], ctx: JobContext, *, job_id: str, seconds: float,
    misfire_grace_s: float,
) -> None:
    scheduler.add_job(
        job,
        "interval",
        seconds=seconds,
        args=(ctx,),
        id=job_id,
        replace_existing=True,
        coalesce=True,
        max_instances=1,
        misfire_grace_time=misfire_grace_s,
    )
