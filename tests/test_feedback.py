"""The feedback loop through the real callbacks, the outbox worker and the API stand-in: an
audience scans a hall exit's code and rates the show they saw; a bad rating cards the duty
manager within the same callback, the manager's reply reaches the audience, and 「没有解决」
reopens the work order."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.app import REDIS
from bot.wechat.chatclient import event_xml, next_msg_id, text_xml
from bot.infra.clock import SHANGHAI
from bot.nlu import sentiment
from domain.catalog import Showtime
from domain.feedback import Coupon, FeedbackResponse, FollowUp
from domain.orders import Order, OrderState
from domain.people import Member
from domain.workorders import Kind, State, WorkOrder, WorkOrderEvent
from tests.support import Desk, Standin

AUDIENCE = "oCineBotFeedbackAudience0001"
AGENT = 1000002


# --- the setting -------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def comment_model() -> None:
    """A server loads the comment classifier in the background at start; these stories talk
    at once, so the model is made ready first (trained once per run, then cached on disk)."""
    sentiment.model()


@pytest.fixture
async def client(make_client: Any, standin: Standin) -> TestClient:
    return await make_client(standin=standin)


# ``desk`` (conftest's): the roster, the outbox worker and what reached whose phone.


async def says(callbacks: Any, text: str, openid: str = AUDIENCE, msg_id: int | None = None) -> str:
    status, reply = await callbacks.wechat_post(text_xml("gh_demo", openid, text, msg_id or next_msg_id()))
    assert status == 200
    return str(reply["Content"]) if isinstance(reply, dict) else str(reply)


async def staff_says(callbacks: Any, userid: str, text: str) -> str:
    status, reply = await callbacks.wecom_post(text_xml("ww_corp", userid, text, next_msg_id(), AGENT))
    assert status == 200
    return str(reply["Content"])


def scan_xml(code: str, at: int, *, follow: bool = False, openid: str = AUDIENCE) -> str:
    if follow:
        return event_xml("gh_demo", openid, "subscribe", f"qrscene_tp:{code}", create_time=at,
                         extra="<Ticket><![CDATA[gQtest]]></Ticket>")
    return event_xml("gh_demo", openid, "SCAN", f"tp:{code}", create_time=at,
                     extra="<Ticket><![CDATA[gQtest]]></Ticket>")


async def scan(callbacks: Any, code: str, at: int, *, follow: bool = False) -> str:
    status, reply = await callbacks.wechat_post(scan_xml(code, at, follow=follow))
    assert status == 200
    return str(reply["Content"])


async def a_show_at_one(clock: Any) -> Showtime:
    """Today's 13:00 show of a film no other hall shows at 13:00 (so one message buys it)."""
    today = clock.now().astimezone(SHANGHAI).date()
    start = datetime.combine(today, time(13), SHANGHAI).astimezone(UTC)
    shows = await Showtime.filter(starts_at=start).prefetch_related("film", "hall")
    titles = [s.film.title for s in shows]
    show = next(s for s in shows if titles.count(s.film.title) == 1 and s.hall.name[0].isdigit())
    return show


async def buy_and_pay(callbacks: Any, client: TestClient, show: Showtime) -> Order:
    offer = await says(callbacks, f"买1张今天13:00的{show.film.title}")
    assert "座位：" in offer, offer
    pay = await says(callbacks, "确认")
    link = re.search(r'href="[^"]*(/pay/[^"]+)"', pay)
    assert link, pay
    paid = await client.post(link.group(1), allow_redirects=False)
    assert paid.status == 303, await paid.text()
    order = await Order.get(openid=AUDIENCE, state=OrderState.ISSUED)
    assert order.showtime_id == show.id  # type: ignore[attr-defined]
    return order


def exit_code(show: Showtime) -> str:
    return "demo-h" + "".join(ch for ch in show.hall.name if ch.isdigit())


# --- the stories ---------------------------------------------------------------------------------


async def test_a_scan_after_the_show_records_a_survey_linked_to_the_ticket(
    callbacks: Any, client: TestClient, clock: Any
) -> None:
    show = await a_show_at_one(clock)
    await buy_and_pay(callbacks, client, show)
    clock.set(show.ends_at + timedelta(minutes=5))

    asked = await scan(callbacks, exit_code(show), int(clock.timestamp()))
    assert f"{show.hall.name}出口" in asked and show.film.title in asked
    assert "打几星" in asked and "4星" in asked  # stars as buttons, not prose
    nps = await says(callbacks, "4星")
    assert "推荐给朋友" in nps and "推荐9分" in nps
    aspects = await says(callbacks, "推荐9分")
    assert "满意" in aspects and "选好了" in aspects
    assert "已选：画面" in await says(callbacks, "画面")
    await says(callbacks, "声音")
    comment = await says(callbacks, "选好了")
    assert "还有想对我们说的吗" in comment
    done = await says(callbacks, "画面很清晰，音效也很震撼")
    assert "谢谢您的好评" in done

    [response] = await FeedbackResponse.all().prefetch_related("touchpoint")
    assert response.touchpoint.code == exit_code(show) and response.channel == "chat"
    assert (response.stars, response.nps, response.aspects) == (4, 9, ["画面", "声音"])
    assert response.comment == "画面很清晰，音效也很震撼"
    assert response.category in ("picture", "sound") and response.sentiment == "pos"
    # Linked to the show the visitor holds a ticket for: film, hall and showtime.
    assert response.showtime_id == show.id
    assert response.film_id == show.film.id and response.hall == show.hall.name
    assert response.show_starts_at == show.starts_at
    assert response.work_order_id is None and await WorkOrder.all().count() == 0


async def test_a_two_star_rating_reaches_the_duty_manager_and_the_loop_closes(
    callbacks: Any, client: TestClient, clock: Any, desk: Desk
) -> None:
    await desk.on_duty(("staff01", "floor"), ("manager01", "management"), hours=12)
    show = await a_show_at_one(clock)
    await buy_and_pay(callbacks, client, show)
    await Member.filter(openid=AUDIENCE).update(phone="13812345678")
    clock.set(show.ends_at + timedelta(minutes=3))

    # Someone not yet following scans: subscribe with the scene, the survey at once.
    asked = await scan(callbacks, exit_code(show), int(clock.timestamp()), follow=True)
    assert "感谢扫码关注" in asked and "打几星" in asked
    assert (await Member.get(openid=AUDIENCE)).subscribed

    sorry = await says(callbacks, "2星")
    assert "非常抱歉" in sorry and "推荐" in sorry
    # The complaint is opened by the rating itself, within the same callback.
    [order] = await WorkOrder.all()
    response = await FeedbackResponse.get()
    assert (order.kind, order.source, order.source_key) == (Kind.COMPLAINT, "qr", f"feedback:{response.id}")
    assert order.ref in sorry
    assert response.work_order_id == order.id
    assert order.touchpoint == f"{show.hall.name}出口" and order.hall == show.hall.name
    assert "manager01" in order.watchers or order.assignee == "manager01"

    await says(callbacks, "推荐3分")  # a second reason to alert: still one order
    await says(callbacks, "声音")
    await says(callbacks, "选好了")
    done = await says(callbacks, "声音太小了，后排根本听不清台词")
    assert order.ref in done and "值班经理" in done
    assert await WorkOrder.all().count() == 1

    await desk.deliver()
    [card] = await desk.cards("manager01")  # one alert per response
    title, desc = card["main_title"]["title"], card["main_title"]["desc"]
    assert order.ref in title
    assert "2星" in desc and show.film.title[:4] in desc and "138****5678" in desc
    shown = {r["keyname"]: r["value"] for r in card["horizontal_content_list"]}
    assert show.hall.name in shown["地点"] and shown["报告人"] == "顾客"
    assert AUDIENCE not in str(card) and "13812345678" not in str(card)
    # The comment came after the card: the manager gets it as a note, not a second card.
    notes = [t for t in await desk.texts("manager01") if "顾客补充" in t]
    assert len(notes) == 1 and "后排根本听不清" in notes[0] and order.ref in notes[0]

    answer = await staff_says(callbacks, "manager01", f"回复 {order.ref}: 很抱歉，已请放映员调高音量，送20元券")
    assert "已回复顾客" in answer and "券码" in answer
    await order.refresh_from_db()
    assert order.state == State.RESOLVED and order.action.startswith("回复顾客：很抱歉")
    [coupon] = await Coupon.all()
    assert coupon.value_fen == 2000 and coupon.openid == AUDIENCE and coupon.work_order_id == order.id

    await desk.deliver()
    told = await desk.texts(AUDIENCE)
    replies = [t for t in told if order.ref in t]
    assert len(replies) == 1  # the reply is the one message about the resolved order
    assert "很抱歉，已请放映员调高音量" in replies[0] and coupon.code in replies[0]
    assert "送20元券" not in replies[0]
    assert "问题解决了吗" in replies[0] and "没有解决" in replies[0]

    again = await says(callbacks, "没有解决")
    assert "重新交给值班经理" in again and order.ref in again
    await order.refresh_from_db()
    assert order.state == State.REOPENED
    reopen = await WorkOrderEvent.get(work_order_id=order.id, action="reopen")
    assert reopen.actor == AUDIENCE
    assert (await FeedbackResponse.get()).follow_up == FollowUp.UNRESOLVED
    # A second 「没有解决」 changes nothing more.
    await says(callbacks, "没有解决")
    assert await WorkOrderEvent.filter(work_order_id=order.id, action="reopen").count() == 1
    await desk.deliver()
    assignee_cards = await desk.cards(order.assignee or "manager01")
    assert any("重新打开" in c["main_title"]["title"] for c in assignee_cards)


async def test_duplicate_scans_and_retried_callbacks_count_once(
    callbacks: Any, client: TestClient, clock: Any, desk: Desk
) -> None:
    await desk.on_duty(("staff01", "floor"), ("manager01", "management"), hours=12)
    at = int(clock.timestamp())
    first = await callbacks.wechat_post(scan_xml("demo-h3", at))
    retried = await callbacks.wechat_post(scan_xml("demo-h3", at))  # WeChat retries the event
    assert first == retried
    assert await FeedbackResponse.all().count() == 1

    msg_id = next_msg_id()
    await says(callbacks, "1星", msg_id=msg_id)
    await says(callbacks, "1星", msg_id=msg_id)  # a retried message
    redis = client.app[REDIS]
    await redis.delete(*await redis.keys("cinebot:dedup:*"))  # even once the dedup has lapsed
    await says(callbacks, "1星", msg_id=msg_id)
    assert await WorkOrder.all().count() == 1

    # The same visitor scans the same place again later that day: the same response, edited.
    clock.advance(minutes=20)
    again = await scan(callbacks, "demo-h3", int(clock.timestamp()))
    assert "已在这里评价过" in again and "1星" in again
    await says(callbacks, "5星")
    [response] = await FeedbackResponse.all()
    assert response.stars == 5 and response.edits == 1
    assert await WorkOrder.all().count() == 1  # at most one alert per response
    await desk.deliver()
    assert len(await desk.cards("manager01")) == 1

    # Another place is another response.
    await scan(callbacks, "demo-bar", int(clock.timestamp()) + 1)
    assert await FeedbackResponse.all().count() == 2


async def test_a_manager_asks_for_todays_numbers(callbacks: Any, client: TestClient, clock: Any) -> None:
    for n, (stars, nps) in enumerate([(5, 10), (4, 9), (2, 3)]):
        openid = f"oCineBotFeedbackNumbers000{n}"
        await callbacks.wechat_post(scan_xml("demo-h1", int(clock.timestamp()) + n, openid=openid))
        await says(callbacks, f"{stars}星", openid=openid)
        await says(callbacks, f"推荐{nps}分", openid=openid)
    answer = await staff_says(callbacks, "manager01", "今天的满意度")
    assert "3 份评价" in answer
    assert "CSAT 67%" in answer  # 2 of 3 gave 4–5 stars
    assert "NPS +33" in answer  # 2 promoters, 1 detractor of 3
    assert "1号厅" in answer and "差评工单 1 张" in answer
    refused = await staff_says(callbacks, "staff01", "今天的满意度")
    assert "CSAT" not in refused  # the numbers are for managers


async def test_an_unknown_or_retired_code_gets_a_kind_answer(callbacks: Any, clock: Any) -> None:
    reply = await scan(callbacks, "nowhere-1", int(clock.timestamp()))
    assert "停用" in reply
    assert await FeedbackResponse.all().count() == 0
