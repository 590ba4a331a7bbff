"""Work-order SLAs: clocks that run in business hours only, stop while paused and restart on
reopen; a warning at 80 %, a hand-over on breach and a manager at 150 % — each once — and
the minute job that does it, once per tick however many replicas run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from tortoise.backends.base.client import BaseDBAsyncClient

import domain
from bot.app import REDIS, SCHEDULER
from bot.infra.storage import open_database
from domain import demo, workorders
from domain.cinemas import Cinema
from domain.sla import BusinessHours, Mark, clocks
from domain.workorders import Kind, SlaPolicy, State, Who, WorkOrder, WorkOrderEvent
from jobs import sla as sla_job
from jobs.context import JobContext
from jobs.locks import LeaderLocks
from jobs.scheduler import build_scheduler
from tests.support import FakeClock

SHANGHAI = ZoneInfo("Asia/Shanghai")
HOURS = BusinessHours.parse("09:00", "02:00")  # the demo cinema's: open past midnight


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """A moment in November 2026, Shanghai time (the 21st is a Saturday)."""
    return datetime(2026, 11, day, hour, minute, tzinfo=SHANGHAI)


def complaint_clocks(created: datetime, now: datetime, *marks: tuple[datetime, str]):
    return clocks(
        created, [Mark(t, a) for t, a in marks], ack_minutes=5, resolve_minutes=30,
        hours=HOURS, now=now,
    )


# --- business hours ---------------------------------------------------------------------------


def test_business_time_runs_past_midnight_until_closing_and_resumes_at_opening() -> None:
    assert HOURS.seconds_between(at(21, 23), at(22, 1, 30)) == 2.5 * 3600
    # 01:00–02:00 open, 02:00–09:00 closed, 09:00–10:00 open.
    assert HOURS.seconds_between(at(22, 1), at(22, 10)) == 2 * 3600
    assert HOURS.seconds_between(at(22, 3), at(22, 8, 59)) == 0
    assert HOURS.add(at(22, 1, 50), 30 * 60) == at(22, 9, 20)
    assert HOURS.add(at(22, 3), 0) == at(22, 9)


def test_a_round_the_clock_policy_ignores_opening_hours() -> None:
    always = BusinessHours.parse("09:00", "02:00", always=True)
    assert always.seconds_between(at(22, 1), at(22, 10)) == 9 * 3600
    assert always.add(at(22, 3), 15 * 60) == at(22, 3, 15)


def test_a_report_at_three_in_the_morning_starts_counting_at_nine() -> None:
    ack, resolve = complaint_clocks(at(22, 3), now=at(22, 8, 59))
    assert (ack.elapsed_s, resolve.elapsed_s) == (0, 0)
    assert ack.due_at == at(22, 9, 5) and resolve.due_at == at(22, 9, 30)
    assert not ack.warning and not ack.breached

    ack, _ = complaint_clocks(at(22, 3), now=at(22, 9, 4))
    assert ack.elapsed_s == 4 * 60 and ack.warning


def test_warning_from_eighty_percent_and_breach_at_one_hundred() -> None:
    created = at(21, 14, 30)
    states = {}
    for seconds in (239, 240, 299, 300):
        ack, _ = complaint_clocks(created, now=created + timedelta(seconds=seconds))
        states[seconds] = (ack.warning, ack.breached)
    assert states == {
        239: (False, False), 240: (True, False), 299: (True, False), 300: (False, True),
    }
    ack, _ = complaint_clocks(created, now=created + timedelta(minutes=3))
    assert ack.due_at == at(21, 14, 35) and ack.ratio == pytest.approx(0.6)


def test_acknowledging_stops_the_ack_clock_and_resolving_stops_the_resolve_clock() -> None:
    created = at(21, 14, 30)
    ack, resolve = complaint_clocks(
        created, at(21, 18), (at(21, 14, 33), "acknowledge"), (at(21, 14, 50), "resolve")
    )
    assert ack.done_at == at(21, 14, 33) and ack.elapsed_s == 180 and not ack.running
    assert resolve.done_at == at(21, 14, 50) and resolve.elapsed_s == 20 * 60
    assert not resolve.breached and not resolve.warning


def test_a_pause_stops_the_clock_and_moves_the_deadline() -> None:
    created = at(21, 14, 30)
    marks = ((at(21, 14, 31), "acknowledge"), (at(21, 14, 40), "pause"))
    _, resolve = complaint_clocks(created, at(21, 20), *marks)
    assert resolve.paused and resolve.due_at is None
    assert resolve.elapsed_s == 10 * 60 and not resolve.warning

    _, resolve = complaint_clocks(created, at(21, 20, 5), *marks, (at(21, 20), "resume"))
    assert not resolve.paused
    assert resolve.elapsed_s == 15 * 60
    assert resolve.due_at == at(21, 20, 20)  # 10 min before the pause + 20 after it


def test_pausing_an_order_that_is_already_late_does_not_make_it_on_time() -> None:
    created = at(21, 14, 30)
    _, resolve = complaint_clocks(
        created, at(21, 15, 20),
        (at(21, 14, 31), "acknowledge"), (at(21, 15, 10), "pause"), (at(21, 15, 15), "resume"),
    )
    assert resolve.breached and resolve.elapsed_s == 45 * 60
    assert resolve.due_at == at(21, 15, 0)


def test_a_pause_over_closing_time_counts_only_open_hours() -> None:
    _, resolve = complaint_clocks(
        at(21, 23, 50), at(22, 9, 30),
        (at(21, 23, 51), "acknowledge"), (at(22, 0, 0), "pause"), (at(22, 9, 10), "resume"),
    )
    # 10 min before the pause, 20 min after it; the closed night counts for nothing.
    assert resolve.elapsed_s == 30 * 60 and resolve.breached
    assert resolve.due_at == at(22, 9, 30)


def test_a_reopen_restarts_the_resolve_clock_but_not_the_ack_clock() -> None:
    created = at(21, 14, 30)
    ack, resolve = complaint_clocks(
        created, at(21, 16, 10),
        (at(21, 14, 31), "acknowledge"), (at(21, 14, 50), "resolve"), (at(21, 16), "reopen"),
    )
    assert ack.done_at == at(21, 14, 31)
    assert resolve.running and resolve.started_at == at(21, 16)
    assert resolve.elapsed_s == 10 * 60 and resolve.due_at == at(21, 16, 30)


# --- check_sla: warn once, hand over on breach, then a manager ------------------------------


class Desk:
    """Stands in for the cards: records what the SLA checks would have told people."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str | None, dict[str, Any]]] = []

    async def __call__(
        self, event: str, order: WorkOrder, *, using: BaseDBAsyncClient, **info: Any
    ) -> None:
        self.sent.append((event, order.ref, order.assignee, info))

    def events(self) -> list[tuple[str, str | None]]:
        return [(e, assignee) for e, _, assignee, _ in self.sent]


@pytest.fixture
async def cinema(database_url: str, clock: FakeClock) -> AsyncIterator[Cinema]:
    """The demo cinema, with its roster, on a real database."""
    async with open_database(database_url, domain.MODEL_MODULES, domain.MIGRATIONS):
        await demo.seed(clock.now())
        yield await Cinema.get(code=demo.DEMO_CINEMA_CODE)


async def report(
    cinema: Cinema, clock: FakeClock, kind: Kind = Kind.COMPLAINT, severity: str = "P3",
    category: str = "noise",
) -> WorkOrder:
    order, created = await workorders.open_order(
        cinema_id=cinema.id, kind=kind, category=category, severity=severity,
        summary="3号厅有人一直大声打电话", hall="3号厅",
        reporter=Who("oSlaTestAudience000000000001", "audience", cinema.id), now=clock.now(),
    )
    assert created
    return order


async def check(order: WorkOrder, clock: FakeClock, desk: Desk) -> str | None:
    # Fresh from the database each time, as the job reads it.
    return await workorders.check_sla(await WorkOrder.get(id=order.id), clock.now(), desk)


async def timeline(order: WorkOrder, *actions: str) -> list[WorkOrderEvent]:
    return await WorkOrderEvent.filter(work_order_id=order.id, action__in=actions).order_by("id")


async def test_a_late_complaint_is_warned_once_then_handed_on_then_given_to_the_manager(
    cinema: Cinema, clock: FakeClock
) -> None:
    clock.set(at(21, 14, 30))  # staff01 and staff02 are both on the floor
    desk = Desk()
    order = await report(cinema, clock)
    assert order.assignee == "staff01"

    clock.advance(minutes=3)
    assert await check(order, clock, desk) is None
    clock.advance(minutes=1)  # 4 of 5 minutes to acknowledge: 80 %
    assert await check(order, clock, desk) == "warning"
    assert await check(order, clock, desk) is None
    clock.advance(seconds=30)
    assert await check(order, clock, desk) is None  # warned once, not every minute

    clock.advance(seconds=30)  # 5 minutes: breached
    breached_at = clock.now()
    assert await check(order, clock, desk) == "escalated"
    assert await check(order, clock, desk) is None
    order = await WorkOrder.get(id=order.id)
    assert (order.state, order.assignee) == (State.ESCALATED, "staff02")
    assert "staff01" in order.watchers  # the first assignee keeps following it

    clock.advance(minutes=2)
    assert await check(order, clock, desk) is None  # 7 of 5 minutes: not yet 150 %
    clock.advance(seconds=30)
    assert await check(order, clock, desk) == "escalated"
    clock.advance(seconds=30)
    assert await check(order, clock, desk) is None
    order = await WorkOrder.get(id=order.id)
    assert order.assignee == "manager01"
    assert {"staff01", "staff02"} <= set(order.watchers)

    warnings = await timeline(order, "sla_warning")
    assert [(w.detail["clock"], w.at) for w in warnings] == [("ack", breached_at - timedelta(minutes=1))]
    escalations = await timeline(order, "escalate")
    assert [(e.detail["clock"], e.detail["level"], e.detail["assignee"], e.at, e.actor) for e in escalations] == [
        ("ack", 1, "staff02", breached_at, "system"),
        ("ack", 2, "manager01", breached_at + timedelta(minutes=2, seconds=30), "system"),
    ]
    assert desk.events() == [
        ("sla_warning", "staff01"), ("escalate", "staff02"), ("escalate", "manager01"),
    ]


async def test_an_acknowledged_complaint_is_judged_by_its_resolve_clock(
    cinema: Cinema, clock: FakeClock
) -> None:
    clock.set(at(21, 14, 30))
    desk = Desk()
    order = await report(cinema, clock)
    clock.advance(minutes=2)
    staff01 = Who("staff01", "staff", cinema.id, "李小青")
    await workorders.act(await WorkOrder.get(id=order.id), "acknowledge", staff01, clock.now())

    clock.advance(minutes=10)  # ack clock done in time: nothing to say about it
    assert await check(order, clock, desk) is None
    clock.advance(minutes=12)  # 24 of 30 minutes
    assert await check(order, clock, desk) == "warning"
    clock.advance(minutes=6)
    assert await check(order, clock, desk) == "escalated"

    assert [(e.action, e.detail["clock"]) for e in await timeline(order, "sla_warning", "escalate")] == [
        ("sla_warning", "resolve"), ("escalate", "resolve"),
    ]
    assert (await WorkOrder.get(id=order.id)).assignee == "staff02"


async def test_with_nobody_else_on_the_floor_a_breach_goes_to_the_manager(
    cinema: Cinema, clock: FakeClock
) -> None:
    clock.set(at(21, 10, 30))  # only staff01 works the floor before 14:00
    order = await report(cinema, clock)
    assert order.assignee == "staff01"
    clock.advance(minutes=5)
    assert await check(order, clock, Desk()) == "escalated"
    order = await WorkOrder.get(id=order.id)
    assert order.assignee == "manager01" and order.watchers == ["staff01"]


async def test_at_one_hundred_and_fifty_percent_the_manager_on_duty_gets_it(
    cinema: Cinema, clock: FakeClock
) -> None:
    from domain.people import Staff, StaffRole

    clock.set(at(21, 10, 30))
    night = await Staff.create(cinema=cinema, userid="manager02", name="夜班经理", role=StaffRole.MANAGER)
    # manager01's shift is moved away: manager02 runs the cinema this morning.
    await workorders.Shift.filter(staff__userid="manager01").delete()
    await workorders.add_shift(
        cinema_id=cinema.id, staff=night, team="management", starts_at=at(21, 8),
        ends_at=at(21, 16), by="manager01", now=clock.now(),
    )
    order = await report(cinema, clock)
    clock.advance(minutes=5)
    assert await check(order, clock, Desk()) == "escalated"
    assert (await WorkOrder.get(id=order.id)).assignee == "manager02"  # not the first manager by id


async def test_a_complaint_made_after_closing_is_not_late_before_opening(
    cinema: Cinema, clock: FakeClock
) -> None:
    clock.set(at(22, 3))
    desk = Desk()
    order = await report(cinema, clock)
    clock.set(at(22, 8, 59))
    assert await check(order, clock, desk) is None
    clock.set(at(22, 9, 4))
    assert await check(order, clock, desk) == "warning"
    clock.set(at(22, 9, 5))
    assert await check(order, clock, desk) == "escalated"


async def test_a_paused_order_waits_for_its_part_without_going_late(
    cinema: Cinema, clock: FakeClock
) -> None:
    clock.set(at(21, 10, 30))
    desk = Desk()
    order = await report(cinema, clock, kind=Kind.FAULT, severity="P2", category="seat")
    assert order.assignee == "eng01"  # seats are engineering's
    eng01 = Who("eng01", "engineer", cinema.id, "赵工")
    order = await workorders.act(order, "acknowledge", eng01, clock.now())
    clock.advance(minutes=30)
    order = await workorders.act(order, "pause", eng01, clock.now(), note="等配件")

    clock.advance(hours=8)  # far past the 4-hour target, but waiting for a part
    assert await check(order, clock, desk) is None
    order = await workorders.act(await WorkOrder.get(id=order.id), "resume", eng01, clock.now())
    clock.advance(minutes=161)  # 30 + 161 = 191 of 240 minutes: not yet 80 %
    assert await check(order, clock, desk) is None
    clock.advance(minutes=1)
    assert await check(order, clock, desk) == "warning"
    assert desk.events() == [("sla_warning", "eng01")]


async def test_a_cinema_policy_overrides_the_default_targets(
    cinema: Cinema, clock: FakeClock
) -> None:
    await SlaPolicy.create(
        cinema_id=cinema.id, kind="complaint", severity="P3", ack_minutes=10, resolve_minutes=60
    )
    clock.set(at(21, 14, 30))
    desk = Desk()
    order = await report(cinema, clock)
    clock.advance(minutes=5)  # late by the default (5 min), early by this cinema's 10
    assert await check(order, clock, desk) is None
    clock.advance(minutes=3)
    assert await check(order, clock, desk) == "warning"
    ack, resolve = await workorders.sla(await WorkOrder.get(id=order.id), clock.now())
    assert (ack.target_s, resolve.target_s) == (600, 3600)


async def test_default_targets_per_kind_and_severity(cinema: Cinema, clock: FakeClock) -> None:
    def order(kind: str, severity: str) -> WorkOrder:
        return WorkOrder(cinema_id=cinema.id, kind=kind, severity=severity)

    assert await workorders.policy_for(order("complaint", "P3")) == (5, 30, True)
    assert await workorders.policy_for(order("fault", "P1")) == (15, 60, False)  # around the clock
    assert await workorders.policy_for(order("fault", "P2")) == (60, 240, True)
    await SlaPolicy.create(
        cinema_id=cinema.id, kind="fault", severity="P1", ack_minutes=10, resolve_minutes=45,
        business_hours=True,
    )
    assert await workorders.policy_for(order("fault", "P1")) == (10, 45, True)
    other = await Cinema.create(code="other", name="另一家影城", city="上海")
    assert await workorders.policy_for(WorkOrder(cinema_id=other.id, kind="fault", severity="P1")) == (
        15, 60, False,
    )


async def test_a_reopened_order_gets_a_fresh_warning_and_escalation(
    cinema: Cinema, clock: FakeClock
) -> None:
    clock.set(at(21, 14, 30))
    desk = Desk()
    order = await report(cinema, clock)
    staff01 = Who("staff01", "staff", cinema.id, "李小青")
    order = await workorders.act(order, "acknowledge", staff01, clock.now())
    clock.advance(minutes=24)
    assert await check(order, clock, desk) == "warning"
    clock.advance(minutes=1)
    order = await workorders.act(
        await WorkOrder.get(id=order.id), "resolve", staff01, clock.now(), action_taken="已劝阻"
    )
    clock.advance(minutes=10)
    order = await workorders.act(order, "reopen", Who("oSlaTestAudience000000000001", "audience"), clock.now())
    clock.advance(minutes=24)  # 80 % of the restarted resolve clock
    assert await check(order, clock, desk) == "warning"
    clock.advance(minutes=6)
    assert await check(order, clock, desk) == "escalated"


async def test_pausing_a_late_order_stops_further_escalation(
    cinema: Cinema, clock: FakeClock
) -> None:
    clock.set(at(21, 14, 30))
    order = await report(cinema, clock)
    staff01 = Who("staff01", "staff", cinema.id, "李小青")
    order = await workorders.act(order, "acknowledge", staff01, clock.now())
    clock.advance(minutes=31)  # late (the job was down), then paused for a part
    await workorders.act(await WorkOrder.get(id=order.id), "pause", staff01, clock.now())
    clock.advance(minutes=1)
    assert await check(order, clock, Desk()) is None


# --- the job -------------------------------------------------------------------------------


@pytest.fixture
def replicas(redis: Any, clock: FakeClock) -> tuple[JobContext, JobContext]:
    """Two job runners on the same Redis, as two worker processes would be."""
    return (
        JobContext(clock=clock, locks=LeaderLocks(redis), desk_notify=Desk()),
        JobContext(clock=clock, locks=LeaderLocks(redis), desk_notify=Desk()),
    )


async def test_two_runs_in_one_tick_warn_and_escalate_once(
    cinema: Cinema, clock: FakeClock, replicas: tuple[JobContext, JobContext]
) -> None:
    clock.set(at(21, 14, 30))
    first = await report(cinema, clock)
    clock.advance(minutes=1)
    second = await report(cinema, clock)
    assert (first.assignee, second.assignee) == ("staff01", "staff02")  # round-robin

    clock.advance(minutes=3)  # first at 80 %, second at 60 %
    runs = await asyncio.gather(*(sla_job.check_slas(ctx) for ctx in replicas))
    assert sorted((r.leader, r.warned) for r in runs) == [(False, 0), (True, 1)]
    again = await sla_job.check_slas(replicas[0])  # the same tick once more
    assert (again.checked, again.warned, again.escalated) == (2, 0, 0)

    clock.advance(minutes=1)  # first breached, second at 80 %
    runs = await asyncio.gather(*(sla_job.check_slas(ctx) for ctx in replicas))
    leader = next(r for r in runs if r.leader)
    assert (leader.warned, leader.escalated, leader.failed) == (1, 1, 0)
    again = await sla_job.check_slas(replicas[1])
    assert (again.warned, again.escalated) == (0, 0)

    assert len(await timeline(first, "sla_warning")) == 1
    assert len(await timeline(first, "escalate")) == 1
    assert len(await timeline(second, "sla_warning")) == 1
    sent = [e for ctx in replicas for e in ctx.desk_notify.events()]  # type: ignore[union-attr]
    assert sorted(sent) == [
        ("escalate", "staff02"), ("sla_warning", "staff01"), ("sla_warning", "staff02"),
    ]


async def test_an_order_the_job_cannot_move_does_not_hold_up_the_others(
    cinema: Cinema, clock: FakeClock, replicas: tuple[JobContext, JobContext],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock.set(at(21, 14, 30))
    broken = await report(cinema, clock)
    fine = await report(cinema, clock)
    real_check = workorders.check_sla

    async def flaky(order: WorkOrder, now: datetime, notify: Any = None) -> str | None:
        if order.id == broken.id:
            raise RuntimeError("database hiccup")
        return await real_check(order, now, notify)

    monkeypatch.setattr(workorders, "check_sla", flaky)
    clock.advance(minutes=5)
    run = await sla_job.check_slas(replicas[0])
    assert (run.checked, run.escalated, run.failed) == (2, 1, 1)
    assert len(await timeline(fine, "escalate")) == 1


async def test_without_a_desk_the_job_still_writes_the_timeline(
    cinema: Cinema, clock: FakeClock, redis: Any
) -> None:
    ctx = JobContext(clock=clock, locks=LeaderLocks(redis))
    clock.set(at(21, 14, 30))
    order = await report(cinema, clock)
    clock.advance(minutes=5)
    run = await sla_job.check_slas(ctx)
    assert (run.leader, run.escalated) == (True, 1)
    assert len(await timeline(order, "escalate")) == 1


def test_every_process_schedules_the_sla_job_each_minute(clock: FakeClock) -> None:
    ctx = JobContext(clock=clock, locks=None)  # type: ignore[arg-type]
    for demo_mode in (False, True):
        job = build_scheduler(ctx, demo=demo_mode).get_job(sla_job.JOB_ID)
        assert job is not None and job.trigger.interval == timedelta(seconds=60)


async def test_the_scheduler_inside_the_app_escalates_a_late_complaint(
    make_client: Callable[..., Any], clock: FakeClock
) -> None:
    client = await make_client(run_jobs=True)
    scheduler = client.app[SCHEDULER]
    job = scheduler.get_job(sla_job.JOB_ID)
    cinema = await Cinema.get(code=demo.DEMO_CINEMA_CODE)
    clock.set(at(21, 14, 30))
    order = await report(cinema, clock)

    done: asyncio.Future[JobExecutionEvent] = asyncio.get_running_loop().create_future()

    def finished(event: JobExecutionEvent) -> None:
        if event.job_id == sla_job.JOB_ID and not done.done():
            done.set_result(event)

    scheduler.add_listener(finished, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    clock.advance(minutes=5)
    job.modify(next_run_time=datetime.now(SHANGHAI))  # run now, not in a minute

    event = await asyncio.wait_for(done, 10)

    assert event.exception is None, event.traceback
    assert event.retval.escalated == 1
    assert (await WorkOrder.get(id=order.id)).assignee == "staff02"
    assert await client.app[REDIS].exists(f"cinebot:leader:{sla_job.JOB_ID}") == 0


async def test_the_job_checks_every_active_order_past_the_first_page(
    cinema: Cinema, clock: FakeClock, replicas: tuple[JobContext, JobContext],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sla_job, "PAGE", 2)
    clock.set(at(21, 14, 30))
    orders = [await report(cinema, clock) for _ in range(5)]
    clock.advance(minutes=4)  # 80 %: every one of them is due a warning
    run = await sla_job.check_slas(replicas[0])
    assert (run.checked, run.warned) == (5, 5)
    for order in orders:
        assert [e.action for e in await timeline(order, "sla_warning")] == ["sla_warning"]
