"""Audience events: follow (possibly by scanning a QR code), unfollow, scans, menu clicks, media."""

from __future__ import annotations

import math

from bot.chat.channels import Channel, Inbound
from bot.infra.clock import Clock
from bot.chat.replies import Reply
from bot.chat.router import Actor, Router
from handlers.reference import ReferenceData
from domain.people import set_subscription
from handlers.menu import AUDIENCE_MENU, greeting_text, menu_reply

router = Router(__name__)


@router.on(channel=Channel.WECHAT, event="subscribe")
async def followed(
    msg: Inbound, actor: Actor, clock: Clock, reference: ReferenceData
) -> Reply:
    await set_subscription(msg.user_id, True, clock.now(), scene=msg.scene)
    cinema = await reference.cinema(None)
    text = greeting_text(actor, cinema.name if cinema else "影城")
    if msg.scene:
        text = "感谢扫码关注！" + text
    else:
        text = "感谢关注！" + text
    return Reply.say(text, *AUDIENCE_MENU)


@router.on(channel=Channel.WECHAT, event="unsubscribe")
async def unfollowed(msg: Inbound, clock: Clock) -> None:
    # Nobody sees a reply to an unfollow; remember it so nothing is pushed to them.
    await set_subscription(msg.user_id, False, clock.now())
    return None


@router.on(channel=Channel.WECHAT, event="scan")
async def scanned(msg: Inbound) -> Reply:
    return Reply.say("扫码成功，欢迎回来！有什么可以帮你？", *AUDIENCE_MENU)


@router.on(channel=Channel.WECHAT, event="click", button="menu")
async def menu_click(button_args: list[str], actor: Actor) -> Reply:
    return menu_reply(actor, "请选择：")


@router.on(event="scancode_waitmsg")
async def scanned_code(msg: Inbound) -> Reply:
    result = (msg.scan_result or "").strip()
    if not result:
        return Reply.say("没有识别到二维码内容，请对准后再扫一次。")
    return Reply.say(f"已识别二维码：{result[:80]}\n暂不支持处理这类二维码，如需帮助请回复「转人工」。")


@router.on(channel=Channel.WECHAT, event=("view", "location", "click"))
async def silent_event(msg: Inbound) -> None:
    # WeChat shows no reply to these; answering `success` is right.
    return None


@router.on(kind="location")
async def location(msg: Inbound, actor: Actor, reference: ReferenceData) -> Reply:
    cinema = await reference.cinema(actor.cinema_id)
    if cinema is None:
        return Reply.say("影城地址还没有配置好，请稍后再试。")
    where = f"📍{cinema.name}\n地址：{cinema.address}"
    if None not in (msg.latitude, msg.longitude, cinema.latitude, cinema.longitude):
        km = _distance_km(msg.latitude, msg.longitude, cinema.latitude, cinema.longitude)  # type: ignore[arg-type]
        where += f"\n距你约 {km:.1f} 公里" if km >= 1 else f"\n距你约 {int(km * 1000)} 米"
    return Reply.say(where + f"\n电话：{cinema.phone}")


@router.on(kind="image")
async def image(msg: Inbound) -> Reply:
    return Reply.say(
        "图片收到了 📷 如果是要报修或投诉，请再用一句话说明位置和问题，例如：「3号厅5排6座扶手断了」。"
    )


@router.on(kind=("video", "link", "unknown"))
async def other_media(msg: Inbound) -> Reply:
    return Reply.say("暂时只能看懂文字和图片哦，请用文字告诉我你需要什么～", *AUDIENCE_MENU[:2])


def _distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    r = 6371.0
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))
