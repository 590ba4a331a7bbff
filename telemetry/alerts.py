"""Alert lifecycle with Alertmanager / PagerDuty semantics, at the level of events.

Detectors say, on each evaluation, whether a rule's condition holds (*fire*), has
cleared (*clear*) or cannot be judged now (no verdict: the state is kept). From that:

* inactive → **pending** when the condition first holds; pending → **firing** once it has
  held for the rule's ``for:`` period *and* on at least two evaluations (a single reading
  never fires an alert). A pending alert whose condition clears vanishes silently.
* One alert per (device, rule) while active: later evaluations that still see the
  condition only count ``repeats``. A rise in severity (warning → critical) is told
  once, as a new firing event of the same alert.
* firing → **resolved** after the condition has stayed clear for ``keep_firing_s`` (and
  two evaluations), told exactly once. A resolved alert never reopens: the next time
  the condition holds is a new alert with a new ``alert_id``.
* **Inhibition**: while a device's ``no_data`` or ``unreachable`` alert fires, its other
  alerts still change state but are not told; one that is still firing when the device
  comes back is told then. An alert that was never told is never resolved aloud.

Acknowledgement, silences, grouping into cards and repeat reminders belong to the
stored alert (the database lifecycle); these events are what it consumes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from telemetry.readings import iso

WARNING, CRITICAL = "warning", "critical"
RANK = {WARNING: 1, CRITICAL: 2}
PENDING, FIRING = 1, 2
INHIBITORS = frozenset({"no_data", "unreachable"})
MIN_EVALUATIONS = 2


TITLES = {
    "temperature_high": "温度过高",
    "fan": "风扇异常",
    "brightness_low": "亮度低于红线",
    "temperature_rate": "升温异常快",
    "baseline_temperature": "温度高于本机平时",
    "baseline_fan": "风扇慢于本机平时",
    "brightness_forecast": "亮度将降到红线",
    "temperature_forecast": "温度将超过警戒线",
    "no_data": "设备没有数据",
    "unreachable": "放映机无响应",
}


def title(rule: str) -> str:
    if rule.startswith("error:"):
        return f"放映机报错 {rule[6:]}"
    return TITLES.get(rule, rule)


class Verdict(NamedTuple):
    rule: str
    fire: bool
    severity: str = WARNING
    value: float | None = None
    limit: float | None = None
    message: str = ""
    predicted_t: float | None = None
    for_s: float = 0.0


@dataclass(frozen=True, slots=True)
class AlertEvent:
    device_id: str
    rule: str
    severity: str
    state: str  # "firing" | "resolved"
    t: float  # POSIX seconds, the readings' clock
    message: str
    predicted_t: float | None
    fingerprint: str  # stable per (device, rule)
    alert_id: str  # fingerprint + incident number: a new firing after a resolve is a new alert
    seq: int  # event number within the alert: 1 = first firing, then escalations, resolve
    repeats: int  # evaluations that saw the condition while the alert was firing
    value: float | None = None
    limit: float | None = None
    cinema: str = ""

    @property
    def ts(self) -> datetime:
        return datetime.fromtimestamp(self.t, UTC)

    def to_json(self) -> dict[str, Any]:
        """The wire form of DESIGN.md (`cinebot telemetry replay` output)."""
        out: dict[str, Any] = {
            "device_id": self.device_id,
            "rule": self.rule,
            "severity": self.severity,
            "state": self.state,
            "ts": iso(self.t),
            "message": self.message,
        }
        if self.predicted_t is not None:
            out["predicted_ts"] = iso(self.predicted_t)
        return out


class AlertState:
    __slots__ = (
        "rule", "status", "since", "count", "severity", "value", "limit", "message",
        "predicted_t", "alert_id", "fingerprint", "seq", "repeats", "clear_since",
        "clear_count", "notified",
    )

    def __init__(self, rule: str, t: float) -> None:
        self.rule = rule
        self.status = PENDING
        self.since = t
        self.count = 0
        self.severity = WARNING
        self.value: float | None = None
        self.limit: float | None = None
        self.message = ""
        self.predicted_t: float | None = None
        self.alert_id = ""
        self.fingerprint = ""
        self.seq = 0
        self.repeats = 0
        self.clear_since: float | None = None
        self.clear_count = 0
        self.notified = False


def fingerprint(device_id: str, rule: str) -> str:
    return hashlib.sha1(f"{device_id}\x1f{rule}".encode()).hexdigest()[:16]


class Lifecycle:
    """Applies verdicts to a device's alerts and appends the resulting events to `out`."""

    def apply(self, st: Any, v: Verdict, t: float, out: list[AlertEvent]) -> None:
        alerts = st.alerts
        a = alerts.get(v.rule)
        if v.fire:
            if a is None:
                a = alerts[v.rule] = AlertState(v.rule, t)
            a.count += 1
            a.clear_since = None
            a.clear_count = 0
            a.value, a.limit, a.predicted_t = v.value, v.limit, v.predicted_t
            if v.message:
                a.message = v.message
            if a.status == PENDING:
                if RANK[v.severity] > RANK[a.severity]:
                    a.severity = v.severity
                if a.count >= MIN_EVALUATIONS and t - a.since >= v.for_s:
                    self._fire(st, a, t, out)
            else:
                a.repeats += 1
                if RANK[v.severity] > RANK[a.severity]:
                    a.severity = v.severity
                    a.seq += 1
                    if a.notified:
                        out.append(self._event(st, a, "firing", t))
        elif a is not None:
            if a.status == PENDING:
                del alerts[v.rule]
                return
            if a.clear_since is None:
                a.clear_since = t
            a.clear_count += 1
            keep = 0.0 if v.rule in INHIBITORS else st.rules.keep_firing_s
            if a.clear_count >= (1 if v.rule in INHIBITORS else MIN_EVALUATIONS) and t - a.clear_since >= keep:
                self.resolve(st, a, t, out)

    def fire_now(self, st: Any, v: Verdict, t: float, out: list[AlertEvent]) -> None:
        """Fire without a pending period (the rule's own timeout was its pending period)."""
        a = st.alerts.get(v.rule)
        if a is not None and a.status == FIRING:
            a.repeats += 1
            return
        a = st.alerts[v.rule] = AlertState(v.rule, t)
        a.severity, a.value, a.limit, a.message = v.severity, v.value, v.limit, v.message
        self._fire(st, a, t, out)

    def _fire(self, st: Any, a: AlertState, t: float, out: list[AlertEvent]) -> None:
        a.status = FIRING
        n = st.incidents.get(a.rule, 0) + 1
        st.incidents[a.rule] = n
        a.fingerprint = fingerprint(st.device_id, a.rule)
        a.alert_id = f"{a.fingerprint}-{n}"
        a.seq = 1
        if a.rule in INHIBITORS:
            st.inhibitors += 1
            a.notified = True
            out.append(self._event(st, a, "firing", t))
        elif st.inhibitors == 0:
            a.notified = True
            out.append(self._event(st, a, "firing", t))

    def resolve(self, st: Any, a: AlertState, t: float, out: list[AlertEvent]) -> None:
        del st.alerts[a.rule]
        if a.notified:
            a.seq += 1
            out.append(self._event(st, a, "resolved", t))
        if a.rule in INHIBITORS:
            st.inhibitors -= 1
            if st.inhibitors == 0:
                # Inhibition over: alerts that fired meanwhile and still fire are told now.
                for other in st.alerts.values():
                    if other.status == FIRING and not other.notified:
                        other.notified = True
                        out.append(self._event(st, other, "firing", t))

    @staticmethod
    def _event(st: Any, a: AlertState, state: str, t: float) -> AlertEvent:
        return AlertEvent(
            device_id=st.device_id,
            rule=a.rule,
            severity=a.severity,
            state=state,
            t=t,
            message=a.message if state == "firing" else f"已恢复：{title(a.rule)}",
            predicted_t=a.predicted_t if state == "firing" else None,
            fingerprint=a.fingerprint,
            alert_id=a.alert_id,
            seq=a.seq,
            repeats=a.repeats,
            value=a.value,
            limit=a.limit,
            cinema=st.rules.cinema,
        )
