"""Demo data: one cinema with real-looking halls, films, a week of showtimes, staff, projectors,
and a week of duty shifts; on request, the weeks before today too (``domain.demo_history``).

Seeding is idempotent — rows are found by their natural keys and only created
when missing — so ``cinebot demo`` can run any number of times, and the daily
schedule job can call :func:`ensure_schedule` and :func:`ensure_roster` to keep a
rolling week.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from tortoise.transactions import in_transaction

from domain.catalog import Film, Showtime
from domain.cinemas import Cinema, Hall, parse_layout
from domain.demo_history import HistoryReport, Schedule, seed_history
from domain.devices import DEMO_BOX_ID, Projector, ensure_box
from domain.people import Staff, StaffRole
from domain.touchpoints import ensure_touchpoints
from domain.workorders import Shift

LOCAL = ZoneInfo("Asia/Shanghai")
DEMO_CINEMA_CODE = "demo"
DEMO_CINEMA_NAME = "cinebot 示例影城"
SCHEDULE_DAYS = 8  # today and the next 7 days
DAILY_SLOTS = (time(10, 0), time(13, 0), time(16, 0), time(19, 0), time(22, 0))


def hall_layout(
    rows: int,
    cols: int,
    aisles: tuple[int, ...] = (),
    vip_rows: tuple[int, ...] = (),
    couple_row: bool = True,
    wheelchair: int = 2,
) -> list[str]:
    """Row strings for a hall: front row first, aisles after the given seat positions.

    The last row is couple seats (pairs), the front row has wheelchair places at
    its ends, and the given rows are VIP.
    """
    lines = []
    for r in range(1, rows + 1):
        if r == rows and couple_row:
            marks = ["C"] * (cols - cols % 2)
        elif r in vip_rows:
            marks = ["V"] * cols
        else:
            marks = ["S"] * cols
        if r == 1 and wheelchair:
            for i in range(min(wheelchair, len(marks))):
                marks[-1 - i if i % 2 else i] = "W"
        line = ""
        for i, mark in enumerate(marks, start=1):
            line += mark
            # Keep couple pairs whole: only break a couple row on an even position.
            if i in aisles and not (mark == "C" and i % 2):
                line += "_"
        lines.append(line)
    parse_layout(lines)  # validate before it reaches the database
    return lines


@dataclass(frozen=True)
class HallSpec:
    name: str
    screen: str
    layout: list[str]
    films: tuple[str, ...]  # daily rotation over the slots
    fmt: str = "2D"


FILMS = [
    {
        "title": "沙丘：第二部",
        "aliases": ["沙丘2", "沙丘二", "沙丘第二部", "Dune2", "Dune: Part Two"],
        "duration_min": 166,
        "genres": ["科幻", "冒险"],
        "rating": 8.3,
        "formats": ["2D", "IMAX"],
        "synopsis": "保罗·厄崔迪与弗雷曼人联手，踏上复仇之路，并在爱情与宇宙命运之间抉择。",
    },
    {
        "title": "哪吒之魔童闹海",
        "aliases": ["哪吒2", "哪吒二", "魔童闹海", "哪吒闹海"],
        "duration_min": 144,
        "genres": ["动画", "奇幻"],
        "rating": 8.5,
        "formats": ["2D", "3D", "IMAX"],
        "synopsis": "天劫之后，哪吒与敖丙灵魂尚存，但肉身即将魂飞魄散，一场新的冒险就此展开。",
    },
    {
        "title": "流浪地球2",
        "aliases": ["流浪地球二", "流浪地球第二部", "流浪2"],
        "duration_min": 173,
        "genres": ["科幻", "灾难"],
        "rating": 8.3,
        "formats": ["2D", "IMAX"],
        "synopsis": "太阳即将膨胀，人类启动移山计划，数字生命与现实世界激烈交锋。",
    },
    {
        "title": "热辣滚烫",
        "aliases": ["热辣"],
        "duration_min": 129,
        "genres": ["剧情", "喜剧"],
        "rating": 7.7,
        "formats": ["2D"],
        "synopsis": "宅家多年的乐莹决定改变自己，在拳击台上找回人生。",
    },
    {
        "title": "八佰",
        "aliases": ["八百"],
        "duration_min": 147,
        "genres": ["战争", "历史"],
        "rating": 7.5,
        "formats": ["2D"],
        "synopsis": "1937年淞沪会战，一支部队在四行仓库孤军奋战四天四夜。",
    },
    {
        "title": "飞驰人生2",
        "aliases": ["飞驰人生二", "飞驰2"],
        "duration_min": 121,
        "genres": ["喜剧", "运动"],
        "rating": 7.7,
        "formats": ["2D"],
        "synopsis": "过气车手张驰重返赛场，挑战最后的巴音布鲁克拉力赛。",
    },
    {
        "title": "长安三万里",
        "aliases": ["长安3万里", "长安"],
        "duration_min": 168,
        "genres": ["动画", "历史"],
        "rating": 8.2,
        "formats": ["2D"],
        "synopsis": "安史之乱后，高适回忆与李白的半生交往，盛唐诗人群像跃然银幕。",
    },
]

HALLS = [
    HallSpec("1号厅", "standard", hall_layout(12, 18, (4, 14), (6, 7, 8)), ("哪吒之魔童闹海", "热辣滚烫", "哪吒之魔童闹海", "流浪地球2", "八佰")),
    HallSpec("2号厅", "standard", hall_layout(10, 16, (4, 12), (5, 6)), ("飞驰人生2", "长安三万里", "热辣滚烫", "沙丘：第二部", "飞驰人生2")),
    HallSpec("3号厅", "standard", hall_layout(8, 12, (3, 9), (4, 5)), ("长安三万里", "八佰", "飞驰人生2", "哪吒之魔童闹海", "热辣滚烫")),
    HallSpec("4号厅", "standard", hall_layout(9, 14, (4, 10), (5, 6)), ("热辣滚烫", "哪吒之魔童闹海", "八佰", "飞驰人生2", "长安三万里")),
    HallSpec("5号厅", "Dolby", hall_layout(11, 16, (4, 12), (6, 7)), ("流浪地球2", "沙丘：第二部", "长安三万里", "热辣滚烫", "哪吒之魔童闹海"), "Dolby"),
    HallSpec("IMAX厅", "IMAX", hall_layout(14, 24, (6, 18), (7, 8, 9), wheelchair=4), ("哪吒之魔童闹海", "流浪地球2", "沙丘：第二部", "沙丘：第二部", "哪吒之魔童闹海"), "IMAX"),
]

STAFF = [
    ("manager01", "张经理", StaffRole.MANAGER),
    ("staff01", "李小青", StaffRole.STAFF),
    ("staff02", "王磊", StaffRole.STAFF),
    ("staff03", "陈静", StaffRole.STAFF),
    ("eng01", "赵工", StaffRole.ENGINEER),
    ("eng02", "刘工", StaffRole.ENGINEER),
]

# userid, team, local start, local end (an end at or before the start is the next day).
DEMO_SHIFTS = [
    ("staff01", "floor", time(10, 0), time(18, 0)),
    ("staff02", "floor", time(14, 0), time(22, 0)),
    ("staff03", "floor", time(18, 0), time(2, 0)),
    ("eng01", "engineering", time(9, 0), time(17, 0)),
    ("eng02", "engineering", time(17, 0), time(2, 0)),
    ("manager01", "management", time(9, 0), time(2, 0)),
]

BASE_PRICE_FEN = {"2D": 4500, "3D": 5500, "Dolby": 6500, "IMAX": 8000, "4D": 9000}
PRIME_TIME_SURCHARGE_FEN = 1000  # 19:00–21:59


@dataclass
class SeedReport:
    cinema: str
    halls: int
    seats: int
    films: int
    showtimes_created: int
    staff: int
    projectors: int
    shifts_created: int = 0
    history: HistoryReport | None = None  # None: no history was asked for


async def seed(
    now: datetime, progress: Callable[[str], None] | None = None, *, history_days: int = 0
) -> SeedReport:
    """The demo cinema; ``progress(stage)`` is told "basics", "schedule", "roster",
    "touchpoints" (and "history") as each begins. ``history_days``: also the business days
    before today that have no history yet, as far back as that (``domain.demo_history``;
    ``cinebot demo`` and ``serve --demo`` ask for it, tests and benches do not)."""
    step = progress or (lambda stage: None)
    step("basics")
    async with in_transaction():
        cinema, _ = await Cinema.get_or_create(
            code=DEMO_CINEMA_CODE,
            defaults={
                "name": DEMO_CINEMA_NAME,
                "city": "上海",
                "address": "上海市徐汇区漕溪北路 88 号 5 楼",
                "phone": "021-5555-0199",
                "latitude": 31.1889,
                "longitude": 121.4365,
            },
        )
        for spec in FILMS:
            await Film.get_or_create(title=spec["title"], defaults=dict(spec))
        seats = 0
        for h in HALLS:
            hall, created = await Hall.get_or_create(
                cinema=cinema, name=h.name, defaults={"screen": h.screen, "layout": h.layout}
            )
            seats += len(hall.seats())
            await Projector.get_or_create(
                device_id=f"PJ-{cinema.code.upper()}-{h.name.replace('号厅', '').replace('厅', '')}",
                defaults={
                    "cinema": cinema,
                    "hall": hall,
                    "key": secrets.token_hex(24),
                    "model": "Barco SP4K-25" if h.screen == "IMAX" else "Christie CP4440-RGB",
                },
            )
        await ensure_box(cinema, DEMO_BOX_ID)
        for userid, name, role in STAFF:
            await Staff.get_or_create(
                userid=userid, defaults={"name": name, "role": role, "cinema": cinema}
            )
    step("schedule")
    created = await ensure_schedule(cinema, now)
    step("roster")
    shifts = await ensure_roster(cinema, now)
    step("touchpoints")
    await ensure_touchpoints(cinema, now)  # QR survey places (domain.touchpoints)
    history = None
    if history_days > 0:
        step("history")
        history = await seed_history(
            cinema, now, Schedule(HALLS, DAILY_SLOTS, DEMO_SHIFTS, base_price), history_days
        )
    return SeedReport(
        cinema=cinema.name,
        halls=len(HALLS),
        seats=seats,
        films=await Film.all().count(),
        showtimes_created=created,
        staff=await Staff.filter(cinema=cinema).count(),
        projectors=await Projector.filter(cinema=cinema).count(),
        shifts_created=shifts,
        history=history,
    )


async def ensure_schedule(cinema: Cinema, now: datetime, days: int = SCHEDULE_DAYS) -> int:
    """Create the demo showtimes from today (local) for ``days`` days; returns how many were new."""
    films = {f.title: f for f in await Film.all()}
    halls = {h.name: h for h in await Hall.filter(cinema=cinema)}
    today = now.astimezone(LOCAL).date()
    created = 0
    async with in_transaction():
        for offset in range(days):
            day = today + timedelta(days=offset)
            for spec in HALLS:
                hall = halls.get(spec.name)
                if hall is None:
                    continue
                for i, slot in enumerate(DAILY_SLOTS):
                    title = spec.films[(i + day.toordinal()) % len(spec.films)]
                    film = films[title]
                    created += await _showtime(cinema, hall, film, spec.fmt, day, slot)
    return created


async def _showtime(
    cinema: Cinema, hall: Hall, film: Film, fmt: str, day: date, slot: time
) -> int:
    # Stored and looked up in UTC: SQLite compares timestamps as text.
    starts = datetime.combine(day, slot, LOCAL).astimezone(UTC)
    price = base_price(fmt, slot)
    _, created = await Showtime.get_or_create(
        hall=hall,
        starts_at=starts,
        defaults={
            "cinema": cinema,
            "film": film,
            "ends_at": starts + timedelta(minutes=film.duration_min),
            "format": fmt,
            "base_price_fen": price,
        },
    )
    return int(created)


def base_price(fmt: str, slot: time) -> int:
    """A demo show's base price: its format's, plus the prime-time surcharge from 19:00 to 21:59."""
    return BASE_PRICE_FEN[fmt] + (PRIME_TIME_SURCHARGE_FEN if 19 <= slot.hour < 22 else 0)


async def ensure_roster(cinema: Cinema, now: datetime, days: int = SCHEDULE_DAYS) -> int:
    """The demo shifts from yesterday (local) for ``days`` more days; returns how many were new.

    Yesterday too: its late shifts run until 02:00 today, so someone is on duty after
    midnight on the first night. Shifts are found by (staff, team, start); a
    deactivated staff member gets no new ones.
    """
    staff = {s.userid: s for s in await Staff.filter(cinema=cinema, active=True)}
    today = now.astimezone(LOCAL).date()
    wanted: list[tuple[Staff, str, datetime, datetime]] = []
    for offset in range(-1, days):
        day = today + timedelta(days=offset)
        for userid, team, opens, closes in DEMO_SHIFTS:
            person = staff.get(userid)
            if person is None:
                continue
            # Stored in UTC: SQLite compares timestamps as text.
            starts = datetime.combine(day, opens, LOCAL).astimezone(UTC)
            next_day = timedelta(days=closes <= opens)
            ends = datetime.combine(day + next_day, closes, LOCAL).astimezone(UTC)
            wanted.append((person, team, starts, ends))
    if not wanted:
        return 0
    async with in_transaction() as conn:
        existing = {
            (s.staff_id, s.team, s.starts_at.astimezone(UTC))  # type: ignore[attr-defined]
            for s in await Shift.filter(
                cinema_id=cinema.id,
                starts_at__gte=min(w[2] for w in wanted),
                starts_at__lte=max(w[2] for w in wanted),
            ).using_db(conn)
        }
        new = [
            Shift(cinema_id=cinema.id, staff=person, team=team, starts_at=starts, ends_at=ends)
            for person, team, starts, ends in wanted
            if (person.id, team, starts) not in existing
        ]
        if new:
            await Shift.bulk_create(new, using_db=conn)
    return len(new)
