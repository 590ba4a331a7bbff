"""``cinebot showtime``: a day's shows; cancel one (buyers refunded and told)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime

from aiohttp import web

import domain
from bot.cli.common import load_settings, pad
from bot.infra.clock import SystemClock, local_time_text
from bot.infra.logs import configure_logging
from bot.infra.storage import open_database


def cmd_showtime(args: argparse.Namespace) -> int:
    """List a day's shows, or cancel one: its buyers are refunded and told by chat."""
    from datetime import date, time, timedelta

    from bot.app import INVENTORY, PAYMENTS, init_app, ticket_api
    from bot.infra.clock import SHANGHAI
    from domain import ticketing
    from domain.catalog import Showtime
    from domain.orders import SOLD_STATES, Order

    settings = load_settings()
    configure_logging("WARNING", settings.log_format)

    async def listing() -> int:
        async with open_database(settings.database_url, domain.MODEL_MODULES, domain.MIGRATIONS):
            now = SystemClock().now()
            day = date.fromisoformat(args.date) if args.date else now.astimezone(SHANGHAI).date()
            start = datetime.combine(day, time(0), SHANGHAI)
            shows = await Showtime.filter(
                starts_at__gte=start.astimezone(UTC), starts_at__lt=(start + timedelta(days=1)).astimezone(UTC)
            ).order_by("starts_at").prefetch_related("film", "hall")
            for s in shows:
                sold = await Order.filter(showtime_id=s.id, state__in=list(SOLD_STATES)).count()
                flag = "  已取消" if s.cancelled_at else ""
                print(f"{s.id:>6}  {local_time_text(s.starts_at, now)}  {pad(s.hall.name, 8)}"
                      f"《{s.film.title}》  {sold} 笔订单{flag}")
            if not shows:
                print(f"{day} 没有场次。")
        return 0

    async def cancel() -> int:
        app = init_app(settings, run_jobs=False)
        runner = web.AppRunner(app)
        await runner.setup()
        try:
            show = await Showtime.get_or_none(id=args.id)
            if show is None:
                print(f"没有场次 {args.id}", file=sys.stderr)
                return 1
            if show.cancelled_at is not None:
                print(f"场次 {args.id} 已经取消过了。")
                return 0
            refunded = await ticketing.cancel_showtime(
                app[INVENTORY], app[PAYMENTS], show, by=f"cli:{args.by}", now=SystemClock().now(),
                notify=app[ticket_api.API].notify,
            )
            print(f"已取消场次 {args.id}，{refunded} 笔订单已退款并通知购票人（消息由 worker 发出）。")
            return 0
        finally:
            await runner.cleanup()

    return asyncio.run(cancel() if args.action == "cancel" else listing())


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("showtime", help="list a day's shows or cancel one (buyers are refunded)")
    shows = p.add_subparsers(dest="action", required=True)
    sl = shows.add_parser("list", help="the shows of a day")
    sl.add_argument("--date", help="YYYY-MM-DD (default: today)")
    sc = shows.add_parser("cancel", help="cancel a show: refund and tell every buyer")
    sc.add_argument("id", type=int)
    sc.add_argument("--by", default="manager", help="who cancels (kept in the audit trail)")
    p.set_defaults(func=cmd_showtime)
