"""Who may give the cinema's money away: compensation coupons today, any later kind of goodwill.

A manager may (within the largest coupon there is). A staff member or an engineer may
only up to the limit a manager of their cinema set for their role — nothing until one
is set, so a new cinema starts safe. The limit is a row per cinema and role, changed
only by that cinema's managers. Every grant and every refusal is an audit row, so
"who gave ¥200 to whom, under which limit" has one answer.

Refunds are not here on purpose: a buyer refunds their own order under the cinema's
ticketing rules (``domain.ticketing.refund_order``), and a cancelled show is refunded by
an operator (``cinebot showtimes cancel``); no chat command lets staff move money.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tortoise import fields
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.models import Model
from tortoise.transactions import in_transaction

from domain import audit
from domain.people import StaffRole
from domain.pricing import format_fen
from domain.workorders import Who

# The largest coupon anyone gives (the chat's 「送200元券」); a limit above it means nothing.
MAX_COMPENSATION_FEN = 20_000
# Roles whose limit a manager sets; a manager's own right is not limited by a row.
LIMITED_ROLES = (StaffRole.STAFF, StaffRole.ENGINEER)
ROLE_LABELS = {StaffRole.STAFF: "员工", StaffRole.ENGINEER: "工程师", StaffRole.MANAGER: "经理"}


class CompensationLimit(Model):
    """The most one person of ``role`` may give at once in ``cinema_id``, in fen."""

    id = fields.IntField(primary_key=True)
    cinema_id = fields.IntField()
    role = fields.CharField(max_length=16)
    limit_fen = fields.IntField()
    set_by = fields.CharField(max_length=64)
    set_at = fields.DatetimeField()

    class Meta:
        table = "compensation_limit"
        unique_together = (("cinema_id", "role"),)


class NotAllowed(Exception):
    """A refused grant or limit change; ``message`` is what the person is told (Chinese)."""

    def __init__(self, code: str, message: str, limit_fen: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.limit_fen = limit_fen


async def limit_fen(cinema_id: int, role: str) -> int:
    """What one person of ``role`` may give at once in the cinema (a manager: the most)."""
    if role == StaffRole.MANAGER:
        return MAX_COMPENSATION_FEN
    if role not in LIMITED_ROLES:
        return 0  # audiences, the system, unknown roles: never
    row = await CompensationLimit.get_or_none(cinema_id=cinema_id, role=str(role))
    return row.limit_fen if row is not None else 0


async def limits(cinema_id: int) -> dict[StaffRole, int]:
    """Every limited role's limit in the cinema (0 where none was set)."""
    rows = await CompensationLimit.filter(cinema_id=cinema_id)
    found = {r.role: r.limit_fen for r in rows}
    return {role: found.get(str(role), 0) for role in LIMITED_ROLES}


async def authorise(
    by: Who, cinema_id: int, value_fen: int, *, what: str, about: dict[str, Any], now: datetime
) -> int:
    """May ``by`` give ``value_fen`` in the cinema? Returns the limit that allowed it; a
    refusal is audited (committed on its own, as nothing else happens) and raised."""
    limit = await limit_fen(cinema_id, by.role) if by.cinema_id == cinema_id else 0
    if 0 < value_fen <= limit:
        return limit
    detail = {"value_fen": value_fen, "limit_fen": limit, "role": by.role, **about}
    await audit.record(
        entity=what, entity_id=str(about.get("work_order", "")), action="refuse",
        actor=by.user_id, at=now, cinema_id=cinema_id, detail=detail,
    )
    raise NotAllowed(
        "over_limit",
        f"送 {format_fen(value_fen)} 券超出您的权限（上限 {format_fen(limit)}），这次没有回复顾客。",
        limit,
    )


async def record_grant(
    by: Who, cinema_id: int, value_fen: int, limit: int, *, what: str, entity_id: str,
    about: dict[str, Any], now: datetime, using: BaseDBAsyncClient,
) -> None:
    """The audit row of a grant, in the transaction that makes it."""
    await audit.record(
        entity=what, entity_id=entity_id, action="issue", actor=by.user_id, at=now,
        cinema_id=cinema_id, using=using,
        detail={"value_fen": value_fen, "limit_fen": limit, "role": by.role, **about},
    )


async def set_limit(by: Who, role: StaffRole, value_fen: int, now: datetime) -> tuple[int, int]:
    """A manager sets what ``role`` may give at once in the manager's cinema: (before, after)."""
    if by.role != StaffRole.MANAGER or by.cinema_id is None:
        raise NotAllowed("not_manager", "只有经理可以设置补偿上限。")
    if role not in LIMITED_ROLES:
        raise NotAllowed("bad_role", "可以设置的是「员工」或「工程师」的补偿上限。")
    if not 0 <= value_fen <= MAX_COMPENSATION_FEN:
        raise NotAllowed(
            "too_high", f"补偿上限最多 {format_fen(MAX_COMPENSATION_FEN)}。", MAX_COMPENSATION_FEN
        )
    for attempt in (1, 2):
        try:
            return await _write_limit(by, by.cinema_id, role, value_fen, now)
        except IntegrityError:
            # Two managers' first limit at once: the other row is there now; ours is the
            # later word, written over it on the second try.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


async def _write_limit(
    by: Who, cinema_id: int, role: StaffRole, value_fen: int, now: datetime
) -> tuple[int, int]:
    async with in_transaction() as conn:
        row = await CompensationLimit.get_or_none(
            cinema_id=cinema_id, role=str(role)
        ).using_db(conn).select_for_update()
        before = row.limit_fen if row is not None else 0
        if row is None:
            await CompensationLimit.create(
                cinema_id=cinema_id, role=str(role), limit_fen=value_fen, set_by=by.user_id,
                set_at=now, using_db=conn,
            )
        else:
            await CompensationLimit.filter(id=row.id).using_db(conn).update(
                limit_fen=value_fen, set_by=by.user_id, set_at=now
            )
        await audit.record(
            entity="compensation_limit", entity_id=f"{cinema_id}:{role}", action="set",
            actor=by.user_id, at=now, cinema_id=cinema_id, from_state=str(before),
            to_state=str(value_fen), using=conn,
        )
    return before, value_fen
