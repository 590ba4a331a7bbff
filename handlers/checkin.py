"""Staff admit audiences: scan the e-ticket QR in WeCom (or paste the code) → once only."""

from __future__ import annotations

import re

from bot.chat.channels import Channel, Inbound
from bot.infra.clock import Clock
from bot.chat.replies import Reply
from bot.chat.router import Actor, Router
from domain import ticketing

router = Router(__name__)

# What a camera reads off our QR (the bare secret) or off a ticket page link.
SECRET = re.compile(r"(?:/t/)?\b([a-z0-9]{32})\b")
CHECK_IN_TEXT = re.compile(r"^\s*检票\s*[:：]?\s*(\S+)\s*$")


def secret_in(text: str) -> str | None:
    match = SECRET.search(text.strip().lower())
    return match.group(1) if match else None


async def _admit(actor: Actor, raw: str, msg: Inbound, clock: Clock) -> Reply:
    if actor.cinema_id is None:
        return Reply.say("你的账号没有关联影城，不能检票。")
    secret = secret_in(raw)
    if not raw.strip():
        return Reply.say("没有识别到二维码内容，请对准后再扫一次。")
    if not secret:
        return Reply.say(f"❌ 这不是本影城的电子票二维码（识别到：{raw.strip()[:80]}）。")
    result = await ticketing.check_in(
        secret, cinema_id=actor.cinema_id, staff=actor.user_id, now=clock.now(),
        nonce=f"{msg.channel}:{msg.dedup_key}",
    )
    return Reply.say(result.message)


@router.on(channel=Channel.WECOM, role="employee", event="scancode_waitmsg")
async def scanned_ticket(actor: Actor, msg: Inbound, clock: Clock) -> Reply:
    return await _admit(actor, msg.scan_result or "", msg, clock)


@router.on(
    channel=Channel.WECOM, role="employee", kind="text",
    when=lambda u: bool(CHECK_IN_TEXT.match(u.inbound.text or "")),
)
async def typed_ticket(actor: Actor, msg: Inbound, clock: Clock) -> Reply:
    return await _admit(actor, CHECK_IN_TEXT.match(msg.text).group(1), msg, clock)  # type: ignore[union-attr]
