"""Staff work their orders in WeCom: card buttons 接单 / 转派 / 完成, or plain words.

「收到」 acknowledges my latest order waiting for me, 「已处理，换了座椅」 resolves the
one I am working on, 「转给staff02」 hands it over, 「我的任务」 lists mine, 「W3K7Q」
shows one. A staff member's own report (「5排6座扶手断了」) becomes an order for
the right team in one message.

Every action goes through ``domain.workorders.act`` with the inbound message's
dedup key, so a double click or a retried callback changes nothing twice; the
cards of everyone holding one are brought up to date by the ``desk`` notify.
Only staff of the order's cinema may act (checked in the domain as well).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from bot.chat.channels import Channel, Inbound
from bot.infra.clock import Clock, local_time_text
from bot.chat.dialog import Ask, Dialog, Form
from bot.chat.replies import Button, Reply
from bot.chat.router import Actor, Router, Update
from bot.infra.strict import parse_ascii_int
from domain import alerts
from domain.people import Staff
from domain.workorders import (
    ACTIVE,
    KIND_LABELS,
    STATE_LABELS,
    TEAM_LABELS,
    TEAM_ROLES,
    Kind,
    State,
    Who,
    WorkOrder,
    WorkOrderError,
    WorkOrderEvent,
    act,
    acted_on,
    find,
    latest_for,
    my_tasks,
    on_duty,
)
from handlers.manager_questions import parse as is_question
from handlers.reference import ReferenceData
from handlers.workorder_messages import (
    WAITING,
    WORKING,
    WorkOrderMessages,
    deadline_text,
    place_text,
    reporter_text,
    what_text,
)
from handlers.workorders import ask_detail, category_of, check_detail, has_content, open_from_chat

log = logging.getLogger(__name__)

# Card clicks must be claimed before ``handlers.staff`` answers stale cards: a router of their own.
clicks = Router(__name__ + ".clicks")
router = Router(__name__)

ACK = re.compile(r"^\s*(?:收到|接单|好的?收到|马上去)[，,。!！\s]*(?P<ref>W[2-9A-HJKMNP-Z]{5})?\s*$")
DONE = re.compile(
    r"^\s*(?:已处理|处理好了|处理完了|处理完毕|已完成|完成了|完成|搞定了|搞定|已解决|解决了|已修好|修好了)"
    r"\s*(?P<ref>W[2-9A-HJKMNP-Z]{5})?[，,。:：!！\s]*(?P<rest>.*)$"
)
TRANSFER = re.compile(
    r"^\s*(?:把\s*)?(?P<ref>W[2-9A-HJKMNP-Z]{5})?\s*(?:转给|转派给|转交给|交给|转派)\s*(?P<to>[^\s，,。]+?)\s*(?:处理)?[。!！]?\s*$"
)
OFFER = re.compile(r"^\s*(?P<ref1>W[2-9A-HJKMNP-Z]{5})?\s*(?:转派|转给|转交)\s*(?P<ref>W[2-9A-HJKMNP-Z]{5})?\s*$")
SHOW = re.compile(r"^\s*(?:查看?\s*)?(?P<ref>W[2-9A-HJKMNP-Z]{5})\s*(?:进度|怎么样了|状态|详情)?\s*$")
# 「解决了吗？」 asks; it does not say the order is done (nor that its action was 「吗」).
ASKING = re.compile(r"(?:吗|么|嘛|没|没有|了吗|没有呢|呢)?\s*[?？]*")
MINE = re.compile(r"^\s*(?:我的(?:任务|工单)|任务列表|工单列表)\s*$")
DONE_PREFIX = re.compile(
    r"^\s*(?:已处理|处理好了|处理完了|处理完毕|已完成|完成了|完成|搞定了|搞定|已解决|解决了)?\s*"
    r"(?:W[2-9A-HJKMNP-Z]{5})?[，,。:：!！\s]*"
)
# Intents that are requests of their own, not the answer to 「做了什么处理？」.
NOT_AN_ANSWER = frozenset({
    "cancel", "deny", "my_tasks", "task_ack", "query_showtimes", "film_info", "greeting", "help",
    "human", "buy_ticket", "directions",
})
QUICK_ACTIONS = {
    "seat": ("已更换座椅", "已修好扶手", "已调换座位"),
    "temperature": ("已调节空调温度", "已通知工程检修空调"),
    "sound": ("已调整音量", "已检修音响"),
    "picture": ("已调整放映画面", "已重启放映机"),
    "lighting": ("已修好灯", "已调整灯光"),
    "cleanliness": ("已打扫干净",),
    "noise": ("已提醒相关观众", "已为顾客调换座位"),
    "staff": ("已向顾客致歉并处理",),
    "facility": ("已修好", "已通知物业"),
    "concession": ("已为顾客更换", "已退款"),
}
MAX_OPTIONS = 6


def _who(actor: Actor) -> Who:
    return Who(actor.user_id, actor.role, actor.cinema_id, actor.name)


def _command(update: Update) -> dict[str, Any] | None:
    """The typed commands, recognised before (and whatever) the intent model says."""
    text = update.inbound.text or ""
    if m := ACK.match(text):
        return {"command": "ack", "ref": m.group("ref"), "rest": ""}
    if m := OFFER.match(text):
        return {"command": "offer", "ref": m.group("ref") or m.group("ref1"), "rest": ""}
    if m := TRANSFER.match(text):
        return {"command": "fwd", "ref": m.group("ref"), "rest": m.group("to")}
    if (m := DONE.match(text)) and not asking(m.group("rest")):
        return {"command": "done", "ref": m.group("ref"), "rest": m.group("rest").strip()}
    if m := SHOW.match(text):
        return {"command": "show", "ref": m.group("ref"), "rest": ""}
    if MINE.match(text):
        return {"command": "mine", "ref": None, "rest": ""}
    return None


def asking(rest: str) -> bool:
    rest = rest.strip()
    return bool(rest) and bool(ASKING.fullmatch(rest))


def action_text(text: str) -> str:
    """「已处理，换了座椅」 → 「换了座椅」; 「重启了空调」 stays whole."""
    return DONE_PREFIX.sub("", text, count=1).strip()[:200]


async def _order_by_ref(ref: str, actor: Actor) -> WorkOrder | None:
    return await find(ref, cinema_id=actor.cinema_id)


async def _refused(exc: WorkOrderError) -> Reply:
    return Reply.say(exc.message, Button("我的任务"))


# --- card clicks ---------------------------------------------------------------------------


@clicks.on(channel=Channel.WECOM, event="template_card_event", role="employee", button="wo")
async def card_clicked(
    actor: Actor, msg: Inbound, button_args: list[str], clock: Clock, desk: WorkOrderMessages,
    dialog: Dialog,
) -> Reply:
    order_id = parse_ascii_int(button_args[1]) if len(button_args) >= 2 else None
    if order_id is None:
        return Reply.say("这张卡片已失效，请回复「我的任务」查看最新工单。")
    action = button_args[0]
    order = await WorkOrder.get_or_none(id=order_id)
    if order is None:
        return Reply.say("这张卡片已失效：没有找到这张工单。请回复「我的任务」查看最新工单。")
    if order.cinema_id != actor.cinema_id:
        log.warning("a card click for an order of another cinema", extra={"by": actor.user_id, "order": order_id})
        return Reply.say("这张卡片已失效：这张工单不属于你所在的影城。")
    notify = desk.clicked(actor.user_id, msg.response_code, msg.task_id)
    if action == "ack":
        return await _acknowledge(order, actor, clock, desk, notify, msg.dedup_key)
    click = {"order": order.id, "code": msg.response_code, "task": msg.task_id}
    if action == "done":
        if order.state in (State.RESOLVED, State.CLOSED):
            return Reply.say(f"{order.ref} 已经完成了：{order.action}")
        return await dialog.confirm("wo:done", click, _ask_action(order))
    if action == "fwd":
        return await _offer_colleagues(order, actor, clock, dialog, click)
    return Reply.say("这张卡片暂不支持该操作。")


def _ask_action(order: WorkOrder) -> Reply:
    quick = QUICK_ACTIONS.get(order.category, ())
    return Reply.say(
        f"{order.ref}（{what_text(order)} {place_text(order)}）做了什么处理？直接回复一句话，例如「换了座椅」。",
        *quick, Button("先不填", "取消"),
    )


async def _colleagues(actor: Actor, order: WorkOrder, clock: Clock) -> list[tuple[Staff, str]]:
    """On-duty colleagues (the order's team first); nobody on duty → everyone of the cinema."""
    now = clock.now()
    found: dict[str, tuple[Staff, str]] = {}
    teams = [order.team] + [t for t in TEAM_ROLES if t != order.team]
    for team in teams:
        for person in await on_duty(order.cinema_id, team, now):
            if person.userid != actor.user_id:
                found.setdefault(person.userid, (person, team))
    if not found:
        for person in await Staff.filter(cinema_id=order.cinema_id, active=True).order_by("id"):
            if person.userid != actor.user_id:
                found.setdefault(person.userid, (person, ""))
    return list(found.values())[:MAX_OPTIONS]


async def _offer_colleagues(
    order: WorkOrder, actor: Actor, clock: Clock, dialog: Dialog, data: dict[str, Any]
) -> Reply:
    if order.state not in ACTIVE:
        return Reply.say(f"{order.ref} 已经{STATE_LABELS[order.state]}，不用转派了。")
    people = await _colleagues(actor, order, clock)
    if not people:
        return Reply.say("现在没有可以转派的同事。")
    buttons = [
        Button(f"{p.name}（{TEAM_LABELS.get(team, '在职')}）", f"转给{p.userid}") for p, team in people
    ]
    reply = Reply.say(f"把 {order.ref}（{what_text(order)} {place_text(order)}）转给谁？", *buttons)
    return await dialog.confirm("wo:fwd", data, reply)


# --- answers to a click's question ---------------------------------------------------------


@router.on(pending="wo:done", role="employee", kind=("text", "voice"))
async def done_answered(
    actor: Actor, msg: Inbound, text: str, intent: str | None, pending_data: dict[str, Any],
    clock: Clock, desk: WorkOrderMessages, dialog: Dialog,
) -> Reply | None:
    if intent in NOT_AN_ANSWER or TRANSFER.match(text) or ACK.match(text) or is_question(text):
        return None  # another request (「本周满意度」 too): routed normally, the question kept
    order = await WorkOrder.get_or_none(id=pending_data.get("order"))
    if order is None:
        return Reply.say("没有找到这张工单。")
    taken = action_text(text)
    if not taken:
        return await dialog.confirm("wo:done", pending_data, _ask_action(order))
    notify = desk.clicked(actor.user_id, pending_data.get("code"), pending_data.get("task"))
    return await _resolve(order, actor, taken, clock, desk, notify, msg.dedup_key)


@router.on(pending="wo:fwd", role="employee", kind=("text", "voice"), when=lambda u: bool(TRANSFER.match(u.inbound.text or "")))
async def colleague_picked(
    actor: Actor, msg: Inbound, text: str, pending_data: dict[str, Any], clock: Clock,
    desk: WorkOrderMessages,
) -> Reply:
    order = await WorkOrder.get_or_none(id=pending_data.get("order"))
    if order is None:
        return Reply.say("没有找到这张工单。")
    target = TRANSFER.match(text).group("to")  # type: ignore[union-attr]
    notify = desk.clicked(actor.user_id, pending_data.get("code"), pending_data.get("task"))
    return await _transfer(order, actor, target, clock, desk, notify, msg.dedup_key)


# --- typed commands --------------------------------------------------------------------------


@router.on(channel=Channel.WECOM, role="employee", kind=("text", "voice"), when=_command)
async def typed_command(
    actor: Actor, msg: Inbound, command: str, ref: str | None, rest: str, text: str, clock: Clock,
    desk: WorkOrderMessages, dialog: Dialog,
) -> Reply:
    if command == "mine":
        return await _my_list(actor, clock)
    order: WorkOrder | None = None
    if ref:
        order = await _order_by_ref(ref, actor)
        if order is None:
            return Reply.say(f"本影城没有编号 {ref} 的工单。", Button("我的任务"))
    if command == "show":
        return await _detail(order, actor, clock)  # type: ignore[arg-type]
    if command == "ack":
        return await _ack_latest(order, actor, clock, desk, msg)
    if command == "done":
        return await _done(order, actor, rest, clock, desk, dialog, msg)
    if command == "offer":
        order = order or await latest_for(actor.user_id, (*WAITING, *WORKING))
        if order is None:
            return Reply.say("你手上没有可以转派的工单。", Button("我的任务"))
        return await _offer_colleagues(order, actor, clock, dialog, {"order": order.id})
    return await _transfer_latest(order, actor, rest, clock, desk, msg)


@router.on(intent="task_ack", role="employee")
async def ack_by_text(actor: Actor, msg: Inbound, clock: Clock, desk: WorkOrderMessages) -> Reply:
    return await _ack_latest(None, actor, clock, desk, msg)


@router.on(intent="task_done", role="employee")
async def done_by_text(actor: Actor, msg: Inbound, text: str) -> Reply:
    """The model reads 「空调修好了」 as done, but free text is never an order's resolution
    by itself (「本周满意度」 once closed a group booking): the explicit 「完成 W…: …」 is
    offered instead, one tap away. Explicit words (``DONE``), a card's 完成 and the dialog
    that asked for the action still resolve."""
    order = await latest_for(actor.user_id, WORKING) or await latest_for(actor.user_id, WAITING)
    if order is None:
        return Reply.say("你手上没有进行中的工单。", Button("我的任务"))
    taken = action_text(text)[:60]
    done = f"完成 {order.ref}: {taken}" if taken else f"完成 {order.ref}"
    return Reply.say(
        f"要把 {order.ref}（{what_text(order)} {place_text(order)}）记为完成吗？"
        + (f"处理结果：「{taken}」" if taken else "")
        + f"\n确认请点「完成」，或回复「完成 {order.ref}: 做了什么」。",
        Button("完成", done), Button("我的任务"),
    )


@router.on(intent="my_tasks", role="employee")
async def my_list(actor: Actor, clock: Clock) -> Reply:
    return await _my_list(actor, clock)


async def _ack_latest(
    order: WorkOrder | None, actor: Actor, clock: Clock, desk: WorkOrderMessages, msg: Inbound
) -> Reply:
    # A re-run of this message (after a crash) takes the order it took the first time, which
    # is no longer waiting: the latest waiting one would be the next in line.
    key = msg.dedup_key
    order = (
        order or await acted_on([key, f"{key}:take"]) or await latest_for(actor.user_id, WAITING)
    )
    if order is None:
        return Reply.say("你现在没有待接的工单。", Button("我的任务"))
    return await _acknowledge(order, actor, clock, desk, desk, msg.dedup_key)


async def _done(
    order: WorkOrder | None, actor: Actor, taken: str, clock: Clock, desk: WorkOrderMessages,
    dialog: Dialog, msg: Inbound,
) -> Reply:
    order = (
        order or await acted_on([msg.dedup_key])  # a re-run: the order it resolved
        or await latest_for(actor.user_id, WORKING) or await latest_for(actor.user_id, WAITING)
    )
    if order is None:
        return Reply.say("你手上没有进行中的工单。", Button("我的任务"))
    if not taken:
        if order.state in (State.RESOLVED, State.CLOSED):
            return Reply.say(f"{order.ref} 已经完成了：{order.action}")
        return await dialog.confirm("wo:done", {"order": order.id}, _ask_action(order))
    return await _resolve(order, actor, taken, clock, desk, desk, msg.dedup_key)


async def _transfer_latest(
    order: WorkOrder | None, actor: Actor, target: str, clock: Clock, desk: WorkOrderMessages,
    msg: Inbound,
) -> Reply:
    order = (
        order or await acted_on([msg.dedup_key])  # a re-run: the order it handed over
        or await latest_for(actor.user_id, (*WAITING, *WORKING))
    )
    if order is None:
        return Reply.say("你手上没有可以转派的工单。", Button("我的任务"))
    return await _transfer(order, actor, target, clock, desk, desk, msg.dedup_key)


# --- the actions ---------------------------------------------------------------------------


async def _acknowledge(
    order: WorkOrder, actor: Actor, clock: Clock, desk: WorkOrderMessages,
    notify: WorkOrderMessages, key: str,
) -> Reply:
    who, now = _who(actor), clock.now()
    try:
        if order.assignee != actor.user_id and order.state in WAITING:
            # A copy holder (or a colleague) takes the order over.
            order = await act(order, "assign", who, now, notify=notify, message_key=f"{key}:take",
                              assignee=actor.user_id)
        order = await act(order, "acknowledge", who, now, notify=notify, message_key=key)
    except WorkOrderError as exc:
        return await _refused(exc)
    if order.kind == Kind.ALERT:  # 「收到」 acknowledges its alerts too: no more reminders
        await alerts.mark_acknowledged(order, who, now)
    desk.wake()
    if order.assignee != actor.user_id:
        holder = await Staff.get_or_none(userid=order.assignee)
        return Reply.say(f"{order.ref} 已由{holder.name if holder else order.assignee}接单。", Button("我的任务"))
    deadline = await deadline_text(order, now)
    return Reply.say(
        f"✅ 已接单 {order.ref}：{order.summary[:30]}（{place_text(order)}）\n时限：{deadline}\n"
        "处理好后点卡片上的「完成」，或回复「已处理，做了什么」。",
        Button("已处理", f"完成 {order.ref}"), Button("转派", f"转派 {order.ref}"),
    )


async def _resolve(
    order: WorkOrder, actor: Actor, taken: str, clock: Clock, desk: WorkOrderMessages,
    notify: WorkOrderMessages, key: str,
) -> Reply:
    try:
        order = await act(order, "resolve", _who(actor), clock.now(), notify=notify, message_key=key,
                          action_taken=taken)
    except WorkOrderError as exc:
        return await _refused(exc)
    desk.wake()
    told = "已通知顾客。" if order.reporter_role == "audience" else ""
    return Reply.say(f"👍 {order.ref} 已完成：{order.action}。{told}", Button("我的任务"))


async def _find_colleague(cinema_id: int | None, name: str) -> Staff | None:
    people = await Staff.filter(cinema_id=cinema_id, active=True)
    for person in people:
        if person.userid.lower() == name.lower():
            return person
    named = [p for p in people if p.name == name]
    return named[0] if len(named) == 1 else None


async def _transfer(
    order: WorkOrder, actor: Actor, target: str, clock: Clock, desk: WorkOrderMessages,
    notify: WorkOrderMessages, key: str,
) -> Reply:
    person = await _find_colleague(actor.cinema_id, target)
    if person is None:
        people = await _colleagues(actor, order, clock)
        buttons = [Button(p.name, f"转给{p.userid}") for p, _ in people]
        return Reply.say(f"没有找到本影城的在职同事「{target}」。转给谁？", *buttons)
    try:
        order = await act(order, "assign", _who(actor), clock.now(), notify=notify, message_key=key,
                          assignee=person.userid)
    except WorkOrderError as exc:
        return await _refused(exc)
    desk.wake()
    if person.userid == actor.user_id:
        return Reply.say(f"{order.ref} 现在由你负责。", Button("接单", f"接单 {order.ref}"))
    return Reply.say(f"↪️ 已把 {order.ref} 转给{person.name}，TA会收到工单卡片。", Button("我的任务"))


# --- reading -------------------------------------------------------------------------------


async def _my_list(actor: Actor, clock: Clock) -> Reply:
    orders = await my_tasks(actor.user_id)
    if not orders:
        return Reply.say("你现在没有待处理的工单 👍")
    now = clock.now()
    lines = [f"📋 你的工单（{len(orders)}）："]
    buttons: list[Button] = []
    for i, order in enumerate(orders, start=1):
        lines.append(
            f"{i}. {order.ref} {what_text(order)} {place_text(order)} · {STATE_LABELS[order.state]} · "
            f"{await deadline_text(order, now)}\n   {order.summary[:30]}"
        )
        verb = "接单" if order.state in WAITING else "完成"
        buttons.append(Button(f"{verb}{order.ref}", f"{verb} {order.ref}"))
    return Reply.say("\n".join(lines), *buttons[:MAX_OPTIONS])


async def _detail(order: WorkOrder, actor: Actor, clock: Clock) -> Reply:
    now = clock.now()
    holder = await Staff.get_or_none(userid=order.assignee) if order.assignee else None
    lines = [
        f"{order.ref} {what_text(order)} {order.severity}",
        f"内容：{order.summary}",
        f"地点：{place_text(order)}",
        f"报告人：{reporter_text(order)}",
        f"状态：{STATE_LABELS[order.state]}（{await deadline_text(order, now)}）",
        f"负责人：{holder.name if holder else (order.assignee or TEAM_LABELS.get(order.team, '—'))}",
    ]
    if order.action:
        lines.append(f"处理：{order.action}")
    if order.photos:
        lines.append(f"照片：{len(order.photos)}张")
    events = await WorkOrderEvent.filter(work_order_id=order.id).order_by("-id").limit(5)
    for e in reversed(events):
        when = local_time_text(e.at, now) if e.at else ""
        note = f"：{e.detail['note']}" if e.detail.get("note") else ""
        lines.append(f"· {when} {e.actor} {e.action}{note}")
    buttons = []
    if order.state in WAITING:
        buttons.append(Button("接单", f"接单 {order.ref}"))
    if order.state in ACTIVE:
        buttons += [Button("完成", f"完成 {order.ref}"), Button("转派", f"转派 {order.ref}")]
    return Reply.say("\n".join(lines), *buttons)


# --- a staff member's own report ------------------------------------------------------------

STAFF_REPORT = Form(
    "workorder:staff", (Ask("detail", ask_detail, check_detail),), timeout=600,
    keep=("kind", "hall", "seats"),
)
STAFF_KINDS = {"report_fault": Kind.FAULT, "complaint": Kind.FAULT, "lost_found": Kind.LOST_FOUND}


@router.on(intent=tuple(STAFF_KINDS), role="employee")
async def staff_reported(
    actor: Actor, msg: Inbound, text: str, intent: str | None, slots: dict[str, Any], clock: Clock,
    desk: WorkOrderMessages, dialog: Dialog, reference: ReferenceData,
) -> Reply | None:
    kind = STAFF_KINDS[intent or "report_fault"]
    if not has_content(text, slots):
        return await dialog.start(
            STAFF_REPORT, {"kind": str(kind), "hall": slots.get("hall"), "seats": slots.get("seats")}
        )
    return await staff_report(actor, msg, text, kind, slots, clock, desk, reference)


@router.form(STAFF_REPORT)
async def staff_report_ready(
    actor: Actor, msg: Inbound, slots: dict[str, Any], clock: Clock, desk: WorkOrderMessages,
    reference: ReferenceData,
) -> Reply:
    kind = Kind(slots.get("kind") or Kind.FAULT)
    return await staff_report(actor, msg, slots["detail"], kind, slots, clock, desk, reference)


async def staff_report(
    actor: Actor, msg: Inbound, text: str, kind: Kind, slots: dict[str, Any], clock: Clock,
    desk: WorkOrderMessages, reference: ReferenceData,
) -> Reply:
    """「5排6座扶手断了」 → an order for the right team (engineering for what is broken)."""
    if actor.cinema_id is None:
        return Reply.say("你的账号没有关联影城，不能报修。")
    # Something broken that no keyword places is the engineers' to look at first.
    team = "engineering" if kind == Kind.FAULT and category_of(text) == "other" else None
    order, _ = await open_from_chat(
        actor, msg, kind, text, slots, clock, desk, actor.cinema_id, source="staff", team=team
    )
    holder = await Staff.get_or_none(userid=order.assignee) if order.assignee else None
    if holder is None:
        to = "暂时没有人可派，已记录"
    elif holder.userid == actor.user_id:
        to = "已派给你自己"
    else:
        to = f"已派给{holder.name}（{TEAM_LABELS.get(order.team, order.team)}）"
    deadline = await deadline_text(order, clock.now())
    return Reply.say(
        f"🛠 已建工单 {order.ref}：{KIND_LABELS.get(order.kind, '')}·{what_text(order).split('·')[-1]} "
        f"{place_text(order)}\n{to}，时限：{deadline}。",
        Button("查看", order.ref), Button("我的任务"),
    )
