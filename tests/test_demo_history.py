"""A newcomer opens the console of the demo cinema and finds weeks of figures in every section.

``domain.demo.seed(now, history_days=28)`` (what ``cinebot demo`` and ``serve --demo`` run)
gives the demo cinema its past four weeks: sales, ratings, work orders, projectors. The
history must look like what the real services write — the rollups agree with the rows, the
rules of selling hold — and seeding again adds nothing.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import timedelta
from itertools import pairwise
from typing import Any

import pytest

from bot.cli import main
from bot.infra.logs import mask_phone
from domain import demo, demo_history, reports, rollups
from domain.audit import AuditLog
from domain.catalog import Showtime
from domain.cinemas import Cinema
from domain.days import SHANGHAI, business_day
from domain.devices import AlertRecord, Projector, TelemetryMinute
from domain.feedback import FeedbackResponse
from domain.keys import StoredKey
from domain.orders import Order, Payment, Refund, Ticket
from domain.people import Member
from domain.rollups import DeviceDay, FeedbackDay, ServiceDay, ShowSales
from domain.workorders import ACTIVE, Shift, WorkOrder, WorkOrderEvent
from tests.support import FakeClock
from tests.test_cli import cli_env  # noqa: F401  (fixture)
from tests.test_rollups import (
    device_rows,
    feedback_oracle,
    feedback_rows,
    sales_oracle,
    sales_rows,
    service_oracle,
    service_rows,
)

DAYS = demo_history.HISTORY_DAYS
TABLES = (
    Showtime, Order, Ticket, Payment, Refund, AuditLog, Member, FeedbackResponse, WorkOrder, WorkOrderEvent,
    Shift, AlertRecord, TelemetryMinute, DeviceDay, ShowSales, FeedbackDay, ServiceDay, StoredKey,
)


async def seeded(clock: FakeClock, days: int = DAYS) -> tuple[Cinema, reports.Period]:
    report = await demo.seed(clock.now(), history_days=days)
    assert report.history is not None and report.history.days == days
    cinema = await Cinema.get(code=demo.DEMO_CINEMA_CODE)
    today = business_day(clock.now())
    return cinema, reports.Period((cinema.id,), today - timedelta(days=days), today)


async def counts() -> dict[str, int]:
    return {m.__name__: await m.all().count() for m in TABLES}


def _rounded(expected: dict[Any, dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    """The oracle's durations to the millisecond, as the rollup keeps them (timestamps of
    the history, like real ones, have microseconds)."""
    for bucket in expected.values():
        for key in ("ack_seconds", "resolve_seconds"):
            bucket[key] = [round(s, 3) for s in bucket[key]]
    return expected


async def test_every_console_section_and_the_digest_have_figures(db: None, clock: FakeClock) -> None:
    cinema, p = await seeded(clock)
    now = clock.now()
    history = p.days[:-1]  # today has no history yet

    box = await reports.sales(p, now)
    assert box.tickets > 10_000 and box.revenue_fen > 0 and box.orders > 0
    assert box.refunds > 0 and box.refunded_fen > 0 and box.changes > 0
    assert 0.5 < box.checked_in / box.tickets < 1
    assert 0.05 < box.occupancy < 0.5  # a cinema, not a sold-out stadium
    assert all(g.tickets > 0 for g in box.by_day if g.key in {d.isoformat() for d in history})
    assert len(box.by_hall) == 6 and len(box.by_film) == 7
    past = [s for s in box.per_show if s.day in history]
    assert any(s.occupancy is not None and s.occupancy < 0.05 for s in past), "some shows nearly empty"
    assert any(s.occupancy is not None and s.occupancy > 0.5 for s in past), "some nearly full"
    heat = {(c.weekday, c.hour): c.occupancy for c in box.heatmap}
    assert heat[(5, 19)] > heat[(1, 19)] > heat[(1, 10)]  # Saturday night > Tuesday night > morning

    exp = await reports.experience(p)
    assert exp.responses > 100 and exp.nps.score is not None and exp.csat.n > 0
    assert exp.negative > 0 and exp.comment_categories and exp.complaints > 0
    assert exp.complaint_categories and len(exp.by_film) >= 5
    comments = await reports.comments(p, mask=mask_phone, limit=200)
    texts = [r.comment for r in comments.rows] + [r.phone or "" for r in comments.rows]
    assert any("****" in t for t in texts), "some comments leave a phone number, masked"
    raw = await FeedbackResponse.filter(cinema_id=cinema.id).exclude(comment="").values_list("comment", flat=True)
    assert any(mask_phone(c) != c for c in raw)

    desk = await reports.service(p, now)
    assert desk.opened > 50 and desk.acknowledged > 0 and desk.resolved > 0
    assert desk.ack.median is not None and desk.resolve.p90 is not None
    assert desk.breached > 0 and desk.breaches and all(b.held_by for b in desk.breaches)
    assert {g.key for g in desk.by_kind} >= {"complaint", "fault", "task", "lost_found", "alert"}
    assert {g.key for g in desk.by_team} >= {"floor", "engineering", "management"}
    assert desk.open_count >= 1 and all(i.state == "paused" for i in desk.open_items)

    fleet = await reports.projectors(p, now)
    assert len(fleet.projectors) == 6 and fleet.alerts_in_period == 1 and len(fleet.history) == 1
    for row in fleet.projectors:
        scores = [t.score for t in row.trend if t.day in history]
        assert all(s is not None for s in scores), row.device_id
        assert row.light_hours is not None and row.fresh
    ageing = min(fleet.projectors, key=lambda r: r.score or 100)
    assert ageing.grade == "注意" and ageing.days_to_red_line is not None
    assert ageing.light_hours and ageing.rated_light_hours and ageing.light_hours / ageing.rated_light_hours > 0.9
    first, last = ageing.trend[0].score, ageing.trend[len(history) - 1].score
    assert first is not None and last is not None and last < first - 10
    assert fleet.history[0].device_id == ageing.device_id and fleet.history[0].state == "resolved"
    minutes = await TelemetryMinute.filter(device_id=ageing.device_id, metric="brightness_pct").count()
    assert minutes > 1000

    yesterday = business_day(now) - timedelta(days=1)
    card = await reports.digest(cinema.id, yesterday, now)
    assert card.tickets.value > 0 and card.tickets.previous > 0 and card.revenue_fen.value > 0
    assert card.responses > 0 and card.shows == 30


async def test_the_rollups_equal_the_rows_and_a_rebuild_and_a_second_seed_adds_nothing(
    db: None, clock: FakeClock
) -> None:
    await seeded(clock)
    assert await sales_rows() == await sales_oracle()
    assert await feedback_rows() == await feedback_oracle()
    assert await service_rows() == _rounded(await service_oracle())
    before = {
        "sales": await sales_rows(), "feedback": await feedback_rows(), "service": await service_rows(),
        "devices": await device_rows(), "health": await device_rows(metric_not=""),
    }
    await rollups.rebuild()
    after = {
        "sales": await sales_rows(), "feedback": await feedback_rows(), "service": await service_rows(),
        "devices": await device_rows(), "health": await device_rows(metric_not=""),
    }
    assert after == before

    rows = await counts()
    again = await demo.seed(clock.now(), history_days=DAYS)
    assert again.history is not None and again.history.days == 0 and again.history.orders == 0
    assert await counts() == rows


async def test_the_history_keeps_the_rules_of_selling_and_of_the_service_desk(db: None, clock: FakeClock) -> None:
    cinema, _ = await seeded(clock)
    now = clock.now()
    tickets = await Ticket.all().values(
        "id", "order_id", "showtime_id", "seat", "state", "active", "price_fen", "checked_in_at",
        "showtime__starts_at",
    )
    standing = [t for t in tickets if t["state"] in ("issued", "checked_in")]
    assert all(t["active"] is True for t in standing)
    assert all(t["active"] is None for t in tickets if t["state"] in ("refunded", "changed"))
    seats = Counter((t["showtime_id"], t["seat"]) for t in standing)
    assert seats and max(seats.values()) == 1, "no seat sold twice for one show"
    assert all(t["checked_in_at"] < t["showtime__starts_at"] for t in tickets if t["state"] == "checked_in")
    by_order = defaultdict(list)
    for t in tickets:
        by_order[t["order_id"]].append(t)

    payments = defaultdict(int)
    for order_id, fen in await Payment.all().values_list("order_id", "amount_fen"):
        payments[order_id] += fen
    refunds = defaultdict(list)
    for order_id, fen, reason, state in await Refund.all().values_list("order_id", "amount_fen", "reason", "state"):
        refunds[order_id].append((fen, reason, state))
    orders = await Order.filter(cinema_id=cinema.id).prefetch_related("showtime")
    assert orders and all(o.no.startswith(demo_history.ORDER_PREFIX) for o in orders)
    changed_to = {o.changed_from_id: o for o in orders if o.changed_from_id}  # type: ignore[attr-defined]
    for o in orders:
        assert o.created_at <= o.paid_at < o.showtime.starts_at <= now, o.no
        if o.transaction_id:  # paid through WeChat Pay: a payment of its amount
            assert payments[o.id] == o.amount_fen > 0, o.no
        else:
            assert o.changed_from_id is not None and o.amount_fen == 0 and o.id not in payments  # type: ignore[attr-defined]
        assert o.paid_fen == sum(t["price_fen"] for t in by_order[o.id]) == o.quote["total_fen"], o.no
        assert o.state in ("issued", "checked_in", "refunded", "changed"), o.no
        if o.state == "refunded":
            assert o.refunded_fen == o.paid_fen and refunds[o.id] == [(o.paid_fen, "buyer", "succeeded")]
        if o.state == "changed":
            new = changed_to[o.id]
            assert new.showtime.film_id == o.showtime.film_id and new.showtime.starts_at > o.closed_at  # type: ignore[attr-defined]
            assert await AuditLog.filter(entity="order", entity_id=o.no, action="changed", actor=o.openid).exists()
        checked = {t["state"] == "checked_in" for t in by_order[o.id]}
        assert (o.state == "checked_in") == (checked == {True}), o.no

    responses = await FeedbackResponse.filter(cinema_id=cinema.id)
    for r in responses:
        if r.show_starts_at is not None:
            assert r.visit_day == business_day(r.show_starts_at) and r.created_at > r.show_starts_at
        alarming = (r.stars or 5) <= 2 or (r.nps is not None and r.nps <= 6)
        assert (r.work_order_id is not None) == alarming, r.id
    complaints = {
        o.id: o for o in await WorkOrder.filter(cinema_id=cinema.id, kind="complaint")
    }
    for r in responses:
        if r.work_order_id:
            assert complaints[r.work_order_id].source_key == f"feedback:{r.id}"

    for o in await WorkOrder.filter(cinema_id=cinema.id).prefetch_related("events"):
        timeline = sorted(o.events, key=lambda e: (e.at, e.id))
        assert timeline[0].action == "open" and timeline[0].at == o.created_at
        moves = [e for e in timeline if e.from_state != e.to_state]
        assert moves[-1].to_state == o.state and o.version == len(moves) - 1, o.ref
        assert all(a.to_state == b.from_state for a, b in pairwise(moves)), o.ref
        if o.state in ACTIVE:  # open now: waiting for parts, no SLA clock running
            assert o.state == "paused"
        local = o.created_at.astimezone(SHANGHAI).time()
        assert local.hour >= 9 or local.hour < 2, o.ref  # opened while the cinema is open
    assert await Projector.filter(cinema_id=cinema.id, health_at=now).count() == 6


async def test_a_later_run_fills_only_the_days_since(db: None, clock: FakeClock) -> None:
    await seeded(clock, days=3)
    orders = await Order.all().count()
    clock.advance(days=2)
    report = await demo.seed(clock.now(), history_days=3)
    assert report.history is not None and report.history.days == 2
    assert await Order.all().count() > orders
    mark = await StoredKey.get(name=demo_history.MARK)
    assert len(mark.value["days"]) == 5
    assert await sales_rows() == await sales_oracle()


@pytest.mark.usefixtures("cli_env")
def test_cinebot_demo_tells_of_the_history_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--history-days", "2"]) == 0
    first = capsys.readouterr().out
    assert "经营历史：补上过去 2 天" in first and "笔订单" in first
    assert main(["demo", "--history-days", "2"]) == 0
    assert "经营历史：已经有了，这次没有重复写入。" in capsys.readouterr().out
    assert main(["demo", "--history-days", "0"]) == 0
    assert "经营历史" not in capsys.readouterr().out
