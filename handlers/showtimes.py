"""「今天有什么电影」「今晚哪吒2几点」「3号厅下一场几点」: the schedule, for audiences and staff."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime, timedelta

from bot.clock import Clock, local
from bot.replies import Button, Reply
from bot.router import Actor, Router
from domain.catalog import Film, Showtime
from handlers.reference import ReferenceData

router = Router(__name__)

_DAY_WORDS = {"今天": 0, "今晚": 0, "明天": 1, "明晚": 1, "后天": 2}
_HALL = re.compile(r"(IMAX|imax|[1-9一二三四五六七八九])\s*号?厅")
_CN_DIGITS = {c: str(i) for i, c in enumerate("零一二三四五六七八九")}


def _day_offset(text: str) -> int:
    for word, offset in _DAY_WORDS.items():
        if word in text:
            return offset
    return 0


def _hall_name(text: str) -> str | None:
    m = _HALL.search(text)
    if not m:
        return None
    token = m.group(1)
    if token.lower() == "imax":
        return "IMAX厅"
    return f"{_CN_DIGITS.get(token, token)}号厅"


def _price(fen: int) -> str:
    return f"¥{fen // 100}" if fen % 100 == 0 else f"¥{fen / 100:.2f}"


@router.on(intent="film_info")
async def film_info(actor: Actor, text: str, clock: Clock, reference: ReferenceData) -> Reply:
    films = await reference.find_films(text)
    if not films:
        return await showtimes(actor, text, clock, reference)
    f = films[0]
    rating = f"⭐{f.rating:g}  " if f.rating else ""
    return Reply.say(
        f"《{f.title}》{rating}{f.duration_min}分钟\n{' / '.join(f.genres)}  {' / '.join(f.formats)}\n{f.synopsis}",
        Button("看场次", f"{f.title}今天几点"),
    )


@router.on(intent="query_showtimes")
async def showtimes(actor: Actor, text: str, clock: Clock, reference: ReferenceData) -> Reply:
    cinema = await reference.cinema(actor.cinema_id)
    if cinema is None:
        return Reply.say("影城信息还没有配置好，请稍后再试。")
    now = clock.now()
    offset = _day_offset(text)
    day_start = local(now).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=offset)
    start = max(now, day_start) if offset == 0 else day_start
    if "晚" in text:
        start = max(start, day_start.replace(hour=17))
    films = await reference.find_films(text)
    hall_name = _hall_name(text)
    if hall_name and hall_name not in {h.name for h in await reference.halls(cinema.id)}:
        names = "、".join(h.name for h in await reference.halls(cinema.id))
        return Reply.say(f"没有找到{hall_name}，本影城有：{names}")
    film_ids = {f.id for f in films}
    shows = [
        s
        for s in await reference.day_schedule(cinema.id, day_start)
        if s.starts_at >= start
        and (not film_ids or s.film_id in film_ids)  # type: ignore[attr-defined]
        and (not hall_name or s.hall.name == hall_name)
    ]
    day_label = ["今天", "明天", "后天"][offset] if offset < 3 else local(day_start).strftime("%m月%d日")
    if not shows:
        what = "、".join(f.title for f in films) or hall_name or ""
        return Reply.say(
            f"{day_label}{what}已经没有可看的场次了。要不要看看明天的？", Button("明天的排片", "明天有什么电影")
        )
    if hall_name and not films:
        nxt = shows[0]
        return Reply.say(
            f"{hall_name}下一场：{_hhmm(nxt.starts_at)}《{nxt.film.title}》{nxt.format}，"
            f"{_hhmm(nxt.ends_at)} 散场。\n{day_label}之后还有 {len(shows) - 1} 场。"
        )
    return Reply.say(_schedule_text(day_label, shows, detailed=bool(films)), Button("买票"))


def _hhmm(dt: datetime) -> str:
    return local(dt).strftime("%H:%M")


def _schedule_text(day_label: str, shows: list[Showtime], detailed: bool) -> str:
    by_film: dict[str, list[Showtime]] = defaultdict(list)
    for s in shows:
        by_film[s.film.title].append(s)
    lines = [f"🎬 {day_label}的场次："]
    for title, items in by_film.items():
        film: Film = items[0].film
        head = f"《{title}》{film.duration_min}分钟"
        if film.rating:
            head += f" ⭐{film.rating:g}"
        lines.append(head)
        if detailed:
            lines.extend(
                f"  {_hhmm(s.starts_at)} {s.hall.name} {s.format} {_price(s.base_price_fen)}"
                for s in items[:8]
            )
        else:
            lines.append("  " + " ".join(_hhmm(s.starts_at) for s in items[:8]))
    if not detailed:
        lines.append("想看哪部？告诉我片名可看影厅和票价。")
    return "\n".join(lines)
