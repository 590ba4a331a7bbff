"""What a job gets: a clock, the leader locks and the services it acts through — a typed
bundle, not the whole app."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from domain.feedback import Invite
from domain.refunds import RefundAlert, RefundGateway
from domain.ticketing import Inventory
from domain.ticketing import Notify as BuyerNotify
from domain.workorders import Notify
from jobs.locks import LeaderLocks


class Clock(Protocol):
    def now(self) -> datetime: ...


@dataclass(frozen=True)
class JobContext:
    clock: Clock
    locks: LeaderLocks
    inventory: Inventory | None = None
    gateway: RefundGateway | None = None
    # The duty manager hears of refunds that fail or stall; None: they wait, untold.
    refund_alert: RefundAlert | None = None
    # What a buyer is told of their order (tickets, a refund); None: payments left
    # half-done by a dead process are not finished (jobs.payments).
    buyer_notify: BuyerNotify | None = None
    # Cards and messages about SLA warnings and escalations; None: the SLA job records
    # them on the timeline only.
    desk_notify: Notify | None = None
    # Says the post-show survey invitation (jobs.feedback); None: no invitations.
    feedback_invite: Invite | None = None
    # Records yesterday's digest card for every manager who has not had it, returns how
    # many (jobs.digest; handlers.digest_card.DigestCards.send_due); None: no digest.
    digest: Callable[[datetime], Awaitable[int]] | None = None
    # Days the per-minute telemetry aggregates are kept (jobs.retention).
    telemetry_retention_days: int = 30
