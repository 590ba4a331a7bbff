"""A message handled twice: once WeChat is answered, a message whose process died is run again
by another process with the same Inbound and the same dedup key (``bot.chat.dedup``). The first
run may have made all of its effects, or some. Whatever it did, the re-run does not do twice.

Each test feeds one Inbound twice through the app's real dispatcher, as the re-run after a
crash would. Where the crash would have come before the dialog's next state was written
(dialog writes are queued, not awaited), the test puts the sender's state back as it was."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from bot.app import DISPATCHER
from bot.chat.channels import Channel, Inbound
from bot.wechat.chatclient import next_msg_id
from bot.infra.clock import SHANGHAI
from bot.chat.dialog import DialogStore
from bot.chat.replies import Reply
from bot.chat.router import Dispatcher
from domain.audit import AuditLog
from domain.catalog import Showtime
from domain.feedback import Coupon
from domain.orders import CheckIn, Order, OrderState, Refund, Ticket, TicketState
from domain.outbox import OutboundMessage
from domain.workorders import Kind, State, WorkOrder, WorkOrderEvent
from handlers.handoff import HandoffQueue

AGENT = 1000002
AUDIENCE = "oCineBotRerunAudience0000001"
OTHER = "oCineBotRerunAudience0000002"
HOLDER = "eng01"


class Chat:
    """Messages as the channels would decode them, fed to the app's dispatcher."""

    def __init__(self, client: Any, clock: Any, redis: Any) -> None:
        self.app = client.server.app
        self.dispatcher: Dispatcher = self.app[DISPATCHER]
        self.clock, self.redis = clock, redis

    def audience(self, text: str, openid: str = AUDIENCE) -> Inbound:
        return Inbound(
            Channel.WECHAT, "text", openid, "gh_demo", int(self.clock.timestamp()),
            msg_id=next_msg_id(), text=text,
        )

    def staff(self, userid: str, text: str) -> Inbound:
        return Inbound(
            Channel.WECOM, "text", userid, "ww_corp", int(self.clock.timestamp()),
            msg_id=next_msg_id(), text=text, agent_id=AGENT,
        )

    def scan(self, userid: str, secret: str) -> Inbound:
        return Inbound(
            Channel.WECOM, "event", userid, "ww_corp", int(self.clock.timestamp()),
            event="scancode_waitmsg", event_key="scan", scan_result=secret, agent_id=AGENT,
        )

    async def feed(self, inbound: Inbound) -> str:
        reply = await self.dispatcher.feed(inbound)
        return reply.text if isinstance(reply, Reply) else ""

    async def say(self, text: str, openid: str = AUDIENCE) -> str:
        return await self.feed(self.audience(text, openid))

    async def staff_says(self, userid: str, text: str) -> str:
        return await self.feed(self.staff(userid, text))

    async def twice(self, inbound: Inbound, *, dialog_lost: bool = False) -> tuple[str, str]:
        """The first run, then the re-run. ``dialog_lost``: the first run's process died
        before its dialog write reached Redis, so the re-run finds the state as it was."""
        store = self.dispatcher.dialogs
        assert isinstance(store, DialogStore)
        key = store.key(str(inbound.channel), inbound.user_id)
        before = await self.redis.get(key)
        first = await self.feed(inbound)
        await store.load(str(inbound.channel), inbound.user_id)  # the queued writes are done
        if dialog_lost:
            if before is None:
                await self.redis.delete(key)
            else:
                await self.redis.set(key, before, ex=600)
        second = await self.feed(inbound)
        return first, second


def chat(client: Any, clock: Any, redis: Any) -> Chat:
    return Chat(client, clock, redis)


async def _two_orders(c: Chat) -> list[WorkOrder]:
    """Two seat faults, both routed to the engineer on duty at 10:30 (eng01)."""
    await c.say("3号厅5排6座扶手断了", AUDIENCE)
    c.clock.advance(seconds=30)
    await c.say("2号厅7排8座椅子坏了", OTHER)
    orders = await WorkOrder.all().order_by("id")
    assert len(orders) == 2 and {o.assignee for o in orders} == {HOLDER}, orders
    return orders


# --- work orders and the staff's typed commands -------------------------------------------


async def test_a_complaint_re_run_after_a_crash_opens_one_work_order(client, clock, redis) -> None:
    c = chat(client, clock, redis)
    first, second = await c.twice(c.audience("3号厅空调太冷了"))
    [order] = await WorkOrder.all()
    assert order.ref in first and order.ref in second
    assert await OutboundMessage.filter(recipient=order.assignee).count() == 1


async def test_a_staff_ok_re_run_after_a_crash_acknowledges_one_work_order(
    client, clock, redis
) -> None:
    c = chat(client, clock, redis)
    await _two_orders(c)
    clock.advance(seconds=30)
    first, second = await c.twice(c.staff(HOLDER, "收到"))
    acked = await WorkOrder.filter(state=State.ACKNOWLEDGED)
    assert len(acked) == 1, (first, second)
    assert acked[0].ref in first and acked[0].ref in second
    assert await WorkOrderEvent.filter(action="acknowledge").count() == 1


async def test_a_done_re_run_after_a_crash_resolves_one_work_order(client, clock, redis) -> None:
    c = chat(client, clock, redis)
    for order in await _two_orders(c):
        await c.staff_says(HOLDER, f"收到 {order.ref}")
    clock.advance(minutes=5)
    first, second = await c.twice(c.staff(HOLDER, "已处理，换了座椅"))
    resolved = await WorkOrder.filter(state=State.RESOLVED)
    assert len(resolved) == 1, (first, second)
    assert resolved[0].ref in first and resolved[0].ref in second
    # One audience is told their report was handled, not both.
    told = await OutboundMessage.filter(idempotency_key__contains=":resolved:")
    assert [m.recipient for m in told] == [resolved[0].reporter]


async def test_a_transfer_re_run_after_a_crash_hands_over_one_work_order(
    client, clock, redis
) -> None:
    c = chat(client, clock, redis)
    await _two_orders(c)
    clock.advance(seconds=30)
    first, second = await c.twice(c.staff(HOLDER, "转给staff02"))
    moved = await WorkOrder.filter(assignee="staff02")
    assert len(moved) == 1, (first, second)
    assert await WorkOrderEvent.filter(action="assign", actor=HOLDER).count() == 1


async def test_a_card_click_re_run_acknowledges_once(client, clock, redis) -> None:
    c = chat(client, clock, redis)
    order, _ = await _two_orders(c)
    click = Inbound(
        Channel.WECOM, "event", HOLDER, "ww_corp", int(clock.timestamp()),
        event="template_card_event", event_key=f"wo:ack:{order.id}", task_id="t1",
        response_code="rc1", agent_id=AGENT,
    )
    await c.twice(click)
    await order.refresh_from_db()
    assert order.state == State.ACKNOWLEDGED
    assert await WorkOrderEvent.filter(work_order_id=order.id, action="acknowledge").count() == 1


# --- 转人工 -----------------------------------------------------------------------------------


async def test_a_human_hand_off_re_run_tells_the_managers_once(client, clock, redis) -> None:
    c = chat(client, clock, redis)
    handoffs = c.dispatcher.deps["handoffs"]
    assert isinstance(handoffs, HandoffQueue)
    first, second = await c.twice(c.audience("转人工"))
    assert "已为您转人工" in first
    while await handoffs.drain_once():
        pass
    keys = await OutboundMessage.filter(idempotency_key__startswith="handoff:").values_list(
        "recipient", flat=True
    )
    assert keys and len(keys) == len(set(keys))  # one message per responder


# --- feedback and compensation ----------------------------------------------------------


async def test_a_low_rating_re_run_opens_one_complaint(client, clock, redis) -> None:
    c = chat(client, clock, redis)
    await c.twice(c.audience("1星"))
    assert await WorkOrder.filter(kind=Kind.COMPLAINT).count() == 1


async def test_a_managers_reply_without_a_number_re_run_answers_one_audience_with_one_coupon(
    client, clock, redis
) -> None:
    c = chat(client, clock, redis)
    await c.say("1星", AUDIENCE)
    clock.advance(seconds=30)
    await c.say("1星", OTHER)
    assert await WorkOrder.filter(kind=Kind.COMPLAINT).count() == 2
    clock.advance(minutes=2)
    first, second = await c.twice(c.staff("manager01", "回复: 很抱歉，已为您处理，送20元券"))
    assert "已回复顾客" in first, first
    assert await Coupon.all().count() == 1, (first, second)
    assert await WorkOrder.filter(state=State.RESOLVED).count() == 1
    told = await OutboundMessage.filter(channel="wechat", recipient__in=[AUDIENCE, OTHER])
    replies = [m for m in told if "很抱歉，已为您处理" in str(m.payload)]
    assert len(replies) == 1
    assert await AuditLog.filter(entity="coupon", action="issue").count() == 1


# --- tickets ----------------------------------------------------------------------------------


async def _evening_show(clock: Any, title_part: str = "沙丘", offset_days: int = 1) -> Showtime:
    day = clock.now().astimezone(SHANGHAI).date() + timedelta(days=offset_days)
    start = datetime.combine(day, time(17), SHANGHAI).astimezone(UTC)
    shows = await Showtime.filter(
        starts_at__gte=start, starts_at__lt=start + timedelta(hours=7),
        film__title__contains=title_part,
    ).order_by("starts_at").prefetch_related("film", "hall")
    assert shows
    return shows[0]


async def _issued(c: Chat, show: Showtime) -> Order:
    """A paid, issued order of AUDIENCE for one seat of ``show``, bought by chat."""
    when = show.starts_at.astimezone(SHANGHAI)
    await c.say(f"买1张明天{when:%H:%M}沙丘2")
    await c.say("确认")
    order = await Order.get(openid=AUDIENCE, state=OrderState.PENDING_PAYMENT)
    from domain import ticketing
    from handlers.api.context import API

    api = c.app[API]
    notice = ticketing.PaymentNotice(order.no, f"tx{order.no}", order.amount_fen, AUDIENCE)
    outcome = await ticketing.record_payment(
        api.inventory, api.payments, notice, c.clock.now(), api.notify
    )
    assert outcome.outcome == "issued", outcome
    return await Order.get(id=order.id)


async def test_a_purchase_request_re_run_holds_the_seats_once(client, clock, redis) -> None:
    c = chat(client, clock, redis)
    show = await _evening_show(clock)
    when = show.starts_at.astimezone(SHANGHAI)
    first, second = await c.twice(
        c.audience(f"我想买两张明天{when:%H:%M}沙丘2的票"), dialog_lost=True
    )
    assert "座位：" in first and "座位：" in second
    [order] = await Order.filter(openid=AUDIENCE)
    assert order.state == OrderState.HELD and len(order.seats) == 2


async def test_a_refund_confirmation_re_run_refunds_once(client, clock, redis) -> None:
    c = chat(client, clock, redis)
    order = await _issued(c, await _evening_show(clock))
    assert "确认退票" in await c.say("我要退票")
    first, second = await c.twice(c.audience("确认"), dialog_lost=True)
    assert "已退票" in first
    await order.refresh_from_db()
    assert order.state == OrderState.REFUNDED
    assert await Refund.filter(order_id=order.id).count() == 1
    refunded = AuditLog.filter(entity="order", entity_id=order.no, action="refunded")
    assert await refunded.count() == 1


async def test_a_change_re_run_after_a_crash_holds_the_new_show_once(client, clock, redis) -> None:
    c = chat(client, clock, redis)
    show = await _evening_show(clock)
    order = await _issued(c, show)
    asked = await c.say("我要改签")
    assert "改到哪一场" in asked, asked
    store = c.dispatcher.dialogs
    assert isinstance(store, DialogStore)
    state = await store.load("wechat", AUDIENCE)
    assert state is not None and state.pending == "change:show"
    label = next(iter(state.data["choices"]))
    first, second = await c.twice(c.audience(label), dialog_lost=True)
    assert "改签" in first or "差价" in first, first
    opened = await Order.filter(openid=AUDIENCE, id__not=order.id).exclude(
        state__in=[OrderState.CANCELLED, OrderState.EXPIRED]
    )
    assert len(opened) == 1, (first, second, [(o.no, o.state) for o in opened])


# --- check-in ---------------------------------------------------------------------------------


async def test_a_door_scan_re_run_admits_once_and_answers_the_same(client, clock, redis) -> None:
    c = chat(client, clock, redis)
    show = await _evening_show(clock)
    order = await _issued(c, show)
    ticket = await Ticket.get(order_id=order.id)
    clock.set(show.starts_at - timedelta(minutes=20))
    first, second = await c.twice(c.scan("staff01", ticket.secret))
    assert "检票成功" in first and "检票成功" in second, (first, second)
    assert await AuditLog.filter(entity="ticket", action="check_in").count() == 1


async def test_a_door_scan_whose_process_died_before_its_record_is_admitted_on_re_run(
    client, clock, redis, monkeypatch
) -> None:
    """The admission and the scan's record commit together: a process that died between
    them would have the re-run tell the door 「已检过票」 for the person it just let in."""
    c = chat(client, clock, redis)
    show = await _evening_show(clock)
    order = await _issued(c, show)
    ticket = await Ticket.get(order_id=order.id)
    clock.set(show.starts_at - timedelta(minutes=20))
    real_create = CheckIn.create
    crashes = [RuntimeError("the process died here")]

    async def dies_once(*args: Any, **kwargs: Any) -> CheckIn:
        if crashes:
            raise crashes.pop()
        return await real_create(*args, **kwargs)

    monkeypatch.setattr(CheckIn, "create", dies_once)
    scan = c.scan("staff01", ticket.secret)
    await c.feed(scan)  # the first run dies recording the scan
    again = await c.feed(scan)
    assert "检票成功" in again, again
    await ticket.refresh_from_db()
    assert ticket.state == TicketState.CHECKED_IN
    assert await AuditLog.filter(entity="ticket", action="check_in").count() == 1


async def test_two_scans_by_a_staff_member_with_a_long_userid_are_two_scans(
    client, clock, redis
) -> None:
    """The scan's key is the message's, whole: cut to the column's length, a long WeCom
    userid left two scans of two tickets with one key, and the second got the first's answer."""
    from domain.people import Staff, StaffRole

    c = chat(client, clock, redis)
    show = await _evening_show(clock)
    first_order = await _issued(c, show)
    await c.say("确认")  # nothing pending: a no-op
    long_id = "door-" + "x" * 59
    await Staff.create(userid=long_id, name="门岗", role=StaffRole.STAFF,
                       cinema_id=first_order.cinema_id)
    ticket = await Ticket.get(order_id=first_order.id)
    clock.set(show.starts_at - timedelta(minutes=20))
    assert "检票成功" in await c.feed(c.scan(long_id, ticket.secret))
    clock.advance(seconds=3)
    forged = await c.feed(c.scan(long_id, "b" * 32))
    assert "无效票码" in forged, forged
