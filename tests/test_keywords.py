"""The keyword fallback: what people typically type, and the intent it becomes."""

from __future__ import annotations

import pytest

from bot.keywords import understand

STAFF_ROLES = ("staff", "engineer", "manager")


@pytest.mark.parametrize(
    ("said", "intent"),
    [
        ("你好", "greeting"),
        ("您好！", "greeting"),
        ("在吗？", "greeting"),
        ("今晚哪吒2几点", "query_showtimes"),
        ("今天有什么电影", "query_showtimes"),  # what the 查排片 button sends
        ("明天的排片", "query_showtimes"),
        ("我要退票", "refund"),
        ("能退款吗", "refund"),
        ("我想改签到明天", "change_ticket"),
        ("买两张沙丘2", "buy_ticket"),
        ("我的票在哪里看", "my_tickets"),
        ("转人工", "human"),
        ("我要人工客服", "human"),
        ("3号厅空调太冷了", "complaint"),
        ("5排6座扶手断了", "report_fault"),
        ("手机落在影厅了", "lost_found"),
        ("公司活动想包场", "group_booking"),
        ("会员积分怎么查", "membership"),
        ("影城怎么走", "directions"),
        ("最近有什么推荐的", "recommend"),
        ("沙丘2讲什么", "film_info"),
        ("帮助", "help"),
        ("ＨＥＬＬＯ", "greeting"),  # full-width and upper case
        ("算了，不买了", "cancel"),
        ("天气怎么样", "unknown"),
        ("", "unknown"),
    ],
)
async def test_audience_phrases_map_to_their_intents(said: str, intent: str) -> None:
    understood = await understand(said, "audience")
    assert understood.intent == intent
    assert (understood.confidence > 0) == (intent != "unknown")


@pytest.mark.parametrize(
    ("said", "intent"),
    [
        ("收到", "task_ack"),
        ("收到，马上去", "task_ack"),
        ("已处理", "task_done"),
        ("搞定了", "task_done"),
        ("我的任务", "my_tasks"),
    ],
)
@pytest.mark.parametrize("role", STAFF_ROLES)
async def test_staff_only_intents_are_for_staff(said: str, intent: str, role: str) -> None:
    assert (await understand(said, role)).intent == intent


@pytest.mark.parametrize("said", ["收到", "已处理", "搞定了", "我的任务", "待办"])
async def test_an_audience_member_never_gets_a_staff_only_intent(said: str) -> None:
    understood = await understand(said, "audience")
    assert understood.intent not in ("task_ack", "task_done", "my_tasks")


async def test_staff_still_get_the_general_intents() -> None:
    assert (await understand("今天的排片", "staff")).intent == "query_showtimes"
    assert (await understand("我要报故障", "engineer")).intent == "report_fault"
    assert (await understand("你好", "manager")).intent == "greeting"
