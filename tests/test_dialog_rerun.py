"""A message re-run after a crash takes the same dialog route as its first run.

A message answered 200 is handled at least once: a process that dies mid-handler has the
same Inbound (same dedup key) run again by another process (``bot.chat.dedup``). The dialog
writes its next state (a form advanced, finished, an action answered) before the
handler's effect commits or its reply goes out. Each state write therefore names its
writer and keeps the state it replaced; the writer's re-run starts from that earlier
state, so a fault report is not lost and a half-filled form is not closed by its own
repeated answer.

Each story feeds one Inbound through the app's real dispatcher twice, as the re-run would.
A crash "after the state write" is a domain call that waits until the write is in Redis
and then raises, once; a crash "before the reply went out" throws the first reply away."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest

from bot.app import DISPATCHER
from bot.chat.channels import Channel, Inbound
from bot.wechat.chatclient import next_msg_id
from bot.infra.clock import SHANGHAI
from bot.chat.dialog import DialogState, DialogStore
from bot.chat.replies import Reply
from bot.chat.router import Dispatcher
from domain.catalog import Showtime
from domain.orders import Order, OrderState
from domain.outbox import OutboundMessage
from domain.workorders import WorkOrder

AUDIENCE = "oCineBotDialogRerun00000001"
# Read as a fault only inside the report form: on its own the NLU finds no intent in it
# (unknown), so a re-run routed as a fresh message would record nothing.
FAULT_DETAIL = "7排8座一坐就晃"


class Chat:
    """One audience member's messages, as the WeChat channel would decode them."""

    def __init__(self, client: Any, clock: Any, redis: Any) -> None:
        self.dispatcher: Dispatcher = client.server.app[DISPATCHER]
        store = self.dispatcher.dialogs
        assert isinstance(store, DialogStore)
        self.store, self.clock, self.redis = store, clock, redis

    def message(self, text: str) -> Inbound:
        return Inbound(
            Channel.WECHAT, "text", AUDIENCE, "gh_demo", int(self.clock.timestamp()),
            msg_id=next_msg_id(), text=text,
        )

    async def feed(self, inbound: Inbound) -> str:
        reply = await self.dispatcher.feed(inbound)
        return reply.text if isinstance(reply, Reply) else ""

    async def say(self, text: str) -> str:
        return await self.feed(self.message(text))

    async def state(self) -> DialogState | None:
        """The live dialog state, once the queued writes are in Redis."""
        return await self.store.load(str(Channel.WECHAT), AUDIENCE)

    async def stored(self) -> dict[str, Any]:
        await self.state()
        raw = await self.redis.get(self.store.key(str(Channel.WECHAT), AUDIENCE))
        assert raw is not None
        value: dict[str, Any] = json.loads(raw)
        return value

    def dies_once_after_the_state_write(
        self, real: Callable[..., Awaitable[Any]]
    ) -> Callable[..., Awaitable[Any]]:
        """``real``, except that its first call finds the dialog's write in Redis and then
        dies, as the process would between the write and the commit."""
        crashes = [RuntimeError("the process died here")]

        async def call(*args: Any, **kwargs: Any) -> Any:
            if crashes:
                await self.state()  # issued after the write, on the same connection
                raise crashes.pop()
            return await real(*args, **kwargs)

        return call


def chat(client: Any, clock: Any, redis: Any) -> Chat:
    return Chat(client, clock, redis)


async def _evening_show(clock: Any) -> Showtime:
    day = clock.now().astimezone(SHANGHAI).date() + timedelta(days=1)
    start = datetime.combine(day, time(17), SHANGHAI).astimezone(UTC)
    show = await Showtime.filter(
        starts_at__gte=start, starts_at__lt=start + timedelta(hours=7),
        film__title__contains="沙丘",
    ).order_by("starts_at").first()
    assert show is not None
    return show


# --- a form's last answer ---------------------------------------------------------------


async def test_a_fault_report_whose_last_answer_is_re_run_after_a_crash_is_recorded_once(
    client, clock, redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    import handlers.workorders

    c = chat(client, clock, redis)
    assert "哪里坏了" in await c.say("我要报修")
    monkeypatch.setattr(
        handlers.workorders, "open_order",
        c.dies_once_after_the_state_write(handlers.workorders.open_order),
    )
    answer = c.message(FAULT_DETAIL)
    await c.feed(answer)  # the form is finished in Redis; the work order never committed
    assert await WorkOrder.all().count() == 0

    again = await c.feed(answer)
    [order] = await WorkOrder.all()
    assert order.ref in again, again
    assert order.seat == "7-8" and FAULT_DETAIL in order.summary
    assert await c.state() is None  # the form is over, as after a run without a crash


async def test_a_fault_report_re_run_after_full_success_changes_nothing(
    client, clock, redis
) -> None:
    c = chat(client, clock, redis)
    await c.say("我要报修")
    answer = c.message(FAULT_DETAIL)
    first = await c.feed(answer)
    [order] = await WorkOrder.all()
    assert order.ref in first
    told = await OutboundMessage.all().count()

    again = await c.feed(answer)
    assert again == first  # the same answer, for the reply the crash may have lost
    assert await WorkOrder.all().count() == 1
    assert await OutboundMessage.all().count() == told  # nobody is told twice
    assert await c.state() is None
    # The user's next words are a fresh message, not an answer to the finished form.
    assert "编号" not in await c.say("你好")
    assert await WorkOrder.all().count() == 1


async def test_a_re_run_after_the_form_timed_out_still_records_the_report(
    client, clock, redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first run took the answer while the form was alive; its re-run, coming later,
    is not turned away by the timeout the first run beat."""
    import handlers.workorders

    c = chat(client, clock, redis)
    await c.say("我要报修")
    clock.advance(seconds=590)
    monkeypatch.setattr(
        handlers.workorders, "open_order",
        c.dies_once_after_the_state_write(handlers.workorders.open_order),
    )
    answer = c.message(FAULT_DETAIL)
    await c.feed(answer)
    clock.advance(seconds=30)  # the form's 600 s are over when the re-run comes
    again = await c.feed(answer)
    [order] = await WorkOrder.all()
    assert order.ref in again, again


async def test_a_purchase_form_whose_last_answer_is_re_run_after_a_crash_holds_seats_once(
    client, clock, redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from domain import ticketing

    c = chat(client, clock, redis)
    show = await _evening_show(clock)
    when = show.starts_at.astimezone(SHANGHAI)
    assert "几张" in await c.say(f"我想买明天{when:%H:%M}的沙丘2")
    monkeypatch.setattr(
        ticketing, "hold_seats", c.dies_once_after_the_state_write(ticketing.hold_seats)
    )
    answer = c.message("2张")
    await c.feed(answer)
    assert not await Order.exists(openid=AUDIENCE)

    again = await c.feed(answer)
    assert "座位：" in again, again
    [order] = await Order.filter(openid=AUDIENCE)
    assert order.state == OrderState.HELD and len(order.seats) == 2
    state = await c.state()
    assert state is not None and state.pending == "buy:offer"


# --- a pending action's answer ------------------------------------------------------------


async def test_a_pending_purchase_confirmation_re_run_after_a_crash_gives_one_pay_link(
    client, clock, redis
) -> None:
    """确认 was handled and the action forgotten in Redis, then the process died before the
    pay link went out. The re-run must answer with the pay link, for the same order."""
    c = chat(client, clock, redis)
    show = await _evening_show(clock)
    when = show.starts_at.astimezone(SHANGHAI)
    assert "座位：" in await c.say(f"买1张明天{when:%H:%M}沙丘2")
    order = await Order.get(openid=AUDIENCE)
    confirm = c.message("确认")
    first = await c.feed(confirm)  # the reply is lost with the process
    assert "点此支付" in first and order.no in first
    assert await c.state() is None

    again = await c.feed(confirm)
    assert "点此支付" in again and order.no in again, again
    [paying] = await Order.filter(openid=AUDIENCE)
    assert paying.id == order.id and paying.state == OrderState.PENDING_PAYMENT


# --- a form halfway ------------------------------------------------------------------------


async def test_a_re_run_answer_does_not_close_the_form_it_advanced(client, clock, redis) -> None:
    """「沙丘2」 answered the film question; run again against the form it advanced, the
    film is no news and the words read as a question about the film, which would close
    the form. From the earlier state it answers the same question again."""
    c = chat(client, clock, redis)
    assert "想看哪部电影" in await c.say("我要买票")
    film = c.message("沙丘2")
    first = await c.feed(film)
    assert "要几张" in first

    again = await c.feed(film)
    assert again == first
    state = await c.state()
    assert state is not None and state.form == "buy" and state.asked == "count"
    # What is kept is one earlier state, never a chain of them.
    stored = await c.stored()
    assert stored["before"]["asked"] == "film" and "before" not in stored["before"]
    # The form goes on from here: the count completes it.
    then = await c.say("3张")
    assert "场次" in then or "座位：" in then, then


async def test_a_re_run_after_the_user_moved_on_is_routed_as_things_are_now(
    client, clock, redis
) -> None:
    """A later message of the same user wrote the state since: the old message's re-run
    no longer knows what it saw, and is routed normally without undoing the later step."""
    c = chat(client, clock, redis)
    show = await _evening_show(clock)
    when = show.starts_at.astimezone(SHANGHAI)
    await c.say(f"我想买明天{when:%H:%M}的票")
    film = c.message("沙丘2")
    assert "要几张" in await c.feed(film)
    assert "座位：" in await c.say("1张")

    await c.feed(film)  # re-run of the answer before 「1张」
    state = await c.state()
    assert state is not None and state.pending == "buy:offer"  # the offer still stands
    [order] = await Order.filter(openid=AUDIENCE)
    assert order.state == OrderState.HELD
    assert "点此支付" in await c.say("确认")
