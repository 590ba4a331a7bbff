"""What a job gets: a clock and the leader locks — a typed bundle, not the whole app."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from jobs.locks import LeaderLocks


class Clock(Protocol):
    def now(self) -> datetime: ...


@dataclass(frozen=True)
class JobContext:
    clock: Clock
    locks: LeaderLocks
