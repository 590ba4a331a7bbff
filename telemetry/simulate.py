"""A realistic projector fleet with injectable faults and ground truth.

Each device is a projector in a cinema hall. Its day follows the hall's show schedule
(Asia/Shanghai time): power-on 15–40 minutes before the first show, shows of 95–165
minutes with the light source on (2D at the hall's calibrated drive, 3D near full
drive), intermissions of 15–30 minutes with the light off, power-off after the last
show (some halls stay powered overnight, some days a hall stays dark).

Physics, integrated every minute for all devices at once (numpy):

* temperature is first order: it heads for ``ambient + rise·heat/cooling`` with time
  constant ``τ/cooling``; heat follows the drive, cooling the fan airflow, the exhaust
  and the filter. A device past its trip temperature shuts down (``THERMAL_SHUTDOWN``)
  until repaired — that is the "failure" of thermal faults;
* fans follow drive and ambient; brightness is the light source's output against the
  calibrated target (xenon lamps take ~90 s to reach it after ignition); ambient has a
  daily cycle, weather and booth heating.

Readings carry sensor noise, per-show brightness offsets, glitches (a single absurd
value: 0, 65535, 255, -40 …), lost readings and short edge-box reboots.

Faults (at most one per device, after a burn-in so the device has a history):

============== ============================================= ==========================
fault          what happens                                  failure (ground truth)
============== ============================================= ==========================
fan_failure    the main fan stops                            thermal trip
fan_degradation fan speed falls over days                    thermal trip
blocked_exhaust the exhaust is closed off                    thermal trip
filter_clogging cooling falls over days                      thermal trip
light_ageing   brightness falls to the red line in 2.5–12 days brightness < 80 % red line
light_loss     the light source loses 20–70 % at once        the next show's start
offline        the device stops reporting for hours          30 min (or 4 reports) of silence
============== ============================================= ==========================

Everything is seeded: the same :class:`FleetConfig` gives the same readings.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import IO, Any

import numpy as np

from telemetry.readings import Reading, iso

FAULT_KINDS = (
    "fan_failure",
    "fan_degradation",
    "blocked_exhaust",
    "filter_clogging",
    "light_ageing",
    "light_loss",
    "offline",
)
THERMAL_FAULTS = frozenset({"fan_failure", "fan_degradation", "blocked_exhaust", "filter_clogging"})
LOCAL_OFFSET_S = 8 * 3600  # Asia/Shanghai, no daylight saving
RED_LINE = 80.0
OFFLINE_FAILURE_S = 1800.0


@dataclass(frozen=True)
class Model:
    name: str
    source: str  # "xenon" | "laser"
    rise_c: float  # steady rise above ambient at full drive, fan healthy, clean
    idle_frac: float  # heat with the light off, as a share of full-drive heat
    tau_s: float  # thermal time constant with full cooling
    fan_rpm: float  # fan speed at full drive, 25 °C
    fan_load_gain: float  # share of fan speed that follows the drive
    trip_c: float  # thermal shutdown
    drive_2d: tuple[float, float]  # calibrated 2D drive range (share of full)
    weight: float = 1.0


MODELS: tuple[Model, ...] = (
    Model("CP2220", "xenon", 24.0, 0.25, 420.0, 3000.0, 0.35, 85.0, (0.70, 0.85), 3.0),
    Model("DP4K-32B", "xenon", 27.0, 0.25, 540.0, 3400.0, 0.30, 86.0, (0.72, 0.88), 2.0),
    Model("CP4440-RGB", "laser", 21.0, 0.30, 600.0, 4200.0, 0.40, 85.0, (0.60, 0.80), 2.0),
    # Hot-running but healthy: a healthy 3D show in a warm booth sits in the mid 60s.
    Model("NC3541L", "laser", 33.0, 0.30, 660.0, 2600.0, 0.30, 92.0, (0.70, 0.85), 2.0),
    Model("SRX-R515", "xenon", 30.0, 0.35, 480.0, 2200.0, 0.25, 90.0, (0.75, 0.90), 1.0),
)
#: Models the detectors were never tuned on (for "unseen fleet" evaluation).
UNSEEN_MODELS: tuple[Model, ...] = (
    Model("HX-9", "laser", 35.0, 0.40, 900.0, 1900.0, 0.20, 94.0, (0.75, 0.90), 2.0),
    Model("LP-mini", "laser", 18.0, 0.20, 300.0, 5200.0, 0.50, 82.0, (0.55, 0.75), 2.0),
    Model("RGB-X", "laser", 25.0, 0.30, 720.0, 3600.0, 0.45, 88.0, (0.60, 0.85), 2.0),
    Model("XB-12", "xenon", 28.0, 0.20, 360.0, 2800.0, 0.30, 87.0, (0.70, 0.90), 1.0),
)

COOLING_FLOOR = 0.2  # cooling left with the fan stopped (convection, other fans)


@dataclass(frozen=True)
class FleetConfig:
    devices: int = 70
    days: float = 30.0
    interval_s: float = 60.0
    seed: int = 1
    start: str = "2025-03-03T00:00:00+08:00"
    faults: str = "random:0.3"  # see parse_faults
    models: tuple[Model, ...] = MODELS
    halls_per_cinema: tuple[int, int] = (5, 10)
    noise: float = 1.0  # sensor noise multiplier
    glitch_rate: float = 1 / 1500  # readings with one absurd value
    drop_rate: float = 0.003  # readings lost on the way
    reboots_per_day: float = 0.15  # edge-box reboots (2–4 minutes of silence)
    open_hour: tuple[float, float] = (9.0, 10.5)
    last_show_hour: tuple[float, float] = (22.0, 23.75)
    film_min: tuple[float, float] = (95.0, 165.0)
    gap_min: tuple[float, float] = (15.0, 30.0)
    three_d_share: float = 0.25
    overnight_share: float = 0.1  # halls left powered (light off) overnight
    dark_day_rate: float = 0.02
    ambient_mean: tuple[float, float] = (21.0, 26.0)
    ambient_daily: tuple[float, float] = (1.0, 3.0)
    weather_c: float = 0.8  # day-to-day ambient random walk (mean-reverting)
    brightness_new: tuple[float, float] = (88.0, 99.0)
    severity: float = 1.0  # >1: faults develop faster and harsher
    burn_in_days: float = 3.0
    dark_brightness: str = "absent"  # "absent" | "zero": what a dark screen reports
    # Healthy things that happen and must not alert:
    recalibration_rate: float = 0.02  # per hall and day: the 2D drive is re-set (±12 %)
    lamp_change_days: tuple[float, float] = (8.0, 40.0)  # xenon lamps are swapped this often
    ac_failure_rate: float = 0.02  # per cinema and day: the booth's air conditioning fails for hours


@dataclass(frozen=True)
class DeviceInfo:
    device_id: str
    cinema: str
    hall: int
    model: str


@dataclass
class FaultTruth:
    device_id: str
    fault: str
    onset_t: float
    failure_t: float | None = None
    repair_t: float | None = None
    params: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "fault",
            "device_id": self.device_id,
            "fault": self.fault,
            "onset_ts": iso(self.onset_t),
            "failure_ts": iso(self.failure_t) if self.failure_t is not None else None,
            "repair_ts": iso(self.repair_t) if self.repair_t is not None else None,
            "params": {k: round(v, 4) for k, v in self.params.items()},
        }


class FaultSpecError(ValueError):
    pass


def parse_faults(spec: str, devices: int, rng: np.random.Generator) -> list[str | None]:
    """One fault kind (or None) per device.

    ``none``; ``random:0.3`` (30 % of devices, kinds evenly); ``fan_failure:2,light_ageing:3``
    (counts); ``all:2`` (2 devices of every kind). Parts may be combined with commas.
    """
    plan: list[str | None] = [None] * devices
    wanted: list[str] = []
    spec = (spec or "none").strip()
    if spec != "none":
        for part in spec.split(","):
            name, _, value = part.strip().partition(":")
            try:
                number = float(value) if value else 1.0
            except ValueError:
                raise FaultSpecError(f"故障数量不是数字：{part}") from None
            if name == "random":
                count = int(round(number * devices)) if number <= 1 else int(number)
                wanted += [FAULT_KINDS[i % len(FAULT_KINDS)] for i in range(count)]
            elif name == "all":
                wanted += [k for k in FAULT_KINDS for _ in range(int(number))]
            elif name in FAULT_KINDS:
                wanted += [name] * int(number)
            else:
                raise FaultSpecError(f"未知故障：{name}（可选 {', '.join(FAULT_KINDS)}, random, all, none）")
    if len(wanted) > devices:
        raise FaultSpecError(f"{len(wanted)} 个故障多于 {devices} 台设备（每台最多一个）")
    for device, kind in zip(rng.permutation(devices)[: len(wanted)], rng.permutation(wanted)):
        plan[int(device)] = str(kind)
    return plan


@dataclass
class Fleet:
    config: FleetConfig
    devices: list[DeviceInfo]
    faults: list[FaultTruth]
    start_t: float
    sample_t: np.ndarray  # (n_samples,) seconds from start_t
    phase: np.ndarray  # (n_dev,) per-device offset within the interval
    metrics: dict[str, np.ndarray]  # name -> (n_dev, n_samples) float, NaN = absent
    present: np.ndarray  # (n_dev, n_samples) bool: a reading was sent
    tripped: np.ndarray  # (n_dev, n_samples) bool: THERMAL_SHUTDOWN reported
    unexplained_trips: list[tuple[str, float]] = field(default_factory=list)

    @property
    def readings_count(self) -> int:
        return int(self.present.sum())

    @property
    def end_t(self) -> float:
        return self.start_t + float(self.sample_t[-1]) + float(self.config.interval_s)

    def iter_dicts(self) -> Iterator[dict[str, Any]]:
        """Readings in time order as the edge boxes send them (JSON-ready dicts)."""
        order = np.argsort(self.phase, kind="stable")
        names = list(self.metrics)
        ids = [self.devices[i].device_id for i in order]
        phase = self.phase[order]
        n = len(self.sample_t)
        chunk = 512
        for c0 in range(0, n, chunk):
            c1 = min(n, c0 + chunk)
            cols = {k: self.metrics[k][order, c0:c1].tolist() for k in names}
            pres = self.present[order, c0:c1].tolist()
            trip = self.tripped[order, c0:c1].tolist()
            for j in range(c1 - c0):
                base = self.start_t + float(self.sample_t[c0 + j])
                for i in range(len(order)):
                    if not pres[i][j]:
                        continue
                    metrics = {}
                    for k in names:
                        v = cols[k][i][j]
                        if v == v:  # not NaN
                            metrics[k] = v
                    yield {
                        "device_id": ids[i],
                        "ts": iso(base + float(phase[i])),
                        "metrics": metrics,
                        "errors": ["THERMAL_SHUTDOWN"] if trip[i][j] else [],
                    }

    def iter_readings(self) -> Iterator[Reading]:
        """The same readings as validated :class:`Reading` objects (skips JSON)."""
        for d in self.iter_dicts():
            yield Reading.parse(d)

    def write(self, out: IO[str], progress: Any = None) -> int:
        count = 0
        dumps = json.dumps
        for d in self.iter_dicts():
            out.write(dumps(d, separators=(",", ":")) + "\n")
            count += 1
            if progress is not None and count % 20000 == 0:
                progress(count)
        return count

    def write_truth(self, out: IO[str]) -> None:
        for d in self.devices:
            out.write(json.dumps({"type": "device", **asdict(d)}, ensure_ascii=False) + "\n")
        for fault in self.faults:
            out.write(json.dumps(fault.to_json(), ensure_ascii=False) + "\n")


def _u(rng: np.random.Generator, lo_hi: tuple[float, float], size: Any = None) -> Any:
    return rng.uniform(lo_hi[0], lo_hi[1], size)


def simulate(config: FleetConfig) -> Fleet:
    cfg = config
    if cfg.devices < 1 or cfg.days <= 0 or cfg.interval_s <= 0:
        raise ValueError("devices, days and interval must be positive")
    rng = np.random.default_rng(cfg.seed)
    start_t = datetime.fromisoformat(cfg.start).timestamp()
    interval = float(cfg.interval_s)
    sub = max(1, math.ceil(interval / 60.0))
    dt = interval / sub  # physics step: at most a minute
    n_steps = int(math.ceil(cfg.days * 86400.0 / interval)) * sub
    n_dev = cfg.devices
    step_t = np.arange(n_steps) * dt

    # Fleet layout: cinemas of 5–10 halls, one projector per hall.
    devices: list[DeviceInfo] = []
    cinema_of = np.zeros(n_dev, dtype=int)
    c = 0
    while len(devices) < n_dev:
        c += 1
        halls = int(rng.integers(cfg.halls_per_cinema[0], cfg.halls_per_cinema[1] + 1))
        for h in range(1, halls + 1):
            if len(devices) == n_dev:
                break
            cinema_of[len(devices)] = c - 1
            devices.append(DeviceInfo(f"C{c:02d}-H{h:02d}", f"C{c:02d}", h, ""))
    n_cin = c
    weights = np.array([m.weight for m in cfg.models], dtype=float)
    model_idx = rng.choice(len(cfg.models), size=n_dev, p=weights / weights.sum())
    models = [cfg.models[i] for i in model_idx]
    devices = [replace(d, model=m.name) for d, m in zip(devices, models)]

    rise = np.array([m.rise_c for m in models])
    idle = np.array([m.idle_frac for m in models])
    tau = np.array([m.tau_s for m in models]) * rng.uniform(0.9, 1.1, n_dev)
    fan_full = np.array([m.fan_rpm for m in models]) * rng.uniform(0.93, 1.07, n_dev)
    fan_gain = np.array([m.fan_load_gain for m in models])
    trip_c = np.array([m.trip_c for m in models])
    drive_2d = np.array([_u(rng, m.drive_2d) for m in models])
    xenon = np.array([m.source == "xenon" for m in models])
    rise = rise * rng.uniform(0.95, 1.05, n_dev)

    # Schedules → power and drive on the physics grid.
    power = np.zeros((n_dev, n_steps), dtype=bool)
    drive = np.zeros((n_dev, n_steps), dtype=np.float32)
    show_id = np.zeros((n_dev, n_steps), dtype=np.int32)  # for per-show brightness offsets
    show_starts: list[list[float]] = [[] for _ in range(n_dev)]
    overnight = rng.random(n_dev) < cfg.overnight_share
    cinema_open = _u(rng, cfg.open_hour, n_cin)
    cinema_last = _u(rng, cfg.last_show_hour, n_cin)
    n_days = int(math.ceil(cfg.days)) + 1
    first_local_midnight = -((start_t + LOCAL_OFFSET_S) % 86400.0)

    def idx(t: float) -> int:
        return int(min(max(round(t / dt), 0), n_steps))

    sid = 0
    for d in range(n_dev):
        ci = cinema_of[d]
        hall_offset = rng.uniform(0.0, 0.75) * 3600.0
        for day in range(-1, n_days):
            midnight = first_local_midnight + day * 86400.0
            if rng.random() < cfg.recalibration_rate:
                lo, hi = models[d].drive_2d
                drive_2d[d] = float(np.clip(drive_2d[d] + rng.uniform(-0.12, 0.12), lo - 0.05, hi + 0.05))
            if rng.random() < cfg.dark_day_rate:
                continue
            t = midnight + cinema_open[ci] * 3600.0 + hall_offset + rng.normal(0, 600)
            on = t - rng.uniform(15, 40) * 60.0
            last_start = midnight + cinema_last[ci] * 3600.0
            end = t
            while t < last_start:
                film = _u(rng, cfg.film_min) * 60.0
                level = min(1.0, drive_2d[d] + 0.2) if rng.random() < cfg.three_d_share else drive_2d[d]
                a, b = idx(t), idx(t + film)
                if b > a:
                    sid += 1
                    drive[d, a:b] = level
                    show_id[d, a:b] = sid
                if 0 <= t < n_steps * dt:
                    show_starts[d].append(t)
                end = t + film
                t = end + _u(rng, cfg.gap_min) * 60.0
            off = end + rng.uniform(5, 20) * 60.0
            if overnight[d]:
                off = midnight + 86400.0 + cinema_open[ci] * 3600.0  # until tomorrow
            power[d, idx(on): idx(off)] = True
    drive *= power

    # Ambient: cinema mean + daily cycle (peak ~15:00) + weather walk + device offset.
    amb_mean = _u(rng, cfg.ambient_mean, n_cin)[cinema_of] + rng.uniform(-1.0, 1.0, n_dev)
    amb_daily = _u(rng, cfg.ambient_daily, n_cin)[cinema_of]
    local_hour = ((step_t + start_t + LOCAL_OFFSET_S) % 86400.0) / 3600.0
    daily = np.cos((local_hour - 15.0) / 24.0 * 2 * np.pi)
    weather_days = np.zeros((n_cin, n_days + 2))
    for k in range(1, n_days + 2):
        weather_days[:, k] = 0.7 * weather_days[:, k - 1] + rng.normal(0, cfg.weather_c, n_cin)
    day_pos = step_t / 86400.0
    weather = np.array([np.interp(day_pos, np.arange(n_days + 2), weather_days[c]) for c in range(n_cin)])
    ambient_base = amb_mean[:, None] + amb_daily[:, None] * daily[None, :] + weather[cinema_of]
    for ci in range(n_cin):
        for _ in range(rng.poisson(cfg.ac_failure_rate * cfg.days)):
            t0, hours, rise_c = rng.uniform(0, n_steps * dt), rng.uniform(2, 6), rng.uniform(3, 6)
            ramp = np.clip(np.minimum(step_t - t0, t0 + hours * 3600 - step_t) / 1200.0, 0.0, 1.0)
            ambient_base[cinema_of == ci] += rise_c * ramp

    # Faults.
    plan = parse_faults(cfg.faults, n_dev, rng)
    sev = cfg.severity
    horizon = n_steps * dt
    burn = min(cfg.burn_in_days, 0.4 * cfg.days) * 86400.0  # short runs still get a fault
    inf = math.inf
    onset = np.full(n_dev, inf)
    repair = np.full(n_dev, inf)
    failure = np.full(n_dev, inf)
    health_min = np.ones(n_dev)
    ramp_s = np.ones(n_dev)
    exhaust = np.ones(n_dev)
    filter_min = np.ones(n_dev)
    repair_delay = rng.uniform(2, 20, n_dev) * 3600.0
    faults: list[FaultTruth] = []
    kinds = np.array([k or "" for k in plan])

    def onset_between(lo: float, hi: float) -> float:
        lo = min(lo, horizon - 7200.0)
        hi = max(min(hi, horizon - 3600.0), lo + 1.0)
        return float(rng.uniform(lo, hi))

    def powered_time(d: int, lo: float, hi: float, light: bool) -> float:
        lo = min(lo, horizon - 7200.0)
        a, b = idx(lo), idx(max(min(hi, horizon - 3600.0), lo + 3600.0))
        mask = (drive[d, a:b] > 0) if light else power[d, a:b]
        where = np.flatnonzero(mask)
        if len(where) == 0:
            return onset_between(lo, hi)
        return float((a + where[rng.integers(len(where))]) * dt)

    for d, kind in enumerate(plan):
        if kind is None:
            continue
        params: dict[str, float] = {}
        if kind == "fan_failure":
            onset[d] = onset_between(burn, horizon - 86400.0)
            health_min[d] = rng.uniform(0.0, 0.08)
            ramp_s[d] = 1.0
            params["fan_health"] = health_min[d]
        elif kind == "fan_degradation":
            ramp_s[d] = rng.uniform(2.0, 8.0) * 86400.0 / sev
            onset[d] = onset_between(burn, horizon - ramp_s[d] - 86400.0)
            health_min[d] = rng.uniform(0.0, 0.2)
            params.update(ramp_days=ramp_s[d] / 86400.0, fan_health_min=health_min[d])
        elif kind == "blocked_exhaust":
            onset[d] = onset_between(burn, horizon - 86400.0)
            exhaust[d] = rng.uniform(0.28, 0.42) / math.sqrt(sev)
            params["exhaust"] = exhaust[d]
        elif kind == "filter_clogging":
            ramp_s[d] = rng.uniform(3.0, 10.0) * 86400.0 / sev
            onset[d] = onset_between(burn, horizon - ramp_s[d] - 86400.0)
            filter_min[d] = rng.uniform(0.3, 0.4)
            params.update(ramp_days=ramp_s[d] / 86400.0, cooling_min=filter_min[d])
        elif kind in ("light_ageing", "light_loss"):
            onset[d] = powered_time(d, burn, horizon - (6 if kind == "light_ageing" else 1) * 86400.0, True)
        elif kind == "offline":
            onset[d] = powered_time(d, burn, horizon - 86400.0, False)
            repair[d] = onset[d] + rng.uniform(1.0, 12.0) * 3600.0
            failure[d] = onset[d] + max(OFFLINE_FAILURE_S, 4 * interval)
        faults.append(FaultTruth(devices[d].device_id, kind, float(onset[d]), params=params))

    is_fail = kinds == "fan_failure"
    is_deg = kinds == "fan_degradation"
    is_blk = kinds == "blocked_exhaust"
    is_clog = kinds == "filter_clogging"
    thermal = is_fail | is_deg | is_blk | is_clog

    # Integrate temperature, fan and trips, one physics step at a time for all devices.
    temp = np.zeros((n_dev, n_steps), dtype=np.float32)
    fan = np.zeros((n_dev, n_steps), dtype=np.float32)
    amb_out = np.zeros((n_dev, n_steps), dtype=np.float32)
    tripped = np.zeros((n_dev, n_steps), dtype=bool)
    forced_until = np.full(n_dev, -inf)
    on_since = np.zeros(n_dev)
    booth = np.zeros(n_dev)
    T = ambient_base[:, 0] + 2.0
    was_on = np.zeros(n_dev, dtype=bool)
    unexplained: list[tuple[str, float]] = []
    booth_a = math.exp(-dt / 3600.0)
    for k in range(n_steps):
        t = k * dt
        on = power[:, k] & (t >= forced_until)
        started = on & ~was_on
        on_since[started] = t
        was_on = on
        active = (t >= onset) & (t < repair)
        since = np.maximum(t - onset, 0.0)
        health = np.ones(n_dev)
        health = np.where(is_fail & active, health_min, health)
        health = np.where(is_deg & active, np.clip(1.0 - since / ramp_s * (1.0 - health_min), health_min, 1.0), health)
        ex = np.where(is_blk & active, exhaust, 1.0)
        fl = np.where(is_clog & active, np.clip(1.0 - since / ramp_s * (1.0 - filter_min), filter_min, 1.0), 1.0)
        dr = drive[:, k] * on
        booth = booth * booth_a + (1 - booth_a) * on
        amb = ambient_base[:, k] + 1.5 * booth
        spin = np.minimum(1.0, (t - on_since) / 30.0)
        fan_cmd = fan_full * (1.0 - fan_gain * (1.0 - dr)) * (1.0 + 0.01 * (amb - 25.0))
        fan_now = np.where(on, fan_cmd * health * spin, 0.0)
        cool = (COOLING_FLOOR + (1.0 - COOLING_FLOOR) * fan_now / fan_full) * ex * fl
        heat = np.where(on, idle + (1.0 - idle) * dr, 0.0)
        target = amb + rise * heat / cool
        T = target + (T - target) * np.exp(-dt / (tau / cool))
        temp[:, k] = T
        fan[:, k] = fan_now
        amb_out[:, k] = amb
        trip = on & (T >= trip_c)
        if trip.any():
            for d in np.flatnonzero(trip):
                if thermal[d] and active[d] and not math.isfinite(failure[d]):
                    failure[d] = t
                    repair[d] = t + repair_delay[d]
                    forced_until[d] = repair[d]
                else:
                    forced_until[d] = t + 4 * 3600.0
                    if not (thermal[d] and active[d]):
                        unexplained.append((devices[d].device_id, t))
        tripped[:, k] = (t < forced_until) & power[:, k] & ~on

    on_grid = power & (np.arange(n_steps)[None, :] * dt >= 0)
    on_grid &= ~tripped
    light = (drive > 0) & on_grid

    # Brightness: calibrated output, healthy ageing, ageing / loss faults, repairs.
    b0 = _u(rng, cfg.brightness_new, n_dev)
    age_rate = np.zeros(n_dev)  # % per light-on second
    loss = np.ones(n_dev)
    light_s = np.cumsum(light, axis=1) * dt  # light-on seconds so far
    bright = np.repeat(b0[:, None], n_steps, axis=1) - light_s * (0.1 / 15 / 3600.0)  # ~0.1 %/day
    healthy_xenon = [d for d in range(n_dev) if xenon[d] and plan[d] not in ("light_ageing", "light_loss")]
    for d in healthy_xenon:  # lamp swaps: brightness back up to a new lamp's level
        t = rng.uniform(0, cfg.lamp_change_days[1]) * 86400.0
        while t < n_steps * dt:
            k = idx(t)
            bright[d, k:] += rng.uniform(95.0, 99.0) - bright[d, k]
            t += _u(rng, cfg.lamp_change_days) * 86400.0
    for fault in faults:
        d = next(i for i, dev in enumerate(devices) if dev.device_id == fault.device_id)
        k0 = idx(onset[d])
        if fault.fault == "light_ageing":
            b_start = rng.uniform(84.0, 92.0)
            # Days of normal use (~15 light-hours a day) until the red line.
            days_left = (horizon - onset[d]) / 86400.0 - 1.0
            to_red = min(rng.uniform(2.5, 12.0) / sev, max(days_left, 2.0))
            rate_day = (b_start - RED_LINE) / to_red
            bright[d] += b_start - b0[d]
            age_rate[d] = rate_day / (15 * 3600.0)
            extra = np.maximum(light_s[d] - light_s[d, min(k0, n_steps - 1)], 0.0) * age_rate[d]
            extra[:k0] = 0.0
            bright[d] -= extra
            below = np.flatnonzero(light[d, k0:] & (bright[d, k0:] < RED_LINE))
            if len(below):
                kf = k0 + int(below[0])
                failure[d] = kf * dt
                repair[d] = failure[d] + rng.uniform(12.0, 72.0) * 3600.0
                kr = idx(repair[d])
                bright[d, kr:] = rng.uniform(95.0, 99.0)
            fault.params.update(rate_pct_per_day=rate_day, start_pct=b_start)
        elif fault.fault == "light_loss":
            loss[d] = rng.uniform(0.3, 0.8) ** sev
            later = [s for s in show_starts[d] if s > onset[d] + 60.0]
            failure[d] = later[0] if later and later[0] < onset[d] + 36 * 3600.0 else onset[d] + 3600.0
            repair[d] = failure[d] + rng.uniform(4.0, 48.0) * 3600.0
            kr = idx(repair[d])
            bright[d, k0:kr] *= loss[d]
            fault.params["output_share"] = loss[d]
    for fault in faults:
        d = next(i for i, dev in enumerate(devices) if dev.device_id == fault.device_id)
        fault.failure_t = float(failure[d]) if math.isfinite(failure[d]) and failure[d] < horizon else None
        fault.repair_t = float(repair[d]) if math.isfinite(repair[d]) and repair[d] < horizon else None

    # Sample at the reporting interval and add what real sensors and networks do.
    s_idx = np.arange(0, n_steps, sub)
    n_s = len(s_idx)
    noise = cfg.noise
    shape = (n_dev, n_s)
    on_s = on_grid[:, s_idx]
    light_on = light[:, s_idx]
    temp_s = temp[:, s_idx] + rng.normal(0, 0.3 * noise, shape)
    amb_s = amb_out[:, s_idx] + rng.normal(0, 0.15 * noise, shape)
    fan_s = fan[:, s_idx] * (1 + rng.normal(0, 0.01 * noise, shape))
    show_offset = rng.normal(0, 0.4 * noise, int(show_id.max()) + 1)
    show_offset[0] = 0.0
    b_s = bright[:, s_idx] + show_offset[show_id[:, s_idx]] + rng.normal(0, 0.5 * noise, shape)
    # Xenon lamps reach full output ~90 s after ignition.
    since_light = np.zeros(n_steps)
    ignition = np.ones((n_dev, n_steps), dtype=np.float32)
    for d in np.flatnonzero(xenon):
        starts = np.flatnonzero(np.diff(light[d].astype(np.int8), prepend=0) == 1)
        for k in starts:
            span = min(int(math.ceil(90.0 / dt)) + 1, n_steps - k)
            since_light[:span] = np.arange(span) * dt
            ignition[d, k:k + span] = 0.7 + 0.3 * np.minimum(1.0, since_light[:span] / 90.0)
    b_s = b_s * ignition[:, s_idx]
    load_s = np.round(drive[:, s_idx] * 100.0 * light_on, 0)
    hours0 = rng.uniform(100.0, 15000.0, n_dev)
    hours_s = hours0[:, None] + light_s[:, s_idx] / 3600.0

    nan = np.nan
    dark = nan if cfg.dark_brightness == "absent" else 0.0
    # float64 rounded to the sensors' resolution, so the JSON says 25.8, not 25.799999.
    metrics = {
        "temperature_c": np.round(temp_s, 1),
        "ambient_c": np.round(amb_s, 1),
        "brightness_pct": np.where(light_on, np.round(b_s, 1), np.where(on_s, dark, nan)),
        "fan_rpm": np.round(fan_s, 0).astype(np.int64),
        "light_hours": np.round(hours_s, 1),
        "power": on_s.astype(np.int64),
        "load_pct": load_s.astype(np.int64),
    }
    if cfg.dark_brightness == "zero":
        dark_screen = np.round(np.abs(rng.normal(0.3, 0.3, shape)), 1)
        metrics["brightness_pct"] = np.where(on_s & ~light_on, dark_screen, metrics["brightness_pct"])

    # Glitches: one absurd value in a reading.
    absurd = {
        "temperature_c": [-40.0, 0.0, 127.5, 255.0, 6553.5],
        "ambient_c": [-40.0, 0.0, 85.0],
        "brightness_pct": [0.0, 255.0, -1.0],
        "fan_rpm": [0.0, 65535.0],
    }
    glitch = rng.random(shape) < cfg.glitch_rate
    which = rng.integers(0, len(absurd), shape)
    for m_i, (name, values) in enumerate(absurd.items()):
        mask = glitch & (which == m_i) & ~np.isnan(metrics[name])
        metrics[name][mask] = rng.choice(values, int(mask.sum()))

    # What reaches the server.
    present = rng.random(shape) >= cfg.drop_rate
    phase = np.floor(rng.uniform(0, interval, n_dev))
    sample_t = s_idx * dt
    for d in range(n_dev):
        for _ in range(rng.poisson(cfg.reboots_per_day * cfg.days)):
            t0 = rng.uniform(0, horizon)
            present[d, (sample_t >= t0) & (sample_t < t0 + rng.uniform(120, 240))] = False
    for fault in faults:
        if fault.fault == "offline":
            d = next(i for i, dev in enumerate(devices) if dev.device_id == fault.device_id)
            gone = (sample_t >= onset[d]) & (sample_t < repair[d])
            present[d, gone] = False
            first = np.flatnonzero(gone)
            if len(first):
                onset[d] = fault.onset_t = float(sample_t[first[0]])
                fault.failure_t = fault.onset_t + max(OFFLINE_FAILURE_S, 4 * interval)

    # Truth times on the devices' own clocks (reading ts = start + grid + phase).
    for fault in faults:
        d = next(i for i, dev in enumerate(devices) if dev.device_id == fault.device_id)
        shift = start_t + float(phase[d])
        fault.onset_t += shift
        fault.failure_t = fault.failure_t + shift if fault.failure_t is not None else None
        fault.repair_t = fault.repair_t + shift if fault.repair_t is not None else None
    unexplained = [(dev, t + start_t) for dev, t in unexplained]
    return Fleet(
        cfg, devices, faults, start_t, sample_t.astype(np.float64), phase, metrics, present,
        tripped[:, s_idx], unexplained,
    )


class LiveFeed:
    """A fleet's readings handed out as a (possibly accelerated) clock reaches their time,
    for streaming to a running server (``cinebot telemetry simulate --url``).

    The simulation starts at the wall clock's now; at ``speed`` X its time runs X times
    faster than the wall clock, so at X > 1 the readings' times run ahead of the wall
    clock (the detectors' clock is the readings' ``ts``). ``rename`` maps the simulator's
    device ids (``C01-H01`` …) to the server's projectors."""

    def __init__(self, fleet: Fleet, speed: float = 1.0, rename: dict[str, str] | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.fleet = fleet
        self.speed = speed
        self.rename = rename or {}
        self.total = fleet.readings_count
        self.handed = 0
        self._it = fleet.iter_dicts()
        self._next: dict[str, Any] | None = None
        self._next_t = 0.0
        self._wall0: float | None = None
        self._advance()

    @property
    def done(self) -> bool:
        return self._next is None

    def sim_time(self, wall_now: float) -> float:
        if self._wall0 is None:
            self._wall0 = wall_now
        return self.fleet.start_t + self.speed * (wall_now - self._wall0)

    def due(self, wall_now: float, limit: int | None = None) -> list[dict[str, Any]]:
        """The readings whose time has come by ``wall_now`` (at most ``limit``), in order."""
        until = self.sim_time(wall_now)
        out: list[dict[str, Any]] = []
        while self._next is not None and self._next_t <= until and (limit is None or len(out) < limit):
            out.append(self._next)
            self._advance()
        self.handed += len(out)
        return out

    def _advance(self) -> None:
        item = next(self._it, None)
        if item is not None:
            item["device_id"] = self.rename.get(item["device_id"], item["device_id"])
            self._next_t = datetime.fromisoformat(item["ts"]).timestamp()
        self._next = item
