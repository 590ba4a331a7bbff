"""The live seat inventory of every showtime, in Redis: all-or-nothing holds, sales, quotas.

One seat is one key, ``cb:seat:{<showtime>}:<row-col>``, whose value names the
hold that owns it (``hold_id|owner|expires_ms``) and whose own TTL ends a little
after the hold does. A hold of several seats is one Lua script: every seat free
→ all of them held, otherwise nothing changes. Expiry is judged by the
``expires_ms`` in the value against the caller's clock — the app clock, which
tests can move — and the key TTL only cleans up.

Sold seats are a set per showtime loaded from the database (the source of
truth) the first time a showtime is touched; a script that finds the set
missing (first use, Redis restart, eviction) answers ``noload`` and the caller
loads it and asks again. The ``{showtime}`` hash tag keeps every key of a
showtime in one cluster slot.

A sale for money is *pending* until its tickets are committed (``sell(...,
pending=True)`` then ``settle``): the database is the truth, and a process may
die between the two. A pending sale is remembered in ``cb:selling:{showtime}``;
one that is not settled within ``SALE_TIMEOUT_MS`` belonged to a dead seller,
and the next touch of the showtime reloads the sold set from the database, so
its seats are sellable again. The same hold selling again while its sale is
pending (the payment notify retried after the crash) gets that sale back
instead of being told its own seats are taken.

This module knows seats only as labels and owners only as strings: what a seat
is worth and who may buy it are the domain's business.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from bot.infra.redisbatch import CommandBatcher

# Redis keeps a seat key this long after its hold ends; purely housekeeping.
KEY_SLACK_MS = 60_000
LOADED = "__loaded__"
# A pending sale older than this was made by a process that died before committing its
# tickets (a live one commits in well under a second; this is ample for a slow database).
SALE_TIMEOUT_MS = 90_000

# Pending sales: field = hold id, value = "started_ms|owner|p|labels" ("s" instead of "p":
# settled while the sold set was being reloaded, so the reload must count its seats).
_REAP = """
local function reap(sold, usold, selling, now)
  local entries = redis.call('HGETALL', selling)
  local dead = false
  for i = 1, #entries, 2 do
    local started, state = string.match(entries[i + 1], '^(%d+)|[^|]*|(%a)|')
    if state == 'p' and tonumber(started) + SALE_TIMEOUT_MS <= now then
      redis.call('HDEL', selling, entries[i])
      dead = true
    end
  end
  -- The sold set held the dead sale's seats: the database says what is really sold.
  if dead then redis.call('DEL', sold, usold) end
  return dead
end
""".replace("SALE_TIMEOUT_MS", str(SALE_TIMEOUT_MS))

# KEYS: sold set, per-owner sold counts, pending sales.  ARGV: now_ms
_REAP_NOW = _REAP + "return reap(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1]))"

_HOLD = _REAP + """
-- KEYS: sold set, per-owner sold counts, owner's holds (zset), pending sales, then the
--       seat keys (new seats first, then the replaced hold's seats)
-- ARGV: hold_id, owner, now_ms, expires_ms, cap, replace_hold_id, n_new, labels...
local sold, usold, uholds = KEYS[1], KEYS[2], KEYS[3]
local hold_id, owner = ARGV[1], ARGV[2]
local now, expires, cap = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local replace, n = ARGV[6], tonumber(ARGV[7])
if redis.call('EXISTS', sold) == 0 or reap(sold, usold, KEYS[4], now) then return {'noload'} end
local taken = {}
for i = 1, n do
  local label = ARGV[7 + i]
  if redis.call('SISMEMBER', sold, label) == 1 then
    taken[#taken + 1] = label
  else
    local v = redis.call('GET', KEYS[4 + i])
    if v then
      local hid, _, exp = string.match(v, '^([^|]*)|([^|]*)|(%d+)$')
      if hid ~= replace and tonumber(exp) > now then taken[#taken + 1] = label end
    end
  end
end
if #taken > 0 then
  table.insert(taken, 1, 'taken')
  return taken
end
redis.call('ZREMRANGEBYSCORE', uholds, '-inf', now)
local held = 0
for _, member in ipairs(redis.call('ZRANGE', uholds, 0, -1)) do
  local hid, count = string.match(member, '^([^:]*):(%d+)$')
  if hid ~= replace then held = held + tonumber(count) end
end
local already = tonumber(redis.call('HGET', usold, owner) or '0')
if already + held + n > cap then return {'quota', tostring(already + held)} end
if replace ~= '' then
  for i = 5 + n, #KEYS do
    local v = redis.call('GET', KEYS[i])
    if v and string.sub(v, 1, #replace + 1) == replace .. '|' then redis.call('DEL', KEYS[i]) end
  end
  for _, member in ipairs(redis.call('ZRANGE', uholds, 0, -1)) do
    if string.sub(member, 1, #replace + 1) == replace .. ':' then redis.call('ZREM', uholds, member) end
  end
end
local value = hold_id .. '|' .. owner .. '|' .. ARGV[4]
local ttl = expires - now + SLACK_MS
for i = 1, n do redis.call('SET', KEYS[4 + i], value, 'PX', ttl) end
redis.call('ZADD', uholds, expires, hold_id .. ':' .. n)
-- Only ever lengthen: a short hold must not end the bookkeeping of a longer one.
if redis.call('PTTL', uholds) < ttl then redis.call('PEXPIRE', uholds, ttl) end
return {'ok'}
""".replace("SLACK_MS", str(KEY_SLACK_MS))

_RELEASE = """
-- KEYS: owner's holds, seat keys.  ARGV: hold_id
local prefix = ARGV[1] .. '|'
local freed = 0
for i = 2, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if v and string.sub(v, 1, #prefix) == prefix then
    redis.call('DEL', KEYS[i])
    freed = freed + 1
  end
end
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if string.sub(member, 1, #ARGV[1] + 1) == ARGV[1] .. ':' then redis.call('ZREM', KEYS[1], member) end
end
return freed
"""

_SELL = _REAP + """
-- Turn a hold into a sale. Seats still held by this hold, or free again after it
-- lapsed, are sold; a seat sold or held by someone else in the meantime stops it.
-- KEYS: sold set, per-owner sold counts, owner's holds, pending sales, seat keys
-- ARGV: hold_id, owner, now_ms, pending (1|0), labels...
local sold, usold, uholds, selling = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local hold_id, owner, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local n = #ARGV - 4
if redis.call('EXISTS', sold) == 0 or reap(sold, usold, selling, now) then return {'noload'} end
local mine = redis.call('HGET', selling, hold_id)
if mine and string.match(mine, '^%d+|[^|]*|p|') then
  -- This hold's own sale, still pending: its seller died or stalls, and this is the
  -- payment retried. The seats are already sold for it; keep the sale alive.
  redis.call('HSET', selling, hold_id, (string.gsub(mine, '^%d+', ARGV[3])))
  return {'ok', '0'}
end
local taken, lapsed = {}, 0
for i = 1, n do
  local label = ARGV[4 + i]
  if redis.call('SISMEMBER', sold, label) == 1 then
    taken[#taken + 1] = label
  else
    local v = redis.call('GET', KEYS[4 + i])
    if v then
      local hid, _, exp = string.match(v, '^([^|]*)|([^|]*)|(%d+)$')
      if hid ~= hold_id then
        if tonumber(exp) > now then taken[#taken + 1] = label else lapsed = 1 end
      elseif tonumber(exp) <= now then lapsed = 1 end
    else
      lapsed = 1
    end
  end
end
if #taken > 0 then
  table.insert(taken, 1, 'taken')
  return taken
end
local labels = {}
for i = 1, n do
  labels[i] = ARGV[4 + i]
  redis.call('SADD', sold, ARGV[4 + i])
  redis.call('DEL', KEYS[4 + i])
end
redis.call('HINCRBY', usold, owner, n)
for _, member in ipairs(redis.call('ZRANGE', uholds, 0, -1)) do
  if string.sub(member, 1, #hold_id + 1) == hold_id .. ':' then redis.call('ZREM', uholds, member) end
end
if ARGV[4] == '1' then
  local entry = ARGV[3] .. '|' .. owner .. '|p|' .. table.concat(labels, ',')
  redis.call('HSET', selling, hold_id, entry)
  local keep = redis.call('PTTL', sold)
  if keep > 0 and redis.call('PTTL', selling) < keep then redis.call('PEXPIRE', selling, keep) end
end
return {'ok', tostring(lapsed)}
"""

_SETTLE = """
-- The tickets of a pending sale are committed: the sale stands.
-- KEYS: sold set, pending sales.  ARGV: hold_id
local v = redis.call('HGET', KEYS[2], ARGV[1])
if not v then return 0 end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HDEL', KEYS[2], ARGV[1])
else
  -- A reload is under way, and the database it read may predate this commit: let it
  -- count these seats.
  redis.call('HSET', KEYS[2], ARGV[1], (string.gsub(v, '^(%d+|[^|]*|)p|', '%1s|')))
end
return 1
"""

_UNSELL = """
-- KEYS: sold set, per-owner sold counts, pending sales.  ARGV: owner, hold_id or '', labels...
if ARGV[2] ~= '' then redis.call('HDEL', KEYS[3], ARGV[2]) end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local removed = 0
for i = 3, #ARGV do removed = removed + redis.call('SREM', KEYS[1], ARGV[i]) end
if removed > 0 then
  local left = redis.call('HINCRBY', KEYS[2], ARGV[1], -removed)
  if left <= 0 then redis.call('HDEL', KEYS[2], ARGV[1]) end
end
return removed
"""

_LOAD = """
-- KEYS: sold set, per-owner sold counts, pending sales.
-- ARGV: keep_ms, n_seats, labels..., owner, count, ...
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local n = tonumber(ARGV[2])
redis.call('SADD', KEYS[1], 'LOADED')
for i = 3, 2 + n do redis.call('SADD', KEYS[1], ARGV[i]) end
redis.call('DEL', KEYS[2])
for i = 3 + n, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
-- Sales in flight are not in the database yet (and one settled meanwhile may not have been
-- when it was read): their seats stay sold.
local entries = redis.call('HGETALL', KEYS[3])
for i = 1, #entries, 2 do
  local owner, state, labels = string.match(entries[i + 1], '^%d+|([^|]*)|(%a)|(.*)$')
  local added = 0
  for label in string.gmatch(labels, '[^,]+') do
    added = added + redis.call('SADD', KEYS[1], label)
  end
  if added > 0 then redis.call('HINCRBY', KEYS[2], owner, added) end
  if state == 's' then redis.call('HDEL', KEYS[3], entries[i]) end
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[1]) end
return 1
""".replace("LOADED", LOADED)


@dataclass(frozen=True, slots=True)
class Sold:
    """What the database says is sold for a showtime."""

    seats: Sequence[str]
    per_owner: dict[str, int] = field(default_factory=dict)
    keep_ms: int = 7 * 24 * 3600 * 1000  # how long Redis keeps the set (≥ until the show ends)


SoldLoader = Callable[[int], Awaitable[Sold]]


@dataclass(frozen=True, slots=True)
class HoldResult:
    ok: bool
    hold_id: str = ""
    expires_ms: int = 0
    taken: tuple[str, ...] = ()  # seats someone else holds or bought
    over_quota: bool = False
    already: int = 0  # seats the owner holds or bought for the showtime, when over quota


@dataclass(frozen=True, slots=True)
class SellResult:
    ok: bool
    lapsed: bool = False  # the hold had expired, but its seats were still free
    taken: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SeatStatus:
    state: str  # held | sold
    owner: str = ""
    hold_id: str = ""


def new_hold_id() -> str:
    return secrets.token_hex(8)


class SeatInventory:
    """All seat holds and sales of every showtime. One instance per process."""

    def __init__(
        self, redis: aioredis.Redis, load_sold: SoldLoader, prefix: str = "cb",
        batcher: CommandBatcher | None = None,
    ) -> None:
        self._redis = redis
        self._load_sold = load_sold
        self._prefix = prefix
        self._hold = redis.register_script(_HOLD)
        self._release = redis.register_script(_RELEASE)
        self._sell = redis.register_script(_SELL)
        self._unsell = redis.register_script(_UNSELL)
        self._settle = redis.register_script(_SETTLE)
        self._reap = redis.register_script(_REAP_NOW)
        self._load = redis.register_script(_LOAD)
        # Script calls issued in the same event-loop turn go out as one batch on one
        # connection: under a rush this is both faster and bounded in connections.
        self._batch = batcher or CommandBatcher(redis)
        self._filling: dict[int, asyncio.Task[None]] = {}  # showtime → its load in progress

    # Keys -------------------------------------------------------------------------------
    def _seat(self, showtime: int, label: str) -> str:
        return f"{self._prefix}:seat:{{{showtime}}}:{label}"

    def _sold(self, showtime: int) -> str:
        return f"{self._prefix}:sold:{{{showtime}}}"

    def _usold(self, showtime: int) -> str:
        return f"{self._prefix}:usold:{{{showtime}}}"

    def _uholds(self, showtime: int, owner: str) -> str:
        return f"{self._prefix}:uholds:{{{showtime}}}:{owner}"

    def _selling(self, showtime: int) -> str:
        return f"{self._prefix}:selling:{{{showtime}}}"

    # Operations -------------------------------------------------------------------------
    async def hold(
        self,
        showtime: int,
        seats: Sequence[str],
        owner: str,
        *,
        now_ms: int,
        ttl_ms: int,
        cap: int,
        replace: str | None = None,
        replace_seats: Sequence[str] = (),
        hold_id: str | None = None,
    ) -> HoldResult:
        """Hold every seat or none. ``replace``: a hold of the same owner to give up in the
        same step (its seats count as free for this hold), e.g. "换到7排"."""
        if not seats:
            raise ValueError("a hold needs at least one seat")
        if len(set(seats)) != len(seats):
            raise ValueError("a seat appears twice in one hold")
        hold_id = hold_id or new_hold_id()
        expires = now_ms + ttl_ms
        keys = [self._sold(showtime), self._usold(showtime), self._uholds(showtime, owner)]
        keys += [self._selling(showtime), *(self._seat(showtime, s) for s in seats)]
        keys += [self._seat(showtime, s) for s in replace_seats if s not in seats]
        args = [hold_id, owner, now_ms, expires, cap, replace or "", len(seats), *seats]
        answer = await self._run(showtime, self._hold, keys, args)
        status = _text(answer[0])
        if status == "ok":
            return HoldResult(True, hold_id=hold_id, expires_ms=expires)
        if status == "quota":
            return HoldResult(False, over_quota=True, already=int(_text(answer[1])))
        return HoldResult(False, taken=tuple(_text(a) for a in answer[1:]))

    async def release(self, showtime: int, hold_id: str, owner: str, seats: Iterable[str]) -> int:
        """Give up a hold. Only seats this hold still owns are freed: a lapsed hold whose
        seats someone else took meanwhile frees nothing of theirs."""
        keys = [self._uholds(showtime, owner), *(self._seat(showtime, s) for s in seats)]
        return int(await self._eval(self._release, keys, [hold_id]))

    async def sell(
        self, showtime: int, hold_id: str, owner: str, seats: Sequence[str], *, now_ms: int,
        pending: bool = False,
    ) -> SellResult:
        """Turn a hold into a sale. ``pending``: the sale stands only once ``settle`` says
        its tickets are committed; unsettled after ``SALE_TIMEOUT_MS``, it is taken back."""
        keys = [self._sold(showtime), self._usold(showtime), self._uholds(showtime, owner)]
        keys += [self._selling(showtime), *(self._seat(showtime, s) for s in seats)]
        args = [hold_id, owner, now_ms, 1 if pending else 0, *seats]
        answer = await self._run(showtime, self._sell, keys, args)
        if _text(answer[0]) == "ok":
            return SellResult(True, lapsed=_text(answer[1]) == "1")
        return SellResult(False, taken=tuple(_text(a) for a in answer[1:]))

    async def settle(self, showtime: int, hold_id: str) -> None:
        """The tickets of a pending sale are committed: the sale stands."""
        await self._eval(self._settle, [self._sold(showtime), self._selling(showtime)], [hold_id])

    async def unsell(
        self, showtime: int, owner: str, seats: Sequence[str], hold_id: str | None = None
    ) -> int:
        """Seats of a refunded or changed order go back on sale; ``hold_id``: of a pending
        sale that will not be settled (its tickets were refused)."""
        keys = [self._sold(showtime), self._usold(showtime), self._selling(showtime)]
        return int(await self._eval(self._unsell, keys, [owner, hold_id or "", *seats]))

    async def states(self, showtime: int, labels: Sequence[str], *, now_ms: int) -> dict[str, SeatStatus]:
        """Every seat that is not free right now (one round trip)."""
        await self.ensure_loaded(showtime)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.smembers(self._sold(showtime))
            pipe.mget([self._seat(showtime, s) for s in labels])
            pipe.hvals(self._selling(showtime))
            sold_raw, values, selling = await pipe.execute()
        if _dead_sale(selling, now_ms):
            # A seller died between its sale and its tickets: the database decides again.
            keys = [self._sold(showtime), self._usold(showtime), self._selling(showtime)]
            await self._eval(self._reap, keys, [now_ms])
            return await self.states(showtime, labels, now_ms=now_ms)
        out = {_text(s): SeatStatus("sold") for s in sold_raw}
        out.pop(LOADED, None)
        for label, raw in zip(labels, values, strict=True):
            if raw is None or label in out:
                continue
            hold_id, owner, expires = _text(raw).split("|")
            if int(expires) > now_ms:
                out[label] = SeatStatus("held", owner=owner, hold_id=hold_id)
        return out

    async def ensure_loaded(self, showtime: int) -> None:
        if not await self._redis.exists(self._sold(showtime)):
            await self._fill(showtime)

    async def forget(self, showtime: int) -> None:
        """Drop the cached sales of a showtime; the next use reloads them from the database."""
        await self._redis.delete(self._sold(showtime), self._usold(showtime))

    async def _fill(self, showtime: int) -> None:
        # One load per showtime at a time: after Redis lost its data, a rush of callers
        # all hear "noload" at once, and the database must not get one query from each.
        task = self._filling.get(showtime)
        if task is None or task.get_loop() is not asyncio.get_running_loop():
            task = asyncio.ensure_future(self._fill_now(showtime))
            self._filling[showtime] = task

            def done(t: asyncio.Task[None]) -> None:
                if self._filling.get(showtime) is t:
                    del self._filling[showtime]

            task.add_done_callback(done)
        await asyncio.shield(task)  # one caller giving up does not cancel the others' load

    async def _fill_now(self, showtime: int) -> None:
        sold = await self._load_sold(showtime)
        args: list[str | int] = [sold.keep_ms, len(sold.seats), *sold.seats]
        for owner, count in sold.per_owner.items():
            args += [owner, count]
        keys = [self._sold(showtime), self._usold(showtime), self._selling(showtime)]
        await self._eval(self._load, keys, args)

    async def _run(self, showtime: int, script, keys: list[str], args: list) -> list:  # type: ignore[no-untyped-def]
        answer = await self._eval(script, keys, args)
        if _text(answer[0]) == "noload":
            await self._fill(showtime)
            answer = await self._eval(script, keys, args)
        return answer

    async def _eval(self, script, keys: list[str], args: list) -> Any:  # type: ignore[no-untyped-def]
        return await self._batch.eval(script, keys, args)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _dead_sale(entries: Iterable[bytes | str], now_ms: int) -> bool:
    """Whether a pending sale (see ``_REAP``) has outlived ``SALE_TIMEOUT_MS``."""
    for raw in entries:
        started, _, state, _ = _text(raw).split("|", 3)
        if state == "p" and int(started) + SALE_TIMEOUT_MS <= now_ms:
            return True
    return False
