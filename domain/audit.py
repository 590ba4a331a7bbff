"""Append-only audit trail: who changed what, from which state to which, and when."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tortoise import fields
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.models import Model


class AuditLog(Model):
    id = fields.BigIntField(primary_key=True)
    cinema_id = fields.IntField(null=True)
    entity = fields.CharField(max_length=32)
    entity_id = fields.CharField(max_length=64)
    action = fields.CharField(max_length=32)
    from_state = fields.CharField(max_length=32, null=True)
    to_state = fields.CharField(max_length=32, null=True)
    actor = fields.CharField(max_length=64)
    detail = fields.JSONField(default=dict)
    at = fields.DatetimeField()

    class Meta:
        table = "audit_log"
        indexes = (("entity", "entity_id"),)


async def record(
    *,
    entity: str,
    entity_id: str | int,
    action: str,
    actor: str,
    at: datetime,
    cinema_id: int | None = None,
    from_state: str | None = None,
    to_state: str | None = None,
    detail: dict[str, Any] | None = None,
    using: BaseDBAsyncClient | None = None,
) -> AuditLog:
    return await AuditLog.create(
        cinema_id=cinema_id,
        entity=entity,
        entity_id=str(entity_id),
        action=action,
        from_state=from_state,
        to_state=to_state,
        actor=actor,
        detail=detail or {},
        at=at,
        using_db=using,
    )
