"""The stored alert lifecycle: telemetry alerts become records, incident groups become ALERT
work orders, and people acknowledge, silence and are reminded.

``telemetry.alerts`` decides *when* an alert fires or resolves (pure, per device and rule);
this module decides *who hears of it*:

* **Records.** One :class:`~domain.devices.AlertRecord` per incident of a (device, rule)
  while it fires; repeats and escalations join it; a resolved record never reopens.
* **Groups.** A new firing alert joins the active ALERT work order of its cinema whose
  first alert fired within :data:`GROUP_WINDOW_S` of it (the readings' clock): one card
  per incident group, listing every alert of the order. A rise to critical raises the
  order to P1; joins and escalations update the card (an ``alert_update`` notify).
* **Silences.** An alert that fires while an :class:`~domain.devices.AlertSilence` matches
  is recorded (``silenced``) with no card and no order; still firing when the silence
  ends, it is told then (:func:`release_silenced`, a job).
* **Acknowledgement and reminders.** Acknowledging an alert order stamps its records; an
  unacknowledged, unsilenced firing alert's engineer is reminded (:func:`remind_due`,
  a job) every 15 min (critical) / 60 min (warning), at most three times.

What the telemetry saw when an alert fired (its sparkline) is kept on the order's
timeline (``alert`` / ``alert_joined`` / ``alert_escalated`` rows), which the card reads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from domain import audit
from domain.catalog import Showtime
from domain.devices import AlertRecord, AlertSilence, DevicePlace, Projector
from domain.workorders import (
    ACTIVE,
    SYSTEM,
    Kind,
    Notify,
    State,
    Who,
    WorkOrder,
    WorkOrderError,
    WorkOrderEvent,
    act,
    open_order,
)

log = logging.getLogger(__name__)
_SHANGHAI = ZoneInfo("Asia/Shanghai")

GROUP_WINDOW_S = 120  # alerts of a cinema firing this close together are one incident group
SHOW_SOON = timedelta(hours=2)  # a show this close in the alert's hall is on the card
CARD_SILENCE = timedelta(hours=2)  # the card's 静默2小时
REMIND_EVERY = {"critical": timedelta(minutes=15), "warning": timedelta(minutes=60)}
MAX_REMINDERS = 3
# A second silence request that would end within this of an existing one is the same request
# (a double tap, a retried callback once its dedup has lapsed).
SILENCE_SLACK = timedelta(minutes=10)
SEVERITY_PRIORITY = {"critical": "P1", "warning": "P2"}
RANK = {"warning": 1, "critical": 2}
TELEMETRY = Who("telemetry", "system", None, "设备监测")
# Orders nobody has acknowledged yet: their alerts are reminded.
UNACKNOWLEDGED = (State.OPEN, State.ASSIGNED, State.ESCALATED, State.REOPENED)
ALERT_EVENTS = ("alert", "alert_joined", "alert_escalated")

# The metric a rule watches: its recent values are the card's sparkline.
SPARK_METRIC = {
    "temperature_high": "temperature_c", "temperature_rate": "temperature_c",
    "baseline_temperature": "temperature_c", "temperature_forecast": "temperature_c",
    "fan": "fan_rpm", "baseline_fan": "fan_rpm",
    "brightness_low": "brightness_pct", "brightness_forecast": "brightness_pct",
}
SPARK_BARS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 12

# rule -> (likely cause, advice): what an engineer reads first on the card.
ADVICE: dict[str, tuple[str, str]] = {
    "temperature_high": ("散热不良：排风口堵塞、风扇故障或机房过热", "检查排风管道、风扇和机房空调"),
    "temperature_rate": ("可能排风口堵塞或风扇故障", "检查排风管道和风扇"),
    "baseline_temperature": ("滤网积灰或散热效率下降", "清洁滤网，检查排风和风扇"),
    "temperature_forecast": ("滤网逐渐堵塞或散热效率下降", "安排清洁滤网、检查排风"),
    "fan": ("风扇故障或被异物卡住", "检查风扇供电和扇叶，必要时更换风扇"),
    "baseline_fan": ("风扇老化或轴承磨损", "安排检修或更换风扇"),
    "brightness_low": ("光源衰减或镜头、光路脏污", "清洁镜头和光路，检查光源"),
    "brightness_forecast": ("光源老化", "安排更换光源"),
    "no_data": ("网络或边缘盒故障", "检查边缘盒供电和网络连接"),
    "unreachable": ("放映机死机或通信中断", "到放映间查看放映机，必要时重启"),
}
ERROR_ADVICE = ("放映机自检报错", "按厂商手册查该错误码，必要时联系厂家")


def _category(rule: str) -> str:
    return "picture" if rule.startswith("brightness") else "facility"


# Pure rules: what the card says ---------------------------------------------------------------
def sparkline(values: Sequence[float | None], width: int = SPARK_WIDTH) -> str:
    """「▁▂▃▅▇█」: the last values squeezed into ``width`` bars (means of equal slices),
    scaled between their own minimum and maximum; a flat line is all middle bars."""
    xs = [float(v) for v in values if isinstance(v, int | float)]
    if not xs:
        return ""
    if len(xs) > width:
        step = len(xs) / width
        xs = [
            sum(part) / len(part)
            for i in range(width)
            if (part := xs[int(i * step):max(int((i + 1) * step), int(i * step) + 1)])
        ]
    lo, hi = min(xs), max(xs)
    if hi - lo < 1e-9:
        return SPARK_BARS[3] * len(xs)
    top = len(SPARK_BARS) - 1
    return "".join(SPARK_BARS[round((x - lo) / (hi - lo) * top)] for x in xs)


def advice_for(rule: str) -> tuple[str, str]:
    if rule.startswith("error:"):
        return ERROR_ADVICE
    return ADVICE.get(rule, ("未知", "到现场检查放映机"))


def _day(dt: datetime) -> str:
    local = dt.astimezone(_SHANGHAI)
    return f"{local.month}月{local.day}日"


def reading_text(rule: str, severity: str, value: float | None, limit: float | None,
                 predicted_at: datetime | None = None) -> str:
    """Value against limit, as an engineer reads it: 「温度 86.2°C / 警戒 80°C」."""
    if value is None:
        return ""
    line = "危险" if severity == "critical" else "警戒"
    if rule in ("temperature_high", "temperature_forecast"):
        text = f"温度 {value:.1f}°C" + (f" / {line} {limit:g}°C" if limit is not None else "")
    elif rule == "baseline_temperature":
        text = f"比平时高 {value:.1f}°C" + (f" / 门限 {limit:g}°C" if limit is not None else "")
    elif rule == "temperature_rate":
        text = f"升温 {value:.1f}°C/分钟"
    elif rule == "fan":
        text = f"风扇 {value:.0f} rpm" + (f" / 下限 {limit:g} rpm" if limit is not None else "")
    elif rule == "baseline_fan":
        text = f"风扇为平时的 {value:.0%}" + (f" / 下限 {limit:.0%}" if limit is not None else "")
    elif rule in ("brightness_low", "brightness_forecast"):
        red = "危险线" if severity == "critical" else "红线"
        text = f"亮度 {value:.1f}%" + (f" / {red} {limit:g}%" if limit is not None else "")
    else:
        text = f"{value:g}" + (f" / 限值 {limit:g}" if limit is not None else "")
    if predicted_at is not None:
        text += f"，预计{_day(predicted_at)}到线"
    return text


# Firing and resolving -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Fired:
    device_id: str
    rule: str
    severity: str  # warning | critical
    title: str
    message: str
    alert_id: str  # the evaluator's id of this incident
    at: datetime  # the reading's time
    value: float | None = None
    limit: float | None = None
    predicted_at: datetime | None = None
    spark: str = ""  # the rule's metric over the last readings (sparkline), made by the ingest


def _detail(record: AlertRecord, spark: str) -> dict[str, Any]:
    return {"alert_id": record.alert_id, "device_id": record.device_id, "rule": record.rule,
            "severity": record.severity, "spark": spark}


async def _touch(
    order: WorkOrder, action: str, now: datetime, conn: BaseDBAsyncClient, notify: Notify,
    detail: dict[str, Any], *, severity: str | None = None, **info: Any,
) -> WorkOrder:
    """A change of what the order holds (an alert joined, one escalated): a new version, so
    its cards are redrawn, and a timeline row — guarded like every transition."""
    for _ in range(3):
        changes: dict[str, Any] = {"updated_at": now, "version": order.version + 1}
        if severity is not None:
            changes["severity"] = severity
        if await WorkOrder.filter(id=order.id, version=order.version).using_db(conn).update(**changes):
            before = order.severity
            for name, value in changes.items():
                setattr(order, name, value)
            await WorkOrderEvent.create(
                work_order=order, at=now, actor=TELEMETRY.user_id, action=action,
                from_state=order.state, to_state=order.state, detail=detail, internal=True,
                using_db=conn,
            )
            await notify("alert_update", order, using=conn, raised=before != order.severity, **info)
            return order
        # Someone acted on the order meanwhile (a click): the change applies to what it is now.
        order = await WorkOrder.get(id=order.id).using_db(conn)
    raise WorkOrderError("stale", "工单正在被频繁修改，稍后再试。")


def _raised(order: WorkOrder, severity: str) -> str | None:
    """The order's new priority when an alert of ``severity`` is in it, or None."""
    wanted = SEVERITY_PRIORITY.get(severity, "P2")
    return wanted if wanted < order.severity else None


async def alert_fired(
    place: DevicePlace, alert: Fired, now: datetime, notify: Notify
) -> tuple[AlertRecord, WorkOrder | None, bool]:
    """A firing alert becomes (or joins) a record, and is told unless silenced:
    (record, its order, whether a card was sent or changed).

    The incident is the (device, rule) pair while it fires: a repeat, an escalation or the
    same alert after a restart of the evaluator joins its record; after its resolve, a
    firing is a new incident. A new incident joins its cinema's incident group (an active
    ALERT order whose first alert fired within the group window) or opens one."""
    record = await AlertRecord.filter(
        device_id=alert.device_id, rule=alert.rule, state="firing"
    ).order_by("-id").first()
    if record is not None:
        return await _again(record, place, alert, now, notify)
    stamp = int(alert.at.timestamp())
    key = f"alert:{alert.device_id}:{alert.rule}:{alert.alert_id}@{stamp}"
    if len(key) > 128:
        key = f"alert:{alert.alert_id}@{stamp}"
    silence = await active_silence(place.cinema_id, alert.device_id, alert.rule, now)
    record = await AlertRecord.create(
        alert_id=key[6:], cinema_id=place.cinema_id, device_id=alert.device_id, hall=place.hall,
        rule=alert.rule, severity=alert.severity, state="firing", message=alert.message[:300],
        value=alert.value, limit=alert.limit, predicted_at=alert.predicted_at, fired_at=alert.at,
        created_at=now, silenced=silence is not None, spark=alert.spark[:64],
    )
    if silence is not None:
        log.info("alert silenced", extra={"device": alert.device_id, "rule": alert.rule,
                                          "until": silence.ends_at.isoformat()})
        return record, None, False
    order, told = await _tell(record, place.hall, alert.title, alert.spark, now, notify)
    return record, order, told


async def _again(
    record: AlertRecord, place: DevicePlace, alert: Fired, now: datetime, notify: Notify
) -> tuple[AlertRecord, WorkOrder | None, bool]:
    """The incident fires again: counted; a rise in severity is stored and told; an incident
    kept quiet by a silence that has ended is told now."""
    escalated = RANK.get(alert.severity, 0) > RANK.get(record.severity, 0)
    record.repeats += 1
    fields = ["repeats"]
    if escalated:
        record.severity = alert.severity
        record.message = alert.message[:300]
        record.value, record.limit = alert.value, alert.limit
        fields += ["severity", "message", "value", "limit"]
    await record.save(update_fields=fields)
    if record.work_order_id is None:
        if await active_silence(record.cinema_id, record.device_id, record.rule, now) is not None:
            return record, None, False
        order, told = await _tell(record, place.hall, alert.title, alert.spark, now, notify)
        return record, order, told
    order = await WorkOrder.get_or_none(id=record.work_order_id)
    if order is None or not escalated or order.state not in ACTIVE:
        return record, order, False
    async with in_transaction() as conn:
        order = await _touch(order, "alert_escalated", now, conn, notify, _detail(record, alert.spark),
                             severity=_raised(order, record.severity), record=record.id)
    return record, order, True


async def _group_for(cinema_id: int, at: datetime) -> WorkOrder | None:
    """The cinema's active ALERT order whose first alert fired within the group window."""
    window = timedelta(seconds=GROUP_WINDOW_S)
    at = at.astimezone(UTC)
    ids = await AlertRecord.filter(
        cinema_id=cinema_id, work_order_id__isnull=False, fired_at__gte=at - window,
        fired_at__lte=at + window,
    ).values_list("work_order_id", flat=True)
    if not ids:
        return None
    for order in await WorkOrder.filter(
        id__in=list(set(ids)), kind=Kind.ALERT, state__in=[s.value for s in ACTIVE]
    ).order_by("-id"):
        first = await AlertRecord.filter(work_order_id=order.id).order_by("fired_at").first()
        if first is not None and abs((first.fired_at - at).total_seconds()) <= GROUP_WINDOW_S:
            return order
    return None


async def _tell(
    record: AlertRecord, hall: str, title: str, spark: str, now: datetime, notify: Notify
) -> tuple[WorkOrder, bool]:
    """Join the record to its cinema's incident group, or open a work order for it."""
    group = await _group_for(record.cinema_id, record.fired_at)
    if group is not None:
        async with in_transaction() as conn:
            linked = await AlertRecord.filter(id=record.id, work_order_id=None).using_db(conn).update(
                work_order_id=group.id
            )
            if not linked:  # told meanwhile (another run of the silence job)
                return group, False
            record.work_order_id = group.id
            group = await _touch(group, "alert_joined", now, conn, notify, _detail(record, spark),
                                 severity=_raised(group, record.severity), record=record.id)
        return group, True
    key = f"alert:{record.alert_id}"

    async def linking(event: str, order: WorkOrder, *, using: BaseDBAsyncClient, **info: Any) -> None:
        # Linked in the order's own transaction, before its first card is drawn: the card
        # lists the order's alerts and their sparklines.
        if event == "opened":
            await AlertRecord.filter(id=record.id).using_db(using).update(work_order_id=order.id)
            await WorkOrderEvent.create(
                work_order=order, at=now, actor=TELEMETRY.user_id, action="alert",
                from_state=order.state, to_state=order.state, detail=_detail(record, spark),
                internal=True, using_db=using,
            )
        await notify(event, order, using=using, **info)

    reporter = Who(TELEMETRY.user_id, TELEMETRY.role, record.cinema_id, TELEMETRY.name)
    order, opened = await open_order(
        cinema_id=record.cinema_id, kind=Kind.ALERT, category=_category(record.rule),
        summary=f"{hall}放映机：{title}", reporter=reporter, now=now,
        severity=SEVERITY_PRIORITY.get(record.severity, "P2"), source="telemetry", source_key=key,
        hall=hall[:16], description=f"{record.device_id}：{record.message}",
        team="engineering", notify=linking,
    )
    if record.work_order_id != order.id:
        record.work_order_id = order.id
        await AlertRecord.filter(id=record.id).update(work_order_id=order.id)
    return order, opened


async def alert_resolved(
    device_id: str, rule: str, at: datetime, now: datetime, notify: Notify
) -> WorkOrder | None:
    """The incident's condition has cleared: its record is resolved, once. Its work order is
    resolved by the system ("告警已恢复") when no alert of it still fires; an order a person
    already finished stays."""
    record = await AlertRecord.filter(device_id=device_id, rule=rule, state="firing").order_by("-id").first()
    if record is None:
        return None
    updated = await AlertRecord.filter(id=record.id, state="firing").update(state="resolved", resolved_at=at)
    if not updated or record.work_order_id is None:
        return None
    order = await WorkOrder.get_or_none(id=record.work_order_id)
    if order is None or order.state not in ACTIVE:
        return order
    if await AlertRecord.filter(work_order_id=order.id, state="firing").exists():
        # Part of the group has recovered: on the timeline (and on the card when it is next
        # drawn); a card update now would spend the code the final 「已恢复」 needs.
        await WorkOrderEvent.create(
            work_order=order, at=now, actor=TELEMETRY.user_id, action="alert_recovered",
            from_state=order.state, to_state=order.state, internal=True,
            detail={"alert_id": record.alert_id, "device_id": device_id, "rule": rule},
        )
        return order
    try:
        return await act(
            order, "resolve", SYSTEM, now, notify=notify, message_key=f"{record.alert_id}:resolved",
            action_taken=RECOVERED, cause=record.message[:200] or "设备告警",
        )
    except WorkOrderError as exc:  # someone acted on it meanwhile: it stays for a person
        log.info("alert work order left as it is", extra={"ref": order.ref, "reason": exc.code})
        return order


RECOVERED = "告警已恢复"


def recovered(order: WorkOrder) -> bool:
    """Resolved because its alerts cleared (not finished by a person)."""
    return order.kind == Kind.ALERT and order.action == RECOVERED


# Reading an alert order -----------------------------------------------------------------------
async def order_alerts(order: WorkOrder, using: BaseDBAsyncClient | None = None) -> list[AlertRecord]:
    """The order's alerts, worst and firing first."""
    rows = await AlertRecord.filter(work_order_id=order.id).using_db(using).order_by("id")
    if not rows and order.source_key and order.source_key.startswith("alert:"):
        rows = await AlertRecord.filter(alert_id=order.source_key[6:]).using_db(using)
    return sorted(rows, key=lambda r: (r.state != "firing", -RANK.get(r.severity, 0), r.id))


async def sparks(order: WorkOrder, using: BaseDBAsyncClient | None = None) -> dict[str, str]:
    """alert id -> the sparkline of its latest firing (from the order's timeline)."""
    out: dict[str, str] = {}
    for e in await WorkOrderEvent.filter(
        work_order_id=order.id, action__in=list(ALERT_EVENTS)
    ).using_db(using).order_by("id"):
        if e.detail.get("spark"):
            out[str(e.detail.get("alert_id"))] = str(e.detail["spark"])
    return out


async def show_soon(
    cinema_id: int, hall: str | None, now: datetime, using: BaseDBAsyncClient | None = None
) -> Showtime | None:
    """The next show in ``hall`` starting within two hours (with its film), if any."""
    if not hall:
        return None
    return await Showtime.filter(
        cinema_id=cinema_id, hall__name=hall, cancelled_at=None,
        starts_at__gte=now.astimezone(UTC), starts_at__lt=(now + SHOW_SOON).astimezone(UTC),
    ).using_db(using).order_by("starts_at").prefetch_related("film").first()


# Acknowledging --------------------------------------------------------------------------------
async def mark_acknowledged(order: WorkOrder, who: Who, now: datetime) -> int:
    """Stamp the order's unacknowledged alerts (once each: guarded by the empty stamp)."""
    return await AlertRecord.filter(work_order_id=order.id, acknowledged_at=None).update(
        acknowledged_at=now, acknowledged_by=who.user_id[:64]
    )


async def acknowledge(
    order: WorkOrder, who: Who, now: datetime, *, notify: Notify, message_key: str
) -> WorkOrder:
    """确认: the order is acknowledged (if it waits for that) and its alerts are stamped."""
    if order.state in UNACKNOWLEDGED:
        order = await act(order, "acknowledge", who, now, notify=notify, message_key=message_key)
    await mark_acknowledged(order, who, now)
    return order


async def start(
    order: WorkOrder, who: Who, now: datetime, *, notify: Notify, message_key: str
) -> WorkOrder:
    """处理中: acknowledged first if need be, then in progress."""
    order = await acknowledge(order, who, now, notify=notify, message_key=f"{message_key}:ack")
    if order.state == State.ACKNOWLEDGED:
        order = await act(order, "start", who, now, notify=notify, message_key=message_key)
    return order


# Silences -------------------------------------------------------------------------------------
def _matching(cinema_id: int, device_id: str, rule: str, now: datetime) -> Any:
    now = now.astimezone(UTC)
    return AlertSilence.filter(
        Q(device_id="") | Q(device_id=device_id), Q(rule="") | Q(rule=rule),
        cinema_id=cinema_id, starts_at__lte=now, ends_at__gt=now,
    )


async def active_silence(cinema_id: int, device_id: str, rule: str, now: datetime) -> AlertSilence | None:
    """The silence that keeps this alert quiet now (the longest-running), if any."""
    return await _matching(cinema_id, device_id, rule, now).order_by("-ends_at").first()


async def silence(
    cinema_id: int, device_ids: Sequence[str], who: Who, now: datetime, duration: timedelta,
    reason: str,
) -> datetime:
    """Silence every rule of these devices for ``duration``; returns when it ends (the
    earliest end over the devices). A device already silenced until about then or later (a
    double tap, a retried callback) gets nothing new: its silence's end is the answer."""
    wanted = now + duration
    ends: list[datetime] = []
    for device in dict.fromkeys(device_ids):
        same = await AlertSilence.filter(
            cinema_id=cinema_id, device_id=device, rule="", starts_at__lte=now.astimezone(UTC),
            ends_at__gte=(wanted - SILENCE_SLACK).astimezone(UTC),
        ).order_by("-ends_at").first()
        if same is not None:
            ends.append(same.ends_at)
            continue
        ends.append(wanted)
        async with in_transaction() as conn:
            row = await AlertSilence.create(
                cinema_id=cinema_id, device_id=device, rule="", reason=reason[:200],
                created_by=who.user_id[:64], starts_at=now, ends_at=wanted, created_at=now,
                using_db=conn,
            )
            await audit.record(
                entity="alert_silence", entity_id=row.id, action="add", actor=who.user_id, at=now,
                cinema_id=cinema_id, detail={"device_id": device, "until": wanted.isoformat(),
                                             "reason": reason[:200]}, using=conn,
            )
    return min(ends, default=wanted)


async def hall_devices(cinema_id: int, hall: str) -> list[str]:
    return [p.device_id for p in await Projector.filter(cinema_id=cinema_id, hall__name=hall)]


async def latest_alert(cinema_id: int, userid: str) -> AlertRecord | None:
    """The latest alert of the latest alert order this person holds (the one they were
    told of last), else the cinema's latest alert."""
    for order_id in await WorkOrder.filter(
        cinema_id=cinema_id, kind=Kind.ALERT, assignee=userid
    ).order_by("-id").limit(20).values_list("id", flat=True):
        record = await AlertRecord.filter(work_order_id=order_id).order_by("-id").first()
        if record is not None:
            return record
    return await AlertRecord.filter(cinema_id=cinema_id).order_by("-id").first()


# Jobs: reminders and silences that end --------------------------------------------------------
async def remind_due(now: datetime, notify: Notify, limit: int = 500) -> int:
    """Remind the holders of unacknowledged alert orders whose alerts still fire: every 15 min
    (critical) or 60 min (warning) since they were told, at most three times. Returns how
    many reminders were sent. Each is a guarded update of the records plus a timeline row."""
    records = await AlertRecord.filter(
        state="firing", acknowledged_at=None, work_order_id__isnull=False,
        reminders__lt=MAX_REMINDERS,
    ).order_by("id").limit(limit)
    groups: dict[int, list[AlertRecord]] = {}
    for r in records:
        if await active_silence(r.cinema_id, r.device_id, r.rule, now) is None:
            groups.setdefault(int(r.work_order_id or 0), []).append(r)
    sent = 0
    for order_id, group in groups.items():
        order = await WorkOrder.get_or_none(id=order_id)
        if order is None or order.state not in UNACKNOWLEDGED or not order.assignee:
            continue
        every = min(REMIND_EVERY.get(r.severity, REMIND_EVERY["warning"]) for r in group)
        # Since the card last went out: the order opened, an alert joined, a reminder.
        last = max([order.created_at, *(r.reminded_at or r.created_at for r in group)])
        if now - last < every:
            continue
        n = max(r.reminders for r in group) + 1
        async with in_transaction() as conn:
            claimed = await AlertRecord.filter(
                id__in=[r.id for r in group], reminders__lt=n, acknowledged_at=None
            ).using_db(conn).update(reminders=n, reminded_at=now)
            if not claimed:
                continue
            await WorkOrderEvent.create(
                work_order=order, at=now, actor=SYSTEM.user_id, action="alert_reminder",
                from_state=order.state, to_state=order.state, internal=True,
                detail={"n": n, "alerts": [r.alert_id for r in group], "assignee": order.assignee},
                using_db=conn,
            )
            await notify("alert_reminder", order, using=conn, n=n)
        sent += 1
    return sent


async def firing_records(limit: int = 5000) -> list[AlertRecord]:
    """Alert records still firing (the oldest first)."""
    return await AlertRecord.filter(state="firing").order_by("id").limit(limit)


async def release_silenced(
    now: datetime, notify: Notify, title: Callable[[str], str], limit: int = 500
) -> int:
    """Alerts that fired under a silence which has ended and still fire are told now
    (they join or open a work order). Returns how many were told."""
    told = 0
    for record in await AlertRecord.filter(
        state="firing", silenced=True, work_order_id=None
    ).order_by("id").limit(limit):
        if await active_silence(record.cinema_id, record.device_id, record.rule, now) is not None:
            continue
        # The trend kept from when it fired: the card says what led up to it.
        _, opened = await _tell(record, record.hall, title(record.rule), record.spark, now, notify)
        told += bool(opened)
    return told
