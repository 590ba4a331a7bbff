"""Group commit: many callers' small operations go out together, each caller awaiting its own result.

A burst of callers (callbacks claiming their dedup keys, first contacts whose member
rows must be written) would otherwise cost one round trip each, and on a single
connection every other request queues behind them. :class:`GroupCommit` gathers the
items submitted for a moment (``delay_s``; zero means "the rest of this event-loop
turn") or until ``max_items``, and hands the whole batch to one ``flush`` call.

At most ``max_inflight`` flushes run at once: what arrives while they wait becomes the
next batch, sent as soon as one comes back, so the slower the other side, the bigger
the batches (instead of a queue of tiny ones). ``urgent`` lets an item that has already
waited a round trip go out with the next batch even when ``max_inflight`` flushes are
on their way (off unless ``allow_urgent``: a flush that overtakes another may break an
order its user relies on).

Every caller's future settles only when its batch has been flushed, so an answer given
after it is backed by the write. A flush that raises fails every caller of its batch
(and no other); a result that is an exception instance fails that item's caller alone
(as redis-py's pipeline reports a failed command among good ones).

Pure asyncio: the Redis command batcher (``bot.infra.redisbatch``) and the actor
directory's member rows (``handlers.actors``) are built on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Flush = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]


class GroupCommit(Generic[T, R]):
    def __init__(
        self,
        flush: Flush[T, R],
        *,
        max_items: int = 200,
        delay_s: float = 0.0,
        max_inflight: int = 1,
        allow_urgent: bool = False,
    ) -> None:
        """``flush(items)`` sends a batch and returns one result per item, in order."""
        if max_items < 1 or max_inflight < 1 or delay_s < 0:
            raise ValueError("max_items and max_inflight must be >= 1, delay_s >= 0")
        self._flush = flush
        self.max_items = max_items
        self.delay_s = delay_s
        self.max_inflight = max_inflight
        self.allow_urgent = allow_urgent
        self._items: list[T] = []
        self._waiters: list[asyncio.Future[R]] = []
        self._timer: asyncio.Handle | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._urgent = False  # an item waiting must not wait for a flush in flight
        self._closed: BaseException | None = None
        self.batches = 0
        self.items = 0

    @property
    def inflight(self) -> int:
        return len(self._running)

    def submit(self, item: T, *, urgent: bool = False) -> asyncio.Future[R]:
        """Queue an item for the batch being gathered; the future settles with its result.

        ``urgent`` (with ``allow_urgent``): for an item whose caller has already waited a
        round trip — it goes out with the next batch even when ``max_inflight`` flushes
        are on their way, taking what gathered before it along, instead of after one
        comes back."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[R] = loop.create_future()
        if self._closed is not None:
            waiter.set_exception(self._closed)
            return waiter
        self._items.append(item)
        self._waiters.append(waiter)
        if urgent and self.allow_urgent:
            self._urgent = True
        if len(self._running) >= self.max_inflight and not self._urgent:
            pass  # a flush that comes back starts what gathered meanwhile
        elif len(self._items) >= self.max_items:
            self._start()
        elif self._timer is None:
            self._timer = (
                loop.call_later(self.delay_s, self._start) if self.delay_s > 0
                else loop.call_soon(self._start)
            )
        return waiter

    async def add(self, item: T) -> R:
        """``submit`` and wait for the result."""
        return await self.submit(item)

    def _start(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._items and (len(self._running) < self.max_inflight or self._urgent):
            items, waiters = self._items[: self.max_items], self._waiters[: self.max_items]
            del self._items[: self.max_items], self._waiters[: self.max_items]
            self._urgent = False
            self.batches += 1
            self.items += len(items)
            task = asyncio.get_running_loop().create_task(self._write(items, waiters))
            self._running.add(task)
            task.add_done_callback(self._running.discard)  # also if cancelled before it ran

    async def _write(self, items: list[T], waiters: list[asyncio.Future[R]]) -> None:
        try:
            await self._settle(items, waiters)
        finally:
            # Here rather than in a done callback, which would run a loop turn later.
            self._running.discard(asyncio.current_task())  # type: ignore[arg-type]
            if self._items and self._timer is None:
                self._start()  # what gathered during the flush goes now, not after a delay

    async def _settle(self, items: list[T], waiters: list[asyncio.Future[R]]) -> None:
        try:
            results = await self._flush(items)
            if len(results) != len(items):
                raise RuntimeError(f"flush returned {len(results)} results for {len(items)} items")
        except BaseException as exc:  # every caller of the batch learns it failed
            for w in waiters:
                if not w.done():
                    w.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for w, r in zip(waiters, results, strict=True):
            if w.done():
                continue
            if isinstance(r, BaseException):
                w.set_exception(r)
            else:
                w.set_result(r)

    async def drain(self) -> None:
        """Flush what is gathered now and wait for every flush in flight."""
        self._start()
        while self._running or self._items:
            if self._items and len(self._running) < self.max_inflight:
                self._start()
            await asyncio.gather(*list(self._running), return_exceptions=True)

    async def aclose(self, exc: BaseException | None = None) -> None:
        """Refuse new items (their futures fail with ``exc``), fail those still gathering,
        and wait for the flushes in flight."""
        self._closed = exc or RuntimeError("the group commit is closed")
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiters, self._waiters, self._items = self._waiters, [], []
        for w in waiters:
            if not w.done():
                w.set_exception(self._closed)
        if self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)
