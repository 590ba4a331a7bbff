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
from dataclasses import fields
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from aiohttp import web

from bot.chat.channels import CallbackRejected, Inbound
from bot.chat.channels.inbound import Channel
from bot.infra.clock import Clock
from bot.chat.dedup import ClaimState, Deduplicator
from bot.infra.logs import short_openid
from bot.infra.outage import STORE_DOWN, OutageLog
from bot.infra.metrics import Metrics
from bot.chat.replies import Reply
from bot.chat.router import Dispatcher

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
        self.outage = OutageLog(log, f"{self.channel} callbacks: redis unavailable")
        # Journalled messages of ours that Redis failed mid-way: handled but not settled,
        # or not handled yet. ``recover`` finishes them.
        self._unsettled: set[str] = set()
        self._unfinished: dict[str, Inbound] = {}
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
        try:
            return await self._answer(inbound, encrypted, nonce)
        except STORE_DOWN as exc:
            # Redis is unreachable: nothing was recorded, so WeChat must try again later.
            # One log line per interval, not a traceback per callback.
            self.outage.report(exc)
            return web.Response(status=503, text="store_unavailable")

    async def _answer(self, inbound: Inbound, encrypted: bool, nonce: str) -> web.Response:
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
            prefetched = None
        if claim.state is ClaimState.PENDING:
            # A retry while the first delivery is still running: give it the first one's
            # answer if it comes within our budget (or take over if its owner dies).
            claim = await self.dedup.wait(key, self.budget)
        if claim.taken_over:
            log.warning(
                "callback taken over from a dead process",
                extra={"channel": self.channel, "owner": claim.owner},
            )
        if claim.state is ClaimState.PENDING:
            # Its owner lives but has not answered, nor recorded the message as deferred:
            # not ours to promise. WeChat retries what does not get a 200.
            log.warning("retry found its message still in hand; asking for another retry",
                        extra={"channel": self.channel, "owner": claim.owner})
            return web.Response(status=503, text="in_progress")
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
        # Settled once the overrun branch below has (or has failed to) put the message on
        # record; a late handler settles the record only after that.
        recorded: asyncio.Future[bool] = loop.create_future()
        task = loop.create_task(self._handle(inbound, prefetched, answer, recorded))
        try:
            reply = await answer
        except asyncio.CancelledError:
            recorded.set_result(False)
            self._track(task)  # this request is gone; the handler still finishes
            raise
        except Exception:
            recorded.set_result(False)
            # Nothing was answered: drop the claim so WeChat's retry is handled afresh
            # instead of waiting on a lease nobody will finish. (aiohttp logs it and answers 500.)
            await self.dedup.release(key)
            raise
        if reply is OVERRAN:
            self._track(task)
            # On record before the 200: if this process dies now, another one finds the
            # message in the journal and runs it (the handler reports to the journal
            # when it ends, see ``_handle``).
            try:
                await self.dedup.defer(key, inbound_to_record(inbound))
            except BaseException:
                recorded.set_result(False)
                raise
            recorded.set_result(True)
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

    async def recover(self, limit: int = 100) -> int:
        """Run journalled messages of this channel whose owner died after answering
        WeChat (see ``bot.chat.dedup``); their replies go out through the late-reply sink.
        Returns how many were adopted."""
        # Our own leftovers first: Redis failed us mid-way, and our live heartbeat keeps
        # other processes off these claims.
        for key in list(self._unsettled):
            await self.dedup.settle(key)
            self._unsettled.discard(key)
        for inbound in list(self._unfinished.values()):
            del self._unfinished[inbound.dedup_key]
            await self._run_late(inbound)
        adopted = 0
        for key, record in await self.dedup.orphans(f"{self.channel}:", limit):
            if not await self.dedup.adopt(key):
                continue
            adopted += 1
            try:
                inbound = inbound_from_record(record)
            except (KeyError, TypeError, ValueError):
                log.error("unreadable journalled message dropped", extra={"dedup": key})
                await self.dedup.settle(key)
                continue
            log.warning(
                "re-running a message whose process died after answering",
                extra={"channel": self.channel, "user": short_openid(inbound.user_id)},
            )
            await self._run_late(inbound)
        return adopted

    async def _run_late(self, inbound: Inbound) -> None:
        """Handle a message nobody waits for, reply through the sink, settle its claim."""
        try:
            reply = await self.dispatcher.feed(inbound)
            if reply is not None and not reply.is_empty:
                await self.late_reply(inbound, reply)
        except STORE_DOWN:
            # Still on record and still ours: run it again once Redis is back.
            self._unfinished[inbound.dedup_key] = inbound
            raise
        except Exception:
            log.exception("recovered message failed; it is dropped from the journal")
        try:
            await self.dedup.settle(inbound.dedup_key)
        except STORE_DOWN:
            self._unsettled.add(inbound.dedup_key)
            raise

    def _track(self, work: asyncio.Future[Any]) -> None:
        """Keep work that outlives its request in ``tasks`` (shutdown waits for it) and
        log it if it fails."""
        self.tasks.add(work)
        work.add_done_callback(self._settled)

    def _settled(self, work: asyncio.Future[Any]) -> None:
        self.tasks.discard(work)
        if not work.cancelled() and isinstance(work.exception(), STORE_DOWN):
            # e.g. the reply kept for retries was not stored: WeChat already has it.
            self.outage.report(work.exception())  # type: ignore[arg-type]
            return
        _log_failure(work)

    async def _handle(
        self,
        inbound: Inbound,
        prefetched: asyncio.Future[bytes | None] | None,
        answer: asyncio.Future[Reply | None],
        recorded: asyncio.Future[bool],
    ) -> None:
        """Run the dispatcher and hand its reply to the waiting request — straight from
        this task, without a done-callback hop. A reply that comes after the budget ran
        out (``answer`` already settled) goes out through the late-reply sink instead,
        and the message's journal entry is settled."""
        try:
            try:
                reply = await self.dispatcher.feed(inbound, prefetched)
            except Exception as exc:
                if not answer.done():
                    answer.set_exception(exc)
                    return
                if isinstance(exc, STORE_DOWN) and await recorded:
                    self._unfinished[inbound.dedup_key] = inbound  # ``recover`` runs it again
                    self.outage.report(exc)
                    return
                log.error(
                    "late handler failed; no reply will be sent",
                    exc_info=exc,
                    extra={"channel": self.channel, "user": short_openid(inbound.user_id)},
                )
                await self._settle_late(inbound, recorded)
                return
            if not answer.done():
                answer.set_result(reply)
                return
            if reply is not None and not reply.is_empty:
                try:
                    await self.late_reply(inbound, reply)
                except Exception:
                    log.exception("background callback work failed")
                    return  # left in the journal: a live process re-runs it
            await self._settle_late(inbound, recorded)
        finally:
            if not answer.done():  # cancelled (shutdown): the request must not wait forever
                answer.cancel()

    async def _settle_late(self, inbound: Inbound, recorded: asyncio.Future[bool]) -> None:
        # The overrun branch of ``_answer`` puts the message on record while this task
        # runs on: settle after that, or the record would outlive its handling.
        if not await recorded:
            return  # never recorded (WeChat was not told success): nothing to settle
        try:
            await self.dedup.settle(inbound.dedup_key)
        except STORE_DOWN as exc:
            self._unsettled.add(inbound.dedup_key)  # settled by ``recover`` later
            self.outage.report(exc)

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


# The fields of a journalled message: everything but ``raw`` (the parsed XML, which no
# handler reads). Plain JSON, so any process (any version that knows these) can run it.
_RECORD_FIELDS = tuple(f.name for f in fields(Inbound) if f.name != "raw")


def inbound_to_record(inbound: Inbound) -> dict[str, Any]:
    return {name: getattr(inbound, name) for name in _RECORD_FIELDS}


def inbound_from_record(record: Mapping[str, Any]) -> Inbound:
    values = {name: record[name] for name in _RECORD_FIELDS if name in record}
    values["channel"] = Channel(values["channel"])
    return Inbound(**values)
