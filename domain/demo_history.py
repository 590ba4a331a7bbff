"""Demo history: the demo cinema's last few weeks, so a newcomer's console has figures.

:func:`seed_history` writes, for each business day of the last ``days`` (default 28) not
seeded before, what the real services would have written had the cinema been open:

- the day's shows on the demo schedule's slots (``domain.demo.ensure_schedule``'s rotation);
- paid orders (number prefix :data:`ORDER_PREFIX`), their tickets and WeChat Pay payments,
  on an occupancy curve (evenings and weekends fuller, popular films and big screens
  fuller, some shows nearly empty); seats chosen as the seat picker would
  (``domain.seating.best_seats``), priced by ``domain.pricing.quote``; most tickets checked
  in at the gate; a few orders refunded (a succeeded refund) and a few changed (改签) to a
  later show of the same film, the difference paid or refunded;
- ratings at the touchpoints (stars, NPS, comments read as the classifier would, a few
  negative ones with a phone number in them), each alarming one with its complaint work
  order (``source_key`` ``feedback:<id>``) as ``domain.feedback.raise_alert`` opens it;
- work orders of every kind (faults, tasks, lost items, group bookings) with their
  timelines — open, assign, acknowledge, resolve, a few SLA warnings and escalations —
  as ``domain.workorders`` writes them, assigned to whoever was on the demo roster;
  one or two waiting for parts (paused: open now, no SLA clock running);
- the projectors' device days (temperature, brightness, light hours, health score), per
  minute for the last :data:`MINUTE_DAYS` days (``domain.telemetry_minutes``), one
  projector's light source ageing toward the brightness red line and one brightness alert
  with its work order; a health snapshot for projectors that never had one.

Then ``domain.rollups.rebuild`` makes the rollups match. Rows go in with ``bulk_create``
in one transaction, so the whole history takes a few seconds on SQLite. Deterministic: a
``random.Random`` seeded per cinema and day. Idempotent: the days written are kept in the
stored key :data:`MARK`, so running again adds nothing (a later run fills only the days
since). Only shows that have ended are given history; the live seat inventory (Redis) is
never touched, because no seat of a show still on sale is sold here.
"""

from __future__ import annotations

import hashlib
import math
import random
import time as clock
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.models import Model
from tortoise.transactions import in_transaction

from domain import keys, projectors, rollups
from domain.audit import AuditLog
from domain.catalog import Film, Showtime
from domain.cinemas import Cinema, Hall
from domain.days import SHANGHAI, business_day, day_bounds
from domain.devices import AlertRecord, Projector
from domain.feedback import ASPECT_CATEGORIES, FeedbackResponse, FollowUp, priority_of
from domain.keys import StoredKey
from domain.orders import Order, OrderState, Payment, Refund, RefundState, Ticket, TicketState
from domain.people import Member, Staff
from domain.pricing import quote
from domain.seating import SeatPlan, best_seats
from domain.telemetry_minutes import record_minutes
from domain.touchpoints import PRINTED, Touchpoint, TouchpointKind
from domain.workorders import Kind, Shift, WorkOrder, WorkOrderEvent, team_for

HISTORY_DAYS = 28
MINUTE_DAYS = 3  # the most recent days also get per-minute telemetry
MARK = "demo:history"  # StoredKey: {"days": [ISO business days written]}
ORDER_PREFIX = "DH"  # history order numbers: DH + yyyymmdd + 12 hex (real ones start CB)
MEMBERS = 1800  # the audience pool buying the history's tickets

# Demand for a show: the slot's hour × the weekday × the film × the screen, then noise.
SLOT_DEMAND = {10: 0.045, 13: 0.08, 16: 0.11, 19: 0.27, 22: 0.11}
WEEKDAY_DEMAND = (0.8, 0.75, 0.85, 0.9, 1.15, 1.65, 1.5)  # Monday .. Sunday
FILM_APPEAL = {
    "哪吒之魔童闹海": 1.35, "沙丘：第二部": 1.2, "流浪地球2": 1.1, "飞驰人生2": 1.0, "热辣滚烫": 0.95,
    "长安三万里": 0.85, "八佰": 0.7,
}
SCREEN_APPEAL = {"IMAX": 1.25, "Dolby": 1.1}
ORDER_SIZES = ((1, 22), (2, 52), (3, 11), (4, 10), (5, 3), (6, 2))
TIERS = (("regular", 80), ("silver", 12), ("gold", 6), ("platinum", 2))
REFUND_SHARE = 0.025
CHANGE_SHARE = 0.012
NO_SHOW_SHARE = 0.06
RESPONSE_SHARE = 0.035  # of the orders that came
# The ticket secret's alphabet (domain.orders: no 0/O/1/l/i).
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
_REF_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
_OPENID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"

# Comments as the classifier reads them: (category, sentiment, text).
NEGATIVE = (
    ("temperature", "neg", "空调太冷了，看到一半冻得不行，希望调高一点"),
    ("seat", "neg", "座椅坏了，靠背一直往后倒，坐得很难受"),
    ("sound", "neg", "声音忽大忽小，左边音箱有杂音"),
    ("cleanliness", "neg", "座位上有爆米花残渣，地面黏黏的"),
    ("noise", "neg", "旁边的人一直打电话，工作人员也没管"),
    ("staff", "neg", "检票员态度很差，问个路都不耐烦"),
    ("concession", "neg", "爆米花太贵了，而且是凉的"),
    ("picture", "neg", "画面有点暗，字幕看不太清"),
)
NEUTRAL = (
    ("concession", "neu", "卖品种类可以再多一些"),
    ("other", "neu", "停车有点不方便，希望能多给点优惠"),
    ("temperature", "neu", "空调稍微有点凉，带件外套就好"),
    ("other", "neu", "希望多排几场晚上的场次"),
)
POSITIVE = (
    ("picture", "pos", "画面太震撼了，值回票价"),
    ("sound", "pos", "音效很棒，沉浸感很强"),
    ("staff", "pos", "工作人员很热情，散场还提醒我拿东西"),
    ("cleanliness", "pos", "影厅很干净，座椅也舒服"),
    ("other", "pos", "排片时间很合适，下次还来"),
    ("seat", "pos", "贵宾座很宽敞，看得很舒服"),
)
REPLIES = {
    "temperature": "非常抱歉让您受冷了，已请工程师把影厅温度调高 2 度，下次观影可向工作人员索取毛毯。",
    "seat": "抱歉给您带来不便，该座椅已报修并暂停售卖，感谢您的提醒。",
    "sound": "已请工程师检查并更换了故障音箱，给您带来的不好体验深表歉意。",
    "cleanliness": "非常抱歉，已加强散场清洁检查，感谢您的反馈。",
    "noise": "抱歉没有及时制止，已要求场务在放映中加强巡场。",
    "staff": "非常抱歉，已对当班员工进行提醒和培训，欢迎再次光临。",
    "concession": "感谢反馈，已调整爆米花出锅时间，保证现做现卖。",
    "picture": "已安排工程师校准放映机亮度，感谢您的反馈。",
}
# Work orders people open besides complaints: (kind, category, summary, reporter role, severity).
# {hall}, {row} and {col} are filled in.
DESK = (
    (Kind.FAULT, "seat", "{hall}{row}排{col}座座椅靠背松动", "audience", "P3"),
    (Kind.FAULT, "temperature", "{hall}空调太冷", "audience", "P3"),
    (Kind.FAULT, "sound", "{hall}左侧环绕音箱有杂音", "staff", "P2"),
    (Kind.FAULT, "lighting", "{hall}台阶灯不亮", "staff", "P3"),
    (Kind.FAULT, "facility", "东侧洗手间水龙头漏水", "staff", "P3"),
    (Kind.TASK, "cleanliness", "{hall}散场后加急清洁", "manager", "P3"),
    (Kind.TASK, "other", "补充3D眼镜到{hall}", "manager", "P3"),
    (Kind.LOST_FOUND, "other", "{hall}{row}排遗失黑色雨伞", "audience", "P3"),
    (Kind.LOST_FOUND, "other", "顾客在{hall}遗失手机", "audience", "P3"),
    (Kind.GROUP_BOOKING, "other", "公司包场咨询：周五晚 80 人", "audience", "P3"),
)
DESK_WEIGHTS = (5, 4, 2, 2, 2, 3, 2, 2, 1, 1)
DESK_ACTIONS = {
    "seat": "已紧固靠背螺丝，座椅恢复正常", "temperature": "空调温度从 22 度调到 24 度",
    "sound": "更换了左侧环绕音箱的功放模块", "lighting": "更换了台阶灯灯带",
    "facility": "更换了水龙头阀芯", "cleanliness": "已清洁完毕", "other": "已处理完毕",
}
ACK_MINUTES = {"complaint": 5, "task": 10}  # the SLA targets the seeded breaches overrun
PARTS_WAIT = "等配件"
RECOVERED_BRIGHTNESS = "清洁镜头并校准光源输出，亮度回到 84%"


@dataclass
class HistoryReport:
    days: int = 0  # business days written by this run
    showtimes: int = 0  # shows created (the rest were on the schedule already)
    orders: int = 0
    tickets: int = 0
    refunds: int = 0
    changes: int = 0
    responses: int = 0
    work_orders: int = 0
    minutes: int = 0  # telemetry minute rows
    alerts: int = 0
    seconds: float = 0.0


@dataclass
class _Show:
    id: int
    hall: str
    film_id: int
    film: str
    fmt: str
    starts: datetime
    ends: datetime
    base: int
    plan: SeatPlan
    taken: set[str] = field(default_factory=set)


@dataclass
class _Order:
    no: str
    show: _Show
    member: tuple[int, str, str]  # id, openid, tier
    channel: str
    seats: list[str]
    quote: dict[str, Any]
    amount: int
    paid: int
    created: datetime
    paid_at: datetime
    state: OrderState = OrderState.ISSUED
    transaction_id: str | None = None
    refunded: int = 0
    closed_at: datetime | None = None
    changed_from: _Order | None = None
    ticket_state: TicketState = TicketState.ISSUED
    checked_in_at: datetime | None = None
    checked_in_by: str | None = None


def _day_rng(cinema: Cinema, day: date, part: str) -> random.Random:
    return random.Random(f"{cinema.code}:{day.isoformat()}:{part}")


def _hex(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n):0{n}X}"


def _secret(rng: random.Random) -> str:
    return "".join(rng.choices(_ALPHABET, k=32))


def _digits(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n) % 10**n:0{n}d}"


def _weighted(rng: random.Random, pairs: Sequence[tuple[Any, int]]) -> Any:
    return rng.choices([p[0] for p in pairs], [p[1] for p in pairs])[0]


@dataclass(frozen=True)
class Schedule:
    """The demo's timetable as the history needs it (``domain.demo`` hands it in)."""

    halls: Sequence[Any]  # each with .name, .films (the daily rotation over the slots), .fmt
    slots: Sequence[time]
    shifts: Sequence[tuple[str, str, time, time]]  # userid, team, local start, local end
    price_fen: Callable[[str, time], int]  # (format, slot) -> the show's base price


def _on_duty(shifts: Sequence[tuple[str, str, time, time]], team: str, at: datetime) -> list[str]:
    """Who the demo roster has on ``team`` at ``at``."""
    local = at.astimezone(SHANGHAI).time()
    found = []
    for userid, t, opens, closes in shifts:
        inside = opens <= local < closes if opens < closes else (local >= opens or local < closes)
        if t == team and inside:
            found.append(userid)
    return found


def _holder(rng: random.Random, shifts: Sequence[tuple[str, str, time, time]], team: str, at: datetime) -> str:
    people = _on_duty(shifts, team, at) or _on_duty(shifts, "management", at) or ["manager01"]
    return rng.choice(people)


# --- the seeding ---------------------------------------------------------------------------


async def seed_history(
    cinema: Cinema, now: datetime, schedule: Schedule, days: int = HISTORY_DAYS
) -> HistoryReport:
    """Write the business days among the last ``days`` before today that no earlier run
    wrote; what was written (nothing, when every day is there already)."""
    started = clock.monotonic()
    report = HistoryReport()
    if days <= 0:
        return report
    today = business_day(now)
    window = [today - timedelta(days=i) for i in range(days, 0, -1)]
    await keys.get_or_create(MARK, lambda: {"days": []})
    async with in_transaction() as conn:
        mark = await StoredKey.filter(name=MARK).select_for_update().using_db(conn).get()
        done = set(mark.value.get("days", []))
        wanted = [d for d in window if d.isoformat() not in done]
        if not wanted:
            return report
        writer = _Writer(cinema, now, today, wanted, conn, report, schedule)
        await writer.run()
        kept = sorted(done | {d.isoformat() for d in wanted})
        await StoredKey.filter(id=mark.id).using_db(conn).update(value={"days": kept})
    await rollups.rebuild(cinema.id)
    report.days = len(wanted)
    report.seconds = round(clock.monotonic() - started, 2)
    return report


class _Writer:
    """One run's history, planned in memory and written in bulk."""

    def __init__(
        self, cinema: Cinema, now: datetime, today: date, days: list[date], conn: BaseDBAsyncClient,
        report: HistoryReport, schedule: Schedule,
    ) -> None:
        self.cinema, self.now, self.today, self.days, self.conn = cinema, now, today, days, conn
        self.report, self.schedule, self.shifts = report, schedule, schedule.shifts
        self.shows: dict[date, list[_Show]] = {}
        self.orders: list[_Order] = []
        self.refunds: list[tuple[_Order, int, str, datetime]] = []  # order, fen, reason, at
        self.payments: list[tuple[_Order, int, str, datetime]] = []  # order, fen, outcome, at
        self.audits: list[AuditLog] = []
        self.refs: set[str] = set()

    async def run(self) -> None:
        await self._roster()
        await self._load_shows()
        members = await self._members()
        for day in self.days:
            self._sell(day, members)
        self._changes()
        await self._write_sales()
        responses = await self._ratings()
        self.refs = set(await WorkOrder.filter(cinema_id=self.cinema.id).using_db(self.conn).values_list("ref", flat=True))
        await self._desk(responses)
        await self._devices()

    # --- roster and shows ----------------------------------------------------------------

    async def _roster(self) -> None:
        """The demo shifts of the history's days (``ensure_roster`` keeps yesterday on)."""
        staff = {s.userid: s for s in await Staff.filter(cinema=self.cinema).using_db(self.conn)}
        first_kept = self.now.astimezone(SHANGHAI).date() - timedelta(days=1)
        wanted = []
        for day in self.days:
            if day >= first_kept:
                continue
            for userid, team, opens, closes in self.shifts:
                if userid not in staff:
                    continue
                starts = datetime.combine(day, opens, SHANGHAI).astimezone(UTC)
                ends = datetime.combine(day + timedelta(days=closes <= opens), closes, SHANGHAI).astimezone(UTC)
                wanted.append((staff[userid], team, starts, ends))
        if not wanted:
            return
        existing = {
            (s.staff_id, s.team, s.starts_at.astimezone(UTC))  # type: ignore[attr-defined]
            for s in await Shift.filter(
                cinema_id=self.cinema.id, starts_at__gte=min(w[2] for w in wanted),
                starts_at__lte=max(w[2] for w in wanted),
            ).using_db(self.conn)
        }
        await Shift.bulk_create(
            [Shift(cinema_id=self.cinema.id, staff=p, team=t, starts_at=s, ends_at=e)
             for p, t, s, e in wanted if (p.id, t, s) not in existing],
            using_db=self.conn,
        )

    async def _load_shows(self) -> None:
        """The history days' shows on the demo schedule, made where missing; seats already
        sold on them (a demo that ran those days) stay theirs."""
        films = {f.title: f for f in await Film.all().using_db(self.conn)}
        halls = {h.name: h for h in await Hall.filter(cinema=self.cinema).using_db(self.conn)}
        lo, hi = day_bounds(self.days[0])[0], day_bounds(self.days[-1])[1]
        existing = await Showtime.filter(
            cinema_id=self.cinema.id, starts_at__gte=lo, starts_at__lt=hi
        ).using_db(self.conn)
        have = {(s.hall_id, s.starts_at.astimezone(UTC)) for s in existing}  # type: ignore[attr-defined]
        new = []
        for day in self.days:
            for spec in self.schedule.halls:
                hall = halls.get(spec.name)
                if hall is None:
                    continue
                for i, slot in enumerate(self.schedule.slots):
                    film = films.get(spec.films[(i + day.toordinal()) % len(spec.films)])
                    starts = datetime.combine(day, slot, SHANGHAI).astimezone(UTC)
                    if film is None or (hall.id, starts) in have:
                        continue
                    price = self.schedule.price_fen(spec.fmt, slot)
                    new.append(Showtime(
                        cinema_id=self.cinema.id, hall_id=hall.id, film_id=film.id, starts_at=starts,
                        ends_at=starts + timedelta(minutes=film.duration_min), format=spec.fmt,
                        base_price_fen=price,
                    ))
        await Showtime.bulk_create(new, using_db=self.conn)
        self.report.showtimes = len(new)
        wanted = set(self.days)
        by_id = {h.id: h for h in halls.values()}
        titles = {f.id: f.title for f in films.values()}
        rows = await Showtime.filter(
            cinema_id=self.cinema.id, starts_at__gte=lo, starts_at__lt=hi, cancelled_at=None
        ).using_db(self.conn).order_by("starts_at", "hall_id")
        sold: dict[int, set[str]] = defaultdict(set)
        for show_id, seat in await Ticket.filter(
            showtime_id__in=[s.id for s in rows], active=True
        ).using_db(self.conn).values_list("showtime_id", "seat"):
            sold[show_id].add(seat)
        for s in rows:
            day = business_day(s.starts_at)
            hall = by_id.get(s.hall_id)  # type: ignore[attr-defined]
            if day not in wanted or hall is None or s.ends_at > self.now:
                continue
            self.shows.setdefault(day, []).append(_Show(
                s.id, hall.name, s.film_id, titles.get(s.film_id, ""), s.format,  # type: ignore[attr-defined]
                s.starts_at.astimezone(UTC), s.ends_at.astimezone(UTC), s.base_price_fen,
                SeatPlan.from_layout(hall.layout), set(sold[s.id]),
            ))

    async def _members(self) -> list[tuple[int, str, str]]:
        """The audience pool (the same people every run): (id, openid, tier)."""
        rng = random.Random(f"{self.cinema.code}:members")
        first = datetime.combine(self.today - timedelta(days=HISTORY_DAYS * 3), time(12), SHANGHAI)
        wanted = {}
        for i in range(MEMBERS):
            openid = "o" + "".join(rng.choice(_OPENID_ALPHABET) for _ in range(27))
            tier = _weighted(rng, TIERS)
            seen = first + timedelta(minutes=i * 97 % (HISTORY_DAYS * 1440))
            wanted[openid] = Member(openid=openid, tier=tier, subscribed=True, first_seen=seen, last_seen=seen)
        openids = list(wanted)
        have = set()
        for i in range(0, len(openids), 500):
            have.update(await Member.filter(openid__in=openids[i:i + 500]).using_db(self.conn).values_list("openid", flat=True))
        await Member.bulk_create([m for o, m in wanted.items() if o not in have], batch_size=1000, using_db=self.conn)
        found = []
        for i in range(0, len(openids), 500):
            found += await Member.filter(openid__in=openids[i:i + 500]).using_db(self.conn).values_list("id", "openid", "tier")
        return sorted(found)

    # --- sales ----------------------------------------------------------------------------

    def _sell(self, day: date, members: list[tuple[int, str, str]]) -> None:
        rng = _day_rng(self.cinema, day, "sales")
        weekday = WEEKDAY_DEMAND[day.weekday()]
        for show in self.shows.get(day, []):
            hour = show.starts.astimezone(SHANGHAI).hour
            demand = SLOT_DEMAND.get(hour, 0.15) * weekday * FILM_APPEAL.get(show.film, 1.0)
            demand *= SCREEN_APPEAL.get(show.fmt, 1.0)
            if day.weekday() == 4 and hour >= 19:
                demand *= 1.3  # Friday night
            demand *= math.exp(rng.gauss(0, 0.35))
            if rng.random() < 0.08:
                demand *= 0.12  # a show nobody came to
            target = round(show.plan.capacity * min(demand, 0.96))
            sold = 0
            while sold < target:
                count = min(_weighted(rng, ORDER_SIZES), max(target - sold, 1))
                seats = self._pick(rng, show, count)
                if seats is None:
                    break
                order = self._order(rng, show, rng.choice(members), seats, self._bought_at(rng, show))
                sold += len(seats)
                self._finish(rng, order)

    def _pick(self, rng: random.Random, show: _Show, count: int) -> list[str] | None:
        row = rng.randint(1, show.plan.row_count) if rng.random() < 0.25 else None
        for n in range(count, 0, -1):
            found = best_seats(show.plan, show.taken, n, row=row) or best_seats(show.plan, show.taken, n)
            if found:
                return list(found)
        return None

    def _bought_at(self, rng: random.Random, show: _Show) -> datetime:
        lead = rng.random()
        if lead < 0.55:
            before = timedelta(minutes=rng.uniform(35, 8 * 60))
        elif lead < 0.88:
            before = timedelta(hours=rng.uniform(8, 72))
        else:
            before = timedelta(hours=rng.uniform(72, 144))
        return show.starts - before

    def _order(
        self, rng: random.Random, show: _Show, member: tuple[int, str, str], seats: list[str],
        at: datetime, changed_from: _Order | None = None,
    ) -> _Order:
        show.taken.update(seats)
        priced = quote(show.base, [(s, show.plan.kind(s) or "standard") for s in seats], member[2])
        q = {
            "lines": [{"seat": ln.seat, "kind": ln.kind, "fen": ln.fen} for ln in priced.lines],
            "total_fen": priced.total_fen, "tier": priced.tier, "discount": priced.discount,
        }
        order = _Order(
            no=f"{ORDER_PREFIX}{at.astimezone(SHANGHAI):%Y%m%d}{_hex(rng, 12)}", show=show, member=member,
            channel=rng.choice(("chat", "chat", "miniprogram")), seats=seats, quote=q,
            amount=priced.total_fen, paid=priced.total_fen, created=at,
            paid_at=at + timedelta(seconds=rng.uniform(20, 240)), changed_from=changed_from,
        )
        if changed_from is None:
            order.transaction_id = f"4200{order.paid_at.astimezone(SHANGHAI):%Y%m%d}{_digits(rng, 16)}"
            self.payments.append((order, order.amount, "issued", order.paid_at))
        self.orders.append(order)
        return order

    def _finish(self, rng: random.Random, order: _Order) -> None:
        """Refunded before the cut-off, or kept and (mostly) checked in at the gate."""
        cutoff = order.show.starts - timedelta(minutes=self.cinema.refund_cutoff_minutes)
        if order.changed_from is None and rng.random() < REFUND_SHARE and cutoff > order.paid_at:
            at = order.paid_at + (cutoff - order.paid_at) * rng.random()
            order.state, order.ticket_state = OrderState.REFUNDED, TicketState.REFUNDED
            order.refunded, order.closed_at = order.paid, at
            self.refunds.append((order, order.paid, "buyer", at))
            self._audit(order, "refunded", OrderState.ISSUED, at, {"reason": "buyer"})
            return
        if rng.random() < NO_SHOW_SHARE:
            return
        order.state, order.ticket_state = OrderState.CHECKED_IN, TicketState.CHECKED_IN
        order.checked_in_at = order.show.starts - timedelta(minutes=rng.uniform(2, 25))
        order.checked_in_by = _holder(rng, self.shifts, "floor", order.checked_in_at)

    def _changes(self) -> None:
        """A few orders changed (改签) to a later show of the same film, once each."""
        shows = [s for day in self.days for s in self.shows.get(day, [])]
        same_film: dict[tuple[int, str], list[_Show]] = defaultdict(list)
        for s in shows:
            same_film[(s.film_id, s.fmt)].append(s)
        rng = random.Random(f"{self.cinema.code}:{self.days[0]}:{self.days[-1]}:changes")
        cutoff = timedelta(minutes=self.cinema.change_cutoff_minutes)
        for old in list(self.orders):
            if old.state == OrderState.REFUNDED or old.changed_from is not None or rng.random() >= CHANGE_SHARE:
                continue
            at = old.paid_at + (old.show.starts - cutoff - old.paid_at) * rng.random()
            if at <= old.paid_at:
                continue
            targets = [t for t in same_film[(old.show.film_id, old.show.fmt)]
                       if t is not old.show and t.starts - cutoff > at and t.starts < at + timedelta(days=4)]
            if not targets:
                continue
            target = rng.choice(targets)
            seats = self._pick(rng, target, len(old.seats))
            if seats is None or len(seats) != len(old.seats):
                if seats:
                    target.taken.difference_update(seats)
                continue
            new = self._order(rng, target, old.member, seats, at, changed_from=old)
            value = old.paid - old.refunded
            due = new.quote["total_fen"] - value
            new.amount, new.paid, new.paid_at = max(due, 0), new.quote["total_fen"], at
            if due > 0:
                new.transaction_id = f"4200{at.astimezone(SHANGHAI):%Y%m%d}{_digits(rng, 16)}"
                self.payments.append((new, due, "changed", at))
            elif due < 0:
                self.refunds.append((old, -due, "change_difference", at))
            old.state, old.ticket_state, old.closed_at = OrderState.CHANGED, TicketState.CHANGED, at
            old.checked_in_at = old.checked_in_by = None
            self._audit(old, "changed", OrderState.ISSUED, at, {"to": new.no})
            self._finish(rng, new)
            self.report.changes += 1

    def _audit(self, order: _Order, action: str, before: OrderState, at: datetime, detail: dict[str, Any]) -> None:
        # What counts against the buyer's monthly refund/change quota (ticketing.quota_used).
        self.audits.append(AuditLog(
            cinema_id=self.cinema.id, entity="order", entity_id=order.no, action=action,
            from_state=before.value, to_state=action, actor=order.member[1], detail=detail, at=at,
        ))

    async def _write_sales(self) -> None:
        conn = self.conn
        hold = self.cinema.hold_minutes

        def row(o: _Order, changed_from_id: int | None = None) -> dict[str, Any]:
            return {
                "no": o.no, "cinema_id": self.cinema.id, "showtime_id": o.show.id, "member_id": o.member[0],
                "openid": o.member[1], "channel": o.channel, "state": o.state, "hold_id": o.no[-12:].lower(),
                "seats": o.seats, "quote": o.quote, "amount_fen": o.amount, "paid_fen": o.paid,
                "refunded_fen": o.refunded, "expires_at": o.created + timedelta(minutes=hold),
                "transaction_id": o.transaction_id, "changed_from_id": changed_from_id, "created_at": o.created,
                "paid_at": o.paid_at, "closed_at": o.closed_at, "note": "",
            }

        first = [o for o in self.orders if o.changed_from is None]
        await _insert(conn, Order, [row(o) for o in first])
        ids = await self._order_ids([o.no for o in first])
        second = [o for o in self.orders if o.changed_from is not None]
        await _insert(conn, Order, [row(o, ids[o.changed_from.no]) for o in second if o.changed_from])
        ids.update(await self._order_ids([o.no for o in second]))
        rng = random.Random(f"{self.cinema.code}:{self.days[0]}:{self.days[-1]}:tickets")
        tickets = []
        for o in self.orders:
            share = o.paid // max(len(o.seats), 1)
            prices = {ln["seat"]: ln["fen"] for ln in o.quote["lines"]}
            standing = o.ticket_state in (TicketState.ISSUED, TicketState.CHECKED_IN)
            for seat in o.seats:
                tickets.append({
                    "order_id": ids[o.no], "showtime_id": o.show.id, "seat": seat,
                    "kind": o.show.plan.kind(seat) or "standard", "price_fen": prices.get(seat, share),
                    "secret": _secret(rng), "state": o.ticket_state, "active": True if standing else None,
                    "checked_in_at": o.checked_in_at, "checked_in_by": o.checked_in_by,
                })
        await _insert(conn, Ticket, tickets)
        await _insert(conn, Payment, [
            {"order_id": ids[o.no], "transaction_id": o.transaction_id, "amount_fen": fen, "outcome": outcome,
             "received_at": at}
            for o, fen, outcome, at in self.payments
        ])
        await Refund.bulk_create(
            [Refund(order_id=ids[o.no], no=f"RF{at.astimezone(SHANGHAI):%Y%m%d}{_hex(rng, 12)}", amount_fen=fen,
                    reason=reason, state=RefundState.SUCCEEDED, attempts=1, created_at=at,
                    accepted_at=at + timedelta(seconds=2), done_at=at + timedelta(minutes=rng.uniform(1, 90)),
                    refund_id=f"5030{_digits(rng, 25)}")
             for o, fen, reason, at in self.refunds],
            using_db=conn,
        )
        await AuditLog.bulk_create(self.audits, using_db=conn)
        self.report.orders, self.report.tickets = len(self.orders), len(tickets)
        self.report.refunds = sum(1 for _, _, reason, _ in self.refunds if reason == "buyer")

    async def _order_ids(self, numbers: list[str]) -> dict[str, int]:
        ids: dict[str, int] = {}
        for i in range(0, len(numbers), 500):
            chunk = numbers[i:i + 500]
            ids.update(await Order.filter(no__in=chunk).using_db(self.conn).values_list("no", "id"))
        return ids

    # --- ratings ----------------------------------------------------------------------------

    async def _ratings(self) -> list[FeedbackResponse]:
        """Ratings of the visits, as the touchpoints collect them; their ids filled in."""
        points = await Touchpoint.filter(cinema_id=self.cinema.id, active=True).using_db(self.conn)
        exits = {t.hall: t for t in points if t.kind == TouchpointKind.HALL_EXIT}
        others = [t for t in points if t.kind in (*PRINTED, TouchpointKind.ETICKET) and t.kind != TouchpointKind.HALL_EXIT]
        push = next((t for t in points if t.kind == TouchpointKind.PUSH), None)
        if not exits or push is None:
            return []
        came = defaultdict(list)
        for o in self.orders:
            if o.state == OrderState.CHECKED_IN:
                came[business_day(o.show.starts)].append(o)
        made: list[FeedbackResponse] = []
        for day in self.days:
            rng = _day_rng(self.cinema, day, "ratings")
            seen: set[tuple[str, int]] = set()
            visits = came.get(day, [])
            for _ in range(round(len(visits) * RESPONSE_SHARE) + rng.randint(0, 3)):
                if not visits:
                    break
                o = rng.choice(visits)
                anonymous = rng.random() < 0.08
                where = rng.random()
                tp = (exits.get(o.show.hall) or push) if where < 0.45 else push if where < 0.85 else rng.choice(others or [push])
                visitor = f"h5:{_hex(rng, 16).lower()}" if anonymous else o.member[1]
                if anonymous and not tp.printed:
                    tp = exits.get(o.show.hall) or tp
                if (visitor, tp.id) in seen:
                    continue
                seen.add((visitor, tp.id))
                made.append(self._rating(rng, o, tp, visitor, day, anonymous))
        await FeedbackResponse.bulk_create(made, batch_size=1000, using_db=self.conn)
        ids = {
            (v, d, t): i for i, v, d, t in await FeedbackResponse.filter(
                cinema_id=self.cinema.id, visit_day__gte=self.days[0], visit_day__lte=self.days[-1]
            ).using_db(self.conn).values_list("id", "visitor", "visit_day", "touchpoint_id")
        }
        for r in made:
            r.id = ids[(r.visitor, r.visit_day, r.touchpoint_id)]  # type: ignore[attr-defined]
        self.report.responses = len(made)
        return made

    def _rating(
        self, rng: random.Random, o: _Order, tp: Touchpoint, visitor: str, day: date, anonymous: bool,
    ) -> FeedbackResponse:
        stars = _weighted(rng, ((5, 55), (4, 25), (3, 10), (2, 6), (1, 4)))
        nps: int | None = None
        if rng.random() < 0.8:
            nps = {5: rng.choice((8, 9, 9, 10, 10, 10)), 4: rng.choice((7, 8, 8, 9)),
                   3: rng.choice((5, 6, 7)), 2: rng.choice((2, 3, 4)), 1: rng.choice((0, 1, 2))}[stars]
        comment, category, sentiment, phone = "", None, None, None
        if stars <= 2 or rng.random() < 0.3:
            pool = NEGATIVE if stars <= 2 else NEUTRAL if stars == 3 else POSITIVE
            category, sentiment, comment = rng.choice(pool)
            if sentiment == "neg" and rng.random() < 0.35:
                number = f"1{rng.choice('3589')}{_digits(rng, 9)}"
                if rng.random() < 0.5:
                    comment += f"，请联系我 {number}"
                else:
                    phone = number
        aspects = [a for a, c in ASPECT_CATEGORIES.items() if c == category] if stars <= 3 and category else []
        if stars <= 3 and not comment and rng.random() < 0.7:
            aspects = [rng.choice(list(ASPECT_CATEGORIES))]  # a quick tap instead of words
        # Rated on the way home; after midnight soon after, before the cinema closes at 02:00.
        late = o.show.ends.astimezone(SHANGHAI).hour < 9
        at = o.show.ends + timedelta(minutes=rng.uniform(10, 40 if late else 100))
        linked = not anonymous and tp.kind != TouchpointKind.CHAT
        return FeedbackResponse(
            cinema_id=self.cinema.id, touchpoint_id=tp.id, visitor=visitor, visit_day=day,
            channel="push" if tp.kind == TouchpointKind.PUSH else "h5" if anonymous else "chat",
            showtime_id=o.show.id if linked else None, film_id=o.show.film_id if linked else None,
            film_title=o.show.film if linked else None, hall=o.show.hall if linked else None,
            show_starts_at=o.show.starts if linked else None, stars=stars, nps=nps, aspects=aspects,
            comment=comment, phone=phone, category=category, sentiment=sentiment,
            priority=priority_of(comment), created_at=at, updated_at=at + timedelta(seconds=rng.uniform(5, 120)),
        )

    # --- the service desk -------------------------------------------------------------------

    def _ref(self, rng: random.Random) -> str:
        while True:
            ref = "W" + "".join(rng.choice(_REF_ALPHABET) for _ in range(5))
            if ref not in self.refs:
                self.refs.add(ref)
                return ref

    async def _desk(self, responses: list[FeedbackResponse]) -> None:
        """Complaints of the alarming ratings, the day's other work orders, their timelines."""
        planned: list[tuple[WorkOrder, list[dict[str, Any]], FeedbackResponse | None]] = []
        halls = sorted({s.hall for shows in self.shows.values() for s in shows})
        points = {t.id: t for t in await Touchpoint.filter(cinema_id=self.cinema.id).using_db(self.conn)}
        by_day: dict[date, list[FeedbackResponse]] = defaultdict(list)
        for r in responses:
            by_day[r.visit_day].append(r)
        last = self.days[-1]
        for day in self.days:
            rng = _day_rng(self.cinema, day, "desk")
            for r in by_day.get(day, []):
                if _alarming(r):
                    planned.append(await self._complaint(rng, r, points[r.touchpoint_id]))  # type: ignore[attr-defined]
            for _ in range(_weighted(rng, ((1, 3), (2, 4), (3, 3), (4, 1)))):
                waiting = day == last and not any(o.state == "paused" for o, _, _ in planned)
                planned.append(await self._desk_order(rng, day, halls, waiting))
        await WorkOrder.bulk_create([o for o, _, _ in planned], batch_size=500, using_db=self.conn)
        ids = dict(await WorkOrder.filter(ref__in=[o.ref for o, _, _ in planned]).using_db(self.conn).values_list("ref", "id"))
        events = [
            WorkOrderEvent(work_order_id=ids[o.ref], **e) for o, timeline, _ in planned for e in timeline
        ]
        await WorkOrderEvent.bulk_create(events, batch_size=1000, using_db=self.conn)
        for o, _, r in planned:
            if r is not None:
                await FeedbackResponse.filter(id=r.id).using_db(self.conn).update(  # type: ignore[attr-defined]
                    work_order_id=ids[o.ref], follow_up=r.follow_up, follow_up_at=r.follow_up_at,
                )
        self.report.work_orders = len(planned)

    async def _complaint(
        self, rng: random.Random, r: FeedbackResponse, tp: Touchpoint,
    ) -> tuple[WorkOrder, list[dict[str, Any]], FeedbackResponse]:
        """The complaint ``domain.feedback.raise_alert`` opens for an alarming rating."""
        category = r.category if r.category and r.category != "other" else next(
            (ASPECT_CATEGORIES[a] for a in r.aspects or () if a in ASPECT_CATEGORIES), r.category or "other"
        )
        severity = "P1" if r.priority == "P1" else "P2" if r.priority == "P2" or (r.stars or 5) <= 2 else "P3"
        anonymous = r.visitor.startswith("h5:")
        hall = r.hall or tp.hall
        line = f"差评 {_stars_text(r)}" + (f"「{r.comment[:30]}」" if r.comment else "")
        if r.film_title and r.show_starts_at:
            line += f" 《{r.film_title}》{r.show_starts_at.astimezone(SHANGHAI):%H:%M} {r.hall or ''}".rstrip()
        details = [f"评分：{_stars_text(r) or '—'}"]
        if r.comment:
            details.append(f"留言：{r.comment}")
        opened = r.updated_at
        team = await team_for(self.cinema.id, category, Kind.COMPLAINT, hall, opened)
        order = WorkOrder(
            ref=self._ref(rng), cinema_id=self.cinema.id, kind=Kind.COMPLAINT, category=category,
            severity=severity, source="qr" if tp.kind in (*PRINTED, TouchpointKind.ETICKET) else "chat",
            source_key=f"feedback:{r.id}", hall=hall, touchpoint=tp.name, summary=line[:120],  # type: ignore[attr-defined]
            description="\n".join(details), reporter=r.visitor, reporter_role="visitor" if anonymous else "audience",
            reporter_name="匿名顾客（网页）" if anonymous else "顾客", team=team, watchers=["manager01"],
            created_at=opened,
        )
        reply = REPLIES.get(category, "感谢您的反馈，我们已经处理。")
        timeline = self._timeline(rng, order, opened, reply, resolver="manager01" if not anonymous else None)
        if not anonymous:
            r.follow_up = FollowUp.RESOLVED if rng.random() < 0.6 else FollowUp.ASKED
            r.follow_up_at = order.updated_at
        return order, timeline, r

    async def _desk_order(
        self, rng: random.Random, day: date, halls: list[str], waiting: bool,
    ) -> tuple[WorkOrder, list[dict[str, Any]], None]:
        kind, category, summary, role, severity = rng.choices(DESK, DESK_WEIGHTS)[0]
        if waiting:
            kind, category, summary, role, severity = DESK[0]
        hall = rng.choice(halls) if halls else "1号厅"
        text = summary.format(hall=hall, row=rng.randint(2, 9), col=rng.randint(3, 14))
        opened = datetime.combine(day, time(rng.randint(10, 22), rng.randint(0, 59)), SHANGHAI).astimezone(UTC)
        if role == "audience":
            reporter, name = "o" + "".join(rng.choice(_OPENID_ALPHABET) for _ in range(27)), "顾客"
        else:
            reporter = _holder(rng, self.shifts, "floor" if role == "staff" else "management", opened)
            name = ""
        team = await team_for(self.cinema.id, category, kind, hall if "{hall}" in summary else None, opened)
        order = WorkOrder(
            ref=self._ref(rng), cinema_id=self.cinema.id, kind=kind, category=category, severity=severity,
            source="chat" if role == "audience" else "staff", hall=hall if "{hall}" in summary else None,
            summary=text, reporter=reporter, reporter_role=role, reporter_name=name, team=team,
            created_at=opened,
        )
        timeline = self._timeline(rng, order, opened, DESK_ACTIONS.get(category, "已处理完毕"), waiting=waiting)
        return order, timeline, None

    def _timeline(
        self, rng: random.Random, order: WorkOrder, opened: datetime, action: str, *,
        resolver: str | None = None, waiting: bool = False,
    ) -> list[dict[str, Any]]:
        """What ``open_order`` and ``act`` write: open, assign, [SLA warning, escalate],
        acknowledge, start, resolve (or pause, waiting for parts); the order's fields follow."""
        events: list[dict[str, Any]] = []
        holder = _holder(rng, self.shifts, order.team, opened)
        state, version = "open", 0

        def move(action_: str, at: datetime, actor: str, to: str, detail: dict[str, Any] | None = None) -> None:
            nonlocal state, version
            events.append({"at": at, "actor": actor, "action": action_, "from_state": state, "to_state": to,
                           "detail": detail or {}, "message_key": None, "internal": False})
            state, version = to, version + (action_ not in ("sla_warning",))

        events.append({"at": opened, "actor": order.reporter, "action": "open", "from_state": None,
                       "to_state": "open", "detail": {"team": order.team}, "message_key": order.source_key,
                       "internal": False})
        move("assign", opened, "system", "assigned", {"assignee": holder})
        watchers = list(order.watchers)
        limit = ACK_MINUTES.get(str(order.kind))
        at = opened
        if limit and rng.random() < 0.12:  # nobody answered in time: the SLA job steps in
            due = opened + timedelta(minutes=limit)
            events.append({"at": opened + timedelta(minutes=limit * 0.8), "actor": "system", "action": "sla_warning",
                           "from_state": state, "to_state": state, "internal": False, "message_key": None,
                           "detail": {"clock": "ack", "assignee_before": holder, "due_at": due.isoformat()}})
            others = [p for p in _on_duty(self.shifts, order.team, due) if p != holder]
            nxt = rng.choice(others) if others else "manager01" if holder != "manager01" else holder
            move("escalate", due, "system", "escalated",
                 {"clock": "ack", "assignee_before": holder, "assignee": nxt, "level": 1})
            if holder not in watchers:
                watchers.append(holder)
            holder, at = nxt, due
        at += timedelta(minutes=rng.uniform(0.5, (limit or 40) * 0.8))
        move("acknowledge", at, holder, "acknowledged")
        if order.kind == Kind.FAULT:
            at += timedelta(minutes=rng.uniform(2, 15))
            move("start", at, holder, "in_progress")
        if waiting:
            at += timedelta(minutes=rng.uniform(10, 40))
            move("pause", at, holder, "paused", {"note": PARTS_WAIT})
            order.action = ""
        else:
            spans = {Kind.LOST_FOUND: (60, 600), Kind.GROUP_BOOKING: (60, 480), Kind.FAULT: (20, 300)}
            lo, hi = spans.get(order.kind, (8, 80))
            at += timedelta(minutes=rng.uniform(lo, hi))
            who = resolver or holder
            move("resolve", at, who, "resolved", {"action": action, "cause": action})
            order.action = order.cause = action
        order.assignee, order.watchers, order.state = holder, watchers, state
        order.updated_at, order.version = at, version
        return events

    # --- projectors --------------------------------------------------------------------------

    async def _devices(self) -> None:
        """Device days, recent minutes, one ageing light source, one alert, snapshots."""
        devices = await Projector.filter(cinema_id=self.cinema.id).using_db(self.conn).prefetch_related("hall").order_by("hall_id")
        if not devices:
            return
        ageing = next((p for p in devices if p.hall.name == "5号厅"), devices[-1])
        window = [self.today - timedelta(days=i) for i in range(HISTORY_DAYS, 0, -1)]
        recent = set(window[-MINUTE_DAYS:])
        days_rows: list[rollups.DeviceDay] = []
        minutes: list[_Minute] = []
        shows = {d: defaultdict(list) for d in self.days}
        for d in self.days:
            for s in self.shows.get(d, []):
                shows[d][s.hall].append(s)
        alert_day = window[-5] if window[-5] in self.days else None
        # A day a real telemetry process already wrote (the demo ran then) is left as it is.
        written = set(await rollups.DeviceDay.filter(
            cinema_id=self.cinema.id, day__in=self.days
        ).using_db(self.conn).values_list("device_id", "day"))
        latest: dict[str, tuple[float, float]] = {}  # device -> (light hours, brightness) of its last day
        for p in devices:
            rng = random.Random(f"{self.cinema.code}:{p.device_id}")
            hours0 = 27100.0 if p is ageing else rng.choice((4300.0, 6200.0, 9100.0, 11800.0, 15800.0))
            latest[p.device_id] = (hours0 + HISTORY_DAYS * 13.5, 81.3 if p is ageing else 96.0 - rng.uniform(0, 2))
            for d in self.days:
                i = window.index(d)
                drng = _day_rng(self.cinema, d, p.device_id)
                played = sorted(shows[d].get(p.hall.name, []), key=lambda s: s.starts)
                if not played or (p.device_id, d) in written:
                    continue
                light_on = sum((s.ends - s.starts).total_seconds() / 60 for s in played)
                hours = hours0 + i * 13.5
                bright = (88.0 - 6.7 * i / (HISTORY_DAYS - 1)) if p is ageing else 96.0 - drng.uniform(0, 2.5)
                temp_hi = 47.0 if p.hall.name == "IMAX厅" else 43.0
                end = played[-1].ends
                days_rows.append(_day(p, d, "light_hours", int(light_on), hours, hours + light_on / 60,
                                      int(light_on) * (hours + light_on / 120), end))
                dip = 79.4 if (p is ageing and d == alert_day) else bright - drng.uniform(0.3, 0.9)
                if d in recent:
                    minutes.extend(_minutes(self.cinema.id, p.device_id, played, bright, temp_hi, drng))
                else:
                    n = int(light_on)
                    days_rows.append(_day(p, d, "brightness_pct", n, dip, bright + 0.6, n * bright, end, bright - 0.2))
                    powered = int((end - played[0].starts).total_seconds() / 60) + 45
                    days_rows.append(_day(p, d, "temperature_c", powered, 30.5 + drng.uniform(0, 1.5),
                                          temp_hi + drng.uniform(0, 1.5), powered * (temp_hi - 4.5), end))
                score = (79 - 22 * i / (HISTORY_DAYS - 1) + drng.uniform(-2, 2)) if p is ageing else 97 - drng.uniform(0, 6)
                if p is ageing and d == alert_day:
                    score -= 12
                score = round(max(0.0, min(100.0, score)))
                low = max(0.0, score - drng.uniform(0, 6))
                days_rows.append(_day(p, d, rollups.HEALTH, 96, round(low), min(100.0, score + drng.uniform(0, 3)),
                                      96 * (score + low) / 2, day_bounds(d)[1] - timedelta(minutes=1), score))
        await rollups.DeviceDay.bulk_create(days_rows, batch_size=1000, using_db=self.conn)
        self.report.minutes = await record_minutes(minutes)
        if alert_day is not None:
            await self._alert(ageing, alert_day, shows[alert_day].get(ageing.hall.name, []))
        fresh = [p for p in devices if p.health_at is None]
        await projectors.save_health(
            [(p.device_id, *_snapshot(p is ageing, *latest[p.device_id], self.now)) for p in fresh], self.now
        )

    async def _alert(self, device: Projector, day: date, played: list[_Show]) -> None:
        """The brightness alert of the ageing projector's evening show, and its work order."""
        if not played:
            return
        rng = _day_rng(self.cinema, day, "alert")
        show = played[-2] if len(played) > 1 else played[-1]
        fired = show.starts + timedelta(minutes=35)
        resolved = fired + timedelta(minutes=48)
        rule, hall = "brightness_low", device.hall.name
        stamp = int(fired.timestamp())
        fingerprint = hashlib.sha1(f"{device.device_id}\x1f{rule}".encode()).hexdigest()[:16]
        alert_id = f"{device.device_id}:{rule}:{fingerprint}-1@{stamp}"
        message = "亮度 79.4%，低于红线 80%"
        order = WorkOrder(
            ref=self._ref(rng), cinema_id=self.cinema.id, kind=Kind.ALERT, category="picture", severity="P2",
            source="telemetry", source_key=f"alert:{alert_id}", hall=hall[:16], summary=f"{hall}放映机：亮度低于红线",
            description=f"{device.device_id}：{message}", reporter="telemetry", reporter_role="system",
            reporter_name="设备监测", team="engineering", created_at=fired,
        )
        timeline = self._timeline(rng, order, fired, RECOVERED_BRIGHTNESS)
        detail = {"alert_id": alert_id, "device_id": device.device_id, "rule": rule, "severity": "warning",
                  "spark": "▇▇▆▆▅▅▄▃▂▂▁▁"}
        timeline.insert(1, {"at": fired, "actor": "telemetry", "action": "alert", "from_state": "open",
                            "to_state": "open", "detail": detail, "message_key": None, "internal": True})
        await WorkOrder.bulk_create([order], using_db=self.conn)
        saved = await WorkOrder.get(ref=order.ref).using_db(self.conn)
        await WorkOrderEvent.bulk_create(
            [WorkOrderEvent(work_order_id=saved.id, **e) for e in timeline], using_db=self.conn
        )
        await AlertRecord.create(
            alert_id=alert_id, cinema_id=self.cinema.id, device_id=device.device_id, hall=hall, rule=rule,
            severity="warning", state="resolved", message=message, value=79.4, limit=80.0, fired_at=fired,
            resolved_at=resolved, work_order_id=saved.id, created_at=fired,
            acknowledged_at=next((e["at"] for e in timeline if e["action"] == "acknowledge"), None),
            acknowledged_by=saved.assignee or "", spark=detail["spark"], using_db=self.conn,
        )
        self.report.alerts, self.report.work_orders = 1, self.report.work_orders + 1


async def _insert(conn: BaseDBAsyncClient, model: type[Model], rows: list[dict[str, Any]], chunk: int = 2000) -> None:
    """``bulk_create`` without a model instance per row (the bulk of the seeding's time at
    tens of thousands of tickets): the same INSERT, each value converted by its field."""
    if not rows:
        return
    names = list(rows[0])
    fields_map = model._meta.fields_map
    columns = ",".join(f'"{model._meta.fields_db_projection[n]}"' for n in names)
    if conn.capabilities.dialect == "sqlite":
        marks = ",".join("?" * len(names))
    else:
        marks = ",".join(f"${i}" for i in range(1, len(names) + 1))
    sql = f'INSERT INTO "{model._meta.db_table}" ({columns}) VALUES ({marks})'
    convert = [fields_map[n].to_db_value for n in names]
    values = [[f(row[n], None) for f, n in zip(convert, names, strict=True)] for row in rows]
    for i in range(0, len(values), chunk):
        await conn.execute_many(sql, values[i:i + chunk])


def _alarming(r: FeedbackResponse) -> bool:
    """``domain.feedback.is_alarming``: 1–2 stars, NPS 0–6, an urgent or escalating negative comment."""
    if (r.stars is not None and r.stars <= 2) or (r.nps is not None and r.nps <= 6) or r.priority == "P1":
        return True
    return r.priority == "P2" and r.sentiment == "neg"


def _stars_text(r: FeedbackResponse) -> str:
    parts = [f"{r.stars}星"] if r.stars is not None else []
    if r.nps is not None:
        parts.append(f"推荐{r.nps}分")
    return "/".join(parts)


def _day(
    p: Projector, d: date, metric: str, n: int, vmin: float, vmax: float, vsum: float, last: datetime,
    vlast: float | None = None,
) -> rollups.DeviceDay:
    return rollups.DeviceDay(
        cinema_id=p.cinema_id, device_id=p.device_id, day=d, metric=metric, n=n,  # type: ignore[attr-defined]
        vmin=round(vmin, 2), vmax=round(vmax, 2), vsum=round(vsum, 2),
        vlast=round(vmax if vlast is None else vlast, 2), last_at=last,
    )


@dataclass(frozen=True, slots=True)
class _Minute:
    cinema_id: int
    device_id: str
    minute: datetime
    metric: str
    n: int
    vmin: float
    vmax: float
    vsum: float


def _minutes(
    cinema_id: int, device_id: str, played: list[_Show], bright: float, temp_hi: float, rng: random.Random,
) -> list[_Minute]:
    """A day's minutes (six readings each): the temperature while powered, warming through a
    show and cooling between, and the screen's brightness while the light is on."""
    out: list[_Minute] = []
    start = played[0].starts - timedelta(minutes=30)
    end = played[-1].ends + timedelta(minutes=15)
    temp, at = 29.0, start
    while at < end:
        on = any(s.starts <= at < s.ends for s in played)
        goal = temp_hi if on else 31.0
        temp += (goal - temp) / (18.0 if on else 30.0) + rng.uniform(-0.15, 0.15)
        out.append(_Minute(cinema_id, device_id, at, "temperature_c", 6, temp - 0.3, temp + 0.3, 6 * temp))
        if on:
            b = bright + rng.uniform(-0.4, 0.4)
            out.append(_Minute(cinema_id, device_id, at, "brightness_pct", 6, b - 0.2, b + 0.2, 6 * b))
        at += timedelta(minutes=1)
    return out


def _snapshot(ageing: bool, hours: float, bright: float, now: datetime) -> tuple[int, dict[str, Any]]:
    """A health snapshot as the telemetry process writes it (``telemetry.health``)."""
    hours, bright = round(hours, 1), round(bright, 1)
    if ageing:
        score, days, quality = 55, 6.0, 55
        reasons = [f"亮度 {bright:.1f}%，接近红线 80%", "预计 6 天后亮度降到红线",
                   f"光源 {hours:.0f} 小时，接近额定寿命 30000 小时"]
    else:
        score, days, reasons, quality = 100, None, [], 100
    return score, {
        "score": score, "grade": "良好" if score >= 80 else "注意" if score >= 50 else "危险", "safety": 100,
        "quality": quality, "reasons": reasons, "at": now.astimezone(UTC).isoformat(),
        "last_seen": now.astimezone(UTC).isoformat(), "power": 1, "temperature_c": 41.2, "ambient_c": 24.5,
        "brightness_pct": bright, "fan_rpm": 2150, "usual_fan_rpm": 2180, "light_hours": hours,
        "rated_light_hours": 30000.0, "red_line_pct": 80.0, "critical_line_pct": 50.0,
        "days_to_red_line": days, "alerts": [],
    }
