"""The router: filters, first-match-wins, and handlers that get exactly what they ask for."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from bot.chat.channels.inbound import Channel, Inbound
from bot.chat.replies import Reply
from bot.chat.router import SORRY, UNKNOWN, Actor, Dispatcher, Router, Understanding

AUDIENCE_ID = "oRouterAudience000000000001"


def text(body: str, user: str = AUDIENCE_ID, channel: Channel = Channel.WECHAT) -> Inbound:
    return Inbound(
        channel=channel, kind="text", user_id=user, to="gh_demo", create_time=0, text=body
    )


def event(
    name: str, key: str | None = None, scene: str | None = None,
    user: str = AUDIENCE_ID, channel: Channel = Channel.WECHAT,
) -> Inbound:
    return Inbound(
        channel=channel, kind="event", user_id=user, to="gh_demo", create_time=0,
        event=name, event_key=key, scene=scene,
    )


class People:
    """Who is who in these tests: WeChat users are audience, WeCom users have a staff role."""

    def __init__(self, roles: Mapping[str, str] | None = None) -> None:
        self.roles = dict(roles or {})

    async def resolve(self, inbound: Inbound) -> Actor:
        if inbound.channel is Channel.WECHAT:
            return Actor(role="audience", user_id=inbound.user_id)
        return Actor(role=self.roles.get(inbound.user_id, UNKNOWN), user_id=inbound.user_id)


class Understands:
    """Maps whole texts to understandings, and counts how often it was asked."""

    def __init__(self, table: Mapping[str, Understanding] | None = None) -> None:
        self.table = dict(table or {})
        self.asked: list[tuple[str, str]] = []

    async def __call__(self, text: str, role: str) -> Understanding:
        self.asked.append((text, role))
        return self.table.get(text, Understanding("unknown", 0.0))


def dispatcher(
    table: Mapping[str, Understanding] | None = None,
    roles: Mapping[str, str] | None = None,
    **deps: Any,
) -> Dispatcher:
    return Dispatcher(resolve_actor=People(roles).resolve, understand=Understands(table), **deps)


# --- injection ---------------------------------------------------------------------------


async def test_a_handler_gets_exactly_the_arguments_it_names() -> None:
    d = dispatcher({"你好": Understanding("greeting")}, clock="the-clock", redis="the-redis")
    seen: list[dict[str, Any]] = []

    @d.on(intent="greeting")
    async def greet(text: str, clock: str, actor: Actor) -> Reply:
        seen.append({"text": text, "clock": clock, "actor": actor})
        return Reply.say("hi")

    d.check()
    reply = await d.feed(text("你好"))

    assert reply == Reply.say("hi")
    assert seen == [{"text": "你好", "clock": "the-clock", "actor": Actor("audience", AUDIENCE_ID)}]


async def test_a_handler_that_takes_kwargs_gets_everything_available() -> None:
    d = dispatcher({"你好": Understanding("greeting", 0.9, {"who": "me"})}, clock="the-clock")
    seen: dict[str, Any] = {}

    @d.on(intent="greeting")
    async def greet(**everything: Any) -> None:
        seen.update(everything)

    msg = text("你好")
    await d.feed(msg)

    assert seen["msg"] is msg
    assert seen["text"] == "你好" and seen["intent"] == "greeting"
    assert seen["slots"] == {"who": "me"}
    assert seen["clock"] == "the-clock"
    assert seen["actor"].role == "audience"
    assert seen["update"].understanding.confidence == 0.9


async def test_slots_understood_from_the_text_reach_the_handler() -> None:
    d = dispatcher({"今晚哪吒2几点": Understanding("query_showtimes", 0.8, {"film": "哪吒2", "day": 0})})
    got: list[tuple[str, dict[str, Any]]] = []

    @d.on(intent=("query_showtimes", "film_info"))
    async def showtimes(intent: str, slots: dict[str, Any]) -> Reply:
        got.append((intent, slots))
        return Reply.say("19:00")

    await d.feed(text("今晚哪吒2几点"))
    assert got == [("query_showtimes", {"film": "哪吒2", "day": 0})]


async def test_a_button_passes_the_rest_of_its_key_as_button_args() -> None:
    d = dispatcher(roles={"eng01": "engineer"})
    got: list[list[str]] = []

    @d.on(event="template_card_event", button="wo:ack")
    async def ack(button_args: list[str]) -> Reply:
        got.append(button_args)
        return Reply.say("已接单")

    @d.on(event="template_card_event")
    async def other_card() -> Reply:
        return Reply.say("其他卡片")

    def click(key: str) -> Inbound:
        return event("template_card_event", key, user="eng01", channel=Channel.WECOM)

    assert await d.feed(click("wo:ack:42:hall3")) == Reply.say("已接单")
    assert await d.feed(click("wo:ack")) == Reply.say("已接单")
    # A longer word that merely starts the same is another button.
    assert await d.feed(click("wo:acknowledge")) == Reply.say("其他卡片")
    assert got == [["42", "hall3"], []]


async def test_a_qr_scene_passes_its_arguments_as_scene_args() -> None:
    d = dispatcher()
    got: list[list[str]] = []

    @d.on(event="subscribe", scene="touch")
    async def from_touchpoint(scene_args: list[str]) -> Reply:
        got.append(scene_args)
        return Reply.say("感谢扫码")

    @d.on(event="subscribe")
    async def plain_follow() -> Reply:
        return Reply.say("感谢关注")

    assert await d.feed(event("subscribe", scene="touch:hall3-exit")) == Reply.say("感谢扫码")
    assert await d.feed(event("subscribe")) == Reply.say("感谢关注")
    assert await d.feed(event("subscribe", scene="poster:metro")) == Reply.say("感谢关注")
    assert got == [["hall3-exit"]]


# --- order ----------------------------------------------------------------------------------


async def test_the_first_matching_route_wins_and_included_routers_go_in_order() -> None:
    d = dispatcher({"你好": Understanding("greeting"), "帮助": Understanding("help")})
    calls: list[str] = []
    access, greetings, catch_all = Router("access"), Router("greetings"), Router("menu")

    @access.on(channel=Channel.WECOM)  # never matches a WeChat message
    async def wecom_only() -> Reply:
        calls.append("access")
        return Reply.say("access")

    @greetings.on(intent="greeting")
    async def greet() -> Reply:
        calls.append("greet")
        return Reply.say("greet")

    @greetings.on(intent="greeting")
    async def second_greet() -> Reply:  # registered later in the same router: never reached
        calls.append("second_greet")
        return Reply.say("second")

    @catch_all.on(kind="text")
    async def anything() -> Reply:
        calls.append("anything")
        return Reply.say("anything")

    d.include(access, greetings, catch_all)

    assert await d.feed(text("你好")) == Reply.say("greet")
    assert await d.feed(text("帮助")) == Reply.say("anything")
    assert calls == ["greet", "anything"]


async def test_the_dispatchers_own_routes_and_nested_routers_come_before_later_siblings() -> None:
    d = dispatcher({"你好": Understanding("greeting")})
    outer, inner, later = Router("outer"), Router("inner"), Router("later")

    @later.on(intent="greeting")
    async def later_greet() -> Reply:
        return Reply.say("later")

    @inner.on(intent="greeting")
    async def inner_greet() -> Reply:
        return Reply.say("inner")

    outer.include(inner)
    d.include(outer, later)
    assert await d.feed(text("你好")) == Reply.say("inner")

    @d.on(intent="greeting")
    async def own_greet() -> Reply:
        return Reply.say("own")

    assert await d.feed(text("你好")) == Reply.say("own")


async def test_no_matching_route_means_no_reply() -> None:
    d = dispatcher()

    @d.on(intent="greeting")
    async def greet() -> Reply:
        return Reply.say("hi")

    assert await d.feed(text("随便说点什么")) is None


def test_a_router_cannot_include_itself() -> None:
    r = Router("r")
    with pytest.raises(ValueError):
        r.include(r)


# --- roles --------------------------------------------------------------------------------


async def test_the_employee_group_means_every_staff_role_and_nobody_else() -> None:
    roles = {"staff01": "staff", "eng01": "engineer", "manager01": "manager"}
    d = dispatcher({"我的任务": Understanding("my_tasks")}, roles=roles)

    @d.on(intent="my_tasks", role="employee")
    async def my_tasks(actor: Actor) -> Reply:
        return Reply.say(f"{actor.user_id} 的任务")

    @d.on(role="unknown", channel=Channel.WECOM)
    async def refuse() -> Reply:
        return Reply.say("未开通")

    @d.on(kind="text")
    async def fallback() -> Reply:
        return Reply.say("fallback")

    for userid in roles:
        assert await d.feed(text("我的任务", userid, Channel.WECOM)) == Reply.say(f"{userid} 的任务")
    assert await d.feed(text("我的任务", "stranger9", Channel.WECOM)) == Reply.say("未开通")
    assert await d.feed(text("我的任务")) == Reply.say("fallback")  # an audience member


async def test_a_single_role_matches_only_that_role() -> None:
    d = dispatcher(
        {"收到": Understanding("task_ack")}, roles={"eng01": "engineer", "staff01": "staff"}
    )

    @d.on(intent="task_ack", role=("engineer", "manager"))
    async def engineers_only() -> Reply:
        return Reply.say("engineer")

    assert await d.feed(text("收到", "eng01", Channel.WECOM)) == Reply.say("engineer")
    assert await d.feed(text("收到", "staff01", Channel.WECOM)) is None


async def test_an_unknown_wecom_user_is_never_run_through_understanding() -> None:
    understand = Understands({"你好": Understanding("greeting")})
    d = Dispatcher(resolve_actor=People().resolve, understand=understand)

    @d.on(role="unknown")
    async def refuse(intent: str | None) -> Reply:
        return Reply.say(f"未开通 intent={intent}")

    assert await d.feed(text("你好", "stranger9", Channel.WECOM)) == Reply.say("未开通 intent=None")
    assert understand.asked == []


def test_a_misspelt_role_is_refused_at_registration() -> None:
    with pytest.raises(ValueError, match="employe"):
        Router("r").on(role="employe")


# --- mistakes caught at start-up ------------------------------------------------------------


def test_check_refuses_a_handler_that_asks_for_something_nobody_provides() -> None:
    d = dispatcher(clock="c", redis="r")
    feature = Router("feature")

    @feature.on(intent="greeting")
    async def greet(actor: Actor, clock: object, databse: object) -> None:  # typo on purpose
        return None

    d.include(feature)
    with pytest.raises(TypeError) as caught:
        d.check()
    assert "greet" in str(caught.value) and "databse" in str(caught.value)


def test_check_accepts_builtins_filter_data_and_dependencies() -> None:
    d = dispatcher(clock="c", redis="r", settings="s")

    @d.on(button="menu")
    async def everything_known(
        msg: Inbound, actor: Actor, update: object, intent: str, slots: dict[str, Any],
        text: str, button_args: list[str], scene_args: list[str], dialog: object,
        clock: object, redis: object, settings: object,
    ) -> None:
        return None

    d.check()  # does not raise


def test_a_sync_handler_is_refused_when_it_is_registered() -> None:
    r = Router("r")
    with pytest.raises(TypeError, match="must be async"):

        @r.on(intent="greeting")
        def greet() -> Reply:  # forgot `async`
            return Reply.say("hi")


# --- failures at run time -------------------------------------------------------------------


async def test_a_handler_that_raises_gets_an_apology_and_counts_as_an_error() -> None:
    errors: list[str] = []
    d = Dispatcher(
        resolve_actor=People().resolve,
        understand=Understands({"退票": Understanding("refund"), "你好": Understanding("greeting")}),
        on_error=errors.append,
    )

    @d.on(intent="refund")
    async def refund() -> Reply:
        raise RuntimeError("payment gateway down")

    @d.on(intent="greeting")
    async def greet() -> Reply:
        return Reply.say("hi")

    reply = await d.feed(text("退票"))
    assert reply == Reply.say(SORRY)
    assert "抱歉" in reply.text and "转人工" in reply.text
    assert errors == [f"{refund.__module__}.{refund.__qualname__}"]
    assert errors[0].endswith("<locals>.refund")
    # The dispatcher is none the worse for it.
    assert await d.feed(text("你好")) == Reply.say("hi")
    assert len(errors) == 1


async def test_indexed_routes_still_run_their_other_filters_and_get_intent_and_slots() -> None:
    # The dispatcher's (intent, channel, kind, role) index proves those filters; what it
    # cannot prove (an event name, a button, a `when=`) must still decide.
    table = {
        "三号厅": Understanding("report_fault", slots={"hall": "3号厅"}),
        "冷": Understanding("report_fault"),
    }
    d = dispatcher(table, roles={"staff01": "staff", "boss01": "manager"})
    order: list[str] = []

    @d.on(intent="report_fault", role="staff", channel=Channel.WECOM,
          when=lambda u: u.inbound.text == "三号厅")
    async def with_hall(intent: str, slots: dict[str, Any]) -> Reply:
        order.append("with_hall")
        return Reply.say(f"{intent}:{slots['hall']}")

    @d.on(intent="report_fault", channel=Channel.WECOM)
    async def any_fault(intent: str, slots: dict[str, Any]) -> Reply:
        order.append("any_fault")
        return Reply.say(f"{intent}:{dict(slots)}")

    @d.on(kind="event", event="click")
    async def clicked() -> Reply:
        return Reply.say("clicked")

    @d.on(kind="event")
    async def other_event() -> Reply:
        return Reply.say("other event")

    d.check()
    assert await d.feed(text("三号厅", user="staff01", channel=Channel.WECOM)) == Reply.say(
        "report_fault:3号厅"
    )
    assert await d.feed(text("冷", user="staff01", channel=Channel.WECOM)) == Reply.say(
        "report_fault:{}"
    )
    # A manager is not `role="staff"`: the first route is skipped, the second answers.
    assert await d.feed(text("三号厅", user="boss01", channel=Channel.WECOM)) == Reply.say(
        "report_fault:{'hall': '3号厅'}"
    )
    # On WeChat neither route's channel fits.
    assert await d.feed(text("三号厅")) is None
    assert await d.feed(event("subscribe")) == Reply.say("other event")
    assert await d.feed(event("CLICK".lower(), key="k")) == Reply.say("clicked")
    assert order == ["with_hall", "any_fault", "any_fault"]
