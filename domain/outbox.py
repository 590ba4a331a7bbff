"""The outbox: every message to a person is a row, written in the same transaction as its cause.

This module holds the record and its state transitions: enqueue, claim (a
lease, so several sender workers never send one message twice and a crashed
worker's claims come back), and the outcomes sent / retry later / failed / dead.
The sender worker that calls the WeChat/WeCom APIs lives in ``bot.sender``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.models import Model


class OutboundStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # permanent error: not retried
    DEAD = "dead"  # gave up after too many attempts; re-sendable by hand


class OutboundMessage(Model):
    id = fields.BigIntField(primary_key=True)
    channel = fields.CharField(max_length=16)  # wechat | wecom
    recipient = fields.CharField(max_length=64)  # openid or WeCom userid
    payload = fields.JSONField()  # the API body, without the recipient
    idempotency_key = fields.CharField(max_length=128, unique=True)
    status = fields.CharEnumField(OutboundStatus, max_length=16, default=OutboundStatus.PENDING)
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField(db_index=True)
    last_error = fields.TextField(null=True)
    created_at = fields.DatetimeField()
    sent_at = fields.DatetimeField(null=True)
    # A worker's lease on the row while it sends; an expired lease means the worker died.
    claimed_by = fields.CharField(max_length=64, null=True)
    claimed_until = fields.DatetimeField(null=True)
    # What the API answered that a later step needs, e.g. a WeCom card's response_code.
    response = fields.JSONField(null=True)

    class Meta:
        table = "outbound_message"
        indexes = (("status", "next_attempt_at"),)


async def enqueue(
    *,
    channel: str,
    recipient: str,
    payload: dict[str, Any],
    idempotency_key: str,
    now: datetime,
    using: BaseDBAsyncClient | None = None,
) -> tuple[OutboundMessage, bool]:
    """Record a message to send. The same key twice records it once: (message, created)."""
    existing = await OutboundMessage.get_or_none(idempotency_key=idempotency_key).using_db(using)
    if existing is not None:
        return existing, False
    fields_ = {
        "channel": channel,
        "recipient": recipient,
        "payload": payload,
        "idempotency_key": idempotency_key,
        "next_attempt_at": now.astimezone(UTC),
        "created_at": now,
    }
    if using is not None:
        # Inside the caller's transaction: a duplicate must abort the caller's change too.
        return await OutboundMessage.create(**fields_, using_db=using), True
    try:
        # One autocommitted INSERT: an explicit transaction would hold SQLite's single
        # connection for two round trips and stall every other request meanwhile.
        return await OutboundMessage.create(**fields_), True
    except IntegrityError:
        return await OutboundMessage.get(idempotency_key=idempotency_key), False


@dataclass(frozen=True, slots=True)
class Outgoing:
    channel: str
    recipient: str
    payload: dict[str, Any]
    idempotency_key: str
    now: datetime


async def insert_many(items: list[Outgoing]) -> list[None]:
    """Record several messages in one INSERT; a key already recorded is skipped (as
    ``enqueue`` would), within the batch too."""
    await OutboundMessage.bulk_create(
        [
            OutboundMessage(
                channel=m.channel, recipient=m.recipient, payload=m.payload,
                idempotency_key=m.idempotency_key, next_attempt_at=m.now.astimezone(UTC),
                created_at=m.now,
            )
            for m in items
        ],
        ignore_conflicts=True,
    )
    return [None] * len(items)


async def claim_due(
    worker: str, now: datetime, lease: timedelta, limit: int = 20
) -> list[OutboundMessage]:
    """Lease up to ``limit`` due messages to ``worker``.

    Each row is taken by a guarded UPDATE (still pending and due, lease free or lapsed)
    whose row count says whether this worker won it: portable across SQLite
    and PostgreSQL, and safe with any number of workers.
    """
    now = now.astimezone(UTC)
    lease_free = Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
    claimable = Q(status=OutboundStatus.PENDING, next_attempt_at__lte=now) & lease_free
    candidates = (
        await OutboundMessage.filter(claimable)
        .order_by("next_attempt_at", "id")
        .limit(limit)
        .values_list("id", flat=True)
    )
    claimed: list[int] = []
    for message_id in candidates:
        # Re-checking the whole condition in the UPDATE makes the claim atomic: of
        # two workers racing for a row, the second finds the lease already taken —
        # or the row already sent, or already put back for a later retry (so a
        # stale candidate list never sends a retry before its backoff is over).
        won = await OutboundMessage.filter(claimable, id=message_id).update(
            claimed_by=worker, claimed_until=now + lease
        )
        if won:
            claimed.append(message_id)
    if not claimed:
        return []
    return await OutboundMessage.filter(id__in=claimed, claimed_by=worker).order_by("id")


async def _finish(message: OutboundMessage, worker: str, **changes: Any) -> bool:
    """Apply an outcome only while this worker still holds the lease."""
    updated = await OutboundMessage.filter(
        id=message.id, status=OutboundStatus.PENDING, claimed_by=worker
    ).update(claimed_by=None, claimed_until=None, **changes)
    return bool(updated)


async def mark_sent(
    message: OutboundMessage, worker: str, now: datetime, response: dict[str, Any] | None = None
) -> bool:
    changes: dict[str, Any] = {"status": OutboundStatus.SENT, "sent_at": now, "attempts": message.attempts + 1}
    if response:
        changes["response"] = response
    return await _finish(message, worker, **changes)


async def mark_retry(
    message: OutboundMessage, worker: str, error: str, next_attempt: datetime, max_attempts: int
) -> OutboundStatus:
    """A transient failure: try again later, or give up as a dead letter after ``max_attempts``."""
    attempts = message.attempts + 1
    if attempts >= max_attempts:
        await _finish(
            message, worker, status=OutboundStatus.DEAD, attempts=attempts, last_error=error[:2000]
        )
        return OutboundStatus.DEAD
    await _finish(
        message,
        worker,
        attempts=attempts,
        last_error=error[:2000],
        next_attempt_at=next_attempt.astimezone(UTC),
    )
    return OutboundStatus.PENDING


async def mark_failed(message: OutboundMessage, worker: str, error: str) -> bool:
    """A permanent failure (not subscribed, outside the 48 h window …): never retried."""
    return await _finish(
        message,
        worker,
        status=OutboundStatus.FAILED,
        attempts=message.attempts + 1,
        last_error=error[:2000],
    )


async def requeue(message_ids: list[int] | None, now: datetime) -> int:
    """Send dead or failed messages again (all of them when ``message_ids`` is None)."""
    query = OutboundMessage.filter(status__in=[OutboundStatus.DEAD, OutboundStatus.FAILED])
    if message_ids is not None:
        query = query.filter(id__in=message_ids)
    return await query.update(
        status=OutboundStatus.PENDING,
        attempts=0,
        next_attempt_at=now.astimezone(UTC),
        claimed_by=None,
        claimed_until=None,
    )
