"""ECharts options for the console's charts, and the HTML that draws one.

A chart is a ``<div class="cb-chart">`` plus a ``<script>`` that calls
``echarts.init(div, null, {renderer: "svg"}).setOption(<json>)`` once the library (served by
the shell at ``/console/static/echarts.min.js``) is there, and resizes the chart with its
box (a ``ResizeObserver``; the window's resize where there is none). The options are plain
JSON — no JavaScript functions — so what a page draws is data a test can read back. A data
point may carry ``url``: clicking it opens the rows behind it.

Phone first: every option keeps its labels inside the box (``containLabel``), hides labels
that would overlap, confines tooltips to the chart and scrolls long legends, so a chart
reads at 375 px as well as on a desktop. Animation is off: the console is a report, and a
screenshot should show the finished chart.
"""

from __future__ import annotations

import html
import json
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

FONT = '"Noto Sans CJK SC","Source Han Sans SC","PingFang SC","Microsoft YaHei",sans-serif'
PALETTE = ["#2f7ed8", "#07c160", "#f39c12", "#e74c3c", "#8e44ad", "#16a085", "#7f8c8d", "#d35400"]
GRADE_COLOURS = {"良好": "#07c160", "注意": "#f39c12", "危险": "#e74c3c", "无数据": "#9e9e9e"}

Number = int | float | None
Links = Sequence[str | None] | None  # per data point: the rows behind it (a click opens them)


def _points(values: Sequence[Number], links: Links, colours: Sequence[str] | None = None) -> list[Any]:
    """Data points, as objects where a point carries a link (``url``) or a colour."""
    if links is None and colours is None:
        return list(values)
    points: list[Any] = []
    for i, v in enumerate(values):
        point: dict[str, Any] = {"value": v}
        if links is not None and i < len(links) and links[i]:
            point["url"] = links[i]
        if colours is not None:
            point["itemStyle"] = {"color": colours[i % len(colours)]}
        points.append(point)
    return points


def _base(names: Sequence[str] = (), **extra: Any) -> dict[str, Any]:
    """The options every chart shares; ``names``: the series, with a legend when several."""
    legend = len(names) > 1
    option: dict[str, Any] = {
        "animation": False,
        "color": PALETTE,
        "textStyle": {"fontFamily": FONT, "fontSize": 12},
        "grid": {"left": 6, "right": 16, "top": 34 if legend else 18, "bottom": 6,
                 "containLabel": True},
        "tooltip": {"trigger": "axis", "confine": True},
    }
    if names:
        option["legend"] = _legend(names)
    option.update(extra)
    return option


def _legend(names: Sequence[str]) -> dict[str, Any]:
    return {"type": "scroll", "top": 0, "left": 0, "right": 0, "itemWidth": 14, "itemHeight": 8,
            "data": list(names), "show": len(names) > 1}


def line(
    x: Sequence[str],
    series: Mapping[str, Sequence[Number]],
    *,
    y_name: str = "",
    y_min: float | None = None,
    y_max: float | None = None,
    percent: bool = False,
    red_line: float | None = None,
    red_line_label: str = "红线",
    right: Mapping[str, Sequence[Number]] | None = None,
    right_name: str = "",
    right_max: float | None = None,
    counts: bool = False,
    links: Links = None,
) -> dict[str, Any]:
    """A trend: one line per series over the labels ``x`` (days, hours). ``percent``: values
    are 0..100 and the axis says so; ``red_line``: a dashed red limit across the chart;
    ``right``: series on a second axis (another unit); ``counts``: the (left) values are
    counts, ticked in whole numbers; ``links``: per x, the rows behind it."""
    lines: list[dict[str, Any]] = []
    for axis, group in ((0, series), (1, right or {})):
        for name, values in group.items():
            lines.append({
                "name": name, "type": "line", "data": _points(values, links), "connectNulls": True,
                "showSymbol": len(x) <= 31, "symbolSize": 5, "yAxisIndex": axis,
            })
    if red_line is not None and lines:
        lines[0]["markLine"] = {
            "silent": True, "symbol": "none",
            "lineStyle": {"color": "#e74c3c", "type": "dashed"},
            "label": {"formatter": f"{red_line_label} {red_line:g}", "position": "insideEndTop"},
            "data": [{"yAxis": red_line}],
        }
    y_axis: dict[str, Any] = {"type": "value", "name": y_name, "nameGap": 8,
                              "nameTextStyle": {"align": "left"}, "splitNumber": 4}
    if percent:
        y_axis["axisLabel"] = {"formatter": "{value}%"}
    if counts:
        y_axis["minInterval"] = 1  # no half work orders
    if y_min is not None:
        y_axis["min"] = y_min
    if y_max is not None:
        y_axis["max"] = y_max
    if y_min is not None and y_max is not None:  # a fixed scale: quarters, none crowded at the top
        y_axis["interval"] = (y_max - y_min) / 4
    y_axes: Any = y_axis
    if right:
        second: dict[str, Any] = {"type": "value", "name": right_name, "nameGap": 8, "splitNumber": 4,
                                  "nameTextStyle": {"align": "right"}, "splitLine": {"show": False}}
        if right_max is not None:  # a fixed scale: ticks at quarters, none crowded at the top
            second.update(min=0, max=right_max, interval=right_max / 4)
        y_axes = [y_axis, second]
    names = [*series, *(right or {})]
    option = _base(
        names,
        xAxis={"type": "category", "data": list(x), "boundaryGap": False,
               "axisLabel": {"hideOverlap": True}},
        yAxis=y_axes,
        series=lines,
    )
    if len(names) > 1 and (y_name or right_name):
        option["grid"]["top"] = 56  # the legend's row, then the axes' names under it
    return option


def bars(
    categories: Sequence[str],
    series: Mapping[str, Sequence[Number]],
    *,
    horizontal: bool = False,
    stack: bool = False,
    percent: bool = False,
    value_labels: bool = False,
    colours: Sequence[str] | None = None,
    max_value: float | None = None,
    links: Links = None,
) -> dict[str, Any]:
    """Bars per category, one bar (or one stacked part) per series. ``horizontal`` puts the
    categories down the side — the readable way for names on a phone. ``colours``: one
    colour per category (a single series), e.g. a rating scale; ``max_value``: the value
    axis ends there (shares: 100, not a rounded-up 120); ``links``: per category, the rows
    behind it."""
    items: list[dict[str, Any]] = []
    for name, values in series.items():
        data = _points(values, links, colours)
        entry: dict[str, Any] = {"name": name, "type": "bar", "data": data, "barMaxWidth": 28}
        if stack:
            entry["stack"] = "all"
        if value_labels:
            entry["label"] = {"show": True, "position": "right" if horizontal else "top",
                              "formatter": "{c}%" if percent else "{c}"}
        items.append(entry)
    category_axis: dict[str, Any] = {"type": "category", "data": list(categories),
                                     "axisLabel": {"hideOverlap": True}}
    value_axis: dict[str, Any] = {"type": "value", "splitNumber": 4}
    if not percent:
        value_axis["minInterval"] = 1  # counts: no 0.5 tickets
    if percent:
        value_axis["axisLabel"] = {"formatter": "{value}%"}
    if max_value is not None:
        value_axis["max"] = max_value
    if horizontal and value_labels:
        extra_right = 44  # room for the longest bar's label
    else:
        extra_right = 0
    if horizontal:
        category_axis["inverse"] = True  # the first category on top, as in a table
        category_axis["axisLabel"] = {"width": 96, "overflow": "truncate", "interval": 0}
        option = _base(list(series), xAxis=value_axis, yAxis=category_axis,
                       series=items, tooltip={"trigger": "axis", "confine": True,
                                              "axisPointer": {"type": "shadow"}})
        option["grid"]["right"] += extra_right
        return option
    return _base(list(series), xAxis=category_axis, yAxis=value_axis,
                 series=items, tooltip={"trigger": "axis", "confine": True,
                                        "axisPointer": {"type": "shadow"}})


def heatmap(
    x: Sequence[str],
    y: Sequence[str],
    cells: Sequence[tuple[int, int, Number]],
    *,
    max_value: float = 100,
    unit: str = "%",
    links: Links = None,
) -> dict[str, Any]:
    """Values on a grid: ``cells`` are ``(x index, y index, value)``; empty cells are left
    out (blank), a cell with a value — even 0 — is tinted, so "no show" and "nobody came"
    read apart. The colour scale sits under the grid, so the grid keeps the width.
    ``links``: per cell, the rows behind it."""
    return _base(
        grid={"left": 6, "right": 10, "top": 8, "bottom": 44, "containLabel": True},
        tooltip={"position": "top", "confine": True},
        xAxis={"type": "category", "data": list(x), "splitLine": {"show": True, "lineStyle": {"color": "#f0f0f0"}},
               "axisLabel": {"hideOverlap": True}},
        yAxis={"type": "category", "data": list(y), "inverse": True,  # Monday on top, as in a calendar
               "splitLine": {"show": True, "lineStyle": {"color": "#f0f0f0"}}},
        visualMap={"min": 0, "max": max_value, "calculable": False, "orient": "horizontal",
                   "left": "center", "bottom": 0, "itemHeight": 120, "itemWidth": 10,
                   "text": [f"{max_value:g}{unit}", f"0{unit}"],
                   "inRange": {"color": ["#d6e6f5", "#7fb3e0", "#2f7ed8", "#14427a"]}},
        series=[{"type": "heatmap", "data": _points([[cx, cy, v] for cx, cy, v in cells], links),
                 "itemStyle": {"borderColor": "#fff", "borderWidth": 1},
                 "emphasis": {"itemStyle": {"borderColor": "#333", "borderWidth": 1}}}],
    )


def sparkline(values: Sequence[Number], *, colour: str = PALETTE[0],
              y_min: float | None = 0, y_max: float | None = 100) -> dict[str, Any]:
    """A small line without axes, for a trend beside a figure."""
    y_axis: dict[str, Any] = {"type": "value", "show": False}
    if y_min is not None:
        y_axis["min"] = y_min
    if y_max is not None:
        y_axis["max"] = y_max
    return {
        "animation": False,
        "grid": {"left": 2, "right": 2, "top": 4, "bottom": 4},
        "xAxis": {"type": "category", "show": False, "data": list(range(len(values))),
                  "boundaryGap": False},
        "yAxis": y_axis,
        "tooltip": {"show": False},
        "series": [{"type": "line", "data": list(values), "showSymbol": False,
                    "connectNulls": True, "lineStyle": {"color": colour, "width": 2},
                    "areaStyle": {"color": colour, "opacity": 0.12}}],
    }


def option_json(option: Mapping[str, Any]) -> str:
    """The option as JSON that is safe inside a ``<script>``: no ``</script>`` or ``<!--``
    can end or bend the script, whatever text a film title or a comment holds."""
    text = json.dumps(option, ensure_ascii=False, separators=(",", ":"))
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


_DRAW = (
    "(function(){var el=document.getElementById(%(id)s),opt=%(opt)s;"
    "function draw(){if(!window.echarts||el.dataset.drawn)return;el.dataset.drawn='1';"
    "var c=echarts.init(el,null,{renderer:'svg'});c.setOption(opt);"
    "c.on('click',function(p){if(p.data&&p.data.url){location.href=p.data.url}});"
    "if(window.ResizeObserver){new ResizeObserver(function(){c.resize()}).observe(el)}"
    "else{window.addEventListener('resize',function(){c.resize()})}"
    "if(document.readyState!=='complete'){window.addEventListener('load',function(){c.resize()})}}"
    "if(window.echarts){draw()}else{window.addEventListener('DOMContentLoaded',draw);"
    "window.addEventListener('load',draw)}})();"
)


def library() -> str:
    """The ``<script>`` that loads ECharts (versioned, cached): put once before the charts.
    Charts drawn before it loads wait for the page's ``load``."""
    from handlers.console.layout import static_url

    return f'<script src="{html.escape(static_url("echarts.min.js"))}"></script>'


def render(option: Mapping[str, Any], *, height: int = 240, label: str = "",
           kind: str = "") -> str:
    """The ``<div>`` and ``<script>`` that draw ``option``; ``label`` names the chart for
    screen readers (and tests); ``kind`` is a CSS modifier (``spark``)."""
    chart_id = f"cb-chart-{secrets.token_hex(5)}"
    script = _DRAW % {"id": json.dumps(chart_id), "opt": option_json(option)}
    return (
        f'<div class="cb-chart{" cb-" + html.escape(kind) if kind else ""}" id="{chart_id}" role="img" '
        f'aria-label="{html.escape(label)}" style="height:{int(height)}px"></div>'
        f"<script>{script}</script>"
    )
