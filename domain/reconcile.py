"""Payments a process left half-done: finished as the notify retried would finish them.

A payment is claimed (its ``Payment`` row, outcome ``processing``), then takes its
order (paid), then its seats are sold and its tickets committed, each step committed
before the next (``domain.ticketing.record_payment``). A process that dies between two
steps leaves the payment ``processing``: the order unpaid or paid, without tickets.
WeChat Pay retries the notify for a day, but not at once, and the sandbox bank never
does. ``finish_payments`` runs the same path for every payment still processing after
``GRACE``: the tickets on the seats the buyer chose while they are still theirs,
otherwise the whole payment refunded — the buyer told why, the duty manager told too.

Safe to run beside a notify of the same payment, and on several replicas: a payment's
stale claim is taken over by one runner only (a conditional update), and whoever loses
hears ``processing`` and leaves it; a payment finished is never touched again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from domain import audit
from domain.orders import Payment
from domain.refunds import RefundAlert
from domain.ticketing import (
    PROCESSING_TIMEOUT,
    Gateway,
    Inventory,
    Notify,
    PaymentNotice,
    PaymentRefused,
    record_payment,
)

log = logging.getLogger(__name__)

# Longer than a live process needs (well under a second) and than a claim takes to go
# stale (``PROCESSING_TIMEOUT``), so a payment being handled right now is left alone.
GRACE = timedelta(minutes=2)
assert GRACE > PROCESSING_TIMEOUT
ACTOR = "reconcile"


@dataclass(slots=True)
class Finished:
    """What one run did: order numbers by outcome (issued, reseated, refunded, changed)."""

    outcomes: dict[str, list[str]] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)  # left for the next run

    def count(self) -> int:
        return sum(len(nos) for nos in self.outcomes.values())


async def stranded(now: datetime, grace: timedelta = GRACE, limit: int = 100) -> list[Payment]:
    """Payments still processing ``grace`` after they were claimed (or last taken over)."""
    return (
        await Payment.filter(outcome="processing", received_at__lte=(now - grace).astimezone(UTC))
        .order_by("received_at", "id")
        .limit(limit)
        .prefetch_related("order")
    )


async def finish_payments(
    inventory: Inventory,
    gateway: Gateway,
    now: datetime,
    notify: Notify,
    alert: RefundAlert | None = None,
    *,
    grace: timedelta = GRACE,
    limit: int = 100,
) -> Finished:
    """Finish every stranded payment once, each with an audit row saying it was repaired."""
    done = Finished()
    for payment in await stranded(now, grace, limit):
        order = payment.order
        notice = PaymentNotice(order.no, payment.transaction_id, payment.amount_fen, order.openid)
        try:
            outcome = await record_payment(
                inventory, gateway, notice, now, notify, reseat=False, alert=alert
            )
        except PaymentRefused as exc:
            # Checked when the payment was claimed: only a changed order gets here.
            log.error("stranded payment refused", extra={"order": order.no, "reason": exc.reason})
            done.failed.append(order.no)
            continue
        except Exception:
            # One payment that cannot be finished must not hold up the others; its claim is
            # stale again after the grace and the next run tries it again.
            log.exception("stranded payment not finished", extra={"order": order.no})
            done.failed.append(order.no)
            continue
        if outcome.outcome in ("processing", "duplicate"):
            continue  # a notify (or another runner) has it, or already finished it
        done.outcomes.setdefault(outcome.outcome, []).append(order.no)
        await audit.record(
            entity="order", entity_id=order.no, action="payment_repaired", actor=ACTOR, at=now,
            cinema_id=order.cinema_id, to_state=str(outcome.order.state),
            detail={
                "transaction_id": payment.transaction_id,
                "outcome": outcome.outcome,
                "stranded_since": payment.received_at.isoformat(),
            },
        )
    return done
