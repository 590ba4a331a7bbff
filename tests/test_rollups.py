"""The console's daily rollups stay equal to their raw rows.

Every story drives the real domain services (buying, refunding, changing, checking in,
cancelling a show; answering and editing ratings; opening, acknowledging, resolving and
escalating work orders; telemetry minutes and health snapshots), then compares each rollup
with a recomputation written here straight from the raw rows (the oracle), and with what
``rollups.rebuild`` makes of the same rows.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from domain import feedback, projectors, rollups, ticketing, workorders
from domain.catalog import Showtime
from domain.cinemas import Hall
from domain.days import business_day
from domain.devices import Projector, TelemetryMinute
from domain.feedback import FeedbackResponse, TextReading
from domain.orders import Ticket
from domain.rollups import DeviceDay, FeedbackDay, ServiceDay, ShowSales
from domain.seating import SeatPlan
from domain.telemetry_minutes import record_minutes
from domain.touchpoints import Touchpoint
from domain.workorders import Kind, Who, WorkOrder, WorkOrderEvent
from tests.test_cli import cli_env  # noqa: F401  (fixture)
from tests.test_ticketing import World, seats_redis, world  # noqa: F401  (fixtures)

ON_POSTGRES = (os.environ.get("CINEBOT_TEST_DATABASE_URL") or "").startswith("postgres")


# --- the oracle: each rollup recomputed from raw rows, plainly --------------------------------


async def sales_oracle() -> dict[int, dict[str, Any]]:
    expected: dict[int, dict[str, Any]] = {}
    for show in await Showtime.all():
        tickets = await Ticket.filter(showtime_id=show.id)
        if not tickets and show.cancelled_at is None:
            continue
        hall = await Hall.get(id=show.hall_id)  # type: ignore[attr-defined]
        standing = [t for t in tickets if t.state in ("issued", "checked_in")]
        refunded = [t for t in tickets if t.state == "refunded"]
        expected[show.id] = {
            "cinema_id": show.cinema_id, "day": business_day(show.starts_at),  # type: ignore[attr-defined]
            "film_id": show.film_id, "hall_id": show.hall_id,  # type: ignore[attr-defined]
            "capacity": SeatPlan.from_layout(hall.layout).capacity,
            "sold": len(standing), "revenue_fen": sum(t.price_fen for t in standing),
            "orders": len({t.order_id for t in standing}),  # type: ignore[attr-defined]
            "refunded": len(refunded), "refunded_fen": sum(t.price_fen for t in refunded),
            "changed": sum(t.state == "changed" for t in tickets),
            "checked_in": sum(t.state == "checked_in" for t in tickets),
        }
    return expected


async def sales_rows() -> dict[int, dict[str, Any]]:
    fields = ("cinema_id", "day", "film_id", "hall_id", "capacity", *rollups.SALES_FIELDS)
    return {r.showtime_id: {f: getattr(r, f) for f in fields} for r in await ShowSales.all()}


async def feedback_oracle() -> dict[tuple[int, date, int, str], dict[str, Any]]:
    buckets: dict[tuple[int, date, int, str], list[FeedbackResponse]] = defaultdict(list)
    for r in await FeedbackResponse.all().prefetch_related("touchpoint"):
        hall = r.hall or r.touchpoint.hall or ""
        buckets[(r.cinema_id, r.visit_day, r.film_id or 0, hall)].append(r)
    expected = {}
    for key, rows in buckets.items():
        commented = [r for r in rows if r.comment]
        expected[key] = {
            "responses": sum(r.stars is not None or r.nps is not None for r in rows),
            "stars": [sum(r.stars == s for r in rows) for s in range(1, 6)],
            "nps": [sum(r.nps == s for r in rows) for s in range(11)],
            "comments": len(commented),
            "negative": sum(r.sentiment == "neg" for r in commented),
            "categories": dict(Counter(r.category for r in commented if r.category)),
        }
    return expected


async def feedback_rows() -> dict[tuple[int, date, int, str], dict[str, Any]]:
    fields = ("responses", "stars", "nps", "comments", "negative", "categories")
    return {
        (r.cinema_id, r.day, r.film_id, r.hall): {f: getattr(r, f) for f in fields}
        for r in await FeedbackDay.all()
    }


async def service_oracle() -> dict[tuple[int, date, str, str, str], dict[str, Any]]:
    buckets: dict[tuple[int, date, str, str, str], list[WorkOrder]] = defaultdict(list)
    for o in await WorkOrder.all().order_by("id"):
        buckets[(o.cinema_id, business_day(o.created_at), str(o.kind), o.team, o.category)].append(o)
    expected = {}
    for key, orders in buckets.items():
        acks, resolves, breaches = [], [], []
        breached = 0
        for o in orders:
            events = await WorkOrderEvent.filter(work_order_id=o.id).order_by("at", "id")
            ack = [e for e in events if e.action == "acknowledge"]
            res = [e for e in events if e.action == "resolve"]
            esc = [e for e in events if e.action == "escalate"]
            if ack:
                acks.append((ack[0].at - o.created_at).total_seconds())
            if o.state in ("resolved", "closed") and res:
                resolves.append((res[-1].at - o.created_at).total_seconds())
            breached += bool(esc)
            breaches += [(e.at, e.id, {"ref": o.ref, "clock": e.detail["clock"],
                                       "held_by": e.detail["assignee_before"]}) for e in esc]
        expected[key] = {
            "opened": len(orders),
            "acknowledged": len(acks),
            "resolved": sum(o.state in ("resolved", "closed") for o in orders),
            "breached": breached,
            "ack_seconds": sorted(acks),
            "resolve_seconds": sorted(resolves),
            "breaches": [b for _, _, b in sorted(breaches, key=lambda b: (b[0], b[1]))],
        }
    return expected


async def service_rows() -> dict[tuple[int, date, str, str, str], dict[str, Any]]:
    fields = ("opened", "acknowledged", "resolved", "breached", "ack_seconds", "resolve_seconds", "breaches")
    return {
        (r.cinema_id, r.day, r.kind, r.team, r.category): {f: getattr(r, f) for f in fields}
        for r in await ServiceDay.all()
    }


async def device_oracle() -> dict[tuple[str, date, str], dict[str, Any]]:
    groups: dict[tuple[str, date, str], list[TelemetryMinute]] = defaultdict(list)
    for m in await TelemetryMinute.all().order_by("minute"):
        groups[(m.device_id, business_day(m.minute), m.metric)].append(m)
    return {
        key: {
            "n": sum(m.n for m in ms), "vmin": min(m.vmin for m in ms), "vmax": max(m.vmax for m in ms),
            "vsum": pytest.approx(sum(m.vsum for m in ms)), "vlast": pytest.approx(ms[-1].vsum / ms[-1].n),
        }
        for key, ms in groups.items()
    }


async def device_rows(metric_not: str = rollups.HEALTH) -> dict[tuple[str, date, str], dict[str, Any]]:
    return {
        (r.device_id, r.day, r.metric): {"n": r.n, "vmin": r.vmin, "vmax": r.vmax, "vsum": r.vsum, "vlast": r.vlast}
        for r in await DeviceDay.exclude(metric=metric_not)
    }


async def assert_rebuild_gives_the_same(read: Any) -> None:
    before = await read()
    written = await rollups.rebuild()
    assert await read() == before
    assert set(written) == {"show_sales", "feedback_day", "service_day", "device_day"}


# --- sales --------------------------------------------------------------------------------------


async def test_sales_of_each_show_follow_every_kind_of_ticket_change(world: World) -> None:
    evening = await world.show(price=4000)
    later = await world.show(starts=world.local(21))
    doomed = await world.show(starts=world.local(20))

    kept = await world.buy(evening, "fan-a", count=2)
    refunded = await world.buy(evening, "fan-b", count=3)
    moved = await world.buy(evening, "fan-c", count=1)
    await world.buy(doomed, "fan-d", count=2)
    assert (await ShowSales.get(showtime_id=evening.id)).sold == 6
    assert await sales_rows() == await sales_oracle()

    await world.refund(refunded)
    # 改签 to the 21:00 show (same film): the ticket leaves one show and stands in the other.
    outcome = await world.change(moved, later)
    assert outcome.done or outcome.due_fen > 0
    if not outcome.done:
        await world.pay(outcome.order, amount=outcome.due_fen)
    world.clock.set(evening.starts_at - timedelta(minutes=30))
    ticket = await Ticket.filter(order_id=kept.id).first()
    assert ticket is not None
    scanned = await ticketing.check_in(ticket.secret, cinema_id=world.cinema.id, staff="gate", now=world.now)
    assert scanned.ok, scanned.message
    await ticketing.cancel_showtime(world.inventory, world.bank, doomed, by="manager", now=world.now)

    rows = await sales_rows()
    assert rows == await sales_oracle()
    ev = rows[evening.id]
    assert (ev["sold"], ev["refunded"], ev["changed"], ev["checked_in"], ev["orders"]) == (2, 3, 1, 1, 1)
    assert rows[later.id]["sold"] == 1
    assert rows[doomed.id]["sold"] == 0 and rows[doomed.id]["refunded"] == 2
    await assert_rebuild_gives_the_same(sales_rows)


@pytest.mark.skipif(not ON_POSTGRES, reason="row locks between two connections: PostgreSQL")
async def test_two_sales_of_one_show_at_once_both_count(world: World) -> None:
    """Two transactions each add a ticket and refresh the show: the second waits on the
    bucket's lock and its aggregate sees the first one's committed ticket."""
    show = await world.show()
    orders = [await world.hold(show, f"rush-{i}", count=1) for i in range(2)]
    first_locked, go_on = asyncio.Event(), asyncio.Event()

    async def sale(order: Any, seat: str, first: bool) -> None:
        from tortoise.transactions import in_transaction

        async with in_transaction() as conn:
            await Ticket.create(order=order, showtime=show, seat=seat, price_fen=4500,
                                secret=f"s{order.id}x{seat}", using_db=conn)
            if not first:
                await first_locked.wait()
            await rollups.refresh_show(show.id, conn)
            if first:
                first_locked.set()
                await asyncio.sleep(0.2)  # the other one is now blocked on the row lock
                go_on.set()

    await asyncio.gather(sale(orders[0], "1-1", True), sale(orders[1], "1-2", False))
    assert go_on.is_set()
    assert (await ShowSales.get(showtime_id=show.id)).sold == 2
    # And through the real payment path, many at once.
    many = [await world.hold(show, f"crowd-{i}", count=1) for i in range(6)]
    for o in many:
        await ticketing.checkout(o, now=world.now)
    results = await asyncio.gather(*(world.pay(o) for o in many))
    assert all(r.outcome == "issued" for r in results)
    assert (await ShowSales.get(showtime_id=show.id)).sold == 8
    assert await sales_rows() == await sales_oracle()


# --- feedback -----------------------------------------------------------------------------------


async def test_feedback_days_follow_answers_edits_and_a_visit_found_later(world: World) -> None:
    show = await world.show()
    order = await world.buy(show, "viewer-1", count=1)
    touchpoints = await Touchpoint.filter(cinema_id=world.cinema.id).order_by("id")
    exit_tp = next(t for t in touchpoints if t.hall) if any(t.hall for t in touchpoints) else touchpoints[0]
    lobby = next(t for t in touchpoints if not t.hall)
    visit = await feedback.visit_of_show(show.id)
    now = world.now

    happy, _ = await feedback.start_response(touchpoint=lobby, visitor="viewer-1", now=now, channel="chat", visit=visit)
    await feedback.answer(happy, now, stars=5, nps=10)
    grumpy, _ = await feedback.start_response(touchpoint=exit_tp, visitor="viewer-2", now=now, channel="h5")
    await feedback.answer(grumpy, now, stars=2, nps=3, comment="座椅坏了",
                          reading=TextReading("seat", "neg"))
    quiet, _ = await feedback.start_response(touchpoint=lobby, visitor="viewer-3", now=now, channel="h5")
    await feedback.answer(quiet, now, comment="还行", reading=TextReading("other", "neu"))
    assert await feedback_rows() == await feedback_oracle()

    # An edit: stars change, the comment goes.
    await feedback.answer(grumpy, now, stars=4, comment="")
    # viewer-3 bought a ticket after scanning: the response moves to the show's film and hall.
    await world.buy(show, "viewer-3", count=1)
    moved, created = await feedback.start_response(
        touchpoint=lobby, visitor="viewer-3", now=now, channel="h5", visit=visit
    )
    assert not created and moved.film_id == show.film_id  # type: ignore[attr-defined]
    rows = await feedback_rows()
    assert rows == await feedback_oracle()
    assert order is not None
    hall = (await Hall.get(id=show.hall_id)).name  # type: ignore[attr-defined]
    bucket = rows[(world.cinema.id, business_day(now), show.film_id, hall)]  # type: ignore[attr-defined]
    assert bucket["responses"] == 1 and bucket["stars"] == [0, 0, 0, 0, 1] and bucket["comments"] == 1
    assert (world.cinema.id, business_day(now), 0, lobby.hall or "") not in rows  # viewer-3 left it
    await assert_rebuild_gives_the_same(feedback_rows)


# --- service ------------------------------------------------------------------------------------


async def test_service_days_follow_opening_acknowledging_resolving_and_breaches(world: World) -> None:
    cinema = world.cinema.id
    reporter = Who("guest-1", "audience", cinema)
    now = world.now
    a, _ = await workorders.open_order(cinema_id=cinema, kind=Kind.FAULT, category="seat",
                                       summary="5排3座坏了", reporter=reporter, now=now)
    b, _ = await workorders.open_order(cinema_id=cinema, kind=Kind.FAULT, category="seat",
                                       summary="空调太冷", reporter=reporter, now=now + timedelta(minutes=1))
    c, _ = await workorders.open_order(cinema_id=cinema, kind=Kind.COMPLAINT, category="noise",
                                       summary="有人打电话", reporter=reporter, now=now + timedelta(minutes=2))
    assert await service_rows() == await service_oracle()

    holder = Who(a.assignee or "system", "system", cinema)
    await workorders.act(a, "acknowledge", holder, now + timedelta(minutes=4))
    await workorders.act(a, "resolve", holder, now + timedelta(minutes=30), action_taken="换了座椅")
    # b breaches its acknowledge clock and is handed over.
    late = now + timedelta(hours=5)
    ack_clock, _ = await workorders.sla(b, late)
    assert ack_clock.breached
    held_before = b.assignee
    await workorders.escalate(b, late, ack_clock, to_manager=False)
    # c: resolved, reopened, resolved again: the last resolve counts.
    await workorders.act(c, "resolve", holder, now + timedelta(minutes=10), action_taken="已劝阻")
    await workorders.act(c, "reopen", holder, now + timedelta(minutes=20))
    await workorders.act(c, "resolve", holder, now + timedelta(minutes=40), action_taken="再次劝阻")

    rows = await service_rows()
    assert rows == await service_oracle()
    fault = rows[(cinema, business_day(now), "fault", a.team, "seat")]
    assert fault["opened"] == 2 and fault["acknowledged"] == 1 and fault["resolved"] == 1
    assert fault["ack_seconds"] == [240.0] and fault["resolve_seconds"] == [1800.0]
    assert fault["breached"] == 1
    assert fault["breaches"] == [{"ref": b.ref, "clock": ack_clock.name, "held_by": held_before}]
    noise = rows[(cinema, business_day(now), "complaint", c.team, "noise")]
    assert noise["resolve_seconds"] == [2280.0]  # 40 minutes after c opened at +2
    await assert_rebuild_gives_the_same(service_rows)


async def test_a_change_of_team_moves_the_order_between_buckets(world: World) -> None:
    cinema = world.cinema.id
    order, _ = await workorders.open_order(
        cinema_id=cinema, kind=Kind.TASK, category="other", summary="搬椅子",
        reporter=Who("m", "manager", cinema), now=world.now, team="floor",
    )
    before = rollups.service_key(order)
    await WorkOrder.filter(id=order.id).update(team="engineering")
    order.team = "engineering"
    await rollups.refresh_order(order, before=before)
    rows = await service_rows()
    assert rows == await service_oracle()
    assert before not in rows
    assert rows[rollups.service_key(order)]["opened"] == 1


# --- devices ------------------------------------------------------------------------------------


@dataclass
class Minute:
    cinema_id: int
    device_id: str
    minute: datetime
    metric: str
    n: int
    vmin: float
    vmax: float
    vsum: float


async def test_device_days_merge_minutes_as_they_come_and_health_snapshots(world: World) -> None:
    projector = await Projector.filter(cinema_id=world.cinema.id).first()
    assert projector is not None
    dev, cid = projector.device_id, world.cinema.id
    start = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)  # 02:00 in Shanghai: still the 20th's day

    def m(minutes: int, metric: str, values: list[float]) -> Minute:
        return Minute(cid, dev, start + timedelta(minutes=minutes), metric, len(values), min(values),
                      max(values), sum(values))

    await record_minutes([m(0, "temperature_c", [40, 42]), m(1, "temperature_c", [44]),
                          m(0, "brightness_pct", [90])])
    # The next business day begins at 19:00 UTC; then a late part of an earlier minute.
    await record_minutes([m(61, "temperature_c", [50, 52]), m(1, "temperature_c", [46])])
    await record_minutes([m(62, "temperature_c", [51])])
    rows = await device_rows()
    assert rows == await device_oracle()
    first = rows[(dev, date(2026, 11, 20), "temperature_c")]
    assert (first["n"], first["vmin"], first["vmax"]) == (4, 40, 46)
    assert first["vlast"] == pytest.approx(45.0)  # minute 1, both parts
    assert rows[(dev, date(2026, 11, 21), "temperature_c")]["vlast"] == pytest.approx(51.0)

    await projectors.save_health([(dev, 80, {"score": 80})], start + timedelta(hours=2))
    await projectors.save_health([(dev, 60, {"score": 60})], start + timedelta(hours=3))
    health = await DeviceDay.get(device_id=dev, metric=rollups.HEALTH)
    assert (health.n, health.vmin, health.vmax, health.vsum, health.vlast) == (2, 60, 80, 140, 60)
    assert health.day == business_day(start + timedelta(hours=2))

    await assert_rebuild_gives_the_same(device_rows)
    assert (await DeviceDay.get(device_id=dev, metric=rollups.HEALTH)).vlast == 60  # kept


async def test_rebuild_of_one_cinema_leaves_the_others(world: World) -> None:
    show = await world.show()
    await world.buy(show, "fan-z", count=2)
    await ShowSales.create(showtime_id=999_999, cinema_id=world.cinema.id + 1, day=date(2026, 1, 1),
                           film_id=1, hall_id=1, starts_at=world.now, capacity=10, sold=3)
    await ShowSales.filter(showtime_id=show.id).update(sold=99)  # drifted
    ticks: list[tuple[int, int]] = []
    await rollups.rebuild(world.cinema.id, progress=lambda done, total: ticks.append((done, total)))
    assert (await ShowSales.get(showtime_id=show.id)).sold == 2
    assert (await ShowSales.get(showtime_id=999_999)).sold == 3
    assert ticks[0] == (0, 4) and ticks[-1] == (4, 4)


# --- the command line ---------------------------------------------------------------------------


def test_cinebot_rollups_rebuild_prints_the_rows_it_wrote(
    cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.cli import main
    from domain.demo import DEMO_CINEMA_CODE

    assert main(["demo"]) == 0
    capsys.readouterr()
    assert main(["rollups", "rebuild", "--cinema", DEMO_CINEMA_CODE]) == 0
    out = capsys.readouterr().out
    for name in ("show_sales", "feedback_day", "service_day", "device_day"):
        assert name in out
    assert main(["rollups", "rebuild", "--cinema", "NO-SUCH"]) == 1
    assert "没有影城 NO-SUCH" in capsys.readouterr().err
