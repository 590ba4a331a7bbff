"""Redis locks for scheduled jobs, so N replicas run each job once per tick.

Two kinds, used together (``jobs.interval`` and the job bodies):

- a **tick claim** (``claim_tick``): the first replica to claim a job's tick runs it;
  the key names the tick and is never released, only left to expire well after the
  tick is over, so a replica whose scheduler fires a moment later (another process,
  a clock a little behind) finds it taken instead of running the job a second time;
- a **run lock** (``leader``): held while a run is under way and released when it
  ends, so a run that overruns its interval is never joined by the next tick's.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

# Delete the key only if we still own it: never release a lock another replica took over.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


class LeaderLocks:
    def __init__(self, redis: Any, prefix: str = "cinebot:leader:") -> None:
        self.redis = redis
        self.prefix = prefix
        self._release = redis.register_script(_RELEASE)

    @asynccontextmanager
    async def leader(self, name: str, ttl_seconds: float) -> AsyncIterator[bool]:
        """True while this replica runs ``name``, none other; released when the run ends.

        On its own this does not stop a second run in the same tick (one that starts
        after the first ended): the scheduler claims the tick first (``claim_tick``).
        """
        key = self.prefix + name
        token = secrets.token_hex(8)
        acquired = bool(await self.redis.set(key, token, nx=True, px=int(ttl_seconds * 1000)))
        try:
            yield acquired
        finally:
            if acquired:
                await self._release(keys=[key], args=[token])

    async def claim_tick(self, name: str, tick: int, ttl_seconds: float) -> bool:
        """Claim tick number ``tick`` of job ``name`` for this replica: True for the first
        claimant only. Never released: it expires after ``ttl_seconds``."""
        key = f"{self.prefix}{name}:tick:{tick}"
        return bool(await self.redis.set(key, secrets.token_hex(8), nx=True,
                                         px=int(ttl_seconds * 1000)))
