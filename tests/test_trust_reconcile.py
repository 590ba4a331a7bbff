"""Money moves once, even when the process taking it dies: told as buyers and managers live it.

A process that dies between taking a payment and issuing its tickets leaves the order paid
without tickets. WeChat Pay retries the notify only minutes to hours later; the sandbox
bank never does. The payment-repair job (``jobs.payments`` over ``domain.reconcile``)
finishes such a payment a couple of minutes later through the path the retried notify
takes: the tickets on the seats the buyer chose while they are still theirs, otherwise the
whole payment back, the buyer told why and the duty manager told too. A notify arriving at
the same moment, a second replica and a second run each leave it finished once.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from domain import demo, reconcile, ticketing
from domain.audit import AuditLog
from domain.catalog import Film, Showtime
from domain.cinemas import Cinema, Hall
from domain.orders import Order, OrderState, Payment, Refund, Ticket
from domain.outbox import OutboundMessage
from domain.ticketing import Buyer, PaymentNotice
from handlers.api.context import API
from handlers.refund_alerts import RefundAlerts
from handlers.ticket_messages import TicketMessages
from jobs import payments
from jobs.context import JobContext
from jobs.interval import run_once_per_tick
from jobs.locks import LeaderLocks
from tests.support import FakeClock
from tests.test_ticketing import (  # noqa: F401 (fixtures: the world of the ticketing stories)
    World,
    assert_no_seat_sold_twice,
    outbox_events,
    seats_redis,
    world,
)

PAST_GRACE = reconcile.GRACE + timedelta(seconds=30)  # the next tick after the grace


class Crash(Exception):
    """The process dies here (kill -9): nothing after this line runs."""


def crash_once(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """``ticketing.<name>`` raises the first time it is called, as the dying process."""
    real = getattr(ticketing, name)
    calls = 0

    async def dying(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise Crash
        return await real(*args, **kwargs)

    monkeypatch.setattr(ticketing, name, dying)


def job_context(world: World, redis: aioredis.Redis, notify: Any = None) -> JobContext:
    return JobContext(
        clock=world.clock,
        locks=LeaderLocks(redis),
        inventory=world.inventory,
        gateway=world.bank,  # type: ignore[arg-type]  # refunds only: no query needed here
        refund_alert=RefundAlerts(agent_id=1000002, clock=world.clock),
        buyer_notify=notify or world.messages,
    )


async def paid_without_tickets(world: World, monkeypatch: pytest.MonkeyPatch) -> tuple[
    Showtime, Order, PaymentNotice
]:
    """A buyer holds 2-3 and 2-4 and pays; the process dies before the tickets commit."""
    show = await world.show(("SSSSSS", "SSSSSS"))
    order = await world.hold(show, "oCineBotCrashBuyer0000000001", seats=["2-3", "2-4"])
    await ticketing.checkout(order, now=world.now)
    notice = world.notice(order)
    crash_once(monkeypatch, "_create_tickets")
    with pytest.raises(Crash):
        await world.deliver(notice)
    assert (await Order.get(id=order.id)).state == OrderState.PAID
    assert await Ticket.filter(order_id=order.id).count() == 0
    return show, order, notice


async def wechat_texts(openid: str) -> list[str]:
    rows = await OutboundMessage.filter(channel="wechat", recipient=openid).order_by("id")
    return [
        r.payload.get("text", {}).get("content")
        or r.payload.get("news", {}).get("articles", [{}])[0].get("title", "")
        for r in rows
    ]


async def manager_texts() -> list[tuple[str, str]]:
    rows = await OutboundMessage.filter(
        channel="wecom", idempotency_key__startswith="refund:"
    ).order_by("id")
    return [(r.recipient, r.payload["text"]["content"]) for r in rows]


async def repairs(order: Order) -> list[dict[str, Any]]:
    rows = await AuditLog.filter(
        entity="order", entity_id=order.no, action="payment_repaired"
    ).order_by("id")
    return [{"actor": r.actor, **r.detail} for r in rows]


# --- the story, end to end, through the pay page and the sandbox bank ---------------------------


async def test_a_buyer_whose_server_died_between_payment_and_tickets_gets_the_tickets_within_minutes(
    client: TestClient, clock: FakeClock, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = client.app[API]
    cinema = await Cinema.get(code=demo.DEMO_CINEMA_CODE)
    hall = await Hall.create(cinema=cinema, name="修复厅", layout=["SSSS", "SSSS"])
    starts = clock.now() + timedelta(hours=6)
    show = await Showtime.create(
        cinema=cinema, hall=hall, film=await Film.first(), starts_at=starts,
        ends_at=starts + timedelta(minutes=150), format="2D", base_price_fen=4500,
    )
    buyer = Buyer("oCineBotCrashBuyer0000000002")
    order = await ticketing.hold_seats(api.inventory, show, buyer, clock.now(), seats=["2-2", "2-3"])
    crash_once(monkeypatch, "_create_tickets")

    # The bank takes the money; the process handling its notify dies before the tickets.
    paid = await client.post(
        "/pay/" + api.payments.pay_url(order).split("/pay/", 1)[1], allow_redirects=False
    )
    assert paid.status == 502
    stranded = await Order.get(id=order.id)
    assert stranded.state == OrderState.PAID and stranded.paid_fen == order.amount_fen
    assert await Ticket.filter(order_id=order.id).count() == 0
    (payment,) = await Payment.filter(order_id=order.id)
    assert payment.outcome == "processing"
    ctx = JobContext(
        clock=clock, locks=LeaderLocks(redis), inventory=api.inventory, gateway=api.payments,
        refund_alert=api.refund_alerts, buyer_notify=api.notify,
    )

    # Within the grace the job leaves it alone: the process may only be slow.
    clock.advance(seconds=60)
    assert (await payments.finish_stranded_payments(ctx)).count() == 0  # type: ignore[union-attr]
    clock.advance(seconds=(PAST_GRACE - timedelta(seconds=60)).total_seconds())
    done = await payments.finish_stranded_payments(ctx)

    assert done is not None and done.outcomes == {"issued": [order.no]}
    fresh = await Order.get(id=order.id)
    assert fresh.state == OrderState.ISSUED
    seats = await Ticket.filter(order_id=order.id, active=True).values_list("seat", flat=True)
    assert sorted(seats) == ["2-2", "2-3"]
    assert (await Payment.get(id=payment.id)).outcome == "issued"
    (ticket_message,) = await wechat_texts(buyer.openid)
    assert "出票成功" in ticket_message
    assert await Refund.filter(order_id=order.id).count() == 0
    ((repair),) = await repairs(order)
    assert repair["actor"] == "reconcile" and repair["outcome"] == "issued"
    assert repair["transaction_id"] == payment.transaction_id
    # Done once: the next tick, and WeChat Pay's own retry much later, change nothing.
    clock.advance(seconds=30)
    assert (await payments.finish_stranded_payments(ctx)).count() == 0  # type: ignore[union-attr]
    assert await Ticket.filter(order_id=order.id).count() == 2
    _, states, _ = await ticketing.house(api.inventory, show, clock.now())
    assert states == {"2-2": "sold", "2-3": "sold"}


async def test_the_scheduler_runs_the_payment_repair_with_the_other_jobs(
    clock: FakeClock, redis: aioredis.Redis
) -> None:
    from jobs.scheduler import build_scheduler

    scheduler = build_scheduler(JobContext(clock=clock, locks=LeaderLocks(redis)), demo=False)
    job = scheduler.get_job(payments.JOB_ID)
    assert job is not None and job.args[0] is payments.finish_stranded_payments


# --- the same, told in the domain: the reverse crash, seats gone, a racing notify ---------------


async def test_a_payment_recorded_whose_order_never_became_paid_is_finished_the_same_way(
    world: World, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    show = await world.show(("SSSSSS",))
    order = await world.hold(show, "oCineBotCrashBuyer0000000003", seats=["1-2", "1-3"])
    await ticketing.checkout(order, now=world.now)
    notice = world.notice(order)
    crash_once(monkeypatch, "_take_order")  # dies after the payment's claim, before "paid"
    with pytest.raises(Crash):
        await world.deliver(notice)
    assert (await Order.get(id=order.id)).state == OrderState.PENDING_PAYMENT
    assert (await Payment.get(transaction_id=notice.transaction_id)).outcome == "processing"

    world.clock.advance(seconds=PAST_GRACE.total_seconds())
    done = await payments.finish_stranded_payments(job_context(world, redis))

    assert done is not None and done.outcomes == {"issued": [order.no]}
    fresh = await Order.get(id=order.id)
    assert fresh.state == OrderState.ISSUED and fresh.transaction_id == notice.transaction_id
    assert sorted(await assert_no_seat_sold_twice(show)) == ["1-2", "1-3"]
    assert await outbox_events(order) == ["issued"]
    assert world.bank.calls == []


async def test_a_buyer_whose_seats_were_taken_before_the_repair_gets_all_the_money_back_and_is_told(
    world: World, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    show, order, notice = await paid_without_tickets(world, monkeypatch)
    world.clock.advance(seconds=PAST_GRACE.total_seconds() - 20)
    # The dead process's sale is taken back; another buyer takes one of the seats.
    other = await world.hold(show, "oCineBotOtherBuyer0000000001", seats=["2-4", "2-5"])
    world.clock.advance(seconds=20)
    ctx = job_context(world, redis, notify=TicketMessages("https://cinema.example", world.clock))

    done = await payments.finish_stranded_payments(ctx)

    assert done is not None and done.outcomes == {"refunded": [order.no]}
    fresh = await Order.get(id=order.id)
    assert fresh.state == OrderState.REFUNDED and fresh.refunded_fen == order.amount_fen
    assert await Ticket.filter(order_id=order.id).count() == 0
    (refund,) = await Refund.filter(order_id=order.id)
    assert (refund.reason, refund.amount_fen) == ("unissued", order.amount_fen)
    assert [(c.out_trade_no, c.refund_fen) for c in world.bank.calls] == [
        (order.no, order.amount_fen)
    ]
    (told,) = await wechat_texts(order.openid)
    assert "出票中断" in told and "未能出票" in told and "退款" in told and "原路退回" in told
    ((manager, text),) = await manager_texts()
    assert manager == "manager01"
    assert "已付款未出票" in text and order.no in text and refund.no in text
    # The other buyer's hold is untouched, and the seat nobody took is free again.
    assert await world.states(show) == {"2-4": "held", "2-5": "held"}
    assert (await Order.get(id=other.id)).state == OrderState.HELD
    # Once: another run, and the notify retried later, neither refund nor issue again.
    world.clock.advance(seconds=30)
    assert (await payments.finish_stranded_payments(ctx)).count() == 0  # type: ignore[union-attr]
    assert (await world.deliver(notice)).outcome == "duplicate"
    assert len(world.bank.calls) == 1


@pytest.mark.parametrize("first", ["notify", "job"])
async def test_a_notify_retried_at_the_moment_the_job_runs_issues_the_tickets_once(
    world: World, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch, first: str
) -> None:
    show, order, notice = await paid_without_tickets(world, monkeypatch)
    world.clock.advance(seconds=PAST_GRACE.total_seconds())
    runs = {
        "notify": world.deliver(notice),
        "job": payments.finish_stranded_payments(job_context(world, redis)),
    }
    second = "job" if first == "notify" else "notify"

    results = dict(zip((first, second), await asyncio.gather(runs[first], runs[second])))

    by_job = results["job"].outcomes.get("issued", [])
    by_notify = results["notify"].outcome
    assert (by_job, by_notify) in (([order.no], "processing"), ([order.no], "duplicate"),
                                   ([], "issued"))
    assert (await Order.get(id=order.id)).state == OrderState.ISSUED
    assert sorted(await assert_no_seat_sold_twice(show)) == ["2-3", "2-4"]
    assert await Ticket.filter(order_id=order.id).count() == 2
    assert await outbox_events(order) == ["issued"]
    assert (await Payment.get(transaction_id=notice.transaction_id)).outcome == "issued"
    assert world.bank.calls == [] and await Refund.filter(order_id=order.id).count() == 0


async def test_two_replicas_firing_the_same_tick_repair_a_payment_once(
    world: World, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    show, order, _ = await paid_without_tickets(world, monkeypatch)
    world.clock.advance(seconds=PAST_GRACE.total_seconds())
    one, two = job_context(world, redis), job_context(world, redis)
    tick_at = 1_800_000_000.0

    results = await asyncio.gather(
        run_once_per_tick(payments.finish_stranded_payments, one, payments.JOB_ID, 30, tick_at),
        run_once_per_tick(payments.finish_stranded_payments, two, payments.JOB_ID, 30, tick_at),
    )

    ran = [r for r in results if r is not None]
    assert len(ran) == 1 and ran[0].outcomes == {"issued": [order.no]}
    assert sorted(await assert_no_seat_sold_twice(show)) == ["2-3", "2-4"]
    assert await outbox_events(order) == ["issued"]


async def test_the_repair_run_twice_at_once_without_the_scheduler_still_issues_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    show, order, _ = await paid_without_tickets(world, monkeypatch)
    world.clock.advance(seconds=PAST_GRACE.total_seconds())

    runs = await asyncio.gather(
        *(
            reconcile.finish_payments(world.inventory, world.bank, world.now, world.messages)
            for _ in range(3)
        )
    )

    assert sorted(r.count() for r in runs) == [0, 0, 1]
    assert sorted(await assert_no_seat_sold_twice(show)) == ["2-3", "2-4"]
    assert await outbox_events(order) == ["issued"]
    assert len(await repairs(order)) == 1


async def test_a_process_that_was_slow_not_dead_neither_issues_again_nor_refunds_when_it_wakes(
    world: World, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    show = await world.show(("SSSSSS",))
    order = await world.hold(show, "oCineBotSlowBuyer00000000001", seats=["1-1", "1-2"])
    await ticketing.checkout(order, now=world.now)
    notice = world.notice(order)
    real_sell, sold, wake = world.inventory.sell, asyncio.Event(), asyncio.Event()

    async def stalling_sell(*args: Any, **kwargs: Any) -> Any:
        answer = await real_sell(*args, **kwargs)
        if not sold.is_set():
            sold.set()
            await wake.wait()  # a stop-the-world pause longer than the grace
        return answer

    monkeypatch.setattr(world.inventory, "sell", stalling_sell)
    slow = asyncio.create_task(world.deliver(notice))
    await sold.wait()
    world.clock.advance(seconds=PAST_GRACE.total_seconds())
    done = await payments.finish_stranded_payments(job_context(world, redis))
    assert done is not None and done.outcomes == {"issued": [order.no]}

    wake.set()
    woken = await slow

    assert woken.outcome == "duplicate"
    assert (await Order.get(id=order.id)).state == OrderState.ISSUED
    assert sorted(await assert_no_seat_sold_twice(show)) == ["1-1", "1-2"]
    assert world.bank.calls == [] and await Refund.filter(order_id=order.id).count() == 0
    assert await outbox_events(order) == ["issued"]
    assert await world.states(show) == {"1-1": "sold", "1-2": "sold"}
