"""The console's page frame (header, section tabs, range and cinema filters), its login and
refusal pages, and its static files (``/console/static/…``: the frame's CSS, ECharts).

Phone first: one column at 375 px inside WeCom's browser, the tabs and a wide table scroll
sideways in their own box (never the page); from 720 px more room around. Sections bring
their own blocks (``handlers.console.widgets``) inside ``<main>``.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from html import escape
from pathlib import Path

from aiohttp import web

from bot.infra.clock import local_date_time_text
from domain.people import StaffRole
from handlers.console.base import PageContext, Range, Section, Viewer

STATIC_DIR = Path(__file__).with_name("static")
ROLE_LABELS = {StaffRole.MANAGER: "店长", StaffRole.STAFF: "员工", StaffRole.ENGINEER: "工程师"}
RANGE_LABELS = {Range.TODAY: "今天", Range.WEEK: "近7天", Range.MONTH: "近30天"}
WEEKDAYS = "一二三四五六日"


# --- static files ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    gzipped: bytes | None
    content_type: str
    version: str  # the first hex digits of the content's SHA-256


@cache
def asset(name: str) -> Asset | None:
    """A file of ``static/`` by its bare name (no folders, nothing hidden), read once."""
    if "/" in name or "\\" in name or name.startswith(".") or not name.isprintable():
        return None
    path = STATIC_DIR / name
    if not path.is_file() or path.suffix not in (".js", ".css", ".svg", ".png", ".woff2"):
        return None
    body = path.read_bytes()
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    squeeze = path.suffix in (".js", ".css", ".svg")
    return Asset(
        body, gzip.compress(body, 6, mtime=0) if squeeze else None, content_type,
        hashlib.sha256(body).hexdigest()[:12],
    )


def static_url(name: str) -> str:
    """``/console/static/NAME?v=VERSION``: cached for a year, a new version is a new URL."""
    found = asset(name)
    if found is None:
        raise ValueError(f"no static file {name!r}")
    return f"/console/static/{name}?v={found.version}"


async def static_view(request: web.Request) -> web.Response:
    found = asset(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound(text="没有这个文件")
    versioned = request.query.get("v") == found.version
    headers = {
        "Cache-Control": "public, max-age=31536000, immutable" if versioned else "no-cache",
        "ETag": f'"{found.version}"',
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
    }
    if request.headers.get("If-None-Match") == headers["ETag"]:
        return web.Response(status=304, headers=headers)
    body = found.body
    if found.gzipped is not None and "gzip" in request.headers.get("Accept-Encoding", ""):
        body, headers["Content-Encoding"] = found.gzipped, "gzip"
    return web.Response(body=body, content_type=found.content_type, headers=headers)


# --- pages -------------------------------------------------------------------------------------

SECURITY_HEADERS = {
    "Cache-Control": "no-store",  # figures and names: not for shared caches
    "Referrer-Policy": "same-origin",  # a login link's token never leaves in a Referer
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # no other page frames the console (clickjacking)
    # The same for today's browsers; and no <base>, plugin or form elsewhere, whatever
    # markup might slip into a page.
    "Content-Security-Policy": (
        "frame-ancestors 'none'; base-uri 'none'; object-src 'none'; form-action 'self'"
    ),
}


def harden(headers: MutableMapping[str, str]) -> None:
    """Add the console's security headers to ``headers``, keeping any it already has (a
    static file's own Cache-Control)."""
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, value)


def document(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)} · 影城看板</title>"
        f'<link rel="stylesheet" href="{escape(static_url("console.css"))}">'
        f"</head><body>{body}</body></html>"
    )


def html_response(text: str, status: int = 200) -> web.Response:
    return web.Response(
        text=text, status=status, content_type="text/html", charset="utf-8",
        headers=SECURITY_HEADERS,
    )


def message_page(
    title: str, text: str, *, status: int = 200, action: tuple[str, str] | None = None
) -> web.Response:
    """A small page that says one thing (a refusal, an error) and offers one way on."""
    button = (
        f'<a class="cn-big" href="{escape(action[1])}">{escape(action[0])}</a>' if action else ""
    )
    body = (
        f'<main class="cn-main"><div class="cn-card" data-status="{status}">'
        f"<h1>{escape(title)}</h1><p>{escape(text)}</p>{button}</div></main>"
    )
    return html_response(document(title, body), status)


def login_page(authorize_url: str, note: str = "") -> web.Response:
    said = f'<p class="cn-muted">{escape(note)}</p>' if note else ""
    body = (
        '<main class="cn-main"><div class="cn-card"><h1>影城看板</h1>'
        f"{said}<p>请用企业微信登录。店长可查看本店的全部看板；员工和工程师可查看服务与放映设备。</p>"
        f'<a class="cn-big" id="wecom-login" href="{escape(authorize_url)}">企业微信登录</a>'
        '<p class="cn-muted">也可以在企业微信工作台里发送「看板」，收到一个仅限本人使用的登录链接。</p>'
        "</div></main>"
    )
    return html_response(document("登录", body))


def _day_text(ctx: PageContext) -> str:
    start, end = ctx.scope.start, ctx.scope.end

    def one(d: date) -> str:
        return f"{d.year}年{d.month}月{d.day}日（周{WEEKDAYS[d.weekday()]}）"

    days = (end - start).days + 1
    span = one(start) if start == end else f"{one(start)} 至 {one(end)}，共 {days} 天"
    return f"{span} · 营业日按凌晨3点换日"


def _filters(ctx: PageContext, cinemas: Sequence[tuple[int, str]], chosen: int | None) -> str:
    scope = ctx.scope
    chips = []
    for value, label in RANGE_LABELS.items():
        on = " on" if scope.range is value else ""
        # A chip keeps the cinema but not a custom period's days.
        href = ctx.link(range=value.value, start=None, end=None)
        chips.append(f'<a class="cn-chip{on}" href="{escape(href)}" data-range="{value.value}">'
                     f"{label}</a>")
    custom = scope.range is Range.CUSTOM
    cinema_field = ""
    if len(cinemas) > 1:
        options = ['<option value="">全部影城</option>'] + [
            f'<option value="{cid}"{" selected" if cid == chosen else ""}>{escape(name)}</option>'
            for cid, name in cinemas
        ]
        cinema_field = f'<label>影城 <select name="cinema">{"".join(options)}</select></label>'
    elif chosen is not None:
        cinema_field = f'<input type="hidden" name="cinema" value="{chosen}">'
    form = (
        f'<form class="cn-form" method="get" action="{escape(ctx.base_url)}">'
        '<input type="hidden" name="range" value="custom">'
        f'<label>从 <input type="date" name="start" value="{scope.start.isoformat()}" required></label>'
        f'<label>到 <input type="date" name="end" value="{scope.end.isoformat()}" required></label>'
        f'{cinema_field}<button type="submit">查看</button></form>'
    )
    on = " on" if custom else ""
    details = (
        f'<details class="cn-custom"{" open" if custom else ""}>'
        f'<summary class="cn-chip{on}" data-range="custom">自定义</summary>{form}</details>'
    )
    picker = ""
    if len(cinemas) > 1:
        # Picking a cinema keeps the period: the range fields ride along hidden.
        keep = "".join(
            f'<input type="hidden" name="{k}" value="{escape(v)}">'
            for k, v in _period_params(ctx).items()
        )
        options = ['<option value="">全部影城</option>'] + [
            f'<option value="{cid}"{" selected" if cid == chosen else ""}>{escape(name)}</option>'
            for cid, name in cinemas
        ]
        picker = (
            f'<form class="cn-form" method="get" action="{escape(ctx.base_url)}">{keep}'
            f'<select name="cinema" aria-label="影城">{"".join(options)}</select>'
            '<button type="submit">切换</button></form>'
        )
    return f'<div class="cn-filters">{"".join(chips)}{details}{picker}</div>'


def _period_params(ctx: PageContext) -> dict[str, str]:
    scope = ctx.scope
    params = {"range": scope.range.value}
    if scope.range is Range.CUSTOM:
        params |= {"start": scope.start.isoformat(), "end": scope.end.isoformat()}
    return params


def frame(
    ctx: PageContext,
    *,
    title: str,
    body: str,
    sections: Sequence[Section],
    current: str,
    cinemas: Sequence[tuple[int, str]],
    chosen_cinema: int | None,
    error: str = "",
) -> str:
    """The whole page: header (cinema, who, logout), the tabs of the sections this viewer
    may open (keeping range and cinema), the filters, then ``body``."""
    viewer: Viewer = ctx.viewer
    names = [name for cid, name in cinemas if cid in ctx.scope.cinema_ids]
    place = "、".join(names) if len(names) <= 2 else f"{len(names)} 家影城"
    tabs = "".join(
        f'<a class="{"on" if s.key == current else ""}" href="{escape(_tab_link(ctx, s.key))}"'
        f' data-section="{escape(s.key)}">{escape(s.title)}</a>'
        for s in sections
    )
    role = ROLE_LABELS.get(viewer.role, str(viewer.role))
    header = (
        f'<header class="cn-top"><div class="cn-brand">影城看板<small>{escape(place)}</small></div>'
        f'<div class="cn-who"><span>{escape(viewer.name)} · {role}</span>'
        '<form method="post" action="/console/logout">'
        '<button class="cn-link" type="submit" id="logout">退出</button></form></div></header>'
        f'<nav class="cn-tabs">{tabs}</nav>'
    )
    problem = f'<div class="cn-error" role="alert">{escape(error)}</div>' if error else ""
    now = ctx.now
    main = (
        f'<main class="cn-main">{_filters(ctx, cinemas, chosen_cinema)}'
        f'<p class="cn-scope">{escape(_day_text(ctx))}</p>{problem}{body}'
        f'<footer class="cn-foot">数据截至 {_clock_text(now)}</footer></main>'
    )
    return document(title, header + main)


def _tab_link(ctx: PageContext, key: str) -> str:
    # ctx.link builds on this section's base; a tab is another section with the same query.
    own = ctx.link()
    query = own.partition("?")[2]
    return f"/console/{key}" + (f"?{query}" if query else "")


def _clock_text(now: datetime) -> str:
    return local_date_time_text(now)
