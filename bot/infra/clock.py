"""The one clock of the process (tests replace it with a clock they can move), and times as
people in the cinema read them: Shanghai time, in the chat's format."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")


class Clock(Protocol):
    def now(self) -> datetime:
        """A UTC-aware datetime."""
        ...

    def timestamp(self) -> float: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def timestamp(self) -> float:
        return time.time()


def local(dt: datetime) -> datetime:
    """A stored (UTC) datetime as people in the cinema see it."""
    return dt.astimezone(SHANGHAI)


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)  # stored times are UTC


def local_time_text(moment: datetime, now: datetime, seconds: bool = False) -> str:
    """A time as the chat shows it: Shanghai time, ``HH:MM`` when it is ``now``'s day there,
    else ``M月D日 HH:MM`` — never UTC. ``seconds``: ``HH:MM:SS`` (for log-like listings).
    Naive datetimes (``moment`` or ``now``) are taken as UTC, as stored times are."""
    at = _aware(moment).astimezone(SHANGHAI)
    clock = f"{at:%H:%M:%S}" if seconds else f"{at:%H:%M}"
    if at.date() == _aware(now).astimezone(SHANGHAI).date():
        return clock
    return f"{at.month}月{at.day}日 {clock}"


def local_date_time_text(moment: datetime) -> str:
    """``M月D日 HH:MM`` in Shanghai time, whatever the day: for text read later (a ticket,
    a web page), where "today" would go stale."""
    at = _aware(moment).astimezone(SHANGHAI)
    return f"{at.month}月{at.day}日 {at:%H:%M}"
