"""「今天有什么电影」「周六晚上哪吒2几点」「3号厅下一场几点」: the schedule, for audiences and staff.

Dates, times, halls and films come from the NLU slots; a question about a day
is never silently answered with another day's schedule.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta
from typing import Any

from bot.infra.clock import SHANGHAI, Clock, local
from bot.chat.replies import Button, Reply
from bot.chat.router import Actor, Router, Update
from domain.catalog import Film, Showtime
from handlers.reference import ReferenceData

router = Router(__name__)

WEEKDAYS = "一二三四五六日"
EVENING = time(17, 0)


def _price(fen: int) -> str:
    return f"¥{fen // 100}" if fen % 100 == 0 else f"¥{fen / 100:.2f}"


def _hhmm(dt: datetime) -> str:
    return local(dt).strftime("%H:%M")


def day_label(day: date, today: date, evening: bool = False) -> str:
    offset = (day - today).days
    if offset == 0:
        return "今晚" if evening else "今天"
    if offset == 1:
        return "明晚" if evening else "明天"
    if offset == 2:
        return "后天"
    return f"{day.month}月{day.day}日（周{WEEKDAYS[day.weekday()]}）"


async def _films_named(slots: dict[str, Any], text: str, reference: ReferenceData) -> list[Film]:
    title = slots.get("film")
    if title:
        return [f for f, _ in await reference.film_names() if f.title == title]
    return await reference.find_films(text)


@router.on(intent="film_info")
async def film_info(
    actor: Actor, text: str, slots: dict[str, Any], clock: Clock, reference: ReferenceData
) -> Reply:
    films = await _films_named(slots, text, reference)
    if not films:
        return Reply.say(
            "想了解哪部电影？告诉我片名就行，例如「哪吒2讲什么」。", Button("今天有什么电影")
        )
    f = films[0]
    rating = f"⭐{f.rating:g}  " if f.rating else ""
    return Reply.say(
        f"《{f.title}》{rating}{f.duration_min}分钟\n{' / '.join(f.genres)}  "
        f"{' / '.join(f.formats)}\n{f.synopsis}",
        Button("看场次", f"{f.title}今天几点"),
    )


def _film_without_intent(update: Update) -> bool:
    u = update.understanding
    return bool(u and u.intent == "unknown" and not u.alternatives and u.slots.get("film"))


@router.on(intent="query_showtimes")
@router.on(kind=("text", "voice"), when=_film_without_intent)
async def showtimes(
    actor: Actor, text: str, slots: dict[str, Any], clock: Clock, reference: ReferenceData
) -> Reply:
    cinema = await reference.cinema(actor.cinema_id)
    if cinema is None:
        return Reply.say("影城信息还没有配置好，请稍后再试。")
    now = clock.now()
    today = local(now).date()
    day = date.fromisoformat(slots["date"]) if slots.get("date") else today
    if day < today:
        return Reply.say(f"{day.month}月{day.day}日已经过去了，想看哪天的场次？", Button("今天有什么电影"))
    day_start = datetime.combine(day, time(0), SHANGHAI)
    start = max(now, day_start)
    evening = "晚" in text and not slots.get("time")
    if slots.get("time"):
        hh, mm = map(int, slots["time"].split(":"))
        wanted = datetime.combine(day, time(hh, mm), SHANGHAI)
        # Shows a little before the time asked still count: people round times.
        start = max(start, wanted - timedelta(minutes=30))
    elif evening:
        start = max(start, datetime.combine(day, EVENING, SHANGHAI))
    films = await _films_named(slots, text, reference)
    hall_name = slots.get("hall")
    halls = await reference.halls(cinema.id)
    if hall_name and hall_name not in {h.name for h in halls}:
        names = "、".join(h.name for h in halls)
        return Reply.say(f"没有找到{hall_name}，本影城有：{names}")
    film_ids = frozenset(f.id for f in films)
    schedule, first = await reference.day_from(cinema.id, day_start, start)
    shows = schedule.shows[first:]
    if film_ids or hall_name:
        shows = [
            s
            for s in shows
            if (not film_ids or s.film_id in film_ids)  # type: ignore[attr-defined]
            and (not hall_name or s.hall.name == hall_name)
        ]
    label = day_label(day, today, evening)
    staff = actor.is_staff
    if not shows:
        what = "、".join(f"《{f.title}》" for f in films) or hall_name or ""
        later = day + timedelta(days=1)
        return Reply.say(
            f"{label}{what}已经没有可看的场次了。",
            Button(f"看{day_label(later, today)}的", f"{later.month}月{later.day}日有什么电影"),
        )
    if hall_name and not films:
        nxt = shows[0]
        more = f"\n{label}此后还有 {len(shows) - 1} 场。" if len(shows) > 1 else f"\n这是{label}最后一场。"
        return Reply.say(
            f"{hall_name}下一场：{_hhmm(nxt.starts_at)}《{nxt.film.title}》{nxt.format}，"
            f"{_hhmm(nxt.ends_at)} 散场。{more}"
        )
    detailed = bool(films) or staff
    text_out = reference.rendered(
        # The cached day, where the list starts and the filters name the shows listed
        # (without reading every show's id for every message).
        ("schedule", label, detailed, schedule, first, film_ids, hall_name),
        lambda: _schedule_text(label, shows, detailed),
    )
    if staff:
        return Reply.say(text_out)
    if not films:
        text_out += "\n想看哪部？告诉我片名可看影厅和票价。"
    return Reply.say(text_out)


def _schedule_text(label: str, shows: list[Showtime], detailed: bool) -> str:
    by_film: dict[str, list[Showtime]] = defaultdict(list)
    for s in shows:
        by_film[s.film.title].append(s)
    lines = [f"🎬 {label}的场次："]
    for title, items in by_film.items():
        film: Film = items[0].film
        head = f"《{title}》{film.duration_min}分钟"
        if film.rating:
            head += f" ⭐{film.rating:g}"
        lines.append(head)
        if detailed:
            lines.extend(
                f"  {_hhmm(s.starts_at)} {s.hall.name} {s.format} {_price(s.base_price_fen)}"
                for s in items[:10]
            )
        else:
            lines.append("  " + " · ".join(f"{_hhmm(s.starts_at)} {s.hall.name}" for s in items[:6]))
    return "\n".join(lines)
