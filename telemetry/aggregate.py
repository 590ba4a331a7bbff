"""Per-minute aggregates of every numeric metric of every device, kept for charts.

:class:`MinuteAggregates` is fed each accepted batch on the ingest path and hands out
rows ``(cinema, device, minute, metric, n, min, max, sum)`` for the ``telemetry_minute``
table. The ingest path only files each reading's metrics under its (device, minute) —
one tuple, one dict lookup, one append, no per-metric work — and the counting happens
when a minute is taken (or, past ``max_held`` readings, in one go to bound memory): a
minute has ~6 readings of ~7 metrics, so folding them together later is cheaper than
updating min/max/sum on every reading, and it is off the request path.

Flushing: every ``FLUSH_S`` the process writes the minutes that ended more than
``GRACE_S`` before the wall clock (:meth:`MinuteAggregates.closed`), a chunk of
device-minutes at a time, and on shutdown everything still held, for at most
``CLOSE_BUDGET_S`` (:meth:`MinuteFlusher.close`). The write *merges* into an existing row (n and sum
add up, min and max widen) rather than replacing it, because a minute is never really
closed: a box may send a batch it buffered while offline, and another process (a second
replica, or the stream consumer of another process) may hold readings of the same
minute. So a minute written in parts — late readings, a shutdown flush of an open
minute, two replicas — adds up to the same row as one write of all its readings. And
each reading is written once: the rows a flush takes leave the aggregator (a failed
write puts them back with :meth:`MinuteAggregates.restore`), so flushing again writes
nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import NamedTuple

from telemetry.readings import Reading

log = logging.getLogger(__name__)

FLUSH_S = 60.0
GRACE_S = 30.0  # a minute is written once it ended this long ago (late readings still merge)
CHUNK = 20  # device-minutes per write (~120 rows, a few ms): an alert waits for one at most
MAX_HELD = 200_000  # readings filed but not yet counted; past it they are counted at once
CLOSE_BUDGET_S = 10.0
MAX_BUCKETS = 500_000  # counted device-minutes held while the database is away; then the oldest go

Key = tuple[int, str, int]  # (cinema, device, minute index = POSIX seconds // 60)


class MinuteRow(NamedTuple):
    """One row of ``telemetry_minute`` (a tuple: cheap to make by the hundred thousand,
    and in the column order the write takes)."""

    cinema_id: int
    device_id: str
    minute: datetime  # UTC, the start of the minute
    metric: str
    n: int
    vmin: float
    vmax: float
    vsum: float

    @property
    def avg(self) -> float:
        return self.vsum / self.n if self.n else 0.0


class MinuteAggregates:
    """n / min / max / sum per (device, minute, metric), in memory until taken."""

    def __init__(self, max_held: int = MAX_HELD, max_buckets: int = MAX_BUCKETS) -> None:
        self._raw: dict[Key, list[Mapping[str, float]]] = {}  # filed, not yet counted
        self._counted: dict[Key, dict[str, list[float]]] = {}  # metric -> [n, min, max, sum]
        self.held = 0
        self.max_held = max_held
        self.max_buckets = max_buckets
        self.dropped = 0

    def __len__(self) -> int:
        return len(self.drain_keys())

    def add(self, cinema_id: int, readings: list[Reading]) -> None:
        """The hot path: file each reading's metrics (shared, not copied) under its minute."""
        raw = self._raw
        get = raw.get
        for r in readings:
            key = (cinema_id, r.device_id, int(r.t // 60.0))
            filed = get(key)
            if filed is None:
                raw[key] = [r.metrics]
            else:
                filed.append(r.metrics)
        self.held += len(readings)
        if self.held > self.max_held:
            self._count(list(raw))

    def due(self, now_t: float, grace_s: float = GRACE_S) -> list[Key]:
        """The device-minutes that ended at least ``grace_s`` before ``now_t``."""
        before = int((now_t - grace_s) // 60.0)  # minute indexes below this have ended
        return [k for k in self._raw.keys() | self._counted.keys() if k[2] < before]

    def take(self, keys: list[Key]) -> list[MinuteRow]:
        """The rows of these device-minutes; they leave the aggregator."""
        return self._take(keys)

    def closed(self, now_t: float, grace_s: float = GRACE_S) -> list[MinuteRow]:
        """Take the rows of every minute that ended ``grace_s`` before ``now_t``."""
        return self._take(self.due(now_t, grace_s))

    def drain_keys(self) -> set[Key]:
        return self._raw.keys() | self._counted.keys()

    def drain(self) -> list[MinuteRow]:
        """Take everything (shutdown: an open minute is written now and merged later)."""
        return self._take(list(self.drain_keys()))

    def restore(self, rows: Iterable[MinuteRow]) -> None:
        """Put back rows whose write failed, merging with what was counted meanwhile."""
        counted = self._counted
        for row in rows:
            key = (row.cinema_id, row.device_id, int(row.minute.timestamp() // 60.0))
            stats = counted.get(key)
            if stats is None:
                stats = counted[key] = {}
            a = stats.get(row.metric)
            if a is None:
                stats[row.metric] = [row.n, row.vmin, row.vmax, row.vsum]
            else:
                a[0] += row.n
                a[1] = min(a[1], row.vmin)
                a[2] = max(a[2], row.vmax)
                a[3] += row.vsum
        if len(counted) > self.max_buckets:
            self._shed()

    def _count(self, keys: Iterable[Key]) -> None:
        """Fold filed readings into their minute's counts (n, min, max, sum per metric)."""
        raw, counted = self._raw, self._counted
        for key in keys:
            filed = raw.pop(key, None)
            if filed is None:
                continue
            self.held -= len(filed)
            stats = counted.get(key)
            if stats is None:
                stats = counted[key] = {}
            names = filed[0].keys() if len(filed) == 1 else set().union(*filed)
            for name in names:
                values = [m[name] for m in filed if name in m]
                n, lo, hi, total = len(values), min(values), max(values), sum(values)
                a = stats.get(name)
                if a is None:
                    stats[name] = [n, lo, hi, total]
                else:
                    a[0] += n
                    if lo < a[1]:
                        a[1] = lo
                    if hi > a[2]:
                        a[2] = hi
                    a[3] += total
        if len(counted) > self.max_buckets:
            self._shed()

    def _take(self, keys: list[Key]) -> list[MinuteRow]:
        raw, counted = self._raw, self._counted
        rows: list[MinuteRow] = []
        add = rows.append
        minutes: dict[int, datetime] = {}
        for key in keys:
            cinema_id, device_id, index = key
            minute = minutes.get(index)
            if minute is None:
                minute = minutes[index] = datetime.fromtimestamp(index * 60, UTC)
            filed = raw.get(key)
            if filed is not None and len(filed) == 1 and key not in counted:
                # One reading in the minute (devices reporting every 60 s): no counting.
                del raw[key]
                self.held -= 1
                for name, v in filed[0].items():
                    add(MinuteRow(cinema_id, device_id, minute, name, 1, v, v, v))
                continue
            if filed is not None:
                self._count((key,))
            stats = counted.pop(key, None)
            if stats:
                for name, (n, lo, hi, total) in stats.items():
                    add(MinuteRow(cinema_id, device_id, minute, name, int(n), lo, hi, total))
        return rows

    def _shed(self) -> None:
        """Bounded memory while writes fail: the oldest tenth of the device-minutes go."""
        counted = self._counted
        keys = sorted(counted, key=lambda k: k[2])[: max(1, len(counted) // 10)]
        for key in keys:
            del counted[key]
        self.dropped += len(keys)
        log.warning("telemetry minute aggregates dropped", extra={"device_minutes": len(keys)})


Write = Callable[[list[MinuteRow]], Awaitable[int]]


class MinuteFlusher:
    """Writes the finished minutes every ``every_s`` and everything at :meth:`close`.

    ``write`` is the storage (``domain.telemetry_minutes.record_minutes``), ``now`` the
    wall clock in POSIX seconds: both come from the composition root, so this stays free
    of I/O of its own."""

    def __init__(
        self, aggregates: MinuteAggregates, write: Write, now: Callable[[], float],
        every_s: float = FLUSH_S,
    ) -> None:
        self.aggregates = aggregates
        self.write = write
        self.now = now
        self.every_s = every_s
        self.written = 0
        self._lock = asyncio.Lock()

    async def flush(self, everything: bool = False, budget_s: float | None = None) -> int:
        """Write what is due (or everything), ``CHUNK`` device-minutes a write; rows
        written. A failed write keeps its rows (and the rest) for the next flush; past
        ``budget_s`` the rest is left where it is."""
        written = 0
        deadline = None if budget_s is None else time.monotonic() + budget_s
        async with self._lock:
            agg = self.aggregates
            keys = list(agg.drain_keys()) if everything else agg.due(self.now())
            for i in range(0, len(keys), CHUNK):
                if deadline is not None and time.monotonic() > deadline:
                    log.warning("telemetry minute flush out of time",
                                extra={"device_minutes_left": len(keys) - i})
                    break
                rows = agg.take(keys[i:i + CHUNK])
                if not rows:
                    continue
                try:
                    await self.write(rows)
                except Exception:
                    log.exception("telemetry minute flush failed", extra={"rows": len(rows)})
                    agg.restore(rows)  # the rest of `keys` stays in the aggregator too
                    break
                written += len(rows)
                self.written += len(rows)
                await asyncio.sleep(0)  # let requests in between chunks
        return written

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.every_s)
            except TimeoutError:
                pass
            if not stop.is_set():
                await self.flush()

    async def close(self, budget_s: float = CLOSE_BUDGET_S) -> None:
        """Shutdown: everything held, within a budget (a stop must not hang on a backlog)."""
        await self.flush(everything=True, budget_s=budget_s)
