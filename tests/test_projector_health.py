"""Projector health: the score, stored alert limits (a manager's red line in chat, in force at
once without losing what the evaluator has learned), 「放映机状态」 in WeCom and the API."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from bot.app import TELEMETRY
from bot.wechat.chatclient import next_msg_id, text_xml
from telemetry.ingest import signed_headers
from domain import projectors
from domain.audit import AuditLog
from domain.cinemas import Cinema
from domain.devices import Projector, TelemetryRule, demo_box
from handlers.api import staff_token
from handlers.api.context import API
from telemetry.alerts import FIRING
from telemetry.evaluator import Evaluator
from telemetry.health import DANGER, GOOD, NO_DATA, WATCH, assess
from telemetry.readings import Reading, iso
from telemetry.rules import RuleSet, stored_ruleset
from tests.support import FakeClock

T0 = 1_741_000_000.0
DEVICE = "PJ-DEMO-3"  # the demo cinema's 3号厅


def show(device: str = "p1", minutes: int = 60, start: float = T0, **metrics: float) -> list[Reading]:
    """A projector running a show: powered, light on at 80 % drive, one reading a minute."""
    base = {"power": 1, "load_pct": 80, "temperature_c": 50.0, "ambient_c": 24.0, "fan_rpm": 3000,
            "brightness_pct": 95.0, "light_hours": 1200.0}
    base.update(metrics)
    return [Reading.make(device, start + 60 * i, base) for i in range(minutes)]


def feed(ev: Evaluator, readings: list[Reading]) -> list[Any]:
    out = []
    for r in readings:
        out.extend(ev.observe(r))
    return out


# --- stored rules, pure --------------------------------------------------------------------------


def test_stored_rows_become_a_ruleset_and_bad_rows_are_left_out_with_their_reason() -> None:
    rules, problems = stored_ruleset(
        cinemas={"SH01": {"brightness_warning_pct": 75}, "BJ01": {"brightness_warnign_pct": 70},
                 "GZ01": {"brightness_warning_pct": 45}},  # a typo; below the 50 % critical line
        devices={"SH01-H3": {"brightness_warning_pct": 70}, "SH01-H4": {"fan_slow_rpm": "fast"},
                 "SH01-H5": {"brightness_critical_pct": 76}},  # above its cinema's red line 75
        device_cinema={"SH01-H3": "SH01", "SH01-H4": "SH01", "SH01-H5": "SH01", "BJ01-H1": "BJ01",
                       "GZ01-H1": "GZ01"},
    )
    assert rules.for_device("SH01-H3").brightness_warning_pct == 70
    assert rules.for_device("SH01-H4").brightness_warning_pct == 75  # its bad row out, its cinema's in
    assert rules.for_device("SH01-H4").fan_slow_rpm == 1000
    assert rules.for_device("SH01-H5").brightness_critical_pct == 50
    assert rules.for_device("BJ01-H1").brightness_warning_pct == 80
    assert rules.for_device("GZ01-H1").brightness_warning_pct == 80
    assert len(problems) == 4
    assert any("brightness_warnign_pct" in p for p in problems)
    assert any("fan_slow_rpm" in p for p in problems)
    assert sum("brightness_critical_pct" in p for p in problems) == 2


def test_new_limits_apply_to_a_running_device_without_losing_what_it_learned() -> None:
    ev = Evaluator()
    events = feed(ev, show("p1", 60, brightness_pct=75.0))
    assert [e.rule for e in events if e.state == "firing"] == ["brightness_low"]
    st = ev.devices["p1"]
    learned = (st.interval, st.temp_base, st.fan_base, st.bright_bins, st.incidents["brightness_low"])

    lowered = RuleSet.from_dict({"cinemas": {"SH01": {"devices": ["p1"], "brightness_warning_pct": 70}}})
    assert ev.set_rules(lowered) == ["p1"]
    assert ev.set_rules(lowered) == []  # nothing new: nobody's limits changed
    assert ev.devices["p1"] is st and st.rules.brightness_warning_pct == 70 and st.rules.cinema == "SH01"
    assert (st.interval, st.temp_base, st.fan_base, st.bright_bins, st.incidents["brightness_low"]) == learned
    # The same 75 % is above the new red line: the alert resolves, once.
    events = feed(ev, show("p1", 30, start=T0 + 3600, brightness_pct=75.0))
    assert [(e.rule, e.state) for e in events] == [("brightness_low", "resolved")]
    # A device first seen after the swap gets the new limits too.
    assert ev.device("p2").rules.brightness_warning_pct == 80
    assert ev.rules is lowered


def test_a_shorter_no_data_limit_is_armed_at_once() -> None:
    last = T0 + 540
    before, after = Evaluator(), Evaluator()
    feed(before, show("p1", 10))
    feed(after, show("p1", 10))
    after.set_rules(RuleSet.from_dict({"devices": {"p1": {"no_data_s": 240}}}))
    assert before.tick(last + 300) == []  # the default 600 s
    assert [e.rule for e in after.tick(last + 300)] == ["no_data"]


# --- the health score, pure ----------------------------------------------------------------------


def _device(readings: list[Reading], rules: RuleSet | None = None) -> Any:
    ev = Evaluator(rules)
    feed(ev, readings)
    return ev, ev.devices[readings[0].device_id]


def test_a_healthy_projector_is_good_and_says_what_it_reads() -> None:
    _, st = _device(show("p1", 60))
    h = assess(st, T0 + 3600, "Christie CP4440-RGB")
    assert h.grade == GOOD and h.score == 100 and h.safety == 100 and h.quality == 100
    assert (h.temperature_c, h.brightness_pct, h.fan_rpm, h.light_hours) == (50.0, 95.0, 3000.0, 1200.0)
    assert h.rated_light_hours == 30000 and h.red_line_pct == 80 and h.alerts == ()
    assert h.to_json()["grade"] == GOOD


def test_a_hot_projector_with_a_slow_fan_is_in_danger_and_says_why() -> None:
    _, st = _device(show("p1", 10) + show("p1", 30, start=T0 + 600, temperature_c=82.0, fan_rpm=200.0))
    h = assess(st, T0 + 2400)
    assert h.grade == DANGER and h.score is not None and h.score <= 20
    assert h.quality == 100 and h.safety is not None and h.safety <= 15
    assert any("超过危险线 80°C" in r for r in h.reasons) and any("风扇停转" in r for r in h.reasons)
    assert {a["rule"] for a in h.alerts} >= {"temperature_high", "fan"}


def test_brightness_under_the_red_line_costs_quality_and_a_lower_red_line_takes_it_back() -> None:
    readings = show("p1", 60, brightness_pct=73.0)
    _, st = _device(readings)
    h = assess(st, T0 + 3600)
    assert h.grade == WATCH and h.safety == 100 and h.quality == 60
    assert any("低于红线 80%" in r for r in h.reasons)
    _, st = _device(readings, RuleSet.from_dict({"devices": {"p1": {"brightness_warning_pct": 70}}}))
    h = assess(st, T0 + 3600)
    assert h.quality == 90 and h.grade == GOOD and h.red_line_pct == 70  # close to the line: a note


def test_light_hours_past_the_rated_life_and_a_warm_running_count_against_it() -> None:
    _, st = _device(show("p1", 60, light_hours=2100.0, temperature_c=67.0))
    h = assess(st, T0 + 3600, "CP2220")  # a xenon lamp rated for 2000 h
    assert h.quality == 70 and h.safety == 90
    assert any("超过额定寿命" in r for r in h.reasons) and any("接近警戒线" in r for r in h.reasons)
    assert assess(st, T0 + 3600, "unknown model").quality == 100  # rated life unknown: not judged


def test_a_silent_or_never_seen_device_is_no_data_never_good() -> None:
    ev, st = _device(show("p1", 30))
    assert assess(st, T0 + 1800).grade == GOOD
    late = assess(st, T0 + 1740 + 700)
    assert (late.score, late.grade) == (None, NO_DATA) and "没有收到数据" in late.reasons[0]
    fresh = ev.device("p9")
    assert assess(fresh, T0).grade == NO_DATA and assess(fresh, T0).reasons == ("还没有收到数据",)


def test_a_brightness_forecast_counts_the_days_left() -> None:
    _, st = _device(show("p1", 60))
    alert = type("A", (), {})()
    alert.status, alert.severity, alert.message, alert.since = FIRING, "warning", "亮度将降到红线", T0
    alert.predicted_t, alert.rule = T0 + 3600 + 2 * 86400, "brightness_forecast"
    st.alerts["brightness_forecast"] = alert
    h = assess(st, T0 + 3600)
    assert h.days_to_red_line == 2.0 and h.quality == 70
    assert any("预计 2 天后亮度降到红线" in r for r in h.reasons)


# --- through the app: snapshots, chat and the API ---------------------------------------------------


def reading(t: float, device: str = DEVICE, **metrics: float) -> dict[str, Any]:
    base: dict[str, Any] = {"power": 1, "load_pct": 80, "temperature_c": 50.0, "ambient_c": 24.0,
                            "fan_rpm": 3000, "brightness_pct": 95.0, "light_hours": 1500.0}
    base.update(metrics)
    return {"device_id": device, "ts": iso(t), "metrics": base, "errors": []}


async def post(client: TestClient, clock: FakeClock, batch: list[dict[str, Any]]) -> None:
    box_id, key = await demo_box()
    body = json.dumps(batch).encode()
    resp = await client.post("/telemetry/readings", data=body, headers=signed_headers(box_id, key, body, now=clock.timestamp()))
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["errors"] == []


async def stream(client: TestClient, clock: FakeClock, minutes: int, **metrics: float) -> None:
    """`minutes` of readings, one a minute, ending now."""
    end = clock.timestamp()
    await post(client, clock, [reading(end - 60 * (minutes - 1 - i), **metrics) for i in range(minutes)])


async def say(callbacks: Any, userid: str, text: str) -> str:
    status, reply = await callbacks.wecom_post(text_xml("ww_corp", userid, text, next_msg_id(), 1000002))
    assert status == 200
    return reply["Content"]


async def test_the_ingest_writes_health_snapshots_when_they_change_and_chat_reads_them(
    client: TestClient, callbacks: Any, clock: FakeClock
) -> None:
    ingest = client.app[TELEMETRY]
    await stream(client, clock, 30)
    assert await ingest.write_health() == 1  # only the projector that reported
    assert await ingest.write_health() == 0  # nothing changed
    row = await Projector.get(device_id=DEVICE)
    assert row.health_score == 100 and row.health["grade"] == GOOD and row.health_at == clock.now()

    answer = await say(callbacks, "staff01", "3号厅放映机状态")
    assert answer.splitlines()[:2] == [
        "📽 3号厅放映机（PJ-DEMO-3 · Christie CP4440-RGB）",
        "🟢 健康 100 分 · 良好（安全 100 · 画质 100）",
    ]
    assert "温度 50.0°C" in answer and "亮度 95.0%" in answer and "风扇 3000 rpm" in answer
    assert "光源 1500 小时（额定 30000 小时）" in answer
    assert "亮度红线 80%（默认）" in answer and "告警：无" in answer

    # Overheating: the next tick writes the change at once, not after the refresh period.
    clock.advance(minutes=40)
    await stream(client, clock, 40, temperature_c=83.0)
    assert await ingest.write_health() == 1
    answer = await say(callbacks, "eng01", "3号厅的放映机状态")
    assert "🔴 健康" in answer and "危险" in answer and "温度过高（严重）" in answer
    assert "超过危险线 80°C" in answer

    everyone = await say(callbacks, "manager01", "放映机状态")
    lines = everyone.splitlines()
    assert lines[0] == "📽 放映机状态（6 台）"
    assert any(line.startswith("🔴 3号厅：") and "温度过高" in line for line in lines)
    assert "⚪ 1号厅：无数据（还没有收到数据）" in lines
    assert "详情请发「1号厅放映机状态」" in lines  # no data sorts first: it is the least known
    assert lines[-1] == "亮度红线：全影城 80%（默认）"

    # Nobody is watching any more: after 15 minutes the snapshot is stale, so no data.
    clock.advance(minutes=16)
    answer = await say(callbacks, "staff01", "3号厅放映机状态")
    assert "⚪ 健康：无数据（监测数据 16 分钟没有更新）" in answer and "分 · 良好" not in answer


async def test_a_manager_sets_a_halls_red_line_in_chat_and_the_evaluator_uses_it_at_once(
    client: TestClient, callbacks: Any, clock: FakeClock
) -> None:
    ingest = client.app[TELEMETRY]
    await stream(client, clock, 30, brightness_pct=75.0)
    st = ingest.evaluator.devices[DEVICE]
    assert "brightness_low" in st.alerts and st.rules.brightness_warning_pct == 80
    baseline = st.temp_base

    answer = await say(callbacks, "manager01", "把3号厅亮度红线设为70%")
    assert answer.splitlines()[0] == "✅ 3号厅亮度红线：80% → 70%"
    assert "低于影院放映标准" in answer
    assert ingest.evaluator.devices[DEVICE] is st and st.temp_base is baseline
    assert st.rules.brightness_warning_pct == 70  # no need to wait for the 30 s look
    row = await TelemetryRule.get(device_id=DEVICE)
    assert row.settings == {"brightness_warning_pct": 70.0} and row.updated_by == "manager01"
    trail = await AuditLog.filter(entity="telemetry_rule")
    assert [(a.actor, a.detail["from"], a.detail["to"], a.detail["hall"]) for a in trail] == [
        ("manager01", 80.0, 70.0, "3号厅")
    ]

    assert await say(callbacks, "manager01", "3号厅亮度红线70%") == "3号厅亮度红线已经是 70%，没有变化。"
    answer = await say(callbacks, "manager01", "亮度红线设为75%")
    assert answer.splitlines()[0] == "✅ 全影城亮度红线：80% → 75%"
    assert "以下影厅有单独设置，仍按各自红线：3号厅 70%" in answer
    assert ingest.evaluator.device("PJ-DEMO-1").rules.brightness_warning_pct == 75
    assert st.rules.brightness_warning_pct == 70

    # The same 75 % screen is above its new line: the alert clears through its recovery line.
    clock.advance(minutes=30)
    await stream(client, clock, 30, brightness_pct=75.0)
    assert "brightness_low" not in st.alerts

    answer = await say(callbacks, "staff01", "亮度红线")
    assert answer == "亮度红线：全影城 75%；单独设置：3号厅 70%"
    clock.advance(seconds=1)
    await ingest.write_health()
    answer = await say(callbacks, "eng01", "3号厅放映机状态")
    assert "亮度红线 70%（本厅设置） · 危险线 50%" in answer


async def test_absurd_red_lines_are_refused_with_the_reason_and_nothing_changes(
    client: TestClient, callbacks: Any
) -> None:
    for text, reason in [
        ("亮度红线设为45%", "要高于危险线 50%"),
        ("把3号厅亮度红线设为50%", "要高于危险线 50%"),
        ("亮度红线设为120%", "30%–100% 之间"),
        ("把IMAX厅亮度红线设为 20", "30%–100% 之间"),
    ]:
        answer = await say(callbacks, "manager01", text)
        assert answer.startswith("没有修改：") and reason in answer, (text, answer)
    assert await say(callbacks, "manager01", "把9号厅亮度红线设为70%") == "本影城没有「9号厅」的放映机。"
    assert await TelemetryRule.all().count() == 0
    assert await AuditLog.filter(entity="telemetry_rule").count() == 0


async def test_only_managers_change_a_red_line_engineers_and_staff_may_read_it(
    client: TestClient, callbacks: Any
) -> None:
    for userid in ("staff01", "eng01"):
        answer = await say(callbacks, userid, "把3号厅亮度红线设为70%")
        assert "亮度红线需要店长" in answer and "放映机状态" in answer
        assert await say(callbacks, userid, "3号厅亮度红线") == "亮度红线 80%（默认）"
    assert await TelemetryRule.all().count() == 0
    assert "修改：把3号厅亮度红线设为70%" in await say(callbacks, "manager01", "亮度红线是多少")


async def test_a_change_made_by_another_process_is_found_on_the_next_look(
    client: TestClient, clock: FakeClock
) -> None:
    ingest = client.app[TELEMETRY]
    await stream(client, clock, 10)
    await ingest.refresh_rules()  # the demo's projectors came after start-up
    assert await ingest.refresh_rules() is False  # nothing changed since the last look
    cinema = await Cinema.get(code="demo")
    await TelemetryRule.create(
        cinema=cinema, device_id="", settings={"temperature_caution_c": 65}, updated_at=clock.now()
    )
    await TelemetryRule.create(
        cinema=cinema, device_id="PJ-DEMO-1", settings={"temperature_caution_c": 90}, updated_at=clock.now()
    )  # above the 80 °C critical line: left out, the cinema's line applies
    assert await ingest.refresh_rules() is True
    assert ingest.evaluator.devices[DEVICE].rules.temperature_caution_c == 65
    assert ingest.evaluator.device("PJ-DEMO-1").rules.temperature_caution_c == 65
    assert len(ingest.rules_problems) == 1 and "PJ-DEMO-1" in ingest.rules_problems[0]
    assert await ingest.refresh_rules() is False


async def test_the_api_lists_the_callers_cinemas_projector_health(
    client: TestClient, clock: FakeClock
) -> None:
    await stream(client, clock, 30, light_hours=2000.0)
    await client.app[TELEMETRY].write_health()
    secret = client.app[API].secret_key
    headers = {"Authorization": f"Bearer {staff_token(secret, 'staff01', clock.now())}"}

    resp = await client.get("/api/projectors", headers=headers)
    assert resp.status == 200
    body = await resp.json()
    by_hall = {p["hall"]: p for p in body["projectors"]}
    assert len(by_hall) == 6
    three = by_hall["3号厅"]
    assert (three["device_id"], three["score"], three["grade"], three["fresh"]) == (DEVICE, 100, GOOD, True)
    assert three["health"]["light_hours"] == 2000.0 and three["health"]["alerts"] == []
    assert three["red_line_pct"] == 80 and three["red_line_from"] == "default"
    assert three["updated_at"].endswith("+08:00")
    one = by_hall["1号厅"]
    assert (one["score"], one["grade"], one["health"]) == (None, NO_DATA, None)

    resp = await client.get(f"/api/projectors/{DEVICE}", headers=headers)
    assert resp.status == 200 and (await resp.json())["projector"]["score"] == 100
    resp = await client.get("/api/projectors/PJ-ELSEWHERE-1", headers=headers)
    assert resp.status == 404 and (await resp.json())["code"] == "not_found"
    resp = await client.get("/api/projectors")
    assert resp.status == 401

    clock.advance(minutes=20)
    stale = (await (await client.get(f"/api/projectors/{DEVICE}", headers=headers)).json())["projector"]
    assert (stale["score"], stale["grade"], stale["fresh"], stale["health"]) == (None, NO_DATA, False, None)
    assert stale["last_seen"] is not None


async def test_health_of_matches_hall_words(client: TestClient, clock: FakeClock) -> None:
    cinema = await Cinema.get(code="demo")
    now = clock.now() + timedelta(seconds=1)
    for word in ("3号厅", "3厅", "三号厅"):
        assert [p.device_id for p in await projectors.health_of(cinema.id, now, word.replace("三", "3"))] == [DEVICE]
    assert [p.hall for p in await projectors.health_of(cinema.id, now, "imax厅")] == ["IMAX厅"]


def test_the_chat_commands_read_halls_in_digits_chinese_numerals_or_names() -> None:
    from handlers.projectors import RED_VIEW, SET, STATUS, _hall_word

    cases = {
        "把3号厅亮度红线设为70%": ("3号厅", "70"),
        "3号厅亮度红线70%": ("3号厅", "70"),
        "把三号厅的亮度红线调到72％": ("3号厅", "72"),
        "十一号厅亮度红线改成 75": ("11号厅", "75"),
        "二十厅亮度红线设为75%": ("20厅", "75"),
        "IMAX厅亮度红线设为85%": ("IMAX厅", "85"),
        "亮度红线设为75%": (None, "75"),
        "全影城亮度红线设为75%": (None, "75"),
    }
    for text, (hall, value) in cases.items():
        found = SET.match(text)
        assert found is not None, text
        assert (_hall_word(found), found["value"]) == (hall, value), text
    for text in ("3号厅放映机状态", "放映机状态", "3号厅的放映机怎么样", "IMAX厅投影机健康状况？"):
        assert STATUS.match(text), text
    assert RED_VIEW.match("亮度红线") and RED_VIEW.match("3号厅亮度红线是多少？")
    for text in ("3号厅放映机过热报警", "IMAX厅放映机灯泡不亮", "放映机好像出故障了", "亮度红线设为很高"):
        assert not (SET.match(text) or STATUS.match(text) or RED_VIEW.match(text)), text


async def test_a_stored_limit_the_rules_code_would_not_load_is_refused_before_it_is_written(
    client: TestClient, clock: FakeClock
) -> None:
    from bot.app import DISPATCHER

    book = client.app[DISPATCHER].deps["telemetry_rules"]
    cinema = await Cinema.get(code="demo")
    try:
        await projectors.set_rule(cinema.id, "fan_slow_rpm", 200.0, by="manager01", now=clock.now(), book=book)
    except projectors.RuleRefused as exc:
        assert exc.code == "inconsistent" and "fan_stopped_rpm" in exc.message
    else:
        raise AssertionError("a slow-fan line under the stopped-fan line was stored")
    assert await TelemetryRule.all().count() == 0
    change = await projectors.set_rule(
        cinema.id, "fan_slow_rpm", 1200.0, device_id=DEVICE, by="manager01", now=clock.now(), book=book
    )
    assert (change.old, change.new, change.changed) == (1000.0, 1200.0, True)
    await book.changed()
    assert client.app[TELEMETRY].evaluator.device(DEVICE).rules.fan_slow_rpm == 1200.0
