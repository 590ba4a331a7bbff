"""One projector reading as an edge box sends it (DESIGN.md, "Telemetry reading").

``{"device_id": str, "ts": ISO8601, "metrics": {name: number}, "errors": [code]}`` —
any metric may be absent. :meth:`Reading.parse` checks every field and reports all
problems at once, keyed by field, so an ingest endpoint can return a per-item error
list and keep the good items of a batch.

Validation is about shape, not physics: a temperature of 6553.5 °C is a well-formed
reading from a broken sensor; the detectors treat it as a glitch
(:mod:`telemetry.state`), they do not reject the whole reading.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: Metrics the detectors understand; any other numeric metric is kept as a vendor metric.
KNOWN_METRICS = ("temperature_c", "ambient_c", "brightness_pct", "fan_rpm", "light_hours", "power")
#: Light-source drive in % (0 = light off / dowsed). Optional; used when present to tell a
#: dark screen during an intermission from a failing light source, and as the "load".
LOAD_METRIC = "load_pct"

_NAME = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
_KNOWN = frozenset((*KNOWN_METRICS, LOAD_METRIC))
MAX_DEVICE_ID = 64
MAX_ERRORS = 32


class ReadingError(ValueError):
    """A reading that cannot be used; ``errors`` maps each bad field to what is wrong."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


@dataclass(frozen=True, slots=True)
class Reading:
    device_id: str
    ts: datetime  # UTC-aware
    metrics: Mapping[str, float] = field(default_factory=dict)
    errors: tuple[str, ...] = ()
    t: float = 0.0  # ts as POSIX seconds, the detectors' clock

    @classmethod
    def parse(cls, obj: Any) -> Reading:
        """A validated reading, or :class:`ReadingError` listing every bad field."""
        if not isinstance(obj, Mapping):
            raise ReadingError({"reading": "应为 JSON 对象 / must be a JSON object"})
        errors: dict[str, str] = {}

        device_id = obj.get("device_id")
        if not isinstance(device_id, str) or not device_id.strip():
            errors["device_id"] = "缺少设备编号 / required non-empty string"
        elif len(device_id) > MAX_DEVICE_ID:
            errors["device_id"] = f"太长 / at most {MAX_DEVICE_ID} characters"

        ts: datetime | None = None
        raw_ts = obj.get("ts")
        if not isinstance(raw_ts, str):
            errors["ts"] = "缺少时间 / required ISO 8601 string"
        else:
            try:
                ts = datetime.fromisoformat(raw_ts)
            except ValueError:
                errors["ts"] = "不是 ISO 8601 时间 / not an ISO 8601 time"
            else:
                if ts.tzinfo is None:
                    errors["ts"] = "需要时区 / needs a UTC offset (e.g. Z or +08:00)"
                    ts = None
                else:
                    ts = ts.astimezone(UTC)

        metrics: dict[str, float] = {}
        raw_metrics = obj.get("metrics", {})
        if raw_metrics is None:
            raw_metrics = {}
        if not isinstance(raw_metrics, Mapping):
            errors["metrics"] = "应为对象 / must be an object of name: number"
        else:
            for name, value in raw_metrics.items():
                if value is None:
                    continue  # "absent", as the edge box may say explicitly
                if name not in _KNOWN and (not isinstance(name, str) or not _NAME.match(name)):
                    errors[f"metrics.{name}"] = "指标名不合法 / metric names are 1-64 of [A-Za-z0-9_.:-]"
                    continue
                kind = type(value)
                if kind is not float and kind is not int:
                    if kind is bool:
                        value = int(value)
                    elif not isinstance(value, (int, float)):
                        errors[f"metrics.{name}"] = "应为数字 / must be a number"
                        continue
                number = float(value)
                if number - number != 0.0:  # inf or nan
                    errors[f"metrics.{name}"] = "不是有限数 / must be finite"
                    continue
                if name == "power" and number != 0.0 and number != 1.0:
                    errors[f"metrics.{name}"] = "只能是 0 或 1 / must be 0 or 1"
                    continue
                metrics[name] = number

        codes: tuple[str, ...] = ()
        raw_errors = obj.get("errors", [])
        if raw_errors is None:
            raw_errors = []
        if not isinstance(raw_errors, list):
            errors["errors"] = "应为错误码列表 / must be a list of codes"
        elif len(raw_errors) > MAX_ERRORS:
            errors["errors"] = f"太多 / at most {MAX_ERRORS} codes"
        else:
            bad = [i for i, c in enumerate(raw_errors) if not isinstance(c, (str, int)) or isinstance(c, bool)]
            if bad:
                errors[f"errors[{bad[0]}]"] = "错误码应为字符串 / codes are strings"
            else:
                codes = tuple(str(c)[:64] for c in raw_errors)

        if errors:
            raise ReadingError(errors)
        assert ts is not None and isinstance(device_id, str)
        return cls(device_id.strip(), ts, metrics, codes, ts.timestamp())

    @classmethod
    def make(
        cls,
        device_id: str,
        t: float,
        metrics: Mapping[str, float] | None = None,
        errors: tuple[str, ...] = (),
    ) -> Reading:
        """A reading built in code (tests, the simulator), ``t`` in POSIX seconds."""
        return cls(device_id, datetime.fromtimestamp(t, UTC), dict(metrics or {}), errors, float(t))

    def to_json(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "ts": iso(self.t),
            "metrics": dict(self.metrics),
            "errors": list(self.errors),
        }


def iso(t: float) -> str:
    """POSIX seconds as the ISO 8601 UTC text used on the wire (``...Z``)."""
    dt = datetime.fromtimestamp(t, UTC)
    text = dt.isoformat(timespec="milliseconds" if dt.microsecond else "seconds")
    return text.replace("+00:00", "Z")
