"""Group commit: many callers' small writes go to the database as one statement.

A burst of first contacts (a QR code at a hall exit) or hand-offs would otherwise be
one INSERT each, and on SQLite's single connection every other request queues behind
them. :class:`GroupCommit` collects items for a moment (``delay_s``, or until
``max_items``) and hands the whole batch to one ``flush`` call. At most one flush runs
at a time: what arrives while it waits for the database becomes the next batch, so
the slower the database, the bigger the batches (instead of a queue of tiny ones). Every caller's
``await add(item)`` returns only after its batch has been written (so an answer sent
after it is backed by a committed row — nothing accepted is lost), and a failed flush
raises in every caller of that batch.

It is the database twin of ``bot.infra.redisbatch.CommandBatcher``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    def __init__(
        self,
        flush: Callable[[list[T]], Awaitable[list[R]]],
        *,
        max_items: int = 200,
        delay_s: float = 0.002,
    ) -> None:
        """``flush(items)`` writes a batch and returns one result per item, in order."""
        self._flush = flush
        self.max_items = max_items
        self.delay_s = delay_s
        self._items: list[T] = []
        self._waiters: list[asyncio.Future[R]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._busy = False
        self.batches = 0
        self.items = 0

    async def add(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[R] = loop.create_future()
        self._items.append(item)
        self._waiters.append(waiter)
        if self._busy:
            pass  # the running flush starts the next batch when it is done
        elif len(self._items) >= self.max_items:
            self._start()
        elif self._timer is None:
            self._timer = loop.call_later(self.delay_s, self._start)
        return await waiter

    def _start(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._items or self._busy:
            return
        items, waiters = self._items[: self.max_items], self._waiters[: self.max_items]
        del self._items[: self.max_items], self._waiters[: self.max_items]
        self._busy = True
        task = asyncio.get_running_loop().create_task(self._write(items, waiters))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _write(self, items: list[T], waiters: list[asyncio.Future[R]]) -> None:
        self.batches += 1
        self.items += len(items)
        try:
            await self._flush_into(items, waiters)
        finally:
            self._busy = False
            if self._items:
                self._start()

    async def _flush_into(self, items: list[T], waiters: list[asyncio.Future[R]]) -> None:
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
            if not w.done():
                w.set_result(r)

    async def drain(self) -> None:
        """Write what is collected now and wait for every batch in flight."""
        self._start()
        while self._running or self._items:
            if not self._running:
                self._start()
            await asyncio.gather(*list(self._running), return_exceptions=True)
