"""Automatic pipelining: Redis commands issued in the same event-loop turn go out as one batch.

Under load dozens of callbacks claim their dedup keys at once; sending them
as one pipeline costs one write and one read instead of one each, and frees
the connection pool from churn. Each caller still awaits its own result.

The batching is the group commit of :mod:`bot.infra.groupcommit`: one batch is on its
way at a time, and commands issued meanwhile wait for the next one, so under load
the batches grow instead of the number of round trips. One batcher is shared by the
callback path's users (dedup claims, dialog state, 转人工, seat scripts) so their
commands ride the same batches.

A batch is a redis-py pipeline (``transaction=False``) on the client's own connection
pool, so the batcher reaches whatever the client reaches — TCP, a unix socket, TLS, a
Sentinel-managed primary (and follows its failover) — and a caller gets what
``redis.execute_command`` would have given: redis-py's encoding, response callbacks
and error classes. One batch at a time is what keeps the commands in the order they
were issued: two pipelines may take two pooled connections, and Redis orders nothing
across connections, while a batch sent after the previous one came back is run after
it (the dialog store relies on this: a state write queued before a reply is seen by
the read of the user's next message). A batch that gets no answer within ``timeout``
seconds fails its callers (redis-py drops the connection it was read from); one whose
connection is lost is sent again as the client's retry policy says (``bot.infra.storage``:
once, at once), else its callers hear of it.

Why not a client of our own (issue 21): until then the batches went out on a
hand-written RESP connection (hiredis, two batches in flight on one socket). Weighed
with ``bench/callback.py --batcher-from`` (the whole callback pipeline, the two servers
back to back every round), it gave +18 % throughput against this module (median of 21
runs of 5 rounds; CPU per message ×0.83, p99 ×0.78) and +10 % against redis-py's
pipeline with two batches in flight (8 runs; fast, but out of order) — short of the
+20 % that would pay for protocol code of our own, which reached neither TLS nor
Sentinel.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.infra.groupcommit import GroupCommit

Command = tuple[Any, ...]


class CommandBatcher:
    def __init__(self, redis: aioredis.Redis, max_batch: int = 256, timeout: float = 5.0) -> None:
        self.redis = redis
        self.timeout = timeout
        self._encoder = redis.get_encoder()
        # One batch on its way at a time: see the module's docstring (order).
        self._group: GroupCommit[Command, Any] = GroupCommit(
            self._send, max_items=max_batch, delay_s=0.0, max_inflight=1
        )

    @property
    def max_batch(self) -> int:
        return self._group.max_items

    def execute(self, *args: Any, urgent: bool = False) -> asyncio.Future[Any]:
        """Queue a command for the batch being gathered; its future settles with the reply.

        ``urgent`` is accepted for the callers that mark a command issued after their
        work already waited a round trip (the 转人工 script); with one batch at a time
        (to keep the order) it goes with the next batch like any other."""
        try:
            # Encoded here, so that an argument Redis cannot take (a bool, None) fails its
            # own caller, not everyone in its batch; the name stays as given (redis-py
            # looks its response callback up by it).
            command = (args[0], *map(self._encoder.encode, args[1:]))
        except DataError as exc:
            failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            return failed
        return self._group.submit(command)

    async def eval(
        self, script: Any, keys: list[str], args: list[Any], urgent: bool = False
    ) -> Any:
        """Run a script registered with ``redis.register_script`` by its SHA, in the
        batch; loaded on first use (or after a Redis restart) through the batch too, so a
        rush of callers does not each open a connection of its own."""
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        try:
            return await self.execute(*command, urgent=urgent)
        except NoScriptError:
            await self.execute("SCRIPT LOAD", script.script, urgent=urgent)
            return await self.execute(*command, urgent=urgent)

    async def aclose(self) -> None:
        """Wait for the batch on its way; commands not yet sent, and later ones, fail."""
        await self._group.aclose(RedisConnectionError("the Redis batcher is closed"))

    async def _send(self, batch: list[Command]) -> Sequence[Any]:
        try:
            async with asyncio.timeout(self.timeout):
                async with self.redis.pipeline(transaction=False) as pipe:
                    for command in batch:
                        pipe.execute_command(*command)
                    # A command's error is its result, for its caller alone.
                    return await pipe.execute(raise_on_error=False)
        except TimeoutError:
            raise RedisTimeoutError(f"Redis did not answer within {self.timeout:g} s") from None
        except asyncio.CancelledError:
            # The batcher's own task was cancelled (shutdown): its callers hear of it as a
            # lost connection, not as a cancellation of their own.
            raise RedisConnectionError("the Redis batch was cancelled") from None
