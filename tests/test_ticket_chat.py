"""An audience buys, pays for, refunds and changes tickets by chat, through the real callback,
the real payment notify (sandbox bank) and the outbox."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta

import pytest

from bot.wechat.chatclient import event_xml, next_msg_id, text_xml
from bot.infra.clock import SHANGHAI
from domain.catalog import Showtime
from domain.orders import Order, OrderState, Ticket
from domain.outbox import OutboundMessage
from handlers.api.context import API

OPENID = "oCineBotTicketBuyer000000001"


async def say(callbacks, text: str, openid: str = OPENID) -> str:
    status, reply = await callbacks.wechat_post(text_xml("gh_demo", openid, text, next_msg_id()))
    assert status == 200
    return reply["Content"] if isinstance(reply, dict) else reply


async def _evening_show(title_part: str, clock) -> Showtime:
    """A show tomorrow evening of the named film, as the demo schedule has it."""
    tomorrow = clock.now().astimezone(SHANGHAI).date() + timedelta(days=1)
    start = datetime.combine(tomorrow, time(17), SHANGHAI).astimezone(UTC)
    shows = await Showtime.filter(
        starts_at__gte=start, starts_at__lt=start + timedelta(hours=7), film__title__contains=title_part
    ).order_by("starts_at").prefetch_related("film", "hall")
    assert shows, "the demo schedule has evening shows"
    return shows[0]


async def _pay(client, reply: str) -> None:
    link = re.search(r'href="([^"]+/pay/[^"]+)"', reply)
    assert link, reply
    path = "/pay/" + link.group(1).split("/pay/", 1)[1]
    page = await client.get(path)
    assert page.status == 200 and "确认支付" in await page.text()
    paid = await client.post(path, allow_redirects=False)
    assert paid.status == 303, await paid.text()


async def test_an_audience_buys_two_seats_in_two_messages_and_gets_the_e_ticket(
    callbacks, client, clock
) -> None:
    show = await _evening_show("沙丘", clock)
    when = show.starts_at.astimezone(SHANGHAI)
    first = await say(callbacks, f"我想买两张明天{when:%H:%M}沙丘2的票")
    assert "座位：" in first and "确认" in first, first
    assert "合计" in first and "屏幕" in first  # price and the seat map before paying
    order = await Order.get(openid=OPENID)
    assert order.state == OrderState.HELD and len(order.seats) == 2
    assert order.showtime_id == show.id
    second = await say(callbacks, "确认")
    assert "点此支付" in second
    await _pay(client, second)
    await order.refresh_from_db()
    assert order.state == OrderState.ISSUED
    tickets = await Ticket.filter(order_id=order.id)
    assert sorted(t.seat for t in tickets) == sorted(order.seats)
    sent = await OutboundMessage.filter(recipient=OPENID, idempotency_key=f"order:{order.no}:issued")
    assert len(sent) == 1 and sent[0].payload["msgtype"] == "news"
    article = sent[0].payload["news"]["articles"][0]
    assert tickets[0].secret in article["url"] or tickets[1].secret in article["url"]
    page = await client.get("/t/" + article["url"].rsplit("/t/", 1)[1])
    assert page.status == 200 and "沙丘" in await page.text()
    qr = await client.get("/t/" + article["url"].rsplit("/t/", 1)[1] + ".png")
    assert qr.status == 200 and (await qr.read()).startswith(b"\x89PNG")
    mine = await say(callbacks, "我的票")
    assert "沙丘" in mine and "查看电子票" in mine


async def test_a_missing_count_is_asked_with_buttons_and_cancel_releases_the_seats(
    callbacks, clock
) -> None:
    show = await _evening_show("沙丘", clock)
    when = show.starts_at.astimezone(SHANGHAI)
    asked = await say(callbacks, f"明天{when:%H:%M}的沙丘2还有票吗我想买")
    assert "几张" in asked and "2张" in asked
    offer = await say(callbacks, "2张")
    assert "座位：" in offer
    order = await Order.get(openid=OPENID)
    bye = await say(callbacks, "取消")
    assert "已取消" in bye
    await order.refresh_from_db()
    assert order.state == OrderState.CANCELLED


async def test_a_row_change_moves_the_hold(callbacks, clock) -> None:
    show = await _evening_show("沙丘", clock)
    when = show.starts_at.astimezone(SHANGHAI)
    await say(callbacks, f"买2张明天{when:%H:%M}沙丘2")
    moved = await say(callbacks, "换到3排")
    assert "3排" in moved
    order = await Order.get(openid=OPENID)
    assert all(s.startswith("3-") for s in order.seats)


async def test_refund_by_chat(callbacks, client, clock) -> None:
    show = await _evening_show("沙丘", clock)
    when = show.starts_at.astimezone(SHANGHAI)
    await say(callbacks, f"买1张明天{when:%H:%M}沙丘2")
    await _pay(client, await say(callbacks, "确认"))
    asked = await say(callbacks, "我要退票")
    assert "确认退票" in asked
    done = await say(callbacks, "确认")
    assert "已退票" in done
    order = await Order.get(openid=OPENID)
    assert order.state == OrderState.REFUNDED


@pytest.mark.parametrize("answer", ["不是", "算了"])
async def test_declining_the_refund_keeps_the_ticket(callbacks, client, clock, answer) -> None:
    show = await _evening_show("沙丘", clock)
    when = show.starts_at.astimezone(SHANGHAI)
    await say(callbacks, f"买1张明天{when:%H:%M}沙丘2")
    await _pay(client, await say(callbacks, "确认"))
    await say(callbacks, "退票")
    await say(callbacks, answer)
    order = await Order.get(openid=OPENID)
    assert order.state == OrderState.ISSUED


async def test_the_payment_notify_endpoint_refuses_forgeries(client) -> None:
    resp = await client.post("/api/pay/notify", data=b'{"id":"x"}', headers={
        "Wechatpay-Timestamp": "1", "Wechatpay-Nonce": "n", "Wechatpay-Signature": "c2ln",
        "Wechatpay-Serial": "PUB_KEY_ID_X",
    })
    assert resp.status == 401
    assert client.app[API].payments.sandbox


def _scan(secret_or_url: str, staff: str, at: int) -> str:
    return event_xml(
        "ww_corp", staff, "scancode_waitmsg", "scan", agent_id=1000002, create_time=at,
        extra=(
            "<ScanCodeInfo><ScanType><![CDATA[qrcode]]></ScanType>"
            f"<ScanResult><![CDATA[{secret_or_url}]]></ScanResult></ScanCodeInfo>"
        ),
    )


async def test_staff_scan_the_e_ticket_at_the_door_once(callbacks, client, clock) -> None:
    show = await _evening_show("沙丘", clock)
    when = show.starts_at.astimezone(SHANGHAI)
    await say(callbacks, f"买1张明天{when:%H:%M}沙丘2")
    await _pay(client, await say(callbacks, "确认"))
    ticket = await Ticket.get(order__openid=OPENID)
    early = await callbacks.wecom_post(_scan(ticket.secret, "staff01", int(clock.timestamp())))
    assert "不是今天的场次" in early[1]["Content"]
    clock.set(show.starts_at - timedelta(minutes=20))
    status, reply = await callbacks.wecom_post(_scan(ticket.secret, "staff01", int(clock.timestamp())))
    assert status == 200 and "检票成功" in reply["Content"] and ticket.seat.replace("-", "排") in reply["Content"]
    clock.advance(seconds=5)
    status, again = await callbacks.wecom_post(
        _scan(f"http://127.0.0.1:8080/t/{ticket.secret}", "staff02", int(clock.timestamp()))
    )
    assert "已检过票" in again["Content"]
    forged = await callbacks.wecom_post(_scan("a" * 32, "staff01", int(clock.timestamp()) + 1))
    assert "无效票码" in forged[1]["Content"]
    await ticket.refresh_from_db()
    assert ticket.checked_in_by == "staff01"


async def test_a_request_without_a_time_offers_the_shows_as_buttons(callbacks, clock) -> None:
    asked = await say(callbacks, "我想买两张沙丘2的票")
    assert "选一场" in asked and "msgmenucontent=" in asked
    first_choice = re.search(r"msgmenucontent=([^&]+)&", asked).group(1)
    offer = await say(callbacks, first_choice)
    assert "座位：" in offer
    order = await Order.get(openid=OPENID)
    assert order.state == OrderState.HELD and len(order.seats) == 2


async def test_two_shows_at_the_same_time_are_offered_as_buttons_not_guessed(callbacks, clock) -> None:
    show = await _evening_show("沙丘", clock)
    other_hall = await Showtime.filter(starts_at=show.starts_at).exclude(hall_id=show.hall_id).first()
    if other_hall is None:
        from domain.cinemas import Hall
        hall = await Hall.filter(cinema_id=show.cinema_id).exclude(id=show.hall_id).first()
        await Showtime.create(
            cinema_id=show.cinema_id, hall=hall, film_id=show.film_id, starts_at=show.starts_at,
            ends_at=show.ends_at, format="2D", base_price_fen=4500,
        )
    else:
        other_hall.film_id = show.film_id
        await other_hall.save()
    when = show.starts_at.astimezone(SHANGHAI)
    asked = await say(callbacks, f"买两张明天{when:%H:%M}沙丘2")
    assert asked.count(f"{when:%H:%M}") >= 2 and "选一场" in asked
    assert not await Order.exists(openid=OPENID)


async def test_an_unnamed_film_is_asked_for_with_buttons(callbacks) -> None:
    asked = await say(callbacks, "我要买票")
    assert "想看哪部电影" in asked and "msgmenucontent=" in asked


async def test_a_forgotten_offer_expires_and_confirm_then_does_nothing(callbacks, clock) -> None:
    show = await _evening_show("沙丘", clock)
    when = show.starts_at.astimezone(SHANGHAI)
    await say(callbacks, f"买1张明天{when:%H:%M}沙丘2")
    clock.advance(minutes=15)
    late = await say(callbacks, "确认")
    assert "点此支付" not in late
    order = await Order.get(openid=OPENID)
    assert order.state == OrderState.HELD  # the expiry job moves it; nothing was bought
    # The seats are free again for someone else.
    other = await say(callbacks, f"买1张明天{when:%H:%M}沙丘2", openid="oCineBotOtherBuyer0000000002")
    assert "座位：" in other


async def test_a_half_finished_purchase_is_forgotten_after_its_timeout(callbacks, clock) -> None:
    asked = await say(callbacks, "我要买票")
    assert "想看哪部电影" in asked
    prompt = await say(callbacks, "沙丘2")  # inside the form: the film fills it, count is asked
    assert "几张" in prompt
    clock.advance(minutes=11)
    later = await say(callbacks, "2张")
    assert "座位：" not in later and "《沙丘" not in later  # the form is gone: no purchase
    assert not await Order.exists(openid=OPENID)


async def test_a_number_inside_a_film_name_is_not_a_ticket_count(callbacks, clock) -> None:
    await say(callbacks, "我要买票")
    assert "几张" in await say(callbacks, "沙丘2")
    # Asked 「要几张」, the user asks about another film whose name ends in 2: no seats held,
    # no show offered for two tickets.
    answer = await say(callbacks, "今晚哪吒2几点")
    assert "座位：" not in answer and "选一场" not in answer
    assert not await Order.exists(openid=OPENID)


@pytest.mark.parametrize("count", ["要2个", "3", "两张"])
async def test_a_count_with_its_unit_or_alone_answers_how_many(callbacks, clock, count) -> None:
    await say(callbacks, "我要买票")
    assert "几张" in await say(callbacks, "沙丘2")
    moved_on = await say(callbacks, count)  # to the show to pick (or straight to the seats)
    assert "几张" not in moved_on and ("选一场" in moved_on or "座位：" in moved_on)
