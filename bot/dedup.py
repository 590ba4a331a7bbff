"""Retry detection for callbacks: WeChat resends a message it got no answer to within 5 s.

The first delivery claims the message id with ``SET NX``. The claim is a
short lease while the handler runs; it becomes the rendered reply when the
handler finishes (so a retry gets the same answer again, without running the
handler again), or a "deferred" mark when the handler overran its budget and
the answer will go out asynchronously. If the process dies mid-handler the
lease lapses and WeChat's next retry is handled afresh, so nothing accepted
is lost.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import Enum
from typing import Any

import redis.asyncio as aioredis

from bot.redisbatch import CommandBatcher

_PENDING = b"p"
_DEFERRED = b"d"
_DONE = b"r:"


class ClaimState(Enum):
    NEW = "new"
    PENDING = "pending"
    DEFERRED = "deferred"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class Claim:
    state: ClaimState
    reply: str | None = None  # the plaintext reply XML, for DONE ("" = nothing to say)


class Deduplicator:
    def __init__(
        self, redis: aioredis.Redis, ttl: int = 600, lease: int = 10,
        batcher: CommandBatcher | None = None,
    ) -> None:
        self.redis = redis
        self.ttl = ttl
        self.lease = lease
        self._batch = batcher or CommandBatcher(redis)

    @staticmethod
    def _key(dedup_key: str) -> str:
        return f"cinebot:dedup:{dedup_key}"

    async def claim(self, dedup_key: str) -> Claim:
        key = self._key(dedup_key)
        if await self._batch.execute("SET", key, _PENDING, "NX", "EX", self.lease):
            return Claim(ClaimState.NEW)
        return self._decode(await self._batch.execute("GET", key))

    @staticmethod
    def _decode(value: bytes | None) -> Claim:
        if value is None:
            # The lease lapsed between SET and GET: the earlier attempt died.
            return Claim(ClaimState.PENDING)
        if value == _DEFERRED:
            return Claim(ClaimState.DEFERRED)
        if value.startswith(_DONE):
            return Claim(ClaimState.DONE, value[len(_DONE) :].decode("utf-8"))
        return Claim(ClaimState.PENDING)

    async def wait(self, dedup_key: str, timeout: float, interval: float = 0.05) -> Claim:
        """For a retry that arrives while the first delivery is still being handled."""
        key = self._key(dedup_key)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            claim = self._decode(await self.redis.get(key))
            if claim.state is not ClaimState.PENDING or loop.time() >= deadline:
                return claim
            await asyncio.sleep(interval)

    def finish(self, dedup_key: str, reply_xml: str) -> asyncio.Future[Any]:
        """Store the reply for retries; the caller need not wait (the future settles when
        the batch comes back)."""
        return self._batch.execute(
            "SET", self._key(dedup_key), _DONE + reply_xml.encode("utf-8"), "EX", self.ttl
        )

    async def defer(self, dedup_key: str) -> None:
        await self._batch.execute("SET", self._key(dedup_key), _DEFERRED, "EX", self.ttl)

    async def release(self, dedup_key: str) -> None:
        """Forget a claim whose handling failed before any effect, so a retry may try again."""
        await self.redis.delete(self._key(dedup_key))
