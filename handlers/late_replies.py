"""A reply that missed WeChat's 5-second window goes out later, through the outbox."""

from __future__ import annotations

from typing import Any

from bot.chat.channels import Channel, Inbound
from bot.infra.clock import Clock
from bot.chat.replies import Reply
from domain.outbox import enqueue


def late_reply_payload(inbound: Inbound, reply: Reply, wecom_agent_id: int) -> dict[str, Any]:
    """The body of a customer-service message (WeChat) or an app message (WeCom)."""
    if inbound.channel is Channel.WECHAT:
        if reply.articles:
            # A customer-service news message carries exactly one article (else errcode 45008).
            a = reply.articles[0]
            article = {"title": a.title, "description": a.description, "url": a.url, "picurl": a.image}
            return {"msgtype": "news", "news": {"articles": [article]}}
        return {"msgtype": "text", "text": {"content": reply.render_wechat_text()}}
    return {
        "msgtype": "text",
        "agentid": wecom_agent_id,
        "text": {"content": reply.render_plain_text()},
    }


class LateReplies:
    def __init__(self, clock: Clock, wecom_agent_id: int) -> None:
        self.clock = clock
        self.wecom_agent_id = wecom_agent_id

    async def __call__(self, inbound: Inbound, reply: Reply) -> None:
        await enqueue(
            channel=str(inbound.channel),
            recipient=inbound.user_id,
            payload=late_reply_payload(inbound, reply, self.wecom_agent_id),
            # One late reply per inbound message, however often WeChat retries it.
            idempotency_key=f"late-reply:{inbound.dedup_key}",
            now=self.clock.now(),
        )
