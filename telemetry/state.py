"""What the detectors remember about one device, and how a raw reading becomes a clean frame.

Memory per device is bounded (a few kilobytes whatever the history length): the last
accepted value of each metric, a 12-slot temperature ring for rates, two learned
baselines (:class:`~telemetry.stats.Baseline`), two rings of hourly medians for trend
forecasts, and the device's open alerts.

Glitch rejection happens here, once, for every detector: a value outside the physical
range of its sensor is dropped, and a jump larger than the metric could physically make
since the last accepted value is held back until the next reading confirms it (moves
the same way). A single absurd reading therefore never reaches a detector; a real step
(a fan that stops, a light source that loses half its output) arrives one reading late.
"""

from __future__ import annotations

import math
from array import array

from telemetry.readings import LOAD_METRIC, Reading
from telemetry.rules import DeviceRules
from telemetry.stats import Baseline, Bins

# Physical ranges of the sensors; anything outside is a glitch.
RANGES = {
    "temperature_c": (-30.0, 130.0),
    "ambient_c": (-30.0, 60.0),
    "brightness_pct": (0.0, 150.0),
    "fan_rpm": (0.0, 20000.0),
    LOAD_METRIC: (0.0, 110.0),
}
LIGHT_ON_LOAD = 5.0  # % drive above which the light source is on
LOAD_STEP = 5.0  # a change of drive larger than this starts a new thermal segment
RING = 12


def _temp_tol(prev: float, dt: float) -> float:
    return 8.0 + 2.0 * dt / 60.0  # °C: faster than any projector heats or cools


def _amb_tol(prev: float, dt: float) -> float:
    return 4.0 + 0.5 * dt / 60.0


def _bright_tol(prev: float, dt: float) -> float:
    return 15.0


def _fan_tol(prev: float, dt: float) -> float:
    return 0.3 * prev + 400.0


class Filtered:
    """Last accepted value of one metric, plus a held-back candidate jump."""

    __slots__ = ("prev", "prev_t", "cand", "lo", "hi", "tol")

    def __init__(self, name: str, tol) -> None:  # noqa: ANN001 - a plain function
        self.prev: float | None = None
        self.prev_t = 0.0
        self.cand: float | None = None
        self.lo, self.hi = RANGES[name]
        self.tol = tol

    def reset(self) -> None:
        self.prev = None
        self.cand = None

    def accept(self, x: float, t: float) -> float | None:
        """The value if it is plausible, else None (a glitch, or a jump awaiting confirmation)."""
        if not (self.lo <= x <= self.hi):
            return None
        prev = self.prev
        if prev is None or t - self.prev_t > 1800.0:
            self.prev, self.prev_t, self.cand = x, t, None
            return x
        if abs(x - prev) <= self.tol(prev, t - self.prev_t):
            self.prev, self.prev_t, self.cand = x, t, None
            return x
        cand = self.cand
        if cand is not None and (x - prev) * (cand - prev) > 0:
            self.prev, self.prev_t, self.cand = x, t, None  # two readings agree: a real step
            return x
        self.cand = x
        return None


class Frame:
    """One reading after glitch rejection, with the device's operating context."""

    __slots__ = (
        "t", "dt", "power", "load", "light", "temp", "amb", "bright", "fan",
        "since_on", "since_light", "load_steady", "errors", "seg",
    )

    def __init__(self) -> None:
        self.t = 0.0
        self.dt = 0.0
        self.power: int | None = None
        self.load: float | None = None
        self.light = False
        self.temp: float | None = None
        self.amb: float | None = None
        self.bright: float | None = None
        self.fan: float | None = None
        self.since_on = 0.0  # seconds since power-on (0 when off)
        self.since_light = 0.0  # seconds since the light source came on (0 when off)
        self.load_steady = 0.0  # seconds the drive has stayed in its current band
        self.errors: tuple[str, ...] = ()
        self.seg = 0  # thermal segment (changes with power or drive steps)


class DeviceState:
    __slots__ = (
        "device_id", "rules", "last_t", "interval", "power", "power_on_t", "light", "light_on_t",
        "load", "load_ref", "load_change_t", "seg", "f_temp", "f_amb", "f_bright", "f_fan",
        "ring_t", "ring_T", "ring_seg", "ring_n", "ring_head", "temp_base", "fan_base", "tau",
        "tau_n", "tau_t", "bright_bins", "resid_bins", "amb_hi", "load_hi", "alerts", "incidents",
        "inhibitors", "heap_due", "glitches", "amb", "temp_learn_t", "fan_learn_t", "light_hours",
    )

    def __init__(self, device_id: str, rules: DeviceRules) -> None:
        self.device_id = device_id
        self.rules = rules
        self.last_t = -math.inf
        self.interval = 0.0  # typical reporting interval (s), learned
        self.power: int | None = None
        self.power_on_t = 0.0
        self.light = False
        self.light_on_t = 0.0
        self.load: float | None = None
        self.load_ref = 0.0
        self.load_change_t = 0.0
        self.seg = 0
        self.f_temp = Filtered("temperature_c", _temp_tol)
        self.f_amb = Filtered("ambient_c", _amb_tol)
        self.f_bright = Filtered("brightness_pct", _bright_tol)
        self.f_fan = Filtered("fan_rpm", _fan_tol)
        self.ring_t = array("d", bytes(8 * RING))
        self.ring_T = array("d", bytes(8 * RING))
        self.ring_seg = array("l", bytes(array("l").itemsize * RING))
        self.ring_n = 0
        self.ring_head = 0
        self.temp_base = Baseline(prior_ambient=2.0)  # scaled feature: 1 °C per °C ambient
        self.fan_base = Baseline()
        self.tau = 300.0  # thermal time constant (s); a short default under-reads rates
        self.tau_n = 0
        self.tau_t = -math.inf
        self.bright_bins = Bins()
        self.resid_bins = Bins()
        self.amb_hi = -math.inf  # a warm booth: slowly decaying maximum of ambient
        self.load_hi = 0.0  # highest drive seen (3D shows)
        self.alerts: dict = {}  # rule -> telemetry.alerts.AlertState (pending or firing)
        self.incidents: dict[str, int] = {}  # rule -> how many alerts it has had
        self.inhibitors = 0  # firing alerts that silence this device's metric alerts
        self.heap_due = math.inf  # deadline of this device's entry in the no-data heap
        self.glitches = 0
        self.amb: float | None = None
        self.temp_learn_t = -math.inf
        self.fan_learn_t = -math.inf
        self.light_hours: float | None = None  # the light source's running hours, as reported

    def condition(self, r: Reading) -> Frame:
        """Glitch-free values and operating context for this reading."""
        f = Frame()
        t = r.t
        f.t = t
        gap = t - self.last_t
        f.dt = gap if gap < 1e9 else 0.0
        if 0.0 < gap < 3600.0:
            self.interval = gap if self.interval == 0.0 else 0.9 * self.interval + 0.1 * min(gap, 4 * self.interval)
        self.last_t = t
        m = r.metrics
        f.errors = r.errors
        hours = m.get("light_hours")
        if hours is not None and hours >= 0.0:
            self.light_hours = hours  # only the health score reads it

        power = m.get("power")
        if power is not None:
            p = int(power)
            if p != self.power:
                if p == 1:
                    self.power_on_t = t
                    self.f_fan.reset()
                self.seg += 1
                self.load_change_t = t
                self.power = p
        f.power = self.power

        load = m.get(LOAD_METRIC)
        if load is not None and 0.0 <= load <= 110.0:
            if self.power == 0:
                load = 0.0
            if abs(load - self.load_ref) > LOAD_STEP:
                self.load_ref = load
                self.load_change_t = t
                self.seg += 1
            self.load = load
            light = load > LIGHT_ON_LOAD
        else:
            # Without a drive reading the screen itself says whether the light is on.
            b = m.get("brightness_pct")
            light = self.power != 0 and b is not None and LIGHT_ON_LOAD < b <= 150.0
            if light != self.light:
                self.load_change_t = t
                self.seg += 1
        if light != self.light:
            self.light = light
            self.f_bright.reset()
            if light:
                self.light_on_t = t
        f.light = light
        f.load = self.load if self.load is not None else (100.0 if light else 0.0)
        f.seg = self.seg
        f.since_on = t - self.power_on_t if self.power == 1 else 0.0
        f.since_light = t - self.light_on_t if light else 0.0
        f.load_steady = t - self.load_change_t

        glitched = False
        v = m.get("temperature_c")
        if v is not None:
            f.temp = self.f_temp.accept(v, t)
            glitched |= f.temp is None
        v = m.get("ambient_c")
        if v is not None:
            f.amb = self.f_amb.accept(v, t)
            glitched |= f.amb is None
            if f.amb is not None:
                self.amb = f.amb
                # Decays ~1 °C a day so a hot week is forgotten.
                self.amb_hi = max(f.amb, self.amb_hi - f.dt / 86400.0)
        if f.amb is None:
            f.amb = self.amb
        v = m.get("brightness_pct")
        if v is not None and light:
            f.bright = self.f_bright.accept(v, t)
            glitched |= f.bright is None
        v = m.get("fan_rpm")
        if v is not None:
            f.fan = self.f_fan.accept(v, t)
            glitched |= f.fan is None
        if glitched:
            self.glitches += 1
        if light and f.load > self.load_hi:
            self.load_hi = f.load
        if f.temp is not None and self.power == 1:
            h = self.ring_head
            self.ring_t[h] = t
            self.ring_T[h] = f.temp
            self.ring_seg[h] = self.seg
            self.ring_head = (h + 1) % RING
            self.ring_n = min(self.ring_n + 1, RING)
        return f

    def earlier_temp(self, f: Frame, min_age: float, max_age: float) -> tuple[float, float] | None:
        """The oldest temperature of this thermal segment between `min_age` and `max_age`
        seconds before the frame (the current one is the newest slot)."""
        best: tuple[float, float] | None = None
        for k in range(1, self.ring_n):
            i = (self.ring_head - 1 - k) % RING
            age = f.t - self.ring_t[i]
            if age > max_age or self.ring_seg[i] != f.seg:
                break
            if age >= min_age:
                best = (self.ring_t[i], self.ring_T[i])
        return best

    def segment_temps(self, f: Frame, max_age: float) -> list[tuple[float, float]]:
        """(t, temperature) of this thermal segment within `max_age`, newest first."""
        out = []
        for k in range(self.ring_n):
            i = (self.ring_head - 1 - k) % RING
            if f.t - self.ring_t[i] > max_age or self.ring_seg[i] != f.seg:
                break
            out.append((self.ring_t[i], self.ring_T[i]))
        return out

    def no_data_after(self) -> float:
        """Seconds of silence after which this device is 'no data'."""
        if self.interval == 0.0:
            return max(self.rules.no_data_s, 3600.0)  # one reading so far: its rhythm is unknown
        # Three missed reports (plus a tick of slack): one lost reading or an edge-box
        # reboot is not an outage.
        return max(self.rules.no_data_s, 3.0 * self.interval + 60.0)
