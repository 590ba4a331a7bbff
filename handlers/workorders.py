"""「3号厅空调太冷」: audiences report faults, complain, ask about lost items and group bookings.

Each request becomes a work order (``domain.workorders``) routed to the person on
duty, who gets a WeCom card (``handlers.workorder_messages``); the audience gets a
short reference number, can send a photo within ten minutes, ask how it is going,
and hears back when it is done. A retried callback opens nothing twice: the
order is keyed by the message it came from.

Audiences never act on orders and never see staff names or internal notes.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any

from bot.chat.channels import Inbound
from bot.infra.clock import Clock
from bot.chat.dialog import Ask, Dialog, Form, Invalid
from bot.infra.logs import short_openid
from bot.chat.replies import Button, Reply
from bot.chat.router import Actor, Router, Update
from domain import audit
from domain.workorders import (
    ACTIVE,
    KIND_LABELS,
    Kind,
    State,
    Who,
    WorkOrder,
    WorkOrderError,
    add_photo,
    find,
    managers,
    open_order,
    policy_for,
    reported_by,
)
from handlers.events import image as plain_image
from handlers.reference import ReferenceData
from handlers.workorder_messages import WorkOrderMessages, place_text, what_text

log = logging.getLogger(__name__)
router = Router(__name__)

PHOTO_WINDOW = timedelta(minutes=10)
# A reference as we print it (W + 5 of an alphabet without 0/1/I/L/O); upper case only,
# so an English word in a message is not taken for one.
REF = re.compile(r"(?<![0-9A-Za-z])W[2-9A-HJKMNP-Z]{5}(?![0-9A-Za-z])")

INTENT_KINDS = {
    "report_fault": Kind.FAULT,
    "complaint": Kind.COMPLAINT,
    "lost_found": Kind.LOST_FOUND,
    "group_booking": Kind.GROUP_BOOKING,
}

# Checked in this order: the first category with a matching word wins. People talking
# or phones ringing are "noise" even when the words say 声音; the house sound is "sound".
CATEGORY_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("concession", ("爆米花", "可乐", "卖品", "饮料", "小吃", "套餐", "零食", "热狗", "冰淇淋")),
    ("seat", ("座椅", "椅子", "扶手", "坐垫", "靠背", "座位坏", "杯架", "椅")),
    ("temperature", ("空调", "温度", "太冷", "好冷", "很冷", "太热", "好热", "很热", "闷热", "冷气", "暖气")),
    ("picture", ("画面", "模糊", "黑屏", "字幕", "投影", "屏幕", "花屏", "卡顿", "3D", "重影", "偏色")),
    ("lighting", ("灯",)),
    ("cleanliness", ("脏", "垃圾", "卫生", "异味", "臭", "污渍", "打扫", "蟑螂", "老鼠")),
    ("staff", ("态度", "服务员", "工作人员", "员工", "保安", "检票员")),
    ("noise", ("说话", "打电话", "手机", "聊天", "喧哗", "哭闹", "小孩", "踢")),
    ("sound", ("声音", "音响", "音量", "没声", "杂音", "喇叭", "音效", "太响", "爆音")),
    ("facility", ("厕所", "洗手间", "卫生间", "电梯", "扶梯", "门", "水龙头", "wifi", "WiFi", "充电")),
    ("temperature", ("冷", "热", "闷")),
    ("noise", ("吵", "噪音")),
)
URGENT_WORDS = ("冒烟", "着火", "起火", "火灾", "烟雾", "受伤", "晕倒", "昏倒", "漏电", "触电", "流血", "摔倒", "急救")
# Words that ask for help without saying what is wrong.
FILLER = re.compile(
    r"我要|我想|想要|要|帮我|请|麻烦|一下|投诉|报修|反馈|举报|建议|问题|有个|有|个|失物招领|找失物|"
    r"丢了东西|东西丢了|丢东西|包场|团购|团体票|团体|预订|预定|订|申请|办理|可以吗|怎么|如何|"
    r"的|了|啊|呀|吧|呢|吗|我|们|你|[。，,！!？?、\s]"
)
PUBLIC_STATE = {
    State.OPEN: "已受理，正在安排值班同事",
    State.ASSIGNED: "已通知值班同事，马上处理",
    State.ACKNOWLEDGED: "值班同事已接单，正在处理",
    State.IN_PROGRESS: "正在处理",
    State.PAUSED: "正在处理（等待配件）",
    State.ESCALATED: "正在加急处理",
    State.RESOLVED: "已处理",
    State.CLOSED: "已处理",
    State.REOPENED: "重新处理中",
}
STATUS = re.compile(
    r"进度|进展|(处理|解决|修|弄|办|找)(好|完|到)?了?(吗|没|没有|呢)|怎么样了|有结果|有回复|结果(如何|呢|了吗)"
)
ABOUT = re.compile(r"报|投诉|问题|工单|反馈|申请|失物|包场|座椅|空调|编号")
# What staff type to act on an order; an audience member typing it is refused.
STAFF_COMMAND = re.compile(
    r"^\s*(?:W[2-9A-HJKMNP-Z]{5}\s*)?(?:收到|接单|结单|完成|已完成|已处理|处理完了|处理好了|转给|转派|关闭工单|我的任务)"
)


def category_of(text: str) -> str:
    for category, words in CATEGORY_WORDS:
        if any(w in text for w in words):
            return category
    return "other"


def severity_of(text: str, kind: Kind) -> str:
    if any(w in text for w in URGENT_WORDS):
        return "P1"
    return "P2" if kind in (Kind.FAULT, Kind.ALERT) else "P3"


def has_content(text: str, slots: dict[str, Any]) -> bool:
    """Whether the message says what is wrong, or merely asks to report something."""
    if slots.get("hall") or slots.get("seats"):
        return True
    return len(FILLER.sub("", text)) >= 2


def duration(minutes: int) -> str:
    if minutes < 60:
        return f"{minutes}分钟"
    hours, rest = divmod(minutes, 60)
    return f"{hours}小时{rest}分钟" if rest else f"{hours}小时"


async def open_from_chat(
    actor: Actor, msg: Inbound, kind: Kind, text: str, slots: dict[str, Any], clock: Clock,
    desk: WorkOrderMessages, cinema_id: int, *, source: str = "chat", team: str | None = None,
) -> tuple[WorkOrder, bool]:
    """One message (or the message that completed a form) → one work order."""
    seats = slots.get("seats") or []
    severity = severity_of(text, kind)
    watchers: list[str] = []
    if severity == "P1":
        watchers = [m.userid for m in await managers(cinema_id)]
    who = Who(actor.user_id, actor.role, cinema_id, name=actor.name if actor.is_staff else "顾客")
    order, created = await open_order(
        cinema_id=cinema_id, kind=kind, category=category_of(text), summary=text.strip(),
        reporter=who, now=clock.now(), severity=severity, source=source,
        source_key=f"{msg.channel}:{msg.dedup_key}", hall=slots.get("hall"),
        seat=str(seats[0])[:8] if seats else None, description=text.strip(), watchers=watchers,
        team=team, notify=desk,
    )
    if created:
        desk.wake()
    return order, created


# --- asking for what is missing ----------------------------------------------------------

PROMPTS = {
    Kind.COMPLAINT: "请说说遇到了什么问题，在哪个厅、哪个座位？例如「3号厅空调太冷」。",
    Kind.FAULT: "请描述一下哪里坏了，在哪个厅、哪个座位？例如「3号厅7排8座扶手断了」。",
    Kind.LOST_FOUND: "丢了什么东西？大概在哪个厅、哪一场？例如「今晚8点3号厅丢了一把黑色雨伞」。",
    Kind.GROUP_BOOKING: "请告诉我们包场的日期、大概人数、想看的影片和联系电话，值班经理会尽快联系您。",
}


async def ask_detail(slots: dict[str, Any]) -> Reply:
    kind = Kind(slots.get("kind") or Kind.COMPLAINT)
    return Reply.say(PROMPTS[kind], Button("算了", "取消"))


async def check_detail(value: Any, text: str) -> str | None:
    detail = (text or "").strip()
    if not detail:
        return None
    if len(detail) < 2:
        raise Invalid("请再具体说说～")
    return detail[:300]


REPORT = Form("workorder", (Ask("detail", ask_detail, check_detail),), timeout=600, keep=("kind", "hall", "seats"))


# --- audience routes -----------------------------------------------------------------------


def status_query(update: Update) -> dict[str, Any] | None:
    """「我报的问题处理了吗」「W3K7Q进度」: the audience's own orders."""
    text = (update.inbound.text or "").strip()
    if not text:
        return None
    ref = REF.search(text)
    if ref and (len(text) <= 12 or STATUS.search(text)):
        return {"ref": ref.group(0)}
    if ABOUT.search(text) and STATUS.search(text):
        return {"ref": None}
    return None


def staff_command(update: Update) -> bool:
    return bool(STAFF_COMMAND.match(update.inbound.text or ""))


@router.on(role="audience", kind=("text", "voice"), when=staff_command)
@router.on(role="audience", button="wo")
async def refuse_staff_command(actor: Actor, msg: Inbound, clock: Clock) -> Reply:
    """Only staff act on work orders; the attempt is written down, the answer stays kind."""
    log.warning(
        "an audience member tried to act on a work order",
        extra={"who": short_openid(actor.user_id), "text": (msg.text or msg.event_key or "")[:40]},
    )
    await audit.record(
        entity="work_order", entity_id="-", action="refused", actor=actor.user_id, at=clock.now(),
        detail={"text": (msg.text or msg.event_key or "")[:60], "role": actor.role},
    )
    return Reply.say(
        "这是影城工作人员处理工单用的指令，您不需要操作哦～\n"
        "您反馈的问题我们会尽快处理，想看进度可以回复「我报的问题处理了吗」。",
        Button("查进度", "我报的问题处理了吗"),
    )


@router.on(role="audience", kind=("text", "voice"), when=status_query)
async def status(
    actor: Actor, msg: Inbound, ref: str | None, text: str, intent: str | None, slots: dict[str, Any],
    clock: Clock, desk: WorkOrderMessages, dialog: Dialog, reference: ReferenceData,
) -> Reply | None:
    if ref:
        order = await find(ref)
        orders = [order] if order is not None and order.reporter == actor.user_id else []
        if not orders:
            return Reply.say(f"没有找到您报过的编号 {ref}，请核对一下编号～", Button("我的反馈", "我报的问题处理了吗"))
    else:
        orders = await reported_by(actor.user_id, limit=5)
        if not orders:
            if intent in INTENT_KINDS:  # 「你们的问题怎么还没处理好」 with nothing on file: a new report
                return await report(actor, msg, text, intent, slots, clock, desk, dialog, reference)
            return Reply.say("您还没有报过问题。遇到问题直接告诉我就行，例如「3号厅空调太冷」。")
    lines = ["📋 您反馈的问题："]
    for order in orders:
        line = f"· {order.ref} {KIND_LABELS.get(order.kind, '')}「{order.summary[:20]}」— {PUBLIC_STATE[order.state]}"
        if order.state in (State.RESOLVED, State.CLOSED) and order.action:
            line += f"\n  处理结果：{order.action}"
        lines.append(line)
    return Reply.say("\n".join(lines), Button("人工服务", "转人工"))


# What the model reads as a staff command, once a status question has had its chance.
router.on(role="audience", intent=("task_ack", "task_done", "my_tasks"))(refuse_staff_command)


@router.on(intent=tuple(INTENT_KINDS), role="audience")
async def report(
    actor: Actor, msg: Inbound, text: str, intent: str | None, slots: dict[str, Any], clock: Clock,
    desk: WorkOrderMessages, dialog: Dialog, reference: ReferenceData,
) -> Reply | None:
    kind = INTENT_KINDS[intent or "complaint"]
    if not has_content(text, slots):
        return await dialog.start(REPORT, {"kind": str(kind), "hall": slots.get("hall"), "seats": slots.get("seats")})
    return await _confirm(actor, msg, kind, text, slots, clock, desk, reference)


@router.form(REPORT)
async def report_ready(
    actor: Actor, msg: Inbound, slots: dict[str, Any], clock: Clock, desk: WorkOrderMessages,
    reference: ReferenceData,
) -> Reply:
    kind = Kind(slots.get("kind") or Kind.COMPLAINT)
    return await _confirm(actor, msg, kind, slots["detail"], slots, clock, desk, reference)


async def _confirm(
    actor: Actor, msg: Inbound, kind: Kind, text: str, slots: dict[str, Any], clock: Clock,
    desk: WorkOrderMessages, reference: ReferenceData,
) -> Reply:
    cinema = await reference.cinema(actor.cinema_id)
    if cinema is None:
        return Reply.say("抱歉，影城信息还没有配置好。请到服务台找工作人员。")
    order, _ = await open_from_chat(actor, msg, kind, text, slots, clock, desk, cinema.id)
    ack_minutes, _, _ = await policy_for(order)
    lines = []
    if order.severity == "P1":
        lines.append("⚠️ 已紧急通知值班经理和工作人员。如有人受伤或有火情，请立即拨打120/119，并听从工作人员指引。")
    lines.append(f"已收到，编号 {order.ref} ✅")
    lines.append(f"{what_text(order)}：{order.summary[:30]}" + (f"（{place_text(order)}）" if order.hall or order.seat else ""))
    if kind == Kind.GROUP_BOOKING:
        lines.append(f"值班经理会在{duration(ack_minutes)}内跟进，处理好后会在这里告诉您。")
    elif order.assignee:
        lines.append(f"值班同事会在{duration(ack_minutes)}内处理，处理好后会在这里告诉您。")
    else:
        lines.append("已记录，工作人员会尽快处理，处理好后会在这里告诉您。")
    if kind != Kind.GROUP_BOOKING:
        lines.append("方便的话可以直接发一张照片给我。")
    return Reply.say("\n".join(lines), Button("查进度", f"{order.ref}进度"), Button("人工服务", "转人工"))


@router.on(role="audience", kind="image")
async def photo(actor: Actor, msg: Inbound, clock: Clock, desk: WorkOrderMessages) -> Reply:
    """A photo soon after a report belongs to it: the person handling it sees it."""
    now = clock.now()
    order = await WorkOrder.filter(
        reporter=actor.user_id, created_at__gte=now - PHOTO_WINDOW,
        state__in=[s.value for s in ACTIVE],
    ).order_by("-created_at").first()
    media = msg.pic_url or msg.media_id
    if order is None or not media:
        return await plain_image(msg)
    if media in order.photos:
        return Reply.say(f"照片已补充到编号 {order.ref} 👍")
    try:
        await add_photo(order, media, Who(actor.user_id, actor.role, order.cinema_id, "顾客"), now, notify=desk)
    except WorkOrderError as exc:
        return Reply.say(exc.message)
    desk.wake()
    return Reply.say(f"照片已收到，已补充到编号 {order.ref}，处理的同事能看到 👍")
