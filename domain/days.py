"""The cinema's business day: it ends at 03:00 Shanghai time, so a late show's audience,
its tickets and its feedback belong to the evening they started in."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")
# A cinema's day ends at 03:00: a late show's audience rates "today's" visit after midnight.
DAY_ENDS = timedelta(hours=3)


def business_day(now: datetime) -> date:
    """The cinema day ``now`` belongs to (it ends at 03:00 the next morning)."""
    return (now.astimezone(SHANGHAI) - DAY_ENDS).date()


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The UTC instants [start, end) of business day ``day``."""
    start = datetime.combine(day, time(0), SHANGHAI) + DAY_ENDS
    return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)
