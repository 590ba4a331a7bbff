"""``cinebot rollups rebuild [--cinema CODE]``: recompute the console's daily rollups from
raw rows (after an import, a restore, or a change of what a rollup holds)."""

from __future__ import annotations

import argparse
import asyncio
import sys

import domain
from bot.cli.common import load_settings
from bot.infra.logs import configure_logging
from bot.infra.progress import Progress
from bot.infra.storage import open_database

LABELS = {"show_sales": "场次销售", "feedback_day": "评价日汇总", "service_day": "工单日汇总", "device_day": "设备日汇总"}


def cmd_rollups(args: argparse.Namespace) -> int:
    """Rebuild every rollup (or one cinema's) and print the rows written per rollup."""
    from domain import rollups
    from domain.cinemas import Cinema

    settings = load_settings()
    configure_logging("WARNING", settings.log_format)

    async def rebuild() -> int:
        async with open_database(settings.database_url, domain.MODEL_MODULES, domain.MIGRATIONS):
            cinema_id = None
            if args.cinema:
                cinema = await Cinema.get_or_none(code=args.cinema)
                if cinema is None:
                    print(f"没有影城 {args.cinema}", file=sys.stderr)
                    return 1
                cinema_id = cinema.id
            with Progress("重建汇总", total=len(rollups.REBUILDS), unit="步", eta=False) as bar:
                written = await rollups.rebuild(cinema_id, progress=lambda done, _total: bar.update(done))
            for name, n in written.items():
                print(f"{LABELS.get(name, name)}（{name}）：{n} 行")
        return 0

    return asyncio.run(rebuild())


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rollups", help="the console's daily rollups")
    actions = p.add_subparsers(dest="action", required=True)
    rb = actions.add_parser("rebuild", help="recompute every rollup from raw rows")
    rb.add_argument("--cinema", help="only this cinema (its code)")
    p.set_defaults(func=cmd_rollups)
