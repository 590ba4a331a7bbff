"""The service desk in WeCom, through the real callbacks and the stand-in API: an audience
complains, the person on duty gets a card, clicks 接单, says what they did, and the
audience is told — with every card really sent to (and updated at) the stand-in."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.app import REDIS
from bot.wechat.chatclient import card_event_xml, event_xml, next_msg_id, text_xml
from domain.audit import AuditLog
from domain.cinemas import Cinema
from domain.people import Staff, StaffRole
from domain.workorders import Kind, State, WorkOrder, WorkOrderEvent, check_sla
from tests.support import Desk, Standin

AUDIENCE = "oCineBotDeskAudience00000001"
OTHER_AUDIENCE = "oCineBotDeskAudience00000002"
AGENT = 1000002
REF = re.compile(r"编号 (W[0-9A-Z]{5})")


# --- the setting: the app with the stand-in as its WeChat and WeCom API --------------------
# (``desk``, conftest's: the outbox worker and what reached whose phone)


@pytest.fixture
async def client(make_client: Any, standin: Standin) -> TestClient:
    return await make_client(standin=standin)


async def audience_says(callbacks: Any, text: str, openid: str = AUDIENCE, msg_id: int | None = None) -> str:
    status, reply = await callbacks.wechat_post(text_xml("gh_demo", openid, text, msg_id or next_msg_id()))
    assert status == 200
    return str(reply["Content"])


async def staff_says(callbacks: Any, userid: str, text: str, msg_id: int | None = None) -> str:
    status, reply = await callbacks.wecom_post(text_xml("ww_corp", userid, text, msg_id or next_msg_id(), AGENT))
    assert status == 200
    return str(reply["Content"])


async def post_click(callbacks: Any, fields: dict[str, Any]) -> str:
    status, reply = await callbacks.wecom_post(card_event_xml(fields))
    assert status == 200
    return str(reply["Content"])


async def reported(reply: str) -> WorkOrder:
    match = REF.search(reply)
    assert match, reply
    return await WorkOrder.get(ref=match.group(1))


def rows(card: dict[str, Any]) -> dict[str, str]:
    return {r["keyname"]: r["value"] for r in card.get("horizontal_content_list", [])}


# --- the whole loop --------------------------------------------------------------------------


async def test_a_complaint_reaches_the_person_on_duty_and_the_audience_hears_back(
    callbacks: Any, desk: Desk
) -> None:
    await desk.on_duty(("staff01", "floor"), ("eng01", "engineering"))
    reply = await audience_says(callbacks, "3号厅空调太冷了")
    assert "已收到" in reply and "5分钟内" in reply
    order = await reported(reply)
    assert (order.kind, order.category, order.hall) == (Kind.COMPLAINT, "temperature", "3号厅")
    assert order.assignee == "staff01" and order.state == State.ASSIGNED

    await desk.deliver()
    [card] = await desk.cards("staff01")
    assert order.ref in card["main_title"]["title"]
    assert [b["text"] for b in card["button_list"]] == ["接单", "转派", "完成"]
    shown = rows(card)
    assert shown["报告人"] == "顾客" and shown["地点"] == "3号厅"
    assert shown["时限"].endswith("前接单")
    assert AUDIENCE not in str(card)  # the audience's openid is not on the card

    answer = await post_click(callbacks, await desk.click("staff01", card, "接单"))
    assert "已接单" in answer
    await order.refresh_from_db()
    assert order.state == State.ACKNOWLEDGED
    await desk.deliver()
    [update] = await desk.updates("staff01")
    assert update["task_id"] == card["task_id"]
    assert rows(update["template_card"])["状态"] == "已接单"
    assert [b["text"] for b in update["template_card"]["button_list"]] == ["转派", "完成"]

    done = await staff_says(callbacks, "staff01", "已处理，调高了空调温度")
    assert "已完成" in done and "已通知顾客" in done
    await order.refresh_from_db()
    assert order.state == State.RESOLVED and order.action == "调高了空调温度"

    await desk.deliver()
    told = [m for m in await desk.received(AUDIENCE) if m["msgtype"] == "text"]
    assert len(told) == 1
    assert order.ref in told[0]["payload"]["text"]["content"]
    assert "调高了空调温度" in told[0]["payload"]["text"]["content"]
    # The card is updated once more, with the code the send gave (the click's is spent).
    finished = (await desk.updates("staff01"))[-1]
    assert finished["button"]["replace_name"] == "✅ 已完成"
    timeline = [e.action for e in await WorkOrderEvent.filter(work_order_id=order.id).order_by("id")]
    assert timeline == ["open", "assign", "acknowledge", "resolve"]


async def test_retried_callbacks_and_double_clicks_change_nothing_twice(
    callbacks: Any, client: TestClient, desk: Desk, clock: Any
) -> None:
    await desk.on_duty(("staff01", "floor"))
    msg_id = next_msg_id()
    first = await audience_says(callbacks, "旁边的人一直打电话太吵了", msg_id=msg_id)
    again = await audience_says(callbacks, "旁边的人一直打电话太吵了", msg_id=msg_id)
    assert first == again
    # Even once the callback dedup has lapsed, the message opens one order.
    await client.app[REDIS].flushdb()
    await audience_says(callbacks, "旁边的人一直打电话太吵了", msg_id=msg_id)
    assert await WorkOrder.all().count() == 1
    order = await reported(first)
    assert order.category == "noise"

    await desk.deliver()
    [card] = await desk.cards("staff01")
    click = await desk.click("staff01", card, "接单")
    await post_click(callbacks, click)
    await post_click(callbacks, click)  # WeCom retries the same callback
    second = await desk.click("staff01", card, "接单")  # a second tap, a moment later
    assert "已接单" in await post_click(callbacks, second)
    assert await WorkOrderEvent.filter(work_order_id=order.id, action="acknowledge").count() == 1

    await desk.deliver()
    assert len(await desk.updates("staff01")) == 1
    asked = await post_click(callbacks, await desk.click("staff01", card, "完成"))
    assert "做了什么处理" in asked
    done_id = next_msg_id()
    await staff_says(callbacks, "staff01", "提醒了打电话的观众", msg_id=done_id)
    await staff_says(callbacks, "staff01", "提醒了打电话的观众", msg_id=done_id)
    await client.app[REDIS].delete(*await client.app[REDIS].keys("cinebot:dedup:*"))
    await staff_says(callbacks, "staff01", "提醒了打电话的观众", msg_id=done_id)
    assert await WorkOrderEvent.filter(work_order_id=order.id, action="resolve").count() == 1
    await order.refresh_from_db()
    assert order.state == State.RESOLVED and order.action == "提醒了打电话的观众"
    await desk.deliver()
    told = [m for m in await desk.received(AUDIENCE) if m["msgtype"] == "text"]
    assert len(told) == 1
    # The 完成 click's own code updated the card.
    assert (await desk.updates("staff01"))[-1]["button"]["replace_name"] == "✅ 已完成"


# --- routing ---------------------------------------------------------------------------------


async def test_routing_takes_turns_on_duty_sends_faults_to_engineering_and_falls_back_to_the_manager(
    callbacks: Any, desk: Desk
) -> None:
    await desk.on_duty(("staff01", "floor"), ("staff02", "floor"), ("eng01", "engineering"))
    assignees = []
    for i, text in enumerate(["后排有人大声说话", "前排小孩一直哭闹", "旁边有人一直玩手机"]):
        order = await reported(await audience_says(callbacks, text, openid=f"oDeskRouting{i:016d}"))
        assignees.append(order.assignee)
    assert assignees == ["staff01", "staff02", "staff01"]

    fault = await reported(await audience_says(callbacks, "3号厅7排8座的座椅坏了"))
    assert (fault.kind, fault.category, fault.team, fault.assignee) == (Kind.FAULT, "seat", "engineering", "eng01")
    assert (fault.hall, fault.seat, fault.severity) == ("3号厅", "7-8", "P2")

    await desk.on_duty()  # nobody on duty
    late = await reported(await audience_says(callbacks, "厕所里很脏", openid=OTHER_AUDIENCE))
    assert late.assignee == "manager01"
    await desk.deliver()
    assert any(late.ref in c["main_title"]["title"] for c in await desk.cards("manager01"))
    assert not any(late.ref in c["main_title"]["title"] for c in await desk.cards("staff01"))


async def test_a_staff_member_reports_a_fault_in_one_message_and_engineering_gets_it(
    callbacks: Any, desk: Desk
) -> None:
    await desk.on_duty(("staff01", "floor"), ("eng01", "engineering"))
    reply = await staff_says(callbacks, "staff01", "5排6座扶手断了")
    assert "已建工单" in reply and "赵工" in reply
    order = await WorkOrder.get(reporter="staff01")
    assert (order.kind, order.category, order.team, order.source) == (Kind.FAULT, "seat", "engineering", "staff")
    assert (order.assignee, order.seat) == ("eng01", "5-6")
    await desk.deliver()
    [card] = await desk.cards("eng01")
    assert rows(card)["报告人"] == "李小青" and rows(card)["地点"] == "5排6座"
    assert await desk.cards("staff01") == []

    assert "已接单" in await staff_says(callbacks, "eng01", "收到")
    assert "已完成" in await staff_says(callbacks, "eng01", "已处理，换了新扶手")
    await desk.deliver()
    texts = [m["payload"]["text"]["content"] for m in await desk.received("staff01") if m["msgtype"] == "text"]
    assert texts and "换了新扶手" in texts[-1] and order.ref in texts[-1]

    # Broken, but no keyword says what: still the engineers' (an audience's would go to the floor).
    await staff_says(callbacks, "staff01", "消防栓漏水了")
    leak = await WorkOrder.filter(reporter="staff01").order_by("-id").first()
    assert leak is not None and (leak.category, leak.team, leak.assignee) == ("other", "engineering", "eng01")


# --- the audience's side ---------------------------------------------------------------------


async def test_an_audience_member_cannot_act_on_a_work_order(
    callbacks: Any, desk: Desk, caplog: pytest.LogCaptureFixture
) -> None:
    await desk.on_duty(("staff01", "floor"))
    order = await reported(await audience_says(callbacks, "3号厅太热了"))
    caplog.set_level(logging.WARNING)
    for text in ("收到", "完成", f"{order.ref} 已处理，修好了", "转给staff02", "我的任务"):
        reply = await audience_says(callbacks, text)
        assert "工作人员" in reply, (text, reply)
    status, reply = await callbacks.wechat_post(
        event_xml("gh_demo", AUDIENCE, "CLICK", f"wo:ack:{order.id}:1")
    )
    assert status == 200 and "工作人员" in reply["Content"]
    await order.refresh_from_db()
    assert order.state == State.ASSIGNED and order.assignee == "staff01"
    assert await WorkOrderEvent.filter(work_order_id=order.id).count() == 2  # open, assign
    assert await AuditLog.filter(entity="work_order", action="refused", actor=AUDIENCE).count() == 6
    assert "tried to act on a work order" in caplog.text

    # Staff of another cinema cannot either, by click or by reference.
    other = await Cinema.create(code="other", name="别家影城")
    await Staff.create(userid="stranger01", name="外店员工", role=StaffRole.STAFF, cinema=other)
    await desk.deliver()
    [card] = await desk.cards("staff01")
    forged = await desk.click("staff01", card, "接单")
    forged["FromUserName"] = "stranger01"
    assert "不属于你所在的影城" in await post_click(callbacks, forged)
    assert "没有" in await staff_says(callbacks, "stranger01", f"接单 {order.ref}")
    await order.refresh_from_db()
    assert order.state == State.ASSIGNED


async def test_the_status_query_shows_the_state_and_never_a_staff_name(
    callbacks: Any, desk: Desk
) -> None:
    await desk.on_duty(("staff01", "floor"))
    order = await reported(await audience_says(callbacks, "爆米花是凉的"))
    assert order.category == "concession"
    await staff_says(callbacks, "staff01", "收到")
    status = await audience_says(callbacks, "我报的问题处理了吗")
    assert order.ref in status and "已接单" in status
    for secret in ("李小青", "staff01", "工程组", "场务组"):
        assert secret not in status
    by_ref = await audience_says(callbacks, f"{order.ref}进度")
    assert order.ref in by_ref and "李小青" not in by_ref
    assert "没有找到" in await audience_says(callbacks, f"{order.ref}进度", openid=OTHER_AUDIENCE)
    await staff_says(callbacks, "staff01", "已处理，给顾客换了一桶热的")
    after = await audience_says(callbacks, "我的投诉有结果了吗")
    assert "已处理" in after and "换了一桶热的" in after and "李小青" not in after


async def test_a_complaint_without_content_is_asked_for(callbacks: Any, desk: Desk) -> None:
    await desk.on_duty(("staff01", "floor"))
    asked = await audience_says(callbacks, "我要投诉")
    assert "遇到了什么问题" in asked
    assert await WorkOrder.all().count() == 0
    reply = await audience_says(callbacks, "5号厅后排一直有人踢椅背")
    order = await reported(reply)
    assert order.kind == Kind.COMPLAINT and order.hall == "5号厅"


async def test_a_photo_soon_after_a_report_reaches_the_person_handling_it(
    callbacks: Any, desk: Desk, clock: Any
) -> None:
    await desk.on_duty(("eng01", "engineering"))
    order = await reported(await audience_says(callbacks, "2号厅8排3座扶手断了"))

    def image(url: str) -> str:
        return (
            f"<xml><ToUserName><![CDATA[gh_demo]]></ToUserName><FromUserName><![CDATA[{AUDIENCE}]]>"
            f"</FromUserName><CreateTime>{int(clock.timestamp())}</CreateTime><MsgType><![CDATA[image]]>"
            f"</MsgType><PicUrl><![CDATA[{url}]]></PicUrl><MediaId><![CDATA[media-{next_msg_id()}]]>"
            f"</MediaId><MsgId>{next_msg_id()}</MsgId></xml>"
        )

    clock.advance(minutes=3)
    status, reply = await callbacks.wechat_post(image("http://mmbiz.example/broken-armrest.jpg"))
    assert status == 200 and order.ref in reply["Content"]
    await order.refresh_from_db()
    assert order.photos == ["http://mmbiz.example/broken-armrest.jpg"]
    await desk.deliver()
    news = [m for m in await desk.received("eng01") if m["msgtype"] == "news"]
    assert news and news[0]["payload"]["news"]["articles"][0]["picurl"].endswith("broken-armrest.jpg")

    clock.advance(minutes=15)  # too late to belong to that report
    status, reply = await callbacks.wechat_post(image("http://mmbiz.example/later.jpg"))
    assert order.ref not in reply["Content"]
    await order.refresh_from_db()
    assert len(order.photos) == 1


# --- the staff's side ------------------------------------------------------------------------


async def test_a_transfer_by_click_offers_colleagues_on_duty_and_moves_the_card(
    callbacks: Any, desk: Desk
) -> None:
    await desk.on_duty(("staff01", "floor"), ("staff02", "floor"), ("eng01", "engineering"))
    order = await reported(await audience_says(callbacks, "3号厅地上有很多垃圾"))
    assert order.assignee == "staff01"
    await desk.deliver()
    [card] = await desk.cards("staff01")
    offered = await post_click(callbacks, await desk.click("staff01", card, "转派"))
    assert "转给谁" in offered and "【转给staff02】" in offered and "【转给eng01】" in offered
    assert "转给staff01" not in offered
    moved = await staff_says(callbacks, "staff01", "转给staff02")
    assert "王磊" in moved
    await order.refresh_from_db()
    assert order.assignee == "staff02" and "staff01" in order.watchers
    await desk.deliver()
    [their_card] = await desk.cards("staff02")
    assert order.ref in their_card["main_title"]["title"]
    [update] = await desk.updates("staff01")
    assert rows(update["template_card"])["负责人"] == "王磊"

    listed = await staff_says(callbacks, "staff02", "我的任务")
    assert order.ref in listed and f"【接单 {order.ref}】" in listed
    assert "已接单" in await staff_says(callbacks, "staff02", f"接单 {order.ref}")
    await order.refresh_from_db()
    assert order.state == State.ACKNOWLEDGED


async def test_a_warning_and_an_escalation_come_as_cards(callbacks: Any, desk: Desk, clock: Any) -> None:
    await desk.on_duty(("staff01", "floor"), ("staff02", "floor"))
    order = await reported(await audience_says(callbacks, "影厅里有人在抽烟好呛"))
    assert order.assignee == "staff01"
    clock.advance(minutes=4, seconds=10)  # past 80 % of the 5 minutes to acknowledge
    assert await check_sla(order, clock.now(), desk.notify) == "warning"
    await desk.deliver()
    clock.advance(minutes=1)
    await order.refresh_from_db()
    assert await check_sla(order, clock.now(), desk.notify) == "escalated"
    await order.refresh_from_db()
    assert order.assignee == "staff02" and order.state == State.ESCALATED
    await desk.deliver()
    titles = [c["main_title"]["title"] for c in await desk.cards("staff01")]
    assert any(t.startswith("⏰ 还有1分钟超时") for t in titles)
    assert any(t.startswith("⚠️ 超时未接单") for t in await desk.titles("staff02"))
    assert any(t.startswith("⚠️ 超时未接单") for t in await desk.titles("manager01"))
    # The first assignee's card now says who has it.
    assert rows((await desk.updates("staff01"))[-1]["template_card"])["负责人"] == "王磊"


async def test_an_emergency_goes_to_the_managers_too_and_their_copy_follows_along(
    callbacks: Any, desk: Desk
) -> None:
    await desk.on_duty(("staff01", "floor"))
    reply = await audience_says(callbacks, "3号厅有位老人晕倒了，快来人")
    assert "紧急" in reply and "120" in reply
    order = await reported(reply)
    assert order.severity == "P1" and order.watchers == ["manager01"]
    await desk.deliver()
    [card] = await desk.cards("staff01")
    [copy] = await desk.cards("manager01")
    assert copy["source"]["desc"].endswith("（抄送）") and card["task_id"] != copy["task_id"]
    await post_click(callbacks, await desk.click("staff01", card, "接单"))
    await desk.deliver()
    [update] = await desk.updates("manager01")
    assert update["task_id"] == copy["task_id"] and rows(update["template_card"])["状态"] == "已接单"
