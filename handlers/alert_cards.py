"""Projector alerts in WeCom: the alert card, its buttons 确认 / 处理中 / 静默2小时, the floor
staff's warning, and 「维护中 2小时」 silences typed by engineers and managers.

An ALERT work order (``domain.alerts``) is one incident group; its card lists every alert
of the group with value against limit, a sparkline of the rule's metric, the likely cause
and advice, and a show about to start in that hall. The card is drawn by
``WorkOrderMessages.card`` (which hands ALERT orders here) and redrawn for every change
like any work-order card; its buttons are ``al:<action>:<order id>:<card version>``.

Clicks are idempotent like every work-order action: each goes through ``domain.workorders``
with the click's dedup key, a second tap finds the order already there, and a second
静默2小时 finds the silence it would add.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tortoise.backends.base.client import BaseDBAsyncClient

from bot.chat.channels import Channel, Inbound
from bot.infra.clock import Clock, local_time_text
from bot.chat.replies import Button, Reply
from bot.chat.router import Actor, Router
from bot.infra.strict import parse_ascii_int
from bot.wechat.api import CARD_MAX_ROWS, button_card
from domain import alerts
from domain.cinemas import Cinema
from domain.devices import AlertRecord
from domain.outbox import enqueue
from domain.people import Staff, StaffRole
from domain.workorders import ACTIVE, State, Who, WorkOrder, WorkOrderError, act, on_duty
from handlers.workorder_messages import WorkOrderMessages, deadline_text

log = logging.getLogger(__name__)
SHANGHAI = ZoneInfo("Asia/Shanghai")

clicks = Router(__name__ + ".clicks")
router = Router(__name__)

# action -> (label, style)
BUTTONS = {"ack": ("确认", 1), "start": ("处理中", 2), "mute": ("静默2小时", 3)}
STATE_TEXT = {
    State.OPEN: "待分派", State.ASSIGNED: "待确认", State.ESCALATED: "已升级·待确认",
    State.REOPENED: "待确认", State.ACKNOWLEDGED: "已确认", State.IN_PROGRESS: "处理中",
    State.PAUSED: "暂停", State.RESOLVED: "已处理", State.CLOSED: "已关闭",
}
MAX_ALERT_ROWS = 3
CARD_REASON = "工程师静默"
TEXT_REASON = "维护中"
SILENCE_ROLES = ("engineer", "manager")
MAX_SILENCE = timedelta(hours=24)


def buttons_for(state: State | str) -> list[str]:
    if state in alerts.UNACKNOWLEDGED:
        return ["ack", "start", "mute"]
    if state == State.ACKNOWLEDGED:
        return ["start", "mute"]
    if state in (State.IN_PROGRESS, State.PAUSED):
        return ["mute"]
    return []


def button_key(action: str, order_id: int, card_version: int) -> str:
    return f"al:{action}:{order_id}:{card_version}"


def finished_label(order: WorkOrder) -> str:
    """What a finished alert card's buttons become: 「✅ 已恢复」 when its alerts cleared."""
    if alerts.recovered(order):
        return "✅ 已恢复"
    return "✅ 已处理" if order.state == State.RESOLVED else "已关闭"


def state_text(order: WorkOrder) -> str:
    if order.state == State.RESOLVED and alerts.recovered(order):
        return "已恢复"
    return STATE_TEXT.get(order.state, str(order.state))


def _hhmm(dt: datetime) -> str:
    return f"{dt.astimezone(SHANGHAI):%H:%M}"


def show_text(show: Any) -> str:
    return f"⚠ {_hhmm(show.starts_at)}《{show.film.title}》2小时内开场"


def _reading(r: AlertRecord) -> str:
    return alerts.reading_text(r.rule, r.severity, r.value, r.limit, r.predicted_at) or r.message[:30]


def _advice(records: list[AlertRecord]) -> str:
    """Likely cause and advice, one pair per rule (the worst alert's first)."""
    lines: list[str] = []
    seen: set[str] = set()
    for r in records:
        if r.rule in seen or len(seen) == 2:
            continue
        seen.add(r.rule)
        cause, advice = alerts.advice_for(r.rule)
        if r.predicted_at is not None:
            advice += f"（预计{r.predicted_at.astimezone(SHANGHAI):%m月%d日}到线）"
        lines.append(f"可能原因：{cause}\n建议：{advice}")
    return "\n".join(lines)


async def card(
    desk: WorkOrderMessages, order: WorkOrder, conn: BaseDBAsyncClient | None, task_id: str,
    card_version: int, *, head: str = "", copy: bool = False, keys: list[str] | None = None,
) -> dict[str, Any]:
    """The alert card of ``order`` as it is now (see the module docstring)."""
    now = desk.clock.now()
    cinema = await Cinema.get_or_none(id=order.cinema_id).using_db(conn)
    records = await alerts.order_alerts(order, conn)
    sparks = await alerts.sparks(order, conn)
    rows: list[tuple[str, str]] = []
    if len(records) == 1:
        r = records[0]
        rows += [("设备", f"{r.device_id} · {r.hall}"), ("读数", _reading(r)),
                 ("趋势", sparks.get(r.alert_id) or "—")]
    else:
        for r in records[:MAX_ALERT_ROWS]:
            state = "（已恢复）" if r.state == "resolved" else ""
            rows.append((r.device_id, f"{_reading(r)} {sparks.get(r.alert_id, '')}".strip() + state))
        if len(records) > MAX_ALERT_ROWS:
            rows.append(("更多", f"另有{len(records) - MAX_ALERT_ROWS}项告警"))
    holder = await Staff.get_or_none(userid=order.assignee).using_db(conn) if order.assignee else None
    status = state_text(order) + (f" · {holder.name}" if holder else "")
    quiet = [s for s in [await alerts.active_silence(order.cinema_id, r.device_id, r.rule, now)
                         for r in records[:1]] if s is not None]
    if quiet:
        status += f" · 🔕至{local_time_text(quiet[0].ends_at, now)}"
    rows.append(("状态", status))
    show = await alerts.show_soon(order.cinema_id, order.hall, now, conn)
    if show is not None:
        rows.append(("场次", show_text(show)))
    if len(rows) < CARD_MAX_ROWS and order.state in ACTIVE:
        rows.append(("时限", await deadline_text(order, now, conn, cinema)))
    actions = buttons_for(order.state) if keys is None else keys
    icon = "🚨" if order.severity == "P1" else "⚠️"
    built = button_card(
        task_id,
        f"{head}{icon} 设备告警 {order.ref}"[:36],
        f"{order.severity} · {order.summary}"[:44],
        rows[:CARD_MAX_ROWS],
        [(button_key(a, order.id, card_version), *BUTTONS[a]) for a in actions]
        or [(button_key("mute", order.id, card_version), *BUTTONS["mute"])],
        source=f"设备告警 · {cinema.name if cinema else ''}" + ("（抄送）" if copy else ""),
    )
    advice = _advice([r for r in records if r.state == "firing"] or records)
    if advice:
        built["sub_title_text"] = advice[:112]
    return built


async def warn_staff(desk: WorkOrderMessages, order: WorkOrder, conn: BaseDBAsyncClient) -> None:
    """The floor staff on duty hear of a critical alert or one in a hall about to show, once
    per order (the outbox key), in the change's own transaction."""
    now = desk.clock.now()
    show = await alerts.show_soon(order.cinema_id, order.hall, now, conn)
    if order.severity != "P1" and show is None:
        return
    people = [p for p in await on_duty(order.cinema_id, "floor", now, using=conn)
              if p.role == StaffRole.STAFF]
    if not people:
        return
    text = f"⚠️ {order.summary}，已通知工程师处理"
    if show is not None:
        text += f"；{_hhmm(show.starts_at)}《{show.film.title}》场次请留意"
    text += "。"
    for person in people:
        await enqueue(
            channel="wecom", recipient=person.userid,
            payload={"msgtype": "text", "agentid": desk.agent_id, "text": {"content": text}},
            idempotency_key=f"wo:{order.id}:staffwarn:{person.userid}", now=now, using=conn,
        )


# --- card buttons ----------------------------------------------------------------------------


def _who(actor: Actor) -> Who:
    return Who(actor.user_id, actor.role, actor.cinema_id, actor.name)


async def _devices(order: WorkOrder) -> list[str]:
    records = await alerts.order_alerts(order)
    firing = [r.device_id for r in records if r.state == "firing"]
    return list(dict.fromkeys(firing or [r.device_id for r in records]))


@clicks.on(channel=Channel.WECOM, event="template_card_event", role="employee", button="al")
async def alert_clicked(
    actor: Actor, msg: Inbound, button_args: list[str], clock: Clock, desk: WorkOrderMessages,
) -> Reply:
    order_id = parse_ascii_int(button_args[1]) if len(button_args) >= 2 else None
    if order_id is None or button_args[0] not in BUTTONS:
        return Reply.say("这张卡片已失效，请回复「我的任务」查看最新工单。")
    action, order = button_args[0], await WorkOrder.get_or_none(id=order_id)
    if order is None or order.cinema_id != actor.cinema_id:
        log.warning("an alert card click for an unknown order or another cinema",
                    extra={"by": actor.user_id, "order": button_args[1]})
        return Reply.say("这张卡片已失效：没有找到本影城的这张告警工单。")
    if order.state not in ACTIVE:
        done = "告警已恢复" if alerts.recovered(order) else f"已{STATE_TEXT[order.state]}"
        return Reply.say(f"{order.ref} {done}，不用再操作了。")
    notify = desk.clicked(actor.user_id, msg.response_code, msg.task_id)
    who, now, key = _who(actor), clock.now(), msg.dedup_key
    until: datetime | None = None
    try:
        if order.state in alerts.UNACKNOWLEDGED and order.assignee != actor.user_id:
            # A copy holder (or a colleague) takes the incident over.
            order = await act(order, "assign", who, now, notify=notify, message_key=f"{key}:take",
                              assignee=actor.user_id)
        if action == "mute":
            # The silence first: the card redrawn by the acknowledgement shows it.
            until = await alerts.silence(order.cinema_id, await _devices(order), who, now,
                                         alerts.CARD_SILENCE, CARD_REASON)
        if action == "start":
            order = await alerts.start(order, who, now, notify=notify, message_key=key)
        else:
            order = await alerts.acknowledge(order, who, now, notify=notify, message_key=key)
    except WorkOrderError as exc:
        return Reply.say(exc.message, Button("我的任务"))
    desk.wake()
    if until is not None:
        devices = "、".join(await _devices(order))
        return Reply.say(
            f"🔕 已静默 {devices} 至 {local_time_text(until, now)}（2小时，{CARD_REASON}）：\n"
            "期间告警只记录不通知；到时仍在告警会再通知你。"
        )
    if action == "start":
        return Reply.say(f"🛠 {order.ref} 处理中：{order.summary}\n处理好后回复「已处理，做了什么」。")
    return Reply.say(
        f"✅ 已确认 {order.ref}：{order.summary}\n"
        "处理好后回复「已处理，做了什么」；要维护可回复「维护中 2小时」。"
    )


# --- 「维护中 2小时」 -----------------------------------------------------------------------------

SILENCE = re.compile(
    r"^\s*(?P<hall>[^\s，,。]*?厅)?\s*(?:放映机)?\s*(?:维护中|在维护|维护|静默)\s*"
    r"(?P<n>\d+(?:\.\d+)?|[一二两三四五六七八九十半]+)\s*(?P<unit>个?小时|分钟|h|min)\s*[。!！]?\s*$",
    re.IGNORECASE,
)
_DIGITS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}


def _number(text: str) -> float | None:
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    if text == "半":
        return 0.5
    if text == "十":
        return 10.0
    if text.startswith("十") and len(text) == 2 and text[1] in _DIGITS:
        return 10.0 + _DIGITS[text[1]]
    return float(_DIGITS[text]) if text in _DIGITS else None


def silence_duration(n: str, unit: str) -> timedelta | None:
    value = _number(n)
    if value is None or value <= 0:
        return None
    minutes = value if unit.lower() in ("分钟", "min") else value * 60
    # Capped before timedelta sees it: "维护中 99999999999小时" would overflow it.
    return timedelta(minutes=min(minutes, MAX_SILENCE / timedelta(minutes=1)))


def _silence_command(update: Any) -> dict[str, Any] | None:
    m = SILENCE.match(update.inbound.text or "")
    if m is None:
        return None
    return {"hall": m.group("hall"), "duration": silence_duration(m.group("n"), m.group("unit"))}


@router.on(channel=Channel.WECOM, role="employee", kind=("text", "voice"), when=_silence_command)
async def silence_typed(
    actor: Actor, hall: str | None, duration: timedelta | None, clock: Clock,
) -> Reply:
    if actor.role not in SILENCE_ROLES or actor.cinema_id is None:
        return Reply.say("只有工程师或值班经理可以设置告警静默。")
    if duration is None:
        return Reply.say("静默多久？例如「3号厅维护中2小时」。")
    if hall is None:
        latest = await alerts.latest_alert(actor.cinema_id, actor.user_id)
        if latest is None or not latest.hall:
            return Reply.say("哪个厅在维护？例如「3号厅维护中2小时」。")
        hall = latest.hall
    devices = await alerts.hall_devices(actor.cinema_id, hall)
    if not devices:
        return Reply.say(f"本影城没有「{hall}」的放映机。例如「3号厅维护中2小时」。")
    now = clock.now()
    until = await alerts.silence(actor.cinema_id, devices, _who(actor), now, duration, TEXT_REASON)
    return Reply.say(
        f"🔕 {hall}放映机已静默至 {local_time_text(until, now)}（{TEXT_REASON}）：\n"
        "期间告警只记录不通知；到时仍在告警会再通知你。"
    )
