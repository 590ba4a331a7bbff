"""体验: what the audience thought — NPS and CSAT with their 95 % intervals, by film, hall and
day; the rating distribution; complaint categories; verbatim comments (masked), newest first.
Managers only. Every figure comes from ``domain.reports`` and links to the ratings behind it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bot.infra.logs import mask_phone
from domain import reports
from domain.people import StaffRole
from domain.workorders import CATEGORY_LABELS
from handlers.console import charts, params
from handlers.console import widgets as w
from handlers.console.base import Column, PageContext, Section, Table
from handlers.console.service import ORDER_COLUMNS, order_rows, paged_title

COMMENTS_PER_PAGE = 20
STAR_COLOURS = ["#e74c3c", "#f39c12", "#f1c40f", "#8bc34a", "#07c160"]
NPS_COLOURS = ["#e74c3c"] * 7 + ["#f1c40f"] * 2 + ["#07c160"] * 2
UNKNOWN_HALL = "-"  # in a link: the ratings with no hall (the reports' "")
SENTIMENTS = {"neg": "负面", "neu": "中性", "pos": "正面"}
NPS_GROUPS = {"promoter": "推荐者(9–10)", "passive": "中立者(7–8)", "detractor": "贬损者(0–6)"}


# --- figures as text ----------------------------------------------------------------------------


def nps_text(nps: Any) -> str:
    return "—" if nps.score is None else f"{nps.score:.0f}"


def nps_interval(nps: Any) -> str:
    return w.ci_text(nps.low, nps.high) if nps.n else "样本不足"


def csat_interval(csat: reports.Satisfaction) -> str:
    return w.ci_text(csat.low, csat.high, digits=1, scale=100, suffix="%")


def _interval_cell(low: float | None, high: float | None, scale: float, digits: int) -> str:
    if low is None or high is None:
        return ""
    return f"{low * scale:.{digits}f}–{high * scale:.{digits}f}"


# --- tables ---------------------------------------------------------------------------------------

GROUP_COLUMNS = (
    Column("label", "分组"),
    Column("responses", "评价数", "int"),
    Column("nps", "NPS", "int"),
    Column("nps_ci", "NPS 95%区间"),
    Column("csat", "满意度(CSAT)", "percent"),
    Column("csat_ci", "CSAT 95%区间"),
    Column("stars_avg", "平均星级"),
)


def _group_rows(groups: Sequence[reports.RatingGroup]) -> list[dict[str, Any]]:
    return [
        {
            "key": g.key, "label": g.label, "responses": g.responses,
            "nps": None if g.nps.score is None else round(g.nps.score),
            "nps_ci": _interval_cell(g.nps.low, g.nps.high, 1, 0),
            "csat": g.csat.share,
            "csat_ci": _interval_cell(g.csat.low, g.csat.high, 100, 1),
            "stars_avg": None if g.stars_avg is None else round(g.stars_avg, 2),
        }
        for g in groups
    ]


def _group_table(ctx: PageContext, name: str, title: str, first: str,
                 groups: Sequence[reports.RatingGroup], param: str) -> Table:
    columns = (Column("label", first), *GROUP_COLUMNS[1:])

    def rows_of(row: Mapping[str, Any]) -> str | None:
        if not row["responses"]:
            return None
        return ctx.link("/rows/responses", **{param: _group_param(param, row["key"])})

    return Table(name, title, columns, _group_rows(groups), links={"responses": rows_of})


def _group_param(param: str, key: str) -> str:
    if param == "film":
        return key or "0"
    if param == "hall":
        return key or UNKNOWN_HALL
    return key


async def _experience(ctx: PageContext) -> reports.Experience:
    return await reports.experience(params.period(ctx))


async def films_table(ctx: PageContext) -> Table:
    e = await _experience(ctx)
    return _group_table(ctx, "films", "按影片", "影片", e.by_film, "film")


async def halls_table(ctx: PageContext) -> Table:
    e = await _experience(ctx)
    return _group_table(ctx, "halls", "按影厅", "影厅", e.by_hall, "hall")


async def days_table(ctx: PageContext) -> Table:
    e = await _experience(ctx)
    return _group_table(ctx, "days", "按日", "日期", e.by_day, "day")


CATEGORY_COLUMNS = (Column("label", "类别"), Column("count", "数量", "int"), Column("share", "占比", "percent"))


def _category_table(ctx: PageContext, name: str, title: str,
                    items: Sequence[reports.CategoryCount], rows_path: str) -> Table:
    rows = [{"category": c.category, "label": c.label, "count": c.count, "share": c.share} for c in items]
    return Table(name, title, CATEGORY_COLUMNS, rows,
                 links={"count": lambda r: ctx.link(rows_path, category=r["category"]) if r["count"] else None})


async def complaints_table(ctx: PageContext) -> Table:
    e = await _experience(ctx)
    return _category_table(ctx, "complaints", "投诉类别", e.complaint_categories, "/rows/complaints")


async def topics_table(ctx: PageContext) -> Table:
    e = await _experience(ctx)
    return _category_table(ctx, "topics", "评价意见分类", e.comment_categories, "/rows/comments")


RESPONSE_COLUMNS = (
    Column("at", "时间", "datetime"),
    Column("film", "影片"),
    Column("hall", "影厅"),
    Column("stars", "星级", "int"),
    Column("nps", "推荐分", "int"),
    Column("comment", "评论"),
    Column("category", "类别"),
    Column("sentiment", "情绪"),
    Column("phone", "手机"),
)


def _response_rows(rows: Sequence[reports.ResponseRow]) -> list[dict[str, Any]]:
    return [
        {
            "id": r.id, "at": r.at, "day": r.day, "film": r.film, "hall": r.hall,
            "stars": r.stars, "nps": r.nps, "comment": mask_phone(r.comment),
            "category": CATEGORY_LABELS.get(r.category or "", r.category or ""),
            "sentiment": SENTIMENTS.get(r.sentiment or "", ""), "phone": r.phone or "",
        }
        for r in rows
    ]


def _offset(ctx: PageContext, per_page: int) -> int:
    return (params.page(ctx) - 1) * per_page


async def comments_table(ctx: PageContext) -> Table:
    """The comments of the period, newest first (the export: one drill-down page's worth)."""
    page = await reports.comments(params.period(ctx), mask=mask_phone, limit=reports.PAGE_LIMIT,
                                  offset=_offset(ctx, reports.PAGE_LIMIT))
    return Table("comments", "评论原文", RESPONSE_COLUMNS, _response_rows(page.rows))


async def responses_rows(ctx: PageContext) -> Table:
    """The ratings behind a figure: ``film`` (0: unknown), ``hall`` (``-``: unknown), ``day``,
    ``stars`` 1–5, ``nps`` promoter|passive|detractor, ``comment=1``; ``page``."""
    film = params.integer(ctx, "film")
    hall = params.text(ctx, "hall")
    stars = params.choice(ctx, "stars", ("1", "2", "3", "4", "5"))
    page = await reports.responses(
        params.period(ctx), mask=mask_phone,
        film_id=film, hall="" if hall == UNKNOWN_HALL else hall, day=params.day(ctx),
        stars=int(stars) if stars else None, nps=params.choice(ctx, "nps", NPS_GROUPS),
        with_comment=params.flag(ctx, "comment"),
        limit=reports.PAGE_LIMIT, offset=_offset(ctx, reports.PAGE_LIMIT),
    )
    return Table("responses", paged_title("评价明细", page), RESPONSE_COLUMNS, _response_rows(page.rows))


async def comments_rows(ctx: PageContext) -> Table:
    """The comments of the period, newest first, of one topic (``category``, a comment
    category) if given; ``page``."""
    category = params.choice(ctx, "category", CATEGORY_LABELS)
    page = await reports.comments(params.period(ctx), mask=mask_phone, category=category,
                                  limit=reports.PAGE_LIMIT, offset=_offset(ctx, reports.PAGE_LIMIT))
    title = f"评论原文 · {CATEGORY_LABELS[category]}" if category else "评论原文"
    return Table("comments", paged_title(title, page), RESPONSE_COLUMNS, _response_rows(page.rows))


async def complaints_rows(ctx: PageContext) -> Table:
    """Complaint work orders opened in the period (of one ``category``)."""
    category = params.choice(ctx, "category", CATEGORY_LABELS)
    page = await reports.work_orders(params.period(ctx), kind="complaint", category=category,
                                     limit=reports.PAGE_LIMIT, offset=_offset(ctx, reports.PAGE_LIMIT))
    return Table("complaints", paged_title("投诉工单", page), ORDER_COLUMNS, order_rows(page.rows))


# --- the page ---------------------------------------------------------------------------------------


async def render(ctx: PageContext) -> str:
    e = await _experience(ctx)
    link = ctx.link
    figures = w.tiles([
        w.tile("NPS 净推荐值", nps_text(e.nps), href=link("/rows/responses"), key="nps",
               note=f"{nps_interval(e.nps)} · n={e.nps.n}"),
        w.tile("满意度 CSAT", w.percent(e.csat.share), href=link("/rows/responses"), key="csat",
               note=f"{csat_interval(e.csat)} · n={e.csat.n}"),
        w.tile("评价数", w.number(e.responses), href=link("/rows/responses"), key="responses",
               note="平均 " + ("—" if e.stars_avg is None else f"{e.stars_avg:.2f} 星")),
        w.tile("评论", w.number(e.comments), href=link("/rows/responses", comment="1"), key="comments",
               note=f"负面 {e.negative}"),
        w.tile("投诉工单", w.number(e.complaints), href=link("/rows/complaints"), key="complaints"),
    ])
    return w.STYLE + charts.library() + '<div class="cb-body">' + figures + "".join([
        _trend(ctx, e),
        w.grid([_stars(ctx, e), _nps_scores(ctx, e)]),
        w.grid([_categories(ctx, "complaints", "投诉类别", e.complaint_categories, "/rows/complaints"),
                _categories(ctx, "topics", "评价意见分类", e.comment_categories, "/rows/comments")]),
        w.card("按影片", w.table(_group_table(ctx, "films", "按影片", "影片", e.by_film, "film"),
                                 ctx=ctx, export="films"), key="films"),
        w.card("按影厅", w.table(_group_table(ctx, "halls", "按影厅", "影厅", e.by_hall, "hall"),
                                 ctx=ctx, export="halls"), key="halls"),
        w.card("按日", w.table(_group_table(ctx, "days", "按日", "日期", e.by_day, "day"),
                               ctx=ctx, export="days"), key="days"),
        await _comments(ctx),
    ]) + "</div>"


def _trend(ctx: PageContext, e: reports.Experience) -> str:
    days = e.by_day
    if not any(g.responses for g in days):
        return w.card("每日趋势", w.empty(), key="trend")
    labels = [_short_day(g.key) for g in days]
    option = charts.line(
        labels,
        {"NPS": [None if g.nps.score is None else round(g.nps.score, 1) for g in days]},
        right={"满意度%": [None if g.csat.share is None else round(g.csat.share * 100, 1) for g in days]},
        right_name="%", y_name="NPS", right_max=100, y_min=-100, y_max=100,
        links=[ctx.link("/rows/responses", day=g.key) if g.responses else None for g in days],
    )
    return w.card("每日趋势", charts.render(option, height=240, label="每日 NPS 与满意度"),
                  note="NPS 与满意度", key="trend")


def _short_day(iso: str) -> str:
    return f"{int(iso[5:7])}/{int(iso[8:10])}" if len(iso) == 10 else iso


def _stars(ctx: PageContext, e: reports.Experience) -> str:
    if not sum(e.stars):
        return w.card("星级分布", w.empty(), key="stars")
    option = charts.bars(
        [f"{i}星" for i in range(1, 6)], {"评价数": list(e.stars)}, colours=STAR_COLOURS,
        value_labels=True, links=[ctx.link("/rows/responses", stars=str(i)) for i in range(1, 6)],
    )
    return w.card("星级分布", charts.render(option, height=200, label="星级分布"), key="stars")


def _nps_scores(ctx: PageContext, e: reports.Experience) -> str:
    if not sum(e.nps_scores):
        return w.card("推荐分分布", w.empty(), key="nps-scores")
    groups = ["detractor"] * 7 + ["passive"] * 2 + ["promoter"] * 2
    option = charts.bars(
        [str(i) for i in range(11)], {"人数": list(e.nps_scores)}, colours=NPS_COLOURS,
        links=[ctx.link("/rows/responses", nps=g) for g in groups],
    )
    note = f"推荐 {e.nps.promoters} · 中立 {e.nps.passives} · 贬损 {e.nps.detractors}"
    return w.card("推荐分分布", charts.render(option, height=200, label="推荐分分布"), note=note,
                  key="nps-scores")


def _categories(ctx: PageContext, name: str, title: str,
                items: Sequence[reports.CategoryCount], rows_path: str) -> str:
    if not items:
        return w.card(title, w.empty() + w.export_links(ctx, name), key=name)
    option = charts.bars(
        [c.label for c in items], {"占比": [round(c.share * 100, 1) for c in items]},
        horizontal=True, percent=True, value_labels=True, max_value=100,
        links=[ctx.link(rows_path, category=c.category) for c in items],
    )
    body = charts.render(option, height=60 + 28 * len(items), label=title)
    body += w.table(_category_table(ctx, name, title, items, rows_path), ctx=ctx, export=name)
    total = sum(c.count for c in items)
    return w.card(title, body, note=f"共 {total}", key=name)


async def _comments(ctx: PageContext) -> str:
    number = params.page(ctx)
    page = await reports.comments(params.period(ctx), mask=mask_phone, limit=COMMENTS_PER_PAGE,
                                  offset=(number - 1) * COMMENTS_PER_PAGE)
    if not page.rows:
        body = w.empty()
    else:
        body = "".join(_quote(r) for r in page.rows)
        body += w.pager(ctx, number, page.more)
    body += w.export_links(ctx, "comments")
    return w.card("评论原文", body, note="最新在前，手机号已隐藏", key="comments")


def _quote(r: reports.ResponseRow) -> str:
    stars = "★" * (r.stars or 0) + "☆" * (5 - (r.stars or 0)) if r.stars else ""
    where = " · ".join(x for x in (r.film, r.hall) if x)
    meta = " · ".join(x for x in (w.format_value(r.at, "datetime"), where, stars,
                                  SENTIMENTS.get(r.sentiment or "", "")) if x)
    return f'<p class="cb-quote">{w.link(mask_phone(r.comment), None)}<span class="cb-muted">{w.link(meta, None)}</span></p>'


TABLES: Mapping[str, Callable[[PageContext], Any]] = {
    "films": films_table, "halls": halls_table, "days": days_table,
    "complaints": complaints_table, "topics": topics_table, "comments": comments_table,
}

SECTION = Section(
    key="experience",
    title="体验",
    roles=frozenset({StaffRole.MANAGER}),
    render=render,
    tables=TABLES,
    rows={"responses": responses_rows, "comments": comments_rows, "complaints": complaints_rows},
)
