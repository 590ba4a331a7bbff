"""Orders, tickets, payments and refunds: the records and their guarded transitions.

An order moves held → pending_payment → paid → issued → checked_in, or ends
cancelled, expired, refunded or changed. Every move is one conditional UPDATE
(``WHERE state IN (...)``) whose row count is checked, plus an audit row, so
two workers, a retried notify and a double click can never both win.

The database is the last line of defence against double selling: a ticket's
``active`` column is TRUE while the ticket holds its seat and NULL afterwards,
and (showtime, seat, active) is unique. NULLs never collide, so the constraint
covers exactly the active tickets, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.models import Model

from domain import audit


class OrderState(StrEnum):
    HELD = "held"
    PENDING_PAYMENT = "pending_payment"
    PAID = "paid"
    ISSUED = "issued"
    CHECKED_IN = "checked_in"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REFUNDED = "refunded"
    CHANGED = "changed"


OPEN_STATES = (OrderState.HELD, OrderState.PENDING_PAYMENT)
# The seats of these orders are sold.
SOLD_STATES = (OrderState.PAID, OrderState.ISSUED, OrderState.CHECKED_IN)

ORDER_STATE_LABELS = {
    OrderState.HELD: "已锁座",
    OrderState.PENDING_PAYMENT: "待支付",
    OrderState.PAID: "已支付",
    OrderState.ISSUED: "已出票",
    OrderState.CHECKED_IN: "已检票",
    OrderState.CANCELLED: "已取消",
    OrderState.EXPIRED: "已超时",
    OrderState.REFUNDED: "已退款",
    OrderState.CHANGED: "已改签",
}


class TicketState(StrEnum):
    ISSUED = "issued"
    CHECKED_IN = "checked_in"
    REFUNDED = "refunded"
    CHANGED = "changed"


class Order(Model):
    id = fields.IntField(primary_key=True)
    no = fields.CharField(max_length=32, unique=True)  # out_trade_no at WeChat Pay
    cinema_id = fields.IntField(db_index=True)
    showtime: fields.ForeignKeyRelation[Any] = fields.ForeignKeyField(
        "models.Showtime", related_name="orders", on_delete=fields.RESTRICT
    )
    member_id = fields.IntField(null=True, db_index=True)
    openid = fields.CharField(max_length=64, db_index=True)  # the buyer, for messages
    channel = fields.CharField(max_length=16, default="chat")  # chat | miniprogram | boxoffice
    state = fields.CharEnumField(OrderState, max_length=16, default=OrderState.HELD)
    hold_id = fields.CharField(max_length=32)
    seats = fields.JSONField()  # ["7-8", "7-9"]
    quote = fields.JSONField()  # priced lines as shown to the buyer
    amount_fen = fields.IntField()  # what the buyer pays for this order
    paid_fen = fields.IntField(default=0)
    refunded_fen = fields.IntField(default=0)
    expires_at = fields.DatetimeField()  # the seat hold's end
    transaction_id = fields.CharField(max_length=64, null=True)
    changed_from: fields.ForeignKeyNullableRelation[Order] = fields.ForeignKeyField(
        "models.Order", related_name="changed_to", null=True, on_delete=fields.SET_NULL
    )
    created_at = fields.DatetimeField()
    paid_at = fields.DatetimeField(null=True)
    closed_at = fields.DatetimeField(null=True)  # refunded, changed, cancelled or expired
    note = fields.CharField(max_length=128, default="")

    class Meta:
        table = "ticket_order"
        indexes = (("state", "expires_at"),)


class Ticket(Model):
    id = fields.IntField(primary_key=True)
    order: fields.ForeignKeyRelation[Order] = fields.ForeignKeyField(
        "models.Order", related_name="tickets", on_delete=fields.CASCADE
    )
    showtime: fields.ForeignKeyRelation[Any] = fields.ForeignKeyField(
        "models.Showtime", related_name="tickets", on_delete=fields.RESTRICT
    )
    seat = fields.CharField(max_length=8)
    kind = fields.CharField(max_length=16, default="standard")
    price_fen = fields.IntField()
    secret = fields.CharField(max_length=40, unique=True)  # what the QR code carries
    state = fields.CharEnumField(TicketState, max_length=16, default=TicketState.ISSUED)
    # TRUE while the ticket holds its seat, NULL after: see the module docstring.
    active = fields.BooleanField(null=True, default=True)
    checked_in_at = fields.DatetimeField(null=True)
    checked_in_by = fields.CharField(max_length=64, null=True)

    class Meta:
        table = "ticket"
        unique_together = (("showtime", "seat", "active"),)


class Payment(Model):
    """One row per successful payment WeChat Pay reported.

    The transaction id is unique, which is what makes a replayed notify harmless.
    (The first line becomes the table comment: no semicolon there, because
    tortoise's SQLite migrations split DDL on semicolons.)
    """

    id = fields.IntField(primary_key=True)
    order: fields.ForeignKeyRelation[Order] = fields.ForeignKeyField(
        "models.Order", related_name="payments", on_delete=fields.CASCADE
    )
    transaction_id = fields.CharField(max_length=64, unique=True)
    amount_fen = fields.IntField()
    outcome = fields.CharField(max_length=16)  # issued | reseated | refunded | change
    received_at = fields.DatetimeField()

    class Meta:
        table = "payment"
        # Payments still processing long after their claim: finished by domain.reconcile.
        indexes = (("outcome", "received_at"),)


class RefundState(StrEnum):
    """A refund follows WeChat Pay's own states once WeChat Pay has accepted it."""

    PENDING = "pending"  # decided; WeChat Pay has not accepted the request yet
    PROCESSING = "processing"  # accepted; the money is on its way
    SUCCEEDED = "succeeded"  # WeChat Pay: SUCCESS
    ABNORMAL = "abnormal"  # WeChat Pay: ABNORMAL (e.g. the buyer's bank card is closed)
    CLOSED = "closed"  # WeChat Pay: CLOSED, the money did not go back
    FAILED = "failed"  # WeChat Pay never accepted the request, however often asked


# A person (the duty manager) must finish these by hand.
REFUND_NEEDS_A_PERSON = (RefundState.ABNORMAL, RefundState.CLOSED, RefundState.FAILED)


class Refund(Model):
    id = fields.IntField(primary_key=True)
    order: fields.ForeignKeyRelation[Order] = fields.ForeignKeyField(
        "models.Order", related_name="refunds", on_delete=fields.CASCADE
    )
    no = fields.CharField(max_length=32, unique=True)  # out_refund_no
    amount_fen = fields.IntField()
    reason = fields.CharField(max_length=64)
    state = fields.CharEnumField(RefundState, max_length=16, default=RefundState.PENDING)
    attempts = fields.IntField(default=0)
    last_error = fields.CharField(max_length=200, null=True)
    created_at = fields.DatetimeField()
    done_at = fields.DatetimeField(null=True)
    refund_id = fields.CharField(max_length=64, null=True)  # WeChat Pay's own number
    accepted_at = fields.DatetimeField(null=True)  # when WeChat Pay took the request
    # When to ask again: resend a pending request, or query a processing refund.
    next_attempt_at = fields.DatetimeField(null=True)
    alerted_at = fields.DatetimeField(null=True)  # the duty manager was told

    class Meta:
        table = "refund"
        indexes = (("state", "next_attempt_at"),)


class CheckIn(Model):
    """Scans, keyed by the scanner's nonce: a re-uploaded scan gets the same answer."""

    id = fields.IntField(primary_key=True)
    nonce = fields.CharField(max_length=64, unique=True)
    ticket_id = fields.IntField(null=True)
    result = fields.CharField(max_length=24)
    staff = fields.CharField(max_length=64)
    at = fields.DatetimeField()

    class Meta:
        table = "check_in"


def bank_total(order: Order) -> int:
    """What WeChat Pay took under this order's number: the total a refund of it quotes.

    The new order of a change was paid only the price difference, if anything, under its
    own number; the rest of its value was paid under the original order's number.
    """
    if order.changed_from_id is not None:  # type: ignore[attr-defined]
        return order.amount_fen if order.transaction_id else 0
    return order.paid_fen


# No 0/O/1/l/i: a secret a person may have to read aloud at the gate.
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def new_secret(length: int = 32) -> str:
    """32 characters of a 31-letter alphabet: 158 bits, far beyond guessing."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_number(prefix: str, now: datetime) -> str:
    """Order and refund numbers: sortable by day, unguessable, ≤ 32 characters."""
    return f"{prefix}{now:%Y%m%d}{secrets.token_hex(6).upper()}"


class TransitionRefused(Exception):
    """The record was not in a state that allows the change (someone else moved it first)."""

    def __init__(self, entity: str, key: str, wanted: str, allowed: tuple[str, ...]) -> None:
        super().__init__(f"{entity} {key}: cannot move to {wanted} from a state other than {allowed}")
        self.entity, self.key, self.wanted, self.allowed = entity, key, wanted, allowed


async def move_order(
    order: Order,
    to: OrderState,
    *,
    allowed: tuple[OrderState, ...],
    actor: str,
    at: datetime,
    using: BaseDBAsyncClient | None = None,
    detail: dict[str, Any] | None = None,
    **changes: Any,
) -> None:
    """The one way an order changes state: a guarded UPDATE, rows affected checked, audited.

    Raises TransitionRefused when the row was not in one of ``allowed`` states.
    On success the in-memory ``order`` reflects the change.
    """
    await _move(
        Order, order, "order", order.no, to, allowed, actor=actor, at=at,
        cinema_id=order.cinema_id, using=using, detail=detail, changes=changes,
    )


async def move_refund(
    refund: Refund,
    to: RefundState,
    *,
    allowed: tuple[RefundState, ...],
    actor: str,
    at: datetime,
    cinema_id: int | None,
    using: BaseDBAsyncClient | None = None,
    detail: dict[str, Any] | None = None,
    **changes: Any,
) -> None:
    """The one way a refund changes state, as ``move_order`` is for orders: a guarded
    UPDATE whose row count is checked, and an audit row. Raises TransitionRefused."""
    await _move(
        Refund, refund, "refund", refund.no, to, allowed, actor=actor, at=at,
        cinema_id=cinema_id, using=using, detail=detail, changes=changes,
    )


async def _move(
    model: type[Model],
    row: Any,
    entity: str,
    key: str,
    to: StrEnum,
    allowed: tuple[StrEnum, ...],
    *,
    actor: str,
    at: datetime,
    cinema_id: int | None,
    using: BaseDBAsyncClient | None,
    detail: dict[str, Any] | None,
    changes: dict[str, Any],
) -> None:
    """A guarded UPDATE of ``row`` (it must still be in one of ``allowed``), its row count
    checked, the in-memory row brought along, and an audit row."""
    updated = (
        await model.filter(id=row.id, state__in=[s.value for s in allowed])
        .using_db(using)
        .update(state=to, **changes)
    )
    if updated != 1:
        raise TransitionRefused(entity, key, to, tuple(allowed))
    before = row.state
    row.state = to
    for name, value in changes.items():
        setattr(row, name, value)
    await audit.record(
        entity=entity, entity_id=key, action=to.value, actor=actor, at=at,
        cinema_id=cinema_id, from_state=str(before), to_state=to.value, detail=detail, using=using,
    )
