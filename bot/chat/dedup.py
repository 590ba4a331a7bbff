"""Retry detection and the inbound journal: once a callback is answered 200, its message
is handled, even if the process that answered dies a millisecond later.

WeChat resends a message it got no answer to within 5 s (three retries). The first
delivery claims the message's dedup key; the claim names its owner, a process whose
liveness is a short heartbeat lease (:class:`ProcessLease`). The claim moves through:

- ``p:<owner>`` pending: the owner is handling it and has not answered yet. A retry
  waits for the answer; if the owner's heartbeat is gone the retry takes the claim
  over and handles the message afresh; if the owner is alive but still busy when the
  retry's budget runs out, the retry is answered 503 so WeChat tries once more.
- ``d:<owner>`` deferred: the handler overran its budget. *Before* WeChat is answered
  ``success`` the message is written to the journal (a Redis hash, persisted with
  Redis), so a dead owner's work is found and re-run by any live process
  (:meth:`Deduplicator.orphans` / :meth:`Deduplicator.adopt`).
- ``r:<xml>`` done: the reply, kept so that a retry gets the same answer again.

Handling is therefore *at least once*: a process that dies after a handler's effects
but before its claim is settled has the message run again, by the retry or by the
journal. Handlers are written to be idempotent under such a re-run (their effects are
keyed by the message's dedup key).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from enum import Enum
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bot.infra.redisbatch import CommandBatcher

log = logging.getLogger(__name__)

ALIVE_PREFIX = "cinebot:alive:"
JOURNAL_KEY = "cinebot:inbound:journal"
LIVE_OWNER_TRUST_S = 60.0  # a journal entry this young is left alone while its recorder lives


class ClaimState(Enum):
    NEW = "new"  # ours to handle (first delivery, or taken over from a dead owner)
    PENDING = "pending"
    DEFERRED = "deferred"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class Claim:
    state: ClaimState
    reply: str | None = None  # the plaintext reply XML, for DONE ("" = nothing to say)
    owner: str | None = None  # PENDING: who holds it; NEW: whose claim we took over
    taken_over: bool = False


class ProcessLease:
    """This process's heartbeat: ``cinebot:alive:<id>`` lives ``ttl`` seconds and is
    renewed every ``every`` seconds. A claim whose owner's key is gone belongs to a dead
    process.

    After Redis was unreachable, other owners' keys may have lapsed only because they
    could not renew them either: :attr:`steady` stays False until this process has seen
    Redis answer for a whole ``ttl``, and takeovers wait for it."""

    def __init__(self, redis: aioredis.Redis, ttl: float = 3.0, every: float = 1.0) -> None:
        assert every * 2 < ttl, "a heartbeat must be renewed well within its lifetime"
        self.redis = redis
        self.ttl = ttl
        self.every = every
        self.id = f"{os.getpid()}-{uuid.uuid4().hex[:10]}"
        self.key = ALIVE_PREFIX + self.id
        self._healthy_since: float | None = None

    @property
    def steady(self) -> bool:
        since = self._healthy_since
        return since is not None and asyncio.get_running_loop().time() - since >= self.ttl

    async def beat(self) -> None:
        await self.redis.set(self.key, b"1", px=int(self.ttl * 1000))

    async def run(self) -> None:
        """Renew until cancelled; on cancellation the key is removed (a clean exit)."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    await self.beat()
                    if self._healthy_since is None:
                        self._healthy_since = loop.time()
                except (RedisError, OSError):
                    self._healthy_since = None  # the outage is logged by whoever needs Redis
                await asyncio.sleep(self.every)
        finally:
            try:
                await asyncio.shield(self.redis.delete(self.key))
            except (RedisError, OSError, asyncio.CancelledError):
                pass


# KEYS[1] claim; ARGV: owner, lease seconds, alive prefix, may take over (1/0).
_CLAIM = """
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], 'p:' .. ARGV[1], 'EX', ARGV[2])
  return {'new', ''}
end
local tag = string.sub(v, 1, 2)
if tag == 'r:' then return {'done', string.sub(v, 3)} end
if tag == 'd:' then return {'deferred', string.sub(v, 3)} end
if tag == 'p:' then
  local owner = string.sub(v, 3)
  if ARGV[4] == '1' and owner ~= ARGV[1] and redis.call('EXISTS', ARGV[3] .. owner) == 0 then
    redis.call('SET', KEYS[1], 'p:' .. ARGV[1], 'EX', ARGV[2])
    return {'taken', owner}
  end
  return {'pending', owner}
end
return {'pending', ''}
"""

# KEYS: claim, journal; ARGV: owner, ttl, dedup key, entry. Journal first: the claim
# only says "deferred" once the message is on record.
_DEFER = """
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
redis.call('SET', KEYS[1], 'd:' .. ARGV[1], 'EX', ARGV[2])
return 1
"""

# KEYS: claim, journal; ARGV: owner, ttl, dedup key, reply. Settles only our own claim:
# if another process took it over, the journal entry is now theirs.
_SETTLE = """
local v = redis.call('GET', KEYS[1])
if v and v == 'd:' .. ARGV[1] then
  redis.call('SET', KEYS[1], 'r:' .. ARGV[4], 'EX', ARGV[2])
  redis.call('HDEL', KEYS[2], ARGV[3])
  return 1
end
return 0
"""

# KEYS: claim, journal; ARGV: owner, ttl, dedup key, alive prefix. A journalled message
# whose claim is gone or held by a dead process becomes ours (deferred: it was answered).
_ADOPT = """
if redis.call('HEXISTS', KEYS[2], ARGV[3]) == 0 then return 0 end
local v = redis.call('GET', KEYS[1])
if v then
  local tag = string.sub(v, 1, 2)
  if tag == 'r:' then redis.call('HDEL', KEYS[2], ARGV[3]) return 0 end
  local owner = string.sub(v, 3)
  if owner == ARGV[1] or redis.call('EXISTS', ARGV[4] .. owner) == 1 then return 0 end
end
redis.call('SET', KEYS[1], 'd:' .. ARGV[1], 'EX', ARGV[2])
return 1
"""


class Deduplicator:
    def __init__(
        self,
        redis: aioredis.Redis,
        ttl: int = 600,
        lease: int = 60,
        batcher: CommandBatcher | None = None,
        owner: ProcessLease | None = None,
    ) -> None:
        self.redis = redis
        self.ttl = ttl
        self.lease = lease  # a pending claim outlives its owner's heartbeat by far
        self._batch = batcher or CommandBatcher(redis)
        self.owner = owner or ProcessLease(redis)
        self._claim = redis.register_script(_CLAIM)
        self._defer = redis.register_script(_DEFER)
        self._settle = redis.register_script(_SETTLE)
        self._adopt = redis.register_script(_ADOPT)

    @staticmethod
    def _key(dedup_key: str) -> str:
        return f"cinebot:dedup:{dedup_key}"

    def _may_take_over(self) -> str:
        return "1" if self.owner.steady else "0"

    async def claim(self, dedup_key: str) -> Claim:
        state, detail = await self._batch.eval(
            self._claim,
            [self._key(dedup_key)],
            [self.owner.id, self.lease, ALIVE_PREFIX, self._may_take_over()],
        )
        return _decode(state, detail)

    async def wait(self, dedup_key: str, timeout: float, interval: float = 0.05) -> Claim:
        """For a retry that arrives while the first delivery is still being handled:
        the first one's outcome, or the claim itself if its owner died meanwhile, or
        PENDING when ``timeout`` passes first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            claim = await self.claim(dedup_key)
            if claim.state is not ClaimState.PENDING or loop.time() >= deadline:
                return claim
            await asyncio.sleep(interval)

    def finish(self, dedup_key: str, reply_xml: str) -> asyncio.Future[Any]:
        """Store the reply for retries; the caller need not wait (the future settles when
        the batch comes back)."""
        return self._batch.execute(
            "SET", self._key(dedup_key), b"r:" + reply_xml.encode("utf-8"), "EX", self.ttl
        )

    async def defer(self, dedup_key: str, message: dict[str, Any]) -> None:
        """Record the message in the journal and mark the claim deferred, atomically;
        only then may WeChat be told ``success``."""
        entry = json.dumps(
            {"owner": self.owner.id, "at": time.time(), "message": message}, ensure_ascii=False
        )
        await self._batch.eval(
            self._defer,
            [self._key(dedup_key), JOURNAL_KEY],
            [self.owner.id, self.ttl, dedup_key, entry],
        )

    async def settle(self, dedup_key: str, reply_xml: str = "") -> bool:
        """A deferred (or adopted) message has been handled: drop it from the journal.
        False if the claim is no longer ours (another process took it over)."""
        done = await self._batch.eval(
            self._settle,
            [self._key(dedup_key), JOURNAL_KEY],
            [self.owner.id, self.ttl, dedup_key, reply_xml],
        )
        return bool(done)

    async def release(self, dedup_key: str) -> None:
        """Forget a claim whose handling failed before any answer, so a retry may try again."""
        await self.redis.delete(self._key(dedup_key))

    async def orphans(
        self, channel_prefix: str, limit: int = 100
    ) -> list[tuple[str, dict[str, Any]]]:
        """Journalled messages of one channel whose recording process is gone (or is this
        one); the caller tries :meth:`adopt` on each, which checks the claim itself. A
        live owner's entries are skipped here with one EXISTS per owner, not a script per
        entry: under load many messages are deferred at once, all of them alive."""
        out: list[tuple[str, dict[str, Any]]] = []
        alive: dict[str, bool] = {}
        async for field, value in self.redis.hscan_iter(JOURNAL_KEY, match=f"{channel_prefix}*"):
            key = field.decode("utf-8") if isinstance(field, bytes) else field
            try:
                entry = json.loads(value)
                message = entry["message"]
            except (ValueError, KeyError, TypeError):
                log.error("unreadable inbound journal entry dropped", extra={"dedup": key})
                await self.redis.hdel(JOURNAL_KEY, key)
                continue
            owner = entry.get("owner")
            young = time.time() - float(entry.get("at") or 0) < LIVE_OWNER_TRUST_S
            # (An old entry is checked claim by claim even if its recorder lives: its claim
            # may have passed to an adopter that died since.)
            if young and isinstance(owner, str) and owner != self.owner.id:
                if owner not in alive:
                    alive[owner] = bool(await self.redis.exists(ALIVE_PREFIX + owner))
                if alive[owner]:
                    continue
            out.append((key, message))
            if len(out) >= limit:
                break
        return out

    async def adopt(self, dedup_key: str) -> bool:
        """Take over a journalled message whose owner is dead (or whose claim lapsed)."""
        if not self.owner.steady:
            return False
        taken = await self._adopt(
            keys=[self._key(dedup_key), JOURNAL_KEY],
            args=[self.owner.id, self.ttl, dedup_key, ALIVE_PREFIX],
        )
        return bool(taken)


def _decode(state: bytes | str, detail: bytes | str) -> Claim:
    state = state.decode() if isinstance(state, bytes) else state
    text = detail.decode("utf-8") if isinstance(detail, bytes) else detail
    if state == "new":
        return Claim(ClaimState.NEW)
    if state == "taken":
        return Claim(ClaimState.NEW, owner=text, taken_over=True)
    if state == "done":
        return Claim(ClaimState.DONE, text)
    if state == "deferred":
        return Claim(ClaimState.DEFERRED, owner=text)
    return Claim(ClaimState.PENDING, owner=text or None)
