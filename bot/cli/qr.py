"""``cinebot qr``: a printable sheet of a cinema's touchpoint QR codes."""

from __future__ import annotations

import argparse
import asyncio
import sys

import domain
from bot.cli.common import load_settings
from bot.infra.logs import configure_logging
from bot.infra.progress import Progress
from bot.infra.storage import open_database

QR_KINDS_EN = {
    "hall_exit": "hall exit", "restroom": "restroom", "ticket_machine": "ticket machine",
    "concession": "concession", "eticket": "e-ticket", "push": "after-show", "chat": "chat",
}


def cmd_qr(args: argparse.Namespace) -> int:
    """``cinebot qr export``: a printable sheet of a cinema's touchpoint QR codes (PNG or PDF)."""
    from bot.wechat.qrsheet import SheetItem, survey_url, write_sheet
    from domain.cinemas import Cinema
    from domain.touchpoints import of_cinema

    settings = load_settings()
    configure_logging("WARNING", settings.log_format)
    if not args.out.lower().endswith((".png", ".pdf")):
        print("输出文件须为 .png 或 .pdf，例如 --out qr.pdf", file=sys.stderr)
        return 2

    async def wechat_urls(scenes: list[str]) -> dict[str, str]:
        """The WeChat parametric codes (permanent, QR_LIMIT_STR_SCENE), when the API answers."""
        import aiohttp

        from bot.infra.storage import open_redis
        from bot.wechat.api import WeChatApi

        found: dict[str, str] = {}
        with Progress("申请微信二维码", len(scenes), unit="个") as bar:
            try:
                timeout = aiohttp.ClientTimeout(total=10)
                async with aiohttp.ClientSession(timeout=timeout) as http, \
                        open_redis(settings.redis_url, settings.embedded_redis_path) as redis:
                    api = WeChatApi.from_settings(http, redis, settings)
                    for scene in scenes:
                        found[scene] = (await api.create_qrcode(scene, permanent=True)).url
                        bar.advance()
            except Exception as exc:  # offline, or the API refused: the survey URLs still work
                bar.stop(keep=False)  # every code falls back: the message says so, not the bar
                print(f"微信二维码接口不可用（{type(exc).__name__}: {exc}），改用 H5 问卷链接。",
                      file=sys.stderr)
                return {}
        return found

    async def run() -> int:
        async with open_database(settings.database_url, domain.MODEL_MODULES, domain.MIGRATIONS):
            if args.cinema:
                cinema = await Cinema.get_or_none(code=args.cinema)
            else:
                cinemas = await Cinema.all().order_by("id").limit(2)
                cinema = cinemas[0] if len(cinemas) == 1 else None
                if len(cinemas) > 1:
                    print("有多家影城，请用 --cinema 指定影城代码。", file=sys.stderr)
                    return 1
            if cinema is None:
                print(f"找不到影城 {args.cinema or ''}（先运行 cinebot demo）".strip(), file=sys.stderr)
                return 1
            points = await of_cinema(cinema.id, printed_only=True)
            if not points:
                print(f"{cinema.name} 还没有触点；运行 cinebot demo 生成。", file=sys.stderr)
                return 1
            codes = await wechat_urls([p.scene for p in points]) if args.wechat else {}
            items = []
            for p in points:
                url = survey_url(settings.public_url, p.code)
                items.append(SheetItem(
                    data=codes.get(p.scene, url), title=p.name,
                    ascii_title=f"{p.code} · {QR_KINDS_EN.get(p.kind, p.kind)}",
                    lines=(f"scene {p.scene}", url),
                ))
        heading = f"{cinema.name}  扫码评价（约30秒）"
        with Progress("生成二维码页", len(items), unit="个") as bar:
            kind, chinese = write_sheet(args.out, items, heading, font_path=args.font,
                                        progress=lambda done, _total: bar.update(done))
        what = "微信带参二维码" if codes else "H5 问卷链接"
        print(f"已写入 {args.out}（{kind.upper()}，{len(items)} 个触点，二维码内容：{what}）。")
        if not chinese:
            print("没有找到中文字体，PNG 标签只印了触点代码；用 --font 指定字体，或导出 PDF。", file=sys.stderr)
        return 0

    return asyncio.run(run())


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("qr", help="touchpoint QR codes: export a printable sheet")
    qr = p.add_subparsers(dest="action", required=True)
    qe = qr.add_parser("export", help="a sheet of a cinema's touchpoint QR codes, with labels")
    qe.add_argument("--cinema", help="cinema code (needed when there are several)")
    qe.add_argument("--out", required=True, help="FILE.png or FILE.pdf")
    qe.add_argument("--wechat", action="store_true",
                    help="WeChat parametric codes (needs the API); default: the H5 survey URLs")
    qe.add_argument("--font", help="a font file with Chinese glyphs for the PNG labels")
    p.set_defaults(func=cmd_qr)
