"""The survey reaches people outside chat: pushed 10–30 minutes after a show to the ticket
holders who can receive it, and on the H5 page a printed code or the e-ticket opens."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from bot.app import REDIS
from bot.wechat.chatclient import next_msg_id, text_xml
from bot.infra.clock import SHANGHAI
from domain import feedback as fb
from domain.catalog import Showtime
from domain.feedback import FeedbackInvite, FeedbackResponse, MessageConsent
from domain.orders import Order, OrderState, Ticket, new_secret
from domain.outbox import OutboundMessage
from domain.people import Member
from domain.touchpoints import Touchpoint
from domain.workorders import WorkOrder
from handlers.api.auth import page_token
from handlers.api.context import API
from handlers.feedback_loop import FeedbackMessages
from jobs import feedback as feedback_job
from jobs.context import JobContext
from jobs.locks import LeaderLocks

WINDOW = "oCineBotPushWindow0000000001"
CONSENTED = "oMiniProgramConsent000000001"
UNREACHABLE = "oCineBotPushGone000000000001"
ANSWERED = "oCineBotPushAnswered00000001"
REFUNDED = "oCineBotPushRefunded00000001"


async def _show(clock: Any, hall: str, hour: int = 10) -> Showtime:
    today = clock.now().astimezone(SHANGHAI).date()
    start = datetime.combine(today, time(hour), SHANGHAI).astimezone(UTC)
    return await Showtime.get(starts_at=start, hall__name=hall).prefetch_related("film", "hall")


_seats = iter(range(1, 30))


async def _holder(
    show: Showtime, openid: str, *, channel: str = "chat", paid: datetime, state: OrderState = OrderState.ISSUED,
) -> Ticket:
    seat = f"5-{next(_seats)}"
    order = await Order.create(
        no=f"T{new_secret(12)}", cinema_id=show.cinema_id, showtime=show, openid=openid,  # type: ignore[attr-defined]
        channel=channel, state=state, hold_id="h", seats=[seat], quote={}, amount_fen=4500,
        paid_fen=4500, expires_at=paid, created_at=paid, paid_at=paid,
    )
    return await Ticket.create(order=order, showtime=show, seat=seat, price_fen=4500, secret=new_secret())


async def test_ticket_holders_are_invited_once_and_only_if_they_can_receive_it(
    client: TestClient, callbacks: Any, clock: Any
) -> None:
    show = await _show(clock, "2号厅")
    now = clock.now()
    await _holder(show, WINDOW, paid=now - timedelta(hours=1))  # paid an hour ago: window open
    await _holder(show, CONSENTED, channel="miniprogram", paid=now - timedelta(hours=1))
    await fb.grant_consent(CONSENTED, "tmpl-feedback", now)
    old = now - timedelta(days=3)
    await _holder(show, UNREACHABLE, paid=old)  # bought days ago, silent since
    await Member.create(openid=UNREACHABLE, first_seen=old, last_seen=old)
    await _holder(show, ANSWERED, paid=now - timedelta(hours=1))
    await _holder(show, REFUNDED, paid=now - timedelta(hours=1), state=OrderState.REFUNDED)

    settings_url = client.app[API].public_url
    messages = FeedbackMessages(settings_url, 1000002, clock, client.app[API].secret_key)
    ctx = JobContext(clock=clock, locks=LeaderLocks(client.app[REDIS]), feedback_invite=messages.invite)

    # Before the show ends nothing goes out; the answered one rates at the exit meanwhile.
    assert await feedback_job.invite_after_shows(ctx) == 0
    clock.set(show.ends_at + timedelta(minutes=5))
    exit_point = await Touchpoint.get(code="demo-h2")
    answered, _ = await fb.start_response(touchpoint=exit_point, visitor=ANSWERED, now=clock.now(), channel="chat")
    await fb.answer(answered, clock.now(), stars=5)
    assert await feedback_job.invite_after_shows(ctx) == 0  # only 5 minutes after the end

    clock.set(show.ends_at + timedelta(minutes=15))
    async with ctx.locks.leader(feedback_job.JOB_ID, 60) as held:  # another replica's tick
        assert held and await feedback_job.invite_after_shows(ctx) == 0
    assert await feedback_job.invite_after_shows(ctx) == 2
    invites = {i.openid: (i.how, i.reason) for i in await FeedbackInvite.all()}
    assert invites == {
        WINDOW: ("window", ""), CONSENTED: ("consent", ""),
        UNREACHABLE: ("skipped", "unreachable"), ANSWERED: ("skipped", "answered"),
    }
    [custom] = await OutboundMessage.filter(recipient=WINDOW)
    content = custom.payload["text"]["content"]
    assert show.film.title in content and "msgmenucontent=4星" in content
    assert f"/s/demo-push?show={show.id}&amp;token=" in content or f"/s/demo-push?show={show.id}&token=" in content
    [subscribe] = await OutboundMessage.filter(recipient=CONSENTED)
    assert subscribe.payload["kind"] == "subscribe" and subscribe.payload["template_id"] == "tmpl-feedback"
    assert subscribe.payload["page"].startswith("pages/feedback/index?tp=demo-push")
    assert (await MessageConsent.get(openid=CONSENTED)).remaining == 0  # one send per consent
    assert not await OutboundMessage.filter(recipient__in=[UNREACHABLE, ANSWERED, REFUNDED]).exists()

    # Once per visit: later ticks (still inside the 30 minutes) invite nobody again.
    clock.advance(minutes=5)
    assert await feedback_job.invite_after_shows(ctx) == 0
    assert await OutboundMessage.filter(idempotency_key__startswith="fb:invite:").count() == 2

    # The invited visitor taps a star in that message: the push survey of that show.
    status, reply = await callbacks.wechat_post(text_xml("gh_demo", WINDOW, "3星", next_msg_id()))
    assert status == 200 and "推荐" in reply["Content"]
    response = await FeedbackResponse.get(visitor=WINDOW).prefetch_related("touchpoint")
    assert response.touchpoint.code == "demo-push" and response.channel == "push"
    assert (response.stars, response.showtime_id, response.hall) == (3, show.id, "2号厅")


async def test_the_h5_survey_records_edits_and_alerts(client: TestClient, clock: Any) -> None:
    page = await client.get("/s/demo-h2")
    assert page.status == 200
    html = await page.text()
    assert "2号厅出口" in html and "/api/feedback" in html and "推荐给朋友" in html
    assert (await client.get("/s/nowhere")).status == 404

    first = await client.post("/api/feedback", json={"touchpoint": "demo-h2", "stars": 5, "nps": 9, "aspects": ["画面"]})
    assert first.status == 201, await first.text()
    body = await first.json()
    assert body["alerted"] is False and body["response"]["aspects"] == ["画面"]
    assert "cb_visitor" in first.cookies
    # The same phone again the same day: the same response, edited; now it alerts, once.
    again = await client.post("/api/feedback", json={"touchpoint": "demo-h2", "stars": 2, "comment": "厕所太脏了还没纸"})
    assert again.status == 200
    edited = await again.json()
    assert edited["response"]["id"] == body["response"]["id"] and edited["response"]["edits"] == 1
    assert edited["alerted"] is True and edited["reference"].startswith("W")
    assert edited["response"]["category"] == "cleanliness" and edited["response"]["sentiment"] == "neg"
    order = await WorkOrder.get(ref=edited["reference"])
    assert order.reporter_role == "visitor" and order.reporter_name.startswith("匿名")
    await client.post("/api/feedback", json={"touchpoint": "demo-h2", "stars": 1})
    assert await WorkOrder.all().count() == 1
    # Reopening the page shows what was given.
    assert '&quot;stars&quot;: 1' in await (await client.get("/s/demo-h2")).text()

    # From the e-ticket page: the ticket says who and which show.
    show = await _show(clock, "2号厅")
    ticket = await _holder(show, WINDOW, paid=clock.now())
    eticket = await client.get(f"/t/{ticket.secret}")
    assert f"/s/demo-eticket?ticket={ticket.secret}" in await eticket.text()
    client.session.cookie_jar.clear()
    linked = await client.post("/api/feedback", json={"touchpoint": "demo-eticket", "stars": 4, "ticket": ticket.secret})
    assert linked.status == 201
    data = (await linked.json())["response"]
    assert data["showtime"]["id"] == show.id and data["showtime"]["hall"] == "2号厅"
    assert await FeedbackResponse.filter(visitor=WINDOW).count() == 1

    for bad, status in (
        ({"touchpoint": "demo-h2", "stars": 6}, 422), ({"touchpoint": "demo-h2"}, 422),
        ({"touchpoint": "nowhere", "stars": 3}, 404), ({"touchpoint": "demo-h2", "stars": 3, "aspects": ["价格"]}, 422),
    ):
        resp = await client.post("/api/feedback", json=bad)
        assert resp.status == status, (bad, await resp.text())


async def test_a_subscription_consent_is_recorded_per_template(client: TestClient, clock: Any) -> None:
    token = page_token(client.app[API].secret_key, CONSENTED, clock.now())
    headers = {"Authorization": f"Bearer {token}"}
    for expected in (1, 2):
        resp = await client.post("/api/feedback/consent", json={"template_id": "tmpl-a"}, headers=headers)
        assert resp.status == 200 and (await resp.json())["remaining"] == expected
    assert (await client.post("/api/feedback/consent", json={"template_id": "tmpl-a"})).status == 401
