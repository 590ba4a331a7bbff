"""A projector's health score (0–100): what the evaluator knows about it, in one number.

Two parts, each 0–100, each starting at 100 and losing points for what it sees:

* **safety** — will it keep running: temperature against the caution and critical lines,
  the fan against its stopped/slow lines and against its own learned usual speed, error
  codes, and the thermal alerts no single value shows (heating rate, hotter than usual,
  temperature forecast);
* **quality** — does the audience get a proper picture: brightness against the red line
  and the critical line, light-source hours against the rated life (when the model's is
  known), and the days a brightness forecast gives until the red line.

The score is the weaker part (a dangerous fan is not averaged away by a bright picture),
less a quarter of what the other part lost. An active critical alert caps its part at
30, so the grade is 危险 whatever else is fine. A device that has not reported for
longer than its no-data limit has no score: 无数据, never "good" by default.

Pure: a :class:`~telemetry.state.DeviceState` and a time in, a :class:`Health` out (the
ingest writes it to ``Projector.health``; chat and the API read that snapshot).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from telemetry.alerts import CRITICAL, FIRING, title
from telemetry.state import DeviceState

GOOD, WATCH, DANGER, NO_DATA = "良好", "注意", "危险", "无数据"
GOOD_FROM, WATCH_FROM = 80, 50
CRITICAL_CAP = 30

# Rated light-source life by model (substring of Projector.model): laser engines are rated
# for tens of thousands of hours, xenon lamps for a few thousand.
RATED_LIGHT_HOURS = {
    "CP4440-RGB": 30000.0,
    "SP4K": 30000.0,
    "NC3541L": 30000.0,
    "CP2220": 2000.0,
    "DP4K-32B": 2000.0,
    "SRX-R515": 2000.0,
}
_SAFETY_ALERTS = {
    "temperature_rate": 25,
    "baseline_temperature": 15,
    "temperature_forecast": 15,
    "unreachable": 40,
}
_VALUE_RULES = frozenset({"temperature_high", "fan", "brightness_low", "baseline_fan"})


def rated_hours(model: str) -> float | None:
    for name, hours in RATED_LIGHT_HOURS.items():
        if name.lower() in model.lower():
            return hours
    return None


@dataclass
class _Part:
    score: float = 100.0
    reasons: list[str] = field(default_factory=list)

    def lose(self, points: float, reason: str) -> None:
        self.score -= points
        self.reasons.append(reason)

    def cap(self, at: float, reason: str) -> None:
        self.score = min(self.score, at)
        self.reasons.append(reason)

    def value(self) -> int:
        return max(0, min(100, round(self.score)))


@dataclass(frozen=True)
class Health:
    score: int | None  # None: no data
    grade: str  # 良好 | 注意 | 危险 | 无数据
    safety: int | None
    quality: int | None
    reasons: tuple[str, ...]
    at: float  # when judged (POSIX seconds)
    last_seen: float | None  # the last reading's time
    power: int | None
    temperature_c: float | None
    ambient_c: float | None
    brightness_pct: float | None
    fan_rpm: float | None
    usual_fan_rpm: float | None
    light_hours: float | None
    rated_light_hours: float | None
    red_line_pct: float
    critical_line_pct: float
    days_to_red_line: float | None
    alerts: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        def when(t: float | None) -> str | None:
            return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()

        def num(x: float | None, digits: int = 1) -> float | None:
            return None if x is None else round(x, digits)

        return {
            "score": self.score, "grade": self.grade, "safety": self.safety, "quality": self.quality,
            "reasons": list(self.reasons), "at": when(self.at), "last_seen": when(self.last_seen),
            "power": self.power, "temperature_c": num(self.temperature_c),
            "ambient_c": num(self.ambient_c), "brightness_pct": num(self.brightness_pct),
            "fan_rpm": num(self.fan_rpm, 0), "usual_fan_rpm": num(self.usual_fan_rpm, 0),
            "light_hours": num(self.light_hours), "rated_light_hours": self.rated_light_hours,
            "red_line_pct": self.red_line_pct, "critical_line_pct": self.critical_line_pct,
            "days_to_red_line": num(self.days_to_red_line), "alerts": list(self.alerts),
        }


def _brightness(st: DeviceState) -> float | None:
    """The screen now if the light is on, else the last show's median."""
    if st.light and st.f_bright.prev is not None:
        return st.f_bright.prev
    bins = st.bright_bins
    if bins.n:
        return bins.v[(bins.head - 1) % len(bins.v)]
    return None


def _usual_fan(st: DeviceState, now: float) -> float | None:
    base = st.fan_base
    if not base.trained(4 * 3600.0) or st.load is None:
        return None
    amb = st.amb if st.amb is not None else 25.0
    if not base.covers(amb, st.load, now):
        return None
    usual = base.predict_ref(amb, st.load, now)
    return usual if usual > 100.0 else None


def _alerts(st: DeviceState) -> list[dict[str, Any]]:
    out = []
    for rule, a in st.alerts.items():
        if a.status != FIRING:
            continue
        out.append({
            "rule": rule, "title": title(rule), "severity": a.severity, "message": a.message,
            "since": datetime.fromtimestamp(a.since, UTC).isoformat(),
            "predicted_at": (
                datetime.fromtimestamp(a.predicted_t, UTC).isoformat() if a.predicted_t is not None else None
            ),
        })
    out.sort(key=lambda x: (x["severity"] != CRITICAL, x["rule"]))
    return out


def assess(st: DeviceState, now: float, model: str = "") -> Health:
    """The device's health at `now` (POSIX seconds)."""
    r = st.rules
    alerts = _alerts(st)
    firing = {a["rule"]: a for a in alerts}
    temp, fan, bright = st.f_temp.prev, st.f_fan.prev, _brightness(st)
    powered = st.power == 1
    usual_fan = _usual_fan(st, now) if powered else None
    rated = rated_hours(model)
    hours = st.light_hours
    days: float | None = None
    forecast = st.alerts.get("brightness_forecast")
    if forecast is not None and forecast.status == FIRING and forecast.predicted_t is not None:
        days = max(0.0, (forecast.predicted_t - now) / 86400.0)
    last_seen = st.last_t if st.last_t > -math.inf else None

    def health(score: int | None, grade: str, safety: int | None, quality: int | None, reasons: list[str]) -> Health:
        return Health(
            score, grade, safety, quality, tuple(reasons), now, last_seen, st.power,
            temp, st.amb, bright, fan if powered else None, usual_fan, hours, rated,
            r.brightness_warning_pct, r.brightness_critical_pct, days, tuple(alerts),
        )

    if last_seen is None:
        return health(None, NO_DATA, None, None, ["还没有收到数据"])
    silent = now - last_seen
    if "no_data" in firing or silent > st.no_data_after():
        return health(None, NO_DATA, None, None, [f"{silent / 60:.0f} 分钟没有收到数据"])

    safety, quality = _Part(), _Part()
    # Temperature means something unless it is off (not every box reports power); the fan
    # only while powered (the detectors' rule too).
    if st.power != 0 and temp is not None:
        if temp >= r.temperature_critical_c:
            safety.cap(15, f"温度 {temp:.1f}°C，超过危险线 {r.temperature_critical_c:g}°C")
        elif temp >= r.temperature_caution_c:
            safety.lose(35, f"温度 {temp:.1f}°C，超过警戒线 {r.temperature_caution_c:g}°C")
        elif temp >= r.temperature_caution_c - 5.0:
            safety.lose(10, f"温度 {temp:.1f}°C，接近警戒线 {r.temperature_caution_c:g}°C")
    if powered and fan is not None:
        if fan < r.fan_stopped_rpm:
            safety.cap(15, f"风扇停转（{fan:.0f} rpm）")
        elif fan < r.fan_slow_rpm:
            safety.lose(35, f"风扇转速过低（{fan:.0f} rpm，下限 {r.fan_slow_rpm:g}）")
        elif usual_fan is not None:
            ratio = fan / usual_fan
            if ratio <= r.baseline_fan_ratio:
                safety.lose(25, f"风扇只有平时转速的 {ratio:.0%}")
            elif ratio < 0.85:
                safety.lose(10, f"风扇比平时慢（{ratio:.0%}）")
    for rule, a in firing.items():
        critical = a["severity"] == CRITICAL
        if rule.startswith("error:"):
            if critical:
                safety.cap(CRITICAL_CAP, f"报错 {rule[6:]}")
            else:
                safety.lose(20, f"报错 {rule[6:]}")
        elif rule in _SAFETY_ALERTS:
            if critical:
                safety.cap(CRITICAL_CAP, title(rule))
            else:
                safety.lose(_SAFETY_ALERTS[rule], title(rule))
        elif critical and rule in _VALUE_RULES:
            part = quality if rule == "brightness_low" else safety
            part.cap(CRITICAL_CAP, f"严重告警：{title(rule)}")

    if bright is not None:
        red, crit = r.brightness_warning_pct, r.brightness_critical_pct
        if bright < crit:
            quality.cap(15, f"亮度 {bright:.1f}%，低于危险线 {crit:g}%")
        elif bright < red:
            quality.lose(40, f"亮度 {bright:.1f}%，低于红线 {red:g}%")
        elif bright < red + 5.0:
            quality.lose(10, f"亮度 {bright:.1f}%，接近红线 {red:g}%")
    if days is not None:
        quality.lose(30 if days < 3 else 20 if days < 7 else 10, f"预计 {days:.0f} 天后亮度降到红线")
    if hours is not None and rated:
        used = hours / rated
        if used >= 1.0:
            quality.lose(30, f"光源 {hours:.0f} 小时，已超过额定寿命 {rated:.0f} 小时")
        elif used >= 0.9:
            quality.lose(15, f"光源 {hours:.0f} 小时，接近额定寿命 {rated:.0f} 小时")
        elif used >= 0.75:
            quality.lose(5, f"光源已用额定寿命的 {used:.0%}")

    s, q = safety.value(), quality.value()
    score = max(0, min(s, q) - (100 - max(s, q)) // 4)
    grade = GOOD if score >= GOOD_FROM else WATCH if score >= WATCH_FROM else DANGER
    reasons = safety.reasons + quality.reasons
    if st.power == 0:
        reasons.append("关机")
    return health(score, grade, s, q, reasons)


def fingerprint(h: Health) -> tuple[Any, ...]:
    """What makes a snapshot worth writing again before its refresh is due."""
    if h.score is None:
        return (h.grade, h.last_seen)
    # Coarse: a temperature moving by a tenth is not a new snapshot; the refresh catches it.
    return (h.grade, h.score // 5, h.power, tuple((a["rule"], a["severity"]) for a in h.alerts))
