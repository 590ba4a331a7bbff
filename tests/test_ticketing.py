"""Selling seats, told as the buyers and the cinema live it, in the domain layer.

Everything here is real except the bank: the SQL database (SQLite, or PostgreSQL
in CI), Redis behind ``bot.seats.inventory.SeatInventory``, and the clock is the one
the tests move. The bank (``Bank``) keeps a ledger of what each order number
paid and refuses refunds a real WeChat Pay would refuse (unknown order number,
a wrong total, more back than was paid); it can also be told to be down. The
``notify`` callback (``Messages``) records every call and writes an outbox row
in the caller's transaction, as the product's ``TicketMessages`` does, so a
message counts only when the change that caused it committed.

Every story judges the outcome from the database and Redis, never from timing.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis.asyncio as aioredis

import domain
from bot.seats.inventory import SeatInventory, Sold
from bot.infra.storage import open_database
from domain import demo, outbox, refunds, ticketing
from domain.audit import AuditLog
from domain.catalog import Film, Showtime
from domain.cinemas import Cinema, Hall
from domain.orders import (
    Order,
    OrderState,
    Payment,
    Refund,
    RefundState,
    Ticket,
    TicketState,
    TransitionRefused,
    move_order,
)
from domain.promotions import Discount
from domain.ticketing import (
    Buyer,
    PaymentNotice,
    PaymentOutcome,
    PaymentRefused,
    TicketingError,
)
from tests.support import FakeClock

SHANGHAI = ZoneInfo("Asia/Shanghai")
_names = itertools.count(1)


# --- what lies outside: the bank and the messages -------------------------------------------


class BankRefused(Exception):
    """What the real refund API answers with a 4xx: the request itself is wrong."""


@dataclass(frozen=True)
class RefundCall:
    out_trade_no: str
    out_refund_no: str
    refund_fen: int
    total_fen: int
    reason: str


class Bank:
    """A WeChat Pay stand-in with a ledger: refunds go back through the order number that
    paid, quote that payment's total, and never exceed it. ``down``: the API is unreachable."""

    def __init__(self) -> None:
        self.paid: dict[str, list[int]] = defaultdict(list)
        self.refunded: Counter[str] = Counter()
        self.calls: list[RefundCall] = []
        self.refused: list[str] = []
        self.done: set[str] = set()
        self.down = False

    def take(self, out_trade_no: str, fen: int) -> None:
        self.paid[out_trade_no].append(fen)

    async def refund(
        self, out_trade_no: str, out_refund_no: str, refund_fen: int, total_fen: int, reason: str
    ) -> dict[str, Any]:
        self.calls.append(RefundCall(out_trade_no, out_refund_no, refund_fen, total_fen, reason))
        if self.down:
            raise ConnectionError("payment API unreachable")
        answer = {"status": "SUCCESS", "out_refund_no": out_refund_no, "out_trade_no": out_trade_no}
        if out_refund_no in self.done:
            return answer  # a retried request for a refund already made
        paid = self.paid.get(out_trade_no)
        problem = None
        if not paid:
            problem = f"{out_trade_no}: nothing was paid under this number"
        elif total_fen not in (*paid, sum(paid)):
            problem = f"{out_trade_no}: total {total_fen} is not what was paid {paid}"
        elif self.refunded[out_trade_no] + refund_fen > sum(paid):
            problem = f"{out_trade_no}: refunds exceed the payment"
        if problem:
            self.refused.append(problem)
            raise BankRefused(problem)
        self.refunded[out_trade_no] += refund_fen
        self.done.add(out_refund_no)
        return answer

    def calls_for(self, out_trade_no: str) -> list[RefundCall]:
        return [c for c in self.calls if c.out_trade_no == out_trade_no]


@dataclass
class Sent:
    event: str
    order_no: str
    openid: str
    info: dict[str, Any]


class Messages:
    """The ``notify`` callback: records each call and writes an outbox row in the caller's
    transaction (a unique key per call, so a second call is a second row, never merged)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.sent: list[Sent] = []

    async def __call__(self, event: str, order: Order, *, using: Any, **info: Any) -> None:
        self.sent.append(Sent(event, order.no, order.openid, info))
        await outbox.enqueue(
            channel="wechat", recipient=order.openid,
            payload={"event": event, "order": order.no},
            idempotency_key=f"test:{uuid.uuid4().hex}", now=self.clock.now(), using=using,
        )

    def events(self, order: Order | None = None) -> list[str]:
        return [s.event for s in self.sent if order is None or s.order_no == order.no]


async def outbox_events(order: Order) -> list[str]:
    """The messages about ``order`` that were committed (what the sender will send)."""
    rows = await outbox.OutboundMessage.all()
    return [r.payload["event"] for r in rows if r.payload.get("order") == order.no]


# --- the world ------------------------------------------------------------------------------


@dataclass
class World:
    clock: FakeClock
    redis: aioredis.Redis
    inventory: SeatInventory
    bank: Bank
    messages: Messages
    cinema: Cinema
    films: dict[str, Film]
    txids: Any = field(default_factory=lambda: itertools.count(4200000000))

    @property
    def now(self) -> datetime:
        return self.clock.now()

    def local(self, hh: int, mm: int = 0, *, days: int = 0) -> datetime:
        """A wall-clock time in Shanghai, ``days`` after the clock's current day, in UTC."""
        day = self.now.astimezone(SHANGHAI).date() + timedelta(days=days)
        return datetime.combine(day, time(hh, mm), SHANGHAI).astimezone(UTC)

    async def hall(self, layout: Sequence[str]) -> Hall:
        return await Hall.create(cinema=self.cinema, name=f"T{next(_names)}厅", layout=list(layout))

    async def show(
        self, layout: Sequence[str] | Hall = ("SSSSSS", "SSSSSS", "SSSSSS"), *,
        starts: datetime | None = None, price: int = 4500, film: str = "八佰",
    ) -> Showtime:
        hall = layout if isinstance(layout, Hall) else await self.hall(layout)
        starts = starts or self.local(19)
        return await Showtime.create(
            cinema=self.cinema, hall=hall, film=self.films[film], starts_at=starts,
            ends_at=starts + timedelta(minutes=150), format="2D", base_price_fen=price,
        )

    async def hold(
        self, show: Showtime, openid: str, *, count: int | None = None,
        seats: Sequence[str] | None = None, row: int | None = None, tier: str = "regular",
    ) -> Order:
        return await ticketing.hold_seats(
            self.inventory, show, Buyer(openid, tier=tier), self.now, count=count, seats=seats, row=row
        )

    def notice(self, order: Order, *, tx: str | None = None, amount: int | None = None) -> PaymentNotice:
        """The bank takes the money and will tell us so (deliver the notice to hear it)."""
        amount = order.amount_fen if amount is None else amount
        tx = tx or str(next(self.txids))
        self.bank.take(order.no, amount)
        return PaymentNotice(order.no, tx, amount, order.openid)

    async def deliver(self, notice: PaymentNotice) -> PaymentOutcome:
        return await ticketing.record_payment(
            self.inventory, self.bank, notice, self.now, self.messages
        )

    async def pay(self, order: Order, **kw: Any) -> PaymentOutcome:
        return await self.deliver(self.notice(order, **kw))

    async def buy(self, show: Showtime, openid: str, **kw: Any) -> Order:
        """Hold, confirm and pay at once: the tickets are issued."""
        order = await self.hold(show, openid, **kw)
        await ticketing.checkout(order, now=self.now)
        outcome = await self.pay(order)
        assert outcome.outcome == "issued", outcome
        return outcome.order

    async def refund(self, order: Order, **kw: Any) -> Refund:
        return await ticketing.refund_order(
            self.inventory, self.bank, order, by=order.openid, now=self.now,
            notify=self.messages, **kw,
        )

    async def change(self, order: Order, target: Showtime, **kw: Any) -> ticketing.ChangeOutcome:
        return await ticketing.change_order(
            self.inventory, self.bank, order, target, Buyer(order.openid), now=self.now,
            notify=self.messages, **kw,
        )

    async def states(self, show: Showtime) -> dict[str, str]:
        _, states, _ = await ticketing.house(self.inventory, show, self.now)
        return states


async def _load_sold(showtime_id: int) -> Sold:
    seats, per_owner = await ticketing.sold_seats(showtime_id)
    return Sold(seats, per_owner)


@pytest.fixture
async def seats_redis(redis_url: str, redis: aioredis.Redis) -> AsyncIterator[aioredis.Redis]:
    """The inventory's own client (``redis`` has just emptied the server). A blocking pool:
    with 200 buyers at once a default pool (100 connections, no waiting) raises
    MaxConnectionsError instead of queueing."""
    pool = aioredis.BlockingConnectionPool.from_url(redis_url, max_connections=64, timeout=30)
    client = aioredis.Redis(connection_pool=pool)
    try:
        yield client
    finally:
        await client.aclose()
        await pool.disconnect()


@pytest.fixture
async def world(
    database_url: str, seats_redis: aioredis.Redis, clock: FakeClock
) -> AsyncIterator[World]:
    async with open_database(database_url, domain.MODEL_MODULES, domain.MIGRATIONS):
        await demo.seed(clock.now())
        w = World(
            clock=clock,
            redis=seats_redis,
            inventory=SeatInventory(seats_redis, _load_sold),
            bank=Bank(),
            messages=Messages(clock),
            cinema=await Cinema.get(code=demo.DEMO_CINEMA_CODE),
            films={f.title: f for f in await Film.all()},
        )
        yield w
        # Whatever the story, the bank never saw a refund it would have refused.
        assert w.bank.refused == []


async def active_seats(show: Showtime) -> list[str]:
    return list(await Ticket.filter(showtime_id=show.id, active=True).values_list("seat", flat=True))


async def assert_no_seat_sold_twice(show: Showtime) -> list[str]:
    seats = await active_seats(show)
    twice = {s: n for s, n in Counter(seats).items() if n > 1}
    assert twice == {}, f"seats with more than one active ticket: {twice}"
    return seats


async def refused(coro: Any) -> TicketingError:
    with pytest.raises(TicketingError) as info:
        await coro
    return info.value


def adjacent(seats: Sequence[str]) -> bool:
    rows = {s.split("-")[0] for s in seats}
    cols = sorted(int(s.split("-")[1]) for s in seats)
    return len(rows) == 1 and cols == list(range(cols[0], cols[0] + len(cols)))


# --- holding seats ----------------------------------------------------------------------------


async def test_two_hundred_buyers_click_the_same_two_seats_and_one_gets_them(world: World) -> None:
    show = await world.show(("SSS_SSSSSS_SSS",) * 6)
    wanted = ["4-6", "4-7"]

    results = await asyncio.gather(
        *(world.hold(show, f"fan-{i:03d}", seats=wanted) for i in range(200)),
        return_exceptions=True,
    )

    winners = [r for r in results if isinstance(r, Order)]
    losers = [r for r in results if not isinstance(r, Order)]
    assert len(winners) == 1
    assert all(isinstance(r, TicketingError) for r in losers), {type(r) for r in losers}
    assert {r.code for r in losers} <= {"taken", "bad_choice"}
    assert await Order.filter(showtime_id=show.id).count() == 1
    states = await world.states(show)
    assert {s: states[s] for s in wanted} == {"4-6": "held", "4-7": "held"}

    order = winners[0]
    await ticketing.checkout(order, now=world.now)
    outcome = await world.pay(order)
    assert outcome.outcome == "issued"
    assert sorted(t.seat for t in outcome.tickets) == wanted
    assert sorted(await assert_no_seat_sold_twice(show)) == wanted
    assert await Ticket.filter(order_id=order.id).count() == 2
    assert (await Order.get(id=order.id)).state == OrderState.ISSUED


FULL_HOUSE = ("WSSSSSSW", "SSSS_SSSS", "SSXSS_SSSSS", "VVVV_VVVV", "CCCC_CCCC")


async def test_a_full_house_sells_every_sellable_seat_once_and_then_says_no_seats(world: World) -> None:
    show = await world.show(FULL_HOUSE)
    plan = ticketing.seat_plan(await Hall.get(id=show.hall_id))  # type: ignore[attr-defined]
    sellable = {label for label, seat in plan.seats.items() if seat.kind != "blocked"}
    assert len(sellable) == plan.capacity == 41
    buyers = itertools.count(1)

    async def fill(worker: int) -> None:
        rng = random.Random(worker)
        for _ in range(200):
            openid = f"fan-{next(buyers):03d}"
            count = rng.choice((1, 2, 2, 3, 4))
            try:
                order = await world.hold(show, openid, count=count)
            except TicketingError as exc:
                if exc.code == "busy":
                    continue
                assert exc.code == "no_seats", exc
                # No run of `count` left: pick what is still free by hand (wheelchair
                # places and couple pairs are never handed out by "N张").
                order = await pick_by_hand(openid)
                if order is None:
                    return
            await ticketing.checkout(order, now=world.now)
            assert (await world.pay(order)).outcome == "issued"
        raise AssertionError("the house never filled")

    async def pick_by_hand(openid: str) -> Order | None:
        for _ in range(100):
            states = await world.states(show)
            free = [s for s in plan.seats if s in sellable and s not in states]
            if not free:
                return None
            for label in free:
                unit = sorted({label, plan.partner(label) or label})
                try:
                    return await world.hold(show, openid, seats=unit)
                except TicketingError as exc:
                    assert exc.code in ("taken", "bad_choice"), exc
            await asyncio.sleep(0)  # others are paying for what they hold
        raise AssertionError("no free seat could be picked")

    await asyncio.gather(*(fill(w) for w in range(6)))

    seats = await assert_no_seat_sold_twice(show)
    assert len(seats) == plan.capacity
    assert set(seats) == sellable
    assert set((await ticketing.sold_seats(show.id))[0]) == sellable  # what Redis reloads
    states = await world.states(show)
    assert {s for s, st in states.items() if st == "sold"} == sellable
    assert await Order.filter(showtime_id=show.id).exclude(state=OrderState.ISSUED).count() == 0

    late = await refused(world.hold(show, "late-fan", count=1))
    assert late.code == "no_seats"
    assert "没有" in late.message
    assert (await refused(world.hold(show, "late-fan", seats=["1-1"]))).code == "bad_choice"


async def test_a_buyer_may_have_six_seats_a_show_and_ten_an_order(world: World) -> None:
    show = await world.show(("SSSSSSSSSS",) * 4)
    first = await world.hold(show, "greedy", count=4)

    over = await refused(world.hold(show, "greedy", count=3))
    assert over.code == "showtime_cap"
    assert "每人每场最多6张" in over.message and "4张" in over.message

    await ticketing.checkout(first, now=world.now)
    await world.pay(first)
    assert (await refused(world.hold(show, "greedy", count=3))).code == "showtime_cap"
    await world.buy(show, "greedy", count=2)  # exactly six
    again = await refused(world.hold(show, "greedy", count=1))
    assert again.code == "showtime_cap" and "6张" in again.message

    # Redis forgets; the per-buyer count comes back from the tickets in the database.
    await world.inventory.forget(show.id)
    assert (await refused(world.hold(show, "greedy", count=1))).code == "showtime_cap"

    big = await refused(world.hold(show, "group", count=11))
    assert big.code == "order_cap"
    assert big.message == "一笔订单最多10张，请分开购买。"
    assert (await refused(world.hold(show, "group", count=7))).code == "showtime_cap"
    assert await Order.filter(openid="group").count() == 0
    assert await Ticket.filter(showtime_id=show.id, active=True).count() == 6


# --- choosing seats ---------------------------------------------------------------------------


async def test_two_tickets_on_an_empty_hall_are_side_by_side_in_the_rear_middle(world: World) -> None:
    hall = await Hall.get(cinema=world.cinema, name="1号厅")  # 12 rows, 4 | 10 | 4 seats
    show = await Showtime.filter(hall=hall, starts_at__gt=world.now).order_by("starts_at").first()
    assert show is not None

    best = await world.hold(show, "couple-a", count=2)
    rows = {int(s.split("-")[0]) for s in best.seats}
    cols = sorted(int(s.split("-")[1]) for s in best.seats)
    assert adjacent(best.seats)
    (row,) = rows
    assert 12 // 2 < row < 12  # behind the middle, not the couple row at the back
    assert cols == [9, 10]  # the middle of the middle block

    in_seven = await world.hold(show, "couple-b", count=2, row=7)
    assert adjacent(in_seven.seats)
    assert {s.split("-")[0] for s in in_seven.seats} == {"7"}
    assert sorted(int(s.split("-")[1]) for s in in_seven.seats) == [9, 10]


async def test_a_pick_that_strands_a_single_seat_is_refused_when_a_better_one_exists(world: World) -> None:
    show = await world.show(("SSSS_SSSSSSSSSS_SSSS",) * 6)

    stranding = await refused(world.hold(show, "picky", seats=["5-6", "5-7"]))  # 5-5 left alone
    assert stranding.code == "bad_choice"
    assert "单独的空座" in stranding.message and "5排5座" in stranding.message
    assert await world.states(show) == {}
    assert await Order.filter(showtime_id=show.id).count() == 0
    assert (await world.hold(show, "picky", seats=["5-5", "5-6"])).seats == ["5-5", "5-6"]

    # Flexible rule: in a block of three between aisles every pair strands one seat,
    # so the pick stands.
    small = await world.show(("S_SSS_S",))
    assert (await world.hold(small, "picky", seats=["1-2", "1-3"])).state == OrderState.HELD


# --- holds running out ------------------------------------------------------------------------


async def test_an_expired_hold_frees_the_seats_and_the_order_expires_with_an_audit_trail(
    world: World,
) -> None:
    show = await world.show()
    slow = await world.hold(show, "slow", seats=["2-3", "2-4"])
    await ticketing.checkout(slow, now=world.now)
    assert (await refused(world.hold(show, "quick", seats=["2-3", "2-4"]))).code in ("taken", "bad_choice")

    world.clock.advance(minutes=world.cinema.hold_minutes, seconds=1)
    quick = await world.hold(show, "quick", seats=["2-3", "2-4"])
    assert (await refused(ticketing.checkout(await Order.get(id=slow.id), now=world.now))).code in (
        "expired", "not_held"
    )

    assert await ticketing.expire_orders(world.inventory, world.now) == 1
    slow = await Order.get(id=slow.id)
    assert slow.state == OrderState.EXPIRED and slow.closed_at is not None
    trail = await AuditLog.filter(entity="order", entity_id=slow.no).order_by("id")
    assert [(a.from_state, a.to_state) for a in trail] == [
        (None, "held"), ("held", "pending_payment"), ("pending_payment", "expired")
    ]
    # Letting the old hold go does not touch the new buyer's hold of the same seats.
    _, states, mine = await ticketing.house(world.inventory, show, world.now, "quick")
    assert mine == {"2-3", "2-4"}
    assert (await Order.get(id=quick.id)).state == OrderState.HELD
    assert await ticketing.expire_orders(world.inventory, world.now) == 0


async def test_a_late_payment_whose_seat_was_resold_is_reseated_elsewhere(world: World) -> None:
    show = await world.show(("SSSSSS", "SSSSSS"))
    late = await world.hold(show, "late", seats=["2-3", "2-4"])
    await ticketing.checkout(late, now=world.now)
    notice = world.notice(late)  # paid at the bank, but the notice is delayed
    world.clock.advance(minutes=11)
    await ticketing.expire_orders(world.inventory, world.now)
    rival = await world.buy(show, "rival", seats=["2-4"])

    outcome = await world.deliver(notice)

    assert outcome.outcome == "reseated"
    seats = sorted(t.seat for t in outcome.tickets)
    assert len(seats) == 2 and adjacent(seats) and "2-4" not in seats
    order = await Order.get(id=late.id)
    assert order.state == OrderState.ISSUED and sorted(order.seats) == seats
    assert order.paid_fen == late.amount_fen
    assert sorted(await Ticket.filter(order_id=late.id, active=True).values_list("seat", flat=True)) == seats
    assert await Ticket.filter(order_id=rival.id, active=True).values_list("seat", flat=True) == ["2-4"]
    sold = await assert_no_seat_sold_twice(show)
    assert sorted(sold) == sorted([*seats, "2-4"])
    states = await world.states(show)
    assert {s for s, st in states.items() if st == "sold"} == set(sold)
    assert world.messages.events(late) == ["reseated"]
    assert await outbox_events(late) == ["reseated"]
    assert world.bank.calls == []


async def test_a_late_payment_with_no_equivalent_seats_is_refunded(world: World) -> None:
    show = await world.show(("SSS",))
    late = await world.hold(show, "late", seats=["1-1", "1-2"])
    await ticketing.checkout(late, now=world.now)
    notice = world.notice(late)
    world.clock.advance(minutes=11)  # the hold lapses; expire_orders has not run yet
    rival = await world.buy(show, "rival", seats=["1-2"])

    outcome = await world.deliver(notice)

    assert outcome.outcome == "refunded"
    order = await Order.get(id=late.id)
    assert order.state == OrderState.REFUNDED
    assert order.paid_fen == order.refunded_fen == late.amount_fen
    assert await Ticket.filter(order_id=late.id).count() == 0
    assert await assert_no_seat_sold_twice(show) == ["1-2"]
    assert rival.state == OrderState.ISSUED
    (call,) = world.bank.calls
    assert (call.out_trade_no, call.refund_fen, call.total_fen) == (late.no, late.amount_fen, late.amount_fen)
    (refund,) = await Refund.filter(order_id=late.id)
    assert refund.state == RefundState.SUCCEEDED and refund.reason == "seats_gone"
    assert (await Payment.get(transaction_id=notice.transaction_id)).outcome == "refunded"
    assert world.messages.events(late) == ["payment_refunded"]
    # 1-1 and 1-3 are free again (Redis agrees with the database).
    assert await world.states(show) == {"1-2": "sold"}


async def test_a_late_payment_with_its_seats_still_free_is_issued_on_those_seats(world: World) -> None:
    show = await world.show()
    late = await world.hold(show, "late", seats=["3-3", "3-4"])
    await ticketing.checkout(late, now=world.now)
    notice = world.notice(late)
    world.clock.advance(minutes=30)
    assert await ticketing.expire_orders(world.inventory, world.now) == 1

    outcome = await world.deliver(notice)

    assert outcome.outcome == "issued"
    assert sorted(t.seat for t in outcome.tickets) == ["3-3", "3-4"]
    order = await Order.get(id=late.id)
    assert order.state == OrderState.ISSUED and order.closed_at is None
    assert sorted(await assert_no_seat_sold_twice(show)) == ["3-3", "3-4"]
    assert (await world.states(show)) == {"3-3": "sold", "3-4": "sold"}


async def test_the_database_refuses_a_seat_redis_forgot_was_sold(world: World) -> None:
    show = await world.show(("SSSS",))
    first = await world.buy(show, "first", seats=["1-1"])
    # Redis loses the sale (a failover that dropped the last writes).
    await world.redis.srem(f"cb:sold:{{{show.id}}}", "1-1")
    assert "1-1" not in await world.states(show)
    second = await world.hold(show, "second", seats=["1-1"])
    await ticketing.checkout(second, now=world.now)

    outcome = await world.pay(second)

    assert outcome.outcome == "refunded"
    assert await assert_no_seat_sold_twice(show) == ["1-1"]
    assert await Ticket.filter(order_id=first.id, active=True).count() == 1
    second = await Order.get(id=second.id)
    assert second.state == OrderState.REFUNDED and second.refunded_fen == second.amount_fen
    assert [c.out_trade_no for c in world.bank.calls] == [second.no]
    assert await outbox_events(second) == ["payment_refunded"]
    assert (await world.states(show)).get("1-1") == "sold"  # Redis reloaded from the database


# --- payment notices --------------------------------------------------------------------------


async def test_a_replayed_notice_issues_once(world: World) -> None:
    show = await world.show()
    order = await world.hold(show, "fan", count=2)
    await ticketing.checkout(order, now=world.now)
    notice = world.notice(order)

    first = await world.deliver(notice)
    second = await world.deliver(notice)

    assert first.outcome == "issued" and second.outcome == "duplicate"
    assert second.order.state == OrderState.ISSUED
    assert await Ticket.filter(order_id=order.id).count() == 2
    assert await Payment.filter(order_id=order.id).count() == 1
    assert world.messages.events(order) == ["issued"]
    assert await outbox_events(order) == ["issued"]
    assert world.bank.calls == []


async def test_the_same_notice_arriving_many_times_at_once_issues_once(world: World) -> None:
    show = await world.show()
    order = await world.hold(show, "fan", count=2)
    await ticketing.checkout(order, now=world.now)
    notice = world.notice(order)

    outcomes = await asyncio.gather(*(world.deliver(notice) for _ in range(8)))

    names = Counter(o.outcome for o in outcomes)
    assert names["issued"] == 1
    assert set(names) <= {"issued", "duplicate", "processing"}
    assert await Ticket.filter(order_id=order.id).count() == 2
    assert len(await assert_no_seat_sold_twice(show)) == 2
    assert world.messages.events(order) == ["issued"]
    assert await outbox_events(order) == ["issued"]
    assert (await Payment.get(transaction_id=notice.transaction_id)).outcome == "issued"


async def test_a_second_payment_for_an_issued_order_is_refunded_whole(world: World) -> None:
    show = await world.show()
    order = await world.buy(show, "fan", count=2)
    tickets_before = sorted(await Ticket.filter(order_id=order.id).values_list("secret", flat=True))

    outcome = await world.pay(order, tx="4299999999")

    assert outcome.outcome == "refunded"
    fresh = await Order.get(id=order.id)
    assert fresh.state == OrderState.ISSUED and fresh.refunded_fen == 0
    assert sorted(await Ticket.filter(order_id=order.id, active=True).values_list("secret", flat=True)) == tickets_before
    (refund,) = await Refund.filter(order_id=order.id)
    assert (refund.reason, refund.amount_fen, refund.state) == (
        "duplicate_payment", order.amount_fen, RefundState.SUCCEEDED
    )
    (call,) = world.bank.calls
    assert (call.out_trade_no, call.refund_fen) == (order.no, order.amount_fen)
    assert await outbox_events(order) == ["issued", "payment_refunded"]


async def test_two_different_payments_for_one_order_at_once_sell_its_seats_once(world: World) -> None:
    """Two payment windows paid together: one issues, the other is refunded, and no seat
    stays sold in Redis without a ticket."""
    show = await world.show()
    order = await world.hold(show, "fan", seats=["2-3", "2-4"])
    await ticketing.checkout(order, now=world.now)
    one, two = world.notice(order), world.notice(order)

    outcomes = await asyncio.gather(world.deliver(one), world.deliver(two))

    assert sorted(o.outcome for o in outcomes) == ["issued", "refunded"]
    seats = await assert_no_seat_sold_twice(show)
    assert sorted(seats) == ["2-3", "2-4"]
    states = await world.states(show)
    assert {s for s, st in states.items() if st == "sold"} == {"2-3", "2-4"}
    assert (await Order.get(id=order.id)).state == OrderState.ISSUED
    assert sum(c.refund_fen for c in world.bank.calls) == order.amount_fen


async def test_a_wrong_amount_or_an_unknown_order_changes_nothing(world: World) -> None:
    show = await world.show()
    order = await world.hold(show, "fan", count=2)
    await ticketing.checkout(order, now=world.now)

    with pytest.raises(PaymentRefused) as wrong:
        await world.pay(order, amount=order.amount_fen - 1)
    assert wrong.value.reason == "amount_mismatch"
    with pytest.raises(PaymentRefused) as unknown:
        await world.deliver(PaymentNotice("CB20261121DEADBEEF0000", "4211111111", 100, "fan"))
    assert unknown.value.reason == "unknown_order"

    fresh = await Order.get(id=order.id)
    assert fresh.state == OrderState.PENDING_PAYMENT and fresh.paid_fen == 0
    assert await Payment.all().count() == 0
    assert await Ticket.all().count() == 0
    assert await Refund.all().count() == 0
    assert world.messages.sent == [] and world.bank.calls == []
    assert set((await world.states(show)).values()) == {"held"}


# --- refunds ----------------------------------------------------------------------------------


async def test_a_refund_before_the_cutoff_gives_the_money_and_the_seats_back(world: World) -> None:
    show = await world.show()
    order = await world.buy(show, "fan", seats=["2-3", "2-4"])

    refund = await world.refund(order)

    fresh = await Order.get(id=order.id)
    assert fresh.state == OrderState.REFUNDED and fresh.refunded_fen == order.amount_fen
    assert await Ticket.filter(order_id=order.id, active=True).count() == 0
    assert set(await Ticket.filter(order_id=order.id).values_list("state", flat=True)) == {TicketState.REFUNDED}
    assert (refund.amount_fen, refund.reason) == (order.amount_fen, "buyer")
    assert (await Refund.get(id=refund.id)).state == RefundState.SUCCEEDED
    (call,) = world.bank.calls
    assert (call.out_trade_no, call.refund_fen, call.total_fen) == (order.no, order.amount_fen, order.amount_fen)
    assert world.messages.events(order) == ["issued", "refunded"]
    assert await world.states(show) == {}
    again = await world.buy(show, "next-fan", seats=["2-3", "2-4"])
    assert sorted(await assert_no_seat_sold_twice(show)) == sorted(again.seats)
    assert (await refused(world.refund(fresh))).code == "state"


async def test_no_refund_in_the_last_half_hour(world: World) -> None:
    show = await world.show()
    order = await world.buy(show, "fan", count=1)
    world.clock.set(show.starts_at - timedelta(minutes=world.cinema.refund_cutoff_minutes - 1))

    late = await refused(world.refund(order))

    assert late.code == "cutoff" and "30分钟" in late.message
    assert (await Order.get(id=order.id)).state == OrderState.ISSUED
    assert await Refund.all().count() == 0 and world.bank.calls == []


async def test_three_refunds_or_changes_a_month_then_no_more(world: World) -> None:
    show = await world.show(starts=world.local(19))
    later = await world.show(starts=world.local(19, days=1))
    next_month = await world.show(starts=datetime(2026, 12, 1, 19, tzinfo=SHANGHAI).astimezone(UTC))
    orders = [await world.buy(show, "regular", count=1) for _ in range(3)]
    december = await world.buy(next_month, "regular", count=1)

    await world.refund(orders[0])
    await world.refund(orders[1])
    assert (await world.change(orders[2], later)).done

    over = await refused(world.refund(december))
    assert over.code == "quota" and "3次" in over.message
    assert (await Order.get(id=december.id)).state == OrderState.ISSUED

    world.clock.set(datetime(2026, 12, 1, 10, tzinfo=SHANGHAI))  # a new month
    await world.refund(await Order.get(id=december.id))
    assert (await Order.get(id=december.id)).state == OrderState.REFUNDED


async def test_a_refund_the_bank_cannot_take_now_is_retried_later(world: World) -> None:
    show = await world.show()
    order = await world.buy(show, "fan", count=2)
    world.bank.down = True

    refund = await world.refund(order)

    pending = await Refund.get(id=refund.id)
    assert pending.state == RefundState.PENDING and pending.attempts == 1 and pending.last_error
    assert (await Order.get(id=order.id)).state == OrderState.REFUNDED  # the decision stands
    assert await world.states(show) == {}
    assert await refunds.chase_refunds(world.bank, world.now) == 0  # still down

    world.bank.down = False
    world.clock.advance(minutes=1)
    assert await refunds.chase_refunds(world.bank, world.now) == 1
    done = await Refund.get(id=refund.id)
    assert done.state == RefundState.SUCCEEDED and done.done_at == world.now
    assert world.bank.refunded[order.no] == order.amount_fen
    assert await refunds.chase_refunds(world.bank, world.now) == 0


# --- changes (改签) ---------------------------------------------------------------------------


async def test_a_change_to_a_cheaper_show_completes_at_once_and_refunds_the_difference(world: World) -> None:
    evening = await world.show(starts=world.local(19), price=5500)
    afternoon = await world.show(starts=world.local(16, days=1), price=4500)
    old = await world.buy(evening, "fan", seats=["2-3", "2-4"])

    outcome = await world.change(old, afternoon)

    assert outcome.done and outcome.due_fen == -2000
    old = await Order.get(id=old.id)
    new = await Order.get(id=outcome.order.id)
    assert old.state == OrderState.CHANGED
    assert new.state == OrderState.ISSUED and new.changed_from_id == old.id  # type: ignore[attr-defined]
    assert new.paid_fen == 9000
    assert await Ticket.filter(order_id=old.id, active=True).count() == 0
    assert await Ticket.filter(order_id=new.id, active=True).count() == 2
    (refund,) = await Refund.filter(order_id=old.id)
    assert (refund.amount_fen, refund.reason, refund.state) == (2000, "change_difference", RefundState.SUCCEEDED)
    assert [(c.out_trade_no, c.refund_fen, c.total_fen) for c in world.bank.calls] == [(old.no, 2000, 11000)]
    assert await world.states(evening) == {}  # the old seats are on sale again
    assert "changed" in world.messages.events(new)

    twice = await refused(world.change(new, evening))
    assert twice.code == "once"

    # Refunding the changed order sends the money back through the payment that made it.
    await world.refund(new)
    assert world.bank.refunded[old.no] == 11000
    assert (await Order.get(id=new.id)).state == OrderState.REFUNDED


async def test_a_change_to_a_dearer_show_waits_for_the_difference(world: World) -> None:
    evening = await world.show(starts=world.local(19), price=5500)
    late = await world.show(starts=world.local(22), price=6500)
    old = await world.buy(evening, "fan", seats=["2-3", "2-4"])

    outcome = await world.change(old, late)

    assert not outcome.done and outcome.due_fen == 2000
    new = await Order.get(id=outcome.order.id)
    assert new.state == OrderState.PENDING_PAYMENT and new.amount_fen == 2000
    assert (await Order.get(id=old.id)).state == OrderState.ISSUED  # nothing given up yet
    assert await Ticket.filter(order_id=old.id, active=True).count() == 2

    notice = world.notice(new)
    paid = await world.deliver(notice)

    assert paid.outcome == "changed"
    assert (await Order.get(id=old.id)).state == OrderState.CHANGED
    new = await Order.get(id=new.id)
    assert new.state == OrderState.ISSUED and new.paid_fen == 13000
    assert len(await Ticket.filter(order_id=new.id, active=True)) == 2
    assert await world.states(evening) == {}
    assert world.bank.calls == []
    assert (await world.deliver(notice)).outcome == "duplicate"

    # A later refund goes back through both payments, each within what it paid.
    await world.refund(new)
    assert world.bank.refunded == Counter({old.no: 11000, new.no: 2000})


async def test_changes_the_rules_refuse(world: World) -> None:
    evening = await world.show(starts=world.local(19), price=5500, film="八佰")
    other_film = await world.show(starts=world.local(20), film="热辣滚烫")
    same_film = await world.show(starts=world.local(21), film="八佰")
    order = await world.buy(evening, "fan", count=2)

    assert (await refused(world.change(order, other_film))).code == "film"
    assert (await refused(world.change(order, evening))).code == "film"
    world.clock.set(evening.starts_at - timedelta(minutes=world.cinema.change_cutoff_minutes - 1))
    assert (await refused(world.change(order, same_film))).code == "cutoff"
    assert (await Order.get(id=order.id)).state == OrderState.ISSUED
    assert await Order.filter(showtime_id=same_film.id).count() == 0


# --- the cinema cancels a show ----------------------------------------------------------------


async def test_a_cancelled_show_refunds_every_buyer_and_sells_nothing_more(world: World) -> None:
    show = await world.show()
    paid_a = await world.buy(show, "a", count=2)
    paid_b = await world.buy(show, "b", count=1)
    holding = await world.hold(show, "c", count=1)
    paying = await world.hold(show, "d", count=1)
    await ticketing.checkout(paying, now=world.now)
    in_flight = world.notice(paying)  # d has paid; WeChat Pay has not told us yet

    refunded = await ticketing.cancel_showtime(
        world.inventory, world.bank, show, by="manager01", now=world.now, notify=world.messages
    )

    assert refunded == 2
    for order in (paid_a, paid_b):
        fresh = await Order.get(id=order.id)
        assert fresh.state == OrderState.REFUNDED and fresh.refunded_fen == order.amount_fen
        assert world.messages.events(order) == ["issued", "refunded"]
        (told,) = [m for m in world.messages.sent if m.order_no == order.no and m.event == "refunded"]
        assert (told.openid, told.info["reason"]) == (order.openid, "showtime_cancelled")
        assert [c.refund_fen for c in world.bank.calls_for(order.no)] == [order.amount_fen]
    assert (await Order.get(id=holding.id)).state == OrderState.CANCELLED
    assert (await Order.get(id=paying.id)).state == OrderState.CANCELLED
    assert await active_seats(show) == []
    assert await ticketing.quota_used("a", world.now) == 0  # the cinema's cancellation, not theirs
    assert (await refused(world.hold(show, "e", count=1))).code == "cancelled"

    late = await world.deliver(in_flight)
    assert late.outcome == "refunded"
    assert await active_seats(show) == []
    assert [c.refund_fen for c in world.bank.calls_for(paying.no)] == [paying.amount_fen]


async def test_a_show_cancelled_after_doors_open_refunds_those_already_inside(world: World) -> None:
    show = await world.show(starts=world.local(11, 15))
    order = await world.buy(show, "early", count=2)
    ticket = await Ticket.filter(order_id=order.id).first()
    assert ticket is not None
    assert (await ticketing.check_in(ticket.secret, cinema_id=world.cinema.id, staff="staff01", now=world.now)).ok

    assert await ticketing.cancel_showtime(
        world.inventory, world.bank, show, by="manager01", now=world.now, notify=world.messages
    ) == 1
    assert (await Order.get(id=order.id)).state == OrderState.REFUNDED
    assert world.bank.refunded[order.no] == order.amount_fen


# --- at the door ------------------------------------------------------------------------------


async def test_check_in_admits_a_ticket_once(world: World) -> None:
    today = await world.show(starts=world.local(11, 15))
    tomorrow = await world.show(starts=world.local(11, 15, days=1))
    order = await world.buy(today, "fan", count=2)
    first, companion = await Ticket.filter(order_id=order.id).order_by("id")
    returned = await world.buy(today, "other", count=1)
    await world.refund(returned)
    (returned_ticket,) = await Ticket.filter(order_id=returned.id)
    (tomorrows,) = await Ticket.filter(order_id=(await world.buy(tomorrow, "keen", count=1)).id)
    elsewhere = await Cinema.create(code="other", name="别家影城")

    async def scan(secret: str, nonce: str | None = None, cinema: int | None = None) -> ticketing.CheckInResult:
        return await ticketing.check_in(
            secret, cinema_id=cinema or world.cinema.id, staff="staff01", now=world.now, nonce=nonce
        )

    ok = await scan(first.secret, nonce="scan-1")
    assert (ok.ok, ok.code) == (True, "ok")
    assert "检票成功" in ok.message and ok.ticket is not None and ok.ticket.id == first.id
    assert (await Ticket.get(id=first.id)).state == TicketState.CHECKED_IN
    assert (await Order.get(id=order.id)).state == OrderState.CHECKED_IN

    used = await scan(first.secret, nonce="scan-2")
    assert (used.ok, used.code) == (False, "used")
    resent = await scan(first.secret, nonce="scan-1")  # the scanner re-uploads its first scan
    assert (resent.ok, resent.code) == (True, "ok")
    assert await AuditLog.filter(entity="ticket", entity_id=str(first.id), action="check_in").count() == 1

    assert (await scan(companion.secret.upper() + " ")).code == "ok"
    assert (await scan("a" * 32)).code == "unknown"
    assert (await scan(first.secret[:-1] + ("b" if first.secret[-1] != "b" else "c"))).code == "unknown"
    assert (await scan(tomorrows.secret, cinema=elsewhere.id)).code == "foreign"
    assert (await scan(tomorrows.secret)).code == "wrong_day"
    assert (await Ticket.get(id=tomorrows.id)).state == TicketState.ISSUED
    gone = await scan(returned_ticket.secret)
    assert (gone.ok, gone.code) == (False, "refunded")


# --- the rules of every change ----------------------------------------------------------------


async def test_an_order_moves_only_from_the_states_a_move_allows(world: World) -> None:
    show = await world.show()
    order = await world.hold(show, "fan", count=1)
    trail = await AuditLog.filter(entity="order", entity_id=order.no).count()

    with pytest.raises(TransitionRefused):
        await move_order(
            order, OrderState.ISSUED, allowed=(OrderState.PAID,), actor="system", at=world.now
        )

    assert order.state == OrderState.HELD
    assert (await Order.get(id=order.id)).state == OrderState.HELD
    assert await AuditLog.filter(entity="order", entity_id=order.no).count() == trail
    await move_order(order, OrderState.CANCELLED, allowed=(OrderState.HELD,), actor="fan", at=world.now)
    stale = await Order.get(id=order.id)
    stale.state = OrderState.HELD  # someone else's copy, read before the cancel
    with pytest.raises(TransitionRefused):
        await move_order(stale, OrderState.PENDING_PAYMENT, allowed=(OrderState.HELD,), actor="x", at=world.now)
    assert (await Order.get(id=order.id)).state == OrderState.CANCELLED
    assert await AuditLog.filter(entity="order", entity_id=order.no).count() == trail + 1
    assert not await ticketing.release_order(world.inventory, stale, by="fan", now=world.now)


# --- prices -----------------------------------------------------------------------------------


async def test_a_vip_seat_a_gold_member_and_the_best_discount_make_the_price(world: World) -> None:
    show = await world.show(("VVSS",), price=4500, film="八佰")
    film, other = world.films["八佰"], world.films["热辣滚烫"]
    start, end = world.now - timedelta(days=1), world.now + timedelta(days=7)
    weekday = show.starts_at.astimezone(SHANGHAI).weekday()
    for name, off, kw in [
        ("八佰8折", 20, {"film_id": film.id}),
        ("全场9折", 10, {}),
        ("热辣半价", 50, {"film_id": other.id}),
        ("已结束7折", 30, {"ends_at": world.now - timedelta(hours=1)}),
        ("已停用6折", 40, {"active": False}),
        ("别的日子75折", 25, {"weekdays": [(weekday + 1) % 7]}),
    ]:
        await Discount.create(
            cinema_id=world.cinema.id, name=name, percent_off=off,
            **{"starts_at": start, "ends_at": end, **kw},
        )

    order = await world.hold(show, "gold-fan", seats=["1-2", "1-3"], tier="gold")

    # VIP: 45 × 1.5 × 0.9 × 0.8 = 48.60; standard: 45 × 0.9 × 0.8 = 32.40.
    assert order.amount_fen == 4860 + 3240
    assert order.quote["discount"] == "八佰8折" and order.quote["tier"] == "gold"
    assert {ln["seat"]: ln["fen"] for ln in order.quote["lines"]} == {"1-2": 4860, "1-3": 3240}
    await ticketing.checkout(order, now=world.now)
    await world.pay(order)
    prices = dict(await Ticket.filter(order_id=order.id).values_list("seat", "price_fen"))
    assert prices == {"1-2": 4860, "1-3": 3240}

    regular = await world.hold(show, "walk-in", seats=["1-1"])
    assert regular.amount_fen == 5400  # VIP 45 × 1.5, 20% off
