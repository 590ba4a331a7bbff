"""The outbox: every message to a person is a row, written in the same transaction as its cause.

This module holds the record and the enqueue use case; the sender worker that
delivers rows to the WeChat/WeCom APIs is part of the outbound work.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.models import Model
from tortoise.transactions import in_transaction


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
        "next_attempt_at": now,
        "created_at": now,
    }
    if using is not None:
        # Inside the caller's transaction: a duplicate must abort the caller's change too.
        return await OutboundMessage.create(**fields_, using_db=using), True
    try:
        async with in_transaction() as conn:
            return await OutboundMessage.create(**fields_, using_db=conn), True
    except IntegrityError:
        return await OutboundMessage.get(idempotency_key=idempotency_key), False
