"""``cinebot staff``: WeCom staff and their check-in tokens."""

from __future__ import annotations

import argparse
import asyncio
import sys

import domain
from bot.cli.common import load_settings
from bot.infra.clock import SystemClock
from bot.infra.storage import open_database


def cmd_staff(args: argparse.Namespace) -> int:
    from domain.people import Staff, StaffRole, UnknownCinema, add_staff, deactivate_staff

    settings = load_settings()
    now = SystemClock().now()

    async def run() -> int:
        async with open_database(settings.database_url, domain.MODEL_MODULES, domain.MIGRATIONS):
            if args.action == "add":
                try:
                    staff, created = await add_staff(
                        userid=args.userid,
                        role=StaffRole(args.role),
                        name=args.name or args.userid,
                        now=now,
                        cinema_code=args.cinema,
                    )
                except UnknownCinema as exc:
                    print(f"找不到影城：{exc}", file=sys.stderr)
                    return 1
                verb = "已添加" if created else "已更新"
                print(f"{verb}员工 {staff.userid}（{staff.name}，{staff.role}）")
            elif args.action == "remove":
                if await deactivate_staff(args.userid, now):
                    print(f"已停用员工 {args.userid}")
                else:
                    print(f"没有找到在职员工 {args.userid}", file=sys.stderr)
                    return 1
            else:
                rows = await Staff.all().order_by("userid").prefetch_related("cinema")
                for s in rows:
                    state = "在职" if s.active else "停用"
                    print(f"{s.userid:<14}{s.name:<8}{s.role:<10}{s.cinema.name}  {state}")
                if not rows:
                    print("还没有员工；先运行 cinebot demo，或 cinebot staff add USERID --role staff --name 姓名")
        return 0

    return asyncio.run(run())


def cmd_staff_token(args: argparse.Namespace) -> int:
    """A check-in token for a gate scanner or tablet that calls ``POST /api/checkin``."""
    from datetime import timedelta

    from bot.infra import tokens
    from domain.people import find_staff

    settings = load_settings()

    async def run() -> int:
        async with open_database(settings.database_url, domain.MODEL_MODULES, domain.MIGRATIONS):
            if await find_staff(args.userid) is None:
                print(f"没有找到在职员工 {args.userid}", file=sys.stderr)
                return 1
        expires = SystemClock().now() + timedelta(days=args.days)
        print(tokens.sign(settings.secret_key, "staff", args.userid, expires.timestamp()))
        return 0

    return asyncio.run(run())


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("staff", help="manage WeCom staff")
    staff = p.add_subparsers(dest="action", required=True)
    add = staff.add_parser("add", help="add or update a staff member")
    add.add_argument("userid", help="WeCom userid")
    add.add_argument("--role", choices=("staff", "engineer", "manager"), required=True)
    add.add_argument("--name", default="")
    add.add_argument("--cinema", help="cinema code (needed when there are several)")
    rm = staff.add_parser("remove", help="deactivate a staff member")
    rm.add_argument("userid")
    staff.add_parser("list", help="list staff")
    token = staff.add_parser("token", help="print a check-in token for POST /api/checkin")
    token.add_argument("userid")
    token.add_argument("--days", type=int, default=30)
    p.set_defaults(func=lambda a: cmd_staff_token(a) if a.action == "token" else cmd_staff(a))
