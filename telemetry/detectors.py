"""Detectors: small units with one interface, each owning a few rules.

``evaluate(state, frame, out)`` looks at one glitch-free frame (:mod:`telemetry.state`)
and appends a :class:`~telemetry.alerts.Verdict` per rule it can judge now: *fire*
(condition holds) or *clear*. Appending nothing means "cannot tell now" (device off,
light dowsed, still warming up, no forecast point yet), which keeps the alert's state
— the pending period (``for_s``), repeats and resolution are the lifecycle's job
(:mod:`telemetry.alerts`), so every detector stays a few lines of physics.

Rules (alert names):

========================  =========================================================
``temperature_high``      temperature ≥ caution (warning) / critical (critical), with a
                          recovery threshold ``hysteresis`` below the limit
``fan``                   fan stopped (critical) or slow (warning) while powered
``brightness_low``        light on and settled, below the red line (warning) / the
                          critical line
``temperature_rate``      heating faster than this device's normal warm-up: the
                          temperature it is heading for is far above its usual one
``baseline_temperature``  hotter than this device usually runs at the same load/ambient
``baseline_fan``          fan slower than this device's usual speed at the same load
``brightness_forecast``   brightness trend reaches the red line within the horizon
``temperature_forecast``  temperature trend reaches the caution line within the horizon
``unreachable``           the edge box says the projector does not answer
``error:<code>``          any other error code the projector reports
``no_data``               silence (raised by :class:`~telemetry.evaluator.Evaluator`)
========================  =========================================================
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Protocol

import numpy as np

from telemetry.alerts import CRITICAL, WARNING, Verdict
from telemetry.state import DeviceState, Frame
from telemetry.stats import Bins, median, slope_stderr, theil_sen

SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")
THERMAL_RULES = frozenset(
    {"temperature_high", "temperature_rate", "baseline_temperature", "temperature_forecast", "fan", "baseline_fan"}
)


_CLEAR = {
    rule: Verdict(rule, False)
    for rule in (
        "temperature_high", "fan", "brightness_low", "temperature_rate", "baseline_temperature",
        "baseline_fan", "brightness_forecast", "temperature_forecast",
    )
}


class Detector(Protocol):
    rules: tuple[str, ...]

    def evaluate(self, st: DeviceState, f: Frame, out: list[Verdict]) -> None: ...


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).astimezone(SHANGHAI).strftime("%m-%d %H:%M")


class TemperatureThreshold:
    rules = ("temperature_high",)

    def evaluate(self, st: DeviceState, f: Frame, out: list[Verdict]) -> None:
        temp = f.temp
        if temp is None:
            return
        r = st.rules
        if temp >= r.temperature_caution_c:
            critical = temp >= r.temperature_critical_c
            limit = r.temperature_critical_c if critical else r.temperature_caution_c
            out.append(Verdict(
                "temperature_high", True, CRITICAL if critical else WARNING, temp, limit,
                f"温度 {temp:.1f}°C，超过{'危险' if critical else '警戒'}线 {limit:g}°C",
                None, r.temperature_for_s,
            ))
        elif "temperature_high" in st.alerts and temp <= r.temperature_caution_c - r.temperature_hysteresis_c:
            out.append(_CLEAR["temperature_high"])


class FanThreshold:
    rules = ("fan",)

    def evaluate(self, st: DeviceState, f: Frame, out: list[Verdict]) -> None:
        fan = f.fan
        if fan is None or f.power != 1 or f.since_on < 60.0:
            return  # a stopped fan is normal when off; it spins up in the first minute
        r = st.rules
        if fan < r.fan_slow_rpm:
            stopped = fan < r.fan_stopped_rpm
            limit = r.fan_stopped_rpm if stopped else r.fan_slow_rpm
            what = "风扇停转" if stopped else "风扇转速过低"
            out.append(Verdict(
                "fan", True, CRITICAL if stopped else WARNING, fan, limit,
                f"{what}：{fan:.0f} rpm（开机状态，下限 {limit:g} rpm）", None, r.fan_for_s,
            ))
        elif "fan" in st.alerts and fan >= 1.1 * r.fan_slow_rpm:
            out.append(_CLEAR["fan"])


class BrightnessThreshold:
    rules = ("brightness_low",)

    def evaluate(self, st: DeviceState, f: Frame, out: list[Verdict]) -> None:
        b = f.bright
        r = st.rules
        if b is None or not f.light or f.since_light < r.light_settle_s:
            return  # dark screen in an intermission, or a lamp still igniting
        if b < r.brightness_warning_pct:
            critical = b < r.brightness_critical_pct
            limit = r.brightness_critical_pct if critical else r.brightness_warning_pct
            out.append(Verdict(
                "brightness_low", True, CRITICAL if critical else WARNING, b, limit,
                f"亮度 {b:.1f}%，低于{'危险线' if critical else '红线'} {limit:g}%", None, r.brightness_for_s,
            ))
        elif "brightness_low" in st.alerts and b >= r.brightness_warning_pct + r.brightness_hysteresis_pct:
            out.append(_CLEAR["brightness_low"])


class HeatingRate:
    """Heating faster than a normal warm-up.

    A projector heats like a first-order system: from temperature T0, ``dt`` seconds
    later it reads ``T = Tss + (T0 - Tss)·exp(-dt/τ)``. Inverting that on two readings of
    the same thermal segment gives ``Tss`` — the temperature it is heading for. A normal
    start heads for the device's usual steady temperature (its learned baseline at this
    load and ambient); a projector with its exhaust closed heads far above it while
    still climbing. τ is learned per device from its healthy warm-ups (three readings of
    one rising segment, independent of the baseline). Before the
    baseline is learned only a device heading past the critical line counts.
    """

    rules = ("temperature_rate",)

    def evaluate(self, st: DeviceState, f: Frame, out: list[Verdict]) -> None:
        temp = f.temp
        if temp is None:
            return
        if f.power != 1 or not f.light:
            if "temperature_rate" in st.alerts:
                out.append(_CLEAR["temperature_rate"])
            return
        self._learn_tau(st, f)
        earlier = st.earlier_temp(f, 180.0, 1200.0)
        if earlier is None:
            return
        t0, temp0 = earlier
        dt = f.t - t0
        a = math.exp(-dt / st.tau)
        heading = (temp - a * temp0) / (1.0 - a)
        per_min = (temp - temp0) * 60.0 / dt
        r = st.rules
        base = st.temp_base
        amb = f.amb if f.amb is not None else 25.0
        if base.trained() and base.covers(amb, f.load, f.t):
            usual = base.predict_ref(amb, f.load, f.t)
            excess = heading - usual
            fire = per_min >= 0.3 and excess >= r.rate_margin_c
            clear = excess < 0.5 * r.rate_margin_c
            detail = f"平时约 {usual:.0f}°C"
        else:
            fire = per_min >= 0.5 and heading >= r.temperature_critical_c + 5.0 and temp >= r.temperature_caution_c - 15.0
            clear = heading < r.temperature_critical_c
            detail = f"危险线 {r.temperature_critical_c:g}°C"
        if fire:
            critical = heading >= r.temperature_critical_c
            out.append(Verdict(
                "temperature_rate", True, CRITICAL if critical else WARNING, per_min, r.rate_margin_c,
                f"升温异常快：{per_min:.1f}°C/分钟，现 {temp:.1f}°C，照此将升到约 {heading:.0f}°C（{detail}）",
                None, 0.0,
            ))
        elif clear and "temperature_rate" in st.alerts:
            out.append(_CLEAR["temperature_rate"])

    @staticmethod
    def _learn_tau(st: DeviceState, f: Frame) -> None:
        """τ from three readings of one rising segment, equally spaced by Δ: for a first
        order system (T2 - T1) / (T1 - T0) = exp(-Δ/τ), whatever it is heading for — so a
        baseline that is a few degrees off does not bias it."""
        if f.t - st.tau_t < 300.0 or st.alerts.keys() & THERMAL_RULES:
            return
        points = st.segment_temps(f, 1500.0)  # newest first, this segment only
        if len(points) < 3:
            return
        t2, temp2 = points[0]
        for k in range(len(points) - 1, 0, -1):  # widest spacing first
            t0, temp0 = points[k]
            half = 0.5 * (t2 - t0)
            if half < 120.0:
                break
            t1, temp1 = min(points[1:k], key=lambda p: abs(t2 - p[0] - half), default=(0.0, 0.0))
            if abs(t2 - t1 - half) > 0.15 * half:
                continue
            rise0, rise1 = temp1 - temp0, temp2 - temp1
            if rise0 < 2.0 or not 0.05 < rise1 / rise0 < 0.9:
                return
            tau = half / -math.log(rise1 / rise0)
            if st.tau_n >= 5:
                tau = min(max(tau, 0.5 * st.tau), 2.0 * st.tau)  # one odd warm-up moves it little
            tau = min(max(tau, 120.0), 3600.0)
            w = 0.3 if st.tau_n < 5 else 0.05
            st.tau = math.exp((1 - w) * math.log(st.tau) + w * math.log(tau))
            st.tau_n += 1
            st.tau_t = f.t
            return


LEARN_EVERY_S = 300.0


class LearnedBaseline:
    """Hotter, or a fan slower, than this device usually runs at the same load and ambient.

    Learns from the device's own healthy steady states (no thermal alert open, drive
    unchanged for 40 minutes, temperature settled, value close to the current fit) so a
    healthy hot-running model is normal for itself and a slowly clogging filter is not
    learned as the new normal.
    """

    rules = ("baseline_temperature", "baseline_fan")

    def evaluate(self, st: DeviceState, f: Frame, out: list[Verdict]) -> None:
        if f.power != 1:
            return
        r = st.rules
        amb = f.amb if f.amb is not None else 25.0
        healthy = not (st.alerts.keys() & THERMAL_RULES)
        t = f.t

        temp = f.temp
        if temp is not None and f.light and f.load_steady >= 1200.0:
            base = st.temp_base
            trained = base.trained()
            resid = temp - base.predict(amb, f.load) if base.samples else 0.0
            if trained and base.covers(amb, f.load, t):
                usual = base.predict_ref(amb, f.load, t)
                resid_ref = temp - usual
                delta = r.baseline_temperature_delta_c
                if resid_ref >= delta:
                    out.append(Verdict(
                        "baseline_temperature", True, WARNING, resid_ref, delta,
                        f"温度 {temp:.1f}°C，比本机同负荷同环境温度下平时（约 {usual:.0f}°C）高 {resid_ref:.1f}°C",
                        None, r.baseline_for_s,
                    ))
                elif resid_ref <= delta - 2.0 and "baseline_temperature" in st.alerts:
                    out.append(_CLEAR["baseline_temperature"])
            # Learn at most every LEARN_EVERY_S, weighted by the running time it stands for.
            if healthy and f.load_steady >= 2400.0 and t - st.temp_learn_t >= LEARN_EVERY_S:
                earlier = st.earlier_temp(f, 300.0, 900.0)
                settled = earlier is not None and abs(temp - earlier[1]) <= 1.0
                gate = max(3.0 * base.scale, 2.0) if trained else (15.0 if base.samples >= 10 else math.inf)
                if settled and abs(resid) <= gate:
                    base.learn(amb, f.load, temp, min(t - st.temp_learn_t, 2 * LEARN_EVERY_S), t)
                    st.temp_learn_t = t

        fan = f.fan
        if fan is not None and f.since_on >= 120.0 and f.load_steady >= 120.0 and fan >= r.fan_stopped_rpm:
            base = st.fan_base
            trained = base.trained(4 * 3600.0)
            usual = base.predict(amb, f.load) if base.samples else fan
            ratio = fan / usual if usual > 100.0 else 1.0
            if trained and base.covers(amb, f.load, t):
                limit = r.baseline_fan_ratio
                usual = base.predict_ref(amb, f.load, t)
                ratio_ref = fan / usual if usual > 100.0 else 1.0
                if ratio_ref <= limit:
                    out.append(Verdict(
                        "baseline_fan", True, WARNING, ratio, limit,
                        f"风扇 {fan:.0f} rpm，只有本机平时转速（约 {usual:.0f} rpm）的 {ratio_ref:.0%}", None,
                        r.baseline_for_s,
                    ))
                elif ratio_ref >= limit + 0.07 and "baseline_fan" in st.alerts:
                    out.append(_CLEAR["baseline_fan"])
            gate = max(3.0 * base.scale / usual, 0.08) if trained else (0.5 if base.samples >= 10 else math.inf)
            if healthy and t - st.fan_learn_t >= LEARN_EVERY_S and abs(ratio - 1.0) <= gate and fan >= r.fan_slow_rpm:
                base.learn(amb, f.load, fan, min(t - st.fan_learn_t, 2 * LEARN_EVERY_S), t)
                st.fan_learn_t = t


def _bin_min(st: DeviceState) -> int:
    """Values a show's point needs: a quarter of an hour's readings, at least 2."""
    per_hour = 3600.0 / st.interval if st.interval > 0 else 60.0
    return max(2, min(10, round(0.25 * per_hour)))


WINDOWS_H = (48.0, 96.0, 192.0)
MIN_POINTS = 8
MAX_POINTS = 40
# One-sided Student-t quantiles at p = 1e-5 for 6, 8, …, 40 degrees of freedom: a trend is
# believed when slope / stderr exceeds this. A fleet runs tens of thousands of these tests a
# month, and a few points give a poor estimate of the noise, so short fits need far more.
T_CRIT = (12.0, 8.9, 7.5, 6.8, 6.3, 6.0, 5.7, 5.5, 5.4, 5.3, 5.2, 5.1, 5.1, 5.0, 4.9, 4.9, 4.9, 4.8)


def t_crit(points: int) -> float:
    return T_CRIT[min(max(points - 2, 6), 40) // 2 - 3]


def restart_after_step(bins: Bins, rising: bool, floor: float) -> bool:
    """A jump against the trend's direction (a new light source, a cleaned filter, a
    replaced fan) makes older points misleading: keep only the points after it."""
    if bins.n < MIN_POINTS:
        return False
    _, vs = bins.series()
    before, last = vs[-12:-3], vs[-3:]
    centre = median(before[-3:])
    # Noise from successive differences, so a steady trend does not count as spread.
    spread = max(1.4826 * median(np.abs(np.diff(before))) / math.sqrt(2.0), floor)
    jump = max(4.0 * spread, 10.0 * floor)
    if (rising and (last < centre - jump).all()) or (not rising and (last > centre + jump).all()):
        bins.keep_last(3)
        return True
    return False


def forecast(
    bins: Bins, now: float, limit: float, rising: bool, horizon_s: float, floor: float
) -> tuple[float, float, float, float] | None:
    """Earliest credible crossing of `limit`: (eta_s, level_now, slope_per_day, window_h).

    Theil–Sen over the last 2, 4 and 8 days of points; a fit counts if its slope is
    t_crit(points) standard errors from zero, points the right way and moved the value by at
    least 10 noise floors over the window.
    """
    if bins.n < MIN_POINTS:
        return None
    ts, vs = bins.series()
    history = now - ts[0]
    # The device's show-to-show scatter over its whole stored history (differences, so a
    # trend does not inflate it): a short window can look deceptively quiet.
    scatter = max(1.4826 * median(np.abs(np.diff(vs))) / math.sqrt(2.0), floor)
    best: tuple[float, float, float, float] | None = None
    for window in WINDOWS_H:
        w = window * 3600.0
        keep = ts >= now - w
        n = int(keep.sum())
        if n >= MIN_POINTS:
            x, y = ts[keep], vs[keep]
            if x[-1] - x[0] >= 0.5 * w:
                if n > MAX_POINTS:
                    pick = np.linspace(0, n - 1, MAX_POINTS).round().astype(int)
                    x, y = x[pick], y[pick]
                x = x - now
                slope, level, sigma = theil_sen(x, y)
                se = slope_stderr(x, max(sigma, scatter))
                moved = abs(slope) * (x[-1] - x[0])
                if (
                    slope != 0.0
                    and (slope > 0) == rising
                    and abs(slope) >= t_crit(len(x)) * se
                    and moved >= 10.0 * floor
                    and (level < limit) == rising
                ):
                    eta = (limit - level) / slope
                    if eta <= 2 * horizon_s and (best is None or eta < best[0]):
                        best = (eta, level, slope * 86400.0, window)
        if w >= history:
            break  # longer windows hold no more points
    return best


class TrendForecast:
    """Brightness or temperature drift extrapolated to its line, hours to days ahead.

    One point per show: the median brightness with the light on and settled, and for
    temperature the median residual from the device's learned baseline (so ambient and
    3D/2D load are taken out), projected to full load in the warmest booth it has seen.
    Evaluated when a show's point closes; the alert carries ``predicted_ts``.
    """

    rules = ("brightness_forecast", "temperature_forecast")

    def evaluate(self, st: DeviceState, f: Frame, out: list[Verdict]) -> None:
        r = st.rules
        need = _bin_min(st)
        bins = st.bright_bins
        b = f.bright
        if f.light and b is not None and f.since_light >= r.light_settle_s:
            if bins.add(f.t, b, need):
                self._brightness(st, f.t, out)
        elif not f.light and bins.current and bins.close(need):
            self._brightness(st, f.t, out)

        bins = st.resid_bins
        temp = f.temp
        base = st.temp_base
        # Residuals only against a settled reference (two days old): against a fit still
        # being learned, its own convergence would look like a trend.
        amb = f.amb if f.amb is not None else 25.0
        if (
            f.light and temp is not None and f.load_steady >= 1800.0 and base.has_reference(f.t)
            and base.covers(amb, f.load, f.t)
        ):
            if bins.add(f.t, temp - base.predict_ref(amb, f.load, f.t), need):
                self._temperature(st, f, out)
        elif not f.light and bins.current and bins.close(need):
            self._temperature(st, f, out)

    @staticmethod
    def _brightness(st: DeviceState, now: float, out: list[Verdict]) -> None:
        r = st.rules
        bins = st.bright_bins
        red = r.brightness_warning_pct
        horizon = r.forecast_horizon_h * 3600.0
        restart_after_step(bins, False, 0.2)
        if bins.v[(bins.head - 1) % len(bins.v)] < red:
            return  # past the red line: brightness_low speaks now
        hit = forecast(bins, now, red, False, horizon, 0.2)
        if hit is not None and hit[0] <= horizon:
            eta, level, per_day, window = hit
            out.append(Verdict(
                "brightness_forecast", True, WARNING, level, red,
                f"亮度 {level:.1f}%，近 {window / 24:g} 天每天 {per_day:+.2f}%，"
                f"预计 {_when(now + eta)} 降到红线 {red:g}%",
                now + eta, 0.0,
            ))
        elif hit is None and "brightness_forecast" in st.alerts:
            out.append(_CLEAR["brightness_forecast"])

    @staticmethod
    def _temperature(st: DeviceState, f: Frame, out: list[Verdict]) -> None:
        r = st.rules
        bins = st.resid_bins
        base = st.temp_base
        horizon = r.forecast_horizon_h * 3600.0
        restart_after_step(bins, True, 0.15)
        amb = f.amb if f.amb is not None else 25.0
        hot = base.predict_ref(max(st.amb_hi, amb), max(st.load_hi, f.load), f.t)
        limit = r.temperature_caution_c - hot
        if bins.v[(bins.head - 1) % len(bins.v)] >= limit:
            return  # already there: temperature_high speaks now
        hit = forecast(bins, f.t, limit, True, horizon, 0.15)
        if hit is not None and hit[0] <= horizon:
            eta, level, per_day, window = hit
            out.append(Verdict(
                "temperature_forecast", True, WARNING, hot + level, r.temperature_caution_c,
                f"温度逐日升高：近 {window / 24:g} 天每天 {per_day:+.1f}°C（同负荷同环境），"
                f"预计 {_when(f.t + eta)} 满负荷时超过警戒线 {r.temperature_caution_c:g}°C",
                f.t + eta, 0.0,
            ))
        elif hit is None and "temperature_forecast" in st.alerts:
            out.append(_CLEAR["temperature_forecast"])


class ErrorCodes:
    """Codes the projector reports itself; "does not answer" codes are ``unreachable``."""

    rules = ("unreachable", "error:*")

    def evaluate(self, st: DeviceState, f: Frame, out: list[Verdict]) -> None:
        r = st.rules
        codes = f.errors
        for code in codes:
            if code in r.offline_error_codes:
                out.append(Verdict("unreachable", True, CRITICAL, None, None, f"放映机无响应（{code}）", None, 0.0))
            else:
                severity = CRITICAL if code in r.critical_error_codes else WARNING
                out.append(Verdict(f"error:{code}", True, severity, None, None, f"放映机报错 {code}", None, 0.0))
        if st.alerts:
            for rule in list(st.alerts):
                if rule == "unreachable":
                    if not any(c in r.offline_error_codes for c in codes):
                        out.append(Verdict(rule, False))
                elif rule.startswith("error:") and rule[6:] not in codes:
                    out.append(Verdict(rule, False))


def default_detectors() -> list[Detector]:
    return [
        ErrorCodes(),
        TemperatureThreshold(),
        FanThreshold(),
        BrightnessThreshold(),
        HeatingRate(),
        LearnedBaseline(),
        TrendForecast(),
    ]
