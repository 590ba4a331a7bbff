"""Conversations over several messages: forms that ask for what is missing, and yes/no answers.

The state lives in a real Redis; time is a clock the test moves.
"""

from __future__ import annotations

import asyncio
import gc
import json
from typing import Any

import pytest
import redis.asyncio as aioredis

from bot.chat.channels.inbound import Channel, Inbound
from bot.wechat.chatclient import next_msg_id
from bot.chat.dialog import (
    CANCELLED, Ask, Dialog, DialogState, DialogStore, DialogUnavailable, Form, Invalid,
)
from bot.chat.replies import Reply
from bot.chat.router import SORRY, UNKNOWN, Actor, Dispatcher, Router, Understanding
from bot.infra.redisbatch import CommandBatcher
from tests.support import FakeClock

AUDIENCE = "oDialogAudience0000000000001"
OTHER_AUDIENCE = "oDialogAudience0000000000002"

# What the NLU makes of each text in these stories.
UNDERSTOOD = {
    "我要买哪吒2": Understanding("buy_ticket", 0.9, {"film": "哪吒2"}),
    "买两张哪吒2": Understanding("buy_ticket", 0.9, {"film": "哪吒2", "count": 2}),
    "买十张哪吒2": Understanding("buy_ticket", 0.9, {"film": "哪吒2", "count": 10}),
    "我要买票": Understanding("buy_ticket", 0.9),
    "2张": Understanding("buy_ticket", 0.6, {"count": 2}),
    "10张": Understanding("buy_ticket", 0.6, {"count": 10}),
    "3": Understanding("unknown", 0.2),
    "随便": Understanding("unknown", 0.4),
    "哪吒2的5排6座和7座": Understanding(
        "buy_ticket", 0.9, {"film": "哪吒2", "count": 2, "seats": ("5-6", "5-7")}
    ),
    "明天的": Understanding("unknown", 0.3, {"date": "2026-11-22"}),
    "B厅那场": Understanding("unknown", 0.2),
    "取消": Understanding("cancel", 0.95),
    "转人工": Understanding("human", 0.97),
    "人工呢": Understanding("human", 0.45),  # not sure, but it might be a plea for a person
    "今天有什么电影": Understanding("query_showtimes", 0.92, {"date": "2026-11-21"}),
    "有什么电影吗": Understanding("query_showtimes", 0.35),
    "退票": Understanding("refund", 0.9),
    "确认": Understanding("confirm", 0.95),
    "算了": Understanding("deny", 0.9),
}


def text(body: str, user: str = AUDIENCE, channel: Channel = Channel.WECHAT) -> Inbound:
    # Each message its own MsgId, as WeChat gives them: one dedup key fed again is a re-run.
    return Inbound(
        channel=channel, kind="text", user_id=user, to="gh_demo", create_time=0,
        msg_id=next_msg_id(), text=body,
    )


async def resolve(inbound: Inbound) -> Actor:
    """WeChat users are audience; on WeCom "stranger" is unknown and everyone else staff."""
    if inbound.channel is Channel.WECHAT:
        return Actor("audience", inbound.user_id)
    return Actor(UNKNOWN if inbound.user_id == "stranger" else "staff", inbound.user_id)


async def understand(body: str, role: str) -> Understanding:
    return UNDERSTOOD.get(body, Understanding("unknown", 0.0))


# --- the ticket form of these stories ---------------------------------------------------------


async def ask_film(actor: Actor) -> Reply:
    return Reply.say("想看哪部电影？")


async def ask_count(slots: dict[str, Any]) -> Reply:
    film = slots.get("film")
    return Reply.say(f"《{film}》要几张？" if film else "要几张？", "1张", "2张")


async def check_count(value: Any, text: str) -> int:
    if value is None:  # the NLU found no count: read the words themselves
        digits = "".join(ch for ch in text if ch.isdigit())
        if not digits:
            raise Invalid("请告诉我要几张，比如「2张」。")
        value = digits
    if not 1 <= int(value) <= 6:
        raise Invalid("一次最多买6张哦。")
    return int(value)


TICKET = Form("ticket", (Ask("film", ask_film), Ask("count", ask_count, check_count)))


def tickets_router(completed: list[dict[str, Any]]) -> Router:
    router = Router("tickets")

    @router.on(intent="buy_ticket")
    async def buy(slots: dict[str, Any], dialog: Dialog) -> Reply | None:
        return await dialog.start(TICKET, slots)

    @router.form(TICKET)
    async def buy_done(slots: dict[str, Any], actor: Actor) -> Reply:
        completed.append({"user": actor.user_id, **slots})
        return Reply.say(f"好的，《{slots['film']}》{slots['count']}张。")

    return router


def fallback_router() -> Router:
    router = Router("menu")

    @router.on(intent="human")
    async def human() -> Reply:
        return Reply.say("人工客服电话 400-000-0000")

    @router.on(intent="query_showtimes")
    async def showtimes() -> Reply:
        return Reply.say("今天有哪吒2、沙丘2")

    @router.on(kind="text")
    async def not_understood() -> Reply:
        return Reply.say("没听懂")

    return router


class Story:
    """A dispatcher with dialogs in Redis, the ticket form, and a menu to fall back on."""

    def __init__(self, redis: aioredis.Redis, clock: FakeClock, *routers: Router) -> None:
        self.redis, self.clock = redis, clock
        self.completed: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.batch = CommandBatcher(redis)
        self.store = DialogStore(redis, clock, batcher=self.batch)
        self.d = Dispatcher(
            resolve_actor=resolve, understand=understand, on_error=self.errors.append,
            dialogs=self.store, clock=clock,
        )
        self.d.include(*routers, tickets_router(self.completed), fallback_router())
        self.d.check()

    async def say(self, body: str, user: str = AUDIENCE, channel: Channel = Channel.WECHAT) -> str:
        reply = await self.d.feed(text(body, user, channel))
        assert reply is not None
        # The state writes are queued behind the reply; the batcher runs its commands in
        # order, so once this is answered they are in Redis for the test to read directly.
        await self.batch.execute("PING")
        return reply.text

    async def stored(self, user: str = AUDIENCE, channel: Channel = Channel.WECHAT) -> dict[str, Any] | None:
        raw = await self.redis.get(f"cb:dlg:{channel}:{user}")
        value = None if raw is None else json.loads(raw)
        # A finished dialog leaves only what its last message's re-run needs (its writer
        # and the state before): no form, no pending action.
        return value if value and (value.get("form") or value.get("pending")) else None


@pytest.fixture
def story(redis: aioredis.Redis, clock: FakeClock) -> Story:
    return Story(redis, clock)


# --- forms ------------------------------------------------------------------------------------


async def test_a_form_asks_for_the_missing_slot_and_completes_on_the_next_message(story: Story) -> None:
    assert await story.say("我要买哪吒2") == "《哪吒2》要几张？"
    state = await story.stored()
    assert state is not None
    assert state["form"] == "ticket" and state["slots"] == {"film": "哪吒2"}
    assert state["asked"] == "count"
    assert state["expires_at"] == story.clock.timestamp() + 600
    assert story.completed == []

    assert await story.say("2张") == "好的，《哪吒2》2张。"
    assert story.completed == [{"user": AUDIENCE, "film": "哪吒2", "count": 2}]
    assert await story.stored() is None
    # The form is over: the same words now go to the buy handler, which asks for the film.
    assert await story.say("我要买票") == "想看哪部电影？"


async def test_a_form_whose_slots_are_all_known_completes_at_once(story: Story) -> None:
    assert await story.say("买两张哪吒2") == "好的，《哪吒2》2张。"
    assert story.completed == [{"user": AUDIENCE, "film": "哪吒2", "count": 2}]
    assert await story.redis.keys("cb:dlg:*") == []


async def test_a_rejected_value_asks_again_with_the_hint(story: Story) -> None:
    await story.say("我要买哪吒2")

    assert await story.say("10张") == "一次最多买6张哦。\n《哪吒2》要几张？"
    state = await story.stored()
    assert state is not None and state["slots"] == {"film": "哪吒2"} and state["asked"] == "count"

    # No count understood: the validator reads the raw text.
    assert await story.say("随便") == "请告诉我要几张，比如「2张」。\n《哪吒2》要几张？"
    assert await story.say("3") == "好的，《哪吒2》3张。"
    assert story.completed == [{"user": AUDIENCE, "film": "哪吒2", "count": 3}]

    # A count given earlier and then changed to a wrong one is asked for again.
    assert await story.say("2张", OTHER_AUDIENCE) == "想看哪部电影？"
    assert await story.say("10张", OTHER_AUDIENCE) == "一次最多买6张哦。\n要几张？"
    state = await story.stored(OTHER_AUDIENCE)
    assert state is not None and state["slots"] == {} and state["asked"] == "count"


async def test_a_rejected_value_at_the_start_is_asked_for_with_the_hint(story: Story) -> None:
    assert await story.say("买十张哪吒2") == "一次最多买6张哦。\n《哪吒2》要几张？"
    state = await story.stored()
    assert state is not None and state["slots"] == {"film": "哪吒2"} and state["asked"] == "count"
    assert story.completed == []


async def test_cancel_leaves_the_form_with_the_default_reply(story: Story) -> None:
    await story.say("我要买哪吒2")

    assert await story.say("取消") == CANCELLED
    assert await story.stored() is None
    assert await story.say("2张") == "想看哪部电影？"  # a new purchase, not the old one
    assert story.completed == []


async def test_a_form_can_have_its_own_cancel(redis: aioredis.Redis, clock: FakeClock) -> None:
    own = Router("own-cancel")
    seen: list[dict[str, Any]] = []

    @own.on(form="ticket", intent="cancel")
    async def cancel_ticket(dialog: Dialog) -> Reply:
        assert dialog.state is not None
        seen.append(dict(dialog.state.slots))
        return Reply.say("好的，不买了。想看别的电影随时找我～")

    story = Story(redis, clock, own)
    # Outside the form, "取消" is not this route's business.
    assert await story.say("取消") == "没听懂"

    await story.say("我要买哪吒2")
    assert await story.say("取消") == "好的，不买了。想看别的电影随时找我～"
    assert seen == [{"film": "哪吒2"}]
    assert await story.stored() is None


async def test_asking_for_a_person_during_a_form_reaches_the_human_route(story: Story) -> None:
    await story.say("我要买哪吒2")

    assert await story.say("转人工") == "人工客服电话 400-000-0000"
    assert await story.stored() is None
    assert await story.say("2张") == "想看哪部电影？"

    # Even a hesitant request for a person, which would not leave the form otherwise.
    await story.say("我要买哪吒2", OTHER_AUDIENCE)
    assert await story.say("人工呢", OTHER_AUDIENCE) == "人工客服电话 400-000-0000"
    assert await story.stored(OTHER_AUDIENCE) is None


async def test_an_unrelated_confident_request_leaves_the_form(story: Story) -> None:
    await story.say("我要买哪吒2")

    # Unsure of another intent: still the form, asking again.
    assert await story.say("有什么电影吗") == "请告诉我要几张，比如「2张」。\n《哪吒2》要几张？"
    assert await story.stored() is not None
    # Sure of another intent (and the form has no date slot): the user moved on.
    assert await story.say("今天有什么电影") == "今天有哪吒2、沙丘2"
    assert await story.stored() is None
    assert story.completed == []


async def test_a_silent_user_finds_the_form_gone_after_the_timeout(story: Story) -> None:
    await story.say("我要买哪吒2")
    key = f"cb:dlg:{Channel.WECHAT}:{AUDIENCE}"
    assert 600 < await story.redis.ttl(key) <= 660  # timeout + slack, as a Redis sweep

    story.clock.advance(seconds=599)
    assert await story.say("随便") == "请告诉我要几张，比如「2张」。\n《哪吒2》要几张？"
    # Every answer restarts the countdown.
    story.clock.advance(seconds=599)
    assert await story.say("随便") == "请告诉我要几张，比如「2张」。\n《哪吒2》要几张？"

    story.clock.advance(seconds=601)
    assert await story.say("2张") == "想看哪部电影？"  # a fresh purchase
    assert story.completed == []


async def test_two_users_keep_their_own_forms(story: Story) -> None:
    await story.say("我要买哪吒2", AUDIENCE)

    assert await story.say("2张", OTHER_AUDIENCE) == "想看哪部电影？"
    assert await story.say("3", OTHER_AUDIENCE) == "想看哪部电影？"  # asked for a film, not a count
    assert await story.say("2张", AUDIENCE) == "好的，《哪吒2》2张。"
    assert story.completed == [{"user": AUDIENCE, "film": "哪吒2", "count": 2}]
    other = await story.stored(OTHER_AUDIENCE)
    assert other is not None and other["asked"] == "film"


async def test_a_wecom_and_a_wechat_user_with_the_same_id_do_not_mix(story: Story) -> None:
    await story.say("我要买哪吒2", "zhangsan", Channel.WECHAT)

    assert await story.say("2张", "zhangsan", Channel.WECOM) == "想看哪部电影？"
    assert await story.say("2张", "zhangsan", Channel.WECHAT) == "好的，《哪吒2》2张。"
    assert story.completed == [{"user": "zhangsan", "film": "哪吒2", "count": 2}]
    assert await story.stored("zhangsan", Channel.WECHAT) is None
    wecom = await story.stored("zhangsan", Channel.WECOM)
    assert wecom is not None and wecom["asked"] == "film"


async def test_a_completed_form_can_ask_for_confirmation(redis: aioredis.Redis, clock: FakeClock) -> None:
    booked: list[dict[str, Any]] = []
    router = Router("booking")
    form = Form("book", (Ask("film", ask_film), Ask("count", ask_count, check_count)))

    @router.on(intent="buy_ticket")
    async def buy(slots: dict[str, Any], dialog: Dialog) -> Reply | None:
        return await dialog.start(form, slots)

    @router.form(form)
    async def book(slots: dict[str, Any], dialog: Dialog) -> Reply:
        return await dialog.confirm("book:pay", dict(slots), Reply.say("确认购买吗？", "确认", "算了"))

    @router.on(pending="book", intent="confirm")
    async def pay(pending_data: dict[str, Any]) -> Reply:
        booked.append(pending_data)
        return Reply.say("已下单")

    story = Story(redis, clock, router)
    assert await story.say("我要买哪吒2") == "《哪吒2》要几张？"
    assert await story.say("2张") == "确认购买吗？"
    assert await story.say("确认") == "已下单"
    assert booked == [{"film": "哪吒2", "count": 2}]


async def test_a_form_keeps_the_optional_slots_it_names_without_asking_for_them(
    redis: aioredis.Redis, clock: FakeClock
) -> None:
    router = Router("dated")
    form = Form("dated", TICKET.asks, keep=("date", "seats"))
    done: list[dict[str, Any]] = []

    @router.on(intent="buy_ticket")
    async def buy(slots: dict[str, Any], dialog: Dialog) -> Reply | None:
        return await dialog.start(form, slots)

    @router.form(form)
    async def dated_done(slots: dict[str, Any]) -> Reply:
        done.append(slots)
        return Reply.say("好")

    story = Story(redis, clock, router)
    assert await story.say("我要买哪吒2") == "《哪吒2》要几张？"
    assert await story.say("明天的") == "请告诉我要几张，比如「2张」。\n《哪吒2》要几张？"
    assert await story.say("2张") == "好"
    assert done == [{"film": "哪吒2", "date": "2026-11-22", "count": 2}]

    # A date alone is no answer to "how many": a confident other request still leaves.
    await story.say("我要买哪吒2")
    assert await story.say("今天有什么电影") == "今天有哪吒2、沙丘2"
    assert await story.stored() is None

    # Done in one message, the handler sees the values as they would come back from Redis.
    assert await story.say("哪吒2的5排6座和7座") == "好"
    assert done[-1] == {"film": "哪吒2", "count": 2, "seats": ["5-6", "5-7"]}


# --- pending actions --------------------------------------------------------------------------


def refund_router(answers: list[tuple[str, dict[str, Any]]]) -> Router:
    router = Router("refunds")

    @router.on(intent="confirm")  # registered first, yet a pending answer goes first
    async def nothing_to_confirm() -> Reply:
        return Reply.say("没有需要确认的事情哦")

    @router.on(intent="refund")
    async def refund(dialog: Dialog) -> Reply:
        return await dialog.confirm(
            "refund:order", {"order": 42}, Reply.say("确认退掉订单42吗？", "确认", "算了"), timeout=120
        )

    @router.on(pending="refun", intent="confirm")  # part of a word is another action
    async def wrong_prefix() -> Reply:
        answers.append(("wrong", {}))
        return Reply.say("wrong")

    @router.on(pending="refund", intent="confirm")  # "refund" and any "refund:…"
    async def refund_yes(pending_data: dict[str, Any], dialog: Dialog) -> Reply:
        answers.append(("yes", pending_data))
        return Reply.say(f"订单{pending_data['order']}已退票")

    @router.on(pending="refund:order", intent="deny")
    async def refund_no(pending_data: dict[str, Any]) -> Reply:
        answers.append(("no", pending_data))
        return Reply.say("好的，订单保留")

    return router


async def test_yes_and_no_reach_the_routes_waiting_for_that_action(
    redis: aioredis.Redis, clock: FakeClock
) -> None:
    answers: list[tuple[str, dict[str, Any]]] = []
    story = Story(redis, clock, refund_router(answers))

    assert await story.say("确认") == "没有需要确认的事情哦"
    assert await story.say("退票") == "确认退掉订单42吗？"
    state = await story.stored()
    assert state is not None and state["pending"] == "refund:order" and state["data"] == {"order": 42}
    assert 120 < await story.redis.ttl(f"cb:dlg:wechat:{AUDIENCE}") <= 180

    # Something else in between is answered normally, and the question still stands.
    assert await story.say("今天有什么电影") == "今天有哪吒2、沙丘2"
    assert await story.say("确认") == "订单42已退票"
    assert answers == [("yes", {"order": 42})]
    # Answered once: a second "确认" has nothing left to confirm.
    assert await story.say("确认") == "没有需要确认的事情哦"
    assert await story.stored() is None

    assert await story.say("退票") == "确认退掉订单42吗？"
    assert await story.say("算了") == "好的，订单保留"
    assert answers[-1] == ("no", {"order": 42})
    assert await story.stored() is None


async def test_cancel_and_timeout_forget_a_pending_action(redis: aioredis.Redis, clock: FakeClock) -> None:
    answers: list[tuple[str, dict[str, Any]]] = []
    story = Story(redis, clock, refund_router(answers))

    await story.say("退票")
    assert await story.say("取消") == CANCELLED
    assert await story.say("确认") == "没有需要确认的事情哦"

    await story.say("退票")
    story.clock.advance(seconds=121)
    assert await story.say("确认") == "没有需要确认的事情哦"
    assert answers == []


async def test_a_pending_handler_that_returns_nothing_lets_the_message_through(
    redis: aioredis.Redis, clock: FakeClock
) -> None:
    router = Router("pick")

    @router.on(kind="text", when=lambda u: u.inbound.text == "选场次")
    async def choose(dialog: Dialog) -> Reply:
        return await dialog.confirm("pick:show", {"choices": {"B厅那场": 7}}, Reply.say("选哪一场？"))

    @router.on(pending="pick:show")
    async def picked(text: str, pending_data: dict[str, Any]) -> Reply | None:
        show = pending_data["choices"].get(text)
        if show is None:
            return None  # not a choice: somebody else's business
        return Reply.say(f"第{show}场")

    story = Story(redis, clock, router)
    assert await story.say("选场次") == "选哪一场？"
    assert await story.say("今天有什么电影") == "今天有哪吒2、沙丘2"
    assert await story.say("转人工") == "人工客服电话 400-000-0000"
    assert (await story.stored() or {}).get("pending") == "pick:show"  # still waiting
    assert await story.say("B厅那场") == "第7场"
    assert await story.stored() is None


# --- wiring -----------------------------------------------------------------------------------


async def test_state_is_read_once_per_message_and_never_for_unknown_users(
    redis: aioredis.Redis, clock: FakeClock
) -> None:
    loads: list[tuple[str, str]] = []

    class CountingStore(DialogStore):
        def fetch(self, channel: str, user_id: str) -> asyncio.Future[bytes | None]:
            loads.append((str(channel), user_id))
            return super().fetch(channel, user_id)

    d = Dispatcher(resolve_actor=resolve, understand=understand, dialogs=CountingStore(redis, clock))
    d.include(tickets_router([]), fallback_router())

    await d.feed(text("我要买哪吒2"))
    await d.feed(text("10张"))
    await d.feed(text("你好", "stranger", Channel.WECOM))
    assert loads == [("wechat", AUDIENCE), ("wechat", AUDIENCE)]
    # Read ahead (in the dedup claim's batch), the state is not read a second time.
    ahead = d.prefetch(text("10张"))
    assert ahead is not None
    await d.feed(text("10张"), ahead)
    assert len(loads) == 3


async def test_without_a_store_handlers_get_a_dialog_that_says_why_it_cannot_help() -> None:
    errors: list[str] = []
    d = Dispatcher(resolve_actor=resolve, understand=understand, on_error=errors.append)
    seen: list[Dialog] = []

    @d.on(intent="buy_ticket")
    async def buy(slots: dict[str, Any], dialog: Dialog) -> Reply | None:
        seen.append(dialog)
        assert dialog.state is None and dialog.pending is None and dialog.data == {}
        return await dialog.start(TICKET, slots)

    d.check()
    assert await d.feed(text("我要买哪吒2")) == Reply.say(SORRY)
    assert len(errors) == 1
    with pytest.raises(DialogUnavailable, match="dialogs=DialogStore"):
        await seen[0].end()


def test_check_refuses_a_prompt_that_asks_for_something_nobody_provides() -> None:
    async def ask_seat(slots: dict[str, Any], seat_map: object) -> Reply:  # no such dependency
        return Reply.say("选座")

    router = Router("seats")

    @router.form(Form("seats", (Ask("seats", ask_seat),)))
    async def done(slots: dict[str, Any]) -> None:
        return None

    d = Dispatcher(resolve_actor=resolve, understand=understand, clock="c")
    d.include(router)
    with pytest.raises(TypeError) as caught:
        d.check()
    assert "ask_seat" in str(caught.value) and "seat_map" in str(caught.value)

    provided = Dispatcher(resolve_actor=resolve, understand=understand, clock="c", seat_map="m")
    provided.include(router)
    provided.check()  # does not raise


def test_check_refuses_a_validator_that_takes_no_value() -> None:
    async def parse(count: int) -> int:  # should be named `value`
        return count

    router = Router("count")

    @router.form(Form("count", (Ask("count", ask_film, parse),)))
    async def done(slots: dict[str, Any]) -> None:
        return None

    d = Dispatcher(resolve_actor=resolve, understand=understand)
    d.include(router)
    with pytest.raises(TypeError, match="parse"):
        d.check()


def test_a_form_has_one_completion_handler() -> None:
    form = Form("fine", (Ask("film", ask_film),))
    first, second = Router("first"), Router("second")

    @first.form(form)
    async def done() -> None:
        return None

    with pytest.raises(ValueError, match="already completes"):
        first.form(form)(done)

    d = Dispatcher(resolve_actor=resolve, understand=understand)
    d.include(first)
    d.check()  # one is fine
    second.form(form)(done)
    d.include(second)
    with pytest.raises(ValueError, match="one completion handler per form"):
        d.check()


def test_check_refuses_a_route_waiting_for_a_form_nobody_registered() -> None:
    d = Dispatcher(resolve_actor=resolve, understand=understand)

    @d.on(form="tickt", intent="cancel")  # typo on purpose
    async def cancel() -> None:
        return None

    with pytest.raises(ValueError, match="tickt"):
        d.check()


def test_check_trusts_a_when_filter_to_supply_the_names_it_returns() -> None:
    d = Dispatcher(resolve_actor=resolve, understand=understand)

    @d.on(pending="buy:offer", when=lambda u: {"row": 7})
    async def row_picked(row: int, pending_data: dict[str, Any]) -> None:
        return None

    d.check()  # does not raise

    @d.on(pending="buy:offer")
    async def no_when(row: int) -> None:
        return None

    with pytest.raises(TypeError, match="row"):
        d.check()


def test_pending_data_is_only_for_routes_waiting_for_an_action() -> None:
    d = Dispatcher(resolve_actor=resolve, understand=understand)

    @d.on(intent="confirm")
    async def confirm(pending_data: dict[str, Any]) -> None:
        return None

    with pytest.raises(TypeError, match="pending_data"):
        d.check()


def test_the_stored_state_holds_every_field() -> None:
    from dataclasses import fields

    state = DialogState(form="ticket", slots={"film": "哪吒"}, asked="count", pending="buy:show",
                        data={"ids": [1, 2]}, expires_at=12.5)
    assert set(json.loads(state.to_json())) == {f.name for f in fields(DialogState)}
    assert DialogState.from_json(state.to_json()) == state


async def test_a_write_behind_save_is_seen_by_the_next_read(redis: aioredis.Redis, clock: FakeClock) -> None:
    store = DialogStore(redis, clock)
    await store.save("wechat", "u1", DialogState(form="ticket", asked="film"), 600)
    # Not awaited to the end, yet the next read goes out after it on the same connection.
    state = await store.load("wechat", "u1")
    assert state is not None and state.form == "ticket"
    await store.clear("wechat", "u1")
    assert await store.load("wechat", "u1") is None


async def test_a_handled_message_leaves_nothing_for_the_cyclic_garbage_collector(story: Story) -> None:
    """The dialog calls back into its turn; once the message is handled the turn lets go,
    so a message's turn, dialog and update are freed at once instead of piling up until
    a collection (which then ran every few dozen messages)."""
    await story.say("你好")  # warm: routes flattened, caches filled
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for body in ("我要买哪吒2", "2张", "我想买票", "取消", "今天有什么电影", "你好"):
            await story.say(body)
        gc.collect()
        left = {type(o).__name__ for o in gc.garbage}
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert not left & {"Turn", "Dialog", "Update", "DialogState", "Inbound"}, left
    # The form still ran to its end: 「2张」 completed it.
    assert len(story.completed) == 1
