"""Daily rollups for the console, the digest and managers' questions: what a page reads
instead of scanning raw rows.

Every rollup row is one *bucket* (a show, a cinema day of feedback for one film and hall,
a cinema day of work orders of one kind/team/category, a device day of one metric). A
bucket is kept equal to its raw rows by recomputing it, inside the transaction of the
change that touched it, after taking the bucket's row lock — so two writers of one bucket
take turns and the second sees the first's rows. ``rebuild`` recomputes every bucket
from raw rows (``cinebot rollups rebuild``).

Days are the cinema's business day (``domain.days.business_day``: it ends at 03:00),
of the show's start for sales, of the visit for feedback, of the opening for work orders.

What each bucket holds, and when it is written:

- ``ShowSales``: a show that ever had a ticket, or was cancelled, has a row (a show
  without one sold nothing). Tickets standing (issued or checked in) are ``sold``,
  ``revenue_fen`` (their prices) and ``orders``; refunded and changed-away tickets are
  counted apart. Refreshed where tickets are issued, refunded, changed, checked in and
  where a show is cancelled (``domain.ticketing``).
  Buckets of feedback and service that lose their last row are deleted.
- ``FeedbackDay``: responses with stars or NPS (``responses``), the counts of each star
  and score, comments, negative comments and comment categories, bucketed by the
  response's film (0: none) and hall (the visit's, else the touchpoint's, else "").
  Refreshed where a response is answered or linked to a visit (``domain.feedback``).
- ``ServiceDay``: orders opened, ever acknowledged, resolved or closed now, breached (an
  SLA ``escalate`` on the timeline), seconds from opening to the first acknowledgement
  and to the last resolve, and each breach (ref, clock, who held the order). Refreshed by
  every timeline row of a state change (``domain.workorders._event``).
- ``DeviceDay``: merged, like ``telemetry_minute`` itself, by every write of minutes
  (``domain.telemetry_minutes``); ``vlast`` is the average of the day's latest minute.
  ``health_score`` is merged from each stored health snapshot (``domain.projectors``):
  snapshots are not kept, so ``rebuild`` leaves those rows, and it never deletes device
  days (minutes past retention are gone; their days stay).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol, TypeVar

from tortoise import fields
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.connection import get_connection
from tortoise.indexes import Index
from tortoise.models import Model
from tortoise.transactions import in_transaction

from domain.catalog import Showtime
from domain.cinemas import Hall
from domain.days import business_day, day_bounds
from domain.seating import SeatPlan


class ShowSales(Model):
    """One show's sales as they stand: box office counts by the show's day."""

    id = fields.IntField(primary_key=True)
    showtime_id = fields.IntField(unique=True)
    cinema_id = fields.IntField()
    day = fields.DateField()  # business day of the show's start
    film_id = fields.IntField()
    hall_id = fields.IntField()
    starts_at = fields.DatetimeField()
    capacity = fields.IntField()  # seats in the hall's layout
    sold = fields.IntField(default=0)  # tickets standing now (issued or checked in)
    revenue_fen = fields.BigIntField(default=0)  # what the standing tickets were sold for
    orders = fields.IntField(default=0)  # orders with standing tickets
    refunded = fields.IntField(default=0)  # tickets refunded
    refunded_fen = fields.BigIntField(default=0)
    changed = fields.IntField(default=0)  # tickets changed away to another show
    checked_in = fields.IntField(default=0)
    updated_at = fields.DatetimeField(null=True)

    class Meta:
        table = "show_sales"
        indexes = (Index(fields=["cinema_id", "day"]),)


class FeedbackDay(Model):
    """Ratings of one cinema day, one film and one hall (film 0 / hall "" when unknown)."""

    id = fields.IntField(primary_key=True)
    cinema_id = fields.IntField()
    day = fields.DateField()  # the visit's business day
    film_id = fields.IntField(default=0)
    hall = fields.CharField(max_length=16, default="")
    responses = fields.IntField(default=0)
    stars = fields.JSONField(default=list)  # counts of 1..5 stars: [n1, n2, n3, n4, n5]
    nps = fields.JSONField(default=list)  # counts of scores 0..10
    comments = fields.IntField(default=0)  # responses with a comment
    negative = fields.IntField(default=0)  # comments read as negative
    categories = fields.JSONField(default=dict)  # comment category -> count

    class Meta:
        table = "feedback_day"
        unique_together = (("cinema_id", "day", "film_id", "hall"),)


class ServiceDay(Model):
    """Work orders opened on one cinema day, of one kind, team and category."""

    id = fields.IntField(primary_key=True)
    cinema_id = fields.IntField()
    day = fields.DateField()  # business day of the opening
    kind = fields.CharField(max_length=16)
    team = fields.CharField(max_length=16)
    category = fields.CharField(max_length=16)
    opened = fields.IntField(default=0)
    acknowledged = fields.IntField(default=0)
    resolved = fields.IntField(default=0)
    breached = fields.IntField(default=0)  # orders with at least one SLA breach
    ack_seconds = fields.JSONField(default=list)  # per acknowledged order, sorted
    resolve_seconds = fields.JSONField(default=list)  # per resolved order, sorted
    breaches = fields.JSONField(default=list)  # [{"ref", "clock", "held_by"}]

    class Meta:
        table = "service_day"
        unique_together = (("cinema_id", "day", "kind", "team", "category"),)


class DeviceDay(Model):
    """One device's metric over one business day, merged from its minutes (counts and
    sums add, min and max widen); metric ``health_score`` holds the health snapshots."""

    id = fields.BigIntField(primary_key=True)
    cinema_id = fields.IntField()
    device_id = fields.CharField(max_length=64)
    day = fields.DateField()
    metric = fields.CharField(max_length=48)
    n = fields.IntField()
    vmin = fields.FloatField()
    vmax = fields.FloatField()
    vsum = fields.FloatField()
    vlast = fields.FloatField(null=True)  # the day's latest value (health: the score at day end)
    last_at = fields.DatetimeField(null=True)  # when vlast was measured: a late write never wins

    class Meta:
        table = "device_day"
        unique_together = (("device_id", "day", "metric"),)
        indexes = (Index(fields=["cinema_id", "day"]),)


# --- plumbing -----------------------------------------------------------------------------

T = TypeVar("T")
Progress = Callable[[int, int], None]  # (done, total)
STANDING = ("issued", "checked_in")  # TicketState values of tickets that hold their seat
DONE = ("resolved", "closed")  # work-order states that count as resolved
HEALTH = "health_score"


def _dialect(conn: BaseDBAsyncClient) -> str:
    return "sqlite" if conn.capabilities.dialect == "sqlite" else "postgres"


def _sql(conn: BaseDBAsyncClient, text: str) -> str:
    """``?`` placeholders as the connection wants them ($1, $2, ... on PostgreSQL)."""
    if _dialect(conn) == "sqlite":
        return text
    parts = text.split("?")
    return "".join(p + (f"${i}" if i < len(parts) else "") for i, p in enumerate(parts, 1))


async def _rows(conn: BaseDBAsyncClient, text: str, values: Sequence[Any] = ()) -> list[dict[str, Any]]:
    return list(await conn.execute_query_dict(_sql(conn, text), list(values)))


async def _in_tx(using: BaseDBAsyncClient | None, work: Callable[[BaseDBAsyncClient], Awaitable[T]]) -> T:
    """Run ``work`` in the caller's transaction, or in one of its own."""
    if using is not None:
        return await work(using)
    async with in_transaction() as conn:
        return await work(conn)


def _dt(value: Any) -> datetime:
    """A timestamp read by raw SQL: a datetime (PostgreSQL) or ISO text (SQLite)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def _q(name: str) -> str:
    return f'"{name}"'


async def _lock(
    conn: BaseDBAsyncClient, model: type[Model], keys: dict[str, Any], defaults: dict[str, Any]
) -> int:
    """The bucket's row, made to exist and locked for this transaction: its id.

    INSERT … ON CONFLICT DO NOTHING, then SELECT … FOR UPDATE: a second writer of the same
    bucket waits here until the first commits, and its aggregate (a later statement, under
    READ COMMITTED) then sees the first one's rows. SQLite has one writer at a time anyway."""
    table = model._meta.db_table
    cols = [*keys, *defaults]
    values = [
        json.dumps(v, separators=(",", ":")) if isinstance(v, list | dict) else v
        for v in (*keys.values(), *defaults.values())
    ]
    await conn.execute_query(
        _sql(
            conn,
            f"INSERT INTO {_q(table)} ({','.join(map(_q, cols))}) VALUES ({','.join('?' * len(cols))}) "
            f"ON CONFLICT ({','.join(map(_q, keys))}) DO NOTHING",
        ),
        values,
    )
    row = await model.filter(**keys).select_for_update().using_db(conn).only("id").first()
    assert row is not None
    return int(row.pk)


# --- show sales ---------------------------------------------------------------------------

_SALES_COLUMNS = (
    "SUM(CASE WHEN state IN ('issued','checked_in') THEN 1 ELSE 0 END) AS sold, "
    "SUM(CASE WHEN state IN ('issued','checked_in') THEN price_fen ELSE 0 END) AS revenue_fen, "
    "COUNT(DISTINCT CASE WHEN state IN ('issued','checked_in') THEN order_id END) AS orders, "
    "SUM(CASE WHEN state = 'refunded' THEN 1 ELSE 0 END) AS refunded, "
    "SUM(CASE WHEN state = 'refunded' THEN price_fen ELSE 0 END) AS refunded_fen, "
    "SUM(CASE WHEN state = 'changed' THEN 1 ELSE 0 END) AS changed, "
    "SUM(CASE WHEN state = 'checked_in' THEN 1 ELSE 0 END) AS checked_in"
)
SALES_FIELDS = ("sold", "revenue_fen", "orders", "refunded", "refunded_fen", "changed", "checked_in")


def capacity_of(layout: Sequence[str]) -> int:
    """Seats in a hall's layout (blocked places are not seats)."""
    return SeatPlan.from_layout(layout).capacity


async def refresh_show(showtime_id: int, using: BaseDBAsyncClient | None = None) -> None:
    """Recompute one show's ``ShowSales`` from its tickets, in ``using``'s transaction."""

    async def work(conn: BaseDBAsyncClient) -> None:
        show = await Showtime.get(id=showtime_id).using_db(conn)
        hall = await Hall.get(id=show.hall_id).using_db(conn)  # type: ignore[attr-defined]
        head = {
            "cinema_id": show.cinema_id, "day": business_day(show.starts_at),  # type: ignore[attr-defined]
            "film_id": show.film_id, "hall_id": show.hall_id,  # type: ignore[attr-defined]
            "starts_at": show.starts_at.astimezone(UTC), "capacity": capacity_of(hall.layout),
        }
        row_id = await _lock(conn, ShowSales, {"showtime_id": showtime_id}, {**head, **dict.fromkeys(SALES_FIELDS, 0)})
        found = await _rows(conn, f"SELECT {_SALES_COLUMNS} FROM ticket WHERE showtime_id = ?", [showtime_id])
        counts = {k: int(found[0][k] or 0) for k in SALES_FIELDS} if found else dict.fromkeys(SALES_FIELDS, 0)
        await ShowSales.filter(id=row_id).using_db(conn).update(
            **head, **counts, updated_at=datetime.now(UTC)
        )

    await _in_tx(using, work)


async def refresh_shows(showtime_ids: Iterable[int], using: BaseDBAsyncClient | None = None) -> None:
    """Several shows in one transaction, locked in id order (two changes between the same
    two shows never wait for each other)."""

    async def work(conn: BaseDBAsyncClient) -> None:
        for showtime_id in sorted(set(showtime_ids)):
            await refresh_show(showtime_id, conn)

    await _in_tx(using, work)


# --- feedback -----------------------------------------------------------------------------

# The response's bucket: its film (0: none) and hall (the visit's, else the touchpoint's).
_FEEDBACK_FROM = (
    "FROM feedback_response r JOIN touchpoint tp ON tp.id = r.touchpoint_id "
)
_FEEDBACK_HALL = "COALESCE(NULLIF(r.hall, ''), tp.hall, '')"


class ResponseLike(Protocol):
    id: int
    cinema_id: int
    visit_day: date
    film_id: int | None
    hall: str | None


@dataclass(frozen=True, slots=True)
class FeedbackKey:
    cinema_id: int
    day: date
    film_id: int
    hall: str


def _feedback_measures(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    stars, nps, categories = [0] * 5, [0] * 11, Counter[str]()
    responses = comments = negative = 0
    for r in rows:
        if r["stars"] is not None or r["nps"] is not None:
            responses += 1
        if r["stars"] is not None and 1 <= r["stars"] <= 5:
            stars[r["stars"] - 1] += 1
        if r["nps"] is not None and 0 <= r["nps"] <= 10:
            nps[r["nps"]] += 1
        if r["comment"]:
            comments += 1
            negative += r["sentiment"] == "neg"
            if r["category"]:
                categories[r["category"]] += 1
    return {
        "responses": responses, "stars": stars, "nps": nps, "comments": comments,
        "negative": negative, "categories": dict(sorted(categories.items())),
    }


async def response_key(response_id: int, using: BaseDBAsyncClient | None = None) -> FeedbackKey | None:
    """The bucket a response counts in now (None: no such response)."""
    conn = using or get_connection("default")
    found = await _rows(
        conn,
        f"SELECT r.cinema_id, r.visit_day, COALESCE(r.film_id, 0) AS film_id, {_FEEDBACK_HALL} AS hall "
        f"{_FEEDBACK_FROM} WHERE r.id = ?",
        [response_id],
    )
    if not found:
        return None
    r = found[0]
    day = r["visit_day"] if isinstance(r["visit_day"], date) else date.fromisoformat(r["visit_day"])
    return FeedbackKey(int(r["cinema_id"]), day, int(r["film_id"]), str(r["hall"]))


async def refresh_feedback(
    cinema_id: int, day: date, film_id: int, hall: str, using: BaseDBAsyncClient | None = None
) -> None:
    """Recompute one ``FeedbackDay`` bucket from its responses."""

    async def work(conn: BaseDBAsyncClient) -> None:
        keys = {"cinema_id": cinema_id, "day": day, "film_id": film_id, "hall": hall}
        row_id = await _lock(
            conn, FeedbackDay, keys,
            {"responses": 0, "stars": [], "nps": [], "comments": 0, "negative": 0, "categories": {}},
        )
        rows = await _rows(
            conn,
            "SELECT r.stars, r.nps, r.comment <> '' AS comment, r.sentiment, r.category "
            f"{_FEEDBACK_FROM} WHERE r.cinema_id = ? AND r.visit_day = ? "
            f"AND COALESCE(r.film_id, 0) = ? AND {_FEEDBACK_HALL} = ?",
            [cinema_id, day, film_id, hall],
        )
        if not rows:  # the last response left: no bucket, as rebuild would make none
            await FeedbackDay.filter(id=row_id).using_db(conn).delete()
            return
        await FeedbackDay.filter(id=row_id).using_db(conn).update(**_feedback_measures(rows))

    await _in_tx(using, work)


async def refresh_response(
    response_id: int, before: FeedbackKey | None = None, using: BaseDBAsyncClient | None = None
) -> None:
    """A response changed: its bucket now, and ``before`` (the bucket it was in) if that
    differs, are recomputed (in a fixed order: two edits never wait for each other)."""

    async def work(conn: BaseDBAsyncClient) -> None:
        now_key = await response_key(response_id, conn)
        keys = {k for k in (before, now_key) if k is not None}
        for k in sorted(keys, key=lambda k: (k.cinema_id, k.day, k.film_id, k.hall)):
            await refresh_feedback(k.cinema_id, k.day, k.film_id, k.hall, conn)

    await _in_tx(using, work)


# --- service ------------------------------------------------------------------------------


class OrderLike(Protocol):
    cinema_id: int
    created_at: datetime
    kind: str
    team: str
    category: str


def _service_measures(
    orders: Sequence[dict[str, Any]], events: Iterable[dict[str, Any]]
) -> dict[str, Any]:
    """What a bucket holds, from its orders (id, ref, state, created_at) and their
    acknowledge / resolve / escalate events in timeline order."""
    by_id = {o["id"]: o for o in orders}
    first_ack: dict[int, datetime] = {}
    last_resolve: dict[int, datetime] = {}
    breaches: list[dict[str, Any]] = []
    breached: set[int] = set()
    for e in events:
        oid = e["work_order_id"]
        if oid not in by_id:
            continue
        if e["action"] == "acknowledge":
            first_ack.setdefault(oid, _dt(e["at"]))
        elif e["action"] == "resolve":
            last_resolve[oid] = _dt(e["at"])
        elif e["action"] == "escalate":
            detail = _json(e["detail"]) or {}
            breached.add(oid)
            breaches.append({
                "ref": by_id[oid]["ref"], "clock": detail.get("clock"),
                "held_by": detail.get("assignee_before"),
            })
    resolved = [o for o in orders if o["state"] in DONE]

    def seconds(at: datetime, oid: int) -> float:
        return round((at - _dt(by_id[oid]["created_at"])).total_seconds(), 3)

    return {
        "opened": len(orders),
        "acknowledged": len(first_ack),
        "resolved": len(resolved),
        "breached": len(breached),
        "ack_seconds": sorted(seconds(at, oid) for oid, at in first_ack.items()),
        "resolve_seconds": sorted(
            seconds(last_resolve[o["id"]], o["id"]) for o in resolved if o["id"] in last_resolve
        ),
        "breaches": breaches,
    }


_EVENTS = (
    "SELECT work_order_id, action, at, detail FROM work_order_event "
    "WHERE action IN ('acknowledge', 'resolve', 'escalate') AND work_order_id IN ({ids}) "
    "ORDER BY at, id"
)


async def refresh_service(
    cinema_id: int, day: date, kind: str, team: str, category: str,
    using: BaseDBAsyncClient | None = None,
) -> None:
    """Recompute one ``ServiceDay`` bucket from its work orders and their timelines."""

    async def work(conn: BaseDBAsyncClient) -> None:
        keys = {"cinema_id": cinema_id, "day": day, "kind": kind, "team": team, "category": category}
        row_id = await _lock(
            conn, ServiceDay, keys,
            {"opened": 0, "acknowledged": 0, "resolved": 0, "breached": 0,
             "ack_seconds": [], "resolve_seconds": [], "breaches": []},
        )
        start, end = day_bounds(day)
        orders = await _rows(
            conn,
            "SELECT id, ref, state, created_at FROM work_order WHERE cinema_id = ? AND kind = ? "
            "AND team = ? AND category = ? AND created_at >= ? AND created_at < ? ORDER BY id",
            [cinema_id, kind, team, category, start, end],
        )
        if not orders:  # the last order moved to another team or category
            await ServiceDay.filter(id=row_id).using_db(conn).delete()
            return
        ids = [o["id"] for o in orders]
        events = await _rows(conn, _EVENTS.format(ids=",".join("?" * len(ids))), ids)
        await ServiceDay.filter(id=row_id).using_db(conn).update(**_service_measures(orders, events))

    await _in_tx(using, work)


def service_key(order: OrderLike) -> tuple[int, date, str, str, str]:
    return (order.cinema_id, business_day(order.created_at), str(order.kind), order.team, order.category)


async def refresh_order(
    order: OrderLike, using: BaseDBAsyncClient | None = None,
    before: tuple[int, date, str, str, str] | None = None,
) -> None:
    """A work order changed: its bucket is recomputed, and ``before`` (its ``service_key``
    before a change of team or category) too when it differs."""

    async def work(conn: BaseDBAsyncClient) -> None:
        for key in sorted({service_key(order), *([before] if before else [])}):
            await refresh_service(*key, using=conn)

    await _in_tx(using, work)


# --- devices ------------------------------------------------------------------------------


class MinuteLike(Protocol):
    cinema_id: int
    device_id: str
    minute: datetime
    metric: str
    n: int
    vmin: float
    vmax: float
    vsum: float


_DAY_MERGE = {
    "sqlite": (
        'INSERT INTO "device_day" ("cinema_id","device_id","day","metric","n","vmin","vmax","vsum","vlast","last_at") '
        "VALUES (?,?,?,?,?,?,?,?,{vlast},?) "
        'ON CONFLICT ("device_id","day","metric") DO UPDATE SET '
        '"n" = "device_day"."n" + excluded."n", '
        '"vmin" = MIN("device_day"."vmin", excluded."vmin"), '
        '"vmax" = MAX("device_day"."vmax", excluded."vmax"), '
        '"vsum" = "device_day"."vsum" + excluded."vsum", '
        '"vlast" = CASE WHEN "device_day"."last_at" IS NULL OR excluded."last_at" >= "device_day"."last_at" '
        'THEN excluded."vlast" ELSE "device_day"."vlast" END, '
        '"last_at" = MAX(COALESCE("device_day"."last_at", excluded."last_at"), excluded."last_at")'
    ),
    "postgres": (
        'INSERT INTO "device_day" ("cinema_id","device_id","day","metric","n","vmin","vmax","vsum","vlast","last_at") '
        "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,{vlast},$10) "
        'ON CONFLICT ("device_id","day","metric") DO UPDATE SET '
        '"n" = "device_day"."n" + EXCLUDED."n", '
        '"vmin" = LEAST("device_day"."vmin", EXCLUDED."vmin"), '
        '"vmax" = GREATEST("device_day"."vmax", EXCLUDED."vmax"), '
        '"vsum" = "device_day"."vsum" + EXCLUDED."vsum", '
        '"vlast" = CASE WHEN "device_day"."last_at" IS NULL OR EXCLUDED."last_at" >= "device_day"."last_at" '
        'THEN EXCLUDED."vlast" ELSE "device_day"."vlast" END, '
        '"last_at" = GREATEST("device_day"."last_at", EXCLUDED."last_at")'
    ),
}
# vlast of minutes: the latest minute's average as stored now (a minute written in two
# parts has both in it); of a health snapshot: the score itself.
_MINUTE_VALUE = {
    "sqlite": '(SELECT "vsum" / "n" FROM "telemetry_minute" WHERE "device_id" = ?2 AND "metric" = ?4 AND "minute" = ?9)',
    "postgres": (
        '(SELECT "vsum" / "n" FROM "telemetry_minute" WHERE "device_id" = $2::varchar '
        'AND "metric" = $4::varchar AND "minute" = $9::timestamptz)'
    ),
}


async def merge_minutes(rows: Sequence[MinuteLike], using: BaseDBAsyncClient) -> int:
    """Merge minute aggregates (already written to ``telemetry_minute`` in ``using``'s
    transaction) into their device days; device days written."""
    days: dict[tuple[str, date, str], list[Any]] = {}
    for r in rows:
        key = (r.device_id, business_day(r.minute), r.metric[:48])
        at = r.minute.astimezone(UTC)
        got = days.get(key)
        if got is None:  # [8]: the latest minute as its row was written (the lookup of its value)
            days[key] = [r.cinema_id, key[0], key[1], key[2], r.n, r.vmin, r.vmax, r.vsum, r.minute, at]
            continue
        got[4] += r.n
        got[5], got[6] = min(got[5], r.vmin), max(got[6], r.vmax)
        got[7] += r.vsum
        if at > got[9]:
            got[8], got[9] = r.minute, at
    if not days:
        return 0
    dialect = _dialect(using)
    sql = _DAY_MERGE[dialect].format(vlast=_MINUTE_VALUE[dialect])
    if dialect == "sqlite":  # numbered parameters throughout: ?1 … ?10
        sql = sql.replace("VALUES (?,?,?,?,?,?,?,?,", "VALUES (?1,?2,?3,?4,?5,?6,?7,?8,").replace(",?) ", ",?10) ")
    await using.execute_many(sql, list(days.values()))
    return len(days)


async def merge_health(
    scores: Sequence[tuple[int, str, int]], at: datetime, using: BaseDBAsyncClient | None = None
) -> None:
    """Health snapshots (cinema id, device id, score) taken at ``at``, merged into metric
    ``health_score`` of their device days."""
    if not scores:
        return
    conn = using or get_connection("default")
    dialect = _dialect(conn)
    sql = _DAY_MERGE[dialect].format(vlast="?" if dialect == "sqlite" else "$9")
    day, when = business_day(at), at.astimezone(UTC)
    values = [[c, d, day, HEALTH, 1, float(s), float(s), float(s), float(s), when] for c, d, s in scores]
    await conn.execute_many(sql, values)


# --- rebuild ------------------------------------------------------------------------------

BATCH = 5000


async def _delete_scope(conn: BaseDBAsyncClient, model: type[Model], cinema_id: int | None) -> int:
    """Delete a rollup's rows of one cinema (or all), a batch of ids at a time."""
    deleted = 0
    while True:
        query = model.all() if cinema_id is None else model.filter(cinema_id=cinema_id)
        ids = await query.using_db(conn).order_by("id").limit(BATCH).values_list("id", flat=True)
        if not ids:
            return deleted
        deleted += await model.filter(id__in=list(ids)).using_db(conn).delete()


def _scope(cinema_id: int | None, column: str = "cinema_id", alias: str = "") -> tuple[str, list[Any]]:
    prefix = f"{alias}." if alias else ""
    return ("", []) if cinema_id is None else (f" AND {prefix}{column} = ?", [cinema_id])


def _local_day(conn: BaseDBAsyncClient, column: str) -> str:
    """SQL for the business day of a UTC timestamp column (Shanghai has no summer time:
    the day starts at 03:00 +08:00, i.e. 19:00 UTC the evening before)."""
    if _dialect(conn) == "sqlite":
        return f"date({column}, '+5 hours')"
    return f"(({column} AT TIME ZONE 'Asia/Shanghai') - interval '3 hours')::date"


async def _rebuild_sales(conn: BaseDBAsyncClient, cinema_id: int | None) -> int:
    await _delete_scope(conn, ShowSales, cinema_id)
    where, args = _scope(cinema_id, alias="s")
    now = datetime.now(UTC)
    await conn.execute_query(
        _sql(
            conn,
            'INSERT INTO "show_sales" ("showtime_id","cinema_id","day","film_id","hall_id","starts_at",'
            '"capacity","sold","revenue_fen","orders","refunded","refunded_fen","changed","checked_in","updated_at") '
            f"SELECT s.id, s.cinema_id, {_local_day(conn, 's.starts_at')}, s.film_id, s.hall_id, s.starts_at, 0, "
            "COALESCE(t.sold, 0), COALESCE(t.revenue_fen, 0), COALESCE(t.orders, 0), COALESCE(t.refunded, 0), "
            "COALESCE(t.refunded_fen, 0), COALESCE(t.changed, 0), COALESCE(t.checked_in, 0), ? "
            f"FROM showtime s LEFT JOIN (SELECT showtime_id, {_SALES_COLUMNS} FROM ticket GROUP BY showtime_id) t "
            "ON t.showtime_id = s.id "
            f"WHERE (t.showtime_id IS NOT NULL OR s.cancelled_at IS NOT NULL){where}",
        ),
        [now, *args],
    )
    halls = await Hall.all().using_db(conn).values_list("id", "layout")
    capacities = [[capacity_of(_json(layout)), hall_id] for hall_id, layout in halls]
    if capacities:
        await conn.execute_many(
            _sql(conn, 'UPDATE "show_sales" SET "capacity" = ? WHERE "hall_id" = ?'), capacities
        )
    return await (ShowSales.all() if cinema_id is None else ShowSales.filter(cinema_id=cinema_id)).using_db(conn).count()


async def _rebuild_feedback(conn: BaseDBAsyncClient, cinema_id: int | None) -> int:
    await _delete_scope(conn, FeedbackDay, cinema_id)
    where, args = _scope(cinema_id, alias="r")
    rows = await _rows(
        conn,
        "SELECT r.cinema_id, r.visit_day, COALESCE(r.film_id, 0) AS film_id, "
        f"{_FEEDBACK_HALL} AS hall, r.stars, r.nps, r.comment <> '' AS comment, r.sentiment, r.category "
        f"{_FEEDBACK_FROM} WHERE 1 = 1{where}",
        args,
    )
    buckets: dict[tuple[int, date, int, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        day = r["visit_day"] if isinstance(r["visit_day"], date) else date.fromisoformat(r["visit_day"])
        buckets[(int(r["cinema_id"]), day, int(r["film_id"]), str(r["hall"]))].append(r)
    made = [
        FeedbackDay(cinema_id=c, day=d, film_id=f, hall=h, **_feedback_measures(members))
        for (c, d, f, h), members in sorted(buckets.items())
    ]
    await FeedbackDay.bulk_create(made, batch_size=BATCH, using_db=conn)
    return len(made)


async def _rebuild_service(conn: BaseDBAsyncClient, cinema_id: int | None) -> int:
    await _delete_scope(conn, ServiceDay, cinema_id)
    where, args = _scope(cinema_id)
    orders = await _rows(
        conn,
        f"SELECT id, ref, state, created_at, cinema_id, kind, team, category FROM work_order WHERE 1 = 1{where}",
        args,
    )
    where, args = _scope(cinema_id, alias="o")
    events = await _rows(
        conn,
        "SELECT e.work_order_id, e.action, e.at, e.detail FROM work_order_event e "
        "JOIN work_order o ON o.id = e.work_order_id "
        f"WHERE e.action IN ('acknowledge', 'resolve', 'escalate'){where} ORDER BY e.at, e.id",
        args,
    )
    buckets: dict[tuple[int, date, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    bucket_of: dict[int, tuple[int, date, str, str, str]] = {}
    for o in sorted(orders, key=lambda o: o["id"]):
        key = (int(o["cinema_id"]), business_day(_dt(o["created_at"])), o["kind"], o["team"], o["category"])
        buckets[key].append(o)
        bucket_of[o["id"]] = key
    timeline: dict[tuple[int, date, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for e in events:  # in timeline order
        if e["work_order_id"] in bucket_of:
            timeline[bucket_of[e["work_order_id"]]].append(e)
    made = [
        ServiceDay(cinema_id=c, day=d, kind=k, team=t, category=cat,
                   **_service_measures(members, timeline[(c, d, k, t, cat)]))
        for (c, d, k, t, cat), members in sorted(buckets.items())
    ]
    await ServiceDay.bulk_create(made, batch_size=BATCH, using_db=conn)
    return len(made)


async def _rebuild_devices(conn: BaseDBAsyncClient, cinema_id: int | None) -> int:
    """Device days recomputed from the minutes still kept (rows replaced, none deleted)."""
    where, args = _scope(cinema_id)
    day = _local_day(conn, "minute")
    if _dialect(conn) == "sqlite":
        select = (
            "SELECT g.cinema_id, g.device_id, g.day, g.metric, g.n, g.vmin, g.vmax, g.vsum, "
            "(SELECT m.vsum / m.n FROM telemetry_minute m WHERE m.device_id = g.device_id "
            "AND m.metric = g.metric AND m.minute = g.last_at), g.last_at FROM ("
            f"SELECT cinema_id, device_id, {day} AS day, metric, SUM(n) AS n, MIN(vmin) AS vmin, "
            "MAX(vmax) AS vmax, SUM(vsum) AS vsum, MAX(minute) AS last_at FROM telemetry_minute "
            f"WHERE 1 = 1{where} GROUP BY cinema_id, device_id, {day}, metric) g WHERE 1 = 1"
        )
        update = (
            ' ON CONFLICT ("device_id","day","metric") DO UPDATE SET "cinema_id" = excluded."cinema_id", '
            '"n" = excluded."n", "vmin" = excluded."vmin", "vmax" = excluded."vmax", "vsum" = excluded."vsum", '
            '"vlast" = excluded."vlast", "last_at" = excluded."last_at"'
        )
    else:
        select = (
            f"SELECT cinema_id, device_id, {day} AS day, metric, SUM(n), MIN(vmin), MAX(vmax), SUM(vsum), "
            "(array_agg(vsum / n ORDER BY minute DESC))[1], MAX(minute) FROM telemetry_minute WHERE TRUE"
            f"{where} GROUP BY cinema_id, device_id, {day}, metric"
        )
        update = (
            ' ON CONFLICT ("device_id","day","metric") DO UPDATE SET "cinema_id" = EXCLUDED."cinema_id", '
            '"n" = EXCLUDED."n", "vmin" = EXCLUDED."vmin", "vmax" = EXCLUDED."vmax", "vsum" = EXCLUDED."vsum", '
            '"vlast" = EXCLUDED."vlast", "last_at" = EXCLUDED."last_at"'
        )
    await conn.execute_query(
        _sql(
            conn,
            'INSERT INTO "device_day" ("cinema_id","device_id","day","metric","n","vmin","vmax","vsum","vlast","last_at") '
            + select + update,
        ),
        args,
    )
    # The driver's row count of an INSERT … SELECT differs (asyncpg: none): count instead.
    kept = DeviceDay.exclude(metric=HEALTH)
    return await (kept if cinema_id is None else kept.filter(cinema_id=cinema_id)).using_db(conn).count()


REBUILDS = (
    ("show_sales", _rebuild_sales),
    ("feedback_day", _rebuild_feedback),
    ("service_day", _rebuild_service),
    ("device_day", _rebuild_devices),
)


async def rebuild(cinema_id: int | None = None, progress: Progress | None = None) -> dict[str, int]:
    """Recompute every bucket of one cinema (or all) from raw rows; rows written per rollup.

    Each rollup is rebuilt in its own transaction; a writer of that rollup meanwhile waits
    for it (its bucket lock), so no change is lost between the delete and the insert."""
    written: dict[str, int] = {}
    for done, (name, build) in enumerate(REBUILDS):
        if progress is not None:
            progress(done, len(REBUILDS))
        async with in_transaction() as conn:
            if _dialect(conn) == "postgres":
                await conn.execute_script(f'LOCK TABLE "{name}" IN SHARE ROW EXCLUSIVE MODE')
            written[name] = await build(conn, cinema_id)
    if progress is not None:
        progress(len(REBUILDS), len(REBUILDS))
    return written
