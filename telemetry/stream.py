"""Edge boxes that push to Redis: the ``telemetry:readings`` stream, read by a consumer group.

A box adds one entry per batch (a box that can reach Redis but not our HTTP endpoint,
or one that wants Redis to hold its batches while cinebot restarts)::

    XADD telemetry:readings MAXLEN ~ 100000 * box <box id> ts <unix seconds> sig <signature> body <JSON batch>

``body`` and ``sig`` are exactly what ``POST /telemetry/readings`` takes (the JSON list
of readings or ``{"readings": [...]}``; ``sig`` = hex(HMAC-SHA256(box key, ts + "\\n" +
body)), see ``telemetry.ingest.sign``). Every web process is a consumer of the group
``cinebot`` and reads with ``XREADGROUP ... BLOCK`` a few entries at a time. Each entry is
checked as the endpoint checks a request — active box, signature over ts and body,
``ts`` within the tolerance of the entry's *arrival* (its stream id is Redis's clock when
the box added it, so a backlog that waited out a restart of cinebot is still good, while
an old entry added again is stale) — then its readings go through the process's
``TelemetryIngest.ingest``, and only then is it acknowledged (XACK, and XDEL: the stream
is a queue, not an archive).

An entry that fails the checks is dead-lettered: added to ``telemetry:readings:dead``
with the reason (``bad_signature``, ``stale``, ``bad_json`` …; ``invalid_items`` for a
batch whose readings were accepted except some, with the per-item errors the endpoint
would have answered) and acknowledged in the same MULTI, so it is never read again.

Nothing accepted is lost when a process dies: its entries stay pending in the group, and
every consumer, when it starts and every ``CLAIM_EVERY_S`` after, takes over entries
pending longer than ``CLAIM_IDLE_MS`` (XAUTOCLAIM) and processes them. An entry that keeps
failing (delivered ``MAX_DELIVERIES`` times) is dead-lettered as ``failed`` instead of
being retried for ever. Readings are evaluated by the process that reads them: as with
POST behind a load balancer, several web processes each see part of a box's batches.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from telemetry.ingest import Refused, TelemetryIngest, parse_batch
from bot.infra.outage import OutageLog

log = logging.getLogger(__name__)

STREAM = "telemetry:readings"
DEAD_STREAM = "telemetry:readings:dead"
GROUP = "cinebot"
# Well under the Redis client's read timeout (a 5 s block answered a little late under
# load timed out and was logged as Redis being unavailable).
BLOCK_MS = 1_000
COUNT = 20  # entries a read; each entry is a whole batch
CLAIM_IDLE_MS = 60_000  # pending this long: its consumer is taken for dead
CLAIM_EVERY_S = 30.0
MAX_DELIVERIES = 5
DEAD_MAXLEN = 10_000
DEAD_BODY_MAX = 64 * 1024
STALE_CONSUMER_MS = 24 * 3600 * 1000  # consumers idle this long with nothing pending are removed

Fields = dict[bytes, bytes]


def _text(value: bytes | None) -> str:
    return (value or b"").decode("utf-8", "replace")


def arrival(entry_id: bytes | str) -> float:
    """When Redis took the entry: the milliseconds part of its id, in POSIX seconds."""
    raw = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(raw.split("-", 1)[0]) / 1000.0


class StreamConsumer:
    def __init__(
        self,
        redis: aioredis.Redis,
        ingest: TelemetryIngest,
        *,
        name: str | None = None,
        stream: str = STREAM,
        group: str = GROUP,
        dead_stream: str = DEAD_STREAM,
        block_ms: int = BLOCK_MS,
        count: int = COUNT,
        claim_idle_ms: int | None = None,
        claim_every_s: float = CLAIM_EVERY_S,
    ) -> None:
        self._outage = OutageLog(log, "telemetry stream: redis unavailable, retrying")
        self.redis = redis
        self.ingest = ingest
        # Unique per process (and per app in one process): a restarted process never
        # inherits a dead one's pending list by accident; XAUTOCLAIM takes it over instead.
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.stream, self.group, self.dead_stream = stream, group, dead_stream
        self.block_ms, self.count = block_ms, count
        self.claim_idle_ms = CLAIM_IDLE_MS if claim_idle_ms is None else claim_idle_ms
        self.claim_every_s = claim_every_s
        self.processed = 0  # entries whose batch was ingested
        self.readings = 0  # readings accepted from them
        self.dead = 0  # entries dead-lettered
        self.claimed = 0  # entries taken over from other consumers

    # --- the loop ---------------------------------------------------------------------------

    async def ensure_group(self) -> None:
        try:
            # From the stream's start: batches boxes added before the group existed count too.
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def run(self, stop: asyncio.Event) -> None:
        """Read, check, ingest, acknowledge until ``stop``; a blocked read is cancelled at
        once (what it may have been handed stays pending and is claimed later)."""
        stopping = asyncio.ensure_future(stop.wait())
        next_claim = 0.0
        try:
            while not stop.is_set():
                try:
                    if time.monotonic() >= next_claim:
                        await self.ensure_group()
                        await self.reclaim()
                        next_claim = time.monotonic() + self.claim_every_s
                    read = asyncio.ensure_future(self._read())
                    await asyncio.wait({read, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    if not read.done():
                        read.cancel()
                        await asyncio.gather(read, return_exceptions=True)
                        break
                    for entry_id, fields in read.result():
                        await self.handle(entry_id, fields)
                except ResponseError as exc:
                    if "NOGROUP" in str(exc):  # the stream was deleted: make it again
                        next_claim = 0.0
                        continue
                    log.exception("telemetry stream read failed")
                    await self._pause(stop)
                except (RedisError, OSError) as exc:
                    self._outage.report(exc)
                    await self._pause(stop)
                except Exception:  # the consumer must outlive one bad answer
                    log.exception("telemetry stream consumer error")
                    await self._pause(stop)
        finally:
            stopping.cancel()

    async def _pause(self, stop: asyncio.Event) -> None:
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            pass

    async def _read(self) -> list[tuple[bytes, Fields]]:
        answer = await self.redis.xreadgroup(
            self.group, self.name, {self.stream: ">"}, count=self.count, block=self.block_ms
        )
        return [entry for _, entries in answer or [] for entry in entries]

    async def reclaim(self, min_idle_ms: int | None = None) -> int:
        """Take over and process entries pending longer than ``min_idle_ms`` with any
        consumer (a dead process's); entries handed out too often are dead-lettered."""
        idle = self.claim_idle_ms if min_idle_ms is None else min_idle_ms
        taken = 0
        cursor: bytes | str = "0-0"
        while True:
            answer = await self.redis.xautoclaim(
                self.stream, self.group, self.name, idle, start_id=cursor, count=100
            )
            cursor, entries = answer[0], answer[1]
            live = [(i, f) for i, f in entries if i is not None and f is not None]
            gone = [i for i, f in entries if i is not None and f is None]  # trimmed meanwhile
            if gone:
                await self.redis.xack(self.stream, self.group, *gone)
            if live:
                delivered = await self._deliveries([i for i, _ in live])
                for entry_id, fields in live:
                    taken += 1
                    self.claimed += 1
                    if delivered.get(entry_id, 0) > MAX_DELIVERIES:
                        await self._dead(entry_id, fields, "failed",
                                         f"delivered over {MAX_DELIVERIES} times without success")
                    else:
                        await self.handle(entry_id, fields)
            if cursor in (b"0-0", "0-0"):
                break
        if taken:
            log.info("telemetry stream entries taken over", extra={"entries": taken, "consumer": self.name})
        await self._forget_stale_consumers()
        return taken

    async def _deliveries(self, ids: list[bytes]) -> dict[bytes, int]:
        rows = await self.redis.xpending_range(
            self.stream, self.group, min=ids[0], max=ids[-1], count=len(ids) + 100,
            consumername=self.name,
        )
        out: dict[bytes, int] = {}
        for row in rows:
            key = row["message_id"]
            out[key if isinstance(key, bytes) else str(key).encode()] = int(row["times_delivered"])
        return out

    async def _forget_stale_consumers(self) -> None:
        try:
            consumers = await self.redis.xinfo_consumers(self.stream, self.group)
        except ResponseError:
            return
        for c in consumers:
            name = c.get("name")
            name = name.decode() if isinstance(name, bytes) else str(name)
            idle, held = int(c.get("idle", 0)), int(c.get("pending", 0))
            if name != self.name and held == 0 and idle > STALE_CONSUMER_MS:
                await self.redis.xgroup_delconsumer(self.stream, self.group, name)

    # --- one entry --------------------------------------------------------------------------

    async def handle(self, entry_id: bytes, fields: Fields) -> None:
        """Check, ingest and acknowledge one entry (or dead-letter it). An unexpected
        failure leaves it pending: it is claimed and tried again later."""
        ingest = self.ingest
        body = fields.get(b"body", b"")
        try:
            cinema_id = await ingest.verify(
                _text(fields.get(b"box"))[:64], _text(fields.get(b"ts")), _text(fields.get(b"sig")),
                body, arrival(entry_id),
            )
        except Refused as exc:
            ingest.rejected += 1
            await self._dead(entry_id, fields, exc.code, exc.message)
            return
        try:
            if len(body) > ingest.max_body:
                raise Refused(413, "too_large", f"body over {ingest.max_body} bytes")
            batch = parse_batch(body)
        except Refused as exc:
            await self._dead(entry_id, fields, exc.code, exc.message)
            return
        try:
            accepted, errors = await ingest.ingest(cinema_id, batch)
        except Exception:
            log.exception("telemetry stream entry failed; it stays pending",
                          extra={"entry": _text(entry_id)})
            return
        self.processed += 1
        self.readings += accepted
        if errors:
            await self._dead(entry_id, fields, "invalid_items",
                             f"{accepted} accepted, {len(errors)} refused", errors=errors)
        else:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.xack(self.stream, self.group, entry_id)
                pipe.xdel(self.stream, entry_id)
                await pipe.execute()

    async def _dead(
        self, entry_id: bytes, fields: Fields, reason: str, message: str,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        body = fields.get(b"body", b"")
        letter: dict[str, Any] = {
            "id": entry_id,
            "box": fields.get(b"box", b"")[:64],
            "ts": fields.get(b"ts", b"")[:32],
            "reason": reason,
            "message": message,
            "body": body[:DEAD_BODY_MAX],
        }
        if len(body) > DEAD_BODY_MAX:
            letter["body_truncated"] = len(body)
        if errors is not None:
            letter["errors"] = json.dumps(errors, ensure_ascii=False)[:DEAD_BODY_MAX]
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.dead_stream, letter, maxlen=DEAD_MAXLEN, approximate=True)
            pipe.xack(self.stream, self.group, entry_id)
            pipe.xdel(self.stream, entry_id)
            await pipe.execute()
        self.dead += 1
        log.info("telemetry stream entry dead-lettered",
                 extra={"entry": _text(entry_id), "reason": reason, "box": _text(letter["box"])})
