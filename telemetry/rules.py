"""Alert limits: chain-wide defaults, overridden per cinema, overridden per device.

A rules file (``cinebot telemetry replay --rules FILE``) is JSON::

    {
      "defaults": {"brightness_warning_pct": 80},
      "cinemas": {"SH01": {"devices": ["SH01-H3", "SH01-H4"], "brightness_warning_pct": 70}},
      "devices": {"SH01-H3": {"cinema": "SH01", "temperature_caution_c": 75}}
    }

Every key is checked (a typo is an error, not a silently ignored limit). Resolution is
done once per device (:meth:`RuleSet.for_device`) so the hot path reads plain attributes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any


class RulesError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class DeviceRules:
    # Temperature thresholds: caution → warning, critical → critical; each clears
    # `hysteresis` below its limit (a separate recovery threshold).
    temperature_caution_c: float = 70.0
    temperature_critical_c: float = 80.0
    temperature_hysteresis_c: float = 3.0
    temperature_for_s: float = 300.0
    # Fan, while powered: below `stopped` → critical, below `slow` → warning.
    fan_stopped_rpm: float = 300.0
    fan_slow_rpm: float = 1000.0
    fan_for_s: float = 120.0
    # Brightness red line (SMPTE theatre floor is 78.75 % of nominal), checked while the
    # light is on and has settled.
    brightness_warning_pct: float = 80.0
    brightness_critical_pct: float = 50.0
    brightness_hysteresis_pct: float = 2.0
    brightness_for_s: float = 300.0
    light_settle_s: float = 300.0
    # A device that stops reporting: silence longer than this (and than 3 of its own
    # reporting intervals) is its own alert. Edge boxes reboot in 2–4 minutes.
    no_data_s: float = 600.0
    # Heating faster than this device's normal warm-up: the temperature it is heading
    # for exceeds its usual steady temperature by this margin.
    rate_margin_c: float = 10.0
    # Learned baseline: hotter than usual at the same load and ambient, or a fan slower
    # than its usual speed.
    baseline_temperature_delta_c: float = 6.0
    baseline_fan_ratio: float = 0.75
    baseline_for_s: float = 1200.0
    # Trend forecasts alert when the red line (brightness) or the caution temperature is
    # predicted within this horizon.
    forecast_horizon_h: float = 168.0
    # Minimum time a firing alert stays firing after its condition clears.
    keep_firing_s: float = 600.0
    offline_error_codes: tuple[str, ...] = ("COMM_FAULT", "UNREACHABLE", "OFFLINE")
    critical_error_codes: tuple[str, ...] = ("THERMAL_SHUTDOWN", "LAMP_FAILURE", "LASER_FAULT", "INTERLOCK")
    disabled: tuple[str, ...] = ()  # rule names switched off for this device
    cinema: str = ""

    def enabled(self, rule: str) -> bool:
        return rule not in self.disabled


_FIELDS = {f.name: f for f in fields(DeviceRules)}
_TUPLES = {"offline_error_codes", "critical_error_codes", "disabled"}


def _settings(where: str, raw: Any, allow: frozenset[str] = frozenset()) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise RulesError(f"{where}: 应为对象 / must be an object")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in allow:
            continue
        if key not in _FIELDS or key == "cinema":
            raise RulesError(f"{where}.{key}: 未知设置 / unknown setting")
        if key in _TUPLES:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise RulesError(f"{where}.{key}: 应为字符串列表 / must be a list of strings")
            out[key] = tuple(value)
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise RulesError(f"{where}.{key}: 应为数字 / must be a number")
            out[key] = float(value)
    return out


@dataclass
class RuleSet:
    defaults: DeviceRules = field(default_factory=DeviceRules)
    cinemas: dict[str, dict[str, Any]] = field(default_factory=dict)
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    device_cinema: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: Any) -> RuleSet:
        if not isinstance(raw, Mapping):
            raise RulesError("规则文件应为 JSON 对象 / rules must be a JSON object")
        unknown = set(raw) - {"defaults", "cinemas", "devices"}
        if unknown:
            raise RulesError(f"未知部分 / unknown sections: {sorted(unknown)}")
        defaults = replace(DeviceRules(), **_settings("defaults", raw.get("defaults", {})))
        cinemas: dict[str, dict[str, Any]] = {}
        device_cinema: dict[str, str] = {}
        for code, spec in dict(raw.get("cinemas", {})).items():
            cinemas[code] = _settings(f"cinemas.{code}", spec, frozenset({"devices"}))
            members = spec.get("devices", [])
            if not isinstance(members, list) or not all(isinstance(d, str) for d in members):
                raise RulesError(f"cinemas.{code}.devices: 应为设备编号列表 / list of device ids")
            for device in members:
                device_cinema[device] = code
        devices: dict[str, dict[str, Any]] = {}
        for device, spec in dict(raw.get("devices", {})).items():
            devices[device] = _settings(f"devices.{device}", spec, frozenset({"cinema"}))
            cinema = spec.get("cinema")
            if cinema is not None:
                if not isinstance(cinema, str):
                    raise RulesError(f"devices.{device}.cinema: 应为字符串 / must be a string")
                device_cinema[device] = cinema
        rules = cls(defaults, cinemas, devices, device_cinema)
        for device in set(devices) | set(device_cinema):
            rules.for_device(device)  # surfaces inconsistent limits now, not mid-replay
        return rules

    @classmethod
    def load(cls, path: str | Path) -> RuleSet:
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise RulesError(f"读不了规则文件 / cannot read {path}: {exc}") from None
        except json.JSONDecodeError as exc:
            raise RulesError(f"规则文件不是 JSON / {path} is not JSON: {exc}") from None
        return cls.from_dict(raw)

    def for_device(self, device_id: str) -> DeviceRules:
        cinema = self.device_cinema.get(device_id, "")
        merged = {**self.cinemas.get(cinema, {}), **self.devices.get(device_id, {})}
        rules = replace(self.defaults, cinema=cinema, **merged) if merged or cinema else self.defaults
        if rules.temperature_critical_c < rules.temperature_caution_c:
            raise RulesError(f"{device_id}: temperature_critical_c 低于 temperature_caution_c")
        if rules.brightness_critical_pct > rules.brightness_warning_pct:
            raise RulesError(f"{device_id}: brightness_critical_pct 高于 brightness_warning_pct")
        if rules.fan_stopped_rpm > rules.fan_slow_rpm:
            raise RulesError(f"{device_id}: fan_stopped_rpm 高于 fan_slow_rpm")
        return rules


def stored_ruleset(
    cinemas: Mapping[str, Mapping[str, Any]],
    devices: Mapping[str, Mapping[str, Any]],
    device_cinema: Mapping[str, str],
    defaults: DeviceRules | None = None,
) -> tuple[RuleSet, list[str]]:
    """Stored limits (the database's rows) as a :class:`RuleSet`, checked by the same code
    as a rules file: (rules, problems).

    ``cinemas``: cinema code → settings; ``devices``: device id → settings;
    ``device_cinema``: every known device → its cinema code. A row that does not pass
    (unknown key, not a number, limits inconsistent with its cinema's) is left out and its
    problem returned, so one bad row cannot take every device back to the defaults.
    """
    base = defaults or DeviceRules()
    problems: list[str] = []
    good_cinemas: dict[str, dict[str, Any]] = {}
    for code, spec in cinemas.items():
        try:
            parsed = _settings(f"cinemas.{code}", spec)
            # Its devices without rows of their own get exactly these limits.
            RuleSet(base, {code: parsed}, {}, {"\x00cinema": code}).for_device("\x00cinema")
        except RulesError as exc:
            problems.append(str(exc))
            continue
        good_cinemas[code] = parsed
    good_devices: dict[str, dict[str, Any]] = {}
    for device, spec in devices.items():
        try:
            parsed = _settings(f"devices.{device}", spec)
            RuleSet(base, good_cinemas, {device: parsed}, dict(device_cinema)).for_device(device)
        except RulesError as exc:
            problems.append(str(exc))
            continue
        good_devices[device] = parsed
    return RuleSet(base, good_cinemas, good_devices, dict(device_cinema)), problems
