"""「转人工」 hand-offs: the audience is answered at once, the people who can help are told
by a background drainer.

The request path does not wait on the database. :meth:`HandoffQueue.request` claims the
person's ten-minute window and appends the request to a Redis list in one script call
(in the callback path's shared pipeline). The drainer of each web process moves requests
to a work list (so a process that dies mid-way leaves them there, not nowhere), writes
one outbox message per responder — the cinema's managers, else any staff — with the
person's masked phone if they gave one, and then removes them from the work list.
Requests left in the work list for ``STALE_S`` are put back for any drainer: a crashed
one's, or a slow one's, and writing them twice is harmless, as each message's outbox key
(person, ten-minute window, responder) is recorded once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bot.infra.clock import Clock
from bot.infra.logs import mask_phone, short_openid
from bot.infra.outage import STORE_DOWN, OutageLog
from bot.infra.redisbatch import CommandBatcher
from domain.outbox import Outgoing, insert_many
from domain.people import member_phones
from handlers.reference import ReferenceData

log = logging.getLogger(__name__)

QUEUE = "cb:handoff:queue"
WORK = "cb:handoff:work"
WINDOW_S = 600  # one hand-off per person per ten minutes, however often they ask
STALE_S = 60
TAKE = 100

_REQUEST = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  redis.call('RPUSH', KEYS[2], ARGV[2])
  return 1
end
return 0
"""
_TAKE = """
local out = {}
for i = 1, tonumber(ARGV[1]) do
  local v = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
  if not v then break end
  out[#out + 1] = v
end
return out
"""
_DONE = """
for i = 1, #ARGV do redis.call('LREM', KEYS[1], 1, ARGV[i]) end
return #ARGV
"""
# Work-list entries older than ARGV[1] (unix seconds), or unreadable, go back to the queue.
_REQUEUE = """
local n = 0
for _, v in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local ok, e = pcall(cjson.decode, v)
  if not ok or type(e) ~= 'table' or (tonumber(e['at']) or 0) < tonumber(ARGV[1]) then
    redis.call('LREM', KEYS[1], 1, v)
    redis.call('RPUSH', KEYS[2], v)
    n = n + 1
  end
end
return n
"""


def guard_key(openid: str) -> str:
    return f"cb:handoff:{openid}"


class HandoffQueue:
    def __init__(
        self,
        redis: Any,
        batcher: CommandBatcher,
        clock: Clock,
        reference: ReferenceData,
        agent_id: int,
        wake: Callable[[], None] | None = None,
        poll_s: float = 1.0,
        gather_s: float = 0.05,
    ) -> None:
        self._outage = OutageLog(log, "hand-off delivery: redis unavailable, retrying")
        self.batcher = batcher
        self.clock = clock
        self.reference = reference
        self.agent_id = agent_id
        self.wake = wake
        self.poll_s = poll_s
        self.gather_s = gather_s
        self._request = redis.register_script(_REQUEST)
        self._take = redis.register_script(_TAKE)
        self._done = redis.register_script(_DONE)
        self._requeue = redis.register_script(_REQUEUE)
        self._ready = asyncio.Event()
        self._stopping = False
        self.delivered = 0

    async def request(self, cinema_id: int, openid: str, text: str) -> bool:
        """Queue a hand-off; False when this person already asked in the last ten minutes."""
        entry = json.dumps(
            {"cinema": cinema_id, "openid": openid, "text": text[:100], "at": self.clock.timestamp()},
            ensure_ascii=False,
        )
        # Urgent: the message has already waited for its dedup claim; this reply should
        # not wait again behind the batches in flight.
        queued = bool(await self.batcher.eval(
            self._request, [guard_key(openid), QUEUE], [WINDOW_S, entry], urgent=True
        ))
        if queued:
            self._ready.set()
        return queued

    async def drain_once(self) -> int:
        """Deliver up to ``TAKE`` queued requests: how many were taken."""
        raw: list[bytes] = await self.batcher.eval(self._take, [QUEUE, WORK], [TAKE])
        if not raw:
            return 0
        entries: list[dict[str, Any]] = []
        for item in raw:
            try:
                entry = json.loads(item)
                entries.append({"cinema": int(entry["cinema"]), "openid": str(entry["openid"]),
                                "text": str(entry.get("text", "")), "at": float(entry["at"])})
            except (ValueError, KeyError, TypeError):
                log.error("unreadable hand-off request dropped", extra={"entry": repr(item)[:200]})
        rows: list[Outgoing] = []
        if entries:
            phones = await member_phones([e["openid"] for e in entries])
            for entry, phone in zip(entries, phones, strict=True):
                rows += self._messages(entry, phone, await self.reference.responders(entry["cinema"]))
        if rows:
            await insert_many(rows)
        await self.batcher.eval(self._done, [WORK], list(raw))
        self.delivered += len(entries)
        if rows and self.wake is not None:
            self.wake()
        return len(raw)

    def _messages(self, entry: dict[str, Any], phone: str | None, userids: list[str]) -> list[Outgoing]:
        openid = entry["openid"]
        who = f"顾客 {short_openid(openid)}"
        if phone:
            who += f"（{mask_phone(phone)}）"
        asked = datetime.fromtimestamp(entry["at"], UTC)
        bucket = int(entry["at"]) // WINDOW_S
        content = f"🙋 {who} 在公众号请求人工服务：「{entry['text']}」\n请尽快联系。"
        return [
            Outgoing(
                channel="wecom", recipient=userid,
                payload={"msgtype": "text", "agentid": self.agent_id, "text": {"content": content}},
                idempotency_key=f"handoff:{openid}:{bucket}:{userid}", now=asked,
            )
            for userid in userids
        ]

    async def requeue_stale(self) -> int:
        """Put back requests a drainer took more than ``STALE_S`` ago and never finished."""
        cutoff = self.clock.timestamp() - STALE_S
        return int(await self.batcher.eval(self._requeue, [WORK, QUEUE], [cutoff]))

    async def run(self) -> None:
        """Drain ``gather_s`` after a request is queued here (the requests of that moment
        share one drain: one query and one insert for all of them), else every ``poll_s``
        (requests queued by other processes, requeued ones); stops after one last drain."""
        since_requeue = 0.0
        while not self._stopping:
            try:
                await asyncio.wait_for(self._ready.wait(), self.poll_s)
                if self.gather_s > 0 and not self._stopping:
                    await asyncio.sleep(self.gather_s)
            except TimeoutError:
                since_requeue += self.poll_s
            self._ready.clear()
            try:
                if since_requeue >= STALE_S / 2:
                    since_requeue = 0.0
                    await self.requeue_stale()
                while await self.drain_once():
                    pass
            except STORE_DOWN as exc:
                self._outage.report(exc)
                await asyncio.sleep(self.poll_s)
            except Exception:
                log.exception("hand-off delivery failed; retrying")
                await asyncio.sleep(self.poll_s)

    def stop(self) -> None:
        self._stopping = True
        self._ready.set()
