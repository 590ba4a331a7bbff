"""Small, constant-memory statistics kept per device.

* :class:`Baseline` — the device's own normal value of a metric as a linear function of
  ambient temperature and light-source load, learned online from its healthy steady
  states (exponentially weighted ridge regression: 12 floats, memory counted in seconds
  of steady running so it does not depend on the reporting interval). Samples far from
  the current fit are not learned, so a single glitch or a developing fault does not
  drag the baseline along.
* :class:`Bins` — a ring of per-show medians, the input of trend forecasts.
* :func:`theil_sen` — robust line fit (median of pairwise slopes).
"""

from __future__ import annotations

import math
from array import array
from functools import lru_cache

import numpy as np

# Feature scaling keeps the ridge penalty meaningful for both features.
AMBIENT_REF, AMBIENT_SCALE = 25.0, 2.0
LOAD_REF, LOAD_SCALE = 80.0, 10.0


def features(ambient: float, load: float) -> tuple[float, float]:
    return (ambient - AMBIENT_REF) / AMBIENT_SCALE, (load - LOAD_REF) / LOAD_SCALE


REFERENCE_LAG_S = 2 * 86400.0  # "usual" = what the device did at least two days ago
SNAPSHOTS = 4


class Baseline:
    """y ≈ θ0 + θ1·a + θ2·l on the device's healthy history (a, l: scaled ambient, load).

    A fault that develops over days (a clogging filter, a tiring fan) would slowly be
    learned as normal. Two defences: once trained, new samples count for less, and
    :meth:`predict_ref` answers with the fit as it stood at least two days ago (daily
    snapshots), so a drift shows up in full against it.
    """

    __slots__ = (
        "s", "theta", "scale", "weight", "samples", "_stale", "prior_a", "memory_s",
        "amb_lo", "amb_hi", "load_lo", "load_hi", "snaps", "next_snap",
    )

    def __init__(self, prior_ambient: float = 0.0, memory_s: float = 5e5) -> None:
        # s = [W, Sa, Sl, Saa, Sal, Sll, Sy, Say, Sly]
        self.s = array("d", bytes(8 * 9))
        self.theta: tuple[float, float, float] | None = None
        self.scale = math.nan  # robust spread of residuals (≈ σ)
        self.weight = 0.0  # seconds of steady running learned (decayed)
        self.samples = 0
        self._stale = True
        self.prior_a = prior_ambient  # physics: a booth 1 °C warmer makes the device ~1 °C warmer
        self.memory_s = memory_s
        # The conditions it has seen: outside them a linear fit is a guess, not a baseline.
        self.amb_lo = self.load_lo = math.inf
        self.amb_hi = self.load_hi = -math.inf
        # (t, θ, load_lo, load_hi, amb_lo, amb_hi): the fit and what it had seen, daily.
        self.snaps: list[tuple[float, tuple[float, float, float], float, float, float, float]] = []
        self.next_snap = -math.inf

    def trained(self, min_weight_s: float = 6 * 3600.0, min_samples: int = 12) -> bool:
        return self.weight >= min_weight_s and self.samples >= min_samples

    def covers(self, ambient: float, load: float, now: float | None = None) -> bool:
        """Whether the fit (the reference fit, given `now`) has seen conditions like these."""
        ref = self._reference(now) if now is not None else None
        load_lo, load_hi, amb_lo, amb_hi = (
            ref[2:] if ref is not None else (self.load_lo, self.load_hi, self.amb_lo, self.amb_hi)
        )
        return load_lo - 8.0 <= load <= load_hi + 8.0 and amb_lo - 4.0 <= ambient <= amb_hi + 4.0

    def _reference(self, now: float):  # noqa: ANN202 - a snapshot tuple or None
        for snap in reversed(self.snaps):
            if now - snap[0] >= REFERENCE_LAG_S:
                return snap
        return None

    def predict(self, ambient: float, load: float) -> float:
        if self._stale:
            self._solve()
        a, l = features(ambient, load)
        t = self.theta
        assert t is not None
        return t[0] + t[1] * a + t[2] * l

    def has_reference(self, now: float) -> bool:
        return bool(self.snaps) and now - self.snaps[0][0] >= REFERENCE_LAG_S

    def predict_ref(self, ambient: float, load: float, now: float) -> float:
        """The prediction of the newest snapshot at least REFERENCE_LAG_S old (else now's)."""
        ref = self._reference(now)
        if ref is None:
            return self.predict(ambient, load)
        theta = ref[1]
        a, l = features(ambient, load)
        return theta[0] + theta[1] * a + theta[2] * l

    def learn(self, ambient: float, load: float, y: float, weight_s: float, t: float = 0.0) -> None:
        if self.trained():
            weight_s *= 0.3  # established: new evidence moves it slowly
            if t >= self.next_snap:
                if self._stale:
                    self._solve()
                assert self.theta is not None
                self.snaps.append((t, self.theta, self.load_lo, self.load_hi, self.amb_lo, self.amb_hi))
                del self.snaps[:-SNAPSHOTS]
                self.next_snap = t + 86400.0
        if self.theta is not None:
            # Out-of-sample residual → EW mean absolute residual → σ (×1.25 if normal).
            r = 1.25 * abs(y - self.predict(ambient, load))
            self.scale = r if math.isnan(self.scale) else 0.97 * self.scale + 0.03 * r
        if ambient < self.amb_lo:
            self.amb_lo = ambient
        if ambient > self.amb_hi:
            self.amb_hi = ambient
        if load < self.load_lo:
            self.load_lo = load
        if load > self.load_hi:
            self.load_hi = load
        a, l = features(ambient, load)
        s = self.s
        decay = math.exp(-weight_s / self.memory_s)
        for i in range(9):
            s[i] *= decay
        s[0] += weight_s
        s[1] += weight_s * a
        s[2] += weight_s * l
        s[3] += weight_s * a * a
        s[4] += weight_s * a * l
        s[5] += weight_s * l * l
        s[6] += weight_s * y
        s[7] += weight_s * a * y
        s[8] += weight_s * l * y
        self.weight = s[0]
        self.samples += 1
        if self.samples % 8 == 0 or self.samples < 64:
            self._stale = True

    def _solve(self) -> None:
        s = self.s
        w = s[0]
        if w <= 0:
            self.theta = (0.0, 0.0, 0.0)
            self._stale = False
            return
        # Ridge on the two slopes, towards (prior_a, 0), proportional to the data weight.
        rho = 0.05 * w
        m = [
            [s[0], s[1], s[2]],
            [s[1], s[3] + rho, s[4]],
            [s[2], s[4], s[5] + rho],
        ]
        b = [s[6], s[7] + rho * self.prior_a, s[8]]
        self.theta = _solve3(m, b)
        self._stale = False


def _solve3(m: list[list[float]], b: list[float]) -> tuple[float, float, float]:
    def det(a: list[list[float]]) -> float:
        return (
            a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1])
            - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
            + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0])
        )

    d = det(m)
    if abs(d) < 1e-12:
        return (b[0] / m[0][0] if m[0][0] else 0.0, 0.0, 0.0)
    out = []
    for col in range(3):
        mc = [row[:] for row in m]
        for r in range(3):
            mc[r][col] = b[r]
        out.append(det(mc) / d)
    return out[0], out[1], out[2]


class Bins:
    """Medians of a metric per operating session (one show, at most `width_s`), in a ring.

    Points are one per show rather than per hour because a show's brightness carries its
    own offset (content, calibration, 3D): hours within a show are not independent
    evidence of a trend, shows are.
    """

    __slots__ = ("t", "v", "n", "head", "bin_start", "current", "width")

    def __init__(self, capacity: int = 64, width_s: float = 3 * 3600.0) -> None:
        self.t = array("d", bytes(8 * capacity))
        self.v = array("d", bytes(8 * capacity))
        self.n = 0
        self.head = 0  # next slot to write
        self.bin_start = math.nan
        self.current: list[float] = []
        self.width = width_s

    def add(self, t: float, value: float, min_count: int) -> bool:
        """Add a value; True when the session ran past `width_s` and a point was closed."""
        closed = False
        if t >= self.bin_start + self.width:
            closed = self.close(min_count)
        if not self.current:
            self.bin_start = t
        self.current.append(value)
        return closed

    def close(self, min_count: int) -> bool:
        """End the session; True if it had enough values to become a point."""
        values = self.current
        if len(values) < min_count:
            values.clear()
            return False
        values.sort()
        k = len(values)
        median = values[k // 2] if k % 2 else 0.5 * (values[k // 2 - 1] + values[k // 2])
        cap = len(self.t)
        self.t[self.head] = self.bin_start
        self.v[self.head] = median
        self.head = (self.head + 1) % cap
        self.n = min(self.n + 1, cap)
        values.clear()
        return True

    def series(self) -> tuple[np.ndarray, np.ndarray]:
        cap = len(self.t)
        if self.n < cap:
            idx = np.arange(self.n)
        else:
            idx = (np.arange(cap) + self.head) % cap
        return (np.frombuffer(self.t, dtype=np.float64)[idx], np.frombuffer(self.v, dtype=np.float64)[idx])

    def keep_last(self, k: int) -> None:
        """Forget all but the newest `k` points (after a repair: old history misleads)."""
        ts, vs = self.series()
        ts, vs = ts[-k:].copy(), vs[-k:].copy()
        self.n = self.head = 0
        for t, v in zip(ts, vs):
            self.t[self.head] = t
            self.v[self.head] = v
            self.head += 1
            self.n += 1


@lru_cache(maxsize=256)
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    i, j = np.triu_indices(n, k=1)
    return i, j


def median(a: np.ndarray) -> float:
    n = len(a)
    k = n // 2
    if n % 2:
        return float(np.partition(a, k)[k])
    part = np.partition(a, (k - 1, k))
    return 0.5 * float(part[k - 1] + part[k])


def theil_sen(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(slope, intercept, residual σ) — the median pairwise slope; robust to ~29 % outliers.
    `x` must be strictly increasing."""
    i, j = _pairs(len(x))
    slopes = (y[j] - y[i]) / (x[j] - x[i])
    slope = median(slopes) if len(slopes) else 0.0
    intercept = median(y - slope * x)
    sigma = 1.4826 * median(np.abs(y - (intercept + slope * x)))
    return slope, intercept, sigma


def slope_stderr(x: np.ndarray, sigma: float) -> float:
    """Standard error of a fitted slope for residual spread `sigma` (OLS formula ×1.1 for
    Theil–Sen's efficiency)."""
    d = x - x.sum() / len(x)
    sxx = float(d @ d)
    return 1.1 * sigma / math.sqrt(sxx) if sxx > 0 else math.inf
