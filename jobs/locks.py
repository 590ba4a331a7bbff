"""A Redis leader lock per job tick, so N replicas run each job once."""

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
        key = self.prefix + name
        token = secrets.token_hex(8)
        acquired = bool(await self.redis.set(key, token, nx=True, px=int(ttl_seconds * 1000)))
        try:
            yield acquired
        finally:
            if acquired:
                await self._release(keys=[key], args=[token])
