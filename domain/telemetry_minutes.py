"""Per-minute telemetry aggregates in SQL (``domain.devices.TelemetryMinute``): merge-write
(their device days, ``domain.rollups.DeviceDay``, merged in the same transaction), read a
device's range (for charts), and drop what is past retention."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise.connection import get_connection
from tortoise.transactions import in_transaction

from domain import rollups
from domain.devices import TelemetryMinute
from domain.rollups import MinuteLike  # what a minute row offers (ingest's aggregates)

CHUNK = 2000


@dataclass(frozen=True, slots=True)
class MinuteStat:
    minute: datetime
    metric: str
    n: int
    vmin: float
    vmax: float
    avg: float


# One row merges into an existing one: counts and sums add up, min and max widen, so a
# minute written in two parts (late readings, two processes) equals one write of all of it.
_UPSERT = {
    "sqlite": (
        'INSERT INTO "telemetry_minute" ("cinema_id","device_id","minute","metric","n","vmin","vmax","vsum") '
        "VALUES (?,?,?,?,?,?,?,?) "
        'ON CONFLICT ("device_id","minute","metric") DO UPDATE SET '
        '"n" = "telemetry_minute"."n" + excluded."n", '
        '"vmin" = MIN("telemetry_minute"."vmin", excluded."vmin"), '
        '"vmax" = MAX("telemetry_minute"."vmax", excluded."vmax"), '
        '"vsum" = "telemetry_minute"."vsum" + excluded."vsum"'
    ),
    "postgres": (
        'INSERT INTO "telemetry_minute" ("cinema_id","device_id","minute","metric","n","vmin","vmax","vsum") '
        "VALUES ($1,$2,$3,$4,$5,$6,$7,$8) "
        'ON CONFLICT ("device_id","minute","metric") DO UPDATE SET '
        '"n" = "telemetry_minute"."n" + EXCLUDED."n", '
        '"vmin" = LEAST("telemetry_minute"."vmin", EXCLUDED."vmin"), '
        '"vmax" = GREATEST("telemetry_minute"."vmax", EXCLUDED."vmax"), '
        '"vsum" = "telemetry_minute"."vsum" + EXCLUDED."vsum"'
    ),
}


async def record_minutes(rows: Sequence[MinuteLike]) -> int:
    """Merge aggregate rows into ``telemetry_minute`` in one transaction; rows written."""
    if not rows:
        return 0
    dialect = get_connection("default").capabilities.dialect
    sql = _UPSERT["sqlite" if dialect == "sqlite" else "postgres"]
    values: list[list[Any]] = [
        [r.cinema_id, r.device_id, r.minute, r.metric[:48], r.n, r.vmin, r.vmax, r.vsum] for r in rows
    ]
    async with in_transaction() as conn:
        for i in range(0, len(values), CHUNK):
            await conn.execute_many(sql, values[i:i + CHUNK])
        await rollups.merge_minutes(rows, conn)
    return len(values)


async def device_minutes(
    device_id: str, start: datetime, end: datetime, metrics: Iterable[str] | None = None
) -> list[MinuteStat]:
    """A device's minutes in ``[start, end)``, oldest first (then by metric)."""
    query = TelemetryMinute.filter(device_id=device_id, minute__gte=start, minute__lt=end)
    if metrics is not None:
        query = query.filter(metric__in=list(metrics))
    rows = await query.order_by("minute", "metric")
    return [
        MinuteStat(r.minute, r.metric, r.n, r.vmin, r.vmax, r.vsum / r.n if r.n else 0.0) for r in rows
    ]


async def delete_minutes_before(cutoff: datetime) -> int:
    """Retention: every aggregate of a minute before ``cutoff`` goes; rows deleted."""
    return await TelemetryMinute.filter(minute__lt=cutoff).delete()
