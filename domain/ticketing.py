"""Selling seats: holds, checkout, payment, e-tickets, refunds, changes, check-in.

Plain async functions over the records of ``domain.orders``. What they need
from outside comes in as arguments: the live seat ``inventory`` (Redis, see
``bot.seats.inventory``), a payment ``gateway`` for refunds, and a ``notify``
callback that records a message to the buyer inside the same transaction as
the change (the handlers decide what the message says and on which channel).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from domain import audit, rollups
from domain.catalog import Showtime
from domain.cinemas import Cinema, Hall
from domain.orders import (
    OPEN_STATES,
    SOLD_STATES,
    CheckIn,
    Order,
    OrderState,
    Payment,
    Refund,
    Ticket,
    TicketState,
    TransitionRefused,
    bank_total,
    move_order,
    new_number,
    new_secret,
)
from domain.pricing import Quote, quote
from domain.promotions import best_discount
from domain.refunds import RefundAlert, send_refund
from domain.seating import SeatPlan, best_seats, check_choice

log = logging.getLogger(__name__)
SHANGHAI = ZoneInfo("Asia/Shanghai")
# Doors open this long before a show; a ticket scanned earlier is "too early".
DOORS_OPEN = timedelta(minutes=60)
PROCESSING_TIMEOUT = timedelta(seconds=60)


# What the outside world provides --------------------------------------------------------
class HoldAnswer(Protocol):
    ok: bool
    hold_id: str
    expires_ms: int
    taken: tuple[str, ...]
    over_quota: bool
    already: int


class SellAnswer(Protocol):
    ok: bool
    lapsed: bool
    taken: tuple[str, ...]


class SeatStatusLike(Protocol):
    state: str
    owner: str
    hold_id: str


class Inventory(Protocol):
    """The live seat inventory (``bot.seats.inventory.SeatInventory`` in the product)."""

    async def hold(
        self, showtime: int, seats: Sequence[str], owner: str, *, now_ms: int, ttl_ms: int,
        cap: int, replace: str | None = None, replace_seats: Sequence[str] = (),
        hold_id: str | None = None,
    ) -> HoldAnswer: ...

    async def release(self, showtime: int, hold_id: str, owner: str, seats: Sequence[str]) -> int: ...

    async def sell(
        self, showtime: int, hold_id: str, owner: str, seats: Sequence[str], *, now_ms: int,
        pending: bool = False,
    ) -> SellAnswer: ...

    async def settle(self, showtime: int, hold_id: str) -> None: ...

    async def unsell(
        self, showtime: int, owner: str, seats: Sequence[str], hold_id: str | None = None
    ) -> int: ...

    async def states(
        self, showtime: int, labels: Sequence[str], *, now_ms: int
    ) -> dict[str, SeatStatusLike]: ...

    async def forget(self, showtime: int) -> None: ...


class Gateway(Protocol):
    async def refund(
        self, out_trade_no: str, out_refund_no: str, refund_fen: int, total_fen: int, reason: str
    ) -> dict[str, Any]: ...


class Notify(Protocol):
    """Records a message to the buyer about ``order`` (``event``: issued, reseated,
    refunded, changed, showtime_cancelled, ...) using the caller's transaction."""

    def __call__(
        self, event: str, order: Order, *, using: BaseDBAsyncClient, **info: Any
    ) -> Awaitable[None]: ...


async def _silent(event: str, order: Order, *, using: BaseDBAsyncClient, **info: Any) -> None:
    return None


class TicketingError(Exception):
    """A request the rules refuse; ``message`` is what the buyer is told (Chinese)."""

    def __init__(self, code: str, message: str, **info: Any) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.info = code, message, info


@dataclass(frozen=True, slots=True)
class Buyer:
    openid: str
    member_id: int | None = None
    tier: str = "regular"


# Reading the house -------------------------------------------------------------------------
def seat_plan(hall: Hall) -> SeatPlan:
    """A hall's plan (built once per layout and shared)."""
    return SeatPlan.from_layout(hall.layout)


def _blocked(plan: SeatPlan) -> set[str]:
    return {label for label, seat in plan.seats.items() if seat.kind == "blocked"}


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


async def sold_seats(showtime_id: int) -> tuple[list[str], dict[str, int]]:
    """What the database says is sold: the inventory loads this into Redis."""
    rows = await Ticket.filter(showtime_id=showtime_id, active=True).values_list(
        "seat", "order__openid"
    )
    per_owner: dict[str, int] = {}
    for _, openid in rows:
        per_owner[openid] = per_owner.get(openid, 0) + 1
    return [seat for seat, _ in rows], per_owner


async def house(
    inventory: Inventory, showtime: Showtime, now: datetime, owner: str | None = None
) -> tuple[SeatPlan, dict[str, str], set[str]]:
    """(plan, label → "sold"|"held" for seats not free, seats held by ``owner``)."""
    hall = await _hall(showtime)
    plan = seat_plan(hall)
    raw = await inventory.states(showtime.id, list(plan.seats), now_ms=_ms(now))
    states = {label: s.state for label, s in raw.items()}
    mine = {label for label, s in raw.items() if owner and s.state == "held" and s.owner == owner}
    return plan, states, mine


async def _hall(showtime: Showtime) -> Hall:
    hall = showtime.hall if isinstance(showtime.hall, Hall) else None
    if hall is None:
        hall = await Hall.get(id=showtime.hall_id)  # type: ignore[attr-defined]
    return hall


async def _cinema(cinema_id: int) -> Cinema:
    return await Cinema.get(id=cinema_id)


# Holding seats -----------------------------------------------------------------------------
async def hold_seats(
    inventory: Inventory,
    showtime: Showtime,
    buyer: Buyer,
    now: datetime,
    *,
    count: int | None = None,
    seats: Sequence[str] | None = None,
    row: int | None = None,
    replacing: Order | None = None,
    channel: str = "chat",
    changing: Order | None = None,
) -> Order:
    """Hold ``seats`` (or the best ``count`` adjacent seats, optionally in ``row``) for
    ``buyer`` and record the order, state ``held``. ``replacing``: the buyer's held order
    for the same show, whose seats are swapped in one step ("换到7排"). ``changing``: the
    order this new one is the change of (改签), recorded with it."""
    cinema = await _cinema(showtime.cinema_id)  # type: ignore[attr-defined]
    _check_on_sale(showtime, now)
    if seats:
        seats = list(dict.fromkeys(seats))  # 「5排5座 5排5座」 is one seat, held and paid once
    if replacing is not None and (
        replacing.state != OrderState.HELD or replacing.showtime_id != showtime.id  # type: ignore[attr-defined]
    ):
        raise TicketingError("not_held", "这笔订单已不能换座，请重新选座。")
    wanted = len(seats) if seats else (count or (len(replacing.seats) if replacing else 0))
    if wanted < 1:
        raise TicketingError("no_count", "要买几张？")
    if wanted > cinema.max_seats_per_order:
        raise TicketingError(
            "order_cap", f"一笔订单最多{cinema.max_seats_per_order}张，请分开购买。"
        )
    plan, states, mine = await house(inventory, showtime, now, buyer.openid)
    own_old = set(replacing.seats) if replacing else set()
    unavailable = {label for label in states if label not in own_old} | _blocked(plan)
    for attempt in range(3):
        if seats:
            chosen = list(seats)
            reason = check_choice(plan, unavailable, chosen)
            if reason:
                raise TicketingError("bad_choice", reason)
        else:
            found = best_seats(plan, unavailable, wanted, row=row)
            if found is None:
                where = f"{row}排" if row else "这一场"
                raise TicketingError(
                    "no_seats", f"{where}已经没有{wanted}个相邻的空座了。", row=row, count=wanted
                )
            chosen = list(found)
        answer = await inventory.hold(
            showtime.id,
            chosen,
            buyer.openid,
            now_ms=_ms(now),
            ttl_ms=cinema.hold_minutes * 60_000,
            cap=cinema.max_seats_per_showtime,
            replace=replacing.hold_id if replacing else None,
            replace_seats=replacing.seats if replacing else (),
        )
        if answer.ok:
            break
        if answer.over_quota:
            raise TicketingError(
                "showtime_cap",
                f"每人每场最多{cinema.max_seats_per_showtime}张，您已选或已购{answer.already}张。",
            )
        if seats:
            taken = "、".join(_seat_name(s) for s in answer.taken)
            raise TicketingError("taken", f"{taken}刚被别人选走了，换个座位吧。", taken=answer.taken)
        # Someone took one of the best seats between our look and our hold: look again.
        unavailable |= set(answer.taken)
    else:
        raise TicketingError("busy", "这一场太抢手了，请再试一次。")
    priced = await price(showtime, plan, chosen, buyer.tier, now)
    expires = datetime.fromtimestamp(answer.expires_ms / 1000, UTC)
    if replacing is not None:
        old_seats = replacing.seats
        try:
            async with in_transaction() as conn:
                await move_order(
                    replacing, OrderState.HELD, allowed=(OrderState.HELD,), actor=buyer.openid,
                    at=now, using=conn, detail={"seats": chosen, "from": old_seats},
                    hold_id=answer.hold_id, seats=chosen, quote=_quote_json(priced),
                    amount_fen=priced.total_fen, expires_at=expires,
                )
        except TransitionRefused:
            await inventory.release(showtime.id, answer.hold_id, buyer.openid, chosen)
            raise TicketingError("not_held", "这笔订单已不能换座，请重新选座。") from None
        return replacing
    async with in_transaction() as conn:
        order = await Order.create(
            no=new_number("CB", now.astimezone(SHANGHAI)),
            cinema_id=showtime.cinema_id,  # type: ignore[attr-defined]
            showtime=showtime,
            member_id=buyer.member_id,
            openid=buyer.openid,
            channel=channel,
            changed_from_id=changing.id if changing is not None else None,
            state=OrderState.HELD,
            hold_id=answer.hold_id,
            seats=chosen,
            quote=_quote_json(priced),
            amount_fen=priced.total_fen,
            expires_at=expires,
            created_at=now,
            using_db=conn,
        )
        await audit.record(
            entity="order", entity_id=order.no, action="held", actor=buyer.openid, at=now,
            cinema_id=order.cinema_id, to_state="held", detail={"seats": chosen}, using=conn,
        )
    return order


def _check_on_sale(showtime: Showtime, now: datetime) -> None:
    if showtime.cancelled_at is not None:
        raise TicketingError("cancelled", "这一场已取消，请选择其他场次。")
    if showtime.starts_at <= now:
        raise TicketingError("started", "这一场已经开场，停止售票了。")


def _seat_name(label: str) -> str:
    row, col = label.split("-")
    return f"{row}排{col}座"


def seat_names(labels: Sequence[str]) -> str:
    return "、".join(_seat_name(s) for s in labels)


async def price(
    showtime: Showtime, plan: SeatPlan, seats: Sequence[str], tier: str, now: datetime
) -> Quote:
    """The price of seats for a buyer: base × seat type × member tier × the best discount."""
    weekday = showtime.starts_at.astimezone(SHANGHAI).weekday()
    discount = await best_discount(
        showtime.cinema_id, showtime.film_id, weekday, now  # type: ignore[attr-defined]
    )
    return quote(
        showtime.base_price_fen,
        [(s, plan.kind(s)) for s in seats],
        tier,
        discount.percent_off if discount else 0,
        discount.name if discount else None,
    )


def _quote_json(q: Quote) -> dict[str, Any]:
    return {
        "lines": [{"seat": ln.seat, "kind": ln.kind, "fen": ln.fen} for ln in q.lines],
        "total_fen": q.total_fen,
        "tier": q.tier,
        "discount": q.discount,
    }


async def release_order(inventory: Inventory, order: Order, *, by: str, now: datetime) -> bool:
    """The buyer gives up a held or unpaid order. False if it had already moved on."""
    try:
        async with in_transaction() as conn:
            await move_order(
                order, OrderState.CANCELLED, allowed=OPEN_STATES, actor=by, at=now, using=conn,
                closed_at=now,
            )
    except TransitionRefused:
        return False
    await inventory.release(order.showtime_id, order.hold_id, order.openid, order.seats)  # type: ignore[attr-defined]
    return True


async def checkout(order: Order, *, now: datetime) -> Order:
    """held → pending_payment: the buyer confirmed; the hold's countdown keeps running."""
    if order.expires_at <= now:
        # Also on a second click: a pay button for seats no longer held sells nothing.
        raise TicketingError("expired", "座位保留已超时，请重新选座。")
    if order.state == OrderState.PENDING_PAYMENT:
        return order  # a second click on 确认
    try:
        async with in_transaction() as conn:
            await move_order(
                order, OrderState.PENDING_PAYMENT, allowed=(OrderState.HELD,), actor=order.openid,
                at=now, using=conn,
            )
    except TransitionRefused:
        fresh = await Order.get(id=order.id)
        if fresh.state == OrderState.PENDING_PAYMENT:
            return fresh
        raise TicketingError("not_held", "这笔订单已失效，请重新选座。") from None
    return order


async def expire_orders(inventory: Inventory, now: datetime, limit: int = 500) -> int:
    """Open orders whose hold ran out become expired and their seats are let go."""
    due = await Order.filter(state__in=list(OPEN_STATES), expires_at__lte=now.astimezone(UTC)).limit(limit)
    expired = 0
    for order in due:
        try:
            async with in_transaction() as conn:
                await move_order(
                    order, OrderState.EXPIRED, allowed=OPEN_STATES, actor="system", at=now,
                    using=conn, closed_at=now,
                )
        except TransitionRefused:
            continue  # paid or cancelled meanwhile
        await inventory.release(order.showtime_id, order.hold_id, order.openid, order.seats)  # type: ignore[attr-defined]
        expired += 1
    return expired


# Payment ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PaymentNotice:
    out_trade_no: str
    transaction_id: str
    amount_fen: int
    payer_openid: str = ""


@dataclass(slots=True)
class PaymentOutcome:
    outcome: str  # issued | reseated | refunded | changed | duplicate | processing
    order: Order
    tickets: list[Ticket] = field(default_factory=list)


class PaymentRefused(Exception):
    """A notify that must not be honoured (unknown order, wrong amount); logged, answered 4xx."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def record_payment(
    inventory: Inventory,
    gateway: Gateway,
    notice: PaymentNotice,
    now: datetime,
    notify: Notify = _silent,
    *,
    reseat: bool = True,
    alert: RefundAlert | None = None,
) -> PaymentOutcome:
    """A payment WeChat Pay confirmed. Idempotent: the transaction id is claimed once, and
    every later notify of it answers "duplicate" without touching seats or money.

    ``reseat``: seats the buyer chose that someone else took meanwhile are replaced by
    equivalent ones; False: the payment is refunded instead (``unissued``). ``alert``: the
    duty manager also hears of every payment this refunds (``domain.reconcile``)."""
    if alert is not None:
        notify = _telling_manager(notify, alert)
    order = await Order.get_or_none(no=notice.out_trade_no)
    if order is None:
        raise PaymentRefused("unknown_order")
    if notice.amount_fen != order.amount_fen:
        log.warning(
            "payment amount mismatch",
            extra={"order": order.no, "paid": notice.amount_fen, "due": order.amount_fen},
        )
        raise PaymentRefused("amount_mismatch")
    claim = await _claim_payment(order, notice, now)
    if claim is not None:
        return claim
    if order.changed_from_id is not None:  # type: ignore[attr-defined]
        return await _finish_change(inventory, gateway, order, notice, now, notify)
    if not _paid_by(order, notice) and (
        order.state in SOLD_STATES or order.state in (OrderState.REFUNDED, OrderState.CHANGED)
    ):
        # Paid twice for one order (two payment windows): never keep the second payment.
        return await _refund_payment(gateway, order, notice, now, notify, "duplicate_payment")
    return await _issue(inventory, gateway, order, notice, now, notify, reseat=reseat)


def _telling_manager(notify: Notify, alert: RefundAlert) -> Notify:
    """``notify``, and the duty manager told of each payment refunded, in the same
    transaction."""

    async def both(event: str, order: Order, *, using: BaseDBAsyncClient, **info: Any) -> None:
        await notify(event, order, using=using, **info)
        if event == "payment_refunded":
            await alert("unissued", info["refund"], order, using=using, reason=info.get("reason"))

    return both


def _paid_by(order: Order, notice: PaymentNotice) -> bool:
    """The order is paid by this payment and waits for its tickets: the process that took
    it died before issuing them, and this is the notify retried."""
    return order.state == OrderState.PAID and order.transaction_id == notice.transaction_id


_UNPAID = (*OPEN_STATES, OrderState.EXPIRED, OrderState.CANCELLED)


async def _take_order(order: Order, notice: PaymentNotice, now: datetime) -> bool:
    """Make this payment the one that pays ``order``, committed before any seat is sold.

    Of two payments of one order (two payment windows, one pay link pressed on two
    processes at once) exactly one moves it to paid; the other is refunded and never
    touches the seats. False: another payment got there first."""
    try:
        async with in_transaction() as conn:
            await move_order(
                order, OrderState.PAID, allowed=_UNPAID, actor="wechatpay", at=now, using=conn,
                paid_fen=notice.amount_fen, paid_at=now, transaction_id=notice.transaction_id,
                closed_at=None, detail={"transaction_id": notice.transaction_id},
            )
        return True
    except TransitionRefused:
        await order.refresh_from_db()
        return _paid_by(order, notice)


async def _claim_payment(order: Order, notice: PaymentNotice, now: datetime) -> PaymentOutcome | None:
    try:
        await Payment.create(
            order=order, transaction_id=notice.transaction_id, amount_fen=notice.amount_fen,
            outcome="processing", received_at=now,
        )
        return None
    except IntegrityError:
        pass
    existing = await Payment.get(transaction_id=notice.transaction_id)
    if existing.outcome != "processing":
        return PaymentOutcome("duplicate", await Order.get(id=order.id))
    # A worker claimed it and died before finishing: take over once its claim is stale.
    stale = (now - PROCESSING_TIMEOUT).astimezone(UTC)
    taken = await Payment.filter(
        id=existing.id, outcome="processing", received_at__lt=stale
    ).update(received_at=now)
    if taken:
        return None
    return PaymentOutcome("processing", order)


async def _set_outcome(notice: PaymentNotice, outcome: str, using: BaseDBAsyncClient | None = None) -> None:
    await Payment.filter(transaction_id=notice.transaction_id).using_db(using).update(outcome=outcome)


async def _issue(
    inventory: Inventory, gateway: Gateway, order: Order, notice: PaymentNotice, now: datetime,
    notify: Notify, *, reseat: bool = True,
) -> PaymentOutcome:
    showtime = await Showtime.get(id=order.showtime_id).prefetch_related("hall")  # type: ignore[attr-defined]
    if showtime.cancelled_at is not None:
        # The hold was let go when the show was cancelled; the money goes back.
        return await _refund_payment(gateway, order, notice, now, notify, "showtime_cancelled")
    if not await _take_order(order, notice, now):
        return await _refund_payment(gateway, order, notice, now, notify, "duplicate_payment")
    # The sale is pending until the tickets are committed: should this process die in
    # between, the seats are sellable again once the sale times out, and the notify retried
    # takes the pending sale over (the same seats, not a re-seat).
    show_id: int = order.showtime_id  # type: ignore[attr-defined]
    sold = await inventory.sell(
        show_id, order.hold_id, order.openid, order.seats, now_ms=_ms(now), pending=True
    )
    seats, hold_id, outcome = list(order.seats), order.hold_id, "issued"
    if not sold.ok:
        # The hold lapsed and someone else bought a seat: find equivalent seats, never
        # force the sale.
        if not reseat:
            return await _refund_payment(gateway, order, notice, now, notify, "unissued")
        other = await _reseat(inventory, showtime, order, now)
        if other is None:
            return await _refund_payment(gateway, order, notice, now, notify, "seats_gone")
        (seats, hold_id), outcome = other, "reseated"
    plan = seat_plan(showtime.hall)
    try:
        async with in_transaction() as conn:
            # Locks the show's row (PostgreSQL) against a cancellation running now: either
            # it committed first and we see it, or it waits and then refunds this order.
            current = await Showtime.filter(id=showtime.id).select_for_update().using_db(conn).first()
            if current is None or current.cancelled_at is not None:
                raise _ShowCancelled
            tickets = await _create_tickets(order, showtime, plan, seats, conn)
            await move_order(
                order, OrderState.ISSUED, allowed=(OrderState.PAID,), actor="system", at=now,
                using=conn, seats=seats,
                detail={"transaction_id": notice.transaction_id, "outcome": outcome},
            )
            await _set_outcome(notice, outcome, conn)
            await rollups.refresh_show(showtime.id, conn)
            await notify(outcome, order, using=conn, tickets=tickets, showtime=showtime)
    except IntegrityError:
        # The database refuses a second active ticket for a seat: Redis had lost a sale.
        log.error("seat already sold in the database", extra={"order": order.no})
        await inventory.unsell(show_id, order.openid, [], hold_id)
        await inventory.forget(show_id)
        return await _refund_unissued(gateway, order, notice, now, notify, "seats_gone")
    except (TransitionRefused, _ShowCancelled) as exc:
        # The show was cancelled, or the paid order refunded, while its seats were sold.
        await inventory.unsell(show_id, order.openid, seats, hold_id)
        reason = "showtime_cancelled" if isinstance(exc, _ShowCancelled) else "order_closed"
        return await _refund_unissued(gateway, order, notice, now, notify, reason)
    await inventory.settle(show_id, hold_id)
    return PaymentOutcome(outcome, order, tickets)


async def _refund_unissued(
    gateway: Gateway, order: Order, notice: PaymentNotice, now: datetime, notify: Notify,
    reason: str,
) -> PaymentOutcome:
    await order.refresh_from_db()  # the rolled-back moves changed the copy in memory
    return await _refund_payment(gateway, order, notice, now, notify, reason)


class _ShowCancelled(Exception):
    """The show was cancelled while a payment was being turned into tickets."""


async def _reseat(
    inventory: Inventory, showtime: Showtime, order: Order, now: datetime
) -> tuple[list[str], str] | None:
    """Equivalent seats sold (pending) to the order: (seats, the hold id of their sale)."""
    plan, states, _ = await house(inventory, showtime, now)
    if showtime.starts_at <= now or showtime.cancelled_at is not None:
        return None
    found = best_seats(plan, set(states) | _blocked(plan), len(order.seats))
    if found is None:
        return None
    held = await inventory.hold(
        showtime.id, list(found), order.openid, now_ms=_ms(now), ttl_ms=60_000, cap=10_000,
    )
    if not held.ok:
        return None
    sold = await inventory.sell(
        showtime.id, held.hold_id, order.openid, list(found), now_ms=_ms(now), pending=True
    )
    return (list(found), held.hold_id) if sold.ok else None


async def _create_tickets(
    order: Order, showtime: Showtime, plan: SeatPlan, seats: Sequence[str], conn: BaseDBAsyncClient
) -> list[Ticket]:
    prices = {line["seat"]: line["fen"] for line in order.quote.get("lines", [])}
    share = order.paid_fen // max(len(seats), 1)
    tickets = []
    for label in seats:
        tickets.append(
            await Ticket.create(
                order=order, showtime=showtime, seat=label, kind=plan.kind(label),
                price_fen=prices.get(label, share), secret=new_secret(), using_db=conn,
            )
        )
    return tickets


async def _refund_payment(
    gateway: Gateway, order: Order, notice: PaymentNotice, now: datetime, notify: Notify,
    reason: str,
) -> PaymentOutcome:
    """Give a payment back whole: its seats could not be honoured, or it paid twice. The
    order closes with it when nothing else paid for it."""
    if order.state == OrderState.REFUNDED and order.transaction_id == notice.transaction_id:
        # This payment paid the order, and the order was refunded whole since (a cancelled
        # show): its money is already on its way back.
        await _set_outcome(notice, "refunded")
        return PaymentOutcome("refunded", order)
    issued = (OrderState.ISSUED, OrderState.CHECKED_IN)
    if order.state in issued and order.transaction_id == notice.transaction_id:
        # This very payment's tickets were issued meanwhile by whoever else ran it (a
        # process we took a stale claim over from was slow, not dead): it is not
        # refunded beside them.
        return PaymentOutcome("duplicate", order)
    closes = _paid_by(order, notice) or order.state in _UNPAID
    try:
        async with in_transaction() as conn:
            if closes:
                await move_order(
                    order, OrderState.REFUNDED,
                    allowed=(OrderState.PAID,) if order.state == OrderState.PAID else _UNPAID,
                    actor="system", at=now, using=conn, paid_fen=notice.amount_fen, paid_at=now,
                    refunded_fen=notice.amount_fen, closed_at=now,
                    transaction_id=notice.transaction_id, detail={"reason": reason},
                )
            refund = await Refund.create(
                order=order, no=new_number("RF", now.astimezone(SHANGHAI)),
                amount_fen=notice.amount_fen, reason=reason, created_at=now, using_db=conn,
            )
            await _set_outcome(notice, "refunded", conn)
            await notify(
                "payment_refunded", order, using=conn, reason=reason,
                amount_fen=notice.amount_fen, refund=refund,
            )
    except TransitionRefused:
        # Another payment of the order (or a refund of it) moved it first: look again.
        await order.refresh_from_db()
        return await _refund_payment(gateway, order, notice, now, notify, reason)
    await send_refund(gateway, refund, order, notice.amount_fen, now)
    return PaymentOutcome("refunded", order)


async def _refund_sources(order: Order, amount: int) -> list[tuple[Order, int]]:
    """Which order numbers a refund of ``amount`` goes back through, and how much each:
    a bank refunds a payment only under the number that paid it, up to what it took."""
    if order.changed_from_id is None:  # type: ignore[attr-defined]
        return [(order, amount)]
    own = min(bank_total(order), amount)
    parts: list[tuple[Order, int]] = []
    if amount - own > 0:
        parts.append((await Order.get(id=order.changed_from_id), amount - own))  # type: ignore[attr-defined]
    if own > 0 or not parts:
        parts.append((order, own))
    return parts


# Refunds and changes -----------------------------------------------------------------------
def _local_month_start(now: datetime) -> datetime:
    local = now.astimezone(SHANGHAI)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


async def quota_used(member_openid: str, now: datetime) -> int:
    """Refunds and changes the buyer asked for this calendar month (Asia/Shanghai)."""
    since = _local_month_start(now).astimezone(UTC)
    return await audit.AuditLog.filter(
        actor=member_openid, entity="order", action__in=["refunded", "changed"], at__gte=since
    ).count()


async def _check_rules(
    order: Order, showtime: Showtime, cinema: Cinema, now: datetime, *, cutoff_min: int, what: str
) -> None:
    if order.state not in (OrderState.ISSUED, OrderState.PAID):
        label = {OrderState.CHECKED_IN: "已检票", OrderState.REFUNDED: "已退款", OrderState.CHANGED: "已改签"}
        raise TicketingError("state", f"这笔订单{label.get(order.state, '当前状态')}，不能{what}。")
    if await Ticket.filter(order_id=order.id, state=TicketState.CHECKED_IN).exists():
        raise TicketingError("checked_in", f"已有票检票入场，不能{what}。")
    deadline = showtime.starts_at - timedelta(minutes=cutoff_min)
    if now > deadline:
        raise TicketingError(
            "cutoff", f"开场前{cutoff_min}分钟内不能{what}（截止 {deadline.astimezone(SHANGHAI):%H:%M}）。"
        )
    used = await quota_used(order.openid, now)
    if used >= cinema.monthly_refund_quota:
        raise TicketingError(
            "quota", f"本月退票/改签已达{cinema.monthly_refund_quota}次上限，如有特殊情况请回复「转人工」。"
        )


async def refund_order(
    inventory: Inventory, gateway: Gateway, order: Order, *, by: str, now: datetime,
    notify: Notify = _silent, reason: str = "buyer", enforce_rules: bool = True,
) -> Refund:
    """The buyer (or the cinema) returns a paid order: seats back on sale, money back.

    The money goes back through the payments that made it: for the new order of a change
    whose difference was paid, one refund under each order number (the original one is
    returned; ``order.refunded_fen`` is the whole amount)."""
    showtime = await Showtime.get(id=order.showtime_id)  # type: ignore[attr-defined]
    if enforce_rules:
        cinema = await _cinema(order.cinema_id)
        await _check_rules(order, showtime, cinema, now, cutoff_min=cinema.refund_cutoff_minutes, what="退票")
    amount = order.paid_fen - order.refunded_fen
    sources = await _refund_sources(order, amount)
    # The cinema's own refunds (a cancelled show) include those already let in.
    allowed = (OrderState.ISSUED, OrderState.PAID) if enforce_rules else SOLD_STATES
    try:
        async with in_transaction() as conn:
            await move_order(
                order, OrderState.REFUNDED, allowed=allowed,
                actor=by, at=now, using=conn, refunded_fen=order.paid_fen, closed_at=now,
                detail={"reason": reason},
            )
            await Ticket.filter(order_id=order.id, active=True).using_db(conn).update(
                active=None, state=TicketState.REFUNDED
            )
            await rollups.refresh_show(showtime.id, conn)
            refunds = [
                (
                    await Refund.create(
                        order=payer, no=new_number("RF", now.astimezone(SHANGHAI)), amount_fen=fen,
                        reason=reason, created_at=now, using_db=conn,
                    ),
                    payer,
                )
                for payer, fen in sources
            ]
            await notify("refunded", order, using=conn, amount_fen=amount, reason=reason, showtime=showtime)
    except TransitionRefused:
        raise TicketingError("state", "这笔订单已经处理过了。") from None
    await inventory.unsell(showtime.id, order.openid, order.seats)
    for refund, payer in refunds:
        await send_refund(gateway, refund, payer, bank_total(payer), now)
    return refunds[0][0]


@dataclass(slots=True)
class ChangeOutcome:
    order: Order  # the new order
    due_fen: int  # > 0: to pay; < 0: refunded; 0: even
    done: bool  # False: waiting for the price difference to be paid


async def change_order(
    inventory: Inventory, gateway: Gateway, order: Order, target: Showtime, buyer: Buyer,
    *, now: datetime, notify: Notify = _silent, seats: Sequence[str] | None = None,
) -> ChangeOutcome:
    """改签: the whole order to another show of the same film, once, before the cut-off."""
    showtime = await Showtime.get(id=order.showtime_id)  # type: ignore[attr-defined]
    cinema = await _cinema(order.cinema_id)
    if not cinema.changes_enabled:
        raise TicketingError("disabled", "本影城暂不支持改签，可在开场前退票后重新购买。")
    if order.changed_from_id is not None:  # type: ignore[attr-defined]
        raise TicketingError("once", "每笔订单只能改签一次，这笔已经改签过了。")
    if target.film_id != showtime.film_id or target.id == showtime.id:  # type: ignore[attr-defined]
        raise TicketingError("film", "只能改签到同一部电影的其他场次。")
    await _check_rules(order, showtime, cinema, now, cutoff_min=cinema.change_cutoff_minutes, what="改签")
    _check_on_sale(target, now)
    if target.starts_at - timedelta(minutes=cinema.change_cutoff_minutes) < now:
        raise TicketingError("cutoff", "目标场次即将开场，不能改签到这一场。")
    # The same request run again (a callback re-run after a crash) finds the seats it held
    # the first time instead of holding a second set.
    new = await _change_under_way(order, target, now)
    if new is None or (seats and set(seats) != set(new.seats)):
        new = await hold_seats(
            inventory, target, buyer, now, count=len(order.seats), seats=seats,
            channel=order.channel, changing=order,
        )
    due = int(new.quote.get("total_fen", new.amount_fen)) - (order.paid_fen - order.refunded_fen)
    if new.amount_fen != max(due, 0):
        await Order.filter(id=new.id).update(amount_fen=max(due, 0))
        new.amount_fen = max(due, 0)
    if due > 0:
        await checkout(new, now=now)
        return ChangeOutcome(new, due, done=False)
    await _complete_change(inventory, gateway, order, new, now, notify, paid_now=0, transaction_id=None)
    return ChangeOutcome(new, due, done=True)


async def _change_under_way(order: Order, target: Showtime, now: datetime) -> Order | None:
    """The open, still held order of a change of ``order`` to ``target``."""
    return await Order.filter(
        changed_from_id=order.id, showtime_id=target.id, state__in=list(OPEN_STATES),
        expires_at__gt=now.astimezone(UTC),
    ).order_by("-id").first()


async def _finish_change(
    inventory: Inventory, gateway: Gateway, new: Order, notice: PaymentNotice, now: datetime,
    notify: Notify,
) -> PaymentOutcome:
    old = await Order.get(id=new.changed_from_id)  # type: ignore[attr-defined]
    if old.state not in (OrderState.ISSUED, OrderState.PAID) or new.state not in (
        *OPEN_STATES, OrderState.EXPIRED
    ):
        return await _refund_payment(gateway, new, notice, now, notify, "change_void")
    # Pending until the change commits; a change that fails after this is taken back when
    # the sale times out (a second payment of it may share this sale, so no one unsells it).
    show_id: int = new.showtime_id  # type: ignore[attr-defined]
    sold = await inventory.sell(
        show_id, new.hold_id, new.openid, new.seats, now_ms=_ms(now), pending=True
    )
    if not sold.ok:
        return await _refund_payment(gateway, new, notice, now, notify, "seats_gone")
    tickets = await _complete_change(
        inventory, gateway, old, new, now, notify, paid_now=notice.amount_fen,
        transaction_id=notice.transaction_id, already_sold=True, notice=notice,
    )
    return PaymentOutcome("changed", new, tickets)


async def _complete_change(
    inventory: Inventory, gateway: Gateway, old: Order, new: Order, now: datetime, notify: Notify,
    *, paid_now: int, transaction_id: str | None, already_sold: bool = False,
    notice: PaymentNotice | None = None,
) -> list[Ticket]:
    target = await Showtime.get(id=new.showtime_id).prefetch_related("hall")  # type: ignore[attr-defined]
    if not already_sold:
        sold = await inventory.sell(
            target.id, new.hold_id, new.openid, new.seats, now_ms=_ms(now), pending=True
        )
        if not sold.ok:
            raise TicketingError("taken", "新场次的座位刚被别人买走了，请重新改签。")
    old_value = old.paid_fen - old.refunded_fen
    difference = max(old_value - new.quote.get("total_fen", new.amount_fen), 0)
    async with in_transaction() as conn:
        await move_order(
            old, OrderState.CHANGED, allowed=(OrderState.ISSUED, OrderState.PAID), actor=old.openid,
            at=now, using=conn, closed_at=now, detail={"to": new.no},
        )
        await Ticket.filter(order_id=old.id, active=True).using_db(conn).update(
            active=None, state=TicketState.CHANGED
        )
        await move_order(
            new, OrderState.PAID, allowed=(*OPEN_STATES, OrderState.EXPIRED), actor=new.openid,
            at=now, using=conn, paid_fen=old_value + paid_now - difference, paid_at=now,
            transaction_id=transaction_id, closed_at=None, detail={"from": old.no},
        )
        tickets = await _create_tickets(new, target, seat_plan(target.hall), new.seats, conn)
        await move_order(new, OrderState.ISSUED, allowed=(OrderState.PAID,), actor="system", at=now, using=conn)
        refund = None
        if difference > 0:
            refund = await Refund.create(
                order=old, no=new_number("RF", now.astimezone(SHANGHAI)), amount_fen=difference,
                reason="change_difference", created_at=now, using_db=conn,
            )
        if notice is not None:
            await _set_outcome(notice, "changed", conn)
        await rollups.refresh_shows([old.showtime_id, target.id], conn)  # type: ignore[attr-defined]
        await notify("changed", new, using=conn, tickets=tickets, showtime=target, old=old,
                     refund_fen=difference)
    await inventory.settle(target.id, new.hold_id)
    await inventory.unsell(old.showtime_id, old.openid, old.seats)  # type: ignore[attr-defined]
    if refund is not None:
        await send_refund(gateway, refund, old, old.paid_fen, now)
    return tickets


async def cancel_showtime(
    inventory: Inventory, gateway: Gateway, showtime: Showtime, *, by: str, now: datetime,
    notify: Notify = _silent,
) -> int:
    """The cinema cancels a show: it stops selling, and every buyer is refunded and told."""
    await Showtime.filter(id=showtime.id, cancelled_at=None).update(cancelled_at=now)
    showtime.cancelled_at = now
    await rollups.refresh_show(showtime.id)
    await audit.record(
        entity="showtime", entity_id=showtime.id, action="cancel", actor=by, at=now,
        cinema_id=showtime.cinema_id,  # type: ignore[attr-defined]
    )
    refunded = 0
    for order in await Order.filter(showtime_id=showtime.id, state__in=list(SOLD_STATES)):
        try:
            await refund_order(
                inventory, gateway, order, by=by, now=now, notify=notify,
                reason="showtime_cancelled", enforce_rules=False,
            )
            refunded += 1
        except TicketingError:
            continue
    for order in await Order.filter(showtime_id=showtime.id, state__in=list(OPEN_STATES)):
        await release_order(inventory, order, by=by, now=now)
    return refunded


# E-tickets and check-in ------------------------------------------------------------------
@dataclass(slots=True)
class CheckInResult:
    ok: bool
    code: str  # ok | unknown | foreign | refunded | used | wrong_day | too_early | ended
    message: str  # for the staff member (Chinese)
    ticket: Ticket | None = None


async def check_in(
    secret: str, *, cinema_id: int, staff: str, now: datetime, nonce: str | None = None
) -> CheckInResult:
    """Admit a ticket once. A scan re-sent with the same nonce gets the same answer: the
    admission and the scan's record commit together, so a scan run again after a crash
    either finds its answer or admits afresh, never 「已检过票」 for the ticket it let in."""
    nonce = scan_key(nonce) if nonce else None
    if nonce:
        seen = await CheckIn.get_or_none(nonce=nonce)
        if seen is not None:
            ticket = await Ticket.get_or_none(id=seen.ticket_id) if seen.ticket_id else None
            return await _describe(seen.result, ticket, now, replay=True)
    ticket = await Ticket.get_or_none(secret=secret.strip().lower()).prefetch_related(
        "showtime__hall", "showtime__film", "order"
    )
    code = await _judge(ticket, cinema_id, now)
    try:
        async with in_transaction() as conn:
            if code == "ok":
                assert ticket is not None
                code = await _admit(ticket, cinema_id, staff, now, conn)
            if nonce:
                await CheckIn.create(
                    nonce=nonce, ticket_id=ticket.id if ticket else None, result=code,
                    staff=staff, at=now, using_db=conn,
                )
    except IntegrityError:
        if not nonce:
            raise
        # The same scan at once on another process: its answer stands, our admission is
        # rolled back with the record.
        seen = await CheckIn.get(nonce=nonce)
        return await _describe(seen.result, ticket, now, replay=True)
    return await _describe(code, ticket, now)


def scan_key(nonce: str) -> str:
    """A scan's nonce as stored: whole when it fits, else its digest. Cut to the column's
    length, two long keys (a message key with a long WeCom userid) could become one."""
    if len(nonce) <= 64:
        return nonce
    return "sha256:" + hashlib.sha256(nonce.encode("utf-8")).hexdigest()[:57]


async def _admit(
    ticket: Ticket, cinema_id: int, staff: str, now: datetime, conn: BaseDBAsyncClient
) -> str:
    moved = await Ticket.filter(id=ticket.id, state=TicketState.ISSUED).using_db(conn).update(
        state=TicketState.CHECKED_IN, checked_in_at=now, checked_in_by=staff
    )
    if moved != 1:
        return "used"
    ticket.state, ticket.checked_in_at, ticket.checked_in_by = TicketState.CHECKED_IN, now, staff
    await rollups.refresh_show(ticket.showtime_id, conn)  # type: ignore[attr-defined]
    await audit.record(
        entity="ticket", entity_id=ticket.id, action="check_in", actor=staff, at=now,
        cinema_id=cinema_id, from_state="issued", to_state="checked_in", using=conn,
    )
    order = ticket.order
    if order.state == OrderState.ISSUED:
        try:
            await move_order(
                order, OrderState.CHECKED_IN, allowed=(OrderState.ISSUED,), actor=staff,
                at=now, using=conn,
            )
        except TransitionRefused:
            pass  # a companion's ticket moved the order first
    return "ok"


async def _judge(ticket: Ticket | None, cinema_id: int, now: datetime) -> str:
    if ticket is None:
        return "unknown"
    show = ticket.showtime
    if show.cinema_id != cinema_id:  # type: ignore[attr-defined]
        return "foreign"
    if ticket.state in (TicketState.REFUNDED, TicketState.CHANGED):
        return "refunded"
    if ticket.state == TicketState.CHECKED_IN:
        return "used"
    if show.starts_at.astimezone(SHANGHAI).date() != now.astimezone(SHANGHAI).date() and now < show.starts_at:
        return "wrong_day"
    if now > show.ends_at:
        return "ended"
    if now < show.starts_at - DOORS_OPEN:
        return "too_early"
    return "ok"


async def _describe(code: str, ticket: Ticket | None, now: datetime, replay: bool = False) -> CheckInResult:
    if ticket is not None and not isinstance(getattr(ticket, "showtime", None), Showtime):
        await ticket.fetch_related("showtime__hall", "showtime__film", "order")
    where = ""
    if ticket is not None:
        show = ticket.showtime
        where = (
            f"《{show.film.title}》{show.starts_at.astimezone(SHANGHAI):%m-%d %H:%M} "
            f"{show.hall.name} {_seat_name(ticket.seat)}"
        )
    messages = {
        "ok": f"✅ 检票成功：{where}",
        "unknown": "❌ 无效票码：系统中没有这张票，可能是伪造或输错。",
        "foreign": "❌ 不是本影城的票。",
        "refunded": f"❌ 这张票已退票或改签，不能入场。{where}",
        "used": "⚠️ 这张票已检过票"
        + (f"（{ticket.checked_in_at.astimezone(SHANGHAI):%H:%M}）" if ticket and ticket.checked_in_at else "")
        + f"：{where}",
        "wrong_day": f"❌ 不是今天的场次：{where}",
        "too_early": f"⏳ 还没到入场时间（开场前{int(DOORS_OPEN.total_seconds() // 60)}分钟可入场）：{where}",
        "ended": f"❌ 该场次已结束：{where}",
    }
    return CheckInResult(code == "ok", code, messages.get(code, code), ticket)


async def my_tickets(openid: str, now: datetime, limit: int = 10) -> list[Order]:
    """The buyer's orders whose shows have not ended, soonest first, tickets attached."""
    orders = (
        await Order.filter(
            openid=openid, state__in=list(SOLD_STATES), showtime__ends_at__gt=now.astimezone(UTC)
        )
        .order_by("showtime__starts_at")
        .limit(limit)
        .prefetch_related("showtime__film", "showtime__hall", "tickets")
    )
    return list(orders)


async def open_order(openid: str, showtime_id: int | None = None) -> Order | None:
    """The buyer's latest held or unpaid order (optionally for one show)."""
    query = Order.filter(openid=openid, state__in=list(OPEN_STATES))
    if showtime_id is not None:
        query = query.filter(showtime_id=showtime_id)
    return await query.order_by("-id").first()
