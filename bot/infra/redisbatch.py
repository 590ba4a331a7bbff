"""Automatic pipelining: Redis commands issued in the same event-loop turn go out as one batch.

Under load dozens of callbacks claim their dedup keys at once; sending them
as one pipeline costs one write and one read instead of one each, and frees
the connection pool from churn. Each caller still awaits its own result.

At most ``max_inflight`` batches are on the wire at once; commands issued
meanwhile wait for the next one (group commit): under load the batches grow
instead of the number of writes. One batcher is shared by the callback path's
users (dedup claims, dialog state, 转人工, seat scripts) so their commands ride
the same batches.

The batches travel on one connection of the batcher's own, spoken to in RESP
through hiredis (the parser redis-py itself uses): a batch is packed once and
written once, and its replies are handed to their callers in order as they
arrive, without a task per batch or a coroutine per command. redis-py's
response callbacks and error classes are applied, so a caller gets what
``redis.execute_command`` would have given. The connection is opened on first
use and again after it is lost; a server that stops answering for ``timeout``
seconds has the connection closed, and every waiting caller hears of it. TLS
servers (``rediss://``) are reached through redis-py's own pipeline instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import hiredis
import redis.asyncio as aioredis
from redis._parsers.base import BaseParser
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

Batch = list[tuple[tuple[Any, ...], "asyncio.Future[Any]"]]
ResponseCallback = Callable[..., Any] | None


def pack(args: tuple[Any, ...]) -> bytes:
    """One command in RESP, arguments encoded as redis-py encodes them (str as UTF-8,
    numbers as their decimal text); a first argument such as ``"SCRIPT LOAD"`` is
    split into its words, as redis-py does."""
    if isinstance(args[0], str) and " " in args[0]:
        args = (*args[0].split(), *args[1:])
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            value = arg.encode()
        elif isinstance(arg, bytes):
            value = arg
        elif isinstance(arg, bool):
            raise TypeError("a bool is not a Redis argument; convert it to a number or text")
        elif isinstance(arg, int):
            value = b"%d" % arg
        elif isinstance(arg, float):
            value = repr(arg).encode()
        elif isinstance(arg, memoryview):
            value = arg.tobytes()
        else:
            raise TypeError(f"cannot send {type(arg).__name__} to Redis")
        parts.append(b"$%d\r\n%s\r\n" % (len(value), value))
    return b"".join(parts)


class _Wire(asyncio.Protocol):
    """One connection; replies come back in the order the commands were written."""

    def __init__(self, on_batch_done: Callable[[], None], on_lost: Callable[[_Wire], None]) -> None:
        self._reader = hiredis.Reader(
            protocolError=InvalidResponse, replyError=BaseParser.parse_error
        )
        # (caller's future, response callback, last reply of its batch?)
        self.waiting: deque[tuple[asyncio.Future[Any], ResponseCallback, bool]] = deque()
        self.transport: asyncio.Transport | None = None
        self.replies = 0  # counts every reply: the watchdog's sign of progress
        self._failure: Exception | None = None
        self._on_batch_done = on_batch_done
        self._on_lost = on_lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, though not always an asyncio.Transport subclass (uvloop's are not).
        self.transport = cast(asyncio.Transport, transport)

    def write(self, data: bytes, waiters: list[tuple[asyncio.Future[Any], ResponseCallback, bool]]) -> None:
        assert self.transport is not None
        self.waiting.extend(waiters)
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while True:
            try:
                reply = self._reader.gets()
            except Exception as exc:  # the stream is out of step: nothing after it can be trusted
                self.abort(exc)
                return
            if reply is False:
                return
            if not self.waiting:
                self.abort(InvalidResponse("Redis sent a reply nobody asked for"))
                return
            self.replies += 1
            future, callback, last = self.waiting.popleft()
            if not future.done():
                if isinstance(reply, Exception):
                    future.set_exception(reply)
                else:
                    try:
                        future.set_result(reply if callback is None else callback(reply))
                    except Exception as exc:
                        future.set_exception(exc)
            if last:
                self._on_batch_done()

    def abort(self, exc: Exception) -> None:
        self._failure = exc
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        failure = self._failure or RedisConnectionError(
            f"Redis connection lost: {exc}" if exc else "Redis closed the connection"
        )
        self.transport = None
        while self.waiting:
            future, _, _ = self.waiting.popleft()
            if not future.done():
                future.set_exception(failure)
        self._on_lost(self)


class CommandBatcher:
    # Which path the batches take: "auto" (the hand-written wire, redis-py's pipeline for
    # TLS) or "pipeline" (redis-py's pipeline, with the same batching: max_inflight and
    # urgent as on the wire). bench/callback.py --batcher sets it to compare the two.
    transport = "auto"

    def __init__(
        self, redis: aioredis.Redis, max_batch: int = 256, max_inflight: int = 2,
        timeout: float = 5.0,
    ) -> None:
        self.redis = redis
        self.max_batch = max_batch
        self.max_inflight = max_inflight
        self.timeout = timeout
        self._pending: Batch = []
        self._scheduled = False
        self._urgent = False  # something waiting must not wait for a batch in flight
        self._inflight = 0
        self._wire: _Wire | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._callbacks: dict[Any, ResponseCallback] = {}
        self._closed = False
        kind = redis.connection_pool.connection_class
        self._raw = not issubclass(kind, SSLConnection)
        self._same_batching = self.transport == "pipeline"
        if self._same_batching:
            self._raw = False
        elif not self._raw:
            # Pipelines may take different pooled connections; one at a time keeps the
            # commands in the order they were issued (a write is seen by a later read).
            self.max_inflight = 1
        self._pipelines: set[asyncio.Task[None]] = set()

    def execute(self, *args: Any, urgent: bool = False) -> asyncio.Future[Any]:
        """Queue a command for the batch being gathered; its future settles with the reply.

        ``urgent``: for a command issued after the caller's work has already waited a
        round trip (a script inside a handler, say) — it goes out with the next batch even
        when ``max_inflight`` batches are on their way, instead of after one comes back.
        (Not on TLS, where one pipeline at a time keeps the order.)"""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((args, future))
        if urgent and (self._raw or self._same_batching):
            self._urgent = True
        if self._inflight >= self.max_inflight and not self._urgent:
            pass  # a batch that comes back sends what gathered meanwhile
        elif len(self._pending) >= self.max_batch:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

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
            await self.execute("SCRIPT", "LOAD", script.script, urgent=urgent)
            return await self.execute(*command, urgent=urgent)

    async def aclose(self) -> None:
        """Close the batcher's connection; callers still waiting hear of it."""
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        if self._pipelines:
            await asyncio.gather(*self._pipelines, return_exceptions=True)
        wire = self._wire
        if wire is not None and wire.transport is not None:
            wire.transport.close()
        self._fail_pending(RedisConnectionError("the Redis batcher is closed"))

    # Sending ---------------------------------------------------------------------------
    def _flush(self) -> None:
        self._scheduled = False
        if (self._inflight >= self.max_inflight and not self._urgent) or not self._pending:
            return
        if self._closed:
            self._fail_pending(RedisConnectionError("the Redis batcher is closed"))
            return
        if not self._raw:
            self._flush_pipeline()
            return
        wire = self._wire
        if wire is None or wire.transport is None:
            if self._connecting is None:
                self._connecting = asyncio.ensure_future(self._connect())
            return
        batch = self._pending[: self.max_batch]
        del self._pending[: self.max_batch]
        self._urgent = False
        waiters = []
        packed = []
        for args, future in batch:
            try:
                packed.append(pack(args))
            except TypeError as exc:
                future.set_exception(exc)
                continue
            waiters.append((future, self._callback(args[0]), False))
        if not waiters:  # nothing sendable in this batch: go on with the rest
            if self._pending:
                self._flush()
            return
        future, callback, _ = waiters[-1]
        waiters[-1] = (future, callback, True)
        self._inflight += 1
        wire.write(b"".join(packed), waiters)
        if self._watchdog is None:
            self._arm_watchdog(wire, wire.replies)

    def _callback(self, name: Any) -> ResponseCallback:
        # The same lookup as redis-py's: by the command's first argument, any case.
        try:
            return self._callbacks[name]
        except KeyError:
            key = name.decode() if isinstance(name, bytes) else name
            callback = self._callbacks[name] = self.redis.response_callbacks.get(key)
            return callback

    def _batch_done(self) -> None:
        self._inflight -= 1
        if self._pending and not self._scheduled:
            self._flush()

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        pool = self.redis.connection_pool
        kwargs = pool.connection_kwargs
        wire = _Wire(self._batch_done, self._lost)
        try:
            connect_timeout = kwargs.get("socket_connect_timeout") or self.timeout
            async with asyncio.timeout(connect_timeout):
                if issubclass(pool.connection_class, UnixDomainSocketConnection):
                    await loop.create_unix_connection(lambda: wire, kwargs["path"])
                else:
                    await loop.create_connection(
                        lambda: wire, kwargs.get("host", "localhost"), kwargs.get("port", 6379)
                    )
                hello: list[tuple[Any, ...]] = []
                if kwargs.get("password"):
                    username = kwargs.get("username")
                    hello.append(
                        ("AUTH", username, kwargs["password"]) if username
                        else ("AUTH", kwargs["password"])
                    )
                if kwargs.get("db"):
                    hello.append(("SELECT", kwargs["db"]))
                if hello:
                    answers = [loop.create_future() for _ in hello]
                    waiters = [(f, None, False) for f in answers]
                    wire.write(b"".join(pack(args) for args in hello), waiters)
                    await asyncio.gather(*answers)
        except BaseException as exc:
            self._connecting = None
            if wire.transport is not None:
                wire.transport.abort()
            failure: Exception
            if isinstance(exc, TimeoutError):
                failure = RedisTimeoutError("timed out connecting to Redis")
            elif isinstance(exc, RedisConnectionError | ResponseError):  # e.g. a refused password
                failure = exc
            else:  # OSError, cancellation
                failure = RedisConnectionError(f"cannot connect to Redis: {exc!r}")
            self._fail_pending(failure)
            if not isinstance(exc, Exception):
                raise
            return
        self._connecting = None
        self._wire = wire
        self._flush()

    def _lost(self, wire: _Wire) -> None:
        if self._wire is wire:
            self._wire = None
            self._inflight = 0
            if self._watchdog is not None:
                self._watchdog.cancel()
                self._watchdog = None
            if self._pending and not self._closed:
                self._flush()  # reconnects

    def _arm_watchdog(self, wire: _Wire, seen: int) -> None:
        loop = asyncio.get_running_loop()
        self._watchdog = loop.call_later(self.timeout, self._watch, wire, seen)

    def _watch(self, wire: _Wire, seen: int) -> None:
        self._watchdog = None
        if wire is not self._wire or not wire.waiting:
            return
        if wire.replies == seen:
            log.error("redis stopped answering; dropping the batch connection",
                      extra={"waiting": len(wire.waiting)})
            wire.abort(RedisTimeoutError(f"Redis did not answer within {self.timeout:g} s"))
            return
        self._arm_watchdog(wire, wire.replies)

    def _fail_pending(self, exc: Exception) -> None:
        pending, self._pending = self._pending, []
        for _, future in pending:
            if not future.done():
                future.set_exception(exc)

    # TLS: redis-py's pipeline ----------------------------------------------------------
    def _flush_pipeline(self) -> None:
        batch = self._pending[: self.max_batch]
        del self._pending[: self.max_batch]
        self._urgent = False
        self._inflight += 1
        task = asyncio.ensure_future(self._send_pipeline(batch))
        self._pipelines.add(task)
        task.add_done_callback(self._pipeline_sent)

    def _pipeline_sent(self, task: asyncio.Task[None]) -> None:
        self._pipelines.discard(task)
        self._batch_done()

    async def _send_pipeline(self, batch: Batch) -> None:
        try:
            pipe = self.redis.pipeline(transaction=False)
            for args, _ in batch:
                pipe.execute_command(*args)
            results = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # connection lost, cancelled: every caller must hear of it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else RedisConnectionError())
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
