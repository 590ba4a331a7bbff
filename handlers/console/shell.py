"""The console's routes: login, the sections' pages, their exports and drill-downs, static
files. Every section page and file is behind a session and its section's roles; the
period and cinema come from the query, parsed strictly (``parse_scope``).

Routes (``add_routes``):

- ``/console/`` → the first section the viewer may open (its query kept);
- ``/console/login``, ``/console/oauth`` (WeCom's return), ``/console/enter?t=…`` (a
  one-time link), ``/console/logout`` (GET or POST) — ``handlers.console.auth``;
- ``/console/{key}?range=today|7d|30d|custom&start=&end=&cinema=`` → the frame around the
  section's page;
- ``/console/{key}/export/{table}.csv|.xlsx`` (same query) → the table as a file;
- ``/console/{key}/rows/{what}?…`` → the rows behind a figure as a page with its own
  ``/console/{key}/rows/{what}.csv|.xlsx`` links (the figure's parameters kept);
- ``/console/static/{name}`` → the frame's CSS and ECharts (public, versioned).

No session: pages redirect to the login (coming back afterwards), files answer 401. A
section the viewer's role may not open: 403. A bad period: 400, the page says why.
"""

from __future__ import annotations

import functools
import importlib
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import date, datetime
from html import escape
from typing import Any
from urllib.parse import urlencode

from aiohttp import hdrs, web

from bot.infra.strict import parse_ascii_int
from domain import reports
from domain.cinemas import Cinema
from handlers.console import auth, downloads, layout, widgets
from handlers.console.base import PageContext, Range, Scope, Section, Table, Viewer
from handlers.console.context import CONSOLE, Console

log = logging.getLogger(__name__)

# The sections, in tab order; a module not written yet is left out.
SECTION_MODULES = ("experience", "service", "sales", "projectors")
DEFAULT_RANGE = Range.WEEK
PERIOD_KEYS = ("range", "start", "end", "cinema")
_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # ASCII digits only, unlike \d
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2099, 12, 31)  # the days a period may name
MAX_PARAMS = 32  # a console address carries a handful; hundreds are an attack or a mistake
MAX_QUERY = 2048  # characters of the query string, as sent
KEY = r"{key:[a-z][a-z0-9_]{0,31}}"
NAME = r"[A-Za-z0-9_-]{1,64}"
# What a section may raise for a figure's parameter it cannot read: shown as the refusal.
REFUSALS = (web.HTTPClientError, reports.ReportError)


def load_sections(modules: Sequence[str] = SECTION_MODULES) -> tuple[Section, ...]:
    """The ``SECTION`` of each ``handlers.console.<name>`` that exists."""
    found = []
    for name in modules:
        qualified = f"handlers.console.{name}"
        try:
            module = importlib.import_module(qualified)
        except ModuleNotFoundError as exc:
            if exc.name != qualified:
                raise  # the module exists but imports something missing: a real error
            continue
        found.append(module.SECTION)
    return tuple(found)


# --- the period and the cinemas ----------------------------------------------------------------


class ScopeError(ValueError):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _day(raw: str | None, label: str) -> date | None:
    if raw is None or raw == "":
        return None
    if not _ISO_DAY.fullmatch(raw):
        raise ScopeError(f"{label}应写成 2026-11-21 这样的日期（半角数字）")
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise ScopeError(f"{label} {raw} 不是有效的日期") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        # Far-off years are nobody's data, and the day's bounds (or a comparison period)
        # would leave what a date can hold.
        raise ScopeError(f"{label}只能在 {FIRST_DAY.year} 至 {LAST_DAY.year} 年之间")
    return day


def parse_scope(
    query: Mapping[str, str], viewer: Viewer, now: datetime
) -> tuple[Scope, int | None]:
    """(the scope, the cinema chosen in the query or None for all the viewer's), or a
    ``ScopeError`` that says in Chinese what is wrong."""
    raw_range = query.get("range", "")
    start, end = _day(query.get("start"), "开始日期"), _day(query.get("end"), "结束日期")
    if raw_range == "":
        chosen_range = Range.CUSTOM if (start or end) else DEFAULT_RANGE
    else:
        try:
            chosen_range = Range(raw_range)
        except ValueError:
            raise ScopeError("时间范围只能是 今天、近7天、近30天 或 自定义") from None
    if chosen_range is Range.CUSTOM:
        if start is None:
            raise ScopeError("自定义时间范围需要开始日期")
        if end is not None and end < start:
            raise ScopeError("结束日期不能早于开始日期")
    try:
        first, last = reports.period_for(chosen_range.value, reports.today(now), start, end)
    except reports.ReportError as exc:
        if end is not None and start is not None and (end - start).days + 1 > reports.MAX_DAYS:
            raise ScopeError(f"时间范围最长 {reports.MAX_DAYS} 天，请缩短后再查看") from None
        raise ScopeError(str(exc)) from None
    cinema_raw = query.get("cinema", "")
    chosen: int | None = None
    cinemas = viewer.cinema_ids
    if cinema_raw != "":
        chosen = parse_ascii_int(cinema_raw, 10)
        if chosen is None:
            raise ScopeError("影城参数有误")
        if chosen not in viewer.cinema_ids:
            raise ScopeError("你没有查看这家影城的权限", status=403)
        cinemas = (chosen,)
    return Scope(cinemas, first, last, chosen_range), chosen


def default_scope(viewer: Viewer, now: datetime) -> Scope:
    first, last = reports.period_for(DEFAULT_RANGE.value, reports.today(now))
    return Scope(viewer.cinema_ids, first, last, DEFAULT_RANGE)


def make_link(base_url: str, scope: Scope, chosen_cinema: int | None) -> Callable[..., str]:
    """``link(path_suffix="", **params)``: ``base_url + path_suffix`` with the page's range
    (and custom days) and chosen cinema kept; ``params`` added, a None value drops a key."""
    kept: dict[str, str] = {"range": scope.range.value}
    if scope.range is Range.CUSTOM:
        kept |= {"start": scope.start.isoformat(), "end": scope.end.isoformat()}
    if chosen_cinema is not None:
        kept["cinema"] = str(chosen_cinema)

    def link(path_suffix: str = "", **params: object) -> str:
        query = dict(kept)
        for key, value in params.items():
            if value is None:
                query.pop(key, None)
            else:
                query[key] = str(value)
        return f"{base_url}{path_suffix}" + (f"?{urlencode(query)}" if query else "")

    return link


def section_url(public_url: str, key: str | None = None, **params: object) -> str:
    """An absolute console address (for a digest card): opened without a session it goes
    through the login and lands here."""
    path = f"/console/{key}" if key else "/console/"
    query = {k: str(v) for k, v in params.items() if v is not None}
    return public_url.rstrip("/") + path + (f"?{urlencode(query)}" if query else "")


# --- the views ---------------------------------------------------------------------------------


def _allowed(console: Console, viewer: Viewer) -> list[Section]:
    return [s for s in console.sections if viewer.role in s.roles]


async def _viewer_or_login(request: web.Request) -> Viewer:
    viewer = await auth.current_viewer(request)
    if viewer is None:
        # The address as sent (still %-encoded): decoded, ``?a=%26b`` would come back as
        # another query, and a ``%0d%0a`` as a line break in a header.
        raise web.HTTPFound("/console/login?" + urlencode({"next": request.rel_url.raw_path_qs}))
    return viewer


def _too_long(request: web.Request) -> bool:
    return len(request.rel_url.raw_query_string) > MAX_QUERY or len(request.query) > MAX_PARAMS


def _too_long_page() -> web.Response:
    return _refusal("地址太长", "这个地址带的参数太多或太长，请从看板首页重新进入。", 414)


async def index(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    if _too_long(request):
        return _too_long_page()
    viewer = await _viewer_or_login(request)
    allowed = _allowed(console, viewer)
    if not allowed:
        return layout.message_page("暂无可查看的看板", "你的岗位暂时没有可以查看的看板。", status=403)
    query = request.rel_url.raw_query_string  # as sent: still %-encoded, no line breaks
    raise web.HTTPFound(f"/console/{allowed[0].key}" + (f"?{query}" if query else ""))


async def _cinema_names(viewer: Viewer) -> list[tuple[int, str]]:
    rows = await Cinema.filter(id__in=list(viewer.cinema_ids)).order_by("id").values_list(
        "id", "name"
    )
    return [(int(cid), str(name)) for cid, name in rows]


class _Page:
    """One request to a section: who, which section, which period, and its context."""

    def __init__(self, console: Console, viewer: Viewer, section: Section, ctx: PageContext,
                 chosen: int | None, error: str = "") -> None:
        self.console, self.viewer, self.section, self.ctx = console, viewer, section, ctx
        self.chosen, self.error = chosen, error

    async def refused(self, exc: Exception) -> web.Response:
        """The section refused a figure's parameter (a 4xx it raised, or the reports'
        ``ReportError``): the frame with the reason, in the refusal's status."""
        if isinstance(exc, web.HTTPClientError):
            status, reason = exc.status, exc.text or exc.reason
        else:
            status, reason = 400, str(exc)
        log.info("console parameter refused", extra={"path": self.ctx.base_url, "reason": reason})
        body = f'<div class="cn-error" role="alert">{escape(reason or "参数有误")}</div>'
        return await self.frame(self.section.title, body, status=status)

    async def frame(self, title: str, body: str, status: int = 200) -> web.Response:
        text = layout.frame(
            self.ctx, title=title, body=body, sections=_allowed(self.console, self.viewer),
            current=self.section.key, cinemas=await _cinema_names(self.viewer),
            chosen_cinema=self.chosen, error=self.error,
        )
        return layout.html_response(text, status)


def _refusal(title: str, text: str, status: int) -> web.Response:
    return layout.message_page(title, text, status=status, action=("回到看板首页", "/console/"))


async def _open(request: web.Request, *, file: bool) -> _Page | web.Response:
    """Check the session, the section and the role, and read the period: the request's
    ``_Page``, or the answer that refuses it. A page without a session goes to the login,
    a file answers 401; a file's refusals are short text, a page's are pages."""
    console = request.app[CONSOLE]
    if _too_long(request):
        if file:
            raise web.HTTPRequestURITooLong(text="地址的参数太多或太长")
        return _too_long_page()
    if file:
        viewer = await auth.current_viewer(request)
        if viewer is None:
            raise web.HTTPUnauthorized(text="请先登录影城看板")
    else:
        viewer = await _viewer_or_login(request)
    key = request.match_info["key"]
    section = console.section(key)
    if section is None:
        if file:
            raise web.HTTPNotFound(text="没有这个看板")
        return _refusal("没有这个看板", "地址可能不完整。", 404)
    if viewer.role not in section.roles:
        log.info("console section refused", extra={"userid": viewer.userid, "section": key})
        if file:
            raise web.HTTPForbidden(text="你的岗位不能查看这部分数据")
        return _refusal("无权查看", f"你的岗位不能查看「{section.title}」。", 403)
    now = console.clock.now()
    base_url = f"/console/{key}"
    error = ""
    try:
        scope, chosen = parse_scope(request.query, viewer, now)
    except ScopeError as exc:
        if file and exc.status == 403:
            raise web.HTTPForbidden(text=str(exc)) from None
        if file:
            raise web.HTTPBadRequest(text=str(exc)) from None
        if exc.status == 403:
            return _refusal("无权查看", str(exc), 403)
        # The page still shows, with the default period in its filters and the reason.
        scope, chosen, error = default_scope(viewer, now), None, str(exc)
    ctx = PageContext(
        viewer=viewer, scope=scope, now=now, query=dict(request.query), base_url=base_url,
        link=make_link(base_url, scope, chosen),
    )
    return _Page(console, viewer, section, ctx, chosen, error)


async def section_page(request: web.Request) -> web.Response:
    page = await _open(request, file=False)
    if isinstance(page, web.Response):
        return page
    if page.error:
        body = '<p class="cn-muted">请修改时间范围后再查看。</p>'
        return await page.frame(page.section.title, body, status=400)
    try:
        body = await page.section.render(page.ctx)
    except REFUSALS as exc:
        return await page.refused(exc)
    return await page.frame(page.section.title, body)


def _file_name(page: _Page, table: Table) -> str:
    scope = page.ctx.scope
    span = scope.start.isoformat() if scope.start == scope.end else (
        f"{scope.start.isoformat()}_{scope.end.isoformat()}"
    )
    return f"{table.name}_{span}"


async def export(request: web.Request) -> web.Response:
    page = await _open(request, file=True)
    assert isinstance(page, _Page)  # a file's refusals are raised
    make = page.section.tables.get(request.match_info["table"])
    if make is None:
        raise web.HTTPNotFound(text="没有这张表")
    table = await _file_table(make, page)
    return downloads.download(table, request.match_info["fmt"], _file_name(page, table))


async def _file_table(make: Callable[[PageContext], Any], page: _Page) -> Table:
    try:
        return await make(page.ctx)  # type: ignore[no-any-return]
    except reports.ReportError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None


async def rows_page(request: web.Request) -> web.Response:
    page = await _open(request, file=False)
    if isinstance(page, web.Response):
        return page
    what = request.match_info["what"]
    make = page.section.rows.get(what)
    if make is None:
        return _refusal("没有这些明细", "地址可能不完整。", 404)
    if page.error:
        return await page.frame(page.section.title, "", status=400)
    try:
        table = await make(page.ctx)
    except REFUSALS as exc:
        return await page.refused(exc)
    own = {k: v for k, v in page.ctx.query.items() if k not in PERIOD_KEYS}
    csv_href = page.ctx.link(f"/rows/{what}.csv", **own)
    xlsx_href = page.ctx.link(f"/rows/{what}.xlsx", **own)
    back = page.ctx.link()
    exports = (
        '<div class="cb-exports">'
        f'<a class="cb-btn" href="{escape(csv_href)}" data-export="{escape(what)}.csv">导出 CSV</a>'
        f'<a class="cb-btn" href="{escape(xlsx_href)}" data-export="{escape(what)}.xlsx">导出 Excel</a>'
        "</div>"
    )
    body = (
        widgets.STYLE
        + f'<p><a href="{escape(back)}">← 返回「{escape(page.section.title)}」</a></p>'
        + widgets.card(table.title, widgets.table(table) + _rows_pager(page.ctx, what, own, len(table.rows))
                       + exports, note=f"{len(table.rows)} 行")
    )
    return await page.frame(f"{table.title} · {page.section.title}", body)


def _rows_pager(ctx: PageContext, what: str, own: Mapping[str, str], shown: int) -> str:
    """「上一页 / 下一页」 of a drill-down, keeping its own parameters. A drill-down shows
    ``reports.PAGE_LIMIT`` rows a page, so a full page offers the next one (which may turn
    out empty when the rows ended exactly there)."""
    current = max(1, parse_ascii_int(own.get("page", "1")) or 1)  # the section checked it already
    keep = {k: v for k, v in own.items() if k != "page"}
    parts = []
    if current > 1:
        prev = ctx.link(f"/rows/{what}", **keep, page=str(current - 1))
        parts.append(f'<a href="{escape(prev)}" data-page="prev">上一页</a>')
    more = shown >= reports.PAGE_LIMIT
    if current == 1 and not more:
        return ""
    parts.append(f"<span>第 {current} 页</span>")
    if more:
        nxt = ctx.link(f"/rows/{what}", **keep, page=str(current + 1))
        parts.append(f'<a href="{escape(nxt)}" data-page="next">下一页</a>')
    return f'<nav class="cb-pager">{"".join(parts)}</nav>'


async def rows_export(request: web.Request) -> web.Response:
    page = await _open(request, file=True)
    assert isinstance(page, _Page)  # a file's refusals are raised
    make = page.section.rows.get(request.match_info["what"])
    if make is None:
        raise web.HTTPNotFound(text="没有这些明细")
    table = await _file_table(make, page)
    return downloads.download(table, request.match_info["fmt"], _file_name(page, table))


async def not_found(request: web.Request) -> web.Response:
    return _refusal("没有这个页面", "地址可能不完整。", 404)


def add_routes(app: web.Application) -> None:
    """Register the console; its views reach the app through ``app[CONSOLE]``, which the
    app sets at start-up. Every answer carries ``layout.SECURITY_HEADERS`` (no caching,
    no framing, no sniffing); a method a route does not take is a 405 naming those it does."""
    r = app.router
    get_only = (hdrs.METH_GET,)
    _route(r, "/console", _redirect_home, get_only)
    _route(r, "/console/", index, get_only)
    _route(r, "/console/login", auth.login, get_only)
    _route(r, "/console/oauth", auth.oauth_return, get_only)
    _route(r, "/console/enter", auth.enter, get_only)
    _route(r, "/console/logout", auth.logout, (hdrs.METH_GET, hdrs.METH_POST))
    _route(r, r"/console/static/{name:[A-Za-z0-9._-]{1,64}}", layout.static_view, get_only)
    _route(r, f"/console/{KEY}", section_page, get_only)
    _route(r, f"/console/{KEY}/export/{{table:{NAME}}}.{{fmt:csv|xlsx}}", export, get_only)
    _route(r, f"/console/{KEY}/rows/{{what:{NAME}}}", rows_page, get_only)
    _route(r, f"/console/{KEY}/rows/{{what:{NAME}}}.{{fmt:csv|xlsx}}", rows_export, get_only)
    r.add_route("*", r"/console/{tail:[\s\S]*}", _hardened(not_found))


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _route(router: web.UrlDispatcher, path: str, handler: Handler, methods: Sequence[str]) -> None:
    for method in methods:
        if method == hdrs.METH_GET:
            router.add_get(path, _hardened(handler))  # and HEAD
        else:
            router.add_route(method, path, _hardened(handler))
    allowed = {*methods, hdrs.METH_HEAD} if hdrs.METH_GET in methods else set(methods)

    async def not_allowed(request: web.Request) -> web.StreamResponse:
        raise web.HTTPMethodNotAllowed(request.method, allowed, text="不支持这种请求方式")

    router.add_route("*", path, _hardened(not_allowed))  # the same resource, tried last


def _hardened(handler: Handler) -> Handler:
    """``handler`` whose every answer — returned or raised, a page, a file, a redirect or
    a refusal — carries the console's security headers (a header it set itself stays)."""

    @functools.wraps(handler)
    async def view(request: web.Request) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            layout.harden(exc.headers)
            raise
        layout.harden(response.headers)
        return response

    return view


async def _redirect_home(request: web.Request) -> web.Response:
    raise web.HTTPFound("/console/")
