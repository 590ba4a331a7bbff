"""What a job gets: a clock, the leader locks and the services it acts through — a typed
bundle, not the whole app."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from domain.ticketing import Gateway, Inventory
from jobs.locks import LeaderLocks


class Clock(Protocol):
    def now(self) -> datetime: ...


@dataclass(frozen=True)
class JobContext:
    clock: Clock
    locks: LeaderLocks
    inventory: Inventory | None = None
    gateway: Gateway | None = None
