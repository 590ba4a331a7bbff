"""销售: the box office over a period — tickets, revenue, refunds and changes, occupancy per
show and per hall, the trend by day, occupancy by hour × weekday, and the week ahead's
presale. Managers only: revenue is never shown to staff or engineers (the shell checks the
section's roles; every function here checks again). Money comes in fen and is shown with
``domain.pricing.format_fen``; every figure links to its tickets.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from aiohttp import web

from domain import reports
from domain.days import SHANGHAI
from domain.people import StaffRole
from domain.pricing import format_fen
from handlers.console import charts, params
from handlers.console import widgets as w
from handlers.console.base import Column, PageContext, Section, Table
from handlers.console.service import offset, paged_title

WEEKDAYS = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
TICKET_STATES = ("issued", "checked_in", "refunded", "changed", "standing")
TICKET_STATE_LABELS = {"issued": "已出票", "checked_in": "已检票", "refunded": "已退票", "changed": "已改签"}
SHOWS_ON_PAGE = 20  # the per-show table on the page; 「查看全部 N 场」 opens them all


def _managers_only(fn: Callable[[PageContext], Awaitable[Any]]) -> Callable[[PageContext], Awaitable[Any]]:
    async def guarded(ctx: PageContext) -> Any:
        if ctx.viewer.role is not StaffRole.MANAGER:
            raise web.HTTPForbidden(text="只有经理可以查看销售数据")
        return await fn(ctx)
    guarded.__name__ = fn.__name__
    guarded.__doc__ = fn.__doc__
    return guarded


async def _sales(ctx: PageContext) -> reports.Sales:
    return await reports.sales(params.period(ctx), ctx.now)


def _pct(value: float | None) -> float | None:
    return None if value is None else round(value * 100, 1)


def _short_day(iso: str) -> str:
    return f"{int(iso[5:7])}/{int(iso[8:10])}" if len(iso) == 10 else iso


# --- tables ---------------------------------------------------------------------------------------

GROUP_COLUMNS = (
    Column("label", "分组"),
    Column("shows", "场次", "int"),
    Column("tickets", "售票", "int"),
    Column("revenue_fen", "票房", "money"),
    Column("occupancy", "上座率", "percent"),
    Column("capacity", "座位数", "int"),
    Column("refunds", "退票", "int"),
    Column("refunded_fen", "退款", "money"),
    Column("changes", "改签", "int"),
    Column("checked_in", "检票", "int"),
)


def _group_table(ctx: PageContext, name: str, title: str, first: str,
                 groups: Sequence[reports.SalesGroup], param: str | None) -> Table:
    rows = [
        {"key": g.key, "label": g.label, "shows": g.shows, "tickets": g.tickets,
         "revenue_fen": g.revenue_fen, "occupancy": g.occupancy, "capacity": g.capacity,
         "refunds": g.refunds, "refunded_fen": g.refunded_fen, "changes": g.changes,
         "checked_in": g.checked_in}
        for g in groups
    ]
    links: dict[str, Callable[[Mapping[str, Any]], str | None]] = {}
    if param is not None:
        def to(column: str, **extra: str) -> Callable[[Mapping[str, Any]], str | None]:
            return lambda r: ctx.link("/rows/tickets", **{param: r["key"]}, **extra) if r[column] else None
        links = {"tickets": to("tickets", state="standing"), "revenue_fen": to("tickets", state="standing"),
                 "refunds": to("refunds", state="refunded"), "changes": to("changes", state="changed"),
                 "checked_in": to("checked_in", state="checked_in")}
    return Table(name, title, (Column("label", first), *GROUP_COLUMNS[1:]), rows, links=links)


def days_of(ctx: PageContext, s: reports.Sales) -> Table:
    return _group_table(ctx, "days", "按日", "日期", s.by_day, "day")


def halls_of(ctx: PageContext, s: reports.Sales) -> Table:
    return _group_table(ctx, "halls", "按影厅", "影厅", s.by_hall, "hall")


def films_of(ctx: PageContext, s: reports.Sales) -> Table:
    return _group_table(ctx, "films", "按影片", "影片", s.by_film, "film")


def presale_of(ctx: PageContext, s: reports.Sales) -> Table:
    # The week ahead lies outside the page's period: its tickets are reached by day and range.
    rows = _group_table(ctx, "presale", "未来7天预售", "日期", s.presale, None)
    rows.links = {"tickets": lambda r: _presale_link(ctx, r["key"]) if r["tickets"] else None}
    return rows


def _presale_link(ctx: PageContext, iso: str) -> str:
    return ctx.link("/rows/tickets", range="custom", start=iso, end=iso, state="standing")


SHOW_COLUMNS = (
    Column("starts_at", "开场", "datetime"),
    Column("film", "影片"),
    Column("hall", "影厅"),
    Column("tickets", "售票", "int"),
    Column("occupancy", "上座率", "percent"),
    Column("revenue_fen", "票房", "money"),
    Column("capacity", "座位数", "int"),
    Column("refunds", "退票", "int"),
    Column("changes", "改签", "int"),
    Column("checked_in", "检票", "int"),
)


def shows_of(ctx: PageContext, s: reports.Sales, limit: int | None = None) -> Table:
    """Every show of the period (``limit``: the first ones only — a year is ~11,000 shows a
    cinema, and the page shows 20)."""
    rows = [
        {"showtime_id": r.showtime_id, "starts_at": r.starts_at, "film": r.film, "hall": r.hall,
         "tickets": r.tickets, "capacity": r.capacity, "occupancy": r.occupancy,
         "revenue_fen": r.revenue_fen, "refunds": r.refunds, "changes": r.changes,
         "checked_in": r.checked_in}
        for r in (s.per_show if limit is None else s.per_show[:limit])
    ]

    def to(column: str, **extra: str) -> Callable[[Mapping[str, Any]], str | None]:
        return lambda r: ctx.link("/rows/tickets", show=str(r["showtime_id"]), **extra) if r[column] else None

    return Table("shows", "每场", SHOW_COLUMNS, rows, links={
        "tickets": to("tickets", state="standing"), "revenue_fen": to("tickets", state="standing"),
        "refunds": to("refunds", state="refunded"), "changes": to("changes", state="changed"),
        "checked_in": to("checked_in", state="checked_in"),
    })


def _shows_on_page(ctx: PageContext, shows: Table) -> Table:
    """The per-show table as the page shows it on a phone: the start as 「19:30」 (「11/21
    19:30」 over several days) and the hall unwrapped, so 售票 and 上座率 fit in 375 px
    beside film and hall. The export and 「查看全部」 keep the full date and time."""
    one_day = ctx.scope.start == ctx.scope.end

    def start(at: datetime) -> str:
        local = at.astimezone(SHANGHAI)
        return f"{local:%H:%M}" if one_day else f"{local.month}/{local.day} {local:%H:%M}"

    columns = [Column("start", "开场", "short"), *(
        Column(c.key, c.title, "short") if c.key == "hall" else c for c in shows.columns if c.key != "starts_at"
    )]
    rows = [{**r, "start": start(r["starts_at"])} for r in shows.rows]
    return Table(shows.name, shows.title, columns, rows, links=shows.links)


def _exported(build: Callable[[PageContext, reports.Sales], Table]) -> Callable[[PageContext], Awaitable[Table]]:
    @_managers_only
    async def table(ctx: PageContext) -> Table:
        return build(ctx, await _sales(ctx))
    return table


TICKET_COLUMNS = (
    Column("starts_at", "开场", "datetime"),
    Column("film", "影片"),
    Column("hall", "影厅"),
    Column("seat", "座位"),
    Column("kind", "票种"),
    Column("price_fen", "票价", "money"),
    Column("state", "状态"),
    Column("channel", "渠道"),
    Column("order_no", "订单号"),
    Column("paid_at", "支付时间", "datetime"),
)


@_managers_only
async def tickets_rows(ctx: PageContext) -> Table:
    """The tickets behind a figure: ``show`` (a showtime id), ``day``, ``hall`` (hall id),
    ``film`` (film id), ``state`` (a ticket state or ``standing``), ``weekday`` (0 =
    Monday) and ``hour`` (local start hour: a heatmap cell); ``page``."""
    page = await reports.tickets(
        params.period(ctx),
        showtime_id=params.integer(ctx, "show"), day=params.day(ctx),
        hall_id=params.integer(ctx, "hall"), film_id=params.integer(ctx, "film"),
        state=params.choice(ctx, "state", TICKET_STATES),
        weekday=params.integer(ctx, "weekday", maximum=6), hour=params.integer(ctx, "hour", maximum=23),
        limit=reports.PAGE_LIMIT, offset=offset(ctx),
    )
    rows = [
        {"starts_at": t.starts_at, "film": t.film, "hall": t.hall, "seat": t.seat, "kind": t.kind,
         "price_fen": t.price_fen, "state": TICKET_STATE_LABELS.get(t.state, t.state),
         "channel": t.channel, "order_no": t.order_no, "paid_at": t.paid_at}
        for t in page.rows
    ]
    return Table("tickets", paged_title("票务明细", page), TICKET_COLUMNS, rows)


@_managers_only
async def shows_rows(ctx: PageContext) -> Table:
    return shows_of(ctx, await _sales(ctx))


# --- the page ---------------------------------------------------------------------------------------


@_managers_only
async def render(ctx: PageContext) -> str:
    s = await _sales(ctx)
    link = ctx.link
    figures = w.tiles([
        w.tile("售票", w.number(s.tickets), href=link("/rows/tickets", state="standing"), key="tickets",
               note=f"{s.shows} 场 · {s.orders} 单"),
        w.tile("票房", format_fen(s.revenue_fen), href=link("/rows/tickets", state="standing"),
               key="revenue"),
        w.tile("上座率", w.percent(s.occupancy), href=link("/rows/shows"), key="occupancy",
               note=f"{w.number(s.tickets)} / {w.number(s.capacity)} 座"),
        w.tile("退票", w.number(s.refunds), href=link("/rows/tickets", state="refunded"), key="refunds",
               note=f"退款 {format_fen(s.refunded_fen)}"),
        w.tile("改签", w.number(s.changes), href=link("/rows/tickets", state="changed"), key="changes"),
        w.tile("检票", w.number(s.checked_in), href=link("/rows/tickets", state="checked_in"),
               key="checked_in"),
    ])
    shows = shows_of(ctx, s, limit=SHOWS_ON_PAGE)
    n_shows = len(s.per_show)
    return w.STYLE + charts.library() + '<div class="cb-body">' + figures + "".join([
        _trend(ctx, s),
        w.grid([_hall_bars(ctx, s), _heatmap(ctx, s)]),
        w.card("按影厅", w.table(halls_of(ctx, s), ctx=ctx, export="halls"), key="halls"),
        w.card("按影片", w.table(films_of(ctx, s), ctx=ctx, export="films"), key="films"),
        w.card("每场上座", w.table(_shows_on_page(ctx, shows), ctx=ctx, export="shows", limit=SHOWS_ON_PAGE,
                                    more_href=link("/rows/shows"), more_text=f"查看全部 {n_shows} 场",
                                    total=n_shows),
               note=f"共 {n_shows} 场", key="shows"),
        _presale(ctx, s),
        w.card("按日", w.table(days_of(ctx, s), ctx=ctx, export="days"), key="days"),
    ]) + "</div>"


def _trend(ctx: PageContext, s: reports.Sales) -> str:
    days = s.by_day
    if not any(g.shows for g in days):
        return w.card("每日趋势", w.empty(), key="trend")
    option = charts.line(
        [_short_day(g.key) for g in days],
        {"售票(张)": [g.tickets for g in days]},
        right={"票房(元)": [round(g.revenue_fen / 100, 2) for g in days]}, right_name="元",
        y_name="张", counts=True,
        links=[ctx.link("/rows/tickets", day=g.key, state="standing") if g.tickets else None for g in days],
    )
    return w.card("每日趋势", charts.render(option, height=240, label="每日售票与票房"), key="trend")


def _hall_bars(ctx: PageContext, s: reports.Sales) -> str:
    halls = [g for g in s.by_hall if g.shows]
    if not halls:
        return w.card("各厅上座率", w.empty(), key="hall-chart")
    option = charts.bars(
        [g.label for g in halls], {"上座率": [_pct(g.occupancy) for g in halls]},
        horizontal=True, percent=True, value_labels=True,
        links=[ctx.link("/rows/tickets", hall=g.key, state="standing") for g in halls],
    )
    return w.card("各厅上座率", charts.render(option, height=60 + 30 * len(halls), label="各厅上座率"),
                  key="hall-chart")


def _heatmap(ctx: PageContext, s: reports.Sales) -> str:
    cells = [c for c in s.heatmap if c.shows]
    if not cells:
        return w.card("上座率：时段 × 星期", w.empty(), key="heatmap")
    first = min(c.hour for c in cells)
    last = max(c.hour for c in cells)
    hours = list(range(first, last + 1))
    option = charts.heatmap(
        [f"{h}点" for h in hours], list(WEEKDAYS),
        [(c.hour - first, c.weekday, _pct(c.occupancy)) for c in cells],
        links=[ctx.link("/rows/tickets", weekday=str(c.weekday), hour=str(c.hour), state="standing")
               if c.tickets else None for c in cells],
    )
    return w.card("上座率：时段 × 星期", charts.render(option, height=300, label="上座率热力图"),
                  note="按开场时间", key="heatmap")


def _presale(ctx: PageContext, s: reports.Sales) -> str:
    table = presale_of(ctx, s)
    if not any(g.shows for g in s.presale):
        return w.card("未来7天预售", w.empty() + w.export_links(ctx, "presale"), key="presale")
    option = charts.bars(
        [_short_day(g.key) for g in s.presale], {"已售": [g.tickets for g in s.presale]},
        value_labels=True, links=[_presale_link(ctx, g.key) if g.tickets else None for g in s.presale],
    )
    body = charts.render(option, height=200, label="未来7天预售") + w.table(table, ctx=ctx, export="presale")
    return w.card("未来7天预售", body, key="presale")


SECTION = Section(
    key="sales",
    title="销售",
    roles=frozenset({StaffRole.MANAGER}),
    render=render,
    tables={
        "days": _exported(days_of), "halls": _exported(halls_of), "films": _exported(films_of),
        "shows": _exported(shows_of), "presale": _exported(presale_of),
    },
    rows={"tickets": tickets_rows, "shows": shows_rows},
)
