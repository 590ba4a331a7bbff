"""WeCom: 「看板」 (or the app menu's ``console`` item) → a one-time link into the web console.

The link logs that person in once, within ten minutes (``handlers.console.auth``): it is a
reply to them alone, so nobody else holds it. Staff, engineers and managers may ask; what
each may see there is the console's business.
"""

from __future__ import annotations

import re

from bot.chat.channels import Channel
from bot.chat.replies import Article, Reply
from bot.chat.router import Actor, Router, Update
from bot.infra.clock import Clock
from bot.infra.settings import Settings
from handlers.console.auth import LINK_TTL_S, enter_link

router = Router(__name__)

ASK = re.compile(r"^\s*(?:打开|进入|查看)?\s*(?:看板|数据看板|管理看板|影城看板|后台看板)\s*[。.!！?？]*\s*$")
MENU_KEY = "console"


def _asks(u: Update) -> bool:
    return bool(ASK.match(u.inbound.text or ""))


def _reply(actor: Actor, settings: Settings, clock: Clock) -> Reply:
    url = enter_link(settings, clock.timestamp(), actor.user_id, LINK_TTL_S)
    minutes = LINK_TTL_S // 60
    return Reply(articles=(Article(
        title="影城看板",
        description=f"点击进入（{minutes}分钟内有效，仅限本人使用一次；过期后再发「看板」即可）",
        url=url,
    ),))


@router.on(channel=Channel.WECOM, role="employee", kind="text", when=_asks)
async def asked(actor: Actor, settings: Settings, clock: Clock) -> Reply:
    return _reply(actor, settings, clock)


@router.on(channel=Channel.WECOM, role="employee", event="click", button=MENU_KEY)
async def menu(actor: Actor, settings: Settings, clock: Clock) -> Reply:
    return _reply(actor, settings, clock)
