"""「扫码评价」: the micro-survey in chat, and the manager's side of the closed loop in WeCom.

An audience scans a touchpoint's code (``tp:<code>``: ``subscribe`` with the scene
when new, ``SCAN`` when already following) and rates the visit with buttons, in
at most four taps and a line of text: stars (1–5), NPS (0–10), aspects, a
comment. The answers are linked to the touchpoint and, when the visitor holds a
ticket for a show today, to that show. A second scan the same day edits the
same response. The post-show push sends the same star buttons; a bare 「4星」
continues from it.

A 1–2-star rating or an NPS of 0–6 opens one complaint work order at once and the
service desk's notify (``desk``) cards the duty manager; a comment that comes
later reaches the card's holders as a note. The manager answers in WeCom
「回复 W3K7Q: 很抱歉…」 (or 「回复: …」 for the latest), optionally 「送20元券」 — a coupon
within the giver's right (``domain.rights``: a manager's, or a role's limit that a manager
sets with 「员工补偿上限设为20元」); beyond it the reply is refused and the duty manager told;
the audience gets it with 「问题解决了吗？」, and 「没有解决」 reopens the order.
A manager asks 「今天的满意度」 for the day's numbers.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any

from bot.chat.channels import Channel, Inbound
from bot.infra.clock import Clock
from bot.chat.dialog import Dialog
from bot.chat.replies import Button, Reply
from bot.chat.router import Actor, Router, Update
from bot.infra.settings import Settings
from domain import feedback as fb
from domain import touchpoints as tps
from domain.cinemas import home_cinema
from domain import rights
from domain.feedback import (
    ASPECTS,
    CouponRefused,
    FeedbackError,
    FeedbackInvite,
    FeedbackResponse,
)
from domain.people import StaffRole, set_subscription
from domain.pricing import format_fen
from domain.touchpoints import Touchpoint, TouchpointKind
from domain.workorders import Who, WorkOrder, WorkOrderError, find
from handlers.feedback_loop import (
    PHONE,
    STAR_BUTTONS,
    FeedbackMessages,
    alert_if_needed,
    desk_or_silent,
    read_comment,
    show_text,
    stars_text,
)

log = logging.getLogger(__name__)
router = Router(__name__)  # audiences
managers = Router(__name__ + ".managers")  # WeCom: replies and the day's numbers
# 「我要评价」 by intent: after the work orders, whose refusal of staff commands comes first.
requests = Router(__name__ + ".requests")

SURVEY_TIMEOUT = 1800  # seconds: a survey left half done is forgotten after this
CN_STARS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5}
STARS = re.compile(r"^\s*(?:★+\s*)?([1-5一二两三四五])\s*(?:星|颗星|分)(?:\s*\S{0,4})?\s*$")
STAR_GLYPHS = re.compile(r"^\s*([★⭐]{1,5})\s*\S{0,6}\s*$")
NPS = re.compile(r"^\s*(?:推荐度?)?\s*(10|[0-9])\s*分?\s*$")
DONE_WORDS = frozenset({"选好了", "好了", "完成", "就这些"})
SKIP_WORDS = frozenset({"跳过", "不用了", "没有了", "没了", "算了", "不说了", "没有"})
FOLLOW_YES = frozenset({"解决了", "已解决", "问题解决了", "解决啦", "已经解决了"})
FOLLOW_NO = frozenset({"没有解决", "没解决", "还没解决", "问题没有解决", "未解决", "没有解决呢"})
NPS_BUTTONS = tuple(Button(str(n), f"推荐{n}分") for n in range(10, -1, -1))
COMMENT_BUTTONS = (Button("不用了，提交", "不用了"),)
REPLY = re.compile(
    r"^\s*回复\s*(?P<ref>W[2-9A-HJKMNP-Z]{5})?\s*[:：,，]\s*(?P<text>.+)$", re.S
)
COUPON = re.compile(
    r"[（(【\[]?\s*(?:送|附赠?|补偿|赠送?)\s*(?P<yuan>\d{1,3})\s*元?\s*的?(?:观影|代金|优惠)?券\s*[)）】\]]?[，,。]?"
)
# 「员工补偿上限设为20元」: ASCII digits only (a limit is money; no look-alike digits).
LIMIT_SET = re.compile(
    r"^\s*(?P<role>员工|店员|工程师)的?(?:补偿|送券)上限\s*(?:设为|设置为|改为|调为|调到|设成|[:：=])\s*"
    r"(?P<yuan>[0-9]{1,3})\s*元?\s*$"
)
LIMIT_SHOW = re.compile(r"^\s*(?:查看)?(?:补偿|送券)上限(?:是多少)?\s*[?？]?\s*$")
LIMIT_ROLES = {"员工": StaffRole.STAFF, "店员": StaffRole.STAFF, "工程师": StaffRole.ENGINEER}
SUMMARY = re.compile(r"^\s*(?:今天|今日)?的?(?:满意度|NPS|nps|评价汇总|顾客评价|评分汇总)\s*[?？]?\s*$")
FILLER = re.compile(r"我要|我想|想要|评价|评分|打分|反馈|建议|一下|给个?|个|你们|的|了|吧|[，,。.!！？?\s]")


# --- reading the taps ------------------------------------------------------------------------


def stars_in(text: str) -> int | None:
    if m := STARS.match(text or ""):
        raw = m.group(1)
        return int(raw) if raw.isdigit() else CN_STARS[raw]
    if m := STAR_GLYPHS.match(text or ""):
        return len(m.group(1))
    return None


def _star_tap(update: Update) -> dict[str, Any] | None:
    stars = stars_in(update.inbound.text or "")
    return {"stars": stars} if stars is not None else None


def _nps_tap(update: Update) -> dict[str, Any] | None:
    m = NPS.match(update.inbound.text or "")
    return {"score": int(m.group(1))} if m else None


def _follow_up(update: Update) -> dict[str, Any] | None:
    text = (update.inbound.text or "").strip().rstrip("。！!")
    if text in FOLLOW_YES:
        return {"solved": True}
    if text in FOLLOW_NO:
        return {"solved": False}
    return None


# --- the survey, step by step ------------------------------------------------------------------


async def _load(pending_data: dict[str, Any]) -> tuple[FeedbackResponse, Touchpoint] | None:
    response = await FeedbackResponse.get_or_none(id=pending_data.get("r")).prefetch_related("touchpoint")
    if response is None:
        return None
    return response, response.touchpoint


def _data(response: FeedbackResponse, **more: Any) -> dict[str, Any]:
    return {"r": response.id, **more}


async def ask_stars(dialog: Dialog, response: FeedbackResponse, lead: str) -> Reply:
    return await dialog.confirm(
        "fb:stars", _data(response), Reply.say(lead + "\n这次体验打几星？", *STAR_BUTTONS),
        timeout=SURVEY_TIMEOUT,
    )


async def begin(
    actor: Actor, touchpoint: Touchpoint, clock: Clock, dialog: Dialog, lead: str,
    channel: str = "chat",
) -> Reply:
    """Open (or reopen, to edit) this visitor's response here today and ask for the stars."""
    now = clock.now()
    visit = await fb.visit_today(actor.user_id, touchpoint.cinema_id, now, hall=touchpoint.hall)
    response, created = await fb.start_response(
        touchpoint=touchpoint, visitor=actor.user_id, now=now, channel=channel, visit=visit,
    )
    lines = [lead + f"📍{touchpoint.name}"]
    show = show_text(response)
    if show:
        lines.append(f"🎬 {show}")
    if not created and (response.stars is not None or response.nps is not None):
        lines.append(f"您今天已在这里评价过（{stars_text(response)}），重新打分会更新它。")
    return await ask_stars(dialog, response, "\n".join(lines))


async def _after_rating(
    response: FeedbackResponse, touchpoint: Touchpoint, clock: Clock, desk: Any,
) -> WorkOrder | None:
    order, _ = await alert_if_needed(response, touchpoint, clock.now(), desk)
    return order


def _sorry(order: WorkOrder) -> str:
    return f"收到，非常抱歉让您失望了。值班经理已收到（编号 {order.ref}），会尽快联系您。"


async def ask_nps(dialog: Dialog, response: FeedbackResponse, lead: str = "") -> Reply:
    text = (lead + "\n" if lead else "") + "您有多大可能把我们推荐给朋友？（0 不会，10 一定会）"
    return await dialog.confirm("fb:nps", _data(response), Reply.say(text, *NPS_BUTTONS), timeout=SURVEY_TIMEOUT)


def _aspect_question(response: FeedbackResponse, chosen: list[str]) -> Reply:
    unhappy = (response.stars is not None and response.stars <= 3) or (
        response.nps is not None and response.nps <= 6
    )
    ask = "哪些方面不满意？" if unhappy else "哪些方面让您满意？"
    picked = f"\n已选：{'、'.join(chosen)}" if chosen else ""
    buttons = [Button(("✔" if a in chosen else "") + a, a) for a in ASPECTS]
    return Reply.say(f"{ask}可多选，选完点「选好了」{picked}", *buttons, Button("选好了"), Button("跳过"))


async def ask_aspects(dialog: Dialog, response: FeedbackResponse, chosen: list[str]) -> Reply:
    return await dialog.confirm(
        "fb:aspects", _data(response, aspects=chosen), _aspect_question(response, chosen),
        timeout=SURVEY_TIMEOUT,
    )


async def ask_comment(dialog: Dialog, response: FeedbackResponse) -> Reply:
    lead = "还有想对我们说的吗？直接打字告诉我们（可选）。"
    if response.work_order_id is not None:
        lead = "非常抱歉！值班经理已收到您的评价。方便的话说说具体情况，我们好尽快处理："
    return await dialog.confirm(
        "fb:comment", _data(response), Reply.say(lead, *COMMENT_BUTTONS), timeout=SURVEY_TIMEOUT
    )


async def finish(response: FeedbackResponse, order: WorkOrder | None) -> Reply:
    if order is not None:
        return Reply.say(
            f"谢谢您的评价 🙏 给您带来不好的体验，非常抱歉。值班经理会尽快回复您（编号 {order.ref}）。",
            Button("人工服务", "转人工"),
        )
    if response.stars is not None and response.stars >= 4:
        return Reply.say("谢谢您的好评 🎬 期待下次再见！", Button("查排片", "今天有什么电影"))
    return Reply.say("谢谢您的评价，我们会继续改进 🙏", Button("查排片", "今天有什么电影"))


# --- audience routes -----------------------------------------------------------------------------


@router.on(channel=Channel.WECHAT, event="subscribe", scene=tps.SCENE_PREFIX)
async def followed_by_scan(
    msg: Inbound, actor: Actor, scene_args: list[str], clock: Clock, dialog: Dialog,
) -> Reply:
    await set_subscription(msg.user_id, True, clock.now(), scene=msg.scene)
    return await _scanned(actor, scene_args, clock, dialog, "感谢扫码关注！")


@router.on(channel=Channel.WECHAT, event="scan", scene=tps.SCENE_PREFIX)
async def scanned(actor: Actor, scene_args: list[str], clock: Clock, dialog: Dialog) -> Reply:
    return await _scanned(actor, scene_args, clock, dialog, "感谢扫码！")


async def _scanned(actor: Actor, scene_args: list[str], clock: Clock, dialog: Dialog, lead: str) -> Reply:
    code = tps.code_from_scene(scene_args)
    touchpoint = await tps.by_code(code) if code else None
    if touchpoint is None:
        return Reply.say(lead + "这个评价码已经停用了，欢迎直接告诉我您的感受～", Button("我要评价", "我要评价"))
    return await begin(actor, touchpoint, clock, dialog, lead)


@router.on(pending="fb:stars", when=_star_tap)
async def stars_given(
    stars: int, pending_data: dict[str, Any], clock: Clock, dialog: Dialog, desk: Any = None,
) -> Reply | None:
    loaded = await _load(pending_data)
    if loaded is None:
        return None
    response, touchpoint = loaded
    await fb.answer(response, clock.now(), stars=stars)
    order = await _after_rating(response, touchpoint, clock, desk)
    lead = _sorry(order) if order is not None else "收到，谢谢！"
    return await ask_nps(dialog, response, lead)


@router.on(pending="fb:nps", when=_nps_tap)
async def nps_given(
    score: int, pending_data: dict[str, Any], clock: Clock, dialog: Dialog, desk: Any = None,
) -> Reply | None:
    loaded = await _load(pending_data)
    if loaded is None:
        return None
    response, touchpoint = loaded
    await fb.answer(response, clock.now(), nps=score)
    await _after_rating(response, touchpoint, clock, desk)
    return await ask_aspects(dialog, response, list(response.aspects or []))


@router.on(pending="fb:aspects", kind=("text", "voice"))
async def aspect_tapped(
    text: str, pending_data: dict[str, Any], clock: Clock, dialog: Dialog,
) -> Reply | None:
    loaded = await _load(pending_data)
    if loaded is None:
        return None
    response, _ = loaded
    chosen: list[str] = list(pending_data.get("aspects") or [])
    word = text.strip().lstrip("✔")
    if word in ASPECTS:
        chosen = [a for a in chosen if a != word] if word in chosen else [*chosen, word]
        return await ask_aspects(dialog, response, chosen)
    if word in DONE_WORDS or word in SKIP_WORDS:
        await fb.answer(response, clock.now(), aspects=chosen if word in DONE_WORDS else response.aspects)
        return await ask_comment(dialog, response)
    return None  # something else: answered normally, the survey kept


@router.on(pending="fb:comment", kind=("text", "voice"))
async def comment_given(
    text: str, intent: str | None, pending_data: dict[str, Any], clock: Clock,
    settings: Settings, desk: Any = None,
) -> Reply | None:
    loaded = await _load(pending_data)
    if loaded is None:
        return None
    response, touchpoint = loaded
    words = text.strip()
    if intent in ("human", "buy_ticket", "query_showtimes", "my_tickets", "refund"):
        return None  # a request, not a comment
    had_order = response.work_order_id is not None
    if words not in SKIP_WORDS:
        extra: dict[str, Any] = {}
        number = PHONE.search(words)
        if number and not response.phone:
            extra["phone"] = number.group(0)
        await fb.answer(response, clock.now(), comment=words, reading=await read_comment(words), **extra)
    order, _ = await alert_if_needed(response, touchpoint, clock.now(), desk)
    if had_order and order is not None and response.comment:
        messages = FeedbackMessages(settings.public_url, settings.wecom_agent_id, clock)
        await messages.supplement(response, order)
        desk_or_silent(desk).wake()
    return await finish(response, order)


@router.on(role="audience", kind=("text", "voice"), when=_star_tap)
async def stars_without_survey(
    actor: Actor, stars: int, clock: Clock, dialog: Dialog, desk: Any = None,
) -> Reply:
    """「4星」 tapped in the post-show message (or typed): the show's survey, else a chat one."""
    now = clock.now()
    if (dialog.pending or "").startswith("fb:"):
        # A star tapped again later in the same survey: it changes that survey's stars.
        loaded = await _load(dialog.data)
        if loaded is not None:
            response, touchpoint = loaded
            await fb.answer(response, now, stars=stars)
            await _after_rating(response, touchpoint, clock, desk)
            return await ask_nps(dialog, response, f"已改为 {stars} 星。")
    recent = await FeedbackResponse.filter(
        visitor=actor.user_id, visit_day=fb.business_day(now),
        updated_at__gte=now - timedelta(seconds=SURVEY_TIMEOUT),
    ).order_by("-updated_at").prefetch_related("touchpoint").first()
    if recent is not None:
        # The survey they were in (its dialog state lost): the same response, not a new one.
        response, touchpoint = recent, recent.touchpoint
    else:
        found, visit = await _invited_or_chat(actor, now)
        if found is None:
            return Reply.say("谢谢！影城信息还没有配置好，暂时无法记录评价。")
        touchpoint = found
        response, _ = await fb.start_response(
            touchpoint=touchpoint, visitor=actor.user_id, now=now,
            channel="push" if touchpoint.kind == TouchpointKind.PUSH else "chat", visit=visit,
        )
    await fb.answer(response, now, stars=stars)
    order = await _after_rating(response, touchpoint, clock, desk)
    lead = _sorry(order) if order is not None else f"收到 {stars} 星，谢谢！"
    return await ask_nps(dialog, response, lead)


async def _invited_or_chat(actor: Actor, now: Any) -> tuple[Touchpoint | None, fb.Visit | None]:
    invite = await FeedbackInvite.filter(
        openid=actor.user_id, how__in=["window", "consent"], created_at__gte=now - timedelta(hours=12),
    ).order_by("-created_at").first()
    if invite is not None:
        touchpoint = await tps.special(invite.cinema_id, TouchpointKind.PUSH, now)
        return touchpoint, await fb.visit_of_show(invite.showtime_id)
    cinema = await home_cinema(actor.cinema_id)
    if cinema is None:
        return None, None
    touchpoint = await tps.special(cinema.id, TouchpointKind.CHAT, now)
    return touchpoint, await fb.visit_today(actor.user_id, cinema.id, now)


@requests.on(intent="feedback", role="audience")
async def feedback_said(
    actor: Actor, text: str, slots: dict[str, Any], clock: Clock, dialog: Dialog, desk: Any = None,
) -> Reply:
    """「我要评价」「座椅很舒服，好评」「打5分」: a survey in chat, keeping what was said."""
    now = clock.now()
    cinema = await home_cinema(actor.cinema_id)
    if cinema is None:
        return Reply.say("谢谢！影城信息还没有配置好，暂时无法记录评价。")
    touchpoint = await tps.special(cinema.id, TouchpointKind.CHAT, now)
    visit = await fb.visit_today(actor.user_id, cinema.id, now)
    response, _ = await fb.start_response(
        touchpoint=touchpoint, visitor=actor.user_id, now=now, channel="chat", visit=visit
    )
    said = text.strip()
    if len(FILLER.sub("", said)) >= 4:
        await fb.answer(response, now, comment=said, reading=await read_comment(said))
    rating = slots.get("rating")
    if isinstance(rating, int) and 1 <= rating <= 5:
        await fb.answer(response, now, stars=rating)
        order = await _after_rating(response, touchpoint, clock, desk)
        return await ask_nps(dialog, response, _sorry(order) if order else f"收到 {rating} 星，谢谢！")
    lead = "谢谢您的反馈！" if response.comment else "好的，"
    return await ask_stars(dialog, response, lead + "花30秒帮我们打个分吧。")


@router.on(role="audience", kind=("text", "voice"), when=_follow_up)
async def followed_up(
    actor: Actor, msg: Inbound, solved: bool, clock: Clock, desk: Any = None,
) -> Reply:
    """「解决了」「没有解决」 after a manager's reply: closes or reopens the work order."""
    response = await fb.awaiting_follow_up(actor.user_id)
    if response is None:
        if solved:
            return Reply.say("好的，谢谢告知！有需要随时找我～")
        return Reply.say("抱歉还没帮您解决。请说说遇到了什么问题，例如「3号厅空调太冷」：", Button("人工服务", "转人工"))
    notify = desk_or_silent(desk)
    try:
        order = await fb.follow_up(response, solved, clock.now(), notify=notify, message_key=msg.dedup_key)
    except WorkOrderError as exc:
        log.warning("follow-up could not move the work order", extra={"code": exc.code})
        order = None
    notify.wake()
    if solved:
        return Reply.say("太好了，感谢您的耐心！期待您再次光临 🎬")
    ref = f"（编号 {order.ref}）" if order is not None else ""
    return Reply.say(f"抱歉问题还没解决，已重新交给值班经理跟进{ref}，会尽快联系您。", Button("人工服务", "转人工"))


# --- managers in WeCom ---------------------------------------------------------------------------


def _reply_command(update: Update) -> dict[str, Any] | None:
    m = REPLY.match(update.inbound.text or "")
    if not m:
        return None
    return {"ref": m.group("ref"), "said": m.group("text").strip()}


def coupon_in(text: str) -> tuple[str, int | None]:
    """「送20元券」 out of a reply: (the words for the audience, the coupon in fen)."""
    m = COUPON.search(text)
    if not m:
        return text, None
    # Not clipped to the largest coupon: asking for more than one may give is refused and
    # audited (``domain.rights``), not silently turned into a smaller coupon.
    fen = int(m.group("yuan")) * 100
    rest = (text[: m.start()] + text[m.end() :]).strip(" ，,")
    return rest, (fen or None)


@managers.on(channel=Channel.WECOM, role="employee", kind=("text", "voice"), when=_reply_command)
async def manager_replied(
    actor: Actor, msg: Inbound, ref: str | None, said: str, clock: Clock, settings: Settings,
    desk: Any = None,
) -> Reply:
    order = await find(ref, cinema_id=actor.cinema_id) if ref else None
    if ref and order is None:
        return Reply.say(f"本影城没有编号 {ref} 的工单。")
    if order is None and actor.cinema_id is not None:
        order = await fb.replied_with(msg.dedup_key) or await fb.latest_alert_for(
            actor.user_id, actor.cinema_id
        )
    if order is None:
        return Reply.say("现在没有待回复的顾客评价。回复指定工单：「回复 W3K7Q: 很抱歉…」")
    text, coupon_fen = coupon_in(said)
    messages = FeedbackMessages(settings.public_url, settings.wecom_agent_id, clock)
    notify = desk_or_silent(desk)
    who = Who(actor.user_id, actor.role, actor.cinema_id, actor.name)
    try:
        done = await fb.reply(
            order, who, text, clock.now(), notify=notify, tell=messages.tell,
            coupon_fen=coupon_fen, message_key=msg.dedup_key,
        )
    except CouponRefused as exc:
        told = await messages.coupon_refused(
            order, actor.name or actor.user_id, exc.value_fen, exc.limit_fen, msg.dedup_key
        )
        ask = "已转告值班经理决定是否送券" if told else "请值班经理决定是否送券"
        return Reply.say(f"{exc.message}{ask}；也可以去掉送券再回复顾客。")
    except (FeedbackError, WorkOrderError) as exc:
        return Reply.say(exc.message)
    notify.wake()
    lines = [f"✅ 已回复顾客（{order.ref}）：{text[:60]}"]
    if done.coupon is not None:
        lines.append(f"🎁 已附 {format_fen(done.coupon.value_fen)} 观影券，券码 {done.coupon.code}。")
    if done.asked:
        lines.append("工单已标记处理；顾客会被问「问题解决了吗？」，回答没有解决会重新打开工单。")
    return Reply.say("\n".join(lines))


def _limit_command(update: Update) -> dict[str, Any] | None:
    text = update.inbound.text or ""
    if m := LIMIT_SET.match(text):
        return {"role_word": m.group("role"), "yuan": m.group("yuan")}
    if LIMIT_SHOW.match(text):
        return {"role_word": None, "yuan": None}
    return None


@managers.on(channel=Channel.WECOM, role="employee", kind="text", when=_limit_command)
async def compensation_limit(
    actor: Actor, role_word: str | None, yuan: str | None, clock: Clock
) -> Reply:
    """「员工补偿上限设为20元」 (managers) and 「补偿上限」 (anyone on staff may see it)."""
    if actor.cinema_id is None:
        return Reply.say("没有找到你所在的影城。")
    if yuan is not None and role_word is not None:
        who = Who(actor.user_id, actor.role, actor.cinema_id, actor.name)
        role = LIMIT_ROLES[role_word]
        try:
            before, after = await rights.set_limit(who, role, int(yuan) * 100, clock.now())
        except rights.NotAllowed as exc:
            return Reply.say(exc.message)
        label = rights.ROLE_LABELS[role]
        return Reply.say(
            f"✅ 已设{label}补偿上限：每次最多送 {format_fen(after)} 券（原 {format_fen(before)}）。"
            "超出的送券会被拒绝并转告值班经理。"
        )
    shown = await rights.limits(actor.cinema_id)
    parts = "，".join(f"{rights.ROLE_LABELS[r]} {format_fen(v)}" for r, v in shown.items())
    return Reply.say(
        f"补偿上限（每次送券最多）：{parts}；经理不限（最多 "
        f"{format_fen(rights.MAX_COMPENSATION_FEN)}）。经理可发送「员工补偿上限设为20元」调整。"
    )


def _summary_asked(update: Update) -> bool:
    return bool(SUMMARY.match(update.inbound.text or ""))


@managers.on(channel=Channel.WECOM, role="manager", kind=("text", "voice"), when=_summary_asked)
async def todays_numbers(actor: Actor, clock: Clock) -> Reply:
    if actor.cinema_id is None:
        return Reply.say("没有找到你所在的影城。")
    day = fb.business_day(clock.now())
    data = await fb.summary(actor.cinema_id, day, day, by="hall")
    return Reply.say(summary_text(data, f"{day.month}月{day.day}日"))


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}%"


def _ci(pair: list[float] | None, unit: str = "") -> str:
    if not pair:
        return ""
    return f"（95%区间 {pair[0]:.0f}–{pair[1]:.0f}{unit}）"


def summary_text(data: dict[str, Any], day: str) -> str:
    total = data["total"]
    if not total["responses"]:
        return f"📊 {day} 还没有顾客评价。"
    csat, nps = total["csat"], total["nps"]
    lines = [
        f"📊 {day} 满意度（{total['responses']} 份评价）",
        f"满意度 CSAT {_pct(csat['pct'])}{_ci(csat['ci95'], '%')}，{csat['n']} 人打星",
    ]
    if nps["n"]:
        lines.append(
            f"NPS {nps['score']:+.0f}{_ci(nps['ci95'])}，推荐 {nps['promoters']} / 中立 {nps['passives']}"
            f" / 贬损 {nps['detractors']}"
        )
    halls = [g for g in data["groups"] if g["csat"]["n"]]
    if halls:
        ranked = sorted(halls, key=lambda g: (g["csat"]["pct"] or 0))
        lines.append("按影厅：" + "；".join(f"{g['label']} {_pct(g['csat']['pct'])}（{g['csat']['n']}）" for g in ranked[:6]))
    complaints = data["complaints"]
    if complaints["n"]:
        cats = "、".join(f"{c['label']} {c['share']:.0f}%" for c in complaints["categories"][:4])
        lines.append(f"差评工单 {complaints['n']} 张：{cats}")
        if complaints["median_ack_minutes"] is not None:
            lines.append(f"响应中位数 {complaints['median_ack_minutes']:.0f} 分钟")
        if complaints["median_resolve_minutes"] is not None:
            lines.append(f"回复处理中位数 {complaints['median_resolve_minutes']:.0f} 分钟")
    return "\n".join(lines)

