"""Greeting, the help menu, and the polite answer for everything not understood."""

from __future__ import annotations

from bot.replies import Button, Reply
from bot.router import Actor, Router
from handlers.reference import ReferenceData

router = Router(__name__)

AUDIENCE_MENU = (
    Button("查排片", "今天有什么电影"),
    Button("买票"),
    Button("我的票"),
    Button("报修/投诉", "我要投诉"),
    Button("转人工"),
)
STAFF_MENU = (Button("我的任务"), Button("今天排片", "今天的排片"), Button("报故障", "我要报故障"))

# Intents whose conversations are still being built: say so plainly instead of pretending.
COMING_SOON = {
    "buy_ticket": "在线选座购票",
    "refund": "退票",
    "change_ticket": "改签",
    "my_tickets": "查看电子票",
    "report_fault": "报修",
    "complaint": "投诉",
    "feedback": "评价",
    "lost_found": "失物招领",
    "group_booking": "包场预订",
    "membership": "会员服务",
    "task_ack": "接单",
    "task_done": "完成工单",
    "my_tasks": "我的任务",
}


def greeting_text(actor: Actor, cinema_name: str) -> str:
    if actor.is_staff:
        roles = {"staff": "同事", "engineer": "工程师", "manager": "店长"}
        return f"{actor.name}{roles.get(actor.role, '')}你好！这里是{cinema_name}的工作助手。"
    return f"你好！我是{cinema_name}的小助手 🎬\n可以帮你查排片、买票、报修和反馈问题。"


@router.on(intent="greeting")
async def greet(actor: Actor, reference: ReferenceData) -> Reply:
    cinema = await reference.cinema(actor.cinema_id)
    menu = STAFF_MENU if actor.is_staff else AUDIENCE_MENU
    name = cinema.name if cinema else "影城"
    return Reply.say(greeting_text(actor, name) + "\n想做什么？点下面的选项或直接说～", *menu)


@router.on(intent="help")
async def help_menu(actor: Actor) -> Reply:
    return menu_reply(actor, "我能帮你做这些：")


@router.on(intent="human")
async def human(actor: Actor, reference: ReferenceData) -> Reply:
    cinema = await reference.cinema(actor.cinema_id)
    if cinema is None or not cinema.phone:
        return Reply.say("在线人工客服正在接入中，请到影城服务台找工作人员，抱歉～")
    return Reply.say(
        f"在线人工客服正在接入中。需要人工帮助请拨打影城服务电话 {cinema.phone}"
        f"（{cinema.opens_at}–{cinema.closes_at}），或到服务台找工作人员。"
    )


@router.on(intent=set(COMING_SOON))
async def coming_soon(actor: Actor, intent: str) -> Reply:
    feature = COMING_SOON[intent]
    return menu_reply(actor, f"「{feature}」功能正在上线中，暂时还不能在这里办理，抱歉～\n现在可以：")


@router.on(kind=("text", "voice"))
async def not_understood(actor: Actor, text: str) -> Reply:
    if not text:
        return Reply.say("暂时听不清语音，请发文字告诉我吧～", *(AUDIENCE_MENU[:2]))
    return menu_reply(actor, "抱歉，我没太明白你的意思 🙏 你可以试试：")


def menu_reply(actor: Actor, lead: str) -> Reply:
    if actor.is_staff:
        return Reply.say(lead + "\n· 我的任务\n· 查排片：如「3号厅下一场几点」\n· 报故障：如「5排6座扶手断了」", *STAFF_MENU)
    return Reply.say(
        lead + "\n· 查排片：如「今晚哪吒2几点」\n· 买票：如「明天晚上两张沙丘2」\n"
        "· 报修投诉：如「3号厅空调太冷」\n· 转人工",
        *AUDIENCE_MENU,
    )
