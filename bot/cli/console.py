"""``cinebot console``: the web console from a terminal — ``link USERID`` prints a one-time
login link for that person (deliver it to them only)."""

from __future__ import annotations

import argparse
import asyncio
import sys

import domain
from bot.cli.common import load_settings
from bot.infra.clock import SystemClock
from bot.infra.storage import open_database

MAX_TTL_MIN = 24 * 60


def cmd_link(args: argparse.Namespace) -> int:
    from domain.people import find_staff
    from handlers.console.auth import enter_link

    settings = load_settings()
    if not 1 <= args.ttl <= MAX_TTL_MIN:
        print(f"--ttl 应在 1 到 {MAX_TTL_MIN} 分钟之间", file=sys.stderr)
        return 2

    async def active() -> bool:
        async with open_database(settings.database_url, domain.MODEL_MODULES, domain.MIGRATIONS):
            return await find_staff(args.userid) is not None

    if not asyncio.run(active()):
        print(f"没有找到在职员工 {args.userid}（停用的员工不能登录看板）", file=sys.stderr)
        return 2
    print(enter_link(settings, SystemClock().timestamp(), args.userid, args.ttl * 60))
    print(f"一次性登录链接，{args.ttl} 分钟内有效；只发给 {args.userid} 本人。", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("console", help="the managers' and staff's web console")
    console = p.add_subparsers(dest="action", required=True)
    link = console.add_parser("link", help="print a one-time login link for a staff member")
    link.add_argument("userid", help="WeCom userid")
    link.add_argument("--ttl", type=int, default=10, help="minutes the link works (default 10)")
    p.set_defaults(func=cmd_link)
