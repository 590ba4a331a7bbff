"""Projector health: readings are checked, detectors warn before a show fails, and alerts
follow Alertmanager/PagerDuty semantics — one alert per incident, told once, resolved once.

Stories use the fleet simulator (a real day of shows, warm-ups and intermissions) or a
few hand-written readings when one rule is the point.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from bot.cli import main
from telemetry.alerts import AlertEvent, Lifecycle, Verdict
from telemetry.evaluator import Evaluator
from telemetry.readings import Reading, ReadingError
from telemetry.rules import RuleSet, RulesError
from telemetry.scoring import FAMILIES, score
from telemetry.simulate import MODELS, FleetConfig, simulate

T0 = datetime(2025, 3, 3, 2, 0, tzinfo=UTC).timestamp()  # 10:00 in Shanghai
ONE = FleetConfig(devices=1, days=5, interval_s=60, seed=5, faults="none", models=(MODELS[0],))
# The same hall without the healthy surprises (a re-calibrated drive, a failed booth air
# conditioner), for stories that inject one exact change and look for it.
STEADY = replace(ONE, recalibration_rate=0.0, ac_failure_rate=0.0)


def run(readings, evaluator: Evaluator | None = None) -> list[AlertEvent]:
    return list((evaluator or Evaluator()).run(readings))


def firing(events: list[AlertEvent], rule: str | None = None) -> list[AlertEvent]:
    return [e for e in events if e.state == "firing" and (rule is None or e.rule == rule)]


def show(device: str = "p1", minutes: int = 60, start: float = T0, **metrics: float) -> list[Reading]:
    """A projector running a show: powered, light on at 80 % drive, one reading a minute."""
    base = {"power": 1, "load_pct": 80, "temperature_c": 50.0, "ambient_c": 24.0, "fan_rpm": 3000,
            "brightness_pct": 95.0}
    base.update(metrics)
    return [Reading.make(device, start + 60 * i, base) for i in range(minutes)]


# --- readings ---------------------------------------------------------------------------


def test_a_good_reading_is_parsed_with_its_time_in_utc() -> None:
    r = Reading.parse({
        "device_id": "C01-H03", "ts": "2025-03-03T10:00:00+08:00",
        "metrics": {"temperature_c": 51.5, "power": 1, "vendor_laser_current_a": 12, "fan_rpm": None},
        "errors": ["E101"],
    })
    assert r.device_id == "C01-H03"
    assert r.ts == datetime(2025, 3, 3, 2, 0, tzinfo=UTC) and r.t == r.ts.timestamp()
    assert r.metrics == {"temperature_c": 51.5, "power": 1.0, "vendor_laser_current_a": 12.0}
    assert r.errors == ("E101",)
    assert Reading.parse({"device_id": "x", "ts": "2025-03-03T02:00:00Z"}).metrics == {}  # a heartbeat


def test_a_bad_reading_lists_every_bad_field() -> None:
    with pytest.raises(ReadingError) as caught:
        Reading.parse({
            "device_id": "", "ts": "2025-03-03 10:00",  # no offset
            "metrics": {"temperature_c": "hot", "power": 2, "fan_rpm": float("nan"), "bad name!": 1},
            "errors": "E1",
        })
    assert set(caught.value.errors) == {
        "device_id", "ts", "metrics.temperature_c", "metrics.power", "metrics.fan_rpm",
        "metrics.bad name!", "errors",
    }
    with pytest.raises(ReadingError) as caught:
        Reading.parse({"device_id": "p1", "ts": "yesterday", "metrics": [1, 2]})
    assert set(caught.value.errors) == {"ts", "metrics"}
    with pytest.raises(ReadingError) as caught:
        Reading.parse(["not", "an", "object"])
    assert set(caught.value.errors) == {"reading"}


def test_rules_resolve_device_over_cinema_over_defaults_and_reject_typos() -> None:
    rules = RuleSet.from_dict({
        "defaults": {"temperature_caution_c": 72},
        "cinemas": {"SH01": {"devices": ["SH01-H3", "SH01-H4"], "brightness_warning_pct": 70}},
        "devices": {"SH01-H3": {"brightness_warning_pct": 75, "disabled": ["baseline_fan"]}},
    })
    h3, h4, other = (rules.for_device(d) for d in ("SH01-H3", "SH01-H4", "BJ02-H1"))
    assert (h3.brightness_warning_pct, h4.brightness_warning_pct, other.brightness_warning_pct) == (75, 70, 80)
    assert h3.temperature_caution_c == h4.temperature_caution_c == other.temperature_caution_c == 72
    assert (h3.cinema, other.cinema) == ("SH01", "")
    assert not h3.enabled("baseline_fan") and h4.enabled("baseline_fan")
    with pytest.raises(RulesError, match="brightnes_warning_pct"):
        RuleSet.from_dict({"defaults": {"brightnes_warning_pct": 70}})
    with pytest.raises(RulesError, match="critical"):
        RuleSet.from_dict({"devices": {"p1": {"temperature_critical_c": 60}}})


# --- threshold detectors ----------------------------------------------------------------


def test_temperature_fires_after_its_pending_period_and_clears_only_below_the_recovery_line() -> None:
    ev = Evaluator()
    events = run(show(minutes=10, temperature_c=50.0), ev)
    events += run(show(minutes=30, start=T0 + 600, temperature_c=73.0), ev)
    fired = firing(events, "temperature_high")
    assert len(fired) == 1 and fired[0].severity == "warning"
    assert fired[0].t - (T0 + 600) >= 300  # `for: 5m`
    # 68.5 °C is below the 70 °C line but inside the 3 °C hysteresis: still firing.
    events = run(show(minutes=60, start=T0 + 2400, temperature_c=68.5), ev)
    assert events == [] and "temperature_high" in ev.devices["p1"].alerts
    events = run(show(minutes=30, start=T0 + 6000, temperature_c=60.0), ev)
    assert [(e.rule, e.state) for e in events] == [("temperature_high", "resolved")]


def test_a_stopped_fan_alerts_while_powered_but_not_when_off_or_spinning_up() -> None:
    off = [Reading.make("p1", T0 + 60 * i, {"power": 0, "fan_rpm": 0, "temperature_c": 30}) for i in range(60)]
    assert run(off) == []
    ev = Evaluator()
    spin_up = [Reading.make("p1", T0 + 3600, {"power": 1, "fan_rpm": 0, "temperature_c": 30})]
    assert run(spin_up + show(minutes=20, start=T0 + 3630, temperature_c=31), ev) == []
    events = run(show(minutes=10, start=T0 + 5000, fan_rpm=0), ev)
    fired = firing(events, "fan")
    assert len(fired) == 1 and fired[0].severity == "critical"
    assert fired[0].t - (T0 + 5000) <= 5 * 60


def test_brightness_below_the_red_line_alerts_but_dark_intermissions_and_lamp_ignition_do_not() -> None:
    # Even for a cinema that wants to know within a minute: a xenon lamp igniting reads
    # 70 % for its first minutes; an intermission has the light off.
    quick = RuleSet.from_dict({"defaults": {"brightness_for_s": 60}})
    ev = Evaluator(quick)
    ignition = show(minutes=4, brightness_pct=70.0) + show(minutes=60, start=T0 + 240)
    intermission = [
        Reading.make("p1", T0 + 3720 + 60 * i, {"power": 1, "load_pct": 0, "brightness_pct": 0.4, "temperature_c": 45})
        for i in range(20)
    ]
    assert run(ignition + intermission, ev) == []
    events = run(show(minutes=30, start=T0 + 5000, brightness_pct=74.0), ev)
    fired = firing(events, "brightness_low")
    assert len(fired) == 1 and fired[0].severity == "warning" and "80%" in fired[0].message
    assert run(show(minutes=30, start=T0 + 6800, brightness_pct=81.0), ev) == []  # inside the 2 % hysteresis
    events = run(show(minutes=30, start=T0 + 8600, brightness_pct=90.0), ev)
    assert [(e.rule, e.state) for e in events] == [("brightness_low", "resolved")]
    # A cinema's own red line (per cinema rules) changes what counts.
    rules = RuleSet.from_dict({"cinemas": {"SH01": {"devices": ["p1"], "brightness_warning_pct": 70}}})
    assert firing(run(show(minutes=60, brightness_pct=74.0), Evaluator(rules))) == []


def test_single_absurd_readings_never_alert() -> None:
    readings = show(minutes=240)
    for i, bad in [(30, {"temperature_c": 255.0}), (60, {"fan_rpm": 0}), (90, {"fan_rpm": 65535}),
                   (120, {"brightness_pct": 0.0}), (150, {"temperature_c": 95.0}), (180, {"ambient_c": -40})]:
        readings[i] = Reading.make("p1", readings[i].t, {**readings[i].metrics, **bad})
    ev = Evaluator()
    assert run(readings, ev) == []
    assert ev.devices["p1"].glitches >= 5
    # Outside a sensor's physical range a value is dropped even with nothing to compare to.
    fresh = Evaluator().device("p2")
    frame = fresh.condition(Reading.make("p2", T0, {"power": 1, "temperature_c": 6553.5, "fan_rpm": 65535}))
    assert frame.temp is None and frame.fan is None
    # The same values twice in a row are real and do alert.
    readings = show(minutes=20) + show(minutes=10, start=T0 + 1200, fan_rpm=0)
    assert firing(run(readings), "fan")


# --- lifecycle --------------------------------------------------------------------------


class _Dev:
    """The bits of device state the lifecycle touches."""

    def __init__(self) -> None:
        self.device_id = "p1"
        self.alerts: dict = {}
        self.incidents: dict = {}
        self.inhibitors = 0
        self.rules = RuleSet().defaults


def test_one_alert_per_incident_repeats_counted_escalation_told_resolve_once_no_reopen() -> None:
    life, dev, out = Lifecycle(), _Dev(), []
    hot = Verdict("temperature_high", True, "warning", 72.0, 70.0, "温度 72°C", None, 300.0)
    for minute in range(30):
        life.apply(dev, hot, T0 + 60 * minute, out)
    assert [(e.state, e.seq) for e in out] == [("firing", 1)]
    first = out[0]
    assert first.t == T0 + 300 and dev.alerts["temperature_high"].repeats == 24
    life.apply(dev, hot._replace(severity="critical"), T0 + 1800, out)  # worse: told once
    life.apply(dev, hot._replace(severity="critical"), T0 + 1860, out)
    life.apply(dev, hot, T0 + 1920, out)  # back to warning: not told
    assert [(e.state, e.severity, e.seq, e.alert_id) for e in out[1:]] == [
        ("firing", "critical", 2, first.alert_id)
    ]
    clear = Verdict("temperature_high", False)
    for minute in range(40):
        life.apply(dev, clear, T0 + 2000 + 60 * minute, out)
    resolved = [e for e in out if e.state == "resolved"]
    assert len(resolved) == 1 and resolved[0].alert_id == first.alert_id
    assert resolved[0].t - (T0 + 2000) >= dev.rules.keep_firing_s  # keep_firing_for
    for minute in range(10):
        life.apply(dev, hot, T0 + 9000 + 60 * minute, out)
    again = out[-1]
    assert again.state == "firing" and again.seq == 1
    assert again.alert_id != first.alert_id and again.fingerprint == first.fingerprint


def test_a_pending_alert_that_clears_is_never_told_and_one_evaluation_never_fires() -> None:
    life, dev, out = Lifecycle(), _Dev(), []
    hot = Verdict("temperature_high", True, "warning", 72.0, 70.0, "", None, 300.0)
    for minute in range(4):
        life.apply(dev, hot, T0 + 60 * minute, out)
    life.apply(dev, Verdict("temperature_high", False), T0 + 240, out)
    assert out == [] and dev.alerts == {}
    # Even a rule without a pending period needs the condition on two evaluations.
    code = Verdict("error:E42", True, "warning", None, None, "放映机报错 E42", None, 0.0)
    life.apply(dev, code, T0 + 300, out)
    assert out == []
    life.apply(dev, code, T0 + 360, out)
    assert [(e.rule, e.state) for e in out] == [("error:E42", "firing")]


def test_a_device_that_stops_reporting_is_no_data_and_silences_its_other_alerts() -> None:
    ev = Evaluator()
    assert run(show(minutes=30), ev) == []
    # Ten quiet minutes later, on the readings' clock, the device is "no data".
    assert ev.tick(T0 + 29 * 60 + 590) == []
    events = ev.tick(T0 + 29 * 60 + 601)
    assert [(e.rule, e.state, e.severity) for e in events] == [("no_data", "firing", "critical")]
    assert ev.tick(T0 + 3 * 3600) == []  # told once
    back = ev.observe(Reading.make("p1", T0 + 3 * 3600, {"power": 1, "temperature_c": 50}))
    assert [(e.rule, e.state) for e in back] == [("no_data", "resolved")]

    # The edge box says the projector does not answer while repeating a stale hot value:
    # the temperature alert is held back, and told if still true when the projector answers.
    ev = Evaluator()
    run(show(minutes=10), ev)
    stale = [Reading.make("p1", T0 + 600 + 60 * i, {"power": 1, "temperature_c": 75.0}, ("COMM_FAULT",))
             for i in range(15)]
    events = run(stale, ev)
    assert [(e.rule, e.state) for e in events] == [("unreachable", "firing")]
    assert ev.devices["p1"].alerts["temperature_high"].status == 2  # firing, but inhibited
    events = run(show(minutes=3, start=T0 + 1600, temperature_c=75.0), ev)
    assert [(e.rule, e.state) for e in events] == [("unreachable", "resolved"), ("temperature_high", "firing")]


# --- learned baseline, rates and forecasts on a simulated cinema -----------------------


def _fleet_with(cfg: FleetConfig, change) -> tuple[list[Reading], float]:  # noqa: ANN001
    """A healthy simulated projector whose readings `change` alters from day 4 (10:00)."""
    fleet = simulate(cfg)
    from_t = fleet.start_t + 3 * 86400 + 10 * 3600
    readings = []
    for r in fleet.iter_readings():
        if r.t >= from_t:
            r = replace(r, metrics=change(dict(r.metrics)))
        readings.append(r)
    return readings, from_t


def test_a_healthy_projector_with_warmups_and_intermissions_raises_nothing() -> None:
    assert run(simulate(ONE).iter_readings()) == []


def test_healthy_hot_running_models_in_a_warm_booth_raise_nothing() -> None:
    hot = replace(ONE, devices=4, days=4, seed=9, models=(MODELS[3], MODELS[4]), ambient_mean=(25.0, 26.0))
    fleet = simulate(hot)
    powered = fleet.metrics["power"] == 1
    assert fleet.metrics["temperature_c"][powered].max() > 60  # they do run hot
    assert run(fleet.iter_readings()) == []


def test_a_fan_at_60_percent_of_its_usual_speed_is_caught_by_the_learned_baseline() -> None:
    def slow_fan(m: dict) -> dict:
        return {**m, "fan_rpm": round(m["fan_rpm"] * 0.6)}

    readings, from_t = _fleet_with(STEADY, slow_fan)
    events = run(readings)
    fired = firing(events, "baseline_fan")
    assert fired and all(e.t >= from_t for e in firing(events))
    assert fired[0].t - from_t < 3 * 3600
    assert fired[0].value is not None and 0.55 <= fired[0].value <= 0.65 and "%" in fired[0].message


def test_running_8_degrees_hotter_than_usual_at_the_same_load_is_caught_below_any_threshold() -> None:
    def hotter(m: dict) -> dict:
        return {**m, "temperature_c": m["temperature_c"] + 8.0} if m.get("load_pct", 0) > 0 else m

    readings, from_t = _fleet_with(STEADY, hotter)
    assert max(r.metrics["temperature_c"] for r in readings) < 70  # under the caution line
    events = run(readings)
    fired = firing(events, "baseline_temperature")
    assert fired and fired[0].t >= from_t and fired[0].t - from_t < 6 * 3600
    assert not firing(events, "temperature_high")


def test_a_slow_temperature_drift_is_forecast_days_before_the_caution_line() -> None:
    # +1 °C a day at the same load and ambient from day 4 — a filter clogging up — on a
    # hot-running model, for a chain that wants two weeks' notice.
    fleet = simulate(replace(STEADY, days=10, interval_s=120, models=(MODELS[3],)))
    from_t = fleet.start_t + 3 * 86400
    readings = []
    for r in fleet.iter_readings():
        if r.t >= from_t and r.metrics.get("load_pct", 0) > 0:
            extra = 1.0 * (r.t - from_t) / 86400
            r = replace(r, metrics={**r.metrics, "temperature_c": r.metrics["temperature_c"] + extra})
        readings.append(r)
    events = run(readings, Evaluator(RuleSet.from_dict({"defaults": {"forecast_horizon_h": 336}})))
    forecast = firing(events, "temperature_forecast")
    assert forecast and forecast[0].t >= from_t and forecast[0].predicted_t is not None
    assert forecast[0].predicted_t - forecast[0].t >= 3 * 86400
    others = [e for e in firing(events) if e.rule != "temperature_forecast"]
    assert all(e.t > forecast[0].t for e in others)  # the forecast came first


# Which detector speaks first for each fault (it fires before the failure, and before the
# slower or blunter rules that would also catch it).
FIRST = {
    "fan_failure": {"fan"},
    "fan_degradation": {"baseline_fan", "baseline_temperature"},
    "blocked_exhaust": {"temperature_rate"},
    "filter_clogging": {"baseline_temperature", "temperature_forecast"},
    "light_ageing": {"brightness_forecast"},
    "light_loss": {"brightness_low"},
    "offline": {"no_data"},
}


@pytest.mark.parametrize("fault", sorted(FAMILIES))
def test_each_fault_family_alerts_before_the_failure(fault: str) -> None:
    # Two halls: the readings are the clock, and the other hall keeps it ticking.
    cfg = replace(ONE, devices=2, days=9, seed=21, faults=f"{fault}:1", models=MODELS, severity=2.0, interval_s=120)
    fleet = simulate(cfg)
    events = run(fleet.iter_readings())
    (result,) = score(fleet, events).faults
    truth = fleet.faults[0]
    assert result.caught, (fault, truth)
    assert result.first_alert_t is not None and result.first_alert_t >= truth.onset_t - 600
    if truth.failure_t is not None:
        assert result.first_alert_t < truth.failure_t
    first = firing([e for e in events if e.device_id == truth.device_id])[0]
    assert first.rule in FIRST[fault] and first.t >= truth.onset_t - 600
    if fault == "light_ageing":
        forecast = firing(events, "brightness_forecast")[0]
        assert truth.failure_t is not None and forecast.predicted_t is not None
        assert truth.failure_t - forecast.t >= 86400  # a day's warning at least
        assert abs(forecast.predicted_t - truth.failure_t) < 3 * 86400


# --- simulator and CLI ------------------------------------------------------------------


def test_the_simulator_is_deterministic_per_seed() -> None:
    cfg = replace(ONE, devices=6, days=2, faults="all:0,fan_failure:1,offline:1", models=MODELS)
    a, b, c = simulate(cfg), simulate(cfg), simulate(replace(cfg, seed=6))
    first = list(a.iter_dicts())
    assert first == list(b.iter_dicts())
    assert [f.to_json() for f in a.faults] == [f.to_json() for f in b.faults]
    assert first != list(c.iter_dicts())
    assert [r["ts"] for r in first] == sorted(r["ts"] for r in first)  # sent in time order
    assert len({r["device_id"] for r in first}) == 6 and {f.fault for f in a.faults} == {"fan_failure", "offline"}
    assert all(np.isfinite(a.metrics["temperature_c"]).ravel())


def test_cinebot_telemetry_simulate_then_replay_writes_alert_events_as_json_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    readings, truth = tmp_path / "r.jsonl", tmp_path / "t.jsonl"
    code = main(["telemetry", "simulate", "--devices", "3", "--days", "4", "--interval-s", "120",
                 "--seed", "4", "--faults", "light_loss:1", "--out", str(readings), "--truth", str(truth)])
    assert code == 0
    lines = readings.read_text().splitlines()
    assert all(Reading.parse(json.loads(line)) for line in lines)
    kinds = [json.loads(line)["type"] for line in truth.read_text().splitlines()]
    assert kinds == ["device"] * 3 + ["fault"]
    capsys.readouterr()

    with readings.open("a") as fh:
        fh.write("not json\n" + json.dumps({"device_id": "x", "ts": "nope"}) + "\n")
    assert main(["telemetry", "replay", str(readings)]) == 0
    out, err = capsys.readouterr()
    events = [json.loads(line) for line in out.splitlines()]
    assert events and all(set(e) - {"predicted_ts"} == {"device_id", "rule", "severity", "state", "ts", "message"}
                          for e in events)
    assert all(e["severity"] in ("warning", "critical") and e["state"] in ("firing", "resolved") for e in events)
    assert any(e["rule"] == "brightness_low" and e["state"] == "firing" for e in events)
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    assert "2 条无效" in err and "不是 JSON" in err
    forecast = AlertEvent("p1", "brightness_forecast", "warning", "firing", T0, "…", T0 + 3 * 86400, "f", "f-1", 1, 0)
    assert forecast.to_json()["predicted_ts"] == "2025-03-06T02:00:00Z"

    # The same readings with a stricter red line say more; rules are checked.
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"defaults": {"brightness_warning_pct": 99.5}}))
    assert main(["telemetry", "replay", str(readings), "--rules", str(rules)]) == 0
    stricter = [json.loads(line) for line in capsys.readouterr()[0].splitlines()]
    assert sum(e["rule"] == "brightness_low" for e in stricter) > sum(e["rule"] == "brightness_low" for e in events)
    rules.write_text(json.dumps({"defaults": {"brightness_red_line": 70}}))
    assert main(["telemetry", "replay", str(readings), "--rules", str(rules)]) == 2
    assert "brightness_red_line" in capsys.readouterr()[1]


def test_replay_has_no_side_effects_and_gives_the_same_events_twice(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    readings = tmp_path / "r.jsonl"
    assert main(["telemetry", "simulate", "--devices", "2", "--days", "3", "--interval-s", "300",
                 "--faults", "fan_failure:1", "--out", str(readings)]) == 0
    before = sorted(p.name for p in tmp_path.iterdir())
    capsys.readouterr()
    main(["telemetry", "replay", str(readings)])
    first = capsys.readouterr()[0]
    main(["telemetry", "replay", str(readings)])
    assert capsys.readouterr()[0] == first and first
    assert sorted(p.name for p in tmp_path.iterdir()) == before
