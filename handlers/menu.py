"""Greeting, help, directions, the human hand-off, and the polite answer for everything else.

The menus offer only what works today; requests for features still being built
get a plain "not yet" and the phone number, never a button that leads nowhere.
"""

from __future__ import annotations

from bot.chat.channels import Inbound
from bot.chat.replies import Button, Reply
from bot.chat.router import Actor, Router, Understanding
from domain.cinemas import Cinema
from handlers.handoff import HandoffQueue
from handlers.reference import ReferenceData

router = Router(__name__)

AUDIENCE_MENU = (
    Button("买票", "我要买票"),
    Button("查排片", "今天有什么电影"),
    Button("我的票", "我的电影票"),
    Button("今晚场次", "今晚有什么电影"),
    Button("影城地址", "影城在哪里"),
    Button("报修投诉", "我要投诉"),
    Button("人工服务", "转人工"),
)
STAFF_MENU = (
    Button("我的任务", "我的任务"),
    Button("今天排片", "今天的排片"),
    Button("3号厅下一场", "3号厅下一场几点"),
)

# Conversations still being built: say so plainly instead of pretending.
COMING_SOON = {
    "feedback": "评价",
    "membership": "会员服务",
    "recommend": "影片推荐",
}


def greeting_text(actor: Actor, cinema_name: str) -> str:
    if actor.is_staff:
        return f"{actor.name}，你好！这里是{cinema_name}的工作助手。"
    return f"你好！我是{cinema_name}的小助手 🎬\n可以帮你查排片、了解影片、找到影城。"


@router.on(intent="greeting")
async def greet(actor: Actor, reference: ReferenceData) -> Reply:
    cinema = await reference.cinema(actor.cinema_id)
    name = cinema.name if cinema else "影城"
    if actor.is_staff:
        return Reply.say(greeting_text(actor, name) + "\n可以问我排片，例如：", *STAFF_MENU)
    return Reply.say(greeting_text(actor, name) + "\n想做什么？点下面的选项或直接说～", *AUDIENCE_MENU)


@router.on(intent="help")
async def help_menu(actor: Actor) -> Reply:
    return menu_reply(actor, "我现在能帮你：")


def _contact(cinema: Cinema | None) -> str:
    if cinema is None or not cinema.phone:
        return "请到影城服务台找工作人员。"
    return f"请拨打影城服务电话 {cinema.phone}（{cinema.opens_at}–{cinema.closes_at}），或到服务台找工作人员。"


@router.on(intent="human", role="audience")
async def human(actor: Actor, msg: Inbound, reference: ReferenceData, handoffs: HandoffQueue) -> Reply:
    """「转人工」 always reaches a person: the cinema's managers (else any staff) get a WeCom
    message within a second (``handlers.handoff``), and the audience is told how else to
    reach us. Asking again within ten minutes tells nobody twice."""
    cinema = await reference.cinema(actor.cinema_id)
    if cinema is None:
        return Reply.say("抱歉，影城信息还没有配置好。请到服务台找工作人员。")
    if not await reference.responders(cinema.id):
        return Reply.say("已为您转人工，但现在没有同事在线，抱歉～\n" + _contact(cinema))
    await handoffs.request(cinema.id, actor.user_id, msg.text)
    return Reply.say(
        "已为您转人工：影城值班同事已收到通知，会尽快联系您 🙏 也可以直接留言说明情况。\n"
        + _contact(cinema)
    )


@router.on(intent="directions")
async def directions(actor: Actor, reference: ReferenceData) -> Reply:
    cinema = await reference.cinema(actor.cinema_id)
    if cinema is None:
        return Reply.say("影城地址还没有配置好，请稍后再试。")
    return Reply.say(
        f"📍{cinema.name}\n地址：{cinema.address}\n营业时间：{cinema.opens_at}–{cinema.closes_at}\n"
        f"电话：{cinema.phone}\n发送你的位置给我，可以告诉你离影城多远。"
    )


@router.on(intent=set(COMING_SOON))
async def coming_soon(actor: Actor, intent: str, reference: ReferenceData) -> Reply:
    cinema = await reference.cinema(actor.cinema_id)
    feature = COMING_SOON[intent]
    text = f"「{feature}」还不能在这里办理，我们正在抓紧上线，抱歉～"
    if not actor.is_staff:
        text += "\n需要帮忙" + _contact(cinema)
    menu = STAFF_MENU if actor.is_staff else AUDIENCE_MENU[:3]
    return Reply.say(text, *menu)


# What to offer when unsure which of these was meant: a label and the text a tap sends.
CHOICES = {
    "query_showtimes": Button("查排片", "今天有什么电影"),
    "film_info": Button("影片介绍", "哪吒2讲什么"),
    "directions": Button("影城地址", "影城在哪里"),
    "human": Button("人工服务", "转人工"),
    "greeting": Button("看看能做什么", "帮助"),
}


@router.on(kind=("text", "voice"))
async def not_understood(actor: Actor, text: str, understanding: Understanding | None) -> Reply:
    if not text:
        return Reply.say("暂时听不清语音，请发文字告诉我吧～", *AUDIENCE_MENU[:2])
    alternatives = understanding.alternatives if understanding else ()
    likely = [CHOICES[i] for i in alternatives if i in CHOICES]
    if likely and not actor.is_staff:
        return Reply.say("我不太确定你的意思，你是想：", *likely[:3], Button("都不是", "帮助"))
    return menu_reply(actor, "抱歉，这个我还帮不上忙 🙏 我现在能帮你：")


def menu_reply(actor: Actor, lead: str) -> Reply:
    if actor.is_staff:
        return Reply.say(
            lead + "\n· 查排片：如「3号厅下一场几点」「今天沙丘2还有几场」"
            "\n· 工单：「收到」接单，「已处理，换了座椅」完成，「转给staff02」转派，「我的任务」"
            "\n· 报修：如「5排6座扶手断了」",
            *STAFF_MENU,
        )
    return Reply.say(
        lead + "\n· 查排片：如「今晚哪吒2几点」「周六IMAX有什么」\n· 影片介绍：如「沙丘2讲什么」"
        "\n· 报修投诉：如「3号厅空调太冷」，发照片也可以；查进度：「我报的问题处理了吗」"
        "\n· 影城地址和营业时间",
        *AUDIENCE_MENU,
    )
