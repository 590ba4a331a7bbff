"""Automatic pipelining: Redis commands issued in the same event-loop turn go out as one batch.

Under load dozens of callbacks claim their dedup keys at once; sending them
as one pipeline costs one write and one read instead of one each, and frees
the connection pool from churn. Each caller still awaits its own result.

At most ``max_inflight`` pipelines are on the wire at once; commands issued
meanwhile wait for the next one (group commit): under load the batches grow
instead of the number of round trips, each of which costs the client far more
CPU than a command does. One batcher is shared by the callback path's users
(dedup claims, dialog state) so their commands ride the same pipelines.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError


class CommandBatcher:
    def __init__(self, redis: aioredis.Redis, max_batch: int = 256, max_inflight: int = 2) -> None:
        self.redis = redis
        self.max_batch = max_batch
        self.max_inflight = max_inflight
        self._pending: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._scheduled = False
        self._inflight: set[asyncio.Task[None]] = set()

    def execute(self, *args: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((args, future))
        if len(self._inflight) >= self.max_inflight:
            pass  # a pipeline that comes back sends what gathered meanwhile
        elif len(self._pending) >= self.max_batch:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._scheduled = False
        if len(self._inflight) >= self.max_inflight:
            return
        batch = self._pending[: self.max_batch]
        del self._pending[: self.max_batch]
        if batch:
            task = asyncio.ensure_future(self._send(batch))
            self._inflight.add(task)
            task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if self._pending and not self._scheduled:
            self._flush()

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        try:
            if len(batch) == 1:
                (args, future), = batch
                results: list[Any] = [await self.redis.execute_command(*args)]
            else:
                pipe = self.redis.pipeline(transaction=False)
                for args, _ in batch:
                    pipe.execute_command(*args)
                results = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # connection lost, cancelled: every caller must hear of it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else ConnectionError())
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def eval(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """Run a script registered with ``redis.register_script`` by its SHA, in the
        batch; loaded on first use (or after a Redis restart) through the batch too, so a
        rush of callers does not each open a connection of its own."""
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        try:
            return await self.execute(*command)
        except NoScriptError:
            await self.execute("SCRIPT", "LOAD", script.script)
            return await self.execute(*command)
