"""The pieces a console section builds its page from: figure tiles that link to their rows,
tables with links and export buttons, confidence intervals, human durations, 「暂无数据」.

Everything here returns HTML text with every value escaped (``html.escape``); sections pass
figures in, never markup from outside. The page's look for these pieces is ``STYLE``
(classes ``cb-*``), which a section puts once at the top of its body.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from bot.infra.clock import local_date_time_text
from domain.pricing import format_fen
from handlers.console.base import Column, PageContext, Table

EMPTY = "暂无数据"

STYLE = """<style>
.cb-body{font-family:"Noto Sans CJK SC","Source Han Sans SC","PingFang SC","Microsoft YaHei",sans-serif;
color:#222;max-width:100%;overflow-wrap:anywhere}
.cb-card{background:#fff;border-radius:12px;padding:12px 14px;margin:0 0 12px;box-shadow:0 1px 3px #0001;
min-width:0;box-sizing:border-box}
.cb-card h2{font-size:16px;margin:0 0 8px;display:flex;gap:8px;align-items:baseline;flex-wrap:wrap}
.cb-card h2 small{font-weight:400;color:#888;font-size:12px}
.cb-tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px;margin:0 0 12px}
.cb-tile{display:block;background:#fff;border-radius:12px;padding:10px 12px;box-shadow:0 1px 3px #0001;
color:inherit;text-decoration:none;min-width:0;border-left:4px solid transparent}
a.cb-tile:hover{box-shadow:0 2px 6px #0002}
.cb-tile .cb-label{font-size:13px;color:#666}
.cb-tile .cb-value{font-size:24px;font-weight:600;margin:2px 0;font-variant-numeric:tabular-nums}
.cb-tile .cb-note{font-size:12px;color:#888}
.cb-grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,420px),1fr));gap:12px;
margin:0 0 12px}
.cb-grid2>.cb-card{margin:0}
.cb-scroll{overflow-x:auto;-webkit-overflow-scrolling:touch;max-width:100%;
background:linear-gradient(90deg,#fff 30%,#fff0) left/20px 100% no-repeat local,
linear-gradient(270deg,#fff 30%,#fff0) right/20px 100% no-repeat local,
radial-gradient(farthest-side at 0 50%,#0002,#0000) left/10px 100% no-repeat scroll,
radial-gradient(farthest-side at 100% 50%,#0002,#0000) right/10px 100% no-repeat scroll}
.cb-table{border-collapse:collapse;width:100%;font-size:13px;font-variant-numeric:tabular-nums}
.cb-table th,.cb-table td{padding:6px 8px;border-bottom:1px solid #eee;text-align:left;white-space:nowrap}
.cb-table td.cb-text{white-space:normal;min-width:8em;max-width:28em}
.cb-table th{color:#666;font-weight:500;background:#fafafa}
.cb-table td.cb-num,.cb-table th.cb-num{text-align:right}
.cb-table a{color:#2f7ed8;text-decoration:none}
.cb-exports{display:flex;gap:8px;flex-wrap:wrap;margin:8px 0 0}
.cb-btn{display:inline-block;padding:4px 10px;border:1px solid #cfd8e3;border-radius:6px;font-size:12px;
color:#2f7ed8;text-decoration:none;background:#fff}
.cb-empty{color:#999;text-align:center;padding:18px 0;font-size:14px}
.cb-chart{width:100%;min-width:0}
.cb-spark{width:120px;max-width:100%}
.cb-badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-size:12px}
.cb-muted{color:#888;font-size:12px}
.cb-more{margin:8px 0 0;display:flex;gap:8px;align-items:center;flex-wrap:wrap}
.cb-pager{display:flex;gap:12px;justify-content:center;margin:8px 0 0;font-size:13px}
.cb-quote{margin:0;padding:8px 0;border-bottom:1px solid #eee;font-size:14px}
.cb-quote:last-child{border-bottom:0}
.cb-quote .cb-muted{display:block;margin-top:2px}
</style>"""


# --- values as people read them -------------------------------------------------------------


def human_duration(seconds: float | None) -> str:
    """45 → 「45秒」, 720 → 「12分钟」, 3900 → 「1小时5分」, 7200 → 「2小时」,
    97200 → 「1天3小时」; None → 「—」."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "—"
    total = max(0, int(round(seconds)))
    if total < 60:
        return f"{total}秒"
    minutes = total // 60 if total < 3600 else int(round(total / 60))
    if minutes < 60:
        return f"{minutes}分钟"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}小时{minutes}分" if minutes else f"{hours}小时"
    days, hours = divmod(hours, 24)
    return f"{days}天{hours}小时" if hours else f"{days}天"


def percent(value: float | None, digits: int = 1) -> str:
    """0.452 → 「45.2%」; None → 「—」."""
    if value is None:
        return "—"
    return f"{value * 100:.{digits}f}%"


def number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    if digits == 0:
        return f"{int(round(value)):,}"
    return f"{value:,.{digits}f}"


def ci_text(low: float | None, high: float | None, *, digits: int = 0, scale: float = 1.0,
            suffix: str = "") -> str:
    """「95% 区间 38–52」, or 「样本不足」 when there is no interval."""
    if low is None or high is None:
        return "样本不足"
    return f"95% 区间 {low * scale:.{digits}f}–{high * scale:.{digits}f}{suffix}"


def format_value(value: Any, kind: str) -> str:
    """A cell as shown (and as a CSV export's reader would want it spelled). Kinds are
    ``base.Column``'s, plus ``short``: a page-only text that never wraps (a time, a hall)."""
    if value is None or value == "":
        return "—" if kind != "text" else ""
    if kind == "money":
        return format_fen(int(value))
    if kind == "percent":
        return percent(float(value))
    if kind == "seconds":
        return human_duration(float(value))
    if kind == "int":
        return number(float(value))
    if kind == "datetime" and isinstance(value, datetime):
        return local_date_time_text(value)
    if kind == "date" and isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


_NUMERIC = {"int", "money", "percent", "seconds"}


# --- pieces ---------------------------------------------------------------------------------


def empty(text: str = EMPTY) -> str:
    return f'<p class="cb-empty">{html.escape(text)}</p>'


def card(title: str, body: str, *, note: str = "", key: str = "") -> str:
    """A titled block; ``body`` is HTML already built from these helpers."""
    small = f"<small>{html.escape(note)}</small>" if note else ""
    data = f' data-block="{html.escape(key)}"' if key else ""
    return f'<section class="cb-card"{data}><h2>{html.escape(title)}{small}</h2>{body}</section>'


def grid(blocks: Iterable[str]) -> str:
    """Blocks side by side on a wide screen, one under the other on a phone."""
    return f'<div class="cb-grid2">{"".join(blocks)}</div>'


def tile(label: str, value: str, *, href: str | None = None, note: str = "",
         key: str = "", colour: str = "") -> str:
    """One figure: a label, the value as text, an optional note (n, an interval), and the
    link to the rows behind it."""
    style = f' style="border-left-color:{html.escape(colour)}"' if colour else ""
    data = f' data-figure="{html.escape(key)}"' if key else ""
    inner = (
        f'<div class="cb-label">{html.escape(label)}</div>'
        f'<div class="cb-value">{html.escape(value)}</div>'
        + (f'<div class="cb-note">{html.escape(note)}</div>' if note else "")
    )
    if href:
        return f'<a class="cb-tile" href="{html.escape(href)}"{data}{style}>{inner}</a>'
    return f'<div class="cb-tile"{data}{style}>{inner}</div>'


def tiles(items: Iterable[str]) -> str:
    return f'<div class="cb-tiles">{"".join(items)}</div>'


def badge(text: str, colour: str) -> str:
    return f'<span class="cb-badge" style="background:{html.escape(colour)}">{html.escape(text)}</span>'


def link(text: str, href: str | None) -> str:
    if not href:
        return html.escape(text)
    return f'<a href="{html.escape(href)}">{html.escape(text)}</a>'


def export_links(ctx: PageContext, name: str) -> str:
    """The CSV and XLSX buttons of the section's table ``name``."""
    csv_href = ctx.link(f"/export/{name}.csv")
    xlsx_href = ctx.link(f"/export/{name}.xlsx")
    return (
        '<div class="cb-exports">'
        f'<a class="cb-btn" href="{html.escape(csv_href)}" data-export="{html.escape(name)}.csv">导出 CSV</a>'
        f'<a class="cb-btn" href="{html.escape(xlsx_href)}" data-export="{html.escape(name)}.xlsx">导出 Excel</a>'
        "</div>"
    )


def table(t: Table, *, ctx: PageContext | None = None, export: str | None = None,
          limit: int | None = None, more_href: str | None = None, more_text: str = "查看全部",
          total: int | None = None) -> str:
    """``t`` as an HTML table that scrolls sideways inside its card (never the page),
    cells linked where ``t.links`` says, then the export buttons of the section's table
    ``export`` (which export every row). ``limit``: show the first rows only, with
    ``more_text`` (「查看全部」) linking to ``more_href``. ``total``: how many rows there are
    when ``t`` holds only the first ones (a long table need not be built to show 20 rows)."""
    exports = export_links(ctx, export) if (ctx is not None and export) else ""
    if not t.rows:
        return empty() + exports
    rows: Sequence[Mapping[str, Any]] = t.rows if limit is None else t.rows[:limit]
    head = "".join(_th(c) for c in t.columns)
    body = "".join(
        "<tr>" + "".join(_td(c, row, t.links.get(c.key)) for c in t.columns) + "</tr>"
        for row in rows
    )
    more = ""
    count = len(t.rows) if total is None else total
    if limit is not None and count > limit:
        shown = f"显示前 {limit} 行，共 {count} 行"
        more = f'<p class="cb-more"><span class="cb-muted">{html.escape(shown)}</span>'
        if more_href:
            more += f' <a class="cb-btn" href="{html.escape(more_href)}" data-more>{html.escape(more_text)}</a>'
        more += "</p>"
    return (
        f'<div class="cb-scroll"><table class="cb-table" data-table="{html.escape(t.name)}">'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>{more}{exports}"
    )


def _th(column: Column) -> str:
    cls = ' class="cb-num"' if column.kind in _NUMERIC else ""
    return f"<th{cls}>{html.escape(column.title)}</th>"


def _td(column: Column, row: Mapping[str, Any], make_link: Any) -> str:
    text = format_value(row.get(column.key), column.kind)
    cls = "cb-num" if column.kind in _NUMERIC else ("cb-text" if column.kind == "text" else "")
    href = make_link(row) if make_link is not None else None
    cell = link(text, href) if text not in ("", "—") else html.escape(text)
    attr = f' class="{cls}"' if cls else ""
    return f"<td{attr}>{cell}</td>"


def pager(ctx: PageContext, page: int, has_more: bool, *, param: str = "page") -> str:
    """「上一页 / 下一页」 links that keep the page's range and filters."""
    parts = []
    if page > 1:
        parts.append(f'<a href="{html.escape(ctx.link(**{param: str(page - 1)}))}">上一页</a>')
    parts.append(f"<span>第 {page} 页</span>")
    if has_more:
        parts.append(f'<a href="{html.escape(ctx.link(**{param: str(page + 1)}))}">下一页</a>')
    return f'<nav class="cb-pager">{"".join(parts)}</nav>'
