"""The duty roster: the demo week of shifts, who gets a new work order at which hour, and a
manager who reads and changes the roster from the command line or in WeCom."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import bot.cli
import domain
from bot.app import REDIS
from bot.cli import main
from bot.infra.storage import open_database
from bot.wechat.chatclient import next_msg_id, text_xml
from domain import demo, workorders
from domain.audit import AuditLog
from domain.catalog import Showtime
from domain.cinemas import Cinema
from domain.people import Staff
from domain.workorders import Kind, Shift, Who
from jobs.context import JobContext
from jobs.locks import LeaderLocks
from jobs.schedule import top_up_demo_schedule
from tests.support import FakeClock

SHANGHAI = ZoneInfo("Asia/Shanghai")
DEMO_SHIFTS_A_DAY = len(demo.DEMO_SHIFTS)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """A moment in November 2026, Shanghai time (the 21st is a Saturday)."""
    return datetime(2026, 11, day, hour, minute, tzinfo=SHANGHAI)


@pytest.fixture
async def cinema(database_url: str, clock: FakeClock) -> AsyncIterator[Cinema]:
    async with open_database(database_url, domain.MODEL_MODULES, domain.MIGRATIONS):
        await demo.seed(clock.now())
        yield await Cinema.get(code=demo.DEMO_CINEMA_CODE)


# --- the demo roster ---------------------------------------------------------------------------


async def test_the_demo_seeds_a_week_of_shifts_once_in_utc(cinema: Cinema, clock: FakeClock) -> None:
    # Yesterday's late shifts too (they run past midnight), today, and the next 7 days.
    assert await Shift.all().count() == (demo.SCHEDULE_DAYS + 1) * DEMO_SHIFTS_A_DAY
    assert (await demo.seed(clock.now())).shifts_created == 0
    assert await Shift.all().count() == (demo.SCHEDULE_DAYS + 1) * DEMO_SHIFTS_A_DAY

    late = await Shift.get(staff__userid="staff03", starts_at=at(21, 18).astimezone(UTC))
    assert (late.team, late.ends_at) == ("floor", at(22, 2))
    assert late.starts_at.utcoffset() == timedelta(0) and late.starts_at.hour == 10
    days = {s.starts_at.astimezone(SHANGHAI).date() for s in await Shift.filter(staff__userid="eng01")}
    assert min(days) == at(20, 0).date() and max(days) == at(28, 0).date()


async def test_the_hourly_demo_job_tops_up_the_roster_for_a_new_day(
    cinema: Cinema, clock: FakeClock, redis: Any
) -> None:
    before = await Shift.all().count()
    clock.advance(days=1)
    created = await top_up_demo_schedule(JobContext(clock=clock, locks=LeaderLocks(redis)))
    assert created == len(demo.HALLS) * len(demo.DAILY_SLOTS)  # it still reports showtimes
    assert await Shift.all().count() == before + DEMO_SHIFTS_A_DAY
    assert await Showtime.all().count() == (demo.SCHEDULE_DAYS + 1) * created
    assert await top_up_demo_schedule(JobContext(clock=clock, locks=LeaderLocks(redis))) == 0
    assert await Shift.all().count() == before + DEMO_SHIFTS_A_DAY


async def test_a_deactivated_staff_member_gets_no_new_shifts(cinema: Cinema, clock: FakeClock) -> None:
    await Staff.filter(userid="staff02").update(active=False)
    clock.advance(days=1)
    assert await demo.ensure_roster(cinema, clock.now()) == DEMO_SHIFTS_A_DAY - 1


# --- who gets a new work order --------------------------------------------------------------


async def open_at(cinema: Cinema, when: datetime, category: str = "noise") -> str | None:
    kind = Kind.COMPLAINT if category == "noise" else Kind.FAULT
    order, _ = await workorders.open_order(
        cinema_id=cinema.id, kind=kind, category=category, summary="测试工单",
        reporter=Who("oRosterTestAudience000000001", "audience", cinema.id), now=when,
    )
    return order.assignee


@pytest.mark.parametrize(
    ("when", "floor", "engineering"),
    [
        (at(21, 9, 30), ["manager01"] * 2, ["eng01"] * 2),  # the floor team starts at 10
        (at(21, 10, 30), ["staff01"] * 3, ["eng01"] * 2),
        (at(21, 15), ["staff01", "staff02", "staff01", "staff02"], ["eng01"] * 2),
        (at(21, 19), ["staff02", "staff03", "staff02"], ["eng02"] * 2),
        (at(22, 1), ["staff03"] * 2, ["eng02"] * 2),  # yesterday's late shift, after midnight
        (at(22, 3), ["manager01"] * 2, ["manager01"] * 2),  # closed: nobody on duty
    ],
    ids=["09:30", "10:30", "15:00", "19:00", "01:00", "03:00"],
)
async def test_new_work_orders_go_round_robin_to_whoever_is_on_duty(
    cinema: Cinema, when: datetime, floor: list[str], engineering: list[str]
) -> None:
    assert [await open_at(cinema, when + timedelta(seconds=i)) for i in range(len(floor))] == floor
    got = [await open_at(cinema, when + timedelta(seconds=i), "seat") for i in range(len(engineering))]
    assert got == engineering


async def test_pick_assignee_skips_people_off_shift_or_deactivated(cinema: Cinema) -> None:
    pick = workorders.pick_assignee
    assert (await pick(cinema.id, "floor", at(21, 17, 59))).userid == "staff01"
    assert (await pick(cinema.id, "floor", at(21, 18), exclude=["staff02"])).userid == "staff03"
    await Staff.filter(userid="staff01").update(active=False)
    assert (await pick(cinema.id, "floor", at(21, 11))).userid == "manager01"


async def test_with_no_roster_at_all_a_new_order_goes_to_the_manager(cinema: Cinema) -> None:
    await Shift.all().delete()
    assert await open_at(cinema, at(21, 15)) == "manager01"
    assert await open_at(cinema, at(21, 15, 1), "seat") == "manager01"


# --- `cinebot roster` -------------------------------------------------------------------------


@pytest.fixture
def cli_clock(
    database_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> FakeClock:
    """`cinebot` in-process against the test database, at a time the test sets."""
    monkeypatch.chdir(tmp_path)  # no stray .env from the developer's checkout
    monkeypatch.setenv("CINEBOT_DATABASE_URL", database_url)
    monkeypatch.setenv("CINEBOT_REDIS_URL", redis_url)
    clock = FakeClock(at(21, 10, 30))
    for group in vars(bot.cli).values():  # every command group that reads the clock
        if isinstance(group, ModuleType) and hasattr(group, "SystemClock"):
            monkeypatch.setattr(group, "SystemClock", lambda: clock)
    return clock


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_demo_reports_its_shifts_and_roster_lists_a_day_per_team(
    cli_clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "demo")
    assert code == 0 and "新增 240 个场次" in out and "新增 54 个班次" in out

    code, out, _ = run(capsys, "roster")
    assert code == 0
    lines = [line.split() for line in out.splitlines()]
    assert lines[0] == ["cinebot", "示例影城", "·", "2026-11-21（周六）值班表"]
    assert lines[1:] == [
        ["场务组"],
        ["staff01", "李小青", "10:00–18:00"],
        ["staff02", "王磊", "14:00–22:00"],
        ["staff03", "陈静", "18:00–次日02:00"],
        ["工程组"],
        ["eng01", "赵工", "09:00–17:00"],
        ["eng02", "刘工", "17:00–次日02:00"],
        ["值班经理"],
        ["manager01", "张经理", "09:00–次日02:00"],
    ]

    code, out, _ = run(capsys, "roster", "list", "--date", "2026-11-28")
    assert code == 0 and "2026-11-28（周六）值班表" in out and "staff03" in out
    code, out, _ = run(capsys, "roster", "--date", "2026-12-25")
    assert code == 0 and "这一天还没有排班" in out
    code, _, err = run(capsys, "roster", "--date", "25/12")
    assert code == 2 and "YYYY-MM-DD" in err


def test_roster_now_says_who_is_on_duty_and_who_is_missing(
    cli_clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "demo")
    code, out, _ = run(capsys, "roster", "now")
    assert code == 0
    assert out.splitlines()[1:] == [
        "  场务组：李小青（staff01，至18:00）",
        "  工程组：赵工（eng01，至17:00）",
        "  值班经理：张经理（manager01，至次日02:00）",
    ]
    cli_clock.set(at(22, 1, 30))
    out = run(capsys, "roster", "now")[1]
    assert "场务组：陈静（staff03，至02:00）" in out and "工程组：刘工（eng02，至02:00）" in out
    cli_clock.set(at(22, 4))
    out = run(capsys, "roster", "now")[1]
    assert out.count("无人在岗（新工单转给值班经理）") == 3


def test_a_manager_adds_a_shift_from_the_command_line(
    cli_clock: FakeClock, capsys: pytest.CaptureFixture[str], database_url: str
) -> None:
    run(capsys, "demo")
    add = ["roster", "add", "staff02", "--team", "engineering", "--from", "2026-11-21 23:00", "--to", "03:00"]
    code, out, err = run(capsys, *add)
    assert (code, err) == (0, "")
    assert out.strip() == "已排班：王磊（staff02）工程组，2026-11-21（周六）23:00–次日03:00"
    code, out, _ = run(capsys, *add)  # the same again changes nothing
    assert code == 0 and "已在班表中" in out

    cli_clock.set(at(22, 2, 30))  # after closing, only the extra shift is on
    out = run(capsys, "roster", "now")[1]
    assert "工程组：王磊（staff02，至03:00）" in out and "场务组：无人在岗" in out

    async def trail() -> list[tuple[str, str, dict[str, Any]]]:
        async with open_database(database_url, domain.MODEL_MODULES, domain.MIGRATIONS):
            rows = await AuditLog.filter(entity="shift").order_by("id")
            return [(a.action, a.actor, a.detail) for a in rows]

    [(action, actor, detail)] = asyncio.run(trail())
    assert (action, actor, detail["staff"], detail["team"]) == ("add", "cli:manager", "staff02", "engineering")

    overlap = ["roster", "add", "staff01", "--team", "floor", "--from", "2026-11-22 09:00", "--to", "11:00"]
    code, out, _ = run(capsys, *overlap)
    assert code == 0 and "注意：与已有班次重叠（场务组 10:00–18:00）" in out


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["nobody", "--team", "floor", "--from", "2026-11-21 09:00", "--to", "10:00"], 1, "没有找到在职员工 nobody"),
        (["staff01", "--team", "floor", "--from", "明天九点", "--to", "10:00"], 2, "YYYY-MM-DD HH:MM"),
        (["staff01", "--team", "floor", "--from", "2026-11-21 09:00", "--to", "2026-11-21 08:00"], 1,
         "班次结束时间要晚于开始时间"),
        (["staff01", "--team", "floor", "--from", "2026-11-21 09:00", "--to", "09:00"], 1,
         "班次结束时间要晚于开始时间"),
    ],
    ids=["unknown staff", "bad time", "ends before it starts", "ends as it starts"],
)
def test_a_bad_shift_is_refused_in_chinese(
    argv: list[str], code: int, message: str, cli_clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "demo")
    got, out, err = run(capsys, "roster", "add", *argv)
    assert (got, out) == (code, "")
    assert message in err and "Traceback" not in err


def test_an_unknown_team_is_a_usage_error(cli_clock: FakeClock, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["roster", "add", "staff01", "--team", "cleaning", "--from", "2026-11-21 09:00", "--to", "10:00"])
    assert caught.value.code == 2
    assert "floor" in capsys.readouterr().err


def test_roster_before_any_cinema_exists_says_to_run_demo_first(
    cli_clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "roster")
    assert code == 1 and "cinebot demo" in err


# --- in WeCom ----------------------------------------------------------------------------------


async def say(callbacks: Any, userid: str, text: str) -> str:
    status, reply = await callbacks.wecom_post(text_xml("ww_corp", userid, text, next_msg_id(), 1000002))
    assert status == 200
    return reply["Content"]


async def test_a_manager_asks_who_is_on_duty_today(callbacks: Any) -> None:
    answer = await say(callbacks, "manager01", "今天谁值班")
    assert answer.splitlines() == [
        "📋 11月21日（周六）值班表",
        "场务组：李小青(staff01) 10:00–18:00、王磊(staff02) 14:00–22:00、陈静(staff03) 18:00–次日02:00",
        "工程组：赵工(eng01) 09:00–17:00、刘工(eng02) 17:00–次日02:00",
        "值班经理：张经理(manager01) 09:00–次日02:00",
        "现在在岗：场务组 李小青(staff01)；工程组 赵工(eng01)；值班经理 张经理(manager01)",
        "调整排班：排班 staff02 明天 14:00-22:00 场务",
    ]
    assert await say(callbacks, "manager01", "值班表") == answer
    assert "11月22日（周日）值班表" in await say(callbacks, "manager01", "明天谁值班")
    assert (await say(callbacks, "manager01", "现在谁值班")).startswith("现在在岗：场务组 李小青")


async def test_staff_see_the_roster_by_name_only(callbacks: Any) -> None:
    answer = await say(callbacks, "staff01", "值班表")
    assert "场务组：李小青 10:00–18:00、王磊 14:00–22:00" in answer
    assert "staff02" not in answer and "调整排班" not in answer


async def test_a_manager_adds_a_shift_by_chat(callbacks: Any, clock: FakeClock) -> None:
    # The demo roster already has this one: saying it again adds nothing.
    answer = await say(callbacks, "manager01", "排班 staff02 明天 14:00-22:00 场务")
    assert answer == "这个班已经排过了：王磊(staff02) · 场务组 · 11月22日（周日）14:00–22:00"
    before = await Shift.all().count()

    answer = await say(callbacks, "manager01", "排班 陈静 明天 10:00-14:00")  # a name; team by role
    assert answer.splitlines() == [
        "✅ 已排班：陈静(staff03) · 场务组 · 11月22日（周日）10:00–14:00",
    ]
    answer = await say(callbacks, "manager01", "排班 eng01 11月23日 20:00～03:00 工程")
    assert answer.startswith("✅ 已排班：赵工(eng01) · 工程组 · 11月23日（周一）20:00–次日03:00")
    assert await Shift.all().count() == before + 2

    shift = await Shift.get(staff__userid="staff03", starts_at=at(22, 10).astimezone(UTC))
    assert (shift.team, shift.ends_at) == ("floor", at(22, 14))
    trail = await AuditLog.filter(entity="shift", action="add").order_by("id")
    assert [a.actor for a in trail] == ["manager01", "manager01"]

    tomorrow = await say(callbacks, "manager01", "明天谁值班")
    assert "陈静(staff03) 10:00–14:00、李小青(staff01) 10:00–18:00、王磊(staff02) 14:00–22:00" in tomorrow
    clock.set(at(22, 11))
    cinema = await Cinema.get(code=demo.DEMO_CINEMA_CODE)
    on_duty = await workorders.on_duty(cinema.id, "floor", clock.now())
    assert sorted(s.userid for s in on_duty) == ["staff01", "staff03"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("排班 staff02", "排班格式：排班 staff02 明天 14:00-22:00 场务"),
        ("排班 nobody 明天 10:00-12:00", "本影城没有在职员工「nobody」"),
        ("排班 staff02 明天 10:00-12:00 保洁", "不认识的组「保洁」"),
        ("排班 staff02 13月40日 10:00-12:00", "日期或时间看不懂"),
        ("排班 staff02 明天 10:00-10:00", "班次结束时间要晚于开始时间"),
    ],
)
async def test_a_manager_is_told_what_is_wrong_with_a_shift(
    callbacks: Any, text: str, expected: str
) -> None:
    before = await Shift.all().count()
    assert expected in await say(callbacks, "manager01", text)
    assert await Shift.all().count() == before


async def test_only_managers_change_the_roster_and_refusals_are_logged(
    callbacks: Any, caplog: pytest.LogCaptureFixture
) -> None:
    before = await Shift.all().count()
    with caplog.at_level(logging.WARNING, logger="handlers.roster"):
        answer = await say(callbacks, "staff01", "排班 staff01 明天 09:00-23:00 场务")
        answer_eng = await say(callbacks, "eng01", "排班 eng01 明天 09:00-10:00")
    assert "排班需要店长" in answer and "值班表" in answer
    assert "排班需要店长" in answer_eng
    assert await Shift.all().count() == before
    refused = [r for r in caplog.records if r.name == "handlers.roster" and "refused" in r.getMessage()]
    assert [(r.by, r.role) for r in refused] == [("staff01", "staff"), ("eng01", "engineer")]  # type: ignore[attr-defined]


async def test_strangers_and_audiences_do_not_see_the_roster(callbacks: Any, client: Any) -> None:
    assert "还没有开通" in await say(callbacks, "stranger9", "值班表")
    status, reply = await callbacks.wechat_post(
        text_xml("gh_demo", "oRosterTestAudience000000001", "今天谁值班", next_msg_id())
    )
    assert status == 200
    assert "李小青" not in reply["Content"] and "值班表" not in reply["Content"]
    assert await client.app[REDIS].ping()
