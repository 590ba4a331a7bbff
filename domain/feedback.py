"""Audience feedback: micro-survey responses, the closed loop, invitations and the measures.

A response is one visitor's answers at one touchpoint on one visit (the cinema's
business day, which ends at 03:00): overall stars 1–5, NPS 0–10, quick aspects
and an optional comment. The same visitor scanning the same place again the same
day edits it; the database's unique key says so, not the caller.

A bad rating (1–2 stars, NPS ≤ 6, or an urgent comment) opens one complaint work
order per response (``source_key`` ``feedback:<id>``), whose notify cards the
duty manager. The manager's reply resolves it and reaches the audience with an
optional coupon and the question 「问题解决了吗？」; 「没有解决」 reopens it.

The measures (NPS, CSAT, intervals, category shares, acknowledge and resolve
times) are computed here from the rows and the work-order timeline.
"""

from __future__ import annotations

import math
import secrets
import statistics
from collections import Counter
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from tortoise import fields
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.models import Model
from tortoise.transactions import in_transaction

from domain import rights, rollups
from domain.catalog import Showtime
from domain.days import business_day, day_bounds
from domain.orders import SOLD_STATES, Order
from domain.people import Member
from domain.touchpoints import PRINTED, Touchpoint, TouchpointKind
from domain.workorders import (
    ACTIVE,
    CATEGORIES,
    CATEGORY_LABELS,
    Kind,
    Notify,
    State,
    Who,
    WorkOrder,
    WorkOrderEvent,
    act,
    acted_on,
    managers,
    on_duty,
    open_order,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")

ASPECTS = ("画面", "声音", "座椅", "卫生", "服务", "餐饮", "温度")
ASPECT_CATEGORIES = {
    "画面": "picture", "声音": "sound", "座椅": "seat", "卫生": "cleanliness", "服务": "staff",
    "餐饮": "concession", "温度": "temperature",
}
SENTIMENTS = ("neg", "neu", "pos")
# A comment with one of these words is urgent whatever the stars say.
URGENT_WORDS = (
    "受伤", "摔倒", "摔伤", "流血", "晕倒", "昏倒", "着火", "起火", "冒烟", "烟雾", "漏电", "触电",
    "急救", "救护车", "过敏",
)
# These raise the priority of a complaint: the visitor wants money back or to go further.
ESCALATING_WORDS = (
    "退款", "退钱", "投诉", "赔偿", "索赔", "曝光", "12315", "消协", "报警", "维权", "律师", "差评",
    "骗", "再也不来",
)
PUSH_AFTER = (timedelta(minutes=10), timedelta(minutes=30))  # after the show ends
SERVICE_WINDOW = timedelta(hours=48)  # WeChat's customer-service window
COUPON_DAYS = 30
MAX_COMMENT = 500


class FollowUp(StrEnum):
    NONE = "none"
    ASKED = "asked"  # 「问题解决了吗？」 sent with the manager's reply
    RESOLVED = "resolved"
    UNRESOLVED = "unresolved"


class FeedbackResponse(Model):
    """The answers of one visitor at one touchpoint on one visit."""

    id = fields.IntField(primary_key=True)
    cinema_id = fields.IntField(db_index=True)
    touchpoint: fields.ForeignKeyRelation[Touchpoint] = fields.ForeignKeyField(
        "models.Touchpoint", related_name="responses", on_delete=fields.RESTRICT
    )
    visitor = fields.CharField(max_length=64, db_index=True)  # openid, or "h5:<cookie>"
    visit_day = fields.DateField(db_index=True)  # the cinema's business day
    channel = fields.CharField(max_length=8)  # chat | h5 | push
    showtime_id = fields.IntField(null=True)
    film_id = fields.IntField(null=True)
    film_title = fields.CharField(max_length=64, null=True)
    hall = fields.CharField(max_length=16, null=True)
    show_starts_at = fields.DatetimeField(null=True)
    stars = fields.SmallIntField(null=True)
    nps = fields.SmallIntField(null=True)
    aspects = fields.JSONField(default=list)
    comment = fields.TextField(default="")
    phone = fields.CharField(max_length=20, null=True)
    category = fields.CharField(max_length=16, null=True)  # of the comment
    sentiment = fields.CharField(max_length=3, null=True)  # neg | neu | pos
    priority = fields.CharField(max_length=2, default="P3")
    work_order_id = fields.IntField(null=True, unique=True)
    follow_up = fields.CharEnumField(FollowUp, max_length=12, default=FollowUp.NONE)
    follow_up_at = fields.DatetimeField(null=True)
    edits = fields.IntField(default=0)
    created_at = fields.DatetimeField()
    updated_at = fields.DatetimeField()

    class Meta:
        table = "feedback_response"
        unique_together = (("visitor", "visit_day", "touchpoint"),)


class FeedbackInvite(Model):
    """One survey invitation per visitor per visit, pushed after a show (or skipped, and why)."""

    id = fields.IntField(primary_key=True)
    openid = fields.CharField(max_length=64)
    visit_day = fields.DateField()
    cinema_id = fields.IntField()
    showtime_id = fields.IntField()
    how = fields.CharField(max_length=12)  # window | consent | skipped
    reason = fields.CharField(max_length=32, default="")
    created_at = fields.DatetimeField()

    class Meta:
        table = "feedback_invite"
        unique_together = (("openid", "visit_day"),)


class MessageConsent(Model):
    """Subscription-message consent: each accepted one-time subscription allows one send."""

    id = fields.IntField(primary_key=True)
    openid = fields.CharField(max_length=64)
    template_id = fields.CharField(max_length=64)
    remaining = fields.IntField(default=0)
    granted_at = fields.DatetimeField()
    updated_at = fields.DatetimeField()

    class Meta:
        table = "message_consent"
        unique_together = (("openid", "template_id"),)


class Coupon(Model):
    """A compensation coupon a manager sends with a reply: the code is shown at the box office."""

    id = fields.IntField(primary_key=True)
    code = fields.CharField(max_length=12, unique=True)
    cinema_id = fields.IntField(db_index=True)
    openid = fields.CharField(max_length=64, db_index=True)
    value_fen = fields.IntField()
    reason = fields.CharField(max_length=64, default="")
    response_id = fields.IntField(null=True)
    work_order_id = fields.IntField(null=True)
    issued_by = fields.CharField(max_length=64)
    created_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    redeemed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "coupon"


class FeedbackError(Exception):
    """A refused feedback action; ``message`` is what the person is told (Chinese)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class CouponRefused(FeedbackError):
    """A coupon beyond the giver's right (``domain.rights``): nothing was sent or changed."""

    def __init__(self, message: str, value_fen: int, limit_fen: int) -> None:
        super().__init__("over_limit", message)
        self.value_fen, self.limit_fen = value_fen, limit_fen


# --- the visit ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Visit:
    """The show a visitor holds a ticket for today."""

    showtime_id: int
    film_id: int
    film_title: str
    hall: str
    starts_at: datetime
    ends_at: datetime


async def visit_today(
    openid: str, cinema_id: int, now: datetime, hall: str | None = None
) -> Visit | None:
    """The show of today this visitor holds a ticket for: in ``hall`` if one is given and
    held, else the one that ended most recently (or is running), else the next."""
    start, end = day_bounds(business_day(now))
    orders = await Order.filter(
        openid=openid, cinema_id=cinema_id, state__in=[s.value for s in SOLD_STATES],
        showtime__starts_at__gte=start, showtime__starts_at__lt=end,
    ).prefetch_related("showtime__film", "showtime__hall")
    shows: dict[int, Showtime] = {o.showtime.id: o.showtime for o in orders}
    if not shows:
        return None

    def rank(s: Showtime) -> tuple[int, int, float]:
        other_hall = int(hall is not None and s.hall.name != hall)
        upcoming = int(s.starts_at > now)
        return other_hall, upcoming, abs((now - s.ends_at).total_seconds())

    best = min(shows.values(), key=rank)
    return Visit(best.id, best.film.id, best.film.title, best.hall.name, best.starts_at, best.ends_at)


async def visit_of_show(showtime_id: int) -> Visit | None:
    show = await Showtime.get_or_none(id=showtime_id).prefetch_related("film", "hall")
    if show is None:
        return None
    return Visit(show.id, show.film.id, show.film.title, show.hall.name, show.starts_at, show.ends_at)


# --- responses ------------------------------------------------------------------------------


def source_of(touchpoint: Touchpoint) -> str:
    """The work-order source: a scan of a printed code or the e-ticket page is "qr"."""
    return "qr" if touchpoint.kind in (*PRINTED, TouchpointKind.ETICKET) else "chat"


async def start_response(
    *, touchpoint: Touchpoint, visitor: str, now: datetime, channel: str,
    visit: Visit | None = None,
) -> tuple[FeedbackResponse, bool]:
    """The visitor's response at this touchpoint for today's visit: (response, created).

    A second scan the same day returns the first (to be edited); a visit found only now
    (a ticket bought after the first scan) is linked to it."""
    day = business_day(now)
    key = {"visitor": visitor, "visit_day": day, "touchpoint_id": touchpoint.id}
    found = await FeedbackResponse.get_or_none(**key)
    if found is None:
        try:
            async with in_transaction() as conn:
                found = await FeedbackResponse.create(
                    **key, cinema_id=touchpoint.cinema_id, channel=channel, created_at=now,
                    updated_at=now, **_visit_fields(visit), using_db=conn,
                )
                await rollups.refresh_response(found.id, using=conn)
            return found, True
        except IntegrityError:  # the same scan twice at once: the other one created it
            found = await FeedbackResponse.get(**key)
    if visit is not None and found.showtime_id is None:
        async with in_transaction() as conn:
            before = await rollups.response_key(found.id, conn)
            await FeedbackResponse.filter(id=found.id, showtime_id=None).using_db(conn).update(
                **_visit_fields(visit)
            )
            await rollups.refresh_response(found.id, before, using=conn)  # it may move buckets
        await found.refresh_from_db()
    return found, False


def _visit_fields(visit: Visit | None) -> dict[str, Any]:
    if visit is None:
        return {}
    return {
        "showtime_id": visit.showtime_id, "film_id": visit.film_id, "film_title": visit.film_title,
        "hall": visit.hall, "show_starts_at": visit.starts_at,
    }


_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class TextReading:
    """What the comment classifier read (``bot.nlu.sentiment``), handed in by the caller."""

    category: str
    sentiment: str


def priority_of(text: str) -> str:
    """P1: someone may be hurt; P2: the visitor wants money back or to go further; else P3."""
    if any(w in text for w in URGENT_WORDS):
        return "P1"
    if any(w in text for w in ESCALATING_WORDS):
        return "P2"
    return "P3"


async def answer(
    response: FeedbackResponse, now: datetime, *, stars: Any = _UNSET, nps: Any = _UNSET,
    aspects: Any = _UNSET, comment: Any = _UNSET, phone: Any = _UNSET,
    reading: TextReading | None = None,
) -> FeedbackResponse:
    """Record answers (any subset); changing an earlier answer counts as an edit."""
    changes: dict[str, Any] = {}
    if stars is not _UNSET:
        if stars is not None and not (isinstance(stars, int) and 1 <= stars <= 5):
            raise FeedbackError("invalid", "星级应为 1–5。")
        changes["stars"] = stars
    if nps is not _UNSET:
        if nps is not None and not (isinstance(nps, int) and 0 <= nps <= 10):
            raise FeedbackError("invalid", "推荐度应为 0–10。")
        changes["nps"] = nps
    if aspects is not _UNSET:
        chosen = [a for a in ASPECTS if a in set(aspects or ())]
        changes["aspects"] = chosen
    if comment is not _UNSET:
        text = (comment or "").strip()[:MAX_COMMENT]
        changes["comment"] = text
        changes["priority"] = priority_of(text)
        if reading is not None and text:
            changes["category"] = reading.category if reading.category in CATEGORIES else "other"
            changes["sentiment"] = reading.sentiment if reading.sentiment in SENTIMENTS else "neu"
        elif not text:
            changes["category"] = changes["sentiment"] = None
    if phone is not _UNSET:
        changes["phone"] = phone or None
    edited = any(
        getattr(response, k) not in (None, "", []) and getattr(response, k) != v
        for k, v in changes.items() if k in ("stars", "nps", "aspects", "comment")
    )
    if not changes:
        return response
    changes["updated_at"] = now
    if edited:
        changes["edits"] = response.edits + 1
    async with in_transaction() as conn:
        await FeedbackResponse.filter(id=response.id).using_db(conn).update(**changes)
        await rollups.refresh_response(response.id, using=conn)
    for k, v in changes.items():
        setattr(response, k, v)
    return response


def is_alarming(response: FeedbackResponse) -> bool:
    """1–2 stars, NPS 0–6, an urgent comment, or an escalating and negative one."""
    if response.stars is not None and response.stars <= 2:
        return True
    if response.nps is not None and response.nps <= 6:
        return True
    if response.priority == "P1":
        return True
    return response.priority == "P2" and response.sentiment == "neg"


def alert_category(response: FeedbackResponse) -> str:
    """What the complaint is about: the comment's category, else the first aspect named."""
    if response.category and response.category != "other":
        return response.category
    for aspect in response.aspects or ():
        if aspect in ASPECT_CATEGORIES:
            return ASPECT_CATEGORIES[aspect]
    return response.category or "other"


def alert_severity(response: FeedbackResponse) -> str:
    if response.priority == "P1":
        return "P1"
    if response.priority == "P2" or (response.stars is not None and response.stars <= 2):
        return "P2"
    return "P3"


async def duty_managers(cinema_id: int, now: datetime) -> list[str]:
    """Who gets the card: the managers on duty, else every manager of the cinema."""
    people = await on_duty(cinema_id, "management", now)
    if not people:
        people = await managers(cinema_id)
    return [p.userid for p in people]


async def raise_alert(
    response: FeedbackResponse, touchpoint: Touchpoint, *, now: datetime, summary: str,
    description: str, notify: Notify, reporter: Who,
) -> tuple[WorkOrder, bool]:
    """The complaint work order of an alarming response: opened once per response however
    often it is edited or a callback retried. (order, created)."""
    if response.work_order_id is not None:
        existing = await WorkOrder.get_or_none(id=response.work_order_id)
        if existing is not None:
            return existing, False
    order, created = await open_order(
        cinema_id=response.cinema_id, kind=Kind.COMPLAINT, category=alert_category(response),
        summary=summary, reporter=reporter, now=now, severity=alert_severity(response),
        source=source_of(touchpoint), source_key=f"feedback:{response.id}",
        hall=response.hall or touchpoint.hall, touchpoint=touchpoint.name,
        description=description, watchers=await duty_managers(response.cinema_id, now),
        notify=notify,
    )
    await FeedbackResponse.filter(id=response.id, work_order_id=None).update(work_order_id=order.id)
    response.work_order_id = order.id
    return order, created


async def response_of(order: WorkOrder) -> FeedbackResponse | None:
    if not (order.source_key or "").startswith("feedback:"):
        return None
    return await FeedbackResponse.get_or_none(work_order_id=order.id).prefetch_related("touchpoint")


async def latest_alert_for(userid: str, cinema_id: int) -> WorkOrder | None:
    """The feedback complaint a manager's 「回复: …」 means: the newest still open that they
    hold or watch, else the newest still open of the cinema."""
    recent = await WorkOrder.filter(
        cinema_id=cinema_id, source_key__startswith="feedback:",
        state__in=[s.value for s in ACTIVE],
    ).order_by("-created_at", "-id").limit(50)
    mine = [o for o in recent if o.assignee == userid or userid in (o.watchers or [])]
    return (mine or recent or [None])[0]


async def replied_with(message_key: str) -> WorkOrder | None:
    """The complaint a manager's message has already answered (or begun to): a 「回复: …」
    naming no order, run again after a crash, must answer the same audience, not the next."""
    return await acted_on([f"{message_key}:{step}" for step in ("reply", "assign", "ack")])


# --- the manager's reply and the follow-up ---------------------------------------------------


class Tell(Protocol):
    """Records the reply to the audience (outbox) in the caller's transaction."""

    def __call__(
        self, response: FeedbackResponse, order: WorkOrder, text: str, coupon: Coupon | None,
        *, ask: bool, using: BaseDBAsyncClient,
    ) -> Awaitable[None]: ...


@dataclass(frozen=True, slots=True)
class Replied:
    response: FeedbackResponse
    order: WorkOrder
    coupon: Coupon | None
    asked: bool  # the follow-up question went with it


def new_coupon_code() -> str:
    return "C" + "".join(secrets.choice("23456789ABCDEFGHJKMNPQRSTUVWXYZ") for _ in range(7))


async def _issue_coupon(
    response: FeedbackResponse, order: WorkOrder, value_fen: int, by: Who, now: datetime,
    conn: BaseDBAsyncClient, limit_fen: int,
) -> Coupon:
    coupon = await Coupon.create(
        code=new_coupon_code(), cinema_id=response.cinema_id, openid=response.visitor,
        value_fen=value_fen, reason=f"feedback:{response.id}", response_id=response.id,
        work_order_id=order.id, issued_by=by.user_id, created_at=now,
        expires_at=now + timedelta(days=COUPON_DAYS), using_db=conn,
    )
    await rights.record_grant(
        by, response.cinema_id, value_fen, limit_fen, what="coupon", entity_id=coupon.code,
        about={"work_order": order.ref, "response": response.id}, now=now, using=conn,
    )
    return coupon


def can_reach(visitor: str) -> bool:
    """An anonymous H5 visitor has no chat to answer in."""
    return not visitor.startswith("h5:")


async def reply(
    order: WorkOrder, by: Who, text: str, now: datetime, *, notify: Notify, tell: Tell,
    coupon_fen: int | None = None, message_key: str | None = None,
) -> Replied:
    """A manager (or staff) answers the audience behind a feedback complaint.

    The first answer resolves the order (the answer is the action taken) and asks the
    audience whether that solved it; later answers are messages only. Idempotent per
    ``message_key`` (a retried callback). A coupon is given only within ``by``'s right
    (``domain.rights``); beyond it the reply is refused (``over_limit``) and audited."""
    response = await response_of(order)
    if response is None:
        raise FeedbackError("not_feedback", f"{order.ref} 不是顾客评价工单，不能这样回复。")
    if not can_reach(response.visitor):
        raise FeedbackError("anonymous", f"{order.ref} 来自网页匿名评价，无法在线回复。")
    text = text.strip()
    if not text:
        raise FeedbackError("empty", "回复内容不能为空，例如「回复 W3K7Q: 很抱歉，已为您调整」。")
    if message_key and await WorkOrderEvent.filter(
        work_order_id=order.id, message_key=f"{message_key}:reply"
    ).exists():
        await order.refresh_from_db()
        return Replied(response, order, await _coupon_of(order), False)
    if order.cinema_id != by.cinema_id:
        raise FeedbackError("forbidden", "这不是你所在影城的工单。")
    limit = 0
    if coupon_fen:
        # Checked before anything changes: the reply's words may promise the coupon, so a
        # refused coupon refuses the whole reply rather than sending it without.
        try:
            limit = await rights.authorise(
                by, order.cinema_id, coupon_fen, what="coupon", now=now,
                about={"work_order": order.ref, "response": response.id},
            )
        except rights.NotAllowed as exc:
            raise CouponRefused(exc.message, coupon_fen, exc.limit_fen) from None
    issued: list[Coupon] = []

    async def with_reply(event: str, changed: WorkOrder, *, using: BaseDBAsyncClient, **info: Any) -> None:
        if event == "resolve":
            # Said first: the desk's own "已处理" note to the reporter is this reply.
            if coupon_fen:
                issued.append(
                    await _issue_coupon(response, changed, coupon_fen, by, now, using, limit)
                )
            await FeedbackResponse.filter(id=response.id).using_db(using).update(
                follow_up=FollowUp.ASKED, follow_up_at=now
            )
            await tell(response, changed, text, issued[0] if issued else None, ask=True, using=using)
        await notify(event, changed, using=using, **info)

    key = message_key or f"reply:{secrets.token_hex(6)}"
    if order.state == State.OPEN:
        await act(order, "assign", by, now, notify=notify, assignee=by.user_id, message_key=f"{key}:assign")
    if order.state in (State.ASSIGNED, State.ESCALATED, State.REOPENED):
        await act(order, "acknowledge", by, now, notify=notify, message_key=f"{key}:ack")
    if order.state in (State.ACKNOWLEDGED, State.IN_PROGRESS, State.PAUSED):
        category = CATEGORY_LABELS.get(order.category, order.category)
        await act(
            order, "resolve", by, now, notify=with_reply, message_key=f"{key}:reply",
            action_taken=f"回复顾客：{text}"[:200], cause=f"顾客评价（{category}）",
        )
        await response.refresh_from_db()
        return Replied(response, order, issued[0] if issued else None, True)
    # Already resolved or closed: a further message, the follow-up left as it is.
    async with in_transaction() as conn:
        if coupon_fen:
            issued.append(await _issue_coupon(response, order, coupon_fen, by, now, conn, limit))
        await WorkOrderEvent.create(
            work_order=order, at=now, actor=by.user_id, action="reply", from_state=order.state,
            to_state=order.state, detail={"text": text[:200]}, message_key=f"{key}:reply",
            using_db=conn,
        )
        await tell(response, order, text, issued[0] if issued else None, ask=False, using=conn)
    return Replied(response, order, issued[0] if issued else None, False)


async def _coupon_of(order: WorkOrder) -> Coupon | None:
    return await Coupon.filter(work_order_id=order.id).order_by("-id").first()


async def awaiting_follow_up(visitor: str) -> FeedbackResponse | None:
    """The visitor's response whose 「问题解决了吗？」 is still unanswered (newest first)."""
    return await FeedbackResponse.filter(
        visitor=visitor, follow_up=FollowUp.ASKED
    ).order_by("-follow_up_at", "-id").first()


async def follow_up(
    response: FeedbackResponse, solved: bool, now: datetime, *, notify: Notify,
    message_key: str | None = None,
) -> WorkOrder | None:
    """The audience answers 「问题解决了吗？」: yes closes the order, no reopens it. Once."""
    target = FollowUp.RESOLVED if solved else FollowUp.UNRESOLVED
    won = await FeedbackResponse.filter(id=response.id, follow_up=FollowUp.ASKED).update(
        follow_up=target, follow_up_at=now, updated_at=now
    )
    if not won or response.work_order_id is None:
        return None
    response.follow_up = target
    order = await WorkOrder.get(id=response.work_order_id)
    if order.state not in (State.RESOLVED, State.CLOSED):
        return order
    audience = Who(response.visitor, "audience", response.cinema_id, "顾客")
    if solved:
        system = Who("system", "system", response.cinema_id)
        if order.state == State.RESOLVED:
            await act(order, "close", system, now, notify=notify, message_key=message_key,
                      note="顾客确认问题已解决")
    else:
        await act(order, "reopen", audience, now, notify=notify, message_key=message_key,
                  note="顾客回复：问题没有解决")
    return order


# --- reaching people after a show ------------------------------------------------------------


async def grant_consent(openid: str, template_id: str, now: datetime) -> MessageConsent:
    """The visitor accepted a one-time subscription (``wx.requestSubscribeMessage``)."""
    row, created = await MessageConsent.get_or_create(
        openid=openid, template_id=template_id,
        defaults={"remaining": 1, "granted_at": now, "updated_at": now},
    )
    if not created:
        await MessageConsent.filter(id=row.id).update(remaining=row.remaining + 1, updated_at=now)
        row.remaining += 1
    return row


async def last_contact(openid: str) -> datetime | None:
    """When this visitor last did something we saw: wrote to us, paid, or answered a survey."""
    moments: list[datetime] = []
    member = await Member.get_or_none(openid=openid)
    if member is not None:
        moments.append(member.last_seen)
    paid = await Order.filter(openid=openid, paid_at__isnull=False).order_by("-paid_at").first()
    if paid is not None and paid.paid_at is not None:
        moments.append(paid.paid_at)
    answered = await FeedbackResponse.filter(visitor=openid).order_by("-updated_at").first()
    if answered is not None:
        moments.append(answered.updated_at)
    return max(moments) if moments else None


class Invite(Protocol):
    """Records one survey invitation (outbox) in the caller's transaction. ``how``:
    "window" (a customer-service message) or "consent" (a subscription message with
    ``template_id``)."""

    def __call__(
        self, openid: str, visit: Visit, touchpoint: Touchpoint, how: str, template_id: str | None,
        *, using: BaseDBAsyncClient,
    ) -> Awaitable[None]: ...


@dataclass
class InviteReport:
    shows: int = 0
    sent: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


async def shows_just_ended(now: datetime) -> list[Showtime]:
    """Shows that ended 10–30 minutes ago (not cancelled)."""
    early, late = PUSH_AFTER
    return await Showtime.filter(
        ends_at__gt=(now - late).astimezone(UTC), ends_at__lte=(now - early).astimezone(UTC),
        cancelled_at=None,
    ).order_by("ends_at").prefetch_related("film", "hall")


async def invite_after_shows(now: datetime, invite: Invite) -> InviteReport:
    """Invite each ticket holder of a show that just ended to rate it: once per visit,
    only those who can receive it (inside the 48-hour window, or with consent), and
    not those who already rated today."""
    report = InviteReport()
    for show in await shows_just_ended(now):
        report.shows += 1
        visit = Visit(show.id, show.film.id, show.film.title, show.hall.name, show.starts_at, show.ends_at)
        day = business_day(show.ends_at)
        touchpoint = await _push_touchpoint(show.cinema_id, now)  # type: ignore[attr-defined]
        holders: dict[str, str] = {}
        for order in await Order.filter(showtime_id=show.id, state__in=[s.value for s in SOLD_STATES]):
            holders.setdefault(order.openid, order.channel)
        for openid, channel in holders.items():
            if await FeedbackInvite.exists(openid=openid, visit_day=day):
                continue
            how, template_id, reason = await _reach(openid, channel, day, now)
            try:
                async with in_transaction() as conn:
                    await FeedbackInvite.create(
                        openid=openid, visit_day=day, cinema_id=show.cinema_id,  # type: ignore[attr-defined]
                        showtime_id=show.id, how=how, reason=reason, created_at=now, using_db=conn,
                    )
                    if how == "consent":
                        used = await MessageConsent.filter(
                            openid=openid, template_id=template_id, remaining__gt=0
                        ).using_db(conn).first()
                        if used is None:
                            raise _Gone
                        await MessageConsent.filter(id=used.id, remaining=used.remaining).using_db(
                            conn
                        ).update(remaining=used.remaining - 1, updated_at=now)
                    if how != "skipped":
                        await invite(openid, visit, touchpoint, how, template_id, using=conn)
            except (IntegrityError, _Gone):
                continue  # another worker invited them first, or the consent was just used
            if how == "skipped":
                report.skipped[reason] += 1
            else:
                report.sent += 1
    return report


class _Gone(Exception):
    pass


async def _push_touchpoint(cinema_id: int, now: datetime) -> Touchpoint:
    from domain.touchpoints import special

    return await special(cinema_id, TouchpointKind.PUSH, now)


async def _reach(openid: str, channel: str, day: date, now: datetime) -> tuple[str, str | None, str]:
    """(how, template_id, reason when skipped)."""
    if await FeedbackResponse.exists(visitor=openid, visit_day=day):
        return "skipped", None, "answered"
    if channel == "chat":
        seen = await last_contact(openid)
        if seen is not None and now - seen < SERVICE_WINDOW:
            return "window", None, ""
    consent = await MessageConsent.filter(openid=openid, remaining__gt=0).order_by("id").first()
    if consent is not None:
        return "consent", consent.template_id, ""
    return "skipped", None, "unreachable"


# --- the measures ---------------------------------------------------------------------------

Z95 = 1.959963984540054


@dataclass(frozen=True, slots=True)
class Csat:
    n: int
    satisfied: int  # 4–5 stars
    pct: float | None  # 0–100
    low: float | None
    high: float | None


@dataclass(frozen=True, slots=True)
class Nps:
    n: int
    promoters: int  # 9–10
    passives: int  # 7–8
    detractors: int  # 0–6
    score: float | None  # −100 … 100
    low: float | None
    high: float | None


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion k/n (as fractions)."""
    if n <= 0:
        raise ValueError("n must be positive")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def csat_of(stars: Iterable[int]) -> Csat:
    values = [s for s in stars if s is not None]
    n = len(values)
    if not n:
        return Csat(0, 0, None, None, None)
    k = sum(1 for s in values if s >= 4)
    low, high = wilson(k, n)
    return Csat(n, k, 100 * k / n, 100 * low, 100 * high)


def nps_of(scores: Iterable[int], z: float = Z95) -> Nps:
    """NPS with a normal-approximation interval: each answer is +1, 0 or −1, and the
    score is their mean × 100, so its variance is (p₊ + p₋ − (p₊ − p₋)²) / n."""
    values = [s for s in scores if s is not None]
    n = len(values)
    if not n:
        return Nps(0, 0, 0, 0, None, None, None)
    pro = sum(1 for s in values if s >= 9)
    det = sum(1 for s in values if s <= 6)
    p_pro, p_det = pro / n, det / n
    score = p_pro - p_det
    se = math.sqrt(max(0.0, p_pro + p_det - score * score) / n)
    low, high = max(-1.0, score - z * se), min(1.0, score + z * se)
    return Nps(n, pro, n - pro - det, det, 100 * score, 100 * low, 100 * high)


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


BY = ("film", "hall", "touchpoint", "day")


def _group_key(r: FeedbackResponse, by: str) -> tuple[str, str]:
    if by == "film":
        return (str(r.film_id), r.film_title or "") if r.film_id else ("", "未关联场次")
    if by == "hall":
        hall = r.hall or r.touchpoint.hall
        return (hall, hall) if hall else ("", "未关联影厅")
    if by == "touchpoint":
        return r.touchpoint.code, r.touchpoint.name
    return r.visit_day.isoformat(), r.visit_day.isoformat()


def _measures(rows: Sequence[FeedbackResponse]) -> dict[str, Any]:
    csat = csat_of(r.stars for r in rows if r.stars is not None)
    nps = nps_of(r.nps for r in rows if r.nps is not None)
    return {
        "responses": len(rows),
        "csat": {"n": csat.n, "satisfied": csat.satisfied, "pct": _round(csat.pct),
                 "ci95": [_round(csat.low), _round(csat.high)] if csat.n else None},
        "nps": {"n": nps.n, "promoters": nps.promoters, "passives": nps.passives,
                "detractors": nps.detractors, "score": _round(nps.score),
                "ci95": [_round(nps.low), _round(nps.high)] if nps.n else None},
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


async def responses_between(cinema_id: int, start: date, end: date) -> list[FeedbackResponse]:
    return await FeedbackResponse.filter(
        cinema_id=cinema_id, visit_day__gte=start, visit_day__lte=end
    ).prefetch_related("touchpoint").order_by("id")


async def timings(order_ids: Sequence[int]) -> tuple[list[float], list[float]]:
    """Minutes from opening to the first acknowledgement (or reply) and to the first resolve."""
    if not order_ids:
        return [], []
    orders = {o.id: o for o in await WorkOrder.filter(id__in=list(order_ids))}
    acks: dict[int, datetime] = {}
    resolves: dict[int, datetime] = {}
    for e in await WorkOrderEvent.filter(
        work_order_id__in=list(order_ids), action__in=["acknowledge", "resolve"]
    ).order_by("at", "id"):
        oid = e.work_order_id  # type: ignore[attr-defined]
        acks.setdefault(oid, e.at)
        if e.action == "resolve":
            resolves.setdefault(oid, e.at)
    ack = [(at - orders[i].created_at).total_seconds() / 60 for i, at in acks.items() if i in orders]
    res = [(at - orders[i].created_at).total_seconds() / 60 for i, at in resolves.items() if i in orders]
    return ack, res


async def summary(cinema_id: int, start: date, end: date, by: str = "day") -> dict[str, Any]:
    """NPS and CSAT with 95 % intervals, overall and per group; the complaint categories'
    shares; median acknowledge and resolve minutes of the feedback work orders."""
    if by not in BY:
        raise FeedbackError("invalid", f"by 应为 {'|'.join(BY)}。")
    rows = await responses_between(cinema_id, start, end)
    groups: dict[tuple[str, str], list[FeedbackResponse]] = {}
    for r in rows:
        groups.setdefault(_group_key(r, by), []).append(r)
    alerted = [r for r in rows if r.work_order_id is not None]
    categories = Counter(alert_category(r) for r in alerted)
    ack, res = await timings([r.work_order_id for r in alerted])  # type: ignore[misc]
    return {
        "from": start.isoformat(), "to": end.isoformat(), "by": by,
        "total": _measures(rows),
        "groups": [
            {"key": key, "label": label, **_measures(members)}
            for (key, label), members in sorted(groups.items(), key=lambda kv: kv[0])
        ],
        "complaints": {
            "n": len(alerted),
            "categories": [
                {"category": c, "label": CATEGORY_LABELS.get(c, c), "count": k,
                 "share": round(100 * k / len(alerted), 1)}
                for c, k in categories.most_common()
            ],
            "median_ack_minutes": _round(median(ack)), "acknowledged": len(ack),
            "median_resolve_minutes": _round(median(res)), "resolved": len(res),
        },
    }

