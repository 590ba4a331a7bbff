"""Work orders: faults, complaints, staff tasks, lost items, group bookings, alerts.

Every change is one guarded UPDATE (state checked, rows affected counted) plus
an append-only timeline row saying who did what, when, and from which message.
SLA state is derived from that timeline (``domain.sla``). Who gets a new order
is decided by routing rules and the on-duty roster.

What people are told is decided by the caller: each change calls ``notify``
inside its transaction (cards and messages go through the outbox).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from tortoise import fields
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.models import Model
from tortoise.transactions import in_transaction

from domain import audit, rollups
from domain.cinemas import Cinema
from domain.people import Staff, StaffRole
from domain.sla import BusinessHours, Clock, Mark, clocks

log = logging.getLogger(__name__)
SHANGHAI = ZoneInfo("Asia/Shanghai")
_DAY = timedelta(days=1)
# A breach goes to the next person on duty; still running at this share of the target,
# to a manager.
SECOND_ESCALATION = 1.5


class Kind(StrEnum):
    FAULT = "fault"
    COMPLAINT = "complaint"
    TASK = "task"
    LOST_FOUND = "lost_found"
    GROUP_BOOKING = "group_booking"
    ALERT = "alert"


CATEGORIES = (
    "seat", "temperature", "sound", "picture", "lighting", "cleanliness", "noise", "staff",
    "facility", "concession", "other",
)
CATEGORY_LABELS = {
    "seat": "座椅", "temperature": "温度", "sound": "声音", "picture": "画面", "lighting": "灯光",
    "cleanliness": "卫生", "noise": "噪音", "staff": "服务", "facility": "设施",
    "concession": "卖品", "other": "其他",
}
KIND_LABELS = {
    Kind.FAULT: "报修", Kind.COMPLAINT: "投诉", Kind.TASK: "任务", Kind.LOST_FOUND: "失物招领",
    Kind.GROUP_BOOKING: "包场预订", Kind.ALERT: "设备告警",
}


class State(StrEnum):
    OPEN = "open"
    ASSIGNED = "assigned"
    ACKNOWLEDGED = "acknowledged"
    IN_PROGRESS = "in_progress"
    PAUSED = "paused"
    ESCALATED = "escalated"
    RESOLVED = "resolved"
    CLOSED = "closed"
    REOPENED = "reopened"


STATE_LABELS = {
    State.OPEN: "待分派", State.ASSIGNED: "待接单", State.ACKNOWLEDGED: "已接单",
    State.IN_PROGRESS: "处理中", State.PAUSED: "暂停（等配件）", State.ESCALATED: "已升级",
    State.RESOLVED: "已解决", State.CLOSED: "已关闭", State.REOPENED: "重新打开",
}
ACTIVE = (
    State.OPEN, State.ASSIGNED, State.ACKNOWLEDGED, State.IN_PROGRESS, State.PAUSED,
    State.ESCALATED, State.REOPENED,
)
# action -> (states it may start from, state it leads to)
TRANSITIONS: dict[str, tuple[tuple[State, ...], State]] = {
    "assign": ((State.OPEN, State.REOPENED, State.ESCALATED, State.ASSIGNED, State.ACKNOWLEDGED,
                State.IN_PROGRESS), State.ASSIGNED),
    "acknowledge": ((State.ASSIGNED, State.ESCALATED, State.REOPENED), State.ACKNOWLEDGED),
    "start": ((State.ACKNOWLEDGED,), State.IN_PROGRESS),
    "pause": ((State.ACKNOWLEDGED, State.IN_PROGRESS), State.PAUSED),
    "resume": ((State.PAUSED,), State.IN_PROGRESS),
    # OPEN too: an alert that clears before anyone could be assigned resolves itself.
    "resolve": ((State.OPEN, State.ASSIGNED, State.ACKNOWLEDGED, State.IN_PROGRESS,
                 State.ESCALATED, State.PAUSED, State.REOPENED), State.RESOLVED),
    "close": ((State.RESOLVED,), State.CLOSED),
    "reopen": ((State.RESOLVED, State.CLOSED), State.REOPENED),
    "escalate": ((State.OPEN, State.ASSIGNED, State.ACKNOWLEDGED, State.IN_PROGRESS,
                  State.ESCALATED, State.REOPENED), State.ESCALATED),
}


class WorkOrder(Model):
    id = fields.IntField(primary_key=True)
    ref = fields.CharField(max_length=12, unique=True)  # what people quote: W3K7Q
    cinema_id = fields.IntField(db_index=True)
    kind = fields.CharEnumField(Kind, max_length=16)
    category = fields.CharField(max_length=16, default="other")
    severity = fields.CharField(max_length=2, default="P3")  # P1 (worst) – P4
    source = fields.CharField(max_length=16)  # chat | qr | staff | telemetry
    source_key = fields.CharField(max_length=128, null=True, unique=True)  # the message it came from
    hall = fields.CharField(max_length=16, null=True)
    seat = fields.CharField(max_length=8, null=True)
    touchpoint = fields.CharField(max_length=64, null=True)
    summary = fields.CharField(max_length=120)
    description = fields.TextField(default="")
    photos = fields.JSONField(default=list)  # media ids / urls sent with the report
    reporter = fields.CharField(max_length=64)  # openid (audience) or WeCom userid (staff)
    reporter_role = fields.CharField(max_length=16)  # audience | staff | engineer | manager | system
    reporter_name = fields.CharField(max_length=32, default="")
    team = fields.CharField(max_length=16, default="floor")
    assignee = fields.CharField(max_length=64, null=True, db_index=True)
    watchers = fields.JSONField(default=list)
    state = fields.CharEnumField(State, max_length=16, default=State.OPEN)
    cause = fields.CharField(max_length=200, default="")
    action = fields.CharField(max_length=200, default="")
    created_at = fields.DatetimeField()
    updated_at = fields.DatetimeField()
    version = fields.IntField(default=0)  # bumped by every change: cards carry it

    class Meta:
        table = "work_order"
        indexes = (("cinema_id", "state"),)


class WorkOrderEvent(Model):
    """The append-only timeline: nothing here is ever updated or deleted."""

    id = fields.BigIntField(primary_key=True)
    work_order: fields.ForeignKeyRelation[WorkOrder] = fields.ForeignKeyField(
        "models.WorkOrder", related_name="events", on_delete=fields.CASCADE
    )
    at = fields.DatetimeField()
    actor = fields.CharField(max_length=64)
    action = fields.CharField(max_length=24)
    from_state = fields.CharField(max_length=16, null=True)
    to_state = fields.CharField(max_length=16, null=True)
    detail = fields.JSONField(default=dict)
    message_key = fields.CharField(max_length=128, null=True)  # the chat message that caused it
    internal = fields.BooleanField(default=False)  # staff-only notes never shown to audiences

    class Meta:
        table = "work_order_event"
        # A message re-run after a crash finds what it already did (``acted_on``); an order's
        # timeline is read by SLA checks and the service rollup (PostgreSQL indexes no
        # foreign key by itself).
        indexes = (("message_key",), ("work_order_id", "at"))


class SlaPolicy(Model):
    id = fields.IntField(primary_key=True)
    cinema_id = fields.IntField(db_index=True)
    kind = fields.CharField(max_length=16)
    severity = fields.CharField(max_length=2)
    ack_minutes = fields.IntField()
    resolve_minutes = fields.IntField()
    business_hours = fields.BooleanField(default=True)  # False: the clock runs around the clock

    class Meta:
        table = "sla_policy"
        unique_together = (("cinema_id", "kind", "severity"),)


# (kind, severity) -> (ack, resolve) minutes, used when a cinema has no policy row.
DEFAULT_SLA: dict[tuple[str, str], tuple[int, int]] = {
    ("complaint", "P1"): (5, 30), ("complaint", "P2"): (5, 30), ("complaint", "P3"): (5, 30),
    ("complaint", "P4"): (10, 60),
    ("fault", "P1"): (15, 60), ("fault", "P2"): (60, 240), ("fault", "P3"): (120, 1440),
    ("fault", "P4"): (240, 4320),
    ("alert", "P1"): (15, 60), ("alert", "P2"): (60, 240), ("alert", "P3"): (120, 1440),
    ("task", "P3"): (10, 30),
    ("lost_found", "P3"): (30, 1440), ("group_booking", "P3"): (60, 1440),
}
FALLBACK_SLA = (30, 240)


class RoutingRule(Model):
    """category × hall × time of day → team. The most specific matching rule wins."""

    id = fields.IntField(primary_key=True)
    cinema_id = fields.IntField(db_index=True)
    category = fields.CharField(max_length=16, null=True)  # None: any
    kind = fields.CharField(max_length=16, null=True)
    hall = fields.CharField(max_length=16, null=True)
    starts = fields.CharField(max_length=5, null=True)  # "HH:MM" local, None: all day
    ends = fields.CharField(max_length=5, null=True)
    team = fields.CharField(max_length=16)  # floor | engineering | management

    class Meta:
        table = "routing_rule"


# With no rule: faults of the building and the picture go to engineering, people's
# complaints to the floor team.
DEFAULT_TEAMS = {
    "seat": "engineering", "temperature": "engineering", "sound": "engineering",
    "picture": "engineering", "lighting": "engineering", "facility": "engineering",
    "cleanliness": "floor", "noise": "floor", "concession": "floor", "staff": "management",
    "other": "floor",
}
TEAM_ROLES = {
    "engineering": StaffRole.ENGINEER, "floor": StaffRole.STAFF, "management": StaffRole.MANAGER,
}
TEAM_LABELS = {"engineering": "工程组", "floor": "场务组", "management": "值班经理"}


class Shift(Model):
    """One stretch of duty: who, on which team, from when to when."""

    id = fields.IntField(primary_key=True)
    cinema_id = fields.IntField(db_index=True)
    staff: fields.ForeignKeyRelation[Staff] = fields.ForeignKeyField(
        "models.Staff", related_name="shifts", on_delete=fields.CASCADE
    )
    team = fields.CharField(max_length=16)
    starts_at = fields.DatetimeField(db_index=True)
    ends_at = fields.DatetimeField()

    class Meta:
        table = "shift"


# What the outside world provides -----------------------------------------------------------
class Notify(Protocol):
    """Records cards and messages about a change, in the caller's transaction. ``event`` is
    the timeline action (opened, assign, acknowledge, resolve, escalate, sla_warning, ...)."""

    def __call__(
        self, event: str, order: WorkOrder, *, using: BaseDBAsyncClient, **info: Any
    ) -> Awaitable[None]: ...


async def _silent(event: str, order: WorkOrder, *, using: BaseDBAsyncClient, **info: Any) -> None:
    return None


class WorkOrderError(Exception):
    """A refused action; ``message`` is what the person is told (Chinese)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


@dataclass(frozen=True, slots=True)
class Who:
    """The person acting: a staff member (userid, role, cinema) or an audience member."""

    user_id: str
    role: str  # audience | staff | engineer | manager | system
    cinema_id: int | None = None
    name: str = ""

    @property
    def is_staff(self) -> bool:
        return self.role in ("staff", "engineer", "manager", "system")


SYSTEM = Who("system", "system")


# Opening ----------------------------------------------------------------------------------
_REF_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


def _new_ref() -> str:
    return "W" + "".join(secrets.choice(_REF_ALPHABET) for _ in range(5))


async def open_order(
    *,
    cinema_id: int,
    kind: Kind,
    category: str,
    summary: str,
    reporter: Who,
    now: datetime,
    severity: str = "P3",
    source: str = "chat",
    source_key: str | None = None,
    hall: str | None = None,
    seat: str | None = None,
    touchpoint: str | None = None,
    description: str = "",
    photos: Sequence[str] = (),
    watchers: Sequence[str] = (),
    team: str | None = None,
    notify: Notify = _silent,
) -> tuple[WorkOrder, bool]:
    """Open a work order and route it (to ``team`` when the caller knows better than the
    rules). (order, created): the same ``source_key`` twice (a retried callback) opens it once."""
    if source_key:
        existing = await WorkOrder.get_or_none(source_key=source_key)
        if existing is not None:
            return existing, False
    if category not in CATEGORIES:
        category = "other"
    if team not in TEAM_ROLES:  # no (known) team given: the routing rules decide
        team = await team_for(cinema_id, category, kind, hall, now)
    try:
        async with in_transaction() as conn:
            for _ in range(5):
                ref = _new_ref()
                if not await WorkOrder.filter(ref=ref).using_db(conn).exists():
                    break
            order = await WorkOrder.create(
                ref=ref, cinema_id=cinema_id, kind=kind, category=category, severity=severity,
                source=source, source_key=source_key, hall=hall, seat=seat, touchpoint=touchpoint,
                summary=summary[:120], description=description, photos=list(photos),
                reporter=reporter.user_id, reporter_role=reporter.role, reporter_name=reporter.name,
                team=team, watchers=list(dict.fromkeys(watchers)), created_at=now, updated_at=now,
                using_db=conn,
            )
            await _event(order, "open", reporter, now, None, State.OPEN, conn,
                         detail={"team": team}, message_key=source_key)
            await notify("opened", order, using=conn)
            assignee = await pick_assignee(cinema_id, team, now, using=conn)
            if assignee is not None:
                await _move(order, "assign", SYSTEM, now, conn, notify,
                            assignee=assignee.userid, detail={"assignee": assignee.userid})
    except IntegrityError:
        if source_key:
            return await WorkOrder.get(source_key=source_key), False
        raise
    return order, True


# Timeline rows that change what the console counts (opened, acknowledged, resolved, breached).
_COUNTED = frozenset(("open", "acknowledge", "resolve", "escalate"))


async def _event(
    order: WorkOrder, action: str, who: Who, now: datetime, before: str | None, after: str | None,
    conn: BaseDBAsyncClient, *, detail: dict[str, Any] | None = None, message_key: str | None = None,
    internal: bool = False,
) -> WorkOrderEvent:
    event = await WorkOrderEvent.create(
        work_order=order, at=now, actor=who.user_id, action=action, from_state=before,
        to_state=after, detail=detail or {}, message_key=message_key, internal=internal,
        using_db=conn,
    )
    if action in _COUNTED or before != after:
        await rollups.refresh_order(order, conn)
    return event


async def _move(
    order: WorkOrder, action: str, who: Who, now: datetime, conn: BaseDBAsyncClient,
    notify: Notify, /, *, detail: dict[str, Any] | None = None, message_key: str | None = None,
    **changes: Any,
) -> None:
    # Positional-only: a change may itself be named ``action`` (what was done, on resolve).
    allowed, target = TRANSITIONS[action]
    updated = await WorkOrder.filter(
        id=order.id, state__in=[s.value for s in allowed], version=order.version
    ).using_db(conn).update(state=target, updated_at=now, version=order.version + 1, **changes)
    if updated != 1:
        raise WorkOrderError("stale", "这张工单刚被别人处理过，已刷新为最新状态。")
    before = order.state
    order.state, order.updated_at, order.version = target, now, order.version + 1
    for name, value in changes.items():
        setattr(order, name, value)
    await _event(order, action, who, now, before, target, conn, detail=detail, message_key=message_key)
    await notify(action, order, using=conn, by=who, before=before, **(detail or {}))


def _can_act(order: WorkOrder, who: Who) -> None:
    if not who.is_staff:
        log.warning("audience tried to act on a work order", extra={"ref": order.ref})
        raise WorkOrderError("forbidden", "只有影城工作人员可以处理工单。")
    if who.role != "system" and who.cinema_id != order.cinema_id:
        log.warning("staff of another cinema tried to act", extra={"ref": order.ref, "by": who.user_id})
        raise WorkOrderError("forbidden", "这不是你所在影城的工单。")


async def act(
    order: WorkOrder,
    action: str,
    who: Who,
    now: datetime,
    *,
    notify: Notify = _silent,
    message_key: str | None = None,
    assignee: str | None = None,
    cause: str = "",
    action_taken: str = "",
    note: str = "",
) -> WorkOrder:
    """A person acts on an order: acknowledge, start, pause, resume, resolve, close,
    reopen, assign (transfer). Idempotent per message: the same ``message_key`` twice
    (a double click, a retried callback) changes nothing the second time."""
    if action not in TRANSITIONS:
        raise WorkOrderError("unknown", f"不认识的操作 {action}")
    if action != "reopen" or who.is_staff:
        _can_act(order, who)
    if message_key and await WorkOrderEvent.filter(work_order_id=order.id, message_key=message_key).exists():
        return await WorkOrder.get(id=order.id)
    allowed, target = TRANSITIONS[action]
    if order.state == target and action not in ("assign",):
        return order  # already there: a second click on 接单 is not an error
    if order.state not in allowed:
        raise WorkOrderError(
            "state", f"工单{order.ref}当前「{STATE_LABELS[order.state]}」，不能{ACTION_LABELS.get(action, action)}。"
        )
    changes: dict[str, Any] = {}
    detail: dict[str, Any] = {}
    if action == "resolve":
        if not action_taken.strip():
            raise WorkOrderError("need_action", "请说明做了什么处理，例如「已处理，换了座椅」。")
        changes.update(action=action_taken.strip()[:200], cause=(cause or action_taken).strip()[:200])
        detail.update(action=changes["action"], cause=changes["cause"])
    if action == "assign":
        if not assignee:
            raise WorkOrderError("need_assignee", "转给谁？例如「转给staff02」。")
        target_staff = await Staff.get_or_none(userid=assignee, active=True)
        if target_staff is None or target_staff.cinema_id != order.cinema_id:
            raise WorkOrderError("no_such_staff", f"没有找到本影城的在职员工 {assignee}。")
        if assignee == order.assignee:
            return order
        changes["assignee"] = assignee
        detail.update(assignee=assignee, previous=order.assignee)
        if order.assignee and order.assignee not in order.watchers and order.assignee != assignee:
            changes["watchers"] = [*order.watchers, order.assignee]
    if note:
        detail["note"] = note[:200]
    async with in_transaction() as conn:
        await _move(order, action, who, now, conn, notify, detail=detail, message_key=message_key, **changes)
    return order


ACTION_LABELS = {
    "assign": "转派", "acknowledge": "接单", "start": "开始处理", "pause": "暂停", "resume": "继续",
    "resolve": "完成", "close": "关闭", "reopen": "重新打开", "escalate": "升级",
}


async def add_photo(order: WorkOrder, media: str, who: Who, now: datetime, notify: Notify = _silent) -> None:
    async with in_transaction() as conn:
        await WorkOrder.filter(id=order.id).using_db(conn).update(photos=[*order.photos, media], updated_at=now)
        order.photos = [*order.photos, media]
        await _event(order, "photo", who, now, order.state, order.state, conn, detail={"media": media})
        await notify("photo", order, using=conn, media=media)


# Routing and the roster ------------------------------------------------------------------------
def _in_window(local_now: time, starts: str | None, ends: str | None) -> bool:
    if not starts or not ends:
        return True
    a, b = time.fromisoformat(starts), time.fromisoformat(ends)
    return a <= local_now < b if a < b else (local_now >= a or local_now < b)


async def team_for(cinema_id: int, category: str, kind: str, hall: str | None, now: datetime) -> str:
    local = now.astimezone(SHANGHAI).time()
    best: tuple[int, str] | None = None
    for rule in await RoutingRule.filter(cinema_id=cinema_id):
        if rule.category and rule.category != category:
            continue
        if rule.kind and rule.kind != kind:
            continue
        if rule.hall and rule.hall != hall:
            continue
        if not _in_window(local, rule.starts, rule.ends):
            continue
        score = (rule.category is not None) * 4 + (rule.hall is not None) * 2 + (rule.kind is not None) + (rule.starts is not None)
        if best is None or score > best[0]:
            best = (score, rule.team)
    if best is not None:
        return best[1]
    if kind == Kind.COMPLAINT and category not in ("staff",):
        return "floor"
    if kind in (Kind.LOST_FOUND, Kind.GROUP_BOOKING, Kind.TASK):
        return "management" if kind == Kind.GROUP_BOOKING else "floor"
    return DEFAULT_TEAMS.get(category, "floor")


async def on_duty(
    cinema_id: int, team: str, now: datetime, using: BaseDBAsyncClient | None = None
) -> list[Staff]:
    now_utc = now.astimezone(UTC)
    shifts = await Shift.filter(
        cinema_id=cinema_id, team=team, starts_at__lte=now_utc, ends_at__gt=now_utc,
        staff__active=True,
    ).using_db(using).prefetch_related("staff")
    seen: dict[str, Staff] = {}
    for s in shifts:
        seen.setdefault(s.staff.userid, s.staff)
    return list(seen.values())


async def managers(cinema_id: int, using: BaseDBAsyncClient | None = None) -> list[Staff]:
    return await Staff.filter(
        cinema_id=cinema_id, active=True, role=StaffRole.MANAGER
    ).using_db(using).order_by("id")


async def pick_assignee(
    cinema_id: int, team: str, now: datetime, *, exclude: Sequence[str] = (),
    using: BaseDBAsyncClient | None = None,
) -> Staff | None:
    """The on-duty member of ``team`` who was assigned least recently (round-robin);
    nobody on duty → the duty manager."""
    people = [p for p in await on_duty(cinema_id, team, now, using) if p.userid not in exclude]
    if people:
        # Events in the order they were written: several orders opened in one instant
        # (a burst of reports, a test clock) still take turns.
        last: dict[str, int] = {}
        for e in await WorkOrderEvent.filter(
            action__in=["assign", "escalate"], work_order__cinema_id=cinema_id,
            at__gte=(now.astimezone(UTC) - _DAY),
        ).using_db(using).order_by("id"):
            who = e.detail.get("assignee")
            if who:
                last[who] = e.id
        return min(people, key=lambda p: (last.get(p.userid, 0), p.id))
    on_duty_managers = [p for p in await on_duty(cinema_id, "management", now, using) if p.userid not in exclude]
    if on_duty_managers:
        return on_duty_managers[0]
    fallback = [m for m in await managers(cinema_id, using) if m.userid not in exclude]
    return fallback[0] if fallback else None


async def add_shift(
    *, cinema_id: int, staff: Staff, team: str, starts_at: datetime, ends_at: datetime,
    by: str, now: datetime,
) -> Shift:
    if ends_at <= starts_at:
        raise WorkOrderError("bad_shift", "班次结束时间要晚于开始时间。")
    if team not in TEAM_ROLES:
        raise WorkOrderError("bad_team", f"没有这个组：{team}（可选 {'、'.join(TEAM_ROLES)}）")
    async with in_transaction() as conn:
        shift = await Shift.create(
            cinema_id=cinema_id, staff=staff, team=team, starts_at=starts_at, ends_at=ends_at,
            using_db=conn,
        )
        await audit.record(
            entity="shift", entity_id=shift.id, action="add", actor=by, at=now, cinema_id=cinema_id,
            detail={"staff": staff.userid, "team": team, "from": starts_at.isoformat(),
                    "to": ends_at.isoformat()}, using=conn,
        )
    return shift


async def roster(cinema_id: int, start: datetime, end: datetime) -> list[Shift]:
    return await Shift.filter(
        cinema_id=cinema_id, starts_at__lt=end.astimezone(UTC), ends_at__gt=start.astimezone(UTC)
    ).order_by("starts_at").prefetch_related("staff")


# SLA ------------------------------------------------------------------------------------------
async def policy_for(
    order: WorkOrder, using: BaseDBAsyncClient | None = None
) -> tuple[int, int, bool]:
    row = await SlaPolicy.get_or_none(
        cinema_id=order.cinema_id, kind=order.kind, severity=order.severity
    ).using_db(using)
    if row is not None:
        return row.ack_minutes, row.resolve_minutes, row.business_hours
    ack, resolve = DEFAULT_SLA.get((str(order.kind), order.severity), FALLBACK_SLA)
    # P1 faults and alerts are urgent whatever the hour; the rest wait for opening time.
    return ack, resolve, not (order.severity == "P1")


async def sla(
    order: WorkOrder, now: datetime, cinema: Cinema | None = None,
    using: BaseDBAsyncClient | None = None,
) -> tuple[Clock, Clock]:
    """(acknowledge clock, resolve clock). ``using``: read inside the caller's transaction
    (a card built while the change that caused it is not yet committed)."""
    cinema = cinema or await Cinema.get(id=order.cinema_id).using_db(using)
    ack, resolve, business = await policy_for(order, using)
    hours = BusinessHours.parse(cinema.opens_at, cinema.closes_at, always=not business)
    events = await WorkOrderEvent.filter(work_order_id=order.id).using_db(using).order_by("at")
    marks = [Mark(e.at, e.action) for e in events]
    return clocks(order.created_at, marks, ack_minutes=ack, resolve_minutes=resolve, hours=hours, now=now)


async def check_sla(order: WorkOrder, now: datetime, notify: Notify = _silent) -> str | None:
    """Warn once at 80 %; on breach hand over to the next person on duty, and at 150 %
    to a manager. Each step is a timeline row and happens once per clock."""
    if order.state not in ACTIVE:
        return None
    ack, resolve = await sla(order, now)
    events = await WorkOrderEvent.filter(work_order_id=order.id, action__in=["sla_warning", "escalate"])
    for clock in (ack, resolve):
        if not clock.running or clock.paused:
            continue  # a paused order waits for its part; its deadline moves with the pause
        # Only this run of the clock counts: a reopened order gets a fresh warning and
        # escalation on its restarted resolve clock.
        mine = [e for e in events if e.detail.get("clock") == clock.name and e.at >= clock.started_at]
        warned = any(e.action == "sla_warning" for e in mine)
        level = sum(e.action == "escalate" for e in mine)
        if clock.breached and level == 0:
            return await escalate(order, now, clock, notify, to_manager=False)
        if clock.ratio >= SECOND_ESCALATION and level == 1:
            return await escalate(order, now, clock, notify, to_manager=True)
        if clock.warning and not warned:
            async with in_transaction() as conn:
                await _event(order, "sla_warning", SYSTEM, now, order.state, order.state, conn,
                             detail={"clock": clock.name, "assignee_before": order.assignee,
                                     "due_at": clock.due_at.isoformat() if clock.due_at else None})
                await notify("sla_warning", order, using=conn, clock=clock)
            return "warning"
    return None


async def escalate(
    order: WorkOrder, now: datetime, clock: Clock, notify: Notify = _silent, *, to_manager: bool
) -> str:
    """Hand a breached order over; the previous assignee keeps watching."""
    nxt: Staff | None = None
    if not to_manager:
        tried = [order.assignee] if order.assignee else []
        people = [p for p in await on_duty(order.cinema_id, order.team, now) if p.userid not in tried]
        nxt = await pick_assignee(order.cinema_id, order.team, now, exclude=tried) if people else None
    if nxt is None:
        # The manager on duty now, else any manager of the cinema.
        duty = [m for m in await on_duty(order.cinema_id, "management", now) if m.userid != order.assignee]
        ms = duty or [m for m in await managers(order.cinema_id) if m.userid != order.assignee]
        nxt = ms[0] if ms else None
    new_assignee = nxt.userid if nxt is not None else order.assignee
    watchers = list(order.watchers)
    if order.assignee and order.assignee not in watchers and order.assignee != new_assignee:
        watchers.append(order.assignee)
    async with in_transaction() as conn:
        await _move(
            order, "escalate", SYSTEM, now, conn, notify,
            detail={"clock": clock.name, "assignee_before": order.assignee, "assignee": new_assignee,
                    "level": 2 if to_manager else 1},
            assignee=new_assignee, watchers=watchers,
        )
    return "escalated"


async def due_for_check(after_id: int = 0, limit: int = 500) -> list[WorkOrder]:
    """One page of active orders after ``after_id`` (page through them all by id)."""
    return await WorkOrder.filter(
        state__in=[s.value for s in ACTIVE], id__gt=after_id
    ).order_by("id").limit(limit)


# Reading ---------------------------------------------------------------------------------------
async def my_tasks(userid: str, limit: int = 10) -> list[WorkOrder]:
    return await WorkOrder.filter(
        assignee=userid, state__in=[s.value for s in ACTIVE]
    ).order_by("-created_at").limit(limit)


async def reported_by(openid: str, limit: int = 5) -> list[WorkOrder]:
    return await WorkOrder.filter(reporter=openid).order_by("-created_at").limit(limit)


async def find(ref: str, cinema_id: int | None = None) -> WorkOrder | None:
    query = WorkOrder.filter(ref=ref.upper())
    if cinema_id is not None:
        query = query.filter(cinema_id=cinema_id)
    return await query.first()


async def acted_on(message_keys: Sequence[str]) -> WorkOrder | None:
    """The order a message has already acted on, found by the keys its events carry. A
    command that names no order (「收到」, 「已处理，…」) picks the latest one; run again after
    a crash it must pick the same one, not the next in line."""
    event = await WorkOrderEvent.filter(message_key__in=list(message_keys)).order_by("-id").first()
    if event is None:
        return None
    return await WorkOrder.get_or_none(id=event.work_order_id)  # type: ignore[attr-defined]


async def latest_for(userid: str, states: Sequence[State]) -> WorkOrder | None:
    return await WorkOrder.filter(
        Q(assignee=userid), state__in=[s.value for s in states]
    ).order_by("-updated_at").first()


async def public_timeline(order: WorkOrder) -> list[WorkOrderEvent]:
    """What an audience may see: no internal notes."""
    return await WorkOrderEvent.filter(work_order_id=order.id, internal=False).order_by("at")
