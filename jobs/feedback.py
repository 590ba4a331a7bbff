"""Every minute: invite the ticket holders of shows that ended 10–30 minutes ago to rate them.

Once per visitor per visit, and only those who can receive it: inside WeChat's
48-hour customer-service window, or with a subscription consent left (one send
per consent). The rules are ``domain.feedback.invite_after_shows``; what is said
comes from the app (``JobContext.feedback_invite``), recorded in the outbox.
"""

from __future__ import annotations

import logging
from typing import Any

from domain import feedback
from jobs.context import JobContext
from jobs.interval import every

log = logging.getLogger(__name__)
JOB_ID = "feedback-invites"


async def invite_after_shows(ctx: JobContext) -> int:
    """How many invitations were recorded on this tick (0 when not the leader)."""
    if ctx.feedback_invite is None:
        return 0
    async with ctx.locks.leader(JOB_ID, ttl_seconds=120) as is_leader:
        if not is_leader:
            return 0
        report = await feedback.invite_after_shows(ctx.clock.now(), ctx.feedback_invite)
        if report.sent or report.skipped:
            log.info(
                "post-show survey invitations",
                extra={"shows": report.shows, "sent": report.sent, "skipped": dict(report.skipped)},
            )
        return report.sent


def register(scheduler: Any, ctx: JobContext) -> None:
    every(scheduler, invite_after_shows, ctx, job_id=JOB_ID, seconds=60, misfire_grace_s=120)
