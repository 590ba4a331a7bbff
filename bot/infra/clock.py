"""The one clock of the process. Tests replace it with a clock they can move."""

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
