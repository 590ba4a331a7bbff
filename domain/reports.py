"""Every figure a manager reads — the console's sections, the daily digest and the answers to
managers' questions in chat — computed in one place, so they always agree.

A :class:`Period` is a set of cinemas and business days ``start``..``end`` inclusive (the day
ends at 03:00: ``domain.feedback.business_day``). The section functions read the daily
rollups (``domain.rollups``), a few queries each, and aggregate in Python:

* :func:`experience` — ``FeedbackDay``: NPS, CSAT, stars, by film / hall / day, the
  categories of comments; complaints from ``ServiceDay`` (kind ``complaint``);
* :func:`service` — ``ServiceDay``: opened / acknowledged / resolved, times, SLA breaches;
  the open items now are the one live query of raw rows (bounded);
* :func:`sales` — ``ShowSales``: tickets, revenue, refunds, changes, occupancy, presale;
* :func:`projectors` — the projectors' health snapshots, ``DeviceDay`` trends, alerts;
* :func:`digest` — one cinema's business day, built from the functions above.

The drill-downs (:func:`tickets`, :func:`responses`, :func:`comments`, :func:`work_orders`,
:func:`alerts`) read the raw rows behind a figure, a bounded page at a time.

Conventions: money in fen (int); shares (CSAT, occupancy, category shares) are floats 0..1;
NPS is a score −100..100 with its interval in the same unit; durations are seconds; an
empty group has ``None`` for what cannot be computed, never 0. Counts of groups follow the
rollups: a work order counts on the business day it was opened (``acknowledged`` and
``resolved`` are those of the orders opened in the period), a rating on its visit's day, a
ticket on its show's day.
"""

from __future__ import annotations

import heapq
import math
import operator
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import chain, repeat
from typing import Any, Generic, TypeVar

from tortoise.expressions import Q, Subquery
from tortoise.functions import Count

from domain.catalog import Film, Showtime
from domain.cinemas import Hall
from domain.days import DAY_ENDS, SHANGHAI, business_day, day_bounds
from domain.devices import AlertRecord, Projector, TelemetryRule
from domain.feedback import FeedbackResponse, Nps, csat_of, median, nps_of, wilson
from domain.orders import Ticket, TicketState
from domain.projectors import CRITICAL_LINE, HEALTH_STALE, NO_DATA, RED_LINE
from domain.rollups import DeviceDay, FeedbackDay, ServiceDay, ShowSales
from domain.seating import SeatPlan
from domain.workorders import (
    ACTIVE,
    CATEGORY_LABELS,
    KIND_LABELS,
    TEAM_LABELS,
    WorkOrder,
    WorkOrderEvent,
)

T = TypeVar("T")

RANGES = ("today", "7d", "30d", "custom")
MAX_DAYS = 366  # the longest custom range
PRESALE_DAYS = 7  # the week ahead: business days today+1 .. today+7
# The brightness red line when neither the projector, its cinema nor its snapshot says one:
# telemetry.rules.DeviceRules.brightness_warning_pct (the domain does not import telemetry).
DEFAULT_RED_LINE_PCT = 80.0
DEFAULT_CRITICAL_LINE_PCT = 50.0  # DeviceRules.brightness_critical_pct
# The digest's projector exceptions: a health score below this (the grade 危险,
# telemetry.health.WATCH_FROM) or a firing critical alert.
HEALTH_EXCEPTION_BELOW = 50
# Work-order states the rollup counts as resolved (domain.rollups.DONE).
RESOLVED = ("resolved", "closed")
OPEN_ITEMS_LIMIT = 50  # open work orders listed on the service page (the count is exact)
HISTORY_LIMIT = 200  # alerts listed in a period's history (the count is exact)
BREACHES_LIMIT = 200  # SLA breaches listed (the count is exact)
PAGE_LIMIT = 200  # the most rows a drill-down returns at once


class ReportError(ValueError):
    """A period or filter that cannot be read (bad range, end before start, too long)."""


# --- the period -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Period:
    """Cinemas and business days ``start``..``end`` inclusive."""

    cinema_ids: tuple[int, ...]
    start: date
    end: date

    @property
    def days(self) -> tuple[date, ...]:
        return tuple(self.start + timedelta(days=i) for i in range((self.end - self.start).days + 1))


def today(now: datetime) -> date:
    """The business day ``now`` belongs to (03:00 to 03:00, Shanghai)."""
    return business_day(now)


def period_for(range_: str, today: date, start: date | None = None, end: date | None = None) -> tuple[date, date]:
    """(start, end) of a range: ``today``; ``7d`` / ``30d`` = the last 7 / 30 business days
    ending today; ``custom`` = ``start``..``end`` (end defaults to start; at most
    :data:`MAX_DAYS` days). Raises :class:`ReportError` for anything else."""
    if range_ == "today":
        return today, today
    if range_ in ("7d", "30d"):
        return today - timedelta(days=int(range_[:-1]) - 1), today
    if range_ != "custom":
        raise ReportError(f"range 应为 {'|'.join(RANGES)}")
    if start is None:
        raise ReportError("自定义范围需要开始日期")
    end = start if end is None else end
    if end < start:
        raise ReportError("结束日期早于开始日期")
    if (end - start).days + 1 > MAX_DAYS:
        raise ReportError(f"范围最长 {MAX_DAYS} 天")
    return start, end


def _bounds(p: Period) -> tuple[datetime, datetime]:
    """The UTC instants [start, end) of the period's business days."""
    return day_bounds(p.start)[0], day_bounds(p.end)[1]


def _days(p: Period) -> dict[str, Any]:
    return {"cinema_id__in": list(p.cinema_ids), "day__gte": p.start, "day__lte": p.end}


def _share(k: int, n: int) -> float | None:
    return k / n if n else None


def _expand(counts: Sequence[int], first: int) -> Iterator[int]:
    """Counts of consecutive values (``first``, ``first + 1``, …) as the values themselves."""
    return chain.from_iterable(repeat(v, c) for v, c in enumerate(counts, start=first) if c)


def _add(into: list[int], counts: Sequence[int] | None) -> None:
    for i, c in enumerate(counts or ()):
        if i < len(into):
            into[i] += int(c)


def _counts(counts: Sequence[int] | None, size: int) -> list[int]:
    """A stored count list as exactly ``size`` ints (short lists padded, extra values dropped,
    as :func:`_add` does)."""
    values = [int(c) for c in (counts or ())[:size]]
    return values + [0] * (size - len(values))


def _page_args(limit: int, offset: int) -> tuple[int, int]:
    if limit < 1 or offset < 0:
        raise ReportError("limit/offset 无效")
    return min(limit, PAGE_LIMIT), offset


def _page(rows: Sequence[T], offset: int, limit: int) -> Page[T]:
    return Page(tuple(rows[:limit]), offset, limit, len(rows) > limit)


# --- measures -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Satisfaction:
    """CSAT: the share of ratings with 4–5 stars, with its 95 % Wilson interval (0..1)."""

    n: int
    satisfied: int
    share: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True, slots=True)
class Durations:
    """Seconds from opening to acknowledgement (or resolve): median and p90 (nearest rank)."""

    n: int
    median: float | None
    p90: float | None


@dataclass(frozen=True, slots=True)
class CategoryCount:
    category: str  # workorders.CATEGORIES value
    label: str  # CATEGORY_LABELS: 座椅, 温度, ...
    count: int
    share: float  # of the total of its list, 0..1


def satisfaction(stars: Sequence[int]) -> Satisfaction:
    """CSAT of star counts ``[n1, …, n5]``."""
    c = csat_of(_expand(stars, 1))
    if not c.n:
        return Satisfaction(0, 0, None, None, None)
    low, high = wilson(c.satisfied, c.n)
    return Satisfaction(c.n, c.satisfied, c.satisfied / c.n, low, high)


def nps_of_counts(scores: Sequence[int]) -> Nps:
    """NPS of score counts ``[n0, …, n10]`` (``domain.feedback.nps_of``)."""
    return nps_of(_expand(scores, 0))


def stars_average(stars: Sequence[int]) -> float | None:
    n = sum(stars)
    return sum(v * c for v, c in enumerate(stars, start=1)) / n if n else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest rank: the smallest value with at least ``q`` of the values at or below it."""
    if not values:
        return None
    return values[max(0, math.ceil(q * len(values)) - 1)]


def durations(sorted_lists: Iterable[Sequence[float]]) -> Durations:
    """Median and p90 of sorted lists merged (each rollup bucket keeps its own sorted)."""
    values = list(heapq.merge(*sorted_lists))
    return Durations(len(values), median(values), percentile(values, 0.9))


def _categories(counts: Counter[str]) -> tuple[CategoryCount, ...]:
    total = sum(counts.values())
    return tuple(
        CategoryCount(c, CATEGORY_LABELS.get(c, c), k, k / total)
        for c, k in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if k
    )


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of drill-down rows; ``more``: rows follow after this page."""

    rows: tuple[T, ...]
    offset: int
    limit: int
    more: bool


# --- experience ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RatingGroup:
    """The ratings of one film, hall or day."""

    key: str  # film id (str) / hall name / ISO day; "" = unknown film or hall
    label: str  # film title / hall name / ISO day; 未关联场次 / 未关联影厅
    responses: int
    nps: Nps
    csat: Satisfaction
    stars_avg: float | None
    cinema_id: int | None = None  # by_hall: the hall's cinema


@dataclass(frozen=True, slots=True)
class Experience:
    period: Period
    responses: int
    nps: Nps  # score −100..100, low/high its 95 % interval
    csat: Satisfaction
    stars_avg: float | None
    stars: tuple[int, int, int, int, int]  # how many ratings of 1, 2, 3, 4, 5 stars
    nps_scores: tuple[int, ...]  # how many answers of 0..10 (11 counts)
    by_film: tuple[RatingGroup, ...]  # most responses first
    by_hall: tuple[RatingGroup, ...]  # by hall name
    by_day: tuple[RatingGroup, ...]  # every day of the period, empty ones too
    comments: int  # responses with a comment
    negative: int  # comments read as negative
    # 评价意见分类: what the comments were about (FeedbackDay.categories), most first.
    comment_categories: tuple[CategoryCount, ...]
    # 投诉: complaint work orders opened in the period (ServiceDay kind complaint) by category.
    complaints: int
    complaint_categories: tuple[CategoryCount, ...]


@dataclass(frozen=True, slots=True)
class ResponseRow:
    """One rating as a manager may read it: comment and phone masked by the caller's mask."""

    id: int
    cinema_id: int
    day: date  # the visit's business day
    at: datetime  # last answered
    film_id: int | None
    film: str
    hall: str
    stars: int | None
    nps: int | None
    comment: str  # masked
    phone: str | None  # masked
    category: str | None
    sentiment: str | None  # neg | neu | pos
    work_order_id: int | None


class _Ratings:
    __slots__ = ("nps", "responses", "stars")

    def __init__(self) -> None:
        self.responses = 0
        self.stars = [0] * 5
        self.nps = [0] * 11

    def add(self, row: dict[str, Any]) -> None:
        self.add_counts(row["responses"], _counts(row["stars"], 5), _counts(row["nps"], 11))

    def add_counts(self, responses: int, stars: Sequence[int], nps: Sequence[int]) -> None:
        """Counts already of full length (:func:`_counts`): added element-wise in C."""
        self.responses += responses
        self.stars = list(map(operator.add, self.stars, stars))
        self.nps = list(map(operator.add, self.nps, nps))

    def group(self, key: str, label: str, cinema_id: int | None = None) -> RatingGroup:
        return RatingGroup(
            key, label, self.responses, nps_of_counts(self.nps), satisfaction(self.stars),
            stars_average(self.stars), cinema_id,
        )


async def experience(p: Period) -> Experience:
    """Three queries: the feedback days, their films' titles, the complaint service days."""
    rows = await FeedbackDay.filter(**_days(p)).values(
        "cinema_id", "day", "film_id", "hall", "responses", "stars", "nps", "comments", "negative",
        "categories",
    )
    film_ids = sorted({r["film_id"] for r in rows if r["film_id"]})
    titles = dict(await Film.filter(id__in=film_ids).values_list("id", "title")) if film_ids else {}
    complaints = await ServiceDay.filter(**_days(p), kind="complaint").values("category", "opened")

    total = _Ratings()
    films: dict[int, _Ratings] = defaultdict(_Ratings)
    halls: dict[tuple[int, str], _Ratings] = defaultdict(_Ratings)
    days: dict[date, _Ratings] = {d: _Ratings() for d in p.days}
    comment_categories: Counter[str] = Counter()
    comments = negative = 0
    for r in rows:  # a year of one cinema is ~15,000 rows, each counted into four groups
        n, stars, nps = r["responses"], _counts(r["stars"], 5), _counts(r["nps"], 11)
        total.add_counts(n, stars, nps)
        films[r["film_id"] or 0].add_counts(n, stars, nps)
        halls[(r["cinema_id"], r["hall"] or "")].add_counts(n, stars, nps)
        days[r["day"]].add_counts(n, stars, nps)
        comments += r["comments"]
        negative += r["negative"]
        comment_categories.update({k: int(v) for k, v in (r["categories"] or {}).items()})
    complained: Counter[str] = Counter()
    for r in complaints:
        complained[r["category"]] += r["opened"]
    return Experience(
        period=p, responses=total.responses, nps=nps_of_counts(total.nps),
        csat=satisfaction(total.stars), stars_avg=stars_average(total.stars),
        stars=tuple(total.stars),  # type: ignore[arg-type]
        nps_scores=tuple(total.nps),
        by_film=tuple(sorted(
            (g.group(str(f) if f else "", titles.get(f, f"#{f}") if f else "未关联场次")
             for f, g in films.items()),
            key=lambda g: (-g.responses, g.label),
        )),
        by_hall=tuple(
            g.group(hall, hall or "未关联影厅", cinema_id)
            for (cinema_id, hall), g in sorted(halls.items(), key=lambda kv: (kv[0][0], kv[0][1] == "", kv[0][1]))
        ),
        by_day=tuple(g.group(d.isoformat(), d.isoformat()) for d, g in days.items()),
        comments=comments, negative=negative, comment_categories=_categories(comment_categories),
        complaints=sum(complained.values()), complaint_categories=_categories(complained),
    )


async def responses(
    p: Period,
    *,
    mask: Callable[[str], str],
    film_id: int | None = None,
    hall: str | None = None,
    day: date | None = None,
    stars: int | None = None,
    nps: str | None = None,
    with_comment: bool = False,
    category: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page[ResponseRow]:
    """The ratings behind an experience figure, newest first. ``film_id`` 0 and ``hall`` ""
    mean "unknown"; ``nps`` is ``promoter`` | ``passive`` | ``detractor``; ``category``: the
    comments of one topic (a comment category, as ``Experience.comment_categories``);
    ``mask`` hides phone numbers (the caller passes ``bot.infra.logs.mask_phone``: the
    domain does not import ``bot``)."""
    limit, offset = _page_args(limit, offset)
    q = FeedbackResponse.filter(
        cinema_id__in=list(p.cinema_ids), visit_day__gte=p.start, visit_day__lte=p.end
    ).filter(Q(stars__isnull=False) | Q(nps__isnull=False))
    if film_id is not None:
        q = q.filter(film_id=film_id) if film_id else q.filter(film_id__isnull=True)
    if hall is not None:
        # The rollup's hall: the visit's, else the touchpoint's, else "".
        if hall:
            q = q.filter(Q(hall=hall) | ((Q(hall__isnull=True) | Q(hall="")) & Q(touchpoint__hall=hall)))
        else:
            q = q.filter(Q(hall__isnull=True) | Q(hall="")).filter(
                Q(touchpoint__hall__isnull=True) | Q(touchpoint__hall="")
            )
    if day is not None:
        q = q.filter(visit_day=day)
    if stars is not None:
        q = q.filter(stars=stars)
    if nps is not None:
        ranges = {"promoter": (9, 10), "passive": (7, 8), "detractor": (0, 6)}
        if nps not in ranges:
            raise ReportError("nps 应为 promoter|passive|detractor")
        q = q.filter(nps__gte=ranges[nps][0], nps__lte=ranges[nps][1])
    if with_comment or category is not None:
        q = q.exclude(comment="")
    if category is not None:
        q = q.filter(category=category)
    rows = await q.order_by("-updated_at", "-id").offset(offset).limit(limit + 1).values(
        "id", "cinema_id", "visit_day", "updated_at", "film_id", "film_title", "hall", "touchpoint__hall",
        "stars", "nps", "comment", "phone", "category", "sentiment", "work_order_id",
    )
    return _page([
        ResponseRow(
            r["id"], r["cinema_id"], r["visit_day"], r["updated_at"], r["film_id"], r["film_title"] or "",
            r["hall"] or r["touchpoint__hall"] or "", r["stars"], r["nps"], mask(r["comment"] or ""),
            mask(r["phone"]) if r["phone"] else None, r["category"], r["sentiment"], r["work_order_id"],
        )
        for r in rows
    ], offset, limit)


async def comments(
    p: Period, *, mask: Callable[[str], str], category: str | None = None, limit: int = 20, offset: int = 0,
) -> Page[ResponseRow]:
    """Verbatim comments, newest first, masked (``category``: of one topic only)."""
    return await responses(p, mask=mask, with_comment=True, category=category, limit=limit, offset=offset)


# --- service --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceGroup:
    key: str  # kind / team / category value, or ISO day
    label: str  # 报修 / 工程组 / 座椅 / ISO day
    opened: int
    acknowledged: int
    resolved: int
    breached: int  # orders with at least one SLA breach
    ack: Durations
    resolve: Durations


@dataclass(frozen=True, slots=True)
class Breach:
    ref: str  # the work order's W… code
    clock: str  # acknowledge | resolve
    held_by: str  # who held the order when the clock ran out ("" = nobody)
    cinema_id: int
    day: date  # the order's opening day
    kind: str
    team: str
    category: str


@dataclass(frozen=True, slots=True)
class WorkOrderRow:
    id: int
    ref: str
    cinema_id: int
    kind: str
    category: str
    severity: str
    state: str
    team: str
    assignee: str | None
    hall: str | None
    summary: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class OpenItem(WorkOrderRow):
    """An active work order now, with its age."""

    age_seconds: float


@dataclass(frozen=True, slots=True)
class Service:
    period: Period
    opened: int
    acknowledged: int
    resolved: int
    breached: int  # orders with at least one breach
    ack: Durations
    resolve: Durations
    by_kind: tuple[ServiceGroup, ...]
    by_team: tuple[ServiceGroup, ...]
    by_category: tuple[ServiceGroup, ...]
    by_day: tuple[ServiceGroup, ...]  # every day of the period
    breach_count: int  # breaches (an order may breach both clocks)
    breaches: tuple[Breach, ...]  # newest day first, at most BREACHES_LIMIT
    open_count: int  # active work orders of these cinemas now, whenever opened
    open_items: tuple[OpenItem, ...]  # oldest first, at most OPEN_ITEMS_LIMIT


class _Orders:
    __slots__ = ("ack", "acknowledged", "breached", "opened", "resolve", "resolved")

    def __init__(self) -> None:
        self.opened = self.acknowledged = self.resolved = self.breached = 0
        self.ack: list[Sequence[float]] = []
        self.resolve: list[Sequence[float]] = []

    def add(self, row: dict[str, Any]) -> None:
        self.opened += row["opened"]
        self.acknowledged += row["acknowledged"]
        self.resolved += row["resolved"]
        self.breached += row["breached"]
        if row["ack_seconds"]:
            self.ack.append(row["ack_seconds"])
        if row["resolve_seconds"]:
            self.resolve.append(row["resolve_seconds"])

    def group(self, key: str, label: str) -> ServiceGroup:
        return ServiceGroup(
            key, label, self.opened, self.acknowledged, self.resolved, self.breached,
            durations(self.ack), durations(self.resolve),
        )


def _groups(groups: dict[str, _Orders], labels: dict[Any, str]) -> tuple[ServiceGroup, ...]:
    return tuple(
        g.group(k, labels.get(k, k)) for k, g in sorted(groups.items(), key=lambda kv: (-kv[1].opened, kv[0]))
    )


_SERVICE_FIELDS = (
    "cinema_id", "day", "kind", "team", "category", "opened", "acknowledged", "resolved", "breached",
    "ack_seconds", "resolve_seconds", "breaches",
)


async def service(p: Period, now: datetime) -> Service:
    """Three queries: the service days, the count and the oldest of the open orders now."""
    rows = await ServiceDay.filter(**_days(p)).values(*_SERVICE_FIELDS)
    total = _Orders()
    kinds: dict[str, _Orders] = defaultdict(_Orders)
    teams: dict[str, _Orders] = defaultdict(_Orders)
    categories: dict[str, _Orders] = defaultdict(_Orders)
    days: dict[date, _Orders] = {d: _Orders() for d in p.days}
    breaches: list[Breach] = []
    for r in rows:
        for g in (total, kinds[r["kind"]], teams[r["team"]], categories[r["category"]], days[r["day"]]):
            g.add(r)
        breaches.extend(
            Breach(b.get("ref") or "", b.get("clock") or "", b.get("held_by") or "", r["cinema_id"], r["day"],
                   r["kind"], r["team"], r["category"])
            for b in r["breaches"] or ()
        )
    breaches.sort(key=lambda b: (b.day, b.ref, b.clock), reverse=True)
    open_now = await open_work_orders(p.cinema_ids, now, limit=OPEN_ITEMS_LIMIT)
    open_count = (
        len(open_now.rows) if not open_now.more
        else await WorkOrder.filter(cinema_id__in=list(p.cinema_ids), state__in=list(ACTIVE)).count()
    )
    return Service(
        period=p, opened=total.opened, acknowledged=total.acknowledged, resolved=total.resolved,
        breached=total.breached, ack=durations(total.ack), resolve=durations(total.resolve),
        by_kind=_groups(kinds, KIND_LABELS), by_team=_groups(teams, TEAM_LABELS),
        by_category=_groups(categories, CATEGORY_LABELS),
        by_day=tuple(g.group(d.isoformat(), d.isoformat()) for d, g in days.items()),
        breach_count=len(breaches), breaches=tuple(breaches[:BREACHES_LIMIT]),
        open_count=open_count, open_items=open_now.rows,
    )


_ORDER_FIELDS = (
    "id", "ref", "cinema_id", "kind", "category", "severity", "state", "team", "assignee", "hall",
    "summary", "created_at",
)


def _order_row(r: dict[str, Any]) -> WorkOrderRow:
    return WorkOrderRow(
        r["id"], r["ref"], r["cinema_id"], str(r["kind"]), r["category"], r["severity"], str(r["state"]),
        r["team"], r["assignee"], r["hall"], r["summary"], r["created_at"],
    )


async def work_orders(
    p: Period,
    *,
    kind: str | None = None,
    team: str | None = None,
    category: str | None = None,
    state: str | None = None,
    breached: bool = False,
    day: date | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page[WorkOrderRow]:
    """Work orders opened in the period behind a service figure, newest first. ``state``:
    ``active`` | ``acknowledged`` (ever acknowledged) | ``resolved`` (resolved or closed now),
    as the rollup counts them, else a ``State`` value; ``breached``: only those with an SLA
    breach (an escalation on the timeline)."""
    limit, offset = _page_args(limit, offset)
    if day is not None and not p.start <= day <= p.end:
        return Page((), offset, limit, False)
    start, end = day_bounds(day) if day is not None else _bounds(p)
    q = WorkOrder.filter(cinema_id__in=list(p.cinema_ids), created_at__gte=start, created_at__lt=end)
    for name, value in (("kind", kind), ("team", team), ("category", category)):
        if value is not None:
            q = q.filter(**{name: value})
    if state == "active":
        q = q.filter(state__in=list(ACTIVE))
    elif state == "acknowledged":  # as the rollup counts: ever acknowledged
        q = q.filter(id__in=_with_event(("acknowledge",)))
    elif state == "resolved":  # as the rollup counts: resolved or closed now
        q = q.filter(state__in=list(RESOLVED))
    elif state is not None:
        q = q.filter(state=state)
    if breached:
        days = {"day": day} if day is not None else {}
        refs = {
            b["ref"]
            for bs in await ServiceDay.filter(**_days(p), **days).exclude(breached=0).values_list("breaches", flat=True)
            for b in bs or ()
        }
        q = q.filter(ref__in=sorted(refs))
    rows = await q.order_by("-created_at", "-id").offset(offset).limit(limit + 1).values(*_ORDER_FIELDS)
    return _page([_order_row(r) for r in rows], offset, limit)


def _with_event(actions: Sequence[str]) -> Subquery:
    return Subquery(WorkOrderEvent.filter(action__in=list(actions)).values("work_order_id"))


async def open_work_orders(cinema_ids: tuple[int, ...], now: datetime, *, limit: int = 50, offset: int = 0) -> Page[OpenItem]:
    """Active work orders of these cinemas now, oldest first."""
    limit, offset = _page_args(limit, offset)
    rows = await WorkOrder.filter(
        cinema_id__in=list(cinema_ids), state__in=list(ACTIVE)
    ).order_by("created_at", "id").offset(offset).limit(limit + 1).values(*_ORDER_FIELDS)
    return _page([
        OpenItem(
            r["id"], r["ref"], r["cinema_id"], str(r["kind"]), r["category"], r["severity"], str(r["state"]),
            r["team"], r["assignee"], r["hall"], r["summary"], r["created_at"],
            max(0.0, (now - r["created_at"]).total_seconds()),
        )
        for r in rows
    ], offset, limit)


# --- sales ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SalesGroup:
    key: str  # ISO day / hall id / film id
    label: str  # ISO day / hall name / film title
    shows: int
    capacity: int
    tickets: int
    revenue_fen: int
    refunds: int
    refunded_fen: int
    changes: int
    checked_in: int
    occupancy: float | None  # tickets / capacity
    cinema_id: int | None = None  # by_hall: the hall's cinema


@dataclass(frozen=True, slots=True)
class ShowRow:
    showtime_id: int
    cinema_id: int
    day: date
    starts_at: datetime
    film_id: int
    film: str
    hall_id: int
    hall: str
    capacity: int
    tickets: int
    revenue_fen: int
    refunds: int
    refunded_fen: int
    changes: int
    checked_in: int
    occupancy: float | None
    cancelled: bool = False  # a cancelled show: no capacity, its refunds still count


@dataclass(frozen=True, slots=True)
class HeatCell:
    weekday: int  # 0 = Monday (of the business day)
    hour: int  # the show's local start hour, 0..23
    shows: int
    tickets: int
    capacity: int
    occupancy: float | None


@dataclass(frozen=True, slots=True)
class Sales:
    period: Period
    shows: int
    capacity: int
    tickets: int
    revenue_fen: int
    orders: int
    refunds: int
    refunded_fen: int
    changes: int
    checked_in: int
    occupancy: float | None
    by_day: tuple[SalesGroup, ...]  # every day of the period
    by_hall: tuple[SalesGroup, ...]  # cinema then hall order
    by_film: tuple[SalesGroup, ...]  # most tickets first
    per_show: tuple[ShowRow, ...]  # by start
    heatmap: tuple[HeatCell, ...]  # cells with at least one show
    presale: tuple[SalesGroup, ...]  # business days today+1 .. today+PRESALE_DAYS


@dataclass(frozen=True, slots=True)
class TicketRow:
    ticket_id: int
    order_no: str
    cinema_id: int
    showtime_id: int
    starts_at: datetime
    film: str
    hall: str
    seat: str
    kind: str
    price_fen: int
    state: str  # issued | checked_in | refunded | changed
    channel: str
    paid_at: datetime | None


class _Box:
    __slots__ = (
        "capacity",
        "changes",
        "checked_in",
        "orders",
        "refunded_fen",
        "refunds",
        "revenue_fen",
        "shows",
        "tickets",
    )

    def __init__(self) -> None:
        self.shows = self.capacity = self.tickets = self.revenue_fen = self.orders = 0
        self.refunds = self.refunded_fen = self.changes = self.checked_in = 0

    def add(self, s: ShowRow, orders: int = 0) -> None:
        self.shows += not s.cancelled
        self.capacity += s.capacity
        self.tickets += s.tickets
        self.revenue_fen += s.revenue_fen
        self.orders += orders
        self.refunds += s.refunds
        self.refunded_fen += s.refunded_fen
        self.changes += s.changes
        self.checked_in += s.checked_in

    def group(self, key: str, label: str, cinema_id: int | None = None) -> SalesGroup:
        return SalesGroup(
            key, label, self.shows, self.capacity, self.tickets, self.revenue_fen, self.refunds,
            self.refunded_fen, self.changes, self.checked_in, _share(self.tickets, self.capacity), cinema_id,
        )


_SALES_FIELDS = (
    "showtime_id", "capacity", "sold", "revenue_fen", "orders", "refunded", "refunded_fen", "changed", "checked_in",
)
_WHERE_FIELDS = ("showtime_id", "cinema_id", "film_id", "hall_id", "starts_at")


async def _shows(
    cinema_ids: Sequence[int], start: date, end: date, halls: dict[int, tuple[int, str, int]] | None,
    titles: dict[int, str] | None = None,
) -> tuple[list[ShowRow], dict[int, int], dict[int, tuple[int, str, int]], dict[int, str]]:
    """Every show of those days (a show with no ticket has no ShowSales row but has seats):
    the shows (with their films' titles), orders per show, the halls (id -> cinema, name,
    capacity) and the titles known so far. Four queries (two when the halls are given and
    every film is among ``titles``; one more only if a rollup row has lost its show, which
    RESTRICT on tickets makes a show without sales). A year of one cinema is ~11,000 shows: rows are built once, no copies."""
    lo, hi = day_bounds(start)[0], day_bounds(end)[1]
    ids = list(cinema_ids)
    shows = await Showtime.filter(cinema_id__in=ids, starts_at__gte=lo, starts_at__lt=hi).values_list(
        "id", "cinema_id", "hall_id", "film_id", "starts_at", "cancelled_at"
    )
    sold = {
        r[0]: r
        for r in await ShowSales.filter(cinema_id__in=ids, day__gte=start, day__lte=end).values_list(*_SALES_FIELDS)
    }
    if halls is None:
        halls = {
            hid: (cid, name, SeatPlan.from_layout(layout).capacity)
            for hid, cid, name, layout in await Hall.filter(cinema_id__in=ids).values_list(
                "id", "cinema_id", "name", "layout"
            )
        }
    where = {sid: (sid, cid, fid, hid, starts_at) for sid, cid, hid, fid, starts_at, _ in shows}
    gone = [sid for sid in sold if sid not in where]
    if gone:
        for r in await ShowSales.filter(showtime_id__in=gone).values_list(*_WHERE_FIELDS):
            where[r[0]] = r
    titles = dict(titles or {})
    missing = sorted({w[2] for w in where.values()} - titles.keys())
    if missing:  # films not named yet (the presale week may bring new ones)
        titles.update(await Film.filter(id__in=missing).values_list("id", "title"))
    cancelled = {sid for sid, *_, cancelled_at in shows if cancelled_at is not None}
    rows: list[ShowRow] = []
    orders: dict[int, int] = {}
    for sid, (_, cid, fid, hid, starts_at) in where.items():
        s = sold.get(sid)
        off = sid in cancelled
        capacity = 0 if off else (s[1] if s else halls.get(hid, (0, "", 0))[2])
        tickets = s[2] if s else 0
        rows.append(ShowRow(
            sid, cid, business_day(starts_at), starts_at, fid, titles.get(fid, f"#{fid}"), hid,
            halls.get(hid, (cid, "", 0))[1], capacity, tickets, int(s[3]) if s else 0, s[5] if s else 0,
            int(s[6]) if s else 0, s[7] if s else 0, s[8] if s else 0, _share(tickets, capacity), off,
        ))
        orders[sid] = s[4] if s else 0
    rows.sort(key=lambda r: (r.starts_at, r.showtime_id))
    return rows, orders, halls, titles


async def sales(p: Period, now: datetime) -> Sales:
    """Six or seven queries: the period's shows and their sales rollups, the halls, the films'
    titles, the week ahead's shows and their sales rollups (and the titles of films that
    only show in that week)."""
    shows, orders, halls, titles = await _shows(p.cinema_ids, p.start, p.end, None)
    ahead_from = business_day(now) + timedelta(days=1)
    ahead, _, _, _ = await _shows(
        p.cinema_ids, ahead_from, ahead_from + timedelta(days=PRESALE_DAYS - 1), halls, titles
    )

    total = _Box()
    days: dict[date, _Box] = {d: _Box() for d in p.days}
    by_hall: dict[int, _Box] = defaultdict(_Box)
    by_film: dict[int, _Box] = defaultdict(_Box)
    heat: dict[tuple[int, int], _Box] = defaultdict(_Box)
    for s in shows:
        n = orders.get(s.showtime_id, 0)
        total.add(s, n)
        days.setdefault(s.day, _Box()).add(s, n)
        by_hall[s.hall_id].add(s, n)
        by_film[s.film_id].add(s, n)
        if not s.cancelled:
            heat[(s.day.weekday(), s.starts_at.astimezone(SHANGHAI).hour)].add(s, n)
    presale: dict[date, _Box] = {ahead_from + timedelta(days=i): _Box() for i in range(PRESALE_DAYS)}
    for s in ahead:
        presale.setdefault(s.day, _Box()).add(s)
    return Sales(
        period=p, shows=total.shows, capacity=total.capacity, tickets=total.tickets,
        revenue_fen=total.revenue_fen, orders=total.orders, refunds=total.refunds,
        refunded_fen=total.refunded_fen, changes=total.changes, checked_in=total.checked_in,
        occupancy=_share(total.tickets, total.capacity),
        by_day=tuple(g.group(d.isoformat(), d.isoformat()) for d, g in sorted(days.items())),
        by_hall=tuple(
            g.group(str(h), halls.get(h, (0, f"#{h}", 0))[1], halls.get(h, (None, "", 0))[0])
            for h, g in sorted(by_hall.items(), key=lambda kv: (halls.get(kv[0], (0, "", 0))[:2], kv[0]))
        ),
        by_film=tuple(sorted(
            (g.group(str(f), titles.get(f, f"#{f}")) for f, g in by_film.items()),
            key=lambda g: (-g.tickets, g.label),
        )),
        per_show=tuple(shows),
        heatmap=tuple(
            HeatCell(wd, hour, g.shows, g.tickets, g.capacity, _share(g.tickets, g.capacity))
            for (wd, hour), g in sorted(heat.items())
        ),
        presale=tuple(g.group(d.isoformat(), d.isoformat()) for d, g in sorted(presale.items())),
    )


async def tickets(
    p: Period,
    *,
    showtime_id: int | None = None,
    day: date | None = None,
    hall_id: int | None = None,
    film_id: int | None = None,
    state: str | None = None,
    weekday: int | None = None,
    hour: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page[TicketRow]:
    """Tickets of the shows of the period (or one show / day / hall / film), by show start
    then seat. ``state``: a ticket state, or ``standing`` (issued or checked in).
    ``weekday`` (0 = Monday, of the business day) and ``hour`` (the show's local start
    hour, 0..23): the shows of one cell of :attr:`Sales.heatmap`."""
    limit, offset = _page_args(limit, offset)
    if weekday is not None and not 0 <= weekday <= 6:
        raise ReportError("weekday 应为 0–6")
    if hour is not None and not 0 <= hour <= 23:
        raise ReportError("hour 应为 0–23")
    if day is not None and not p.start <= day <= p.end:
        return Page((), offset, limit, False)
    days = (day,) if day is not None else p.days
    windows = [w for d in days if weekday is None or d.weekday() == weekday for w in _start_windows(d, hour)]
    if not windows:
        return Page((), offset, limit, False)
    q = Ticket.filter(showtime__cinema_id__in=list(p.cinema_ids))
    if len(windows) == 1 or (weekday is None and hour is None):
        q = q.filter(showtime__starts_at__gte=windows[0][0], showtime__starts_at__lt=windows[-1][1])
    else:  # one start-time window per matching day: ≤ MAX_DAYS ranges, each on the index
        q = q.filter(Q(*(Q(showtime__starts_at__gte=lo, showtime__starts_at__lt=hi) for lo, hi in windows),
                       join_type="OR"))
    if showtime_id is not None:
        q = q.filter(showtime_id=showtime_id)
    if hall_id is not None:
        q = q.filter(showtime__hall_id=hall_id)
    if film_id is not None:
        q = q.filter(showtime__film_id=film_id)
    if state == "standing":
        q = q.filter(state__in=[TicketState.ISSUED, TicketState.CHECKED_IN])
    elif state is not None:
        q = q.filter(state=state)
    rows = await q.order_by("showtime__starts_at", "showtime_id", "id").offset(offset).limit(limit + 1).values(
        "id", "order__no", "showtime__cinema_id", "showtime_id", "showtime__starts_at", "showtime__film__title",
        "showtime__hall__name", "seat", "kind", "price_fen", "state", "order__channel", "order__paid_at",
    )
    return _page([
        TicketRow(
            r["id"], r["order__no"], r["showtime__cinema_id"], r["showtime_id"], r["showtime__starts_at"],
            r["showtime__film__title"], r["showtime__hall__name"], r["seat"], r["kind"], r["price_fen"],
            str(r["state"]), r["order__channel"], r["order__paid_at"],
        )
        for r in rows
    ], offset, limit)


def _start_windows(day: date, hour: int | None) -> tuple[tuple[datetime, datetime], ...]:
    """The UTC instants [lo, hi) in which a show of business day ``day`` starts (at local
    ``hour``, if given: 00–02 o'clock is the next calendar morning, still this day's)."""
    start, end = day_bounds(day)
    if hour is None:
        return ((start, end),)
    local_day = day + timedelta(days=1) if hour < DAY_ENDS.seconds // 3600 else day
    lo = datetime.combine(local_day, time(hour), SHANGHAI).astimezone(UTC)
    return ((lo, lo + timedelta(hours=1)),)


# --- projectors -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlertRow:
    id: int
    alert_id: str
    cinema_id: int
    device_id: str
    hall: str
    rule: str
    severity: str  # warning | critical
    state: str  # firing | resolved
    message: str
    value: float | None
    limit: float | None
    fired_at: datetime
    resolved_at: datetime | None
    silenced: bool
    acknowledged_by: str
    work_order_id: int | None


@dataclass(frozen=True, slots=True)
class TrendPoint:
    day: date
    score: float | None  # the day-end health score (DeviceDay health_score vlast)
    low: float | None  # the day's lowest score


@dataclass(frozen=True, slots=True)
class ProjectorRow:
    device_id: str
    cinema_id: int
    hall: str
    model: str
    score: int | None  # None: no (fresh) data
    grade: str  # 良好 | 注意 | 危险 | 无数据
    reasons: tuple[str, ...]
    fresh: bool
    health_at: datetime | None
    brightness_pct: float | None  # the latest snapshot's
    red_line_pct: float  # in force: the projector's setting, its cinema's, the snapshot's, the default
    red_line_from: str  # device | cinema | snapshot | default
    critical_line_pct: float
    light_hours: float | None  # the snapshot's, else the period's DeviceDay light_hours max
    rated_light_hours: float | None
    days_to_red_line: float | None
    open_alerts: tuple[AlertRow, ...]  # firing and not silenced
    trend: tuple[TrendPoint, ...]  # every day of the period
    alerts_in_period: int


@dataclass(frozen=True, slots=True)
class Projectors:
    period: Period
    projectors: tuple[ProjectorRow, ...]  # cinema, hall order
    grades: dict[str, int]  # grade -> projectors
    open_alerts: int
    alerts_in_period: int  # fired in the period
    history: tuple[AlertRow, ...]  # fired in the period, newest first, at most HISTORY_LIMIT


_ALERT_FIELDS = (
    "id", "alert_id", "cinema_id", "device_id", "hall", "rule", "severity", "state", "message", "value", "limit",
    "fired_at", "resolved_at", "silenced", "acknowledged_by", "work_order_id",
)


def _alert_row(r: dict[str, Any]) -> AlertRow:
    return AlertRow(*(r[f] for f in _ALERT_FIELDS))


def _line(key: str, own: dict[str, Any], cinema: dict[str, Any], snapshot: dict[str, Any], snap_key: str,
          default: float) -> tuple[float, str]:
    """The limit in force: the projector's own setting, its cinema's, the one the telemetry
    process last judged by (its snapshot), else the rules' default."""
    if own.get(key) is not None:
        return float(own[key]), "device"
    if cinema.get(key) is not None:
        return float(cinema[key]), "cinema"
    if snapshot.get(snap_key) is not None:
        return float(snapshot[snap_key]), "snapshot"
    return default, "default"


async def projectors(p: Period, now: datetime) -> Projectors:
    """Six queries: the projectors with their halls, the stored limits, the device days
    (health and light hours), the open alerts, the period's alerts and their count per device."""
    ids = list(p.cinema_ids)
    devices = await Projector.filter(cinema_id__in=ids).order_by("cinema_id", "hall_id", "id").values(
        "device_id", "cinema_id", "hall__name", "model", "health_score", "health", "health_at"
    )
    settings: dict[tuple[int, str], dict[str, Any]] = {
        (cid, dev): dict(s or {})
        for cid, dev, s in await TelemetryRule.filter(cinema_id__in=ids).values_list("cinema_id", "device_id", "settings")
    }
    trend: dict[str, dict[date, TrendPoint]] = defaultdict(dict)
    light: dict[str, float] = {}
    for r in await DeviceDay.filter(**_days(p), metric__in=["health_score", "light_hours"]).values(
        "device_id", "day", "metric", "vmin", "vmax", "vlast"
    ):
        if r["metric"] == "health_score":
            trend[r["device_id"]][r["day"]] = TrendPoint(r["day"], r["vlast"], r["vmin"])
        else:
            light[r["device_id"]] = max(light.get(r["device_id"], 0.0), r["vmax"])
    firing: dict[str, list[AlertRow]] = defaultdict(list)
    for r in await AlertRecord.filter(cinema_id__in=ids, state="firing", silenced=False).order_by(
        "-fired_at", "-id"
    ).values(*_ALERT_FIELDS):
        firing[r["device_id"]].append(_alert_row(r))
    page = await alerts(p, limit=HISTORY_LIMIT)
    start, end = _bounds(p)
    counts = {
        r["device_id"]: r["n"]
        for r in await AlertRecord.filter(cinema_id__in=ids, fired_at__gte=start, fired_at__lt=end)
        .annotate(n=Count("id")).group_by("device_id").values("device_id", "n")
    }

    rows: list[ProjectorRow] = []
    for d in devices:
        dev, snap = d["device_id"], dict(d["health"] or {})
        own, cinema = settings.get((d["cinema_id"], dev), {}), settings.get((d["cinema_id"], ""), {})
        red, red_from = _line(RED_LINE, own, cinema, snap, "red_line_pct", DEFAULT_RED_LINE_PCT)
        critical, _ = _line(CRITICAL_LINE, own, cinema, snap, "critical_line_pct", DEFAULT_CRITICAL_LINE_PCT)
        at = d["health_at"]
        fresh = at is not None and d["health"] is not None and now - at <= HEALTH_STALE
        if fresh:
            score, grade, reasons = d["health_score"], snap.get("grade", NO_DATA), tuple(snap.get("reasons", ()))
        elif at is None:
            score, grade, reasons = None, NO_DATA, ("还没有收到数据",)
        else:
            score, grade = None, NO_DATA
            reasons = (f"监测数据 {(now - at).total_seconds() / 60:.0f} 分钟没有更新",)
        days = trend.get(dev, {})
        rows.append(ProjectorRow(
            device_id=dev, cinema_id=d["cinema_id"], hall=d["hall__name"], model=d["model"], score=score,
            grade=grade, reasons=reasons, fresh=fresh, health_at=at, brightness_pct=snap.get("brightness_pct"),
            red_line_pct=red, red_line_from=red_from, critical_line_pct=critical,
            light_hours=snap.get("light_hours") if snap.get("light_hours") is not None else light.get(dev),
            rated_light_hours=snap.get("rated_light_hours"), days_to_red_line=snap.get("days_to_red_line"),
            open_alerts=tuple(firing.get(dev, ())),
            trend=tuple(days.get(day, TrendPoint(day, None, None)) for day in p.days),
            alerts_in_period=counts.get(dev, 0),
        ))
    return Projectors(
        period=p, projectors=tuple(rows), grades=dict(Counter(r.grade for r in rows)),
        open_alerts=sum(len(v) for v in firing.values()), alerts_in_period=sum(counts.values()),
        history=page.rows,
    )


async def alerts(
    p: Period,
    *,
    device_id: str | None = None,
    state: str | None = None,
    severity: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page[AlertRow]:
    """Alerts fired in the period (of one projector), newest first."""
    limit, offset = _page_args(limit, offset)
    start, end = _bounds(p)
    q = AlertRecord.filter(cinema_id__in=list(p.cinema_ids), fired_at__gte=start, fired_at__lt=end)
    for name, value in (("device_id", device_id), ("state", state), ("severity", severity)):
        if value is not None:
            q = q.filter(**{name: value})
    rows = await q.order_by("-fired_at", "-id").offset(offset).limit(limit + 1).values(*_ALERT_FIELDS)
    return _page([_alert_row(r) for r in rows], offset, limit)


# --- the digest ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """A figure of the day against the same weekday a week earlier."""

    value: int
    previous: int
    delta: int  # value - previous
    ratio: float | None  # delta / previous; None when previous is 0

    @classmethod
    def of(cls, value: int, previous: int) -> Change:
        return cls(value, previous, value - previous, (value - previous) / previous if previous else None)


@dataclass(frozen=True, slots=True)
class ProjectorException:
    device_id: str
    hall: str
    score: int | None
    grade: str
    reasons: tuple[str, ...]
    critical_alerts: tuple[AlertRow, ...]


@dataclass(frozen=True, slots=True)
class Digest:
    cinema_id: int
    day: date
    previous_day: date  # day - 7
    tickets: Change
    revenue_fen: Change
    occupancy: float | None
    previous_occupancy: float | None
    shows: int
    refunds: int
    refunded_fen: int
    responses: int
    nps: Nps
    csat: Satisfaction
    complaints: int
    complaint_categories: tuple[CategoryCount, ...]
    breach_count: int
    breaches: tuple[Breach, ...]
    open_count: int  # active work orders when the digest was made
    projector_exceptions: tuple[ProjectorException, ...]


async def digest(cinema_id: int, day: date, now: datetime) -> Digest:
    """One cinema's business day against the same weekday a week earlier, from the same
    functions as the console's sections (so the card and the console agree); the projector
    exceptions and open orders are as they stand at ``now``."""
    week_ago = day - timedelta(days=7)
    box = await sales(Period((cinema_id,), week_ago, day), now)
    days = {g.key: g for g in box.by_day}
    this, last = days[day.isoformat()], days[week_ago.isoformat()]
    one = Period((cinema_id,), day, day)
    exp = await experience(one)
    desk = await service(one, now)
    fleet = await projectors(one, now)
    exceptions = tuple(
        ProjectorException(
            r.device_id, r.hall, r.score, r.grade, r.reasons,
            tuple(a for a in r.open_alerts if a.severity == "critical"),
        )
        for r in fleet.projectors
        if (r.score is not None and r.score < HEALTH_EXCEPTION_BELOW)
        or any(a.severity == "critical" for a in r.open_alerts)
    )
    return Digest(
        cinema_id=cinema_id, day=day, previous_day=week_ago,
        tickets=Change.of(this.tickets, last.tickets), revenue_fen=Change.of(this.revenue_fen, last.revenue_fen),
        occupancy=this.occupancy, previous_occupancy=last.occupancy, shows=this.shows, refunds=this.refunds,
        refunded_fen=this.refunded_fen, responses=exp.responses, nps=exp.nps, csat=exp.csat,
        complaints=exp.complaints, complaint_categories=exp.complaint_categories,
        breach_count=desk.breach_count, breaches=desk.breaches, open_count=desk.open_count,
        projector_exceptions=exceptions,
    )
