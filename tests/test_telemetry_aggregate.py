"""Per-minute aggregates: counted right in memory, merged into SQL so a minute written
twice adds up, flushed once per reading, and dropped after the retention period."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.app import TELEMETRY_MINUTES
from telemetry.ingest import signed_headers
from bot.infra.settings import Settings, SettingsError
from domain.devices import TelemetryMinute, demo_box
from domain.telemetry_minutes import device_minutes, record_minutes
from jobs.context import JobContext
from jobs.locks import LeaderLocks
from jobs.retention import drop_old_minutes
from telemetry.aggregate import MinuteAggregates, MinuteFlusher, MinuteRow
from telemetry.readings import Reading
from tests.support import FakeClock
from tests.test_telemetry_ingest import DEVICE, reading

T0 = datetime(2026, 11, 21, 2, 0, tzinfo=UTC).timestamp()  # a whole minute


def rows_by_key(rows: list[MinuteRow]) -> dict[tuple[str, datetime, str], MinuteRow]:
    return {(r.device_id, r.minute, r.metric): r for r in rows}


def test_each_metric_of_each_device_gets_count_min_max_and_average_per_minute() -> None:
    agg = MinuteAggregates()
    agg.add(7, [Reading.make("A", T0 + 5, {"temperature_c": 50.0, "fan_rpm": 3000}),
                Reading.make("A", T0 + 25, {"temperature_c": 54.0}),
                Reading.make("B", T0 + 30, {"temperature_c": 40.0})])
    agg.add(7, [Reading.make("A", T0 + 59.9, {"temperature_c": 49.0, "vendor.lamp_v": 31.5}),
                Reading.make("A", T0 + 60, {"temperature_c": 70.0})])  # the next minute
    rows = rows_by_key(agg.drain())
    minute = datetime.fromtimestamp(T0, UTC)
    t = rows[("A", minute, "temperature_c")]
    assert (t.cinema_id, t.n, t.vmin, t.vmax, t.vsum) == (7, 3, 49.0, 54.0, 153.0)
    assert t.avg == pytest.approx(51.0)
    assert rows[("A", minute, "fan_rpm")].n == 1
    assert rows[("A", minute, "vendor.lamp_v")].vmax == 31.5  # vendor metrics too
    assert rows[("B", minute, "temperature_c")].n == 1
    nxt = rows[("A", minute + timedelta(minutes=1), "temperature_c")]
    assert (nxt.n, nxt.vmin, nxt.vmax) == (1, 70.0, 70.0)
    assert len(rows) == 5 and len(agg) == 0


def test_only_minutes_that_ended_a_grace_period_ago_are_taken_before_shutdown() -> None:
    agg = MinuteAggregates()
    agg.add(1, [Reading.make("A", T0 + 10, {"power": 1}), Reading.make("A", T0 + 70, {"power": 1})])
    assert agg.closed(T0 + 60 + 10, grace_s=30) == []  # minute 0 ended only 10 s ago
    taken = agg.closed(T0 + 60 + 30, grace_s=30)
    assert [r.minute.timestamp() for r in taken] == [T0]
    assert [r.minute.timestamp() for r in agg.drain()] == [T0 + 60]


async def test_two_flushes_of_the_same_minute_add_up_to_one_row(db: None) -> None:
    first, second = MinuteAggregates(), MinuteAggregates()  # e.g. late readings, or two replicas
    first.add(1, [Reading.make("A", T0 + 1, {"temperature_c": 50.0}),
                  Reading.make("A", T0 + 11, {"temperature_c": 52.0})])
    second.add(1, [Reading.make("A", T0 + 41, {"temperature_c": 47.0}),
                   Reading.make("A", T0 + 51, {"temperature_c": 60.0})])
    assert await record_minutes(first.drain()) == 1
    assert await record_minutes(second.drain()) == 1
    rows = await TelemetryMinute.all()
    assert len(rows) == 1
    r = rows[0]
    assert (r.n, r.vmin, r.vmax, r.vsum) == (4, 47.0, 60.0, 209.0)
    stats = await device_minutes("A", datetime.fromtimestamp(T0 - 60, UTC), datetime.fromtimestamp(T0 + 60, UTC))
    assert [(s.metric, s.n, s.vmin, s.vmax) for s in stats] == [("temperature_c", 4, 47.0, 60.0)]
    assert stats[0].avg == pytest.approx(52.25)
    assert stats[0].minute == datetime.fromtimestamp(T0, UTC)


async def test_a_flush_writes_each_reading_once_and_a_failed_one_is_retried(db: None) -> None:
    agg = MinuteAggregates()
    now = [T0 + 600.0]
    calls: list[int] = []

    async def flaky(rows: list[MinuteRow]) -> int:
        calls.append(len(rows))
        if len(calls) == 1:
            raise ConnectionError("database away")
        return await record_minutes(rows)

    flusher = MinuteFlusher(agg, flaky, lambda: now[0])
    agg.add(3, [Reading.make("D", T0 + i, {"temperature_c": 50.0 + i, "power": 1}) for i in range(0, 60, 10)])
    assert await flusher.flush() == 0  # failed: the rows stay in memory
    agg.add(3, [Reading.make("D", T0 + 59, {"temperature_c": 40.0})])  # arrives meanwhile
    assert await flusher.flush() == 2
    assert await flusher.flush() == 0 and calls == [2, 2]  # nothing left: idempotent
    rows = {r.metric: r for r in await TelemetryMinute.filter(device_id="D")}
    assert (rows["temperature_c"].n, rows["temperature_c"].vmin, rows["temperature_c"].vmax) == (7, 40.0, 100.0)
    assert rows["power"].n == 6 and rows["power"].vsum == 6.0


async def test_retention_deletes_only_rows_older_than_the_setting(db: None, redis: Any) -> None:
    clock = FakeClock()
    now = clock.now()
    minute = now.replace(second=0, microsecond=0)
    olds = [minute - timedelta(days=31), minute - timedelta(days=30, minutes=1)]
    keeps = [minute - timedelta(days=29, hours=23), minute - timedelta(hours=1)]
    await record_minutes([
        MinuteRow(1, "A", m, "temperature_c", 1, 50.0, 50.0, 50.0) for m in olds + keeps
    ])
    replicas = [JobContext(clock=clock, locks=LeaderLocks(redis), telemetry_retention_days=30)
                for _ in range(2)]
    assert await drop_old_minutes(replicas[0]) == 2
    assert await drop_old_minutes(replicas[1]) == 0
    left = sorted(r.minute for r in await TelemetryMinute.all())
    assert left == keeps
    week = JobContext(clock=clock, locks=LeaderLocks(redis), telemetry_retention_days=7)
    assert await drop_old_minutes(week) == 1


def test_the_retention_period_is_a_setting() -> None:
    assert Settings().telemetry_retention_days == 30
    assert Settings.from_mapping({"CINEBOT_TELEMETRY_RETENTION_DAYS": "90"}).telemetry_retention_days == 90
    with pytest.raises(SettingsError, match="TELEMETRY_RETENTION_DAYS"):
        Settings.from_mapping({"CINEBOT_TELEMETRY_RETENTION_DAYS": "0"})


async def test_readings_posted_to_the_app_become_minutes_a_chart_can_read(
    client: TestClient, clock: FakeClock
) -> None:
    t0 = (clock.timestamp() // 60 - 60) * 60  # an hour ago, on a minute
    batch = [reading(t0 + 10 * i, temperature_c=50.0 + i) for i in range(12)]  # two minutes
    box_id, key = await demo_box()
    body = json.dumps(batch).encode()
    resp = await client.post("/telemetry/readings", data=body,
                             headers=signed_headers(box_id, key, body, now=clock.timestamp()))
    assert resp.status == 202
    assert await client.app[TELEMETRY_MINUTES].flush() > 0  # both minutes have ended
    start = datetime.fromtimestamp(t0, UTC)
    temps = await device_minutes(DEVICE, start, start + timedelta(minutes=5), metrics=["temperature_c"])
    assert [(s.minute - start, s.n, s.vmin, s.vmax, s.avg) for s in temps] == [
        (timedelta(0), 6, 50.0, 55.0, 52.5), (timedelta(minutes=1), 6, 56.0, 61.0, 58.5),
    ]


def test_past_the_memory_bound_readings_are_counted_at_once_and_still_add_up() -> None:
    agg = MinuteAggregates(max_held=4)
    agg.add(1, [Reading.make("A", T0 + i, {"fan_rpm": 3000.0 + i}) for i in range(3)])
    assert agg.held == 3  # filed, not yet counted
    agg.add(1, [Reading.make("A", T0 + 10 + i, {"fan_rpm": 2000.0 + i}) for i in range(3)])
    assert agg.held == 0  # over the bound: counted
    agg.add(1, [Reading.make("A", T0 + 30, {"fan_rpm": 5000.0})])
    (row,) = agg.drain()
    assert (row.n, row.vmin, row.vmax, row.vsum) == (7, 2000.0, 5000.0, 9003.0 + 6003.0 + 5000.0)
