"""服务: the service desk over a period — work orders opened / acknowledged / resolved by kind
and team, median and p90 time to acknowledge and to resolve, SLA breaches and who held them,
and the open items now with their age. Managers, staff and engineers. Figures from
``domain.reports``; each links to its work orders.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from domain import reports
from domain.people import StaffRole
from domain.workorders import CATEGORY_LABELS, KIND_LABELS, STATE_LABELS, TEAM_LABELS
from handlers.console import charts, params
from handlers.console import widgets as w
from handlers.console.base import Column, PageContext, Section, Table

ORDER_STATES = (*(str(s) for s in STATE_LABELS), "active")
CLOCKS = {"acknowledge": "接单", "resolve": "完成"}
SEVERITY_LABELS = {"P1": "P1 紧急", "P2": "P2 重要", "P3": "P3 一般"}


def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind)  # type: ignore[call-overload]


def state_label(state: str) -> str:
    return STATE_LABELS.get(state, state)  # type: ignore[call-overload]


def team_label(team: str) -> str:
    return TEAM_LABELS.get(team, team)


def category_label(category: str) -> str:
    return CATEGORY_LABELS.get(category, category)


# --- work orders as rows (also the experience section's complaints) -------------------------------

ORDER_COLUMNS = (
    Column("ref", "工单"),
    Column("created_at", "创建时间", "datetime"),
    Column("kind", "类型"),
    Column("category", "类别"),
    Column("severity", "级别"),
    Column("state", "状态"),
    Column("team", "班组"),
    Column("assignee", "处理人"),
    Column("hall", "影厅"),
    Column("summary", "内容"),
)


def order_rows(orders: Sequence[reports.WorkOrderRow | reports.OpenItem]) -> list[dict[str, Any]]:
    return [
        {
            "id": o.id, "ref": o.ref, "created_at": o.created_at, "kind": kind_label(o.kind),
            "category": category_label(o.category), "severity": o.severity,
            "state": state_label(o.state), "team": team_label(o.team),
            "assignee": o.assignee or "", "hall": o.hall or "", "summary": o.summary,
            "age": getattr(o, "age_seconds", None),
        }
        for o in orders
    ]


def paged_title(title: str, page: reports.Page[Any]) -> str:
    if page.offset or page.more:
        last = page.offset + len(page.rows)
        return f"{title}（第 {page.offset + 1}–{last} 条{'，后面还有' if page.more else ''}）"
    return title


def offset(ctx: PageContext) -> int:
    return (params.page(ctx) - 1) * reports.PAGE_LIMIT


# --- tables ---------------------------------------------------------------------------------------

GROUP_COLUMNS = (
    Column("label", "分组"),
    Column("opened", "新建", "int"),
    Column("acknowledged", "已接单", "int"),
    Column("resolved", "已完成", "int"),
    Column("breached", "超时", "int"),
    Column("ack_median", "接单用时中位", "seconds"),
    Column("ack_p90", "接单用时P90", "seconds"),
    Column("resolve_median", "完成用时中位", "seconds"),
    Column("resolve_p90", "完成用时P90", "seconds"),
)


def _group_table(ctx: PageContext, name: str, title: str, first: str,
                 groups: Sequence[reports.ServiceGroup], param: str) -> Table:
    rows = [
        {
            "key": g.key, "label": g.label,
            "opened": g.opened, "acknowledged": g.acknowledged, "resolved": g.resolved,
            "breached": g.breached, "ack_median": g.ack.median, "ack_p90": g.ack.p90,
            "resolve_median": g.resolve.median, "resolve_p90": g.resolve.p90,
        }
        for g in groups
    ]

    def to(**extra: str) -> Callable[[Mapping[str, Any]], str | None]:
        def make(row: Mapping[str, Any]) -> str | None:
            return ctx.link("/rows/orders", **{param: row["key"]}, **extra)
        return make

    def only_if(column: str, make: Callable[[Mapping[str, Any]], str | None]) -> Callable[[Mapping[str, Any]], str | None]:
        return lambda row: make(row) if row[column] else None

    links = {
        "opened": only_if("opened", to()),
        "acknowledged": only_if("acknowledged", to(state="acknowledged")),
        "resolved": only_if("resolved", to(state="resolved")),
        "breached": only_if("breached", to(breached="1")),
    }
    return Table(name, title, (Column("label", first), *GROUP_COLUMNS[1:]), rows, links=links)


async def _service(ctx: PageContext) -> reports.Service:
    return await reports.service(params.period(ctx), ctx.now)


def kinds_of(ctx: PageContext, s: reports.Service) -> Table:
    return _group_table(ctx, "kinds", "按类型", "类型", s.by_kind, "kind")


def teams_of(ctx: PageContext, s: reports.Service) -> Table:
    return _group_table(ctx, "teams", "按班组", "班组", s.by_team, "team")


def categories_of(ctx: PageContext, s: reports.Service) -> Table:
    return _group_table(ctx, "categories", "按类别", "类别", s.by_category, "category")


def days_of(ctx: PageContext, s: reports.Service) -> Table:
    return _group_table(ctx, "days", "按日", "日期", s.by_day, "day")


BREACH_COLUMNS = (
    Column("ref", "工单"),
    Column("day", "日期", "date"),
    Column("clock", "超时环节"),
    Column("held_by", "当时处理人"),
    Column("kind", "类型"),
    Column("team", "班组"),
    Column("category", "类别"),
)


def breaches_of(ctx: PageContext, s: reports.Service) -> Table:
    rows = [
        {"ref": b.ref, "day": b.day, "clock": CLOCKS.get(b.clock, b.clock), "held_by": b.held_by or "（无人）",
         "kind": kind_label(b.kind), "team": team_label(b.team), "category": category_label(b.category)}
        for b in s.breaches
    ]
    title = "SLA 超时" + (f"（前 {len(rows)} 条，共 {s.breach_count} 次）" if s.breach_count > len(rows) else "")
    return Table("breaches", title, BREACH_COLUMNS, rows)


OPEN_COLUMNS = (
    Column("ref", "工单"),
    Column("age", "已持续", "seconds"),
    Column("kind", "类型"),
    Column("category", "类别"),
    Column("severity", "级别"),
    Column("state", "状态"),
    Column("team", "班组"),
    Column("assignee", "处理人"),
    Column("hall", "影厅"),
    Column("summary", "内容"),
    Column("created_at", "创建时间", "datetime"),
)


def open_of(ctx: PageContext, s: reports.Service) -> Table:
    rows = order_rows(s.open_items)
    title = "当前未完成" + (f"（最久的 {len(rows)} 条，共 {s.open_count} 条）" if s.open_count > len(rows) else "")
    return Table("open", title, OPEN_COLUMNS, rows)


def _exported(build: Callable[[PageContext, reports.Service], Table]) -> Callable[[PageContext], Any]:
    async def table(ctx: PageContext) -> Table:
        return build(ctx, await _service(ctx))
    return table


async def orders_rows(ctx: PageContext) -> Table:
    """The work orders behind a figure: ``kind``, ``team``, ``category``, ``state``
    (a state, ``active``, ``acknowledged``, ``resolved``), ``breached=1``, ``day``; ``page``."""
    page = await reports.work_orders(
        params.period(ctx),
        kind=params.choice(ctx, "kind", [str(k) for k in KIND_LABELS]),
        team=params.choice(ctx, "team", TEAM_LABELS),
        category=params.choice(ctx, "category", CATEGORY_LABELS),
        state=params.choice(ctx, "state", ORDER_STATES),
        breached=params.flag(ctx, "breached"),
        day=params.day(ctx),
        limit=reports.PAGE_LIMIT, offset=offset(ctx),
    )
    return Table("orders", paged_title("工单明细", page), ORDER_COLUMNS, order_rows(page.rows))


async def open_rows(ctx: PageContext) -> Table:
    page = await reports.open_work_orders(ctx.scope.cinema_ids, ctx.now, limit=reports.PAGE_LIMIT,
                                          offset=offset(ctx))
    return Table("open", paged_title("当前未完成", page), OPEN_COLUMNS, order_rows(page.rows))


# --- the page ---------------------------------------------------------------------------------------


async def render(ctx: PageContext) -> str:
    s = await _service(ctx)
    link = ctx.link
    figures = w.tiles([
        w.tile("新建工单", w.number(s.opened), href=link("/rows/orders"), key="opened"),
        w.tile("已接单", w.number(s.acknowledged), href=link("/rows/orders", state="acknowledged"),
               key="acknowledged"),
        w.tile("已完成", w.number(s.resolved), href=link("/rows/orders", state="resolved"), key="resolved"),
        w.tile("接单用时", w.human_duration(s.ack.median), href=link("/rows/orders", state="acknowledged"),
               note=f"中位数 · P90 {w.human_duration(s.ack.p90)} · n={s.ack.n}", key="ack"),
        w.tile("完成用时", w.human_duration(s.resolve.median), href=link("/rows/orders", state="resolved"),
               note=f"中位数 · P90 {w.human_duration(s.resolve.p90)} · n={s.resolve.n}", key="resolve"),
        w.tile("SLA 超时工单", w.number(s.breached), href=link("/rows/orders", breached="1"),
               note=f"超时 {s.breach_count} 次", key="breached",
               colour="#e74c3c" if s.breached else ""),
        w.tile("当前未完成", w.number(s.open_count), href=link("/rows/open"), key="open",
               colour="#f39c12" if s.open_count else ""),
    ])
    kinds, teams = kinds_of(ctx, s), teams_of(ctx, s)
    return w.STYLE + charts.library() + '<div class="cb-body">' + figures + "".join([
        _trend(ctx, s),
        w.grid([_bars(ctx, "kinds", "按类型", s.by_kind, "kind"), _bars(ctx, "teams", "按班组", s.by_team, "team")]),
        w.card("按类型", w.table(kinds, ctx=ctx, export="kinds"), key="kinds-table"),
        w.card("按班组", w.table(teams, ctx=ctx, export="teams"), key="teams-table"),
        w.card("按类别", w.table(categories_of(ctx, s), ctx=ctx, export="categories"), key="categories"),
        w.card("SLA 超时与当时处理人", w.table(breaches_of(ctx, s), ctx=ctx, export="breaches"),
               note=f"共 {s.breach_count} 次", key="breaches"),
        w.card("当前未完成", w.table(open_of(ctx, s), ctx=ctx, export="open", limit=20,
                                      more_href=link("/rows/open")),
               note=f"共 {s.open_count} 条，最久的在前", key="open"),
        w.card("按日", w.table(days_of(ctx, s), ctx=ctx, export="days"), key="days"),
    ]) + "</div>"


def _trend(ctx: PageContext, s: reports.Service) -> str:
    days = s.by_day
    if not any(g.opened for g in days):
        return w.card("每日工单", w.empty(), key="trend")
    option = charts.line(
        [f"{int(g.key[5:7])}/{int(g.key[8:10])}" for g in days],
        {"新建": [g.opened for g in days], "已完成": [g.resolved for g in days],
         "超时": [g.breached for g in days]},
        links=[ctx.link("/rows/orders", day=g.key) if g.opened else None for g in days], counts=True,
    )
    return w.card("每日工单", charts.render(option, height=220, label="每日工单"), key="trend")


def _bars(ctx: PageContext, name: str, title: str, groups: Sequence[reports.ServiceGroup], param: str) -> str:
    if not groups:
        return w.card(title, w.empty(), key=f"{name}-chart")
    option = charts.bars(
        [g.label for g in groups],
        {"新建": [g.opened for g in groups], "已接单": [g.acknowledged for g in groups],
         "已完成": [g.resolved for g in groups]},
        horizontal=True,
        links=[ctx.link("/rows/orders", **{param: g.key}) for g in groups],
    )
    return w.card(title, charts.render(option, height=70 + 44 * len(groups), label=title), key=f"{name}-chart")


SECTION = Section(
    key="service",
    title="服务",
    roles=frozenset({StaffRole.MANAGER, StaffRole.STAFF, StaffRole.ENGINEER}),
    render=render,
    tables={
        "kinds": _exported(kinds_of), "teams": _exported(teams_of),
        "categories": _exported(categories_of), "days": _exported(days_of),
        "breaches": _exported(breaches_of), "open": _exported(open_of),
    },
    rows={"orders": orders_rows, "open": open_rows},
)
