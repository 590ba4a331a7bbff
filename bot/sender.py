"""The outbox sender: delivers recorded messages to the WeChat / WeCom APIs, each exactly once.

Rows are leased (claimed) before sending, so several workers never send the
same message and a crashed worker's messages come back when its lease lapses.
Transient failures (network, HTTP 5xx, errcode -1 / 45009) are retried with
exponential backoff and jitter; permanent ones (43004 not subscribed, 45015
outside the 48-hour window, …) are marked failed at once; after
``max_attempts`` a message becomes a dead letter, visible and re-sendable.

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

from bot.clock import Clock
from bot.logs import short_openid

log = logging.getLogger(__name__)


class DeliveryError(Exception):
    def __init__(self, reason: str, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class Message(Protocol):
    id: int
    channel: str
    recipient: str
    payload: Any
    attempts: int


class OutboxStore(Protocol):
    async def claim_due(
        self, worker: str, now: datetime, lease: timedelta, limit: int = 20
    ) -> Sequence[Message]: ...

    async def mark_sent(
        self, message: Message, worker: str, now: datetime, response: dict[str, Any] | None = None
    ) -> bool: ...

    async def mark_retry(
        self, message: Message, worker: str, error: str, next_attempt: datetime, max_attempts: int
    ) -> Any: ...

    async def mark_failed(self, message: Message, worker: str, error: str) -> bool: ...


class Transport(Protocol):
    async def deliver(
        self, channel: str, recipient: str, payload: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Send one message; raise :class:`DeliveryError` when it did not go out. May return
        what a later step needs from the answer (e.g. a card's ``response_code``)."""
        ...


@dataclass(frozen=True)
class SenderPolicy:
    batch: int = 50
    concurrency: int = 16
    lease: timedelta = timedelta(seconds=60)
    max_attempts: int = 8
    base_delay: float = 2.0  # seconds before the first retry
    max_delay: float = 600.0
    poll_interval: float = 1.0

    def backoff(self, attempts: int) -> float:
        """Exponential backoff with full jitter around the nominal delay."""
        nominal = min(self.max_delay, self.base_delay * (2 ** max(attempts - 1, 0)))
        return nominal * random.uniform(0.5, 1.5)


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
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        """Something was just enqueued in this process: look now rather than at the next poll."""
        self._wakeup.set()

    async def run_once(self) -> int:
        """Claim one batch and deliver it. Returns how many messages were claimed."""
        claimed_at = self.clock.now()
        batch = await self.store.claim_due(
            self.worker, claimed_at, self.policy.lease, self.policy.batch
        )
        if not batch:
            return 0
        gate = asyncio.Semaphore(self.policy.concurrency)
        # A message still waiting for the gate when half its lease is gone is left
        # alone: once the lease lapses another worker may take it, and a send that
        # starts this late could still be running then, sending it twice.
        start_by = claimed_at + self.policy.lease / 2

        async def one(message: Message) -> None:
            async with gate:
                if self.clock.now() > start_by:
                    log.warning(
                        "outbound message left for a later claim: its lease is running out",
                        extra={"outbound_id": message.id},
                    )
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

    async def _deliver(self, message: Message) -> None:
        payload = dict(message.payload)
        try:
            kept = await self.transport.deliver(message.channel, message.recipient, payload)
        except DeliveryError as exc:
            if exc.permanent:
                await self.store.mark_failed(message, self.worker, exc.reason)
                log.warning(
                    "outbound message failed permanently",
                    extra={"outbound_id": message.id, "reason": exc.reason,
                           "to": short_openid(message.recipient)},
                )
                return
            delay = self.policy.backoff(message.attempts + 1)
            status = await self.store.mark_retry(
                message,
                self.worker,
                exc.reason,
                self.clock.now() + timedelta(seconds=delay),
                self.policy.max_attempts,
            )
            log.info(
                "outbound message will be retried",
                extra={"outbound_id": message.id, "reason": exc.reason, "status": str(status)},
            )
            return
        except Exception as exc:  # a bug in a transport must not lose the message
            log.exception("outbound delivery crashed", extra={"outbound_id": message.id})
            await self.store.mark_retry(
                message,
                self.worker,
                f"{type(exc).__name__}: {exc}",
                self.clock.now() + timedelta(seconds=self.policy.backoff(message.attempts + 1)),
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

    async def deliver(
        self, channel: str, recipient: str, payload: dict[str, Any]
    ) -> dict[str, Any] | None:
        from bot.wxapi import ApiError

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
                answer = await self.wecom.send([recipient], payload)
                invalid = str(answer.get("invaliduser") or "")
                if recipient in invalid.split("|"):
                    raise DeliveryError(f"WeCom user {recipient} is invalid", permanent=True)
                if answer.get("response_code"):
                    return {"response_code": answer["response_code"]}
            else:
                raise DeliveryError(f"unknown channel {channel!r}", permanent=True)
        except ApiError as exc:
            # A token error that survived the client's own refresh-and-retry is worth a later try.
            raise DeliveryError(str(exc), permanent=exc.permanent) from None
        return None
