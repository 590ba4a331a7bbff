"""The outbox: every message to a person is a row, written in the same transaction as its cause.

This module holds the record and its state transitions: enqueue, claim (a
lease, so several sender workers never send one message at the same time and a
crashed worker's claims come back), and the outcomes sent / retry later /
failed / dead / expired. The sender worker that calls the WeChat/WeCom APIs
lives in ``bot.wechat.sender``.

Delivery is at-least-once, not exactly once: a worker that dies (or times out)
after the platform accepted a call but before the row says so leaves the row to
be claimed and sent again. The window is kept small — an attempt is counted
when it is claimed, a send never outlives its lease, and a row whose claims keep
lapsing without an outcome is given up — and closed where the API can: a WeCom
card's ``task_id`` makes a repeat send answer 42014, which counts as delivered.

A message is worth sending only for a while: each row carries ``expires_at``
(per purpose, see ``LIFETIMES``); one still undelivered by then is marked
expired with the reason, however long the platform's outage lasts.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.expressions import F, Q
from tortoise.models import Model


class OutboundStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # permanent error: not retried
    DEAD = "dead"  # gave up after too many attempts or lapsed claims; re-sendable by hand
    EXPIRED = "expired"  # not delivered while still useful; re-sendable by hand


class OutboundMessage(Model):
    id = fields.BigIntField(primary_key=True)
    channel = fields.CharField(max_length=16)  # wechat | wecom
    recipient = fields.CharField(max_length=64)  # openid or WeCom userid
    payload = fields.JSONField()  # the API body, without the recipient
    idempotency_key = fields.CharField(max_length=128, unique=True)
    status = fields.CharEnumField(OutboundStatus, max_length=16, default=OutboundStatus.PENDING)
    # Claims so far, counted when a worker takes the row (not when it reports), so a
    # message whose worker dies mid-send still uses up its attempts.
    attempts = fields.IntField(default=0)
    # Claims that lapsed with no outcome reported: the worker died or hung mid-send, and
    # the platform may or may not have the message. Bounded apart from ``attempts``: each
    # one may be a duplicate on someone's phone.
    lapses = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField(db_index=True)
    last_error = fields.TextField(null=True)
    created_at = fields.DatetimeField()
    sent_at = fields.DatetimeField(null=True)
    # After this the message is no longer useful: undelivered, it is marked expired.
    # None (rows older than the column): no deadline.
    expires_at = fields.DatetimeField(null=True)
    # A worker's lease on the row while it sends; an expired lease means the worker died.
    claimed_by = fields.CharField(max_length=64, null=True)
    claimed_until = fields.DatetimeField(null=True)
    # What the API answered that a later step needs, e.g. a WeCom card's response_code.
    response = fields.JSONField(null=True)

    class Meta:
        table = "outbound_message"
        indexes = (("status", "next_attempt_at"),)


# How long a message stays worth delivering, by the purpose its idempotency key starts
# with (the longest matching prefix wins). Past it, a late message would mislead more
# than it helps: a chat answer about seats held for 10 minutes, a survey invitation
# hours after the show. Cards and notes to staff stay useful for a shift.
LIFETIMES: dict[str, timedelta] = {
    # A chat reply that missed WeChat's 5 s window: about the conversation of the moment
    # (seat holds last 10 minutes by default).
    "late-reply": timedelta(minutes=15),
    # "A visitor asks for a person": someone should still call back within a couple of hours.
    "handoff": timedelta(hours=2),
    # E-tickets, re-seats, refunds: the buyer needs these as long as WeChat lets us say them.
    "order": timedelta(hours=24),
    # The post-show survey invitation: pointless once the evening is over.
    "fb:invite": timedelta(hours=3),
    # Answers to a rating and notes to the staff holding its card.
    "fb": timedelta(hours=12),
    # Work-order and alert cards, their updates, notes to staff and reporters.
    "wo": timedelta(hours=12),
}
DEFAULT_LIFETIME = timedelta(hours=12)


def lifetime_for(idempotency_key: str) -> timedelta:
    """How long a message with this key stays worth delivering (``LIFETIMES``)."""
    best = ""
    for prefix in LIFETIMES:
        if idempotency_key.startswith(prefix + ":") and len(prefix) > len(best):
            best = prefix
    return LIFETIMES[best] if best else DEFAULT_LIFETIME


def _expiry(idempotency_key: str, now: datetime, lifetime: timedelta | None) -> datetime:
    span = lifetime if lifetime is not None else lifetime_for(idempotency_key)
    return now.astimezone(UTC) + span


async def enqueue(
    *,
    channel: str,
    recipient: str,
    payload: dict[str, Any],
    idempotency_key: str,
    now: datetime,
    using: BaseDBAsyncClient | None = None,
    lifetime: timedelta | None = None,
) -> tuple[OutboundMessage, bool]:
    """Record a message to send. The same key twice records it once: (message, created).

    ``lifetime``: how long it stays worth delivering; by default by its purpose
    (``lifetime_for``)."""
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
        "expires_at": _expiry(idempotency_key, now, lifetime),
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
    lifetime: timedelta | None = None  # None: by purpose (``lifetime_for``)


async def insert_many(items: list[Outgoing]) -> list[None]:
    """Record several messages in one INSERT; a key already recorded is skipped (as
    ``enqueue`` would), within the batch too."""
    await OutboundMessage.bulk_create(
        [
            OutboundMessage(
                channel=m.channel, recipient=m.recipient, payload=m.payload,
                idempotency_key=m.idempotency_key, next_attempt_at=m.now.astimezone(UTC),
                created_at=m.now, expires_at=_expiry(m.idempotency_key, m.now, m.lifetime),
            )
            for m in items
        ],
        ignore_conflicts=True,
    )
    return [None] * len(items)


# --- claims ------------------------------------------------------------------------------------

# Default limits for a claim; the sender passes its own (``bot.wechat.sender.SenderPolicy``).
MAX_ATTEMPTS = 200  # a backstop: the lifetime is what bounds an outage
MAX_LAPSES = 3  # each lapsed claim may have put a duplicate on someone's phone

_CANDIDATE_FIELDS = (
    "id", "attempts", "lapses", "claimed_by", "expires_at", "created_at", "last_error",
)


def _span(delta: timedelta) -> str:
    minutes = round(delta.total_seconds() / 60)
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes / 60:g} h"


def _expired_reason(created_at: datetime, expires_at: datetime, why: str) -> str:
    return f"expired: not delivered within its {_span(expires_at - created_at)} lifetime ({why})"


def _give_up(
    row: dict[str, Any], now: datetime, max_attempts: int, max_lapses: int
) -> dict[str, Any] | None:
    """The changes that give up a due row no longer worth sending (past its deadline, too
    many lapsed claims or attempts), the reason in ``last_error``; None to send it."""
    lapses = row["lapses"] + (row["claimed_by"] is not None)
    last = row["last_error"] or "no answer recorded"
    if row["expires_at"] is not None and row["expires_at"] <= now:
        status = OutboundStatus.EXPIRED
        reason = _expired_reason(row["created_at"], row["expires_at"], f"last error: {last}")
    elif lapses >= max_lapses:
        status = OutboundStatus.DEAD
        reason = (
            f"gave up: {lapses} claims lapsed without an outcome (a worker died or hung "
            f"mid-send; it may have been delivered); last error: {last}"
        )
    elif row["attempts"] >= max_attempts:
        status = OutboundStatus.DEAD
        reason = f"gave up after {row['attempts']} attempts; last error: {last}"
    else:
        return None
    return {
        "status": status, "last_error": reason[:2000], "lapses": lapses,
        "claimed_by": None, "claimed_until": None,
    }


async def claim_due(
    worker: str,
    now: datetime,
    lease: timedelta,
    limit: int = 20,
    *,
    max_attempts: int = MAX_ATTEMPTS,
    max_lapses: int = MAX_LAPSES,
) -> list[OutboundMessage]:
    """Lease up to ``limit`` due messages to ``worker``; each claim counts as an attempt.

    Each row is taken by a guarded UPDATE (still pending and due, lease free or lapsed,
    and unchanged since read: same attempt count) whose row count says whether this
    worker won it: portable across SQLite and PostgreSQL, and safe with any number of
    workers. Due rows that are no longer worth sending are settled instead of claimed:
    past their ``expires_at`` → expired; ``max_lapses`` claims lapsed without an
    outcome, or ``max_attempts`` used up → dead. The reason goes into ``last_error``.
    """
    now = now.astimezone(UTC)
    lease_free = Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
    claimable = Q(status=OutboundStatus.PENDING, next_attempt_at__lte=now) & lease_free
    claimed: list[int] = []
    while len(claimed) < limit:
        wanted = limit - len(claimed)
        candidates = (
            await OutboundMessage.filter(claimable)
            .order_by("next_attempt_at", "id")
            .limit(wanted)
            .values(*_CANDIDATE_FIELDS)
        )
        given_up = 0
        for row in candidates:
            # Re-checking the whole condition in the UPDATE makes the claim atomic: of
            # two workers racing for a row, the second finds the lease already taken —
            # or the row already sent, or already put back for a later retry (so a
            # stale candidate list never sends a retry before its backoff is over).
            # The attempt count doubles as the row's version.
            guard = OutboundMessage.filter(claimable, id=row["id"], attempts=row["attempts"])
            changes = _give_up(row, now, max_attempts, max_lapses)
            if changes is not None:
                given_up += await guard.update(**changes)
                continue
            won = await guard.update(
                claimed_by=worker,
                claimed_until=now + lease,
                attempts=row["attempts"] + 1,
                # A claim still on the row has lapsed: its worker never reported.
                lapses=row["lapses"] + (row["claimed_by"] is not None),
            )
            if won:
                claimed.append(row["id"])
        # Rows given up made room: look again, so a heap of expired rows (after an
        # outage) cannot hide the deliverable ones behind it for several sweeps.
        if not given_up or len(candidates) < wanted:
            break
    if not claimed:
        return []
    return await OutboundMessage.filter(id__in=claimed, claimed_by=worker).order_by("id")


async def _finish(message: OutboundMessage, worker: str, **changes: Any) -> bool:
    """Apply an outcome only while this worker still holds the lease."""
    updated = await OutboundMessage.filter(
        id=message.id, status=OutboundStatus.PENDING, claimed_by=worker
    ).update(claimed_by=None, claimed_until=None, **changes)
    return bool(updated)


async def release(message: OutboundMessage, worker: str) -> bool:
    """Give back a claim that was never used (no call made): the attempt is not spent."""
    return await _finish(message, worker, attempts=F("attempts") - 1)


async def mark_sent(
    message: OutboundMessage, worker: str, now: datetime, response: dict[str, Any] | None = None
) -> bool:
    changes: dict[str, Any] = {"status": OutboundStatus.SENT, "sent_at": now}
    if response:
        changes["response"] = response
    return await _finish(message, worker, **changes)


async def mark_retry(
    message: OutboundMessage,
    worker: str,
    error: str,
    next_attempt: datetime,
    max_attempts: int,
    *,
    spent: bool = True,
) -> OutboundStatus:
    """A transient failure: try again at ``next_attempt``; give up as a dead letter after
    ``max_attempts``, or as expired if that retry would come after the message's deadline.

    ``spent=False`` (a token the platform rejected, refreshed meanwhile): the attempt
    does not count against ``max_attempts``.
    """
    error = error[:2000]
    changes: dict[str, Any] = {"last_error": error}
    if not spent:
        changes["attempts"] = F("attempts") - 1
    expires_at = message.expires_at
    if spent and message.attempts >= max_attempts:
        status = OutboundStatus.DEAD
    elif expires_at is not None and next_attempt >= expires_at:
        status = OutboundStatus.EXPIRED
        why = f"the next try would come after its deadline; last error: {error}"
        changes["last_error"] = _expired_reason(message.created_at, expires_at, why)[:2000]
    else:
        status = OutboundStatus.PENDING
        changes["next_attempt_at"] = next_attempt.astimezone(UTC)
    if status is not OutboundStatus.PENDING:
        changes["status"] = status
    await _finish(message, worker, **changes)
    return status


async def mark_failed(message: OutboundMessage, worker: str, error: str) -> bool:
    """A permanent failure (not subscribed, outside the 48 h window …): never retried."""
    return await _finish(message, worker, status=OutboundStatus.FAILED, last_error=error[:2000])


async def requeue(message_ids: list[int] | None, now: datetime) -> int:
    """Send dead, failed or expired messages again (all of them when ``message_ids`` is None).

    A person asked for it: each gets a fresh lifetime and a fresh count of attempts.
    """
    query = OutboundMessage.filter(
        status__in=[OutboundStatus.DEAD, OutboundStatus.FAILED, OutboundStatus.EXPIRED]
    )
    if message_ids is not None:
        query = query.filter(id__in=message_ids)
    now = now.astimezone(UTC)
    by_lifetime: dict[timedelta, list[int]] = defaultdict(list)
    for message_id, key in await query.values_list("id", "idempotency_key"):
        by_lifetime[lifetime_for(key)].append(message_id)
    count = 0
    for lifetime, ids in by_lifetime.items():
        count += await OutboundMessage.filter(
            id__in=ids,
            status__in=[OutboundStatus.DEAD, OutboundStatus.FAILED, OutboundStatus.EXPIRED],
        ).update(
            status=OutboundStatus.PENDING,
            attempts=0,
            lapses=0,
            next_attempt_at=now,
            expires_at=now + lifetime,
            claimed_by=None,
            claimed_until=None,
        )
    return count
