"""The outbox sender: delivers recorded messages to the WeChat / WeCom APIs, at least once.

Rows are leased (claimed) before sending, so several workers never send the
same message at the same time and a crashed worker's messages come back when
its lease lapses. Transient failures (network, HTTP 5xx, errcode -1 / 45009)
are retried with exponential backoff and jitter, capped at ``max_delay``;
permanent ones (43004 not subscribed, 45015 outside the 48-hour window, …) are
marked failed at once. A message is retried for as long as it is worth
sending (its ``expires_at``), then marked expired with the reason.

What is guaranteed, and what is not:

- Every recorded message is sent, failed, dead or expired, never forgotten.
- Delivery is at-least-once. If a worker dies, or a call times out, after the
  platform accepted the message but before the row records it, the message is
  sent again (a text arrives twice). The window is kept as small as the APIs
  allow: an attempt counts when it is claimed, so a message that keeps killing
  its worker is given up after ``max_lapses`` lapsed claims; no send starts
  unless its worst case (``Transport.worst_case_seconds``: HTTP timeouts, token
  refresh and the one token retry included) ends before the lease does, so a
  live worker's send never overlaps another worker's; and WeCom cards carry a
  ``task_id``, so a repeated card answers 42014, which counts as delivered.
- A token the platform rejected (40001, 40014, 42001) after the client's own
  refresh-and-retry is tried again later without spending an attempt.

The store (the outbound_message table's transitions) and the transport (the
API clients) are injected, which keeps this module free of the domain layer.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from bot.infra.clock import Clock
from bot.infra.logs import short_openid
from bot.infra.outage import STORE_DOWN, OutageLog

log = logging.getLogger(__name__)


class DeliveryError(Exception):
    """A send that did not go out. ``spent=False``: the attempt does not count (the
    platform refused our access token, not the message)."""

    def __init__(self, reason: str, permanent: bool, *, spent: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.spent = spent


class AlreadyDelivered(DeliveryError):
    """The platform already has this message (WeCom 42014: the card's task_id exists).

    After an earlier call of ours, that call delivered it and its answer was lost;
    on a first attempt the id belongs to some other message. ``kept``: what is still
    known of the delivery for later steps.
    """

    def __init__(self, reason: str, kept: dict[str, Any]) -> None:
        super().__init__(reason, permanent=True)
        self.kept = kept


class Message(Protocol):
    id: int
    channel: str
    recipient: str
    payload: Any
    attempts: int


class OutboxStore(Protocol):
    async def claim_due(
        self,
        worker: str,
        now: datetime,
        lease: timedelta,
        limit: int = 20,
        *,
        max_attempts: int,
        max_lapses: int,
    ) -> Sequence[Message]:
        """Lease due messages; each claim counts as an attempt (``attempts`` includes it)."""
        ...

    async def release(self, message: Message, worker: str) -> bool:
        """Give back a claim unused (no call made): the attempt is not spent."""
        ...

    async def mark_sent(
        self, message: Message, worker: str, now: datetime, response: dict[str, Any] | None = None
    ) -> bool: ...

    async def mark_retry(
        self,
        message: Message,
        worker: str,
        error: str,
        next_attempt: datetime,
        max_attempts: int,
        *,
        spent: bool = True,
    ) -> Any: ...

    async def mark_failed(self, message: Message, worker: str, error: str) -> bool: ...


class Transport(Protocol):
    async def deliver(
        self, channel: str, recipient: str, payload: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Send one message; raise :class:`DeliveryError` when it did not go out. May return
        what a later step needs from the answer (e.g. a card's ``response_code``)."""
        ...

    def worst_case_seconds(self) -> float:
        """The longest one ``deliver`` can take, retries and token refresh included."""
        ...


@dataclass(frozen=True)
class SenderPolicy:
    batch: int = 50
    concurrency: int = 16
    # Must outlast the transport's worst-case send plus ``settle`` (checked by the sender):
    # then a live worker's send always ends, and is recorded, before another may claim it.
    lease: timedelta = timedelta(seconds=90)
    # Time allowed to record an outcome after the call returns.
    settle: timedelta = timedelta(seconds=5)
    # A backstop only: a message's lifetime (``expires_at``) bounds an outage first.
    max_attempts: int = 200
    # Claims that lapse without an outcome (the worker died or hung mid-send): each may
    # have delivered the message, so few are allowed before it is given up.
    max_lapses: int = 3
    base_delay: float = 2.0  # seconds before the first retry
    max_delay: float = 300.0  # a recovered platform is tried again within 5 minutes
    # After a token error that survived the client's refresh-and-retry. Not shorter than
    # the 30 s WeChat wants between forced refreshes of a stable token.
    token_retry_delay: float = 30.0
    poll_interval: float = 1.0

    def backoff(self, attempts: int) -> float:
        """Exponential backoff with full jitter around the nominal delay, at most max_delay."""
        nominal = min(self.max_delay, self.base_delay * (2 ** max(attempts - 1, 0)))
        return min(self.max_delay, nominal * random.uniform(0.5, 1.5))


def check_lease(policy: SenderPolicy, worst_case_seconds: float) -> None:
    """Refuse a lease that a send could outlive: another worker could then claim and send
    the message while the first send is still under way."""
    needed = worst_case_seconds + policy.settle.total_seconds()
    if policy.lease.total_seconds() <= needed:
        raise ValueError(
            f"outbox lease {policy.lease.total_seconds():g} s must exceed the worst-case send "
            f"({worst_case_seconds:g} s) plus settle time ({policy.settle.total_seconds():g} s)"
        )


def worker_name() -> str:
    return f"{socket.gethostname()[:40]}-{secrets.token_hex(3)}"


class OutboxSender:
    def __init__(
        self,
        store: OutboxStore,
        transport: Transport,
        clock: Clock,
        policy: SenderPolicy | None = None,
        worker: str | None = None,
    ) -> None:
        self.store = store
        self.transport = transport
        self.clock = clock
        self.policy = policy or SenderPolicy()
        self.worker = worker or worker_name()
        # Every send is cut off at this (it is what the lease was checked against).
        self.send_budget = transport.worst_case_seconds()
        check_lease(self.policy, self.send_budget)
        self._wakeup = asyncio.Event()
        self._outage = OutageLog(log, "outbox: redis unavailable; messages wait")

    def wake(self) -> None:
        """Something was just enqueued in this process: look now rather than at the next poll."""
        self._wakeup.set()

    async def run_once(self) -> int:
        """Claim one batch and deliver it. Returns how many messages were claimed."""
        claimed_at = self.clock.now()
        policy = self.policy
        batch = await self.store.claim_due(
            self.worker, claimed_at, policy.lease, policy.batch,
            max_attempts=policy.max_attempts, max_lapses=policy.max_lapses,
        )
        if not batch:
            return 0
        gate = asyncio.Semaphore(policy.concurrency)
        # The last moment a send may start: even at its worst it ends, and is recorded,
        # before the lease lapses and another worker may take the message.
        start_by = claimed_at + policy.lease - timedelta(seconds=self.send_budget) - policy.settle

        async def one(message: Message) -> None:
            async with gate:
                if self.clock.now() > start_by:
                    log.warning(
                        "outbound message left for a later claim: its lease is running out",
                        extra={"outbound_id": message.id},
                    )
                    await self.store.release(message, self.worker)
                    return
                await self._deliver(message)

        await asyncio.gather(*(one(m) for m in batch))
        return len(batch)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            # Cleared before looking, not after: a wake() that arrives while this
            # sweep runs (a message enqueued just after the claim) is not lost.
            self._wakeup.clear()
            try:
                done = await self.run_once()
            except Exception:
                log.exception("outbox sweep failed; retrying shortly")
                done = 0
            if done:
                continue
            waiters = {
                asyncio.ensure_future(stop.wait()),
                asyncio.ensure_future(self._wakeup.wait()),
            }
            _, pending = await asyncio.wait(
                waiters, timeout=self.policy.poll_interval, return_when=asyncio.FIRST_COMPLETED
            )
            for w in pending:
                w.cancel()

    async def _send(self, message: Message) -> dict[str, Any] | None:
        payload = dict(message.payload)
        try:
            async with asyncio.timeout(self.send_budget):
                return await self.transport.deliver(message.channel, message.recipient, payload)
        except TimeoutError:
            # Only a transport that breaks its own worst case gets here; the call may
            # have reached the platform, so this is a retry, not a failure.
            raise DeliveryError(
                f"no outcome within {self.send_budget:g} s (it may have been delivered)",
                permanent=False,
            ) from None

    async def _deliver(self, message: Message) -> None:
        try:
            kept = await self._send(message)
        except AlreadyDelivered as exc:
            if message.attempts > 1:  # an earlier claim made the call that delivered it
                log.info(
                    "outbound message was delivered by an earlier attempt",
                    extra={"outbound_id": message.id, "reason": exc.reason},
                )
                await self.store.mark_sent(message, self.worker, self.clock.now(), exc.kept)
                return
            await self.store.mark_failed(
                message, self.worker, f"{exc.reason}, and no earlier attempt of ours made it"
            )
            return
        except DeliveryError as exc:
            if exc.permanent:
                await self.store.mark_failed(message, self.worker, exc.reason)
                log.warning(
                    "outbound message failed permanently",
                    extra={"outbound_id": message.id, "reason": exc.reason,
                           "to": short_openid(message.recipient)},
                )
                return
            delay = (
                self.policy.backoff(message.attempts)
                if exc.spent
                else max(self.policy.token_retry_delay, self.policy.backoff(message.attempts))
            )
            status = await self.store.mark_retry(
                message,
                self.worker,
                exc.reason,
                self.clock.now() + timedelta(seconds=delay),
                self.policy.max_attempts,
                spent=exc.spent,
            )
            log.info(
                "outbound message will be retried",
                extra={"outbound_id": message.id, "reason": exc.reason, "status": str(status)},
            )
            return
        except STORE_DOWN as exc:
            # Redis (the token cache) is down: no call was made, so the attempt is not
            # spent, and the log gets a line per interval instead of a traceback a message.
            self._outage.report(exc)
            await self.store.mark_retry(
                message,
                self.worker,
                f"redis unavailable: {type(exc).__name__}",
                self.clock.now() + timedelta(seconds=self.policy.backoff(1)),
                self.policy.max_attempts,
                spent=False,
            )
            return
        except Exception as exc:  # a bug in a transport must not lose the message
            log.exception("outbound delivery crashed", extra={"outbound_id": message.id})
            await self.store.mark_retry(
                message,
                self.worker,
                f"{type(exc).__name__}: {exc}",
                self.clock.now() + timedelta(seconds=self.policy.backoff(message.attempts)),
                self.policy.max_attempts,
            )
            return
        sent = (
            self.store.mark_sent(message, self.worker, self.clock.now(), kept)
            if kept
            else self.store.mark_sent(message, self.worker, self.clock.now())
        )
        if not await sent:
            log.warning(
                "outbound message was sent after its lease lapsed; another worker may send it too",
                extra={"outbound_id": message.id},
            )


class ApiTransport:
    """Delivers through the async WeChat / WeCom API clients."""

    def __init__(self, wechat: Any, wecom: Any) -> None:
        self.wechat = wechat
        self.wecom = wecom

    def worst_case_seconds(self) -> float:
        return max(self.wechat.worst_case_seconds(), self.wecom.worst_case_seconds())

    async def deliver(
        self, channel: str, recipient: str, payload: dict[str, Any]
    ) -> dict[str, Any] | None:
        from bot.wechat.api import ApiError

        try:
            if channel == "wechat":
                kind = payload.pop("kind", "custom")
                if kind == "subscribe":
                    await self.wechat.send_subscribe(recipient, **payload)
                elif kind == "template":
                    await self.wechat.send_template(recipient, **payload)
                else:
                    await self.wechat.send_custom(recipient, payload)
            elif channel == "wecom" and payload.get("kind") == "update_card":
                # Change a card already on people's phones (recipient: one of them).
                await self.wecom.update_template_card(
                    payload.get("userids") or [recipient],
                    payload["response_code"],
                    button_replace_name=payload.get("button_replace_name"),
                    template_card=payload.get("template_card"),
                )
            elif channel == "wecom":
                return await self._wecom_send(recipient, payload)
            else:
                raise DeliveryError(f"unknown channel {channel!r}", permanent=True)
        except ApiError as exc:
            if exc.token_expired:
                # Survived the client's own refresh-and-retry: the platform refused our
                # token, not the message, so this costs the message no attempt.
                raise DeliveryError(str(exc), permanent=False, spent=False) from None
            raise DeliveryError(str(exc), permanent=exc.permanent) from None
        return None

    async def _wecom_send(self, recipient: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        from bot.wechat.api import TASK_ID, ApiError

        task_id = str((payload.get("template_card") or {}).get("task_id") or "")
        try:
            answer = await self.wecom.send([recipient], payload)
        except ApiError as exc:
            if exc.errcode == 42014 and TASK_ID.fullmatch(task_id):
                # A well-formed task_id that "already exists" (task ids are made per card
                # row). Its response_code went with the lost answer; a click on the card
                # brings a fresh one.
                raise AlreadyDelivered(
                    f"{exc} (task_id {task_id})", {"task_id": task_id, "delivered_before": True}
                ) from None
            raise
        invalid = str(answer.get("invaliduser") or "")
        if recipient in invalid.split("|"):
            raise DeliveryError(f"WeCom user {recipient} is invalid", permanent=True)
        if answer.get("response_code"):
            kept = {"response_code": answer["response_code"]}
            if task_id:
                kept["task_id"] = task_id
            return kept
        return None
