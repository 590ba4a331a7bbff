"""SLA clocks, derived on read from a work order's timeline (never stored counters).

A clock runs from the order's creation, only within the cinema's business hours
when the policy says so, stops while the order is paused, and ends at the event
that satisfies it (acknowledge, resolve). Warning at 80 %, breach at 100 %.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")
WARN_AT = 0.8


@dataclass(frozen=True, slots=True)
class BusinessHours:
    """Opening hours of a cinema, every day; a close at or before the open means after
    midnight (09:00–02:00)."""

    opens: time
    closes: time
    tz: ZoneInfo = SHANGHAI
    always: bool = False

    @classmethod
    def parse(cls, opens: str, closes: str, always: bool = False) -> BusinessHours:
        return cls(time.fromisoformat(opens), time.fromisoformat(closes), always=always)

    def _windows(self, start: datetime, end: datetime) -> Iterable[tuple[datetime, datetime]]:
        """Open windows overlapping [start, end), clipped to it."""
        day = start.astimezone(self.tz).date() - timedelta(days=1)
        last = end.astimezone(self.tz).date()
        while day <= last:
            w0 = datetime.combine(day, self.opens, self.tz)
            w1 = datetime.combine(day, self.closes, self.tz)
            if w1 <= w0:
                w1 += timedelta(days=1)
            a, b = max(w0, start), min(w1, end)
            if a < b:
                yield a, b
            day += timedelta(days=1)

    def seconds_between(self, start: datetime, end: datetime) -> float:
        if end <= start:
            return 0.0
        if self.always:
            return (end - start).total_seconds()
        return sum((b - a).total_seconds() for a, b in self._windows(start, end))

    def add(self, start: datetime, seconds: float) -> datetime:
        """The moment ``seconds`` of business time after ``start``."""
        if self.always:
            return start + timedelta(seconds=seconds)
        left = seconds
        cursor = start
        while True:
            horizon = cursor + timedelta(days=2)
            for a, b in self._windows(cursor, horizon):
                span = (b - a).total_seconds()
                if span >= left:
                    return a + timedelta(seconds=left)
                left -= span
            cursor = horizon


@dataclass(frozen=True, slots=True)
class Clock:
    """One SLA clock (acknowledge or resolve) as of ``now``."""

    name: str  # ack | resolve
    target_s: float
    elapsed_s: float
    due_at: datetime | None  # None while paused (the deadline moves)
    done_at: datetime | None
    paused: bool
    # When this clock (re)started: the creation, or the last reopen for the resolve clock.
    # Warnings and escalations recorded before it belong to an earlier run of the clock.
    started_at: datetime | None = None

    @property
    def ratio(self) -> float:
        return self.elapsed_s / self.target_s if self.target_s else 0.0

    @property
    def warning(self) -> bool:
        return self.done_at is None and WARN_AT <= self.ratio < 1.0

    @property
    def breached(self) -> bool:
        return self.ratio >= 1.0

    @property
    def running(self) -> bool:
        return self.done_at is None


@dataclass(frozen=True, slots=True)
class Mark:
    """A timeline event as the SLA sees it."""

    at: datetime
    action: str  # acknowledge | resolve | pause | resume | reopen | ...


def clocks(
    created_at: datetime,
    marks: Sequence[Mark],
    *,
    ack_minutes: int,
    resolve_minutes: int,
    hours: BusinessHours,
    now: datetime,
) -> tuple[Clock, Clock]:
    """(acknowledge clock, resolve clock). A reopen restarts the resolve clock."""
    pauses: list[tuple[datetime, datetime]] = []
    paused_since: datetime | None = None
    acked: datetime | None = None
    resolved: datetime | None = None
    resolve_start = created_at
    for m in sorted(marks, key=lambda m: m.at):
        if m.action == "pause" and paused_since is None:
            paused_since = m.at
        elif m.action in ("resume", "resolve", "reopen") and paused_since is not None:
            pauses.append((paused_since, m.at))
            paused_since = None
        if m.action == "acknowledge" and acked is None:
            acked = m.at
        elif m.action == "resolve":
            resolved = m.at
            acked = acked or m.at
        elif m.action == "reopen":
            resolved = None
            resolve_start = m.at
    if paused_since is not None:
        pauses.append((paused_since, now))

    def build(name: str, start: datetime, done: datetime | None, minutes: int) -> Clock:
        end = done or now
        # Pauses of this run of the clock, clipped to it, in order.
        stops = sorted((max(a, start), min(b, end)) for a, b in pauses if b > start and a < end)
        paused_s = sum(hours.seconds_between(a, b) for a, b in stops)
        elapsed = max(hours.seconds_between(start, end) - paused_s, 0.0)
        target = minutes * 60.0
        is_paused = done is None and paused_since is not None
        due = None if is_paused else _due(hours, start, target, stops)
        return Clock(name, target, elapsed, due, done, is_paused, start)

    return (
        build("ack", created_at, acked, ack_minutes),
        build("resolve", resolve_start, resolved, resolve_minutes),
    )


def _due(
    hours: BusinessHours,
    start: datetime,
    target_s: float,
    stops: Sequence[tuple[datetime, datetime]],
) -> datetime:
    """The moment ``target_s`` of unpaused business time has run since ``start``. Only
    pauses before that moment push it back: pausing an already late order does not make
    it on time."""
    left, cursor = target_s, start
    for a, b in stops:
        if b <= cursor:
            continue
        running = hours.seconds_between(cursor, max(a, cursor))
        if running >= left:
            break
        left -= running
        cursor = b
    return hours.add(cursor, left)
