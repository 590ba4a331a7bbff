"""Alert events scored against a simulated fleet's ground truth.

* a fault is **caught** when an alert of its family fires on its device between its
  onset and its failure (strictly before); faults whose failure falls after the end of
  the simulation are counted as caught if such an alert fires before the end;
* a light-source ageing fault is **forecast** when a ``brightness_forecast`` alert fires
  at least 24 h before the brightness crossed the red line;
* an alert is a **false alarm** when it fires on a device outside every fault window
  (onset − 10 min … repair + 2 h, or the end); rates are per 100 device-days of
  healthy running (all device time outside fault windows).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from telemetry.alerts import AlertEvent
from telemetry.simulate import Fleet

THERMAL = {"temperature_high", "temperature_rate", "baseline_temperature", "temperature_forecast", "error:THERMAL_SHUTDOWN"}
FAMILIES: dict[str, set[str]] = {
    "fan_failure": {"fan", "baseline_fan"} | THERMAL,
    "fan_degradation": {"fan", "baseline_fan"} | THERMAL,
    "blocked_exhaust": set(THERMAL),
    "filter_clogging": set(THERMAL),
    "light_ageing": {"brightness_forecast", "brightness_low"},
    "light_loss": {"brightness_low", "brightness_forecast"},
    "offline": {"no_data", "unreachable"},
}
BEFORE_ONSET_S = 600.0
AFTER_REPAIR_S = 2 * 3600.0
DAY = 86400.0


@dataclass
class FaultResult:
    device_id: str
    fault: str
    onset_t: float
    failure_t: float | None
    first_alert_t: float | None  # first family alert after onset
    caught: bool
    lead_s: float | None  # failure - first alert
    forecast_lead_s: float | None = None  # light ageing: failure - first forecast alert
    predicted_error_s: float | None = None  # light ageing: predicted_ts - actual crossing


@dataclass
class Score:
    faults: list[FaultResult] = field(default_factory=list)
    false_alarms: list[AlertEvent] = field(default_factory=list)
    healthy_device_days: float = 0.0
    alerts: int = 0

    @property
    def caught_share(self) -> float:
        return sum(f.caught for f in self.faults) / len(self.faults) if self.faults else 1.0

    @property
    def ageing(self) -> list[FaultResult]:
        return [f for f in self.faults if f.fault == "light_ageing" and f.failure_t is not None]

    @property
    def forecast_share(self) -> float:
        ageing = self.ageing
        ok = [f for f in ageing if f.forecast_lead_s is not None and f.forecast_lead_s >= DAY]
        return len(ok) / len(ageing) if ageing else 1.0

    @property
    def false_per_100_days(self) -> float:
        return 100.0 * len(self.false_alarms) / self.healthy_device_days if self.healthy_device_days else 0.0

    def merge(self, other: Score) -> Score:
        return Score(
            self.faults + other.faults,
            self.false_alarms + other.false_alarms,
            self.healthy_device_days + other.healthy_device_days,
            self.alerts + other.alerts,
        )


def score(fleet: Fleet, events: Iterable[AlertEvent]) -> Score:
    firings: dict[str, list[AlertEvent]] = defaultdict(list)
    alerts = 0
    for e in events:
        if e.state == "firing" and e.seq == 1:
            firings[e.device_id].append(e)
            alerts += 1
    end = fleet.end_t
    windows: dict[str, list[tuple[float, float]]] = defaultdict(list)
    result = Score(alerts=alerts)
    for fault in fleet.faults:
        stop = (fault.repair_t + AFTER_REPAIR_S) if fault.repair_t is not None else end
        windows[fault.device_id].append((fault.onset_t - BEFORE_ONSET_S, stop))
        family = FAMILIES[fault.fault]
        deadline = fault.failure_t if fault.failure_t is not None else end
        hits = [e for e in firings[fault.device_id] if e.rule in family and fault.onset_t - BEFORE_ONSET_S <= e.t]
        first = min((e.t for e in hits), default=None)
        caught = first is not None and first < deadline
        fr = FaultResult(
            fault.device_id, fault.fault, fault.onset_t, fault.failure_t, first, caught,
            (deadline - first) if caught and first is not None else None,
        )
        if fault.fault == "light_ageing" and fault.failure_t is not None:
            forecasts = [e for e in hits if e.rule == "brightness_forecast" and e.t < fault.failure_t]
            if forecasts:
                fr.forecast_lead_s = fault.failure_t - forecasts[0].t
                if forecasts[0].predicted_t is not None:
                    fr.predicted_error_s = forecasts[0].predicted_t - fault.failure_t
        result.faults.append(fr)
    for device, evs in firings.items():
        for e in evs:
            if not any(lo <= e.t <= hi for lo, hi in windows.get(device, ())):
                result.false_alarms.append(e)
    total = len(fleet.devices) * (end - fleet.start_t)
    faulty = sum(min(hi, end) - max(lo, fleet.start_t) for ws in windows.values() for lo, hi in ws)
    result.healthy_device_days = (total - faulty) / DAY
    return result
