"""The stored alert lifecycle, through the real app and the stand-in WeCom: a projector
fault reaches the engineer as one card per incident group, with the reading, its trend,
the likely cause and the show about to start; 确认 / 处理中 / 静默2小时 work (once);
silences keep alerts quiet until they end; unacknowledged alerts are reminded; recovery
shows 「已恢复」."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.app import REDIS, TELEMETRY
from domain import alerts
from domain.alerts import Fired
from domain.catalog import Showtime
from domain.cinemas import Cinema
from domain.devices import AlertRecord, AlertSilence, DevicePlace, places
from domain.outbox import OutboundMessage
from domain.workorders import Kind, State, WorkOrder, WorkOrderEvent
from jobs import alerts as alert_job
from jobs.context import JobContext
from jobs.locks import LeaderLocks
from tests.support import Desk, FakeClock, Standin
from tests.test_service_desk import post_click, rows, staff_says
from tests.test_telemetry_ingest import DEVICE, post, reading

OTHER = "PJ-DEMO-5"  # the demo cinema's 5号厅


# --- the setting (as in test_service_desk: the app with the stand-in as WeCom) --------------


@pytest.fixture
async def client(make_client: Any, standin: Standin) -> TestClient:
    return await make_client(standin=standin)


@pytest.fixture
def job(client: TestClient, desk: Desk, clock: FakeClock) -> JobContext:
    return JobContext(clock=clock, locks=LeaderLocks(client.app[REDIS]), desk_notify=desk.notify)


async def place(device: str) -> DevicePlace:
    cinema = await Cinema.get(code="demo")
    return (await places(cinema.id))[device]


def fired(device: str = DEVICE, rule: str = "temperature_high", severity: str = "warning", *,
          at: datetime, value: float = 73.0, limit: float = 70.0, n: int = 1, spark: str = "▁▃▅▇") -> Fired:
    return Fired(
        device_id=device, rule=rule, severity=severity, title="温度过高",
        message=f"温度 {value}°C，超过警戒线 {limit:g}°C", alert_id=f"{device}-{rule}-{n}", at=at,
        value=value, limit=limit, spark=spark,
    )


async def fire(desk: Desk, alert: Fired) -> tuple[AlertRecord, WorkOrder | None, bool]:
    return await alerts.alert_fired(await place(alert.device_id), alert, desk.clock.now(), desk.notify)


async def _stream(client: TestClient, clock: FakeClock, start: float, minutes: int, **metrics: float) -> None:
    for batch_start in range(0, minutes, 10):
        batch = [reading(start + 60 * i, **metrics) for i in range(batch_start, min(minutes, batch_start + 10))]
        resp = await post(client, clock, batch)
        assert resp.status == 202 and (await resp.json())["errors"] == []


# --- the whole loop ---------------------------------------------------------------------------


async def test_a_hot_projector_card_shows_reading_trend_and_advice_and_recovery_shows_restored(
    client: TestClient, desk: Desk, callbacks: Any, clock: FakeClock
) -> None:
    await desk.on_duty(("eng01", "engineering"), ("staff01", "floor"))
    t0 = clock.timestamp() - 4 * 3600
    await _stream(client, clock, t0, 10)
    await _stream(client, clock, t0 + 600, 40, temperature_c=73.0)  # over the 70 °C caution line
    [order] = await WorkOrder.filter(kind=Kind.ALERT)
    await desk.deliver()
    [card] = await desk.cards("eng01")
    shown = rows(card)
    assert order.ref in card["main_title"]["title"] and "设备告警" in card["main_title"]["title"]
    assert shown["设备"] == f"{DEVICE} · 3号厅"
    assert shown["读数"].startswith("温度 7") and shown["读数"].endswith("/ 警戒 70°C")
    trend = shown["趋势"]
    assert trend and set(trend) <= set("▁▂▃▄▅▆▇█") and trend[0] < trend[-1]  # it rose
    assert "排风" in card["sub_title_text"] and "建议" in card["sub_title_text"]
    assert [b["text"] for b in card["button_list"]] == ["确认", "处理中", "静默2小时"]
    assert shown["状态"].startswith("待确认")
    assert await desk.texts("staff01") == []  # a warning, and no show soon: the floor is not bothered

    click = await desk.click("eng01", card, "确认")
    assert "已确认" in await post_click(callbacks, click)
    await post_click(callbacks, click)  # WeCom retries the callback
    assert "已确认" in await post_click(callbacks, await desk.click("eng01", card, "确认"))  # a second tap
    await order.refresh_from_db()
    assert order.state == State.ACKNOWLEDGED
    assert await WorkOrderEvent.filter(work_order_id=order.id, action="acknowledge").count() == 1
    record = await AlertRecord.get(work_order_id=order.id)
    assert record.acknowledged_by == "eng01" and record.acknowledged_at == clock.now()
    await desk.deliver()
    [update] = await desk.updates("eng01")
    assert [b["text"] for b in update["template_card"]["button_list"]] == ["处理中", "静默2小时"]
    assert rows(update["template_card"])["状态"].startswith("已确认")

    await _stream(client, clock, t0 + 4800, 40, temperature_c=60.0)  # cooled down
    await order.refresh_from_db()
    assert order.state == State.RESOLVED and order.action == "告警已恢复"
    await desk.deliver()
    assert (await desk.updates("eng01"))[-1]["button"]["replace_name"] == "✅ 已恢复"
    assert len(await desk.cards("eng01")) == 1


# --- grouping ---------------------------------------------------------------------------------


async def test_alerts_of_a_cinema_close_together_share_one_card_and_a_rise_to_critical_raises_it(
    desk: Desk, clock: FakeClock
) -> None:
    await desk.on_duty(("eng01", "engineering"), ("staff01", "floor"))
    at = clock.now() - timedelta(minutes=30)
    _, order, told = await fire(desk, fired(at=at))
    assert told and order is not None and order.severity == "P2"
    await desk.deliver()
    [card] = await desk.cards("eng01")

    fan = Fired(device_id=OTHER, rule="fan", severity="warning", title="风扇异常", message="风扇转速低",
                alert_id="fan-1", at=at + timedelta(seconds=90), value=1200.0, limit=1500.0, spark="█▆▄▂")
    record, joined, told = await fire(desk, fan)
    assert told and joined is not None and joined.id == order.id and record.work_order_id == order.id
    assert await WorkOrder.filter(kind=Kind.ALERT).count() == 1
    await desk.deliver()
    assert len(await desk.cards("eng01")) == 1  # one card per incident group…
    [update] = await desk.updates("eng01")  # …redrawn to list both alerts
    listed = rows(update["template_card"])
    assert listed[DEVICE].startswith("温度 73.0°C / 警戒 70°C") and "▁▃▅▇" in listed[DEVICE]
    assert listed[OTHER].startswith("风扇 1200 rpm / 下限 1500 rpm") and "█▆▄▂" in listed[OTHER]

    # The first alert rises to critical: the order becomes P1, the card says so, the floor hears.
    _, same, told = await fire(desk, fired(severity="critical", at=at + timedelta(minutes=5), value=86.2,
                                           limit=80.0))
    assert told and same is not None and same.id == order.id
    await order.refresh_from_db()
    assert order.severity == "P1"
    record = await AlertRecord.get(device_id=DEVICE)
    assert record.severity == "critical" and record.repeats == 1
    await desk.deliver()
    # The first card's code went on the join: a rise to P1 is news, so a fresh card tells it.
    cards = await desk.cards("eng01")
    assert len(cards) == 2
    raised = cards[-1]
    assert raised["main_title"]["title"].startswith("⬆️ 升级 🚨 设备告警")
    assert raised["main_title"]["desc"].startswith("P1")
    assert rows(raised)[DEVICE].startswith("温度 86.2°C / 危险 80°C")
    [warning] = await desk.texts("staff01")
    assert "3号厅放映机" in warning and "工程师" in warning

    # Later, outside the group window: its own order and card.
    _, later, _ = await fire(desk, fired(device="PJ-DEMO-1", at=at + timedelta(minutes=10)))
    assert later is not None and later.id != order.id
    await desk.deliver()
    assert len(await desk.cards("eng01")) == 3

    # One alert of the group recovers: the order waits for the other.
    assert (await alerts.alert_resolved(OTHER, "fan", clock.now(), clock.now(), desk.notify)).state == State.ASSIGNED
    await alerts.alert_resolved(DEVICE, "temperature_high", clock.now(), clock.now(), desk.notify)
    await order.refresh_from_db()
    assert order.state == State.RESOLVED and alerts.recovered(order)
    assert await WorkOrderEvent.filter(work_order_id=order.id, action="resolve").count() == 1


# --- the floor staff ----------------------------------------------------------------------------


async def test_the_staff_on_duty_hear_once_when_a_show_in_that_hall_starts_within_two_hours(
    desk: Desk, clock: FakeClock
) -> None:
    clock.set(datetime(2026, 11, 21, 3, 30, tzinfo=UTC))  # 11:30 in Shanghai; the 13:00 show is next
    await desk.on_duty(("eng01", "engineering"), ("staff01", "floor"), ("staff02", "floor"))
    show = await Showtime.filter(hall__name="3号厅", starts_at=datetime(2026, 11, 21, 5, 0, tzinfo=UTC)
                                 ).prefetch_related("film").first()
    assert show is not None
    _, order, _ = await fire(desk, fired(at=clock.now()))
    assert order is not None and order.severity == "P2"
    await fire(desk, fired(at=clock.now()))  # a repeat
    await desk.deliver()
    for person in ("staff01", "staff02"):
        [told] = await desk.texts(person)
        assert told.startswith("⚠️ 3号厅放映机：温度过高") and f"13:00《{show.film.title}》" in told
    assert await desk.texts("eng01") == []
    [card] = await desk.cards("eng01")
    assert rows(card)["场次"] == f"⚠ 13:00《{show.film.title}》2小时内开场"


# --- buttons -----------------------------------------------------------------------------------


async def test_processing_and_silencing_from_the_card_happen_once(
    desk: Desk, callbacks: Any, clock: FakeClock
) -> None:
    await desk.on_duty(("eng01", "engineering"))
    _, order, _ = await fire(desk, fired(at=clock.now()))
    assert order is not None
    await desk.deliver()
    [card] = await desk.cards("eng01")
    assert "处理中" in await post_click(callbacks, await desk.click("eng01", card, "处理中"))
    await order.refresh_from_db()
    assert order.state == State.IN_PROGRESS
    timeline = [e.action for e in await WorkOrderEvent.filter(work_order_id=order.id).order_by("id")]
    assert timeline[-2:] == ["acknowledge", "start"]
    assert (await AlertRecord.get(work_order_id=order.id)).acknowledged_by == "eng01"

    _, second, _ = await fire(desk, fired(device=OTHER, at=clock.now() + timedelta(hours=1), n=3))
    assert second is not None and second.id != order.id
    await desk.deliver()
    other_card = next(c for c in await desk.cards("eng01") if second.ref in c["main_title"]["title"])
    answer = await post_click(callbacks, await desk.click("eng01", other_card, "静默2小时"))
    assert "已静默" in answer and OTHER in answer and "12:30" in answer
    again = await post_click(callbacks, await desk.click("eng01", other_card, "静默2小时"))
    assert "12:30" in again
    [quiet] = await AlertSilence.filter(device_id=OTHER)
    assert (quiet.rule, quiet.reason, quiet.created_by) == ("", "工程师静默", "eng01")
    assert quiet.ends_at == clock.now() + timedelta(hours=2)
    await second.refresh_from_db()
    assert second.state == State.ACKNOWLEDGED
    await desk.deliver()
    muted = [u for u in await desk.updates("eng01") if u["task_id"] == other_card["task_id"]]
    assert len(muted) == 1 and rows(muted[0]["template_card"])["状态"] == "已确认 · 赵工 · 🔕至12:30"
    # While it lasts, a new alert of that device is recorded but told to nobody.
    record, none, told = await fire(desk, fired(device=OTHER, rule="fan", at=clock.now() + timedelta(hours=2)))
    assert record.silenced and none is None and not told


# --- silences -------------------------------------------------------------------------------------


async def test_a_typed_maintenance_silence_keeps_alerts_quiet_until_it_ends_then_they_are_told(
    desk: Desk, callbacks: Any, clock: FakeClock, job: JobContext
) -> None:
    await desk.on_duty(("eng01", "engineering"))
    assert "工程师或值班经理" in await staff_says(callbacks, "staff01", "3号厅维护中2小时")
    answer = await staff_says(callbacks, "eng01", "3号厅维护中2小时")
    assert "3号厅" in answer and "12:30" in answer
    assert await AlertSilence.filter(device_id=DEVICE, reason="维护中").count() == 1

    record, order, told = await fire(desk, fired(at=clock.now()))
    assert record.silenced and order is None and not told
    _, other, _ = await fire(desk, fired(device=OTHER, at=clock.now() - timedelta(hours=1), n=2))
    assert other is not None  # another hall is not silenced
    await desk.deliver()
    assert len(await desk.cards("eng01")) == 1

    clock.advance(hours=1)
    assert (await alert_job.run_alerts(job)).released == 0  # still under the silence
    clock.advance(hours=1, minutes=1)
    assert (await alert_job.run_alerts(job)).released == 1
    await record.refresh_from_db()
    assert record.work_order_id is not None and record.state == "firing"
    await desk.deliver()
    assert len([t for t in await desk.titles("eng01") if not t.startswith("🔔")]) == 2
    # The late card still shows the trend from when the alert fired (kept on its record).
    late = [c for c in await desk.cards("eng01") if rows(c).get("设备", "").startswith(DEVICE)]
    assert late and rows(late[-1])["趋势"] == "▁▃▅▇"
    assert (await alert_job.run_alerts(job)).released == 0  # told once
    fan, fan_order, _ = await fire(desk, fired(rule="fan", at=clock.now(), n=2))
    assert not fan.silenced and fan_order is not None  # the ended silence is just ignored

    # Without a hall: the hall of the engineer's latest alert (3号厅's, told just now).
    answer = await staff_says(callbacks, "eng01", "维护中 1小时")
    assert "3号厅" in answer and "13:31" in answer
    # An alert that fired under a silence and cleared before it ended is never told.
    await alerts.alert_resolved(DEVICE, "temperature_high", clock.now(), clock.now(), desk.notify)
    quiet, _, _ = await fire(desk, fired(at=clock.now(), n=3))
    assert quiet.silenced
    await alerts.alert_resolved(DEVICE, "temperature_high", clock.now(), clock.now(), desk.notify)
    clock.advance(hours=2)
    assert (await alert_job.run_alerts(job)).released == 0
    await quiet.refresh_from_db()
    assert quiet.work_order_id is None


async def test_after_a_restart_an_incident_that_cleared_meanwhile_is_resolved_not_left_open(
    client: TestClient, desk: Desk, clock: FakeClock
) -> None:
    """The evaluator starts empty: records that fired before it are resolved once the device
    has reported for 15 minutes without the rule firing again, and only then."""
    await desk.on_duty(("eng01", "engineering"))
    hot, hot_order, _ = await fire(desk, fired(at=clock.now() - timedelta(hours=3)))
    learned, _, _ = await fire(desk, fired(rule="baseline_fan", at=clock.now() - timedelta(hours=2), n=2))
    silent, _, _ = await fire(desk, fired(device=OTHER, at=clock.now() - timedelta(hours=1), n=3))
    assert hot_order is not None
    ingest = client.app[TELEMETRY]
    start = clock.timestamp() - 1200
    await _stream(client, clock, start, 10)  # normal readings, 10 minutes' worth
    assert await ingest.reconcile() == 0  # not watched long enough to judge
    await _stream(client, clock, start + 600, 10)
    assert await ingest.reconcile() == 1
    for record in (hot, learned, silent):
        await record.refresh_from_db()
    assert (hot.state, learned.state, silent.state) == ("resolved", "firing", "firing")
    await hot_order.refresh_from_db()
    assert hot_order.state == State.RESOLVED and hot_order.action == "告警已恢复"
    assert await ingest.reconcile() == 0  # once


async def test_a_still_hot_projector_keeps_its_alert_after_a_restart(
    client: TestClient, desk: Desk, clock: FakeClock
) -> None:
    hot, _, _ = await fire(desk, fired(at=clock.now() - timedelta(hours=3)))
    await _stream(client, clock, clock.timestamp() - 1500, 25, temperature_c=74.0)
    assert await client.app[TELEMETRY].reconcile() == 0
    await hot.refresh_from_db()
    assert hot.state == "firing"


# --- reminders --------------------------------------------------------------------------------


async def test_unacknowledged_alerts_are_reminded_every_15_minutes_three_times_and_acknowledged_never(
    client: TestClient, desk: Desk, callbacks: Any, clock: FakeClock, job: JobContext
) -> None:
    await desk.on_duty(("eng01", "engineering"))
    _, critical, _ = await fire(desk, fired(severity="critical", at=clock.now(), value=86.0, limit=80.0))
    _, warning, _ = await fire(desk, fired(device=OTHER, at=clock.now() + timedelta(hours=1), n=2))
    assert critical is not None and warning is not None and critical.id != warning.id
    replicas = (job, JobContext(clock=clock, locks=LeaderLocks(client.app[REDIS]), desk_notify=desk.notify))

    clock.advance(minutes=14)
    assert (await alert_job.run_alerts(job)).reminded == 0
    reminded = []
    for _ in range(5):
        clock.advance(minutes=15)
        runs = await asyncio.gather(*(alert_job.run_alerts(ctx) for ctx in replicas))
        reminded.append(sum(r.reminded for r in runs))
    # The critical one 29, 44 and 59 min after it was told (then no more); the warning after 74 min.
    assert reminded == [1, 1, 1, 1, 0]
    record = await AlertRecord.get(work_order_id=critical.id)
    assert record.reminders == 3
    await desk.deliver()
    heads = [t for t in await desk.titles("eng01") if t.startswith("🔔")]
    assert sorted(t[:6] for t in heads) == ["🔔 第1次提", "🔔 第1次提", "🔔 第2次提", "🔔 第3次提"]
    assert sum(critical.ref in t for t in heads) == 3 and sum(warning.ref in t for t in heads) == 1
    assert await WorkOrderEvent.filter(work_order_id=critical.id, action="alert_reminder").count() == 3

    # Acknowledged (by typing 收到): never reminded again.
    assert "已接单" in await staff_says(callbacks, "eng01", f"收到 {warning.ref}")
    assert (await AlertRecord.get(work_order_id=warning.id)).acknowledged_by == "eng01"
    clock.advance(hours=2)
    assert (await alert_job.run_alerts(job)).reminded == 0


async def test_a_resolved_alert_is_never_reminded(desk: Desk, clock: FakeClock, job: JobContext) -> None:
    await desk.on_duty(("eng01", "engineering"))
    _, order, _ = await fire(desk, fired(severity="critical", at=clock.now()))
    assert order is not None
    await alerts.alert_resolved(DEVICE, "temperature_high", clock.now(), clock.now(), desk.notify)
    clock.advance(minutes=20)
    assert (await alert_job.run_alerts(job)).reminded == 0
    assert await OutboundMessage.filter(idempotency_key__contains=":remind").count() == 0


# --- what the card says, as pure rules -----------------------------------------------------------


def test_the_sparkline_reading_and_advice_read_as_an_engineer_expects() -> None:
    assert alerts.sparkline([50, 50, 60, 70, 80, 90, 100, 110]) == "▁▁▂▃▅▆▇█"
    assert alerts.sparkline(list(range(60)))[0] == "▁" and alerts.sparkline(list(range(60)))[-1] == "█"
    assert len(alerts.sparkline(list(range(60)))) == alerts.SPARK_WIDTH
    assert alerts.sparkline([None, 3000, 3000.0]) == "▄▄" and alerts.sparkline([]) == ""
    assert alerts.reading_text("temperature_high", "critical", 86.23, 80.0) == "温度 86.2°C / 危险 80°C"
    assert alerts.reading_text("fan", "warning", 1180.4, 1500.0) == "风扇 1180 rpm / 下限 1500 rpm"
    when = datetime(2026, 12, 3, 4, 0, tzinfo=UTC)
    assert alerts.reading_text("brightness_forecast", "warning", 83.04, 80.0, when) == (
        "亮度 83.0% / 红线 80%，预计12月3日到线"
    )
    assert alerts.advice_for("brightness_forecast") == ("光源老化", "安排更换光源")
    assert alerts.advice_for("temperature_rate") == ("可能排风口堵塞或风扇故障", "检查排风管道和风扇")
    assert alerts.advice_for("no_data")[0] == "网络或边缘盒故障"
    assert alerts.advice_for("error:E042")[0] == "放映机自检报错"


def test_maintenance_phrases_name_an_optional_hall_and_a_duration() -> None:
    from handlers.alert_cards import SILENCE, silence_duration

    def parsed(text: str) -> tuple[str | None, timedelta | None] | None:
        m = SILENCE.match(text)
        return (m.group("hall"), silence_duration(m.group("n"), m.group("unit"))) if m else None

    assert parsed("维护中 2小时") == (None, timedelta(hours=2))
    assert parsed("3号厅维护中2小时") == ("3号厅", timedelta(hours=2))
    assert parsed("IMAX厅 维护 两个小时") == ("IMAX厅", timedelta(hours=2))
    assert parsed("5号厅放映机静默30分钟") == ("5号厅", timedelta(minutes=30))
    assert parsed("维护中半小时") == (None, timedelta(minutes=30))
    assert parsed("维护中 100小时") == (None, timedelta(hours=24))  # capped at a day
    assert parsed("3号厅维护好了吗") is None and parsed("我的任务") is None
