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

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Generic, TypeVar

from domain.feedback import Nps, business_day

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
    raise NotImplementedError


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


async def experience(p: Period) -> Experience:
    raise NotImplementedError


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
    limit: int = 50,
    offset: int = 0,
) -> Page[ResponseRow]:
    """The ratings behind an experience figure, newest first. ``film_id`` 0 and ``hall`` ""
    mean "unknown"; ``nps`` is ``promoter`` | ``passive`` | ``detractor``; ``mask`` hides
    phone numbers (the caller passes ``bot.infra.logs.mask_phone``: the domain does not
    import ``bot``)."""
    raise NotImplementedError


async def comments(p: Period, *, mask: Callable[[str], str], limit: int = 20, offset: int = 0) -> Page[ResponseRow]:
    """Verbatim comments, newest first, masked."""
    return await responses(p, mask=mask, with_comment=True, limit=limit, offset=offset)


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
class OpenItem:
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


async def service(p: Period, now: datetime) -> Service:
    raise NotImplementedError


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
    a ``State`` value, or ``active`` | ``acknowledged`` (ever acknowledged) | ``resolved``
    (ever resolved); ``breached``: only those with an SLA breach."""
    raise NotImplementedError


async def open_work_orders(cinema_ids: tuple[int, ...], now: datetime, *, limit: int = 50, offset: int = 0) -> Page[OpenItem]:
    """Active work orders of these cinemas now, oldest first."""
    raise NotImplementedError


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


async def sales(p: Period, now: datetime) -> Sales:
    raise NotImplementedError


async def tickets(
    p: Period,
    *,
    showtime_id: int | None = None,
    day: date | None = None,
    hall_id: int | None = None,
    film_id: int | None = None,
    state: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page[TicketRow]:
    """Tickets of the shows of the period (or one show / day / hall / film), by show start
    then seat. ``state``: a ticket state, or ``standing`` (issued or checked in)."""
    raise NotImplementedError


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


async def projectors(p: Period, now: datetime) -> Projectors:
    raise NotImplementedError


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
    raise NotImplementedError


# --- the digest ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """A figure of the day against the same weekday a week earlier."""

    value: float
    previous: float
    delta: float  # value - previous
    ratio: float | None  # delta / previous; None when previous is 0


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
    raise NotImplementedError
