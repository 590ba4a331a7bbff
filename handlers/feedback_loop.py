"""The closed loop's words and wiring, shared by chat (``handlers.feedback``), the H5 survey
(``handlers.api.feedback``) and the post-show push (``jobs.feedback``).

``FeedbackMessages`` records what people are told (outbox rows, in the caller's
transaction where there is one): the manager's reply with the follow-up
question, a comment that arrives after the card went out, the invitation after a
show. ``alert_if_needed`` turns an alarming response into the complaint work
order whose card the service desk's notify (``desk``) sends to the duty manager.
"""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import datetime, timedelta
from typing import Any, Protocol

from tortoise.backends.base.client import BaseDBAsyncClient

from bot.infra import tokens
from bot.infra.clock import Clock, local
from bot.infra.logs import mask_phone
from bot.nlu import sentiment
from bot.wechat.qrsheet import survey_url
from bot.chat.replies import Button, Reply
from domain import feedback as fb
from domain.cinemas import Cinema
from domain.feedback import Coupon, FeedbackResponse, TextReading, Visit
from domain.outbox import enqueue
from domain.people import Member
from domain.pricing import format_fen
from domain.touchpoints import Touchpoint
from domain.workorders import Who, WorkOrder, managers, on_duty

log = logging.getLogger(__name__)

PHONE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
STAR_LABELS = {5: "非常满意", 4: "满意", 3: "一般", 2: "不满意", 1: "很差"}
STAR_BUTTONS = tuple(Button(f"{'★' * n} {STAR_LABELS[n]}", f"{n}星") for n in (5, 4, 3, 2, 1))
PAGE_TTL = timedelta(hours=24)
FOLLOW_UP_BUTTONS = (Button("解决了", "解决了"), Button("没有解决", "没有解决"))


class Desk(Protocol):
    """The service desk's notify (``handlers.workorder_messages.WorkOrderMessages``)."""

    async def __call__(
        self, event: str, order: WorkOrder, *, using: BaseDBAsyncClient, **info: Any
    ) -> None: ...

    def wake(self) -> None: ...


class SilentDesk:
    """Stands in when the app has no service desk: orders are opened, nobody is carded."""

    async def __call__(
        self, event: str, order: WorkOrder, *, using: BaseDBAsyncClient, **info: Any
    ) -> None:
        return None

    def wake(self) -> None:
        return None


def desk_or_silent(desk: Any) -> Desk:
    return desk if desk is not None else SilentDesk()


def hhmm(dt: datetime) -> str:
    return f"{local(dt):%H:%M}"


def show_text(response: FeedbackResponse | Visit) -> str:
    title = response.film_title
    starts = response.show_starts_at if isinstance(response, FeedbackResponse) else response.starts_at
    if not title or starts is None:
        return ""
    return f"《{title}》{hhmm(starts)} {response.hall or ''}".strip()


async def phone_of(response: FeedbackResponse) -> str | None:
    if response.phone:
        return response.phone
    found = PHONE.search(response.comment or "")
    if found:
        return found.group(0)
    member = await Member.get_or_none(openid=response.visitor)
    return member.phone if member is not None and member.phone else None


def stars_text(response: FeedbackResponse) -> str:
    parts = []
    if response.stars is not None:
        parts.append(f"{response.stars}星")
    if response.nps is not None:
        parts.append(f"推荐{response.nps}分")
    return "/".join(parts)


async def alert_summary(response: FeedbackResponse) -> tuple[str, str]:
    """(the card's one line, the order's description): rating, comment, show, masked phone."""
    line = f"差评 {stars_text(response)}"
    if response.comment:
        line += f"「{response.comment[:30]}」"
    elif response.aspects:
        line += "：" + "、".join(response.aspects)
    show = show_text(response)
    if show:
        line += f" {show}"
    phone = await phone_of(response)
    if phone:
        line += f" ☎{mask_phone(phone)}"
    details = [f"评分：{stars_text(response) or '—'}"]
    if response.aspects:
        details.append("方面：" + "、".join(response.aspects))
    if response.comment:
        details.append(f"留言：{response.comment}")
    if show:
        details.append(f"场次：{show}")
    if phone:
        details.append(f"电话：{mask_phone(phone)}")
    return line, "\n".join(details)


async def read_comment(text: str) -> TextReading | None:
    """Category and sentiment of a comment; None if the model cannot be had right now."""
    if not text.strip():
        return None
    try:
        reading = await sentiment.read(text)
    except Exception:
        log.exception("the feedback model failed; the comment is kept unclassified")
        return None
    return TextReading(reading.category, reading.sentiment)


async def alert_if_needed(
    response: FeedbackResponse, touchpoint: Touchpoint, now: datetime, desk: Any,
) -> tuple[WorkOrder | None, bool]:
    """Open the complaint (and card the duty manager) when the response is alarming and has
    not raised one yet: (order, opened now)."""
    if response.work_order_id is None and not fb.is_alarming(response):
        return None, False
    if response.work_order_id is not None:
        return await WorkOrder.get_or_none(id=response.work_order_id), False
    notify = desk_or_silent(desk)
    summary, description = await alert_summary(response)
    if fb.can_reach(response.visitor):
        reporter = Who(response.visitor, "audience", response.cinema_id, "顾客")
    else:
        reporter = Who(response.visitor, "visitor", response.cinema_id, "匿名顾客（网页）")
    order, created = await fb.raise_alert(
        response, touchpoint, now=now, summary=summary, description=description,
        notify=notify, reporter=reporter,
    )
    if created:
        notify.wake()
    return order, created


class FeedbackMessages:
    """What the audience and staff are told by the feedback loop (outbox rows)."""

    def __init__(self, public_url: str, wecom_agent_id: int, clock: Clock, secret_key: str = "") -> None:
        self.public_url = public_url.rstrip("/")
        self.agent_id = wecom_agent_id
        self.clock = clock
        self.secret_key = secret_key

    # --- the manager's reply (domain.feedback.Tell) --------------------------------------------

    async def tell(
        self, response: FeedbackResponse, order: WorkOrder, text: str, coupon: Coupon | None,
        *, ask: bool, using: BaseDBAsyncClient,
    ) -> None:
        cinema = await Cinema.get_or_none(id=response.cinema_id).using_db(using)
        touchpoint = await Touchpoint.get_or_none(id=response.touchpoint_id).using_db(using)  # type: ignore[attr-defined]
        place = touchpoint.name if touchpoint is not None else ""
        lines = [f"【{cinema.name if cinema else '影城'}】关于您{('在' + place) if place else ''}的评价（编号 {order.ref}）：", text]
        if coupon is not None:
            lines.append(
                f"🎁 送您一张 {format_fen(coupon.value_fen)} 观影券，券码 {coupon.code}，"
                f"{local(coupon.expires_at):%m月%d日}前购票时出示即可。"
            )
        if ask:
            reply = Reply.say("\n".join(lines) + "\n\n问题解决了吗？", *FOLLOW_UP_BUTTONS)
            # The desk tells a reporter "已处理" under this key when the order resolves: the
            # reply is that message, so it is recorded once.
            key = f"wo:{order.id}:v{order.version}:resolved:{order.reporter}"
        else:
            reply = Reply.say("\n".join(lines))
            digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]
            key = f"fb:{response.id}:reply:{digest}:{coupon.code if coupon else ''}"
        await enqueue(
            channel="wechat", recipient=response.visitor,
            payload={"msgtype": "text", "text": {"content": reply.render_wechat_text()}},
            idempotency_key=key, now=self.clock.now(), using=using,
        )

    # --- a comment after the card ----------------------------------------------------------------

    async def supplement(self, response: FeedbackResponse, order: WorkOrder) -> int:
        """The comment reached us after the card: the people holding the card get it as a note."""
        people = [p for p in dict.fromkeys([order.assignee, *(order.watchers or [])]) if p]
        digest = hashlib.sha1(response.comment.encode("utf-8")).hexdigest()[:10]
        note = f"💬 {order.ref} 顾客补充：「{response.comment[:200]}」"
        phone = await phone_of(response)
        if phone:
            note += f"\n☎ {mask_phone(phone)}"
        note += f"\n回复顾客：发送「回复 {order.ref}: 您的回复」"
        for userid in people:
            await enqueue(
                channel="wecom", recipient=userid,
                payload={"msgtype": "text", "agentid": self.agent_id, "text": {"content": note}},
                idempotency_key=f"fb:{response.id}:note:{digest}:{userid}", now=self.clock.now(),
            )
        return len(people)

    # --- a coupon beyond the giver's right (domain.rights) --------------------------------------

    async def coupon_refused(
        self, order: WorkOrder, giver: str, value_fen: int, limit_fen: int, key: str,
    ) -> list[str]:
        """The duty managers hear of a refused coupon, to give it themselves if it is deserved.
        Returns who was told (on duty in management, else every manager of the cinema)."""
        now = self.clock.now()
        people = [s.userid for s in await on_duty(order.cinema_id, "management", now)]
        if not people:
            people = [s.userid for s in await managers(order.cinema_id)]
        yuan = value_fen // 100
        note = (
            f"🎫 {giver} 想给工单 {order.ref} 的顾客送 {format_fen(value_fen)} 券，超出其权限"
            f"（上限 {format_fen(limit_fen)}），未发出。\n如同意，请发送「回复 {order.ref}: "
            f"您的话，送{yuan}元券」；调整上限：「员工补偿上限设为20元」。"
        )
        for userid in people:
            await enqueue(
                channel="wecom", recipient=userid,
                payload={"msgtype": "text", "agentid": self.agent_id, "text": {"content": note}},
                idempotency_key=f"rights:{key}:{userid}", now=now,
            )
        return people

    # --- the invitation after a show (domain.feedback.Invite) -----------------------------------

    def survey_link(self, touchpoint: Touchpoint, openid: str, visit: Visit) -> str:
        url = survey_url(self.public_url, touchpoint.code) + f"?show={visit.showtime_id}"
        if self.secret_key:
            # The page's own token (purpose "h5", as ``handlers.api.auth.page_token``): the
            # survey knows who answers and which show without asking.
            expires = self.clock.now() + PAGE_TTL
            url += "&token=" + tokens.sign(self.secret_key, "h5", openid, expires.timestamp())
        return url

    async def invite(
        self, openid: str, visit: Visit, touchpoint: Touchpoint, how: str, template_id: str | None,
        *, using: BaseDBAsyncClient,
    ) -> None:
        day = fb.business_day(visit.ends_at).isoformat()
        if how == "consent" and template_id:
            payload: dict[str, Any] = {
                "kind": "subscribe", "template_id": template_id,
                "page": f"pages/feedback/index?tp={touchpoint.code}&show={visit.showtime_id}",
                "data": {
                    "thing1": f"《{visit.film_title}》"[:20],
                    "time2": f"{local(visit.starts_at):%Y-%m-%d %H:%M}",
                    "thing3": "点击评价本次观影，约30秒",
                },
            }
        else:
            link = self.survey_link(touchpoint, openid, visit)
            reply = Reply.say(
                f"🎬《{visit.film_title}》散场啦，这次观影体验怎么样？点星星打分（约30秒）：",
                *STAR_BUTTONS,
            )
            content = reply.render_wechat_text() + f'\n\n也可以<a href="{link}">打开问卷</a>'
            payload = {"msgtype": "text", "text": {"content": content}}
        await enqueue(
            channel="wechat", recipient=openid, payload=payload,
            idempotency_key=f"fb:invite:{openid}:{day}", now=self.clock.now(), using=using,
        )
