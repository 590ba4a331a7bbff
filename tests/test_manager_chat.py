"""Managers ask for figures in WeCom chat, through the real callback and the stand-in: the
answers are ``domain.reports``' figures (the console's), revenue is the managers' alone, and
a question is never taken as the resolution of a work order (the 「本周满意度」 bug)."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.wechat.chatclient import card_event_xml, event_xml, next_msg_id, text_xml
from domain import reports, rollups
from domain.catalog import Film, Showtime
from domain.cinemas import Cinema, Hall
from domain.days import SHANGHAI
from domain.orders import Order, OrderState, Ticket, TicketState
from domain.workorders import Kind, State, WorkOrder
from tests.support import Desk, Standin

AUDIENCE = "oCineBotManagerChatAudience1"
AGENT = 1000002
REF = re.compile(r"编号 (W[0-9A-Z]{5})")
TODAY = date(2026, 11, 21)  # the FakeClock's business day (Saturday)
YESTERDAY = date(2026, 11, 20)


@pytest.fixture
async def client(make_client: Any, standin: Standin) -> TestClient:
    return await make_client(standin=standin)


async def audience_says(callbacks: Any, text: str, openid: str = AUDIENCE) -> str:
    status, reply = await callbacks.wechat_post(text_xml("gh_demo", openid, text, next_msg_id()))
    assert status == 200
    return str(reply["Content"])


async def staff_says(callbacks: Any, userid: str, text: str) -> str:
    status, reply = await callbacks.wecom_post(text_xml("ww_corp", userid, text, next_msg_id(), AGENT))
    assert status == 200
    return str(reply["Content"])


async def rate(callbacks: Any, clock: Any, n: int, stars: int, nps: int) -> None:
    """A visitor scans the 1号厅 exit code and gives ``stars`` and ``nps``."""
    openid = f"oCineBotManagerChatRater{n:04d}"
    xml = event_xml("gh_demo", openid, "SCAN", "tp:demo-h1", int(clock.timestamp()) + n)
    assert (await callbacks.wechat_post(xml))[0] == 200
    await audience_says(callbacks, f"{stars}星", openid=openid)
    await audience_says(callbacks, f"推荐{nps}分", openid=openid)


async def sell(show: Showtime, seats: int, price_fen: int, refunded: int = 0) -> None:
    """``seats`` tickets of one paid order (the last ``refunded`` of them refunded)."""
    paid = show.starts_at - timedelta(hours=3)
    order = await Order.create(
        no=secrets.token_hex(8), cinema_id=show.cinema_id, showtime=show,  # type: ignore[attr-defined]
        openid=AUDIENCE, state=OrderState.ISSUED, hold_id=secrets.token_hex(4),
        seats=[f"1-{i}" for i in range(1, seats + 1)], quote=[], amount_fen=seats * price_fen,
        paid_fen=seats * price_fen, expires_at=paid, created_at=paid, paid_at=paid,
    )
    for i in range(1, seats + 1):
        await Ticket.create(
            order=order, showtime=show, seat=f"1-{i}", price_fen=price_fen, secret=secrets.token_hex(16),
            state=TicketState.REFUNDED if i > seats - refunded else TicketState.ISSUED,
        )


async def show_on(day: date, hall_name: str, hour: int) -> Showtime:
    hall = await Hall.get(name=hall_name)
    film = await Film.all().order_by("id").first()
    assert film is not None
    starts = datetime(day.year, day.month, day.day, hour, tzinfo=SHANGHAI).astimezone(UTC)
    return await Showtime.create(
        cinema_id=hall.cinema_id, hall=hall, film=film, starts_at=starts,  # type: ignore[attr-defined]
        ends_at=starts + timedelta(hours=2), base_price_fen=4500,
    )


def nps_shown(score: float | None) -> str:
    return f"NPS {score:+.0f}"


# --- the bug --------------------------------------------------------------------------------------


async def test_a_manager_asking_this_weeks_satisfaction_does_not_close_an_open_group_booking(
    callbacks: Any, desk: Desk, clock: Any
) -> None:
    await desk.on_duty(("manager01", "management"))
    for n, (stars, nps) in enumerate([(5, 10), (4, 9), (5, 10), (3, 6)]):
        await rate(callbacks, clock, n, stars, nps)
    told = await audience_says(callbacks, "公司团建想包下周五晚上的场，大概60人，电话13800138000")
    order = await WorkOrder.get(ref=REF.search(told).group(1))  # type: ignore[union-attr]
    assert order.kind == Kind.GROUP_BOOKING and order.assignee == "manager01"
    await desk.deliver()
    before = len(await desk.received(AUDIENCE))

    answer = await staff_says(callbacks, "manager01", "本周满意度")

    await order.refresh_from_db()
    assert order.state == State.ASSIGNED and not order.action
    await desk.deliver()
    assert len(await desk.received(AUDIENCE)) == before  # the customer is told nothing
    assert not any("已处理" in t for t in await desk.texts(AUDIENCE))
    # The manager gets the week's figures instead: the reports' (the console's) own.
    cinema = await Cinema.get(code="demo")
    week = await reports.experience(reports.Period((cinema.id,), date(2026, 11, 16), TODAY))
    assert week.responses == 4 and week.nps.score == 50  # 3 promoters, 1 detractor of 4
    assert "4份评价" in answer and nps_shown(week.nps.score) in answer
    assert "75.0%" in answer  # CSAT: 3 of 4 gave 4–5 stars
    assert "/console/enter?t=" in answer  # a one-time link into the console


async def test_free_text_the_model_reads_as_done_asks_before_resolving(
    callbacks: Any, desk: Desk
) -> None:
    """「空调修好了」 without a code or a card is offered as 「完成 W…: …」, not taken."""
    await desk.on_duty(("staff01", "floor"))
    order = await WorkOrder.get(ref=REF.search(await audience_says(callbacks, "3号厅空调太冷了")).group(1))  # type: ignore[union-attr]
    assert "已接单" in await staff_says(callbacks, "staff01", "收到")
    asked = await staff_says(callbacks, "staff01", "空调修好了")
    await order.refresh_from_db()
    assert order.state == State.ACKNOWLEDGED
    await staff_says(callbacks, "staff01", "解决了吗？")  # a question, not 「解决了」 with the action 「吗」
    await order.refresh_from_db()
    assert order.state == State.ACKNOWLEDGED
    assert f"完成 {order.ref}: 空调修好了" in asked  # the button: one tap resolves it
    done = await staff_says(callbacks, "staff01", f"完成 {order.ref}: 空调修好了")
    assert "已完成" in done
    await order.refresh_from_db()
    assert order.state == State.RESOLVED and order.action == "空调修好了"


async def test_a_question_while_a_card_asks_what_was_done_is_answered_and_the_question_kept(
    callbacks: Any, desk: Desk
) -> None:
    """The dialog that asked 「做了什么处理？」 takes the answer, but not a question."""
    await desk.on_duty(("manager01", "management"))
    told = await audience_says(callbacks, "想包场看电影，大概50人，电话13800138000")
    order = await WorkOrder.get(ref=REF.search(told).group(1))  # type: ignore[union-attr]
    await desk.deliver()
    [card] = await desk.cards("manager01")
    status, asked = await callbacks.wecom_post(card_event_xml(await desk.click("manager01", card, "完成")))
    assert status == 200 and "做了什么处理" in asked["Content"]

    answer = await staff_says(callbacks, "manager01", "本周满意度")
    assert "顾客满意度" in answer or "还没有顾客评价" in answer
    await order.refresh_from_db()
    assert order.state == State.ASSIGNED
    await staff_says(callbacks, "manager01", "已电话联系顾客，安排周五晚场")  # the answer, still awaited
    await order.refresh_from_db()
    assert order.state == State.RESOLVED and order.action == "已电话联系顾客，安排周五晚场"


# --- the questions ---------------------------------------------------------------------------------


async def test_complaints_today_by_category_for_managers_and_staff(callbacks: Any, desk: Desk) -> None:
    await desk.on_duty(("staff01", "floor"))
    await audience_says(callbacks, "3号厅空调太冷了")
    await audience_says(callbacks, "旁边的人一直打电话太吵了", openid="oCineBotManagerChatAudience2")
    await audience_says(callbacks, "后排有人大声说话", openid="oCineBotManagerChatAudience3")
    assert await WorkOrder.filter(kind=Kind.COMPLAINT).count() == 3

    for text in ("今天有多少投诉", "投诉统计", "今日投诉情况？"):
        answer = await staff_says(callbacks, "manager01", text)
        assert "投诉 3 张" in answer, (text, answer)
        assert "噪音 2（66.7%）" in answer and "温度 1（33.3%）" in answer
    # Staff may count complaints (their console's service section), with a link to it.
    staff = await staff_says(callbacks, "staff01", "今天有多少投诉")
    assert "投诉 3 张" in staff
    # A staff member's report is still a report, not a question.
    assert "已建工单" in await staff_says(callbacks, "staff01", "顾客投诉5排6座扶手断了")


async def seed_sales() -> None:
    """Yesterday: 3号厅 sells 30 of 96 seats at ¥45 (2 more refunded), 1号厅 10 at ¥50;
    the Friday before: 20 at ¥45 in 3号厅."""
    s3 = await show_on(YESTERDAY, "3号厅", 19)
    await sell(s3, 32, 4500, refunded=2)
    s1 = await show_on(YESTERDAY, "1号厅", 20)
    await sell(s1, 10, 5000)
    earlier = await show_on(YESTERDAY - timedelta(days=7), "3号厅", 19)
    await sell(earlier, 20, 4500)
    # Sold here row by row, not through domain.ticketing: its rollup is brought up to date.
    await rollups.refresh_shows([s3.id, s1.id, earlier.id])


async def test_tickets_revenue_and_occupancy_answer_with_the_reports_figures(
    callbacks: Any, desk: Desk, clock: Any
) -> None:
    await seed_sales()
    cinema = await Cinema.get(code="demo")
    yesterday = await reports.sales(reports.Period((cinema.id,), YESTERDAY, YESTERDAY), clock.now())
    assert (yesterday.tickets, yesterday.revenue_fen) == (40, 30 * 4500 + 10 * 5000)

    sold = await staff_says(callbacks, "manager01", "昨天卖了多少票")
    assert "售出 40 张票" in sold and "¥1850.00" in sold and "退票 2 张" in sold
    assert "¥1850.00" in await staff_says(callbacks, "manager01", "昨天票房多少")

    hall = next(g for g in yesterday.by_hall if g.label == "3号厅")
    assert hall.tickets == 30
    shown = f"{hall.occupancy * 100:.1f}%"  # type: ignore[operator]
    answer = await staff_says(callbacks, "manager01", "昨天3号厅上座率")
    assert f"3号厅昨天（11月20日）上座率 {shown}" in answer and f"30/{hall.capacity} 座" in answer
    overall = await staff_says(callbacks, "manager01", "昨天的上座率")
    assert f"上座率 {yesterday.occupancy * 100:.1f}%" in overall  # type: ignore[operator]
    assert "3号厅今天（11月21日）" in await staff_says(callbacks, "manager01", "3号厅上座率")


async def test_revenue_is_for_managers_only(callbacks: Any, desk: Desk) -> None:
    await seed_sales()
    for userid, text in (("staff01", "昨天票房多少"), ("eng01", "昨天卖了多少票"), ("staff01", "日报"),
                         ("staff02", "本周满意度")):
        answer = await staff_says(callbacks, userid, text)
        assert "只有经理可以查看" in answer, (userid, text, answer)
        assert "¥" not in answer and "/console/" not in answer


async def test_the_daily_report_in_chat_is_yesterdays_digest(callbacks: Any, desk: Desk, clock: Any) -> None:
    await seed_sales()
    cinema = await Cinema.get(code="demo")
    d = await reports.digest(cinema.id, YESTERDAY, clock.now())
    answer = await staff_says(callbacks, "manager01", "日报")
    assert "11月20日（周五）" in answer
    assert f"售票 {d.tickets.value:.0f}张" in answer and "同比上周+100%" in answer  # 40 vs 20
    assert "票房 ¥1850" in answer


async def test_questions_in_other_words_are_recognised() -> None:
    from handlers.manager_questions import parse

    assert parse("这周的NPS多少").topics == ("satisfaction",)  # type: ignore[union-attr]
    assert parse("上周好评率").span == "last_week"  # type: ignore[union-attr]
    assert parse("近7天的投诉").span == "7d"  # type: ignore[union-attr]
    assert parse("本月收入").topics == ("revenue",)  # type: ignore[union-attr]
    assert parse("IMAX厅上座率怎么样").hall == "IMAX厅"  # type: ignore[union-attr]
    assert parse("三号厅上座率").hall == "3号厅"  # type: ignore[union-attr]
    for not_a_question in ("投诉", "我要投诉", "顾客投诉3号厅空调太冷", "已处理，换了座椅", "我的任务", "3号厅投诉"):
        assert parse(not_a_question) is None, not_a_question
