"""``cinebot``: serve, worker, demo, staff, chat, migrate."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from aiohttp import web

import domain
from bot.clock import SystemClock
from bot.logs import configure_logging
from bot.settings import Settings, SettingsError
from bot.storage import open_database

log = logging.getLogger("cinebot")


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        print(f"配置错误 / configuration error:\n{exc}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_serve(args: argparse.Namespace) -> int:
    from bot.app import init_app

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    run_jobs = args.role in ("all", "worker")
    app = init_app(settings, run_jobs=run_jobs, seed_demo=args.demo)
    print(
        f"cinebot 正在启动：http://{args.host}:{args.port}  "
        f"(WeChat 回调 /wechat/callback，WeCom 回调 /wecom/callback，健康检查 /healthz)",
        file=sys.stderr,
    )
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Workers and scheduled jobs, no HTTP listener."""
    from bot.app import init_app

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)

    async def run() -> None:
        app = init_app(settings, run_jobs=True)
        runner = web.AppRunner(app)
        await runner.setup()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        log.info("cinebot worker running")
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(run())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from domain.demo import seed

    settings = _settings()

    async def run() -> None:
        async with open_database(settings.database_url, domain.MODEL_MODULES, domain.MIGRATIONS):
            report = await seed(SystemClock().now())
        print(
            f"演示数据已就绪：{report.cinema}，{report.halls} 个影厅共 {report.seats} 个座位，"
            f"{report.films} 部影片，新增 {report.showtimes_created} 个场次，"
            f"{report.staff} 名员工，{report.projectors} 台放映机。"
        )

    asyncio.run(run())
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings()

    async def run() -> None:
        async with open_database(settings.database_url, domain.MODEL_MODULES, domain.MIGRATIONS):
            pass
        print("数据库结构已是最新。")

    asyncio.run(run())
    return 0


def cmd_staff(args: argparse.Namespace) -> int:
    from domain.people import Staff, StaffRole, UnknownCinema, add_staff, deactivate_staff

    settings = _settings()
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


def cmd_chat(args: argparse.Namespace) -> int:
    from bot.chatclient import run_chat

    return asyncio.run(run_chat(_settings(), args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cinebot", description="影城微信/企业微信运营机器人")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the web server, workers and jobs in one process")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--role", choices=("all", "web", "worker"), default="all")
    p.add_argument("--demo", action="store_true", help="seed the demo cinema before serving")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("worker", help="run workers and scheduled jobs only")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("demo", help="seed the demo cinema (idempotent)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("migrate", help="bring the database schema up to date")
    p.set_defaults(func=cmd_migrate)

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
    p.set_defaults(func=cmd_staff)

    p = sub.add_parser("chat", help="talk to a running cinebot as a WeChat user or WeCom staff")
    p.add_argument("--url", default="http://127.0.0.1:8080")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--as", dest="openid", default="oCineBotDemoAudience0000001", help="audience openid")
    who.add_argument("--staff", dest="staff", help="WeCom userid, e.g. staff01")
    p.add_argument("--plaintext", action="store_true", help="WeChat plaintext mode instead of safe mode")
    p.add_argument("--say", action="append", help="send this message and exit (repeatable)")
    p.set_defaults(func=cmd_chat)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
