"""WeCom: projector health and the brightness red line.

「3号厅放映机状态」 / 「放映机状态」 → the health of one hall's projector, or of every hall
(staff, engineers and managers): score, its parts, the latest readings, light hours,
active alerts and the red line in force. A projector whose snapshot is missing or stale
is 「无数据」, never shown as good.

「把3号厅亮度红线设为70%」 / 「3号厅亮度红线70%」 / 「亮度红线设为75%」 (the whole cinema)
→ a new red line (managers only; others are refused politely). 「亮度红线」 shows the lines.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any, Protocol

from bot.chat.channels import Channel, Inbound
from bot.infra.clock import Clock, local_time_text
from bot.chat.replies import Reply
from bot.chat.router import Actor, Router, Update
from bot.infra.strict import is_ascii_digits
from domain.people import StaffRole
from domain.projectors import (
    NO_DATA,
    RED_LINE,
    SMPTE_FLOOR,
    ProjectorHealth,
    RuleBook,
    RuleRefused,
    health_of,
    set_red_line,
)

log = logging.getLogger(__name__)
router = Router(__name__)


class TelemetryRules(RuleBook, Protocol):
    async def changed(self) -> None: ...


_DIGITS = str.maketrans("一二三四五六七八九", "123456789")
_HALL = r"(?P<hall>(?:\d{1,2}|[一二三四五六七八九十]{1,3})\s*号?\s*厅|[A-Za-z][A-Za-z0-9]{0,9}\s*厅)"
_WHOLE = r"(?P<whole>全影城|全部影厅|所有影厅|所有厅|全部|所有|影城)"
SET = re.compile(
    rf"^\s*(?:请)?\s*(?:把|将)?\s*(?:{_HALL}|{_WHOLE})?\s*的?\s*(?:放映机)?\s*的?\s*亮度\s*红线\s*"
    r"(?:设为|设置为|设置成|设成|设到|改为|改成|改到|调到|调为|调整为|调整到|定为|为|是|=|:|：)?\s*"
    r"(?P<value>-?\d{1,4}(?:\.\d+)?)\s*(?P<unit>%|％)?\s*(?:吧|。|!|！|\.)?\s*$"
)
RED_VIEW = re.compile(
    rf"^\s*(?:{_HALL}|{_WHOLE})?\s*的?\s*(?:放映机)?\s*的?\s*亮度\s*红线\s*(?:是多少|多少|是几|在哪)?\s*[?？。]*\s*$"
)
STATUS = re.compile(
    rf"^\s*(?:{_HALL}|{_WHOLE})?\s*的?\s*(?:放映机|投影机|放映设备)\s*"
    r"(?:的)?\s*(?:状态|健康|健康度|健康状况|情况|怎么样)\s*(?:如何|怎么样)?\s*[?？。]*\s*$"
)
GRADE_ICON = {"良好": "🟢", "注意": "🟡", "危险": "🔴", NO_DATA: "⚪"}
SEVERITY = {"critical": "严重", "warning": "警告"}


def _text(u: Update) -> str:
    return (u.inbound.text or "").strip()


def _is_set(u: Update) -> bool:
    return bool(SET.match(_text(u)))


def _is_red_view(u: Update) -> bool:
    return bool(RED_VIEW.match(_text(u)))


def _is_status(u: Update) -> bool:
    return bool(STATUS.match(_text(u)))


def _number(cn: str) -> str:
    """「三」→ 3, 「十二」→ 12, 「二十」→ 20 (halls are numbered below 100). Anything else
    the pattern lets through (「十十」) stays as written, and so names no hall."""
    tens, ten, ones = cn.partition("十")
    if not ten:
        return cn.translate(_DIGITS)
    tens, ones = tens.translate(_DIGITS) or "1", ones.translate(_DIGITS) or "0"
    if not (is_ascii_digits(tens, max_digits=1) and is_ascii_digits(ones, max_digits=1)):
        return cn
    return str(int(tens) * 10 + int(ones))


def _hall_word(found: re.Match[str]) -> str | None:
    hall = found["hall"]
    if not hall:
        return None
    hall = re.sub(r"\s+", "", hall)
    return re.sub(r"^[一二三四五六七八九十]+", lambda m: _number(m[0]), hall)


# Formatting ----------------------------------------------------------------------------------
def _num(value: Any, unit: str, digits: int = 1) -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}f}{unit}"


def _at(iso: str | None, now: datetime) -> str:
    if not iso:
        return "—"
    return local_time_text(datetime.fromisoformat(iso), now)


def _line(p: ProjectorHealth, default_red: float) -> str:
    red = p.red_line_pct if p.red_line_pct is not None else default_red
    where = {"device": "本厅设置", "cinema": "全影城设置", "default": "默认"}[p.red_line_from]
    return f"亮度红线 {red:g}%（{where}）"


def _detail(p: ProjectorHealth, default_red: float, now: datetime) -> str:
    icon = GRADE_ICON.get(p.grade, "")
    lines = [f"📽 {p.hall}放映机（{p.device_id}{' · ' + p.model if p.model else ''}）"]
    h = p.health or {}
    if p.score is None:
        lines.append(f"{icon} 健康：{NO_DATA}（{'；'.join(p.reasons)}）")
        if h.get("last_seen"):
            lines.append(f"最后一次数据：{_at(h.get('last_seen'), now)}")
    else:
        lines.append(f"{icon} 健康 {p.score} 分 · {p.grade}（安全 {h.get('safety')} · 画质 {h.get('quality')}）")
    if h and p.fresh:
        fan = _num(h.get("fan_rpm"), " rpm", 0)
        if h.get("usual_fan_rpm") is not None:
            fan += f"（平时约 {h['usual_fan_rpm']:.0f}）"
        power = {1: "开机", 0: "关机"}.get(h.get("power"), "未知")
        lines.append(
            f"{power} · 温度 {_num(h.get('temperature_c'), '°C')}（环境 {_num(h.get('ambient_c'), '°C')}）"
            f" · 亮度 {_num(h.get('brightness_pct'), '%')} · 风扇 {fan}"
        )
        hours = h.get("light_hours")
        if hours is not None:
            rated = h.get("rated_light_hours")
            lines.append(f"光源 {hours:.0f} 小时" + (f"（额定 {rated:.0f} 小时）" if rated else ""))
        if h.get("days_to_red_line") is not None:
            lines.append(f"预计 {h['days_to_red_line']:.0f} 天后亮度降到红线")
    critical = (h.get("critical_line_pct") if h else None) or None
    lines.append(_line(p, default_red) + (f" · 危险线 {critical:g}%" if critical else ""))
    alerts = (h.get("alerts") or []) if p.fresh else []
    if alerts:
        lines.append("告警：")
        lines += [f"· {a['title']}（{SEVERITY.get(a['severity'], a['severity'])}）{a['message']}" for a in alerts]
    elif p.fresh:
        lines.append("告警：无")
    if p.score is not None and p.reasons:
        lines.append("扣分原因：" + "；".join(p.reasons))
    if p.at is not None and p.fresh:
        lines.append(f"更新于 {local_time_text(p.at, now)}")
    return "\n".join(lines)


def _summary(p: ProjectorHealth) -> str:
    icon = GRADE_ICON.get(p.grade, "")
    head = f"{icon} {p.hall}：{NO_DATA}" if p.score is None else f"{icon} {p.hall}：{p.score} 分 {p.grade}"
    alerts = ((p.health or {}).get("alerts") or []) if p.fresh else []
    why = [a["title"] for a in alerts] or list(p.reasons)
    return head + (f"（{'；'.join(why[:3])}）" if why else "")


def _default_red(rules: TelemetryRules | None) -> float:
    return rules.default(RED_LINE) if rules is not None else 80.0


async def _projectors(
    cinema_id: int, found: re.Match[str], clock: Clock
) -> tuple[str, list[ProjectorHealth], Reply | None]:
    """(hall word, the projectors it names, or the answer when there are none)."""
    hall = _hall_word(found)
    rows = await health_of(cinema_id, clock.now(), hall)
    if rows:
        return hall, rows, None
    return hall, rows, Reply.say(f"本影城没有「{hall}」的放映机。" if hall else "本影城还没有登记放映机。")


# Handlers ------------------------------------------------------------------------------------
@router.on(channel=Channel.WECOM, role="employee", kind="text", when=_is_status)
async def projector_status(
    actor: Actor, msg: Inbound, clock: Clock, telemetry_rules: TelemetryRules | None = None
) -> Reply:
    if actor.cinema_id is None:
        return Reply.say("你的账号没有关联影城，查不到放映机状态。")
    found = STATUS.match(msg.text.strip())
    assert found is not None
    hall, rows, none = await _projectors(actor.cinema_id, found, clock)
    if none is not None:
        return none
    default_red = _default_red(telemetry_rules)
    if hall or len(rows) == 1:
        now = clock.now()
        return Reply.say("\n\n".join(_detail(p, default_red, now) for p in rows))
    worst = sorted(rows, key=lambda p: (p.score is not None, p.score or 0))
    lines = [f"📽 放映机状态（{len(rows)} 台）"] + [_summary(p) for p in rows]
    if worst[0].score is None or worst[0].score < 80:
        lines.append(f"详情请发「{worst[0].hall}放映机状态」")
    lines.append(_red_lines(rows, default_red))
    return Reply.say("\n".join(lines))


def _red_lines(rows: list[ProjectorHealth], default_red: float) -> str:
    cinema = next((p.red_line_pct for p in rows if p.red_line_from == "cinema"), None)
    base = f"亮度红线：全影城 {cinema:g}%" if cinema is not None else f"亮度红线：全影城 {default_red:g}%（默认）"
    own = [f"{p.hall} {p.red_line_pct:g}%" for p in rows if p.red_line_from == "device" and p.red_line_pct is not None]
    return base + (f"；单独设置：{'、'.join(own)}" if own else "")


@router.on(channel=Channel.WECOM, role="employee", kind="text", when=_is_red_view)
async def show_red_lines(
    actor: Actor, msg: Inbound, clock: Clock, telemetry_rules: TelemetryRules | None = None
) -> Reply:
    if actor.cinema_id is None:
        return Reply.say("你的账号没有关联影城。")
    found = RED_VIEW.match(msg.text.strip())
    assert found is not None
    hall, rows, none = await _projectors(actor.cinema_id, found, clock)
    if none is not None:
        return none
    default_red = _default_red(telemetry_rules)
    text = _line(rows[0], default_red) if hall else _red_lines(rows, default_red)
    if actor.role == StaffRole.MANAGER:
        text += "\n修改：把3号厅亮度红线设为70%，或 亮度红线设为75%（全影城）"
    return Reply.say(text)


@router.on(channel=Channel.WECOM, role="employee", kind="text", when=_is_set)
async def set_brightness_red_line(
    actor: Actor, msg: Inbound, clock: Clock, telemetry_rules: TelemetryRules | None = None
) -> Reply:
    if actor.role != StaffRole.MANAGER:
        log.warning(
            "red line change refused: not a manager",
            extra={"by": actor.user_id, "role": actor.role, "cinema_id": actor.cinema_id},
        )
        return Reply.say("抱歉，亮度红线需要店长（值班经理）来设置。\n你可以发「放映机状态」查看当前红线和亮度。")
    if actor.cinema_id is None or telemetry_rules is None:
        return Reply.say("你的账号没有关联影城，不能设置红线。" if actor.cinema_id is None else "暂时不能设置红线，请稍后再试。")
    found = SET.match(msg.text.strip())
    assert found is not None
    value = float(found["value"])
    hall = _hall_word(found)
    now = clock.now()
    device_id, hall_name = "", ""
    if hall:
        rows = await health_of(actor.cinema_id, now, hall)
        if not rows:
            return Reply.say(f"本影城没有「{hall}」的放映机。")
        device_id, hall_name = rows[0].device_id, rows[0].hall
    try:
        change = await set_red_line(
            actor.cinema_id, value, device_id=device_id, hall=hall_name, by=actor.user_id, now=now,
            book=telemetry_rules,
        )
    except RuleRefused as exc:
        return Reply.say(f"没有修改：{exc.message}")
    where = hall_name or "全影城"
    if not change.changed:
        return Reply.say(f"{where}亮度红线已经是 {change.new:g}%，没有变化。")
    await telemetry_rules.changed()
    log.info("red line set by chat", extra={"by": actor.user_id, "device": device_id, "to": value})
    lines = [f"✅ {where}亮度红线：{change.old:g}% → {change.new:g}%"]
    if value < SMPTE_FLOOR:
        lines.append(f"提示：低于影院放映标准（额定亮度的 {SMPTE_FLOOR:g}%），观众可能觉得画面偏暗。")
    if change.overridden:
        rows = await health_of(actor.cinema_id, now)
        halls = {p.device_id: p.hall for p in rows}
        own = [f"{halls.get(d, d)} {v:g}%" for d, v in change.overridden.items()]
        lines.append(f"以下影厅有单独设置，仍按各自红线：{'、'.join(own)}")
    lines.append("放映中亮度低于红线会给工程组发告警；修改已经生效。")
    return Reply.say("\n".join(lines))
