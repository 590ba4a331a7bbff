"""放映设备: each projector's health score (coloured by grade) and its trend, open alerts,
alert history, light hours, and brightness against its red line. Managers, staff and
engineers. Figures from ``domain.reports``; each projector links to its alerts.
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from domain import reports
from domain.people import StaffRole
from handlers.console import charts, params
from handlers.console import widgets as w
from handlers.console.base import Column, PageContext, Section, Table
from handlers.console.service import offset, paged_title

GRADES = ("良好", "注意", "危险", "无数据")
SEVERITY_LABELS = {"warning": "警告", "critical": "严重"}
ALERT_STATE_LABELS = {"firing": "告警中", "resolved": "已恢复"}
RED_LINE_FROM = {"device": "本机设置", "cinema": "影院设置", "snapshot": "监测", "default": "默认"}


def grade_colour(grade: str) -> str:
    return charts.GRADE_COLOURS.get(grade, charts.GRADE_COLOURS["无数据"])


def brightness_colour(p: reports.ProjectorRow) -> str:
    if p.brightness_pct is None:
        return charts.GRADE_COLOURS["无数据"]
    if p.brightness_pct < p.critical_line_pct:
        return charts.GRADE_COLOURS["危险"]
    if p.brightness_pct < p.red_line_pct:
        return "#e67e22"
    return charts.GRADE_COLOURS["良好"]


async def _projectors(ctx: PageContext) -> reports.Projectors:
    return await reports.projectors(params.period(ctx), ctx.now)


# --- tables ---------------------------------------------------------------------------------------

PROJECTOR_COLUMNS = (
    Column("device_id", "设备"),
    Column("hall", "影厅"),
    Column("model", "型号"),
    Column("score", "健康分", "int"),
    Column("grade", "等级"),
    Column("brightness", "亮度%"),
    Column("red_line", "红线%"),
    Column("light_hours", "光源小时"),
    Column("rated_light_hours", "额定小时"),
    Column("days_to_red_line", "预计到红线(天)"),
    Column("open_alerts", "未恢复告警", "int"),
    Column("alerts_in_period", "期间告警", "int"),
    Column("reasons", "说明"),
)


def _num(value: float | None, digits: int = 0) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def projectors_of(ctx: PageContext, pr: reports.Projectors) -> Table:
    rows = [
        {"device_id": p.device_id, "hall": p.hall, "model": p.model, "score": p.score, "grade": p.grade,
         "brightness": _num(p.brightness_pct, 1), "red_line": _num(p.red_line_pct, 0),
         "light_hours": _num(p.light_hours), "rated_light_hours": _num(p.rated_light_hours),
         "days_to_red_line": _num(p.days_to_red_line), "open_alerts": len(p.open_alerts),
         "alerts_in_period": p.alerts_in_period, "reasons": "；".join(p.reasons)}
        for p in pr.projectors
    ]

    def to(column: str, **extra: str) -> Callable[[Mapping[str, Any]], str | None]:
        return lambda r: ctx.link("/rows/alerts", device=r["device_id"], **extra) if r[column] else None

    return Table("projectors", "放映机", PROJECTOR_COLUMNS, rows, links={
        "device_id": lambda r: ctx.link("/rows/alerts", device=r["device_id"]),
        "open_alerts": to("open_alerts", state="firing"), "alerts_in_period": to("alerts_in_period"),
    })


ALERT_COLUMNS = (
    Column("fired_at", "告警时间", "datetime"),
    Column("device_id", "设备"),
    Column("hall", "影厅"),
    Column("severity", "级别"),
    Column("state", "状态"),
    Column("message", "内容"),
    Column("value", "数值"),
    Column("limit", "阈值"),
    Column("resolved_at", "恢复时间", "datetime"),
    Column("acknowledged_by", "确认人"),
)


def alert_rows(alerts: Any) -> list[dict[str, Any]]:
    return [
        {"fired_at": a.fired_at, "device_id": a.device_id, "hall": a.hall,
         "severity": SEVERITY_LABELS.get(a.severity, a.severity),
         "state": ALERT_STATE_LABELS.get(a.state, a.state) + ("（已静音）" if a.silenced else ""),
         "message": a.message, "value": _num(a.value, 1), "limit": _num(a.limit, 1),
         "resolved_at": a.resolved_at, "acknowledged_by": a.acknowledged_by}
        for a in alerts
    ]


def history_of(ctx: PageContext, pr: reports.Projectors) -> Table:
    rows = alert_rows(pr.history)
    title = "告警历史" + (f"（最新 {len(rows)} 条，共 {pr.alerts_in_period} 条）"
                        if pr.alerts_in_period > len(rows) else "")
    return Table("history", title, ALERT_COLUMNS, rows,
                 links={"device_id": lambda r: ctx.link("/rows/alerts", device=r["device_id"])})


def _exported(build: Callable[[PageContext, reports.Projectors], Table]) -> Callable[[PageContext], Awaitable[Table]]:
    async def table(ctx: PageContext) -> Table:
        return build(ctx, await _projectors(ctx))
    return table


async def alerts_rows(ctx: PageContext) -> Table:
    """A projector's alerts (``device``), or all: ``state`` firing|resolved, ``severity``; ``page``."""
    device = params.text(ctx, "device", max_length=64) or None
    page = await reports.alerts(
        params.period(ctx), device_id=device,
        state=params.choice(ctx, "state", ALERT_STATE_LABELS),
        severity=params.choice(ctx, "severity", SEVERITY_LABELS),
        limit=reports.PAGE_LIMIT, offset=offset(ctx),
    )
    title = f"{device} 的告警" if device else "告警明细"
    return Table("alerts", paged_title(title, page), ALERT_COLUMNS, alert_rows(page.rows))


# --- the page ---------------------------------------------------------------------------------------


async def render(ctx: PageContext) -> str:
    pr = await _projectors(ctx)
    link = ctx.link
    figures = w.tiles([
        *(w.tile(f"{grade}", w.number(pr.grades.get(grade, 0)), key=f"grade-{grade}",
                 colour=grade_colour(grade), note="台放映机") for grade in GRADES),
        w.tile("未恢复告警", w.number(pr.open_alerts), href=link("/rows/alerts", state="firing"),
               key="open-alerts", colour="#e74c3c" if pr.open_alerts else ""),
        w.tile("期间告警", w.number(pr.alerts_in_period), href=link("/rows/alerts"), key="alerts"),
    ])
    if not pr.projectors:
        cards = w.card("放映机", w.empty(), key="projectors")
    else:
        cards = w.grid(_projector_card(ctx, p) for p in pr.projectors)
    return w.STYLE + charts.library() + '<div class="cb-body">' + figures + "".join([
        cards,
        _brightness(ctx, pr),
        _trend(ctx, pr),
        w.card("放映机一览", w.table(projectors_of(ctx, pr), ctx=ctx, export="projectors"), key="table"),
        w.card("告警历史", w.table(history_of(ctx, pr), ctx=ctx, export="history", limit=30,
                                    more_href=link("/rows/alerts")),
               note=f"期间共 {pr.alerts_in_period} 条", key="history"),
    ]) + "</div>"


def _projector_card(ctx: PageContext, p: reports.ProjectorRow) -> str:
    colour = grade_colour(p.grade)
    score = "—" if p.score is None else str(p.score)
    head = (
        f'<div style="display:flex;justify-content:space-between;align-items:center;gap:8px">'
        f'<div><div class="cb-value" style="font-size:28px;font-weight:600;color:{colour}">{html.escape(score)}</div>'
        f"{w.badge(p.grade, colour)}</div>"
    )
    points = [t.score for t in p.trend]
    spark = (charts.render(charts.sparkline(points, colour=colour), height=48, kind="spark",
                           label=f"{p.device_id} 健康分趋势")
             if any(v is not None for v in points) else '<span class="cb-muted">暂无趋势</span>')
    head += f"<div>{spark}</div></div>"
    facts = []
    if p.brightness_pct is not None:
        facts.append(f"亮度 {p.brightness_pct:.1f}% · 红线 {p.red_line_pct:.0f}%"
                     f"（{RED_LINE_FROM.get(p.red_line_from, p.red_line_from)}）")
    else:
        facts.append(f"亮度 — · 红线 {p.red_line_pct:.0f}%")
    if p.light_hours is not None:
        rated = f" / 额定 {p.rated_light_hours:.0f}" if p.rated_light_hours else ""
        facts.append(f"光源 {p.light_hours:.0f} 小时{rated}")
    if p.days_to_red_line is not None:
        facts.append(f"预计 {p.days_to_red_line:.0f} 天后到红线")
    facts.extend(p.reasons)
    alerts = "".join(
        f'<li>{w.badge(SEVERITY_LABELS.get(a.severity, a.severity), "#e74c3c" if a.severity == "critical" else "#f39c12")} '
        f"{html.escape(a.message)} <span class=\"cb-muted\">{html.escape(w.format_value(a.fired_at, 'datetime'))}</span></li>"
        for a in p.open_alerts
    )
    body = head + "".join(f'<div class="cb-muted">{html.escape(f)}</div>' for f in facts)
    if alerts:
        body += f'<ul style="padding-left:18px;margin:6px 0">{alerts}</ul>'
    body += (f'<p class="cb-muted"><a href="{html.escape(ctx.link("/rows/alerts", device=p.device_id))}">'
             f"告警记录 {p.alerts_in_period} 条</a></p>")
    return w.card(f"{p.hall} · {p.device_id}", body, note=p.model, key=f"projector-{p.device_id}")


def _brightness(ctx: PageContext, pr: reports.Projectors) -> str:
    rows = [p for p in pr.projectors if p.brightness_pct is not None]
    if not rows:
        return w.card("亮度与红线", w.empty(), key="brightness")
    option = charts.bars(
        [f"{p.hall}" for p in rows], {"亮度%": [round(p.brightness_pct or 0, 1) for p in rows]},
        horizontal=True, value_labels=True, colours=[brightness_colour(p) for p in rows],
        links=[ctx.link("/rows/alerts", device=p.device_id) for p in rows],
    )
    lines = sorted({p.red_line_pct for p in rows})
    option["series"][0]["markLine"] = {
        "silent": True, "symbol": "none", "lineStyle": {"color": "#e74c3c", "type": "dashed"},
        "label": {"formatter": "红线 {c}%", "position": "start"},  # above the bars (the category axis runs top-down), unrotated
        "data": [{"xAxis": v} for v in lines],
    }
    option["xAxis"].update(max=100, interval=25)  # 0–100 %, no crowded 90/100 ticks
    option["grid"]["top"] = 30  # room for the red line's label
    return w.card("亮度与红线", charts.render(option, height=60 + 30 * len(rows), label="亮度与红线"),
                  note="低于红线为橙色，低于严重线为红色", key="brightness")


def _trend(ctx: PageContext, pr: reports.Projectors) -> str:
    shown = [p for p in pr.projectors if any(t.score is not None for t in p.trend)]
    if not shown:
        return w.card("健康分趋势", w.empty(), key="trend")
    days = [t.day for t in shown[0].trend]
    option = charts.line(
        [f"{d.month}/{d.day}" for d in days],
        {f"{p.hall} {p.device_id}": [t.score for t in p.trend] for p in shown},
        y_min=0, y_max=100, y_name="分",
    )
    return w.card("健康分趋势", charts.render(option, height=260, label="健康分趋势"), key="trend")


SECTION = Section(
    key="projectors",
    title="放映设备",
    roles=frozenset({StaffRole.MANAGER, StaffRole.STAFF, StaffRole.ENGINEER}),
    render=render,
    tables={"projectors": _exported(projectors_of), "history": _exported(history_of)},
    rows={"alerts": alerts_rows},
)
