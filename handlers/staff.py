"""WeCom: who may use the staff app, and what staff see when they open it."""

from __future__ import annotations

from bot.chat.channels import Channel, Inbound
from bot.chat.replies import Reply
from bot.chat.router import Actor, Router
from handlers.reference import ReferenceData
from handlers.menu import STAFF_MENU, greeting_text

router = Router(__name__)


@router.on(channel=Channel.WECOM, role="unknown")
async def refuse_unknown(msg: Inbound) -> Reply | None:
    if msg.event == "enter_agent" or not msg.is_event or msg.event == "template_card_event":
        return Reply.say(
            f"你好！你的企业微信账号（{msg.user_id}）还没有开通影城工作台权限，暂时无法使用。\n"
            f"请联系店长为你开通（店长可在后台执行：cinebot staff add {msg.user_id} "
            "--role staff --name 姓名）。"
        )
    return None


@router.on(channel=Channel.WECOM, event="enter_agent", role="employee")
async def entered(actor: Actor, reference: ReferenceData) -> Reply:
    cinema = await reference.cinema(actor.cinema_id)
    return Reply.say(
        greeting_text(actor, cinema.name if cinema else "影城") + "\n可以问我排片，例如：", *STAFF_MENU
    )


@router.on(channel=Channel.WECOM, event="template_card_event", role="employee")
async def stale_card(msg: Inbound) -> Reply:
    # Feature routers claim their own button keys (e.g. `wo:ack`) before this one.
    return Reply.say("这张卡片已失效或暂不支持该操作，请联系店长确认最新安排。")
