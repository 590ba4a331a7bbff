"""The figures a manager reads: every section on small, explicit data whose answers are
worked out by hand here; the digest against the same weekday a week earlier; the rows
behind the figures; and the number of queries each section takes."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from tortoise import connections

from domain import reports as rp
from domain.catalog import Film, Showtime
from domain.cinemas import Cinema, Hall
from domain.days import SHANGHAI
from domain.devices import AlertRecord, Projector, TelemetryRule
from domain.feedback import FeedbackResponse, nps_of, wilson
from domain.orders import Order, OrderState, Ticket, TicketState
from domain.rollups import DeviceDay, FeedbackDay, ServiceDay, ShowSales
from domain.touchpoints import Touchpoint, TouchpointKind
from domain.workorders import Kind, State, WorkOrder

NOW = datetime(2026, 11, 21, 2, 30, tzinfo=UTC)  # Saturday 10:30 in Shanghai: business day 11-21
DAY = date(2026, 11, 20)  # Friday, "yesterday"
WEEK_AGO = date(2026, 11, 13)


def local(day: date, hh: int, mm: int = 0, next_day: bool = False) -> datetime:
    d = day + timedelta(days=1) if next_day else day
    return datetime(d.year, d.month, d.day, hh, mm, tzinfo=SHANGHAI).astimezone(UTC)


def mask(text: str) -> str:  # what bot.infra.logs.mask_phone does, for this test's one number
    return text.replace("13812345678", "138****5678")


@dataclass
class World:
    c1: Cinema
    c2: Cinema
    h1: Hall
    h2: Hall
    f1: Film
    f2: Film
    shows: dict[str, Showtime]


async def _show(cinema: Cinema, hall: Hall, film: Film, starts_at: datetime, cancelled: bool = False) -> Showtime:
    return await Showtime.create(
        cinema=cinema, hall=hall, film=film, starts_at=starts_at, ends_at=starts_at + timedelta(hours=2),
        base_price_fen=1000, cancelled_at=starts_at - timedelta(days=1) if cancelled else None,
    )


async def _sales(show: Showtime, capacity: int, sold: int, revenue: int, orders: int, refunded: int = 0,
                 refunded_fen: int = 0, changed: int = 0, checked_in: int = 0, day: date | None = None) -> None:
    await ShowSales.create(
        showtime_id=show.id, cinema_id=show.cinema_id, day=day or rp.business_day(show.starts_at),  # type: ignore[attr-defined]
        film_id=show.film_id, hall_id=show.hall_id, starts_at=show.starts_at,  # type: ignore[attr-defined]
        capacity=capacity, sold=sold, revenue_fen=revenue, orders=orders, refunded=refunded,
        refunded_fen=refunded_fen, changed=changed, checked_in=checked_in,
    )


@pytest.fixture
async def world(db: None) -> World:
    c1 = await Cinema.create(code="C1", name="一号影城")
    c2 = await Cinema.create(code="C2", name="二号影城")
    h1 = await Hall.create(cinema=c1, name="1号厅", layout=["SSSS", "SSSX"])  # 7 seats for sale
    h2 = await Hall.create(cinema=c1, name="2号厅", layout=["SSSSS"])  # 5
    h9 = await Hall.create(cinema=c2, name="1号厅", layout=["SSSSSSSSS"])
    f1 = await Film.create(title="甲片", duration_min=100)
    f2 = await Film.create(title="乙片", duration_min=100)
    shows = {
        "s1": await _show(c1, h1, f1, local(DAY, 19)),
        "s2": await _show(c1, h2, f2, local(DAY, 1, 30, next_day=True)),  # 01:30 belongs to the 20th
        "s3": await _show(c1, h2, f1, local(DAY, 14)),  # nothing sold: no rollup row, still seats
        "s4": await _show(c1, h1, f2, local(DAY, 15), cancelled=True),
        "s5": await _show(c1, h1, f1, local(WEEK_AGO, 19)),
        "s6": await _show(c1, h1, f1, local(DAY + timedelta(days=2), 20)),  # presale, the 22nd
        "s7": await _show(c1, h1, f2, local(DAY + timedelta(days=1), 20)),  # today: not presale
        "x1": await _show(c2, h9, f1, local(DAY, 19)),  # another cinema
    }
    s = shows
    await _sales(s["s1"], 7, 5, 5000, 2, refunded=1, refunded_fen=1000, changed=1, checked_in=3)
    await _sales(s["s2"], 5, 2, 3000, 1)
    await _sales(s["s4"], 7, 0, 0, 0, refunded=2, refunded_fen=2400)
    await _sales(s["s5"], 7, 4, 4000, 2)
    await _sales(s["s6"], 7, 3, 3600, 1)
    await _sales(s["s7"], 7, 1, 1200, 1)
    await _sales(s["x1"], 9, 9, 9000, 3)
    return World(c1, c2, h1, h2, f1, f2, shows)


def one(world: World, start: date = DAY, end: date = DAY) -> rp.Period:
    return rp.Period((world.c1.id,), start, end)


# --- the period --------------------------------------------------------------------------------------


def test_ranges_are_business_days_ending_today() -> None:
    today = date(2026, 11, 21)
    assert rp.today(NOW) == today
    assert rp.today(local(today, 2, 59, next_day=True)) == today  # the day ends at 03:00
    assert rp.period_for("today", today) == (today, today)
    assert rp.period_for("7d", today) == (date(2026, 11, 15), today)
    assert rp.period_for("30d", today) == (date(2026, 10, 23), today)
    assert rp.period_for("custom", today, date(2026, 1, 1), date(2026, 1, 31)) == (date(2026, 1, 1), date(2026, 1, 31))
    assert rp.period_for("custom", today, date(2026, 1, 1)) == (date(2026, 1, 1), date(2026, 1, 1))
    for bad in (("week", None, None), ("custom", None, None), ("custom", date(2026, 2, 1), date(2026, 1, 1)),
                ("custom", date(2024, 1, 1), date(2026, 1, 1))):
        with pytest.raises(rp.ReportError):
            rp.period_for(bad[0], today, bad[1], bad[2])
    assert rp.Period((1,), date(2026, 1, 30), date(2026, 2, 1)).days == (
        date(2026, 1, 30), date(2026, 1, 31), date(2026, 2, 1))


def test_percentiles_are_nearest_rank_over_merged_sorted_lists() -> None:
    d = rp.durations([[60, 300], [120], []])
    assert (d.n, d.median, d.p90) == (3, 120, 300)
    d = rp.durations([[10.0, 20.0, 30.0, 40.0], [50, 60, 70, 80, 90, 100]])
    assert (d.n, d.median, d.p90) == (10, 55.0, 90)  # ceil(0.9 × 10) = the 9th
    assert rp.durations([]) == rp.Durations(0, None, None)


# --- sales -------------------------------------------------------------------------------------------


async def test_sales_of_a_day_count_every_show_and_leave_out_other_cinemas(world: World) -> None:
    s = world.shows
    sales = await rp.sales(one(world), NOW)
    # s1 (7 seats, 5 sold), s2 (5, 2), s3 (5, none sold); s4 cancelled: no seats, its refunds count.
    assert (sales.shows, sales.capacity, sales.tickets, sales.revenue_fen, sales.orders) == (3, 17, 7, 8000, 3)
    assert (sales.refunds, sales.refunded_fen, sales.changes, sales.checked_in) == (3, 3400, 1, 3)
    assert sales.occupancy == pytest.approx(7 / 17)
    assert [(g.key, g.shows, g.tickets, g.capacity) for g in sales.by_day] == [("2026-11-20", 3, 7, 17)]
    assert [(g.label, g.cinema_id, g.shows, g.capacity, g.tickets, g.refunds, g.occupancy) for g in sales.by_hall] == [
        ("1号厅", world.c1.id, 1, 7, 5, 3, pytest.approx(5 / 7)),
        ("2号厅", world.c1.id, 2, 10, 2, 0, pytest.approx(0.2)),
    ]
    assert [(g.key, g.label, g.shows, g.capacity, g.tickets, g.revenue_fen) for g in sales.by_film] == [
        (str(world.f1.id), "甲片", 2, 12, 5, 5000), (str(world.f2.id), "乙片", 1, 5, 2, 3000),
    ]
    assert [(r.showtime_id, r.film, r.hall, r.capacity, r.tickets, r.cancelled) for r in sales.per_show] == [
        (s["s3"].id, "甲片", "2号厅", 5, 0, False), (s["s4"].id, "乙片", "1号厅", 0, 0, True),
        (s["s1"].id, "甲片", "1号厅", 7, 5, False), (s["s2"].id, "乙片", "2号厅", 5, 2, False),
    ]
    assert sales.per_show[2].occupancy == pytest.approx(5 / 7) and sales.per_show[1].occupancy is None
    assert all(r.day == DAY for r in sales.per_show)
    # Friday (weekday 4) at 01:00 (the late show), 14:00 and 19:00; the cancelled show is no cell.
    assert [(c.weekday, c.hour, c.shows, c.tickets, c.capacity) for c in sales.heatmap] == [
        (4, 1, 1, 2, 5), (4, 14, 1, 0, 5), (4, 19, 1, 5, 7),
    ]
    assert [g.key for g in sales.presale] == [(DAY + timedelta(days=i)).isoformat() for i in range(2, 9)]
    assert (sales.presale[0].shows, sales.presale[0].tickets, sales.presale[0].revenue_fen,
            sales.presale[0].occupancy) == (1, 3, 3600, pytest.approx(3 / 7))
    assert sum(g.tickets for g in sales.presale) == 3


async def test_a_period_with_no_shows_has_no_occupancy(world: World) -> None:
    sales = await rp.sales(one(world, date(2026, 1, 1), date(2026, 1, 2)), NOW)
    assert (sales.shows, sales.tickets, sales.occupancy) == (0, 0, None)
    assert [(g.key, g.occupancy) for g in sales.by_day] == [("2026-01-01", None), ("2026-01-02", None)]


async def test_the_tickets_behind_a_figure(world: World) -> None:
    s = world.shows
    n = 0

    async def ticket(show: Showtime, seat: str, state: TicketState) -> None:
        nonlocal n
        n += 1
        order = await Order.create(
            no=f"NO{n}", cinema_id=show.cinema_id, showtime=show, openid=f"o{n}", state=OrderState.ISSUED,  # type: ignore[attr-defined]
            hold_id=f"h{n}", seats=[seat], quote=[], amount_fen=1000, paid_fen=1000, expires_at=NOW,
            created_at=NOW, paid_at=NOW, channel="chat",
        )
        await Ticket.create(order=order, showtime=show, seat=seat, price_fen=1000, secret=f"sec{n}", state=state,
                            active=True if state in (TicketState.ISSUED, TicketState.CHECKED_IN) else None)

    await ticket(s["s1"], "1-1", TicketState.ISSUED)
    await ticket(s["s1"], "1-2", TicketState.CHECKED_IN)
    await ticket(s["s1"], "1-3", TicketState.REFUNDED)
    await ticket(s["s2"], "1-1", TicketState.ISSUED)
    await ticket(s["s5"], "1-1", TicketState.ISSUED)  # a week earlier
    await ticket(s["x1"], "1-1", TicketState.ISSUED)  # another cinema
    p = one(world)
    page = await rp.tickets(p)
    assert [(t.showtime_id, t.seat, t.state) for t in page.rows] == [
        (s["s1"].id, "1-1", "issued"), (s["s1"].id, "1-2", "checked_in"), (s["s1"].id, "1-3", "refunded"),
        (s["s2"].id, "1-1", "issued"),
    ]
    first = page.rows[0]
    assert (first.order_no, first.film, first.hall, first.price_fen, first.channel, first.cinema_id) == (
        "NO1", "甲片", "1号厅", 1000, "chat", world.c1.id)
    assert len((await rp.tickets(p, state="standing")).rows) == 3
    assert [t.seat for t in (await rp.tickets(p, showtime_id=s["s2"].id)).rows] == ["1-1"]
    assert [t.showtime_id for t in (await rp.tickets(p, hall_id=world.h2.id)).rows] == [s["s2"].id]
    assert len((await rp.tickets(p, film_id=world.f1.id)).rows) == 3
    assert (await rp.tickets(p, day=WEEK_AGO)).rows == ()  # outside the period
    two = await rp.tickets(p, limit=2)
    assert len(two.rows) == 2 and two.more
    rest = await rp.tickets(p, limit=2, offset=2)
    assert [t.seat for t in rest.rows] == ["1-3", "1-1"] and not rest.more


async def test_the_tickets_of_a_heatmap_cell_by_weekday_and_local_start_hour(world: World) -> None:
    s = world.shows
    extra = {
        "late": await _show(world.c1, world.h2, world.f2, local(WEEK_AGO, 1, 30, next_day=True)),  # Sat 01:30
        "sat19": await _show(world.c1, world.h2, world.f2, local(WEEK_AGO + timedelta(days=1), 19, 45)),
    }
    shows = [s["s1"], s["s2"], s["s3"], s["s5"], s["x1"], *extra.values()]
    for i, show in enumerate(shows):
        for j in range(2):
            order = await Order.create(
                no=f"H{i}{j}", cinema_id=show.cinema_id, showtime=show, openid=f"o{i}", state=OrderState.ISSUED,  # type: ignore[attr-defined]
                hold_id=f"h{i}{j}", seats=[f"1-{j + 1}"], quote=[], amount_fen=1000, paid_fen=1000,
                expires_at=NOW, created_at=NOW, paid_at=NOW,
            )
            await Ticket.create(order=order, showtime=show, seat=f"1-{j + 1}", price_fen=1000, secret=f"h{i}{j}",
                                state=TicketState.ISSUED, active=True)
    p = one(world, WEEK_AGO, DAY)

    def cell(show: Showtime) -> tuple[int, int]:
        # Worked out here from the show's start, as a person reads a timetable: a show after
        # midnight but before 03:00 belongs to the evening before (its weekday), at its own hour.
        at = show.starts_at.astimezone(SHANGHAI)
        evening = (at - timedelta(days=1)).date() if at.hour < 3 else at.date()
        return evening.weekday(), at.hour

    in_period = [x for x in shows if x.cinema_id == world.c1.id]  # type: ignore[attr-defined]
    assert {cell(x) for x in in_period} == {(4, 19), (4, 1), (4, 14), (5, 19)}  # Fri 19/01/14, Sat 19
    heat = [(c.weekday, c.hour) for c in (await rp.sales(p, NOW)).heatmap if c.tickets]
    assert heat
    for weekday, hour in heat:
        got = await rp.tickets(p, weekday=weekday, hour=hour, state="standing", limit=200)
        want = sorted(x.id for x in in_period if cell(x) == (weekday, hour))
        assert sorted({t.showtime_id for t in got.rows}) == want, (weekday, hour)
        assert len(got.rows) == 2 * len(want)
    fridays = await rp.tickets(p, weekday=4, hour=19, limit=200)  # s1 on the 20th and s5 on the 13th
    assert sorted({t.showtime_id for t in fridays.rows}) == sorted([s["s1"].id, s["s5"].id])
    late = await rp.tickets(p, weekday=4, hour=1, limit=200)  # 01:30 on Saturdays: Friday evenings' shows
    assert sorted({t.showtime_id for t in late.rows}) == sorted([s["s2"].id, extra["late"].id])
    assert [t.showtime_id for t in (await rp.tickets(p, weekday=5, limit=200)).rows] == [extra["sat19"].id] * 2
    assert len((await rp.tickets(p, hour=14, limit=200)).rows) == 2
    assert (await rp.tickets(p, weekday=0, hour=19)).rows == ()
    assert (await rp.tickets(one(world), weekday=5, hour=19)).rows == ()  # the 20th is a Friday
    assert (await rp.tickets(p, weekday=4, hour=19, day=WEEK_AGO)).rows[0].showtime_id == s["s5"].id
    for bad in ({"weekday": 7}, {"hour": 24}, {"hour": -1}):
        with pytest.raises(rp.ReportError):
            await rp.tickets(p, **bad)


# --- experience --------------------------------------------------------------------------------------


async def _feedback_days(world: World) -> None:
    c = world.c1.id
    # stars 2, 4, 5, 5 and NPS 10, 9, 6, 8
    await FeedbackDay.create(cinema_id=c, day=DAY, film_id=world.f1.id, hall="1号厅", responses=4,
                             stars=[0, 1, 0, 1, 2], nps=[0, 0, 0, 0, 0, 0, 1, 0, 1, 1, 1], comments=2, negative=1,
                             categories={"sound": 1, "seat": 1})
    # stars 1, 3, 5 and NPS 0, 7, 10; no film or hall known
    await FeedbackDay.create(cinema_id=c, day=DAY, film_id=0, hall="", responses=3, stars=[1, 0, 1, 0, 1],
                             nps=[1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1], comments=1, negative=1, categories={"sound": 1})
    await FeedbackDay.create(cinema_id=c, day=DAY - timedelta(days=1), film_id=world.f2.id, hall="2号厅",
                             responses=1, stars=[0, 0, 0, 0, 1], nps=[0] * 9 + [1, 0])
    await FeedbackDay.create(cinema_id=world.c2.id, day=DAY, film_id=world.f1.id, hall="1号厅", responses=5,
                             stars=[5, 0, 0, 0, 0], nps=[5] + [0] * 10)


async def _service_days(world: World) -> None:
    c = world.c1.id
    await ServiceDay.create(cinema_id=c, day=DAY, kind="complaint", team="floor", category="sound", opened=2,
                            acknowledged=2, resolved=1, breached=1, ack_seconds=[60, 300], resolve_seconds=[1200],
                            breaches=[{"ref": "WAAA1", "clock": "acknowledge", "held_by": "zhang"}])
    await ServiceDay.create(cinema_id=c, day=DAY, kind="fault", team="engineering", category="picture", opened=1,
                            acknowledged=1, resolved=1, ack_seconds=[120], resolve_seconds=[3600])
    await ServiceDay.create(cinema_id=c, day=DAY, kind="task", team="floor", category="other", opened=1, breached=1,
                            breaches=[{"ref": "WAAA2", "clock": "acknowledge", "held_by": "li"},
                                      {"ref": "WAAA2", "clock": "resolve", "held_by": ""}])
    await ServiceDay.create(cinema_id=c, day=DAY - timedelta(days=1), kind="complaint", team="floor",
                            category="seat", opened=1, acknowledged=1, ack_seconds=[30])
    await ServiceDay.create(cinema_id=world.c2.id, day=DAY, kind="complaint", team="floor", category="seat",
                            opened=7)


async def test_experience_of_a_day(world: World) -> None:
    await _feedback_days(world)
    await _service_days(world)
    e = await rp.experience(one(world))
    assert e.responses == 7
    assert e.stars == (1, 1, 1, 1, 3) and e.stars_avg == pytest.approx(25 / 7)
    assert e.nps_scores == (1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2)
    # NPS: promoters 10, 9, 10; passives 8, 7; detractors 6, 0 → (3 − 2) / 7.
    assert (e.nps.n, e.nps.promoters, e.nps.passives, e.nps.detractors) == (7, 3, 2, 2)
    assert e.nps.score == pytest.approx(100 / 7)
    se = math.sqrt((3 / 7 + 2 / 7 - (1 / 7) ** 2) / 7)
    assert e.nps.low == pytest.approx(100 * (1 / 7 - 1.959963984540054 * se))
    assert e.nps == nps_of([10, 9, 6, 8, 0, 7, 10])
    assert (e.csat.n, e.csat.satisfied, e.csat.share) == (7, 4, pytest.approx(4 / 7))
    assert (e.csat.low, e.csat.high) == wilson(4, 7)
    assert [(g.key, g.label, g.responses) for g in e.by_film] == [(str(world.f1.id), "甲片", 4), ("", "未关联场次", 3)]
    assert e.by_film[0].csat.share == pytest.approx(3 / 4) and e.by_film[0].nps.score == pytest.approx(25.0)
    assert e.by_film[0].stars_avg == pytest.approx(4.0)
    assert [(g.key, g.label, g.cinema_id, g.responses) for g in e.by_hall] == [
        ("1号厅", "1号厅", world.c1.id, 4), ("", "未关联影厅", world.c1.id, 3)]
    assert [(g.key, g.responses) for g in e.by_day] == [("2026-11-20", 7)]
    assert (e.comments, e.negative) == (3, 2)
    assert [(c.category, c.label, c.count, c.share) for c in e.comment_categories] == [
        ("sound", "声音", 2, pytest.approx(2 / 3)), ("seat", "座椅", 1, pytest.approx(1 / 3))]
    assert e.complaints == 2
    assert [(c.category, c.count, c.share) for c in e.complaint_categories] == [("sound", 2, 1.0)]

    two = await rp.experience(one(world, DAY - timedelta(days=1)))
    assert two.responses == 8 and [g.responses for g in two.by_day] == [1, 7]
    assert [g.label for g in two.by_film] == ["甲片", "未关联场次", "乙片"]
    assert two.complaints == 3

    empty = await rp.experience(one(world, date(2026, 1, 1), date(2026, 1, 1)))
    assert empty.responses == 0 and empty.nps.score is None and empty.csat.share is None
    assert empty.stars_avg is None and empty.by_day[0].responses == 0 and empty.comment_categories == ()


async def test_the_ratings_behind_a_figure_newest_first_and_masked(world: World) -> None:
    tp = await Touchpoint.create(cinema_id=world.c1.id, code="c1-h2", name="2号厅出口", kind=TouchpointKind.HALL_EXIT,
                                 hall="2号厅", created_at=NOW)
    n = 0

    async def rate(stars: int | None, nps: int | None, *, day: date = DAY, hall: str | None = None,
                   film: Film | None = None, comment: str = "", phone: str | None = None) -> FeedbackResponse:
        nonlocal n
        n += 1
        at = local(day, 22) + timedelta(minutes=n)
        return await FeedbackResponse.create(
            cinema_id=world.c1.id, touchpoint=tp, visitor=f"v{n}", visit_day=day, channel="chat",
            film_id=film.id if film else None, film_title=film.title if film else None, hall=hall,
            stars=stars, nps=nps, comment=comment, phone=phone, created_at=at, updated_at=at,
        )

    a = await rate(5, 10, hall="1号厅", film=world.f1)
    b = await rate(2, 3, film=world.f1, comment="声音太小，请回电 13812345678", phone="13812345678")  # touchpoint's hall
    c = await rate(4, 8, hall="1号厅", film=world.f2, comment="不错")
    await rate(None, None, comment="只留了言")  # no rating: behind no figure
    await rate(3, 7, day=DAY - timedelta(days=1), film=world.f1)
    p = one(world)
    page = await rp.responses(p, mask=mask)
    assert [r.id for r in page.rows] == [c.id, b.id, a.id] and not page.more
    row = page.rows[1]
    assert (row.comment, row.phone, row.hall, row.film, row.stars, row.nps, row.day) == (
        "声音太小，请回电 138****5678", "138****5678", "2号厅", "甲片", 2, 3, DAY)
    assert [r.id for r in (await rp.responses(p, mask=mask, film_id=world.f1.id)).rows] == [b.id, a.id]
    assert [r.id for r in (await rp.responses(p, mask=mask, hall="2号厅")).rows] == [b.id]
    assert [r.id for r in (await rp.responses(p, mask=mask, hall="1号厅")).rows] == [c.id, a.id]
    assert [r.id for r in (await rp.responses(p, mask=mask, stars=4)).rows] == [c.id]
    assert [r.id for r in (await rp.responses(p, mask=mask, nps="detractor")).rows] == [b.id]
    assert [r.id for r in (await rp.responses(p, mask=mask, nps="passive")).rows] == [c.id]
    assert [r.id for r in (await rp.comments(p, mask=mask)).rows] == [c.id, b.id]
    assert [r.id for r in (await rp.comments(p, mask=mask, limit=1, offset=1)).rows] == [b.id]
    await FeedbackResponse.filter(id=b.id).update(category="sound")
    await FeedbackResponse.filter(id=c.id).update(category="seat")
    await FeedbackResponse.filter(id=a.id).update(category="sound")  # no comment: no topic's row
    assert [r.id for r in (await rp.comments(p, mask=mask, category="sound")).rows] == [b.id]
    assert [r.id for r in (await rp.responses(p, mask=mask, category="seat")).rows] == [c.id]
    assert (await rp.comments(p, mask=mask, category="picture")).rows == ()
    with pytest.raises(rp.ReportError):
        await rp.responses(p, mask=mask, nps="fan")


# --- service -----------------------------------------------------------------------------------------


async def _order(cinema: Cinema, ref: str, kind: Kind, state: State, created_at: datetime, *,
                 team: str = "floor", assignee: str | None = None, category: str = "other") -> WorkOrder:
    return await WorkOrder.create(
        ref=ref, cinema_id=cinema.id, kind=kind, category=category, source="chat", summary=f"单 {ref}",
        reporter="o1", reporter_role="audience", team=team, assignee=assignee, state=state,
        created_at=created_at, updated_at=created_at,
    )


async def test_service_of_a_day_and_the_open_items_now(world: World) -> None:
    await _service_days(world)
    old = await _order(world.c1, "WOLD1", Kind.FAULT, State.ACKNOWLEDGED, NOW - timedelta(days=3),
                       team="engineering", assignee="wang")
    new = await _order(world.c1, "WAAA1", Kind.COMPLAINT, State.ASSIGNED, local(DAY, 20), assignee="zhang",
                       category="sound")
    await _order(world.c1, "WAAA2", Kind.TASK, State.RESOLVED, local(DAY, 21))
    await _order(world.c2, "WOTH1", Kind.TASK, State.OPEN, local(DAY, 20))
    sv = await rp.service(one(world), NOW)
    assert (sv.opened, sv.acknowledged, sv.resolved, sv.breached) == (4, 3, 2, 2)
    assert sv.ack == rp.Durations(3, 120, 300) and sv.resolve == rp.Durations(2, 2400, 3600)
    assert [(g.key, g.label, g.opened, g.acknowledged, g.resolved, g.breached) for g in sv.by_kind] == [
        ("complaint", "投诉", 2, 2, 1, 1), ("fault", "报修", 1, 1, 1, 0), ("task", "任务", 1, 0, 0, 1)]
    assert sv.by_kind[0].ack == rp.Durations(2, 180, 300)
    assert sv.by_kind[2].ack == rp.Durations(0, None, None)
    assert [(g.key, g.label, g.opened) for g in sv.by_team] == [("floor", "场务组", 3), ("engineering", "工程组", 1)]
    assert [(g.key, g.label, g.opened) for g in sv.by_category] == [
        ("sound", "声音", 2), ("other", "其他", 1), ("picture", "画面", 1)]
    assert [(g.key, g.opened) for g in sv.by_day] == [("2026-11-20", 4)]
    assert sv.breach_count == 3
    assert {(b.ref, b.clock, b.held_by, b.kind, b.day) for b in sv.breaches} == {
        ("WAAA1", "acknowledge", "zhang", "complaint", DAY), ("WAAA2", "acknowledge", "li", "task", DAY),
        ("WAAA2", "resolve", "", "task", DAY)}
    assert sv.open_count == 2
    assert [(i.ref, i.assignee, i.state, i.age_seconds) for i in sv.open_items] == [
        (old.ref, "wang", "acknowledged", 3 * 86400.0),
        (new.ref, "zhang", "assigned", (NOW - local(DAY, 20)).total_seconds())]

    orders = await rp.work_orders(one(world))
    assert [o.ref for o in orders.rows] == ["WAAA2", "WAAA1"]
    assert [o.ref for o in (await rp.work_orders(one(world), breached=True)).rows] == ["WAAA2", "WAAA1"]
    assert [o.ref for o in (await rp.work_orders(one(world), kind="complaint")).rows] == ["WAAA1"]
    assert [o.ref for o in (await rp.work_orders(one(world), state="active")).rows] == ["WAAA1"]
    assert [o.ref for o in (await rp.work_orders(one(world), state="resolved")).rows] == ["WAAA2"]
    assert [o.ref for o in (await rp.work_orders(one(world), team="engineering")).rows] == []
    assert [o.ref for o in (await rp.open_work_orders((world.c1.id, world.c2.id), NOW, limit=2)).rows] == [
        "WOLD1", "WAAA1"]


# --- projectors --------------------------------------------------------------------------------------


async def _fleet(world: World) -> tuple[Projector, Projector]:
    p1 = await Projector.create(
        cinema=world.c1, hall=world.h1, device_id="C1-H1", key="k", model="CP2220", health_score=45,
        health={"grade": "危险", "reasons": ["亮度 75%，低于红线"], "brightness_pct": 75.0, "light_hours": 1200.0,
                "rated_light_hours": 2000.0, "red_line_pct": 80.0, "critical_line_pct": 50.0,
                "days_to_red_line": None},
        health_at=NOW - timedelta(minutes=5),
    )
    p2 = await Projector.create(
        cinema=world.c1, hall=world.h2, device_id="C1-H2", key="k", model="SP4K", health_score=90,
        health={"grade": "良好", "reasons": [], "brightness_pct": 95.0}, health_at=NOW - timedelta(hours=1),
    )
    await TelemetryRule.create(cinema=world.c1, device_id="", settings={"brightness_warning_pct": 70},
                               updated_at=NOW)
    await TelemetryRule.create(cinema=world.c1, device_id="C1-H2", settings={"brightness_warning_pct": 85,
                                                                             "brightness_critical_pct": 60},
                               updated_at=NOW)
    await Projector.create(cinema=world.c2, hall=await Hall.get(cinema_id=world.c2.id), device_id="C2-H1", key="k")
    for device, day, metric, vmin, vmax, vlast in (
        ("C1-H1", DAY - timedelta(days=1), "health_score", 55, 70, 60),
        ("C1-H1", DAY, "health_score", 40, 60, 45),
        ("C1-H1", DAY, "light_hours", 1180, 1190, 1190),
        ("C1-H2", DAY, "light_hours", 480, 500, 500),
        ("C1-H2", DAY - timedelta(days=1), "light_hours", 470, 480, 480),
    ):
        await DeviceDay.create(cinema_id=world.c1.id, device_id=device, day=day, metric=metric, n=10, vmin=vmin,
                               vmax=vmax, vsum=vmin * 10, vlast=vlast)
    n = 0

    async def alert(device: str, hall: str, severity: str, state: str, fired_at: datetime,
                    silenced: bool = False) -> None:
        nonlocal n
        n += 1
        await AlertRecord.create(
            alert_id=f"a{n}", cinema_id=world.c1.id, device_id=device, hall=hall, rule="brightness_low",
            severity=severity, state=state, message=f"告警 {n}", fired_at=fired_at, created_at=fired_at,
            silenced=silenced, resolved_at=fired_at + timedelta(hours=1) if state == "resolved" else None,
        )

    await alert("C1-H1", "1号厅", "critical", "firing", local(DAY, 12))
    await alert("C1-H1", "1号厅", "warning", "resolved", local(DAY, 10))
    await alert("C1-H2", "2号厅", "warning", "firing", local(DAY - timedelta(days=1), 10), silenced=True)
    return p1, p2


async def test_projectors_health_trend_alerts_and_red_lines(world: World) -> None:
    await _fleet(world)
    pj = await rp.projectors(one(world, DAY - timedelta(days=1)), NOW)
    one_, two = pj.projectors
    assert (one_.device_id, one_.hall, one_.model, one_.score, one_.grade, one_.fresh) == (
        "C1-H1", "1号厅", "CP2220", 45, "危险", True)
    assert one_.reasons == ("亮度 75%，低于红线",)
    assert (one_.brightness_pct, one_.red_line_pct, one_.red_line_from, one_.critical_line_pct) == (
        75.0, 70.0, "cinema", 50.0)
    assert (one_.light_hours, one_.rated_light_hours) == (1200.0, 2000.0)  # the snapshot's
    assert [(t.day, t.score, t.low) for t in one_.trend] == [(DAY - timedelta(days=1), 60, 55), (DAY, 45, 40)]
    assert [(a.alert_id, a.severity) for a in one_.open_alerts] == [("a1", "critical")]
    assert one_.alerts_in_period == 2
    # A snapshot an hour old is no data, never "good"; its own limits win over the cinema's.
    assert (two.score, two.grade, two.fresh, two.reasons) == (None, "无数据", False, ("监测数据 60 分钟没有更新",))
    assert (two.red_line_pct, two.red_line_from, two.critical_line_pct) == (85.0, "device", 60.0)
    assert two.light_hours == 500  # no hours in the snapshot: the period's device days
    assert two.open_alerts == ()  # silenced
    assert [t.score for t in two.trend] == [None, None] and two.alerts_in_period == 1
    assert pj.grades == {"危险": 1, "无数据": 1}
    assert (pj.open_alerts, pj.alerts_in_period) == (1, 3)
    assert [a.alert_id for a in pj.history] == ["a1", "a2", "a3"]

    other = await rp.projectors(rp.Period((world.c2.id,), DAY, DAY), NOW)
    (only,) = other.projectors
    assert (only.device_id, only.grade, only.reasons, only.red_line_pct, only.red_line_from) == (
        "C2-H1", "无数据", ("还没有收到数据",), rp.DEFAULT_RED_LINE_PCT, "default")

    p = one(world)
    assert [a.alert_id for a in (await rp.alerts(p)).rows] == ["a1", "a2"]
    assert [a.alert_id for a in (await rp.alerts(p, state="resolved")).rows] == ["a2"]
    assert [a.alert_id for a in (await rp.alerts(one(world, DAY - timedelta(days=1)), device_id="C1-H2")).rows] == ["a3"]


# --- the digest --------------------------------------------------------------------------------------


async def test_the_digest_compares_with_the_same_weekday_a_week_earlier(world: World) -> None:
    await _feedback_days(world)
    await _service_days(world)
    await _fleet(world)
    d = await rp.digest(world.c1.id, DAY, NOW)
    assert (d.day, d.previous_day) == (DAY, WEEK_AGO) and WEEK_AGO.weekday() == DAY.weekday()
    assert d.tickets == rp.Change(7, 4, 3, 0.75)
    assert d.revenue_fen == rp.Change(8000, 4000, 4000, 1.0)
    assert d.occupancy == pytest.approx(7 / 17) and d.previous_occupancy == pytest.approx(4 / 7)
    assert (d.shows, d.refunds, d.refunded_fen) == (3, 3, 3400)
    assert d.responses == 7 and d.nps.score == pytest.approx(100 / 7) and d.csat.share == pytest.approx(4 / 7)
    assert d.complaints == 2 and [c.category for c in d.complaint_categories] == ["sound"]
    assert d.breach_count == 3 and {b.ref for b in d.breaches} == {"WAAA1", "WAAA2"}
    assert [(x.device_id, x.score, [a.alert_id for a in x.critical_alerts]) for x in d.projector_exceptions] == [
        ("C1-H1", 45, ["a1"])]
    # The same figures as the sections show for that day.
    sales = await rp.sales(one(world), NOW)
    exp = await rp.experience(one(world))
    assert (sales.tickets, sales.revenue_fen, sales.occupancy) == (d.tickets.value, d.revenue_fen.value, d.occupancy)
    assert (exp.nps, exp.csat) == (d.nps, d.csat)
    assert rp.Change.of(5, 0) == rp.Change(5, 0, 5, None)


# --- the query budget --------------------------------------------------------------------------------


@contextmanager
def counted() -> Iterator[list[str]]:
    """Every SQL statement sent on the default connection while inside."""
    conn = connections.get("default")
    seen: list[str] = []
    names = ("execute_query", "execute_query_dict", "execute_insert", "execute_many", "execute_script")
    originals = {name: getattr(conn, name) for name in names}

    def wrap(name: str) -> Any:
        async def run(query: str, *args: Any, **kwargs: Any) -> Any:
            seen.append(query)
            return await originals[name](query, *args, **kwargs)
        return run

    for name in names:
        setattr(conn, name, wrap(name))
    try:
        yield seen
    finally:
        for name in names:
            delattr(conn, name)


async def test_each_section_takes_a_few_queries_however_many_rows(world: World) -> None:
    await _feedback_days(world)
    await _service_days(world)
    await _fleet(world)
    for i in range(60):  # many orders open: the page shows the oldest and counts them all
        await _order(world.c1, f"WMANY{i}", Kind.TASK, State.OPEN, NOW - timedelta(minutes=i))
    p = rp.Period((world.c1.id, world.c2.id), DAY - timedelta(days=29), DAY)
    budget = {"experience": 3, "service": 3, "sales": 6, "projectors": 6}
    calls = {
        "experience": lambda: rp.experience(p), "service": lambda: rp.service(p, NOW),
        "sales": lambda: rp.sales(p, NOW), "projectors": lambda: rp.projectors(p, NOW),
    }
    for name, call in calls.items():
        with counted() as seen:
            result = await call()
        assert len(seen) <= budget[name], (name, seen)
        assert seen, name  # the counter sees the queries
    with counted() as seen:
        sv = await rp.service(p, NOW)
    assert sv.open_count == 60 and len(sv.open_items) == rp.OPEN_ITEMS_LIMIT
    assert result.projectors  # the last section read something
    with counted() as seen:
        await rp.digest(world.c1.id, DAY, NOW)
    assert len(seen) <= 18


# --- from real rows, through the services and the rollups' rebuild ------------------------------------


async def test_figures_from_real_rows_agree_with_the_rows_behind_them_and_the_feedback_summary(
    world: World,
) -> None:
    from domain import feedback as fb
    from domain import rollups
    from domain import workorders as wo

    if not hasattr(rollups, "rebuild"):
        pytest.skip("rollups.rebuild has not landed")  # H1 (issue 17)
    c = world.c1.id
    s = world.shows
    await ShowSales.all().delete()  # the world's hand-written rollups: here only real rows count
    n = 0

    async def sell(show: Showtime, seats: list[tuple[str, TicketState]], price: int) -> None:
        nonlocal n
        n += 1
        order = await Order.create(
            no=f"R{n}", cinema_id=c, showtime=show, openid=f"o{n}", state=OrderState.ISSUED, hold_id=f"h{n}",
            seats=[seat for seat, _ in seats], quote=[], amount_fen=price * len(seats), paid_fen=price * len(seats),
            expires_at=NOW, created_at=NOW, paid_at=NOW,
        )
        for seat, state in seats:
            await Ticket.create(order=order, showtime=show, seat=seat, price_fen=price, secret=f"r{n}{seat}",
                                state=state, active=True if state != TicketState.REFUNDED else None)

    await sell(s["s1"], [("1-1", TicketState.ISSUED), ("1-2", TicketState.CHECKED_IN)], 4500)
    await sell(s["s1"], [("2-1", TicketState.REFUNDED)], 4500)
    await sell(s["s2"], [("1-1", TicketState.ISSUED)], 3800)

    tp = await Touchpoint.create(cinema_id=c, code="c1-h1", name="1号厅出口", kind=TouchpointKind.HALL_EXIT,
                                 hall="1号厅", created_at=NOW)
    at = local(DAY, 22)
    for i, (stars, nps) in enumerate([(5, 10), (4, 9), (2, 3), (3, 7), (5, 8), (1, 0), (4, 10)]):
        response, _ = await fb.start_response(touchpoint=tp, visitor=f"v{i}", now=at, channel="chat")
        await fb.answer(response, at, stars=stars, nps=nps)

    from domain.people import Staff, StaffRole

    await Staff.create(cinema=world.c1, userid="zhang", name="张三", role=StaffRole.STAFF)
    staff = wo.Who("zhang", "staff", c)
    first, _ = await wo.open_order(cinema_id=c, kind=wo.Kind.COMPLAINT, category="sound", summary="声音小",
                                   reporter=wo.Who("o1", "audience", c), now=at, team="floor")
    await wo.act(first, "assign", wo.SYSTEM, at, assignee="zhang")
    await wo.act(first, "acknowledge", staff, at + timedelta(minutes=2))
    await wo.act(first, "resolve", staff, at + timedelta(minutes=10), action_taken="调大音量")
    await wo.open_order(cinema_id=c, kind=wo.Kind.COMPLAINT, category="seat", summary="座椅坏",
                        reporter=wo.Who("o2", "audience", c), now=at + timedelta(minutes=5), team="floor")

    await rollups.refresh_shows([s["s1"].id, s["s2"].id])  # the tickets were written directly
    p = one(world)
    live = await _figures(p)  # as the services kept the rollups
    await rollups.rebuild(c)
    assert await _figures(p) == live  # as rebuilt from raw rows
    sales, e, sv = live
    standing = (await rp.tickets(p, state="standing")).rows
    assert sales.tickets == len(standing) == 3
    assert sales.revenue_fen == sum(t.price_fen for t in standing) == 4500 * 2 + 3800
    assert (sales.refunds, sales.refunded_fen, sales.orders, sales.checked_in) == (1, 4500, 2, 1)
    assert sales.occupancy == pytest.approx(3 / 17)

    summary = await fb.summary(c, DAY, DAY)
    assert e.responses == summary["total"]["responses"] == 7
    assert e.nps.score == pytest.approx(summary["total"]["nps"]["score"], abs=0.05)
    assert 100 * e.csat.share == pytest.approx(summary["total"]["csat"]["pct"], abs=0.05)
    assert [g.label for g in e.by_hall] == ["1号厅"]
    behind = (await rp.responses(p, mask=mask, hall="1号厅", limit=50)).rows
    assert len(behind) == e.by_hall[0].responses

    assert (sv.opened, sv.acknowledged, sv.resolved) == (2, 1, 1)
    assert sv.ack == rp.Durations(1, 120, 120) and sv.resolve == rp.Durations(1, 600, 600)
    assert e.complaints == 2 and {x.category for x in e.complaint_categories} == {"sound", "seat"}
    assert [o.ref for o in (await rp.work_orders(p, state="acknowledged")).rows] == [first.ref]
    assert [o.ref for o in (await rp.work_orders(p, state="resolved")).rows] == [first.ref]
    assert sv.open_count == 1


async def _figures(p: rp.Period) -> tuple[rp.Sales, rp.Experience, rp.Service]:
    return await rp.sales(p, NOW), await rp.experience(p), await rp.service(p, NOW)
