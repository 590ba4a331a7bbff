"""``cinebot outbox``: inspect outbound messages and send failed ones again."""

from __future__ import annotations

import argparse
import asyncio
import sys

import domain
from bot.cli.common import load_settings, pad
from bot.infra.clock import SystemClock, local_time_text
from bot.infra.logs import short_openid
from bot.infra.storage import open_database


def cmd_outbox(args: argparse.Namespace) -> int:
    from domain.outbox import OutboundMessage, OutboundStatus, requeue

    settings = load_settings()

    async def run() -> int:
        async with open_database(settings.database_url, domain.MODEL_MODULES, domain.MIGRATIONS):
            if args.action == "retry":
                ids = None if args.all else [int(i) for i in args.ids]
                if ids is not None and not ids:
                    print("请给出要重发的消息编号，或用 --all 重发全部失败/死信/过期消息", file=sys.stderr)
                    return 1
                count = await requeue(ids, SystemClock().now())
                print(f"已重新排队 {count} 条消息。")
                return 0
            query = OutboundMessage.all()
            if args.status != "all":
                query = query.filter(status=OutboundStatus(args.status))
            rows = await query.order_by("-id").limit(args.limit)
            counts = {s.value: await OutboundMessage.filter(status=s).count() for s in OutboundStatus}
            print("  ".join(f"{k}: {v}" for k, v in counts.items()))
            now = SystemClock().now()
            for m in rows:
                error = f"  {m.last_error[:60]}" if m.last_error else ""
                created = local_time_text(m.created_at, now, seconds=True)  # as in the chat
                print(
                    f"#{m.id:<6}{m.status:<8}{m.channel:<7}{short_openid(m.recipient):<16}"
                    f"尝试{m.attempts}次  {pad(created, 17)}{error}".rstrip()
                )
            return 0

    return asyncio.run(run())


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("outbox", help="inspect and re-send outbound messages")
    ob = p.add_subparsers(dest="action", required=True)
    ls = ob.add_parser("list", help="list messages (newest first)")
    ls.add_argument(
        "--status", choices=("all", "pending", "sent", "failed", "dead", "expired"),
        default="all",
    )
    ls.add_argument("--limit", type=int, default=30)
    rt = ob.add_parser("retry", help="send failed, dead or expired messages again")
    rt.add_argument("ids", nargs="*", help="message ids (#N in the list)")
    rt.add_argument("--all", action="store_true", help="every failed, dead and expired message")
    p.set_defaults(func=cmd_outbox)
