"""Giving the cinema's money away is a right: a manager's, or a plain staff member's up to the
limit a manager set for their role in their cinema (none by default). Every coupon issued and
every one refused leaves an audit row.

The stories go through the real WeCom callback: an audience rates a hall's exit 1 star, the
complaint work order opens, and a staff member answers it 「回复 W…: …，送200元券」."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.wechat.chatclient import event_xml, next_msg_id, text_xml
from bot.nlu import sentiment
from domain import rights
from domain.audit import AuditLog
from domain.feedback import Coupon, FeedbackError, FeedbackResponse, FollowUp, reply
from domain.outbox import OutboundMessage
from domain.people import Staff, StaffRole
from domain.workorders import Shift, State, Who, WorkOrder

AUDIENCE = "oCineBotRightsAudience000001"
AGENT = 1000002


@pytest.fixture(scope="module", autouse=True)
def comment_model() -> None:
    sentiment.model()


async def on_duty(clock: Any, *people: tuple[str, str]) -> None:
    now = clock.now()
    for userid, team in people:
        staff = await Staff.get(userid=userid)
        await Shift.create(
            cinema_id=staff.cinema_id, staff=staff, team=team,  # type: ignore[attr-defined]
            starts_at=now - timedelta(hours=1), ends_at=now + timedelta(hours=12),
        )


async def staff_says(callbacks: Any, userid: str, text: str) -> str:
    xml = text_xml("ww_corp", userid, text, next_msg_id(), AGENT)
    status, answer = await callbacks.wecom_post(xml)
    assert status == 200
    return str(answer["Content"])


async def a_one_star_complaint(callbacks: Any, clock: Any, openid: str = AUDIENCE) -> WorkOrder:
    at = int(clock.timestamp())
    scan = event_xml("gh_demo", openid, "SCAN", "tp:demo-h3", create_time=at,
                     extra="<Ticket><![CDATA[gQtest]]></Ticket>")
    status, _ = await callbacks.wechat_post(scan)
    assert status == 200
    status, _ = await callbacks.wechat_post(text_xml("gh_demo", openid, "1星", next_msg_id()))
    assert status == 200
    response = await FeedbackResponse.get(visitor=openid)
    assert response.work_order_id is not None
    return await WorkOrder.get(id=response.work_order_id)


async def told_audience(openid: str = AUDIENCE) -> list[str]:
    rows = await OutboundMessage.filter(recipient=openid, channel="wechat")
    return [r.payload["text"]["content"] for r in rows if r.payload.get("msgtype") == "text"]


async def audit_rows(action: str) -> list[AuditLog]:
    return await AuditLog.filter(entity="coupon", action=action).order_by("id")


# --- the stories ---------------------------------------------------------------------------------


async def test_a_plain_staff_member_cannot_give_a_200_yuan_coupon(
    callbacks: Any, client: TestClient, clock: Any
) -> None:
    await on_duty(clock, ("staff01", "floor"), ("manager01", "management"))
    order = await a_one_star_complaint(callbacks, clock)

    answer = await staff_says(callbacks, "staff01", f"回复 {order.ref}: 很抱歉，送200元券")

    assert "权限" in answer and "¥0" in answer and "值班经理" in answer, answer
    assert await Coupon.all().count() == 0
    # Nothing reached the audience and the complaint is still open: the reply was refused whole,
    # since its words may promise the coupon.
    assert not [t for t in await told_audience() if order.ref in t and "观影券" in t]
    await order.refresh_from_db()
    assert order.state not in (State.RESOLVED, State.CLOSED)
    assert (await FeedbackResponse.get(visitor=AUDIENCE)).follow_up != FollowUp.ASKED
    [refused] = await audit_rows("refuse")
    assert refused.actor == "staff01" and refused.cinema_id == order.cinema_id
    assert refused.detail["value_fen"] == 20_000 and refused.detail["limit_fen"] == 0
    assert refused.detail["role"] == "staff" and refused.detail["work_order"] == order.ref
    assert await audit_rows("issue") == []
    # The duty manager hears of it, to give the coupon if it is deserved.
    notes = await OutboundMessage.filter(recipient="manager01", channel="wecom")
    asked = [n.payload["text"]["content"] for n in notes if n.payload.get("msgtype") == "text"]
    assert any(order.ref in t and "¥200" in t and "李小青" in t for t in asked), asked

    # Without the coupon the same staff member may answer.
    plain = await staff_says(callbacks, "staff01", f"回复 {order.ref}: 很抱歉，已请放映员调高音量")
    assert "已回复顾客" in plain and "券码" not in plain


async def test_a_manager_can_give_the_coupon_and_it_is_audited(
    callbacks: Any, client: TestClient, clock: Any
) -> None:
    await on_duty(clock, ("manager01", "management"))
    order = await a_one_star_complaint(callbacks, clock)

    answer = await staff_says(callbacks, "manager01", f"回复 {order.ref}: 很抱歉，送200元券")

    assert "已回复顾客" in answer and "券码" in answer, answer
    [coupon] = await Coupon.all()
    assert coupon.value_fen == 20_000 and coupon.issued_by == "manager01"
    [issued] = await audit_rows("issue")
    assert issued.entity_id == coupon.code and issued.actor == "manager01"
    assert issued.detail["value_fen"] == 20_000 and issued.detail["role"] == "manager"
    assert issued.detail["work_order"] == order.ref and issued.cinema_id == coupon.cinema_id
    assert any(coupon.code in t for t in await told_audience())


async def test_a_manager_sets_the_staff_limit_and_it_holds(
    callbacks: Any, client: TestClient, clock: Any
) -> None:
    await on_duty(clock, ("staff01", "floor"), ("manager01", "management"))
    staff01 = await Staff.get(userid="staff01")
    cinema_id: int = staff01.cinema_id  # type: ignore[attr-defined]

    # A plain staff member cannot raise their own limit.
    refused = await staff_says(callbacks, "staff01", "员工补偿上限设为200元")
    assert "经理" in refused and "已设" not in refused
    assert await rights.limit_fen(cinema_id, StaffRole.STAFF) == 0

    done = await staff_says(callbacks, "manager01", "员工补偿上限设为20元")
    assert "¥20" in done and "员工" in done, done
    assert await rights.limit_fen(cinema_id, StaffRole.STAFF) == 2000
    assert await rights.limit_fen(cinema_id, StaffRole.ENGINEER) == 0
    [change] = await AuditLog.filter(entity="compensation_limit")
    assert change.actor == "manager01" and (change.from_state, change.to_state) == ("0", "2000")
    shown = await staff_says(callbacks, "manager01", "补偿上限")
    assert "员工 ¥20" in shown and "工程师 ¥0" in shown, shown

    over = await a_one_star_complaint(callbacks, clock)
    answer = await staff_says(callbacks, "staff01", f"回复 {over.ref}: 很抱歉，送30元券")
    assert "上限 ¥20" in answer and await Coupon.all().count() == 0, answer

    within = await staff_says(callbacks, "staff01", f"回复 {over.ref}: 很抱歉，送20元券")
    assert "已回复顾客" in within and "券码" in within, within
    [coupon] = await Coupon.all()
    assert coupon.value_fen == 2000 and coupon.issued_by == "staff01"
    assert [r.detail["value_fen"] for r in await audit_rows("refuse")] == [3000]
    assert [r.detail["limit_fen"] for r in await audit_rows("issue")] == [2000]


async def test_the_rule_is_the_domains_not_only_the_chat_commands(
    callbacks: Any, client: TestClient, clock: Any
) -> None:
    """Any caller of the domain's reply (chat, a page, a script) meets the same rule."""
    order = await a_one_star_complaint(callbacks, clock)
    engineer = await Staff.get(userid="eng01")
    cinema_id: int = engineer.cinema_id  # type: ignore[attr-defined]
    who = Who(engineer.userid, "engineer", cinema_id, engineer.name)

    async def silent(*args: Any, **kwargs: Any) -> None:
        return None

    with pytest.raises(FeedbackError) as refused:
        await reply(order, who, "很抱歉", clock.now(), notify=silent, tell=silent, coupon_fen=500)
    assert refused.value.code == "over_limit" and "¥0" in refused.value.message
    assert await Coupon.all().count() == 0
    assert len(await audit_rows("refuse")) == 1
