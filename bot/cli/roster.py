"""``cinebot roster``: the duty roster — a day's shifts, who is on now, add a shift."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime

import domain
from bot.cli.common import load_settings, pad
from bot.infra.clock import SystemClock, local_time_text
from bot.infra.storage import open_database

ROSTER_TEAMS = ("floor", "engineering", "management")


WEEKDAYS = "一二三四五六日"


def cmd_roster(args: argparse.Namespace) -> int:
    """Who is on duty: a day's shifts per team, who is on right now, and adding a shift."""
    from datetime import date, datetime, time, timedelta

    from bot.infra.clock import SHANGHAI
    from domain.cinemas import Cinema
    from domain.people import Staff
    from domain.workorders import TEAM_LABELS, Shift, WorkOrderError, add_shift, roster

    settings = load_settings()
    now = SystemClock().now()
    action = args.action or "list"

    def clock_at(moment: datetime, ref: datetime) -> str:
        """HH:MM, marked 次日 when it falls on the day after ``ref``."""
        local = moment.astimezone(SHANGHAI)
        later = "次日" if local.date() > ref.astimezone(SHANGHAI).date() else ""
        return f"{later}{local:%H:%M}"

    def hm(start: datetime, end: datetime) -> str:
        return f"{clock_at(start, start)}–{clock_at(end, start)}"

    def when(moment: datetime) -> str:
        local = moment.astimezone(SHANGHAI)
        return f"{local:%Y-%m-%d}（周{WEEKDAYS[local.weekday()]}）"

    def moment(text: str, after: datetime | None = None) -> datetime:
        """"YYYY-MM-DD HH:MM" (local); for --to also a bare "HH:MM": the next one after --from."""
        text = " ".join(text.replace("T", " ").replace("：", ":").split())
        if after is not None and " " not in text:
            t = datetime.strptime(text, "%H:%M").time()
            local = after.astimezone(SHANGHAI)
            end = datetime.combine(local.date(), t, SHANGHAI)
            return end if end >= local else end + timedelta(days=1)
        return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=SHANGHAI)

    async def the_cinema() -> Cinema | None:
        if args.cinema:
            cinema = await Cinema.get_or_none(code=args.cinema)
            if cinema is None:
                print(f"找不到影城：{args.cinema}", file=sys.stderr)
            return cinema
        cinemas = await Cinema.all().limit(2)
        if not cinemas:
            print("还没有影城；先运行 cinebot demo", file=sys.stderr)
            return None
        if len(cinemas) > 1:
            print("有多家影城，请用 --cinema 指定影城代码", file=sys.stderr)
            return None
        return cinemas[0]

    async def listing(cinema: Cinema) -> int:
        try:
            day = date.fromisoformat(args.date) if args.date else now.astimezone(SHANGHAI).date()
        except ValueError:
            print(f"日期格式应为 YYYY-MM-DD：{args.date}", file=sys.stderr)
            return 2
        start = datetime.combine(day, time(0), SHANGHAI)
        # A day's roster: the shifts that start that day (a late shift ends after midnight).
        shifts = sorted(
            (s for s in await roster(cinema.id, start, start + timedelta(days=1))
             if s.starts_at >= start and s.staff.active),
            key=lambda s: (s.starts_at, s.ends_at, s.staff.userid),
        )
        print(f"{cinema.name} · {when(start)}值班表")
        if not shifts:
            print("  这一天还没有排班。添加：cinebot roster add USERID --team floor "
                  '--from "YYYY-MM-DD HH:MM" --to "YYYY-MM-DD HH:MM"')
            return 0
        for team in ROSTER_TEAMS:
            print(TEAM_LABELS[team])
            rows = [s for s in shifts if s.team == team]
            for s in rows:
                print(f"  {pad(s.staff.userid, 12)}{pad(s.staff.name, 8)}{hm(s.starts_at, s.ends_at)}")
            if not rows:
                print("  （无人排班）")
        return 0

    async def right_now(cinema: Cinema) -> int:
        shifts = sorted(
            (s for s in await roster(cinema.id, now, now + timedelta(seconds=1)) if s.staff.active),
            key=lambda s: (s.starts_at, s.staff.userid),
        )
        print(f"{cinema.name} · 现在（{local_time_text(now, now)}）在岗：")
        for team in ROSTER_TEAMS:
            until: dict[str, tuple[Staff, datetime]] = {}
            for s in shifts:
                if s.team == team and (s.staff.userid not in until or s.ends_at > until[s.staff.userid][1]):
                    until[s.staff.userid] = (s.staff, s.ends_at)
            people = "、".join(
                f"{p.name}（{p.userid}，至{clock_at(end, now)}）" for p, end in until.values()
            )
            print(f"  {TEAM_LABELS[team]}：{people or '无人在岗（新工单转给值班经理）'}")
        return 0

    async def add() -> int:
        staff = await Staff.get_or_none(userid=args.userid, active=True)
        if staff is None:
            print(f"没有找到在职员工 {args.userid}", file=sys.stderr)
            return 1
        try:
            starts = moment(args.start)
            ends = moment(args.end, after=starts)
        except ValueError:
            print('时间格式应为 "YYYY-MM-DD HH:MM"（--to 也可以只写 HH:MM）', file=sys.stderr)
            return 2
        overlapping = await Shift.filter(
            staff_id=staff.id, starts_at__lt=ends.astimezone(UTC), ends_at__gt=starts.astimezone(UTC)
        )
        if any(s.team == args.team and s.starts_at == starts and s.ends_at == ends for s in overlapping):
            print(f"{staff.name}（{staff.userid}）{when(starts)}{hm(starts, ends)} 已在班表中。")
            return 0
        try:
            await add_shift(
                cinema_id=staff.cinema_id,  # type: ignore[attr-defined]
                staff=staff, team=args.team, starts_at=starts.astimezone(UTC),
                ends_at=ends.astimezone(UTC), by=f"cli:{args.by}", now=now,
            )
        except WorkOrderError as exc:
            print(exc.message, file=sys.stderr)
            return 1
        print(f"已排班：{staff.name}（{staff.userid}）{TEAM_LABELS[args.team]}，{when(starts)}{hm(starts, ends)}")
        for s in overlapping:
            print(f"注意：与已有班次重叠（{TEAM_LABELS.get(s.team, s.team)} {hm(s.starts_at, s.ends_at)}）")
        return 0

    async def run() -> int:
        async with open_database(settings.database_url, domain.MODEL_MODULES, domain.MIGRATIONS):
            if action == "add":
                return await add()
            cinema = await the_cinema()
            if cinema is None:
                return 1
            return await (right_now(cinema) if action == "now" else listing(cinema))

    return asyncio.run(run())


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("roster", help="duty roster: a day's shifts, who is on now, add a shift")
    p.add_argument("--date", help="YYYY-MM-DD (default: today)")
    p.add_argument("--cinema", help="cinema code (needed when there are several)")
    ro = p.add_subparsers(dest="action")
    rl = ro.add_parser("list", help="the shifts of a day, per team")
    rl.add_argument("--date", default=argparse.SUPPRESS, help="YYYY-MM-DD (default: today)")
    rl.add_argument("--cinema", default=argparse.SUPPRESS)
    rn = ro.add_parser("now", help="who is on duty right now")
    rn.add_argument("--cinema", default=argparse.SUPPRESS)
    ra = ro.add_parser("add", help="add a shift")
    ra.add_argument("userid", help="WeCom userid")
    ra.add_argument("--team", choices=ROSTER_TEAMS, required=True)
    ra.add_argument("--from", dest="start", required=True, help='"YYYY-MM-DD HH:MM" (Shanghai time)')
    ra.add_argument("--to", dest="end", required=True, help='"YYYY-MM-DD HH:MM", or HH:MM after --from')
    ra.add_argument("--by", default="manager", help="who adds it (kept in the audit trail)")
    p.set_defaults(func=cmd_roster)
