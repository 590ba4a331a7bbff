"""Refunds after the decision: asking WeChat Pay, hearing back, and a person when it goes wrong.

A refund is decided in the transaction that closes its order (``domain.ticketing``)
and recorded ``pending``. From then on its state follows WeChat Pay's: the request
is accepted (``processing``) and ends ``succeeded``, ``abnormal`` or ``closed``, as
the REFUND.* notify or a query of the refund says. A request WeChat Pay never
accepts is asked again with a growing pause and, after ``RETRY_LIMIT`` attempts
(about six hours), is ``failed``. Abnormal, closed and failed refunds, and one
still processing ``STALL_AFTER`` it was accepted, reach the cinema's duty manager
through the ``alert`` callback, in the same transaction as the change; a change
made where no alert was at hand (the answer to the first request) is told by the
next ``chase_refunds``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from domain import audit
from domain.orders import (
    REFUND_NEEDS_A_PERSON,
    Order,
    Refund,
    RefundState,
    TransitionRefused,
    bank_total,
    move_refund,
)

log = logging.getLogger(__name__)

RETRY_LIMIT = 12
LONGEST_PAUSE = timedelta(hours=1)  # between two requests WeChat Pay did not accept
FIRST_QUERY = timedelta(minutes=5)  # an accepted refund not heard of: ask after this
LONGEST_QUERY_PAUSE = timedelta(hours=6)
# WeChat Pay: change (零钱) refunds arrive within minutes, bank cards within 3 working days.
STALL_AFTER = timedelta(days=3)

_FROM_WECHAT = {
    "PROCESSING": RefundState.PROCESSING,
    "SUCCESS": RefundState.SUCCEEDED,
    "ABNORMAL": RefundState.ABNORMAL,
    "CLOSED": RefundState.CLOSED,
}
_ALLOWED: dict[RefundState, tuple[RefundState, ...]] = {
    RefundState.PROCESSING: (RefundState.PENDING,),
    # An abnormal refund the merchant re-routes, or a "failed" one WeChat Pay had in fact
    # accepted (our requests timed out), may still succeed or close.
    RefundState.SUCCEEDED: (
        RefundState.PENDING, RefundState.PROCESSING, RefundState.ABNORMAL, RefundState.FAILED,
    ),
    RefundState.ABNORMAL: (RefundState.PENDING, RefundState.PROCESSING),
    RefundState.CLOSED: (
        RefundState.PENDING, RefundState.PROCESSING, RefundState.ABNORMAL, RefundState.FAILED,
    ),
    RefundState.FAILED: (RefundState.PENDING,),
}


class RefundGateway(Protocol):
    """WeChat Pay's refund API (``handlers.payments.Payments`` in the product)."""

    async def refund(
        self, out_trade_no: str, out_refund_no: str, refund_fen: int, total_fen: int, reason: str
    ) -> dict[str, Any]: ...

    async def query_refund(self, out_refund_no: str) -> dict[str, Any]: ...


class RefundAlert(Protocol):
    """Tells the cinema's duty manager that a refund needs a person (``event``: abnormal,
    closed, failed or stalled), recorded in the caller's transaction."""

    def __call__(
        self, event: str, refund: Refund, order: Order, *, using: BaseDBAsyncClient, **info: Any
    ) -> Awaitable[None]: ...


class RefundRefused(Exception):
    """A refund result that must not be applied (unknown refund, wrong amount, status)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _pause(attempts: int) -> timedelta:
    return min(timedelta(minutes=2 ** min(attempts - 1, 10)), LONGEST_PAUSE)


async def send_refund(
    gateway: Any, refund: Refund, order: Order, total_fen: int, now: datetime,
    alert: RefundAlert | None = None,
) -> bool:
    """Ask WeChat Pay to pay back (again); True once it has accepted the request."""
    attempts = refund.attempts + 1
    try:
        answer = await gateway.refund(
            order.no, refund.no, refund.amount_fen, total_fen, refund.reason
        )
    except Exception as exc:  # the provider's outage must not undo the decision to refund
        await _request_failed(refund, order, attempts, f"{type(exc).__name__}: {exc}", now, alert)
        return False
    status = str(answer.get("status", "")).upper()
    to = _FROM_WECHAT.get(status)
    if to is None:
        await _request_failed(refund, order, attempts, f"status {status or '?'}", now, alert)
        return False
    refund_id = answer.get("refund_id")
    await apply(
        refund, order, to, now, alert, actor="wechatpay", attempts=attempts,
        refund_id=refund_id if isinstance(refund_id, str) and refund_id else refund.refund_id,
    )
    return True


async def _request_failed(
    refund: Refund, order: Order, attempts: int, error: str, now: datetime,
    alert: RefundAlert | None,
) -> None:
    log.warning("refund request failed", extra={"refund": refund.no, "attempts": attempts})
    if attempts >= RETRY_LIMIT:
        await apply(
            refund, order, RefundState.FAILED, now, alert, actor="system", attempts=attempts,
            last_error=error[:200],
        )
        return
    await Refund.filter(id=refund.id, state=RefundState.PENDING).update(
        attempts=attempts, last_error=error[:200], next_attempt_at=now + _pause(attempts)
    )
    refund.attempts = attempts


async def apply(
    refund: Refund, order: Order, to: RefundState, now: datetime, alert: RefundAlert | None,
    *, actor: str, **changes: Any,
) -> bool:
    """Move a refund to the state WeChat Pay reports (or ``failed``); a person hears of it
    when it needs one. False: it was already there or beyond (a notify and an answer
    crossed, a notify replayed)."""
    if to == RefundState.PROCESSING:
        changes.update(accepted_at=now, next_attempt_at=now + FIRST_QUERY)
    else:
        # No more asking: it ended, or a person takes over (an abnormal refund may still
        # succeed once re-routed, and its notify is heard then).
        changes["next_attempt_at"] = None
        if to != RefundState.ABNORMAL:
            changes["done_at"] = now
    tell = to in REFUND_NEEDS_A_PERSON and alert is not None
    if tell:
        changes["alerted_at"] = now
    try:
        async with in_transaction() as conn:
            await move_refund(
                refund, to, allowed=_ALLOWED[to], actor=actor, at=now, cinema_id=order.cinema_id,
                using=conn, detail={"order": order.no}, **changes,
            )
            if tell:
                assert alert is not None
                await alert(to.value, refund, order, using=conn)
    except TransitionRefused:
        return False
    if to in REFUND_NEEDS_A_PERSON:
        log.error("refund needs a person", extra={"refund": refund.no, "state": to.value})
    return True


async def record_result(
    out_refund_no: str, status: str, refund_fen: int, now: datetime, alert: RefundAlert | None
) -> Refund:
    """What a REFUND.* notify says about one of our refunds."""
    refund = await Refund.get_or_none(no=out_refund_no)
    if refund is None:
        raise RefundRefused("unknown_refund")
    if refund_fen != refund.amount_fen:
        raise RefundRefused("amount_mismatch")
    to = _FROM_WECHAT.get(status.upper())
    if to is None:
        raise RefundRefused("unknown_status")
    order = await Order.get(id=refund.order_id)  # type: ignore[attr-defined]
    await apply(refund, order, to, now, alert, actor="wechatpay")
    return refund


async def chase_refunds(
    gateway: Any, now: datetime, alert: RefundAlert | None = None, limit: int = 100
) -> int:
    """The refund job: ask again where WeChat Pay did not accept, query accepted refunds not
    heard of, and tell the duty manager of any that need a person. Returns how many
    refunds moved on."""
    moved = 0
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now.astimezone(UTC))
    for refund in await Refund.filter(Q(state=RefundState.PENDING) & due).limit(limit):
        order = await Order.get(id=refund.order_id)  # type: ignore[attr-defined]
        total = max(bank_total(order), refund.amount_fen)
        moved += await send_refund(gateway, refund, order, total, now, alert)
    for refund in await Refund.filter(Q(state=RefundState.PROCESSING) & due).limit(limit):
        moved += await _query(gateway, refund, now, alert)
    if alert is not None:
        untold = Refund.filter(state__in=list(REFUND_NEEDS_A_PERSON), alerted_at=None)
        for refund in await untold.limit(limit):
            await _tell(refund, refund.state.value, now, alert)
    return moved


async def _query(gateway: Any, refund: Refund, now: datetime, alert: RefundAlert | None) -> bool:
    order = await Order.get(id=refund.order_id)  # type: ignore[attr-defined]
    try:
        answer = await gateway.query_refund(refund.no)
        to = _FROM_WECHAT.get(str(answer.get("status", "")).upper())
    except Exception as exc:  # asked again at the next pause; a long silence is a stall
        log.warning("refund query failed", extra={"refund": refund.no, "error": type(exc).__name__})
        to = None
    if to is not None and to != RefundState.PROCESSING:
        return await apply(refund, order, to, now, alert, actor="wechatpay-query")
    accepted = refund.accepted_at or refund.created_at
    waited = now - accepted
    pause = min(max(waited, FIRST_QUERY), LONGEST_QUERY_PAUSE)
    await Refund.filter(id=refund.id, state=RefundState.PROCESSING).update(
        next_attempt_at=now + pause
    )
    if waited >= STALL_AFTER and alert is not None:
        await _tell(refund, "stalled", now, alert, order)
    return False


async def _tell(
    refund: Refund, event: str, now: datetime, alert: RefundAlert, order: Order | None = None
) -> None:
    """Tell the duty manager once (``alerted_at``), with an audit row."""
    order = order or await Order.get(id=refund.order_id)  # type: ignore[attr-defined]
    async with in_transaction() as conn:
        told = await Refund.filter(id=refund.id, alerted_at=None).using_db(conn).update(
            alerted_at=now
        )
        if told != 1:
            return
        refund.alerted_at = now
        await audit.record(
            entity="refund", entity_id=refund.no, action=f"alert_{event}", actor="system", at=now,
            cinema_id=order.cinema_id, detail={"order": order.no}, using=conn,
        )
        await alert(event, refund, order, using=conn)
