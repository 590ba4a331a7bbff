"""「我想买两张明天19:00沙丘2的票」: buying, paying, e-tickets, refunds and changes by chat.

A purchase whose first message names film, time and count takes two messages:
the request (→ the best seats, held, with a seat map and the price) and
「确认」 (→ a pay link). Ambiguity is answered with buttons, not questions in
prose: two shows at 19:00, a missing film, a missing count.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime, time, timedelta
from typing import Any

from bot.infra.clock import SHANGHAI, Clock, local
from bot.chat.dialog import Ask, Dialog, Form, Invalid
from bot.chat.replies import Button, Reply
from bot.chat.router import Actor, Router, Update
from bot.infra.strict import parse_ascii_int
from domain import ticketing
from domain.catalog import Showtime
from domain.orders import SOLD_STATES, Order, OrderState
from domain.people import touch_member
from domain.pricing import format_fen
from domain.seating import render_map
from domain.ticketing import Buyer, TicketingError, seat_names
from handlers.api.context import ApiContext
from handlers.api.picker import picker_url
from handlers.reference import ReferenceData
from handlers.ticket_messages import ticket_url

router = Router(__name__)

MAX_CHOICES = 6
CN_DIGITS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}
ROW = re.compile(r"(?:换到|换成|要|坐)?第?(\d{1,2}|[一二两三四五六七八九十]{1,3})排(?![\d一二三四五六七八九十]+[座号])")


def _hhmm(dt: datetime) -> str:
    return local(dt).strftime("%H:%M")


def _day(dt: datetime, today: date) -> str:
    d = local(dt).date()
    offset = (d - today).days
    return {0: "今天", 1: "明天", 2: "后天"}.get(offset, f"{d.month}月{d.day}日")


def _cn_number(text: str) -> int | None:
    if text.isdecimal():
        # Full-width digits count as digits (NFKC); a count has at most two of them.
        return parse_ascii_int(unicodedata.normalize("NFKC", text), max_digits=2)
    if text == "十":
        return 10
    if text.startswith("十"):
        return 10 + CN_DIGITS.get(text[1:], 0)
    if text.endswith("十"):
        return CN_DIGITS.get(text[0], 0) * 10
    if len(text) == 3 and text[1] == "十":
        return CN_DIGITS.get(text[0], 0) * 10 + CN_DIGITS.get(text[2], 0)
    return CN_DIGITS.get(text)


def row_request(update: Update) -> dict[str, Any] | None:
    """「换到7排」「要五排的」: a row, without a seat number."""
    match = ROW.search(update.inbound.text or "")
    if not match:
        return None
    row = _cn_number(match.group(1))
    return {"row": row} if row else None


async def _buyer(actor: Actor, clock: Clock) -> Buyer:
    member, _ = await touch_member(actor.user_id, clock.now())
    return Buyer(openid=actor.user_id, member_id=member.id, tier=member.tier)


# Asking for what is missing ------------------------------------------------------------
async def ask_film(actor: Actor, clock: Clock, reference: ReferenceData) -> Reply:
    cinema = await reference.cinema(actor.cinema_id)
    today = local(clock.now()).date()
    titles: tuple[str, ...] = ()
    if cinema is not None:
        day_start = datetime.combine(today, time(0), SHANGHAI)
        titles = await reference.titles_from(cinema.id, day_start, clock.now(), after=True)
    buttons = [Button(t, t) for t in titles[:MAX_CHOICES]]
    return Reply.say("想看哪部电影？", *buttons)


async def check_film(value: Any, text: str, reference: ReferenceData) -> str | None:
    if value:
        return str(value)
    films = await reference.find_films(text)
    if films:
        return films[0].title
    return None


async def ask_count(slots: dict[str, Any]) -> Reply:
    return Reply.say(f"《{slots.get('film', '')}》要几张？", *(Button(f"{n}张") for n in (1, 2, 3, 4)))


# A number is a ticket count when a unit follows it (「要2张」) or when it is the whole
# answer (「2」「两个」); not when it is part of a name (「今晚哪吒2几点」 asks about 哪吒2).
_COUNT_WITH_UNIT = re.compile(r"(\d+|[一二两三四五六七八九十])\s*[张个位人]")
_COUNT_ALONE = re.compile(r"\s*(?:要|买)?\s*(\d+|[一二两三四五六七八九十])\s*[张个位人]?\s*[。！!.，,]?\s*")


async def check_count(value: Any, text: str) -> int | None:
    if value is None:
        match = _COUNT_WITH_UNIT.search(text) or _COUNT_ALONE.fullmatch(text)
        if not match:
            return None
        value = _cn_number(match.group(1))
        if value is None:
            raise Invalid("一次最多买10张，要几张？")
    count = int(value)
    if not 1 <= count <= 10:
        raise Invalid("一次最多买10张，要几张？")
    return count


BUY = Form(
    "buy",
    (Ask("film", ask_film, check_film), Ask("count", ask_count, check_count)),
    timeout=600,
    keep=("date", "time", "hall", "seats"),
)


@router.on(intent="buy_ticket", role="audience")
async def buy(slots: dict[str, Any], dialog: Dialog) -> Reply | None:
    if slots.get("seats") and not slots.get("count"):
        slots["count"] = len(slots["seats"])
    return await dialog.start(BUY, slots)


@router.form(BUY)
async def buy_ready(
    actor: Actor, slots: dict[str, Any], clock: Clock, reference: ReferenceData, dialog: Dialog,
    tickets: ApiContext,
) -> Reply:
    """Film and count known: find the show (or offer the choices), then hold the seats."""
    now = clock.now()
    today = local(now).date()
    cinema = await reference.cinema(actor.cinema_id)
    if cinema is None:
        return Reply.say("影城信息还没有配置好，请稍后再试。")
    title, count = slots["film"], int(slots["count"])
    day = date.fromisoformat(slots["date"]) if slots.get("date") else today
    days = [day] if slots.get("date") else [today, today + timedelta(days=1)]
    shows: list[Showtime] = []
    for d in days:
        day_start = datetime.combine(d, time(0), SHANGHAI)
        shows += [
            s for s in await reference.shows_from(cinema.id, day_start, now, after=True)
            if s.film.title == title and s not in shows
            and (not slots.get("hall") or s.hall.name == slots["hall"])
        ]
        if shows and not slots.get("time"):
            break
    if slots.get("time"):
        hh, mm = map(int, slots["time"].split(":"))
        exact = [s for s in shows if (local(s.starts_at).hour, local(s.starts_at).minute) == (hh, mm)]
        if exact:
            shows = exact
        else:
            wanted = datetime.combine(day, time(hh, mm), SHANGHAI)
            near = sorted(shows, key=lambda s: abs((s.starts_at - wanted).total_seconds()))
            return await _choose_show(
                dialog, near[:MAX_CHOICES], count, today,
                f"{_day(wanted, today)}{slots['time']}没有《{title}》，这些场次可以吗？",
                f"{_day(wanted, today)}已经没有《{title}》的场次了。",
            )
    if len(shows) == 1:
        return await _offer(actor, shows[0], clock, dialog, tickets, count=count, seats=slots.get("seats"))
    return await _choose_show(
        dialog, shows[:MAX_CHOICES], count, today, f"《{title}》有这些场次，选一场：",
        f"近两天没有《{title}》的场次了。",
    )


async def _choose_show(
    dialog: Dialog, shows: list[Showtime], count: int, today: date, lead: str, none: str
) -> Reply:
    if not shows:
        return Reply.say(none, Button("看看今天的排片", "今天有什么电影"))
    choices = {}
    buttons = []
    for s in shows:
        label = f"{_day(s.starts_at, today)} {_hhmm(s.starts_at)} {s.hall.name}"
        choices[label] = s.id
        price = format_fen(s.base_price_fen)
        buttons.append(Button(f"{label} {s.format} {price}起", label))
    reply = Reply.say(lead, *buttons)
    return await dialog.confirm("buy:show", {"choices": choices, "count": count}, reply)


def _picked(text: str, choices: dict[str, int], slots: dict[str, Any]) -> int | None:
    text = text.strip()
    if text in choices:
        return choices[text]
    wanted_time, wanted_hall = slots.get("time"), slots.get("hall")
    found = [
        sid for label, sid in choices.items()
        if (not wanted_time or wanted_time in label) and (not wanted_hall or wanted_hall in label)
        and (wanted_time or wanted_hall)
    ]
    return found[0] if len(found) == 1 else None


@router.on(pending="buy:show", intent=("deny", "cancel"))
async def show_declined() -> Reply:
    return Reply.say("好的，不买了。想看别的场次随时告诉我～", Button("查排片", "今天有什么电影"))


@router.on(pending="buy:show")
async def show_picked(
    actor: Actor, text: str, slots: dict[str, Any], pending_data: dict[str, Any], clock: Clock,
    dialog: Dialog, tickets: ApiContext, intent: str | None,
) -> Reply | None:
    showtime_id = _picked(text, pending_data["choices"], slots)
    if showtime_id is None:
        if intent not in (None, "unknown", "confirm", "buy_ticket", "query_showtimes"):
            return None  # something else entirely: route it normally
        buttons = [Button(label) for label in pending_data["choices"]]
        return await dialog.confirm("buy:show", pending_data, Reply.say("选哪一场？点下面的场次：", *buttons))
    show = await Showtime.get(id=showtime_id).prefetch_related("film", "hall")
    return await _offer(actor, show, clock, dialog, tickets, count=pending_data["count"])


# Holding and offering seats --------------------------------------------------------------
async def _offer(
    actor: Actor, show: Showtime, clock: Clock, dialog: Dialog, tickets: ApiContext, *,
    count: int, seats: list[str] | None = None, row: int | None = None, replacing: Order | None = None,
) -> Reply:
    now = clock.now()
    buyer = await _buyer(actor, clock)
    if replacing is None:
        # One open order per buyer and show: a new request replaces the old hold.
        replacing = await ticketing.open_order(buyer.openid, show.id)
        if replacing is not None and replacing.state != OrderState.HELD:
            await ticketing.release_order(tickets.inventory, replacing, by=buyer.openid, now=now)
            replacing = None
    try:
        order = await ticketing.hold_seats(
            tickets.inventory, show, buyer, now, count=count, seats=seats, row=row,
            replacing=replacing,
        )
    except TicketingError as exc:
        buttons = [Button("换一场", f"买{show.film.title}"), Button("看座位图", "看座位图")]
        if exc.code in ("taken", "bad_choice", "no_seats") and replacing is not None:
            return await dialog.confirm(
                "buy:offer", {"order": replacing.no}, Reply.say(exc.message + "\n原来的座位还为您留着。", *OFFER_BUTTONS)
            )
        return Reply.say(exc.message, *buttons[:1])
    return await dialog.confirm("buy:offer", {"order": order.no}, await _offer_text(order, show, tickets, now))


OFFER_BUTTONS = (Button("确认购买", "确认"), Button("换个位置", "换个位置"), Button("不要了", "取消"))


async def _offer_text(order: Order, show: Showtime, tickets: ApiContext, now: datetime) -> Reply:
    plan, states, mine = await ticketing.house(tickets.inventory, show, now, order.openid)
    seat_map = render_map(plan, states, set(order.seats))
    quote = order.quote
    picker = picker_url(tickets, order.openid, show.id)
    lines = [
        f"《{show.film.title}》{_day(show.starts_at, local(now).date())} {_hhmm(show.starts_at)} "
        f"{show.hall.name} {show.format}",
        f"座位：{seat_names(order.seats)}",
        _price_line(quote, len(order.seats)),
        f"已为您保留{-(-int((order.expires_at - now).total_seconds()) // 60)}分钟"
        f"（至{_hhmm(order.expires_at)}），确认后去支付。",
        "",
        seat_map,
        f'想自己挑？<a href="{picker}">打开选座页</a>',
    ]
    return Reply.say("\n".join(lines), *OFFER_BUTTONS)


def _price_line(quote: dict[str, Any], n: int) -> str:
    kinds = {"standard": "普通座", "vip": "VIP座", "couple": "情侣座", "wheelchair": "无障碍座"}
    parts = []
    for kind in dict.fromkeys(line["kind"] for line in quote["lines"]):
        fens = [line["fen"] for line in quote["lines"] if line["kind"] == kind]
        parts.append(f"{kinds.get(kind, kind)} {format_fen(fens[0])}×{len(fens)}")
    extra = f"（{quote['discount']}）" if quote.get("discount") else ""
    return f"{n}张 · {' + '.join(parts)} · 合计 {format_fen(quote['total_fen'])}{extra}"


async def _pending_order(pending_data: dict[str, Any]) -> Order | None:
    return await Order.get_or_none(no=pending_data.get("order", "")).prefetch_related("showtime__film", "showtime__hall")


@router.on(pending="buy:offer", intent="confirm")
async def offer_confirmed(pending_data: dict[str, Any], clock: Clock, tickets: ApiContext) -> Reply:
    order = await _pending_order(pending_data)
    if order is None:
        return Reply.say("没有找到这笔订单，请重新选座。")
    try:
        await ticketing.checkout(order, now=clock.now())
    except TicketingError as exc:
        return Reply.say(exc.message, Button("重新选座", f"买{order.showtime.film.title}"))
    url = tickets.payments.pay_url(order)
    left = _hhmm(order.expires_at)
    return Reply.say(
        f'请在 {left} 前完成支付：<a href="{url}">👉 点此支付 {format_fen(order.amount_fen)}</a>\n'
        f"订单号 {order.no}，支付后电子票会发到这里。"
    )


@router.on(pending="buy:offer", intent="cancel")
async def offer_cancelled(pending_data: dict[str, Any], clock: Clock, tickets: ApiContext) -> Reply:
    order = await _pending_order(pending_data)
    if order is not None:
        await ticketing.release_order(tickets.inventory, order, by=order.openid, now=clock.now())
    return Reply.say("好的，已取消，座位已释放。想看别的随时告诉我～", Button("查排片", "今天有什么电影"))


@router.on(pending="buy:offer", when=row_request)
async def offer_row(
    actor: Actor, row: int, pending_data: dict[str, Any], clock: Clock, dialog: Dialog,
    tickets: ApiContext,
) -> Reply:
    order = await _pending_order(pending_data)
    if order is None:
        return Reply.say("没有找到这笔订单，请重新选座。")
    return await _offer(actor, order.showtime, clock, dialog, tickets, count=len(order.seats), row=row, replacing=order)


def _seats_given(update: Update) -> dict[str, Any] | None:
    u = update.understanding
    seats = u.slots.get("seats") if u else None
    return {"wanted": list(seats)} if seats else None


@router.on(pending="buy:offer", when=_seats_given)
async def offer_seats(
    actor: Actor, wanted: list[str], pending_data: dict[str, Any], clock: Clock, dialog: Dialog,
    tickets: ApiContext,
) -> Reply:
    order = await _pending_order(pending_data)
    if order is None:
        return Reply.say("没有找到这笔订单，请重新选座。")
    return await _offer(actor, order.showtime, clock, dialog, tickets, count=len(wanted), seats=wanted, replacing=order)


@router.on(pending="buy:offer", intent="deny")
@router.on(pending="buy:offer", when=lambda u: "换" in (u.inbound.text or "") or "座位图" in (u.inbound.text or ""))
async def offer_other(pending_data: dict[str, Any], clock: Clock, dialog: Dialog, tickets: ApiContext) -> Reply:
    order = await _pending_order(pending_data)
    if order is None:
        return Reply.say("没有找到这笔订单，请重新选座。")
    plan, _, _ = await ticketing.house(tickets.inventory, order.showtime, clock.now(), order.openid)
    back = plan.row_count
    rows = sorted({max(1, back * 2 // 3 - 2), max(1, back * 2 // 3), min(back, back * 2 // 3 + 2)})
    buttons = [Button(f"换到{r}排") for r in rows]
    reply = Reply.say(
        "想换到哪里？说「换到7排」，或直接说座位号如「6排8座 6排9座」：", *buttons, Button("就要这个", "确认")
    )
    return await dialog.confirm("buy:offer", pending_data, reply)


# After the purchase ----------------------------------------------------------------------
@router.on(intent="my_tickets", role="audience")
async def my_tickets(actor: Actor, clock: Clock, tickets: ApiContext) -> Reply:
    orders = await ticketing.my_tickets(actor.user_id, clock.now())
    if not orders:
        return Reply.say("您还没有待观看的电影票。", Button("买票", "我要买票"), Button("查排片", "今天有什么电影"))
    today = local(clock.now()).date()
    lines = ["🎟️ 您的电影票："]
    for order in orders:
        show = order.showtime
        active = [t for t in order.tickets if t.active]
        if not active:
            continue
        url = ticket_url(tickets.public_url, active[0].secret)
        lines.append(
            f"《{show.film.title}》{_day(show.starts_at, today)} {_hhmm(show.starts_at)} {show.hall.name}\n"
            f"  {seat_names([t.seat for t in active])} · "
            f'<a href="{url}">查看电子票</a>'
        )
    return Reply.say("\n".join(lines), Button("退票", "我要退票"), Button("改签", "我要改签"))


async def _refundable(openid: str, now: datetime) -> list[Order]:
    return [o for o in await ticketing.my_tickets(openid, now) if o.state in (OrderState.ISSUED, OrderState.PAID)]


def _order_label(order: Order, today: date) -> str:
    show = order.showtime
    return f"{_day(show.starts_at, today)}{_hhmm(show.starts_at)}《{show.film.title}》{len(order.seats)}张"


async def _pick_order(kind: str, orders: list[Order], today: date, dialog: Dialog, lead: str) -> Reply:
    choices = {_order_label(o, today): o.no for o in orders[:MAX_CHOICES]}
    reply = Reply.say(lead, *(Button(label) for label in choices))
    return await dialog.confirm(f"{kind}:pick", {"choices": choices}, reply)


@router.on(intent="refund", role="audience")
async def refund(actor: Actor, clock: Clock, dialog: Dialog) -> Reply:
    orders = await _refundable(actor.user_id, clock.now())
    if not orders:
        return Reply.say("没有可以退的票。", Button("我的票", "我的票"))
    if len(orders) == 1:
        return await _confirm_refund(orders[0], clock, dialog)
    return await _pick_order("refund", orders, local(clock.now()).date(), dialog, "退哪一笔？")


@router.on(pending="refund:pick", intent=("cancel", "deny"))
@router.on(pending="change:pick", intent=("cancel", "deny"))
async def pick_cancelled() -> Reply:
    return Reply.say("好的，不退不改了。")


def _choice(update: Update) -> dict[str, Any] | None:
    state = update.dialog_state
    if state is None:
        return None
    number = state.data.get("choices", {}).get((update.inbound.text or "").strip())
    return {"order_no": number} if number else None


@router.on(pending="refund:pick", when=_choice)
async def refund_picked(order_no: str, clock: Clock, dialog: Dialog) -> Reply:
    order = await Order.get(no=order_no).prefetch_related("showtime__film", "showtime__hall")
    return await _confirm_refund(order, clock, dialog)


async def _confirm_refund(order: Order, clock: Clock, dialog: Dialog) -> Reply:
    if order.state not in SOLD_STATES:
        return Reply.say("这笔订单已经不能退了。")
    today = local(clock.now()).date()
    amount = format_fen(order.paid_fen - order.refunded_fen)
    reply = Reply.say(
        f"确认退票？{_order_label(order, today)}（{seat_names(order.seats)}），退款 {amount} 原路退回。",
        Button("确认退票", "确认"), Button("不退了", "取消"),
    )
    return await dialog.confirm("refund:confirm", {"order": order.no}, reply)


@router.on(pending="refund:confirm", intent="confirm")
async def refund_confirmed(
    actor: Actor, pending_data: dict[str, Any], clock: Clock, tickets: ApiContext
) -> Reply:
    order = await Order.get_or_none(no=pending_data["order"], openid=actor.user_id)
    if order is None:
        return Reply.say("没有找到这笔订单。")
    try:
        await ticketing.refund_order(
            tickets.inventory, tickets.payments, order, by=actor.user_id, now=clock.now(),
            notify=tickets.notify,
        )
    except TicketingError as exc:
        return Reply.say(exc.message)
    tickets.wake_sender()
    await order.refresh_from_db()
    return Reply.say(f"已退票，{format_fen(order.refunded_fen)} 将原路退回（1–3个工作日到账）。")


@router.on(pending="refund:confirm", intent=("cancel", "deny"))
async def refund_declined() -> Reply:
    return Reply.say("好的，不退了，电子票仍然有效。")


@router.on(intent="change_ticket", role="audience")
async def change(actor: Actor, clock: Clock, dialog: Dialog, reference: ReferenceData) -> Reply:
    orders = await _refundable(actor.user_id, clock.now())
    if not orders:
        return Reply.say("没有可以改签的票。", Button("我的票", "我的票"))
    if len(orders) == 1:
        return await _change_targets(orders[0], clock, dialog, reference)
    return await _pick_order("change", orders, local(clock.now()).date(), dialog, "改签哪一笔？")


@router.on(pending="change:pick", when=_choice)
async def change_picked(order_no: str, clock: Clock, dialog: Dialog, reference: ReferenceData) -> Reply:
    order = await Order.get(no=order_no).prefetch_related("showtime__film", "showtime__hall")
    return await _change_targets(order, clock, dialog, reference)


async def _change_targets(order: Order, clock: Clock, dialog: Dialog, reference: ReferenceData) -> Reply:
    now = clock.now()
    today = local(now).date()
    show = order.showtime
    targets: list[Showtime] = []
    later = now + timedelta(minutes=30)
    for offset in range(3):
        day_start = datetime.combine(today + timedelta(days=offset), time(0), SHANGHAI)
        targets += [
            s for s in await reference.shows_from(show.cinema_id, day_start, later, after=True)  # type: ignore[attr-defined]
            if s.film_id == show.film_id and s.id != show.id and s not in targets  # type: ignore[attr-defined]
        ]
    if not targets:
        return Reply.say(f"《{show.film.title}》近三天没有其他场次可改签。")
    choices = {}
    buttons = []
    for s in targets[:MAX_CHOICES]:
        label = f"{_day(s.starts_at, today)} {_hhmm(s.starts_at)} {s.hall.name}"
        choices[label] = s.id
        buttons.append(Button(f"{label} {format_fen(s.base_price_fen)}起", label))
    reply = Reply.say(
        f"把{_order_label(order, today)}改到哪一场？（每笔订单可改签一次，差价多退少补）", *buttons
    )
    return await dialog.confirm("change:show", {"order": order.no, "choices": choices}, reply)


@router.on(pending="change:show", intent=("cancel", "deny"))
async def change_declined() -> Reply:
    return Reply.say("好的，不改签了，原电子票仍然有效。")


@router.on(pending="change:show")
async def change_show_picked(
    actor: Actor, text: str, slots: dict[str, Any], pending_data: dict[str, Any], clock: Clock,
    dialog: Dialog, tickets: ApiContext, intent: str | None,
) -> Reply | None:
    target_id = _picked(text, pending_data["choices"], slots)
    if target_id is None:
        if intent not in (None, "unknown", "confirm", "change_ticket"):
            return None
        return await dialog.confirm(
            "change:show", pending_data,
            Reply.say("改到哪一场？", *(Button(label) for label in pending_data["choices"])),
        )
    order = await Order.get_or_none(no=pending_data["order"], openid=actor.user_id)
    if order is None:
        return Reply.say("没有找到这笔订单。")
    target = await Showtime.get(id=target_id).prefetch_related("film", "hall")
    buyer = await _buyer(actor, clock)
    try:
        outcome = await ticketing.change_order(
            tickets.inventory, tickets.payments, order, target, buyer, now=clock.now(),
            notify=tickets.notify,
        )
    except TicketingError as exc:
        return Reply.say(exc.message)
    new = outcome.order
    if not outcome.done:
        url = tickets.payments.pay_url(new)
        return Reply.say(
            f"新场次座位：{seat_names(new.seats)}，需补差价 {format_fen(outcome.due_fen)}。\n"
            f'请在 {_hhmm(new.expires_at)} 前<a href="{url}">👉 点此支付差价</a>，支付后完成改签。'
        )
    tickets.wake_sender()
    extra = f"，差价 {format_fen(-outcome.due_fen)} 原路退回" if outcome.due_fen < 0 else ""
    return Reply.say(f"改签成功！新座位：{seat_names(new.seats)}{extra}。新的电子票已发送。")
