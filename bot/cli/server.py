"""``cinebot serve | worker | demo | migrate``: run the processes, seed the demo, migrate."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from dataclasses import replace

from aiohttp import web

import domain
from bot.cli.common import load_settings, until_signal
from bot.infra import eventloop
from bot.infra.clock import SystemClock
from bot.infra.logs import configure_logging
from bot.infra.progress import Progress
from bot.infra.settings import Settings
from bot.infra.storage import open_database

log = logging.getLogger("cinebot")


def cmd_serve(args: argparse.Namespace) -> int:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    try:
        eventloop.run(_serve(settings, args), settings.event_loop)
    except KeyboardInterrupt:
        pass
    return 0


async def _serve(settings: Settings, args: argparse.Namespace) -> None:
    from bot.app import init_app
    from bot.wechat.standin import PathOnlyAccessLogger, build_standin_app

    runners: list[web.AppRunner] = []
    defaults = Settings()
    standin_url = None
    if args.demo and (settings.wechat_api_base, settings.wecom_api_base) == (
        defaults.wechat_api_base,
        defaults.wecom_api_base,
    ):
        # Demo mode works offline: WeChat/WeCom API calls go to the local stand-in.
        standin = web.AppRunner(build_standin_app(), access_log_class=PathOnlyAccessLogger)
        await standin.setup()
        await web.TCPSite(standin, args.host, args.port + 1).start()
        runners.append(standin)
        standin_url = f"http://{args.host}:{args.port + 1}"
        settings = replace(settings, wechat_api_base=standin_url, wecom_api_base=standin_url)
    if settings.public_url == defaults.public_url:
        # Links the bot sends (pay pages, e-tickets) must reach this very server.
        host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
        settings = replace(settings, public_url=f"http://{host}:{args.port}")
    app = init_app(
        settings, run_jobs=args.role in ("all", "worker"), seed_demo=args.demo,
        demo_history_days=_history_days(args) if args.demo else 0,
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    runners.insert(0, runner)
    try:
        await web.TCPSite(runner, args.host, args.port).start()
        log.info(
            "cinebot serving",
            extra={
                "port": args.port,
                "event_loop": eventloop.name(asyncio.get_running_loop()),
                "redis": settings.redis_target,
            },
        )
        print(
            f"cinebot 已启动：http://{args.host}:{args.port}\n"
            f"  微信回调 /wechat/callback · 企业微信回调 /wecom/callback · 健康检查 /healthz\n"
            + (
                f"  本地微信/企业微信接口替身：{standin_url}/standin/ （查看机器人发出的消息和卡片）\n"
                if standin_url
                else ""
            )
            + "  另开一个终端试试：.venv/bin/cinebot chat   （Ctrl+C 停止服务）",
            file=sys.stderr,
        )
        await until_signal()
    finally:
        for r in runners:
            await r.cleanup()


def cmd_worker(args: argparse.Namespace) -> int:
    """Workers and scheduled jobs, no HTTP listener."""
    from bot.app import init_app

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)

    async def run() -> None:
        app = init_app(settings, run_jobs=True)
        runner = web.AppRunner(app)
        await runner.setup()
        loop_name = eventloop.name(asyncio.get_running_loop())
        log.info(
            "cinebot worker running", extra={"event_loop": loop_name, "redis": settings.redis_target}
        )
        try:
            await until_signal()
        finally:
            await runner.cleanup()

    eventloop.run(run(), settings.event_loop)
    return 0


DEMO_STEPS = {
    "database": "打开数据库（首次运行时建表）",
    "basics": "影城、影厅、影片与员工",
    "schedule": "排片",
    "roster": "值班表",
    "touchpoints": "评价二维码触点",
    "history": "近几周的经营历史（订单、评价、工单、放映机）",
}


def _history_days(args: argparse.Namespace) -> int:
    """--history-days, else the demo history's default (imported late: the CLI starts light)."""
    if args.history_days is not None:
        return max(args.history_days, 0)
    from domain.demo_history import HISTORY_DAYS

    return HISTORY_DAYS


def cmd_demo(args: argparse.Namespace) -> int:
    from domain.demo import seed

    settings = load_settings()
    steps = list(DEMO_STEPS)

    async def run() -> None:
        with Progress("写入演示数据", len(DEMO_STEPS), unit="步", eta=False) as bar:

            def step(name: str) -> None:
                done = steps.index(name) if name in DEMO_STEPS else bar.done
                bar.update(done, note=DEMO_STEPS.get(name, name))

            step("database")
            database = open_database(settings.database_url, domain.MODEL_MODULES, domain.MIGRATIONS)
            async with database:
                report = await seed(SystemClock().now(), progress=step, history_days=_history_days(args))
            bar.close(note="")
        print(
            f"演示数据已就绪：{report.cinema}，{report.halls} 个影厅共 {report.seats} 个座位，"
            f"{report.films} 部影片，新增 {report.showtimes_created} 个场次，"
            f"{report.staff} 名员工，{report.projectors} 台放映机。"
        )
        print(f"值班表：新增 {report.shifts_created} 个班次（cinebot roster 查看今天谁值班）。")
        history = report.history
        if history is not None and history.days:
            print(
                f"经营历史：补上过去 {history.days} 天，{history.orders} 笔订单（{history.tickets} 张票，"
                f"退票 {history.refunds}、改签 {history.changes}），{history.responses} 条评价，"
                f"{history.work_orders} 张工单，{history.minutes} 条放映机分钟数据"
                f"（{history.seconds:.1f} 秒）；看板（cinebot console link manager01）各栏都有数据。"
            )
        elif history is not None:
            print("经营历史：已经有了，这次没有重复写入。")

    asyncio.run(run())
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = load_settings()

    async def run() -> None:
        async with open_database(settings.database_url, domain.MODEL_MODULES, domain.MIGRATIONS):
            pass
        print("数据库结构已是最新。")

    asyncio.run(run())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the web server, workers and jobs in one process")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--role", choices=("all", "web", "worker"), default="all")
    p.add_argument("--demo", action="store_true", help="seed the demo cinema before serving")
    p.add_argument(
        "--history-days", type=int, default=None, metavar="N",
        help="with --demo: the demo cinema's history, N days back (default 28, 0: none)",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("worker", help="run workers and scheduled jobs only")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("demo", help="seed the demo cinema (idempotent)")
    p.add_argument(
        "--history-days", type=int, default=None, metavar="N",
        help="the past N days of history: orders, ratings, work orders, projectors (default 28, 0: none)",
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("migrate", help="bring the database schema up to date")
    p.set_defaults(func=cmd_migrate)
