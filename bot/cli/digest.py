"""``cinebot digest send [--date YYYY-MM-DD] [--to USERID]``: the managers' daily digest card
now — yesterday's (business day) by default, to every active manager or to one.

The cards go through the outbox like the 09:00 job's (``handlers.digest_card``): a running
``cinebot serve`` / ``worker`` delivers them, and a manager who already had that day's card
is not sent it again.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from datetime import date

import domain
from bot.cli.common import load_settings
from bot.infra.clock import SystemClock
from bot.infra.storage import open_database

ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_day(text: str) -> date | None:
    """A date as ASCII YYYY-MM-DD, else None."""
    if not ISO_DAY.fullmatch(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def cmd_send(args: argparse.Namespace) -> int:
    from domain.people import StaffRole, find_staff
    from handlers.digest_card import DigestCards

    settings = load_settings()
    day = None
    if args.date is not None:
        day = parse_day(args.date)
        if day is None:
            print(f"日期格式不对：{args.date!r}，应为 YYYY-MM-DD（如 2026-11-20）", file=sys.stderr)
            return 2
    clock = SystemClock()
    cards = DigestCards(settings.public_url, settings.wecom_agent_id, clock)

    async def run() -> int:
        async with open_database(settings.database_url, domain.MODEL_MODULES, domain.MIGRATIONS):
            people = None
            if args.to is not None:
                person = await find_staff(args.to)
                if person is None:
                    print(f"没有找到在职员工 {args.to}", file=sys.stderr)
                    return 2
                if person.role != StaffRole.MANAGER:
                    print(f"{args.to} 不是经理：日报含营收，只发给经理", file=sys.stderr)
                    return 2
                people = [person]
            report = await cards.send(day or cards.yesterday(), people)
        shown = f"{report.day.month}月{report.day.day}日"
        for userid in report.sent:
            print(f"已发送 {shown} 日报给 {userid}")
        for userid in report.already:
            print(f"{userid} 已收到过{shown}的日报，未重复发送")
        if not report.sent and not report.already:
            print("没有在职的经理，未发送日报", file=sys.stderr)
        return 0

    return asyncio.run(run())


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("digest", help="the managers' daily digest card")
    digest = p.add_subparsers(dest="action", required=True)
    send = digest.add_parser("send", help="send a day's digest card now (default: yesterday)")
    send.add_argument("--date", help="the business day, YYYY-MM-DD (default: yesterday)")
    send.add_argument("--to", help="one manager's WeCom userid (default: every active manager)")
    p.set_defaults(func=cmd_send)
