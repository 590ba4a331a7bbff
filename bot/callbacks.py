"""The aiohttp side of ``/wechat/callback`` and ``/wecom/callback``: I/O and acknowledgement only.

Verification and parsing live in the sans-I/O codecs; what to say lives in the
handlers. This module reads the body (bounded), answers 4xx for anything that
fails verification, recognises WeChat's retries, runs the dispatcher under a
time budget, and answers ``success`` when the budget runs out — the late reply
then goes out asynchronously through the late-reply sink (the outbox).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from aiohttp import web

from bot.channels import CallbackRejected, Inbound
from bot.channels.inbound import Channel
from bot.clock import Clock
from bot.dedup import ClaimState, Deduplicator
from bot.logs import short_openid
from bot.metrics import Metrics
from bot.replies import Reply
from bot.router import Dispatcher

log = logging.getLogger(__name__)

LateReplySink = Callable[[Inbound, Reply], Awaitable[None]]


class Codec(Protocol):
    channel: Channel

    def verify_url(self, query: Mapping[str, str], now: float) -> str: ...

    def decode(
        self, query: Mapping[str, str], body: bytes, now: float
    ) -> tuple[Inbound, bool]: ...

    def render(self, reply: Reply, inbound: Inbound) -> str: ...

    def encode(self, xml: str, encrypted: bool, nonce: str, timestamp: int) -> str: ...


class BodyTooLarge(Exception):
    pass


async def read_bounded(request: web.Request, limit: int) -> bytes:
    """The whole body, or BodyTooLarge. A declared length over the limit is refused
    before reading; a chunked body is cut off by aiohttp at the app's ``client_max_size``
    (which the app sets just above the limit) and refused here if it passed that."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise BodyTooLarge from None
    if len(body) > limit:
        raise BodyTooLarge
    return body


class CallbackEndpoint:
    def __init__(
        self,
        codec: Codec,
        dispatcher: Dispatcher,
        dedup: Deduplicator,
        clock: Clock,
        metrics: Metrics,
        late_reply: LateReplySink,
        tasks: set[asyncio.Future[Any]],
        budget: float = 4.0,
        max_body: int = 1024 * 1024,
    ) -> None:
        self.codec = codec
        self.channel = str(codec.channel)
        self.dispatcher = dispatcher
        self.dedup = dedup
        self.clock = clock
        self.metrics = metrics
        self.late_reply = late_reply
        self.tasks = tasks
        self.budget = budget
        self.deadlines = _Deadlines(budget)
        self.max_body = max_body
        # WeChat wants the literal `success`; WeCom takes an empty 200.
        self.ack = "success" if codec.channel is Channel.WECHAT else ""

    def _reject(self, exc: CallbackRejected, request: web.Request) -> web.Response:
        self.metrics.rejected.labels(self.channel, exc.reason).inc()
        log.warning(
            "callback rejected",
            extra={
                "channel": self.channel,
                "status": exc.status,
                "reason": exc.reason,
                "detail": exc.detail,
                "peer": request.remote,
            },
        )
        return web.Response(status=exc.status, text=exc.reason)

    async def get(self, request: web.Request) -> web.Response:
        try:
            echo = self.codec.verify_url(request.query, self.clock.timestamp())
        except CallbackRejected as exc:
            return self._reject(exc, request)
        return web.Response(text=echo, content_type="text/plain")

    async def post(self, request: web.Request) -> web.Response:
        try:
            body = await read_bounded(request, self.max_body)
        except BodyTooLarge:
            return self._reject(CallbackRejected(413, "body_too_large"), request)
        try:
            inbound, encrypted = self.codec.decode(request.query, body, self.clock.timestamp())
        except CallbackRejected as exc:
            return self._reject(exc, request)
        self.metrics.child(self.metrics.callbacks, self.channel, _kind_label(inbound)).inc()
        nonce = request.query.get("nonce", "")

        key = inbound.dedup_key
        # Read the sender's dialog state in the same Redis batch as the claim: one round
        # trip for both (a retry simply does not use it).
        prefetched = self.dispatcher.prefetch(inbound)
        try:
            claim = await self.dedup.claim(key)
        except BaseException:
            self.dispatcher.unused(prefetched)
            raise
        if claim.state is not ClaimState.NEW:
            self.dispatcher.unused(prefetched)
        if claim.state is ClaimState.PENDING:
            # A retry while the first delivery is still running: give it the
            # first one's answer if it comes within our budget.
            claim = await self.dedup.wait(key, self.budget)
        if claim.state is not ClaimState.NEW:
            self.metrics.dedup_hits.labels(self.channel).inc()
            log.info(
                "retried callback answered without rerunning",
                extra={"channel": self.channel, "dedup": claim.state.value},
            )
            if claim.state is ClaimState.DONE and claim.reply:
                return self._xml(claim.reply, encrypted, nonce)
            return web.Response(text=self.ack)

        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Reply | None] = loop.create_future()
        self.deadlines.watch(answer)
        # Not in ``tasks`` unless it overruns: until then this request holds it, and the
        # server's graceful shutdown waits for requests in flight.
        task = loop.create_task(self._handle(inbound, prefetched, answer))
        try:
            reply = await answer
        except asyncio.CancelledError:
            self._track(task)  # this request is gone; the handler still finishes
            raise
        except Exception:
            # Nothing was answered: drop the claim so WeChat's retry is handled afresh
            # instead of waiting on a lease nobody will finish. (aiohttp logs it and answers 500.)
            await self.dedup.release(key)
            raise
        if reply is OVERRAN:
            self._track(task)
            await self.dedup.defer(key)
            self.metrics.deferred.labels(self.channel).inc()
            log.warning(
                "handler overran its budget; replying asynchronously",
                extra={"channel": self.channel, "user": short_openid(inbound.user_id)},
            )
            return web.Response(text=self.ack)
        xml = self.codec.render(reply, inbound) if reply and not reply.is_empty else ""
        # Remember the answer for WeChat's retries without making this answer wait for
        # Redis; a retry arriving meanwhile waits on the still-pending claim.
        self._track(self.dedup.finish(key, xml))  # a future of the Redis batch, not a task
        if not xml:
            return web.Response(text=self.ack)
        return self._xml(xml, encrypted, nonce)

    def _track(self, work: asyncio.Future[Any]) -> None:
        """Keep work that outlives its request in ``tasks`` (shutdown waits for it) and
        log it if it fails."""
        self.tasks.add(work)
        work.add_done_callback(self._settled)

    def _settled(self, work: asyncio.Future[Any]) -> None:
        self.tasks.discard(work)
        _log_failure(work)

    async def _handle(
        self,
        inbound: Inbound,
        prefetched: asyncio.Future[bytes | None] | None,
        answer: asyncio.Future[Reply | None],
    ) -> None:
        """Run the dispatcher and hand its reply to the waiting request — straight from
        this task, without a done-callback hop. A reply that comes after the budget ran
        out (``answer`` already settled) goes out through the late-reply sink instead."""
        try:
            try:
                reply = await self.dispatcher.feed(inbound, prefetched)
            except Exception as exc:
                if not answer.done():
                    answer.set_exception(exc)
                    return
                log.error(
                    "late handler failed; no reply will be sent",
                    exc_info=exc,
                    extra={"channel": self.channel, "user": short_openid(inbound.user_id)},
                )
                return
            if not answer.done():
                answer.set_result(reply)
            elif reply is not None and not reply.is_empty:
                try:
                    await self.late_reply(inbound, reply)
                except Exception:
                    log.exception("background callback work failed")
        finally:
            if not answer.done():  # cancelled (shutdown): the request must not wait forever
                answer.cancel()

    def _xml(self, xml: str, encrypted: bool, nonce: str) -> web.Response:
        body = self.codec.encode(xml, encrypted, nonce, int(self.clock.timestamp()))
        return web.Response(text=body, content_type="application/xml")


class _Overran:
    """The handler did not answer within the budget."""


OVERRAN: Any = _Overran()


class _Deadlines:
    """The budgets of the requests in flight. They all have the same length, so they run
    out in the order they were set: one loop timer, armed for the oldest, instead of a
    timer per request."""

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self._queue: deque[tuple[float, asyncio.Future[Any]]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, answer: asyncio.Future[Any]) -> None:
        """Settle ``answer`` with OVERRAN once the budget has passed, unless it is settled
        by then."""
        loop = asyncio.get_running_loop()
        queue = self._queue
        while queue and queue[0][1].done():  # answered: nothing to watch any more
            queue.popleft()
        queue.append((loop.time() + self.budget, answer))
        if self._timer is None:
            self._timer = loop.call_at(queue[0][0], self._expire)

    def _expire(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        queue = self._queue
        while queue and (queue[0][0] <= now or queue[0][1].done()):
            _, answer = queue.popleft()
            if not answer.done():
                answer.set_result(OVERRAN)
        self._timer = loop.call_at(queue[0][0], self._expire) if queue else None


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background callback work failed", exc_info=task.exception())


_KNOWN_EVENTS = frozenset(
    {
        "subscribe", "unsubscribe", "scan", "click", "view", "location", "scancode_waitmsg",
        "scancode_push", "enter_agent", "template_card_event", "template_card_menu_event",
    }
)


def _kind_label(inbound: Inbound) -> str:
    # Label values come from signed but external input: keep their number bounded.
    if inbound.kind != "event":
        return inbound.kind
    return inbound.event if inbound.event in _KNOWN_EVENTS else "other_event"
