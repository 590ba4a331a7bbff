"""``cinebot``: serve, worker, demo, staff, roster, chat, migrate."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

import domain
from bot.infra import eventloop
from bot.infra.clock import SystemClock
from bot.infra.logs import configure_logging, short_openid
from bot.infra.settings import Settings, SettingsError
from bot.infra.storage import open_database

log = logging.getLogger("cinebot")


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        print(f"配置错误 / configuration error:\n{exc}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings()
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
    app = init_app(settings, run_jobs=args.role in ("all", "worker"), seed_demo=args.demo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    runners.insert(0, runner)
    try:
        await web.TCPSite(runner, args.host, args.port).start()
        log.info(
            "cinebot serving",
            extra={"port": args.port, "event_loop": eventloop.name(asyncio.get_running_loop())},
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
        await _until_signal()
    finally:
        for r in runners:
            await r.cleanup()


async def _until_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def cmd_worker(args: argparse.Namespace) -> int:
    """Workers and scheduled jobs, no HTTP listener."""
    from bot.app import init_app

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)

    async def run() -> None:
        app = init_app(settings, run_jobs=True)
        runner = web.AppRunner(app)
        await runner.setup()
        loop_name = eventloop.name(asyncio.get_running_loop())
        log.info("cinebot worker running", extra={"event_loop": loop_name})
        try:
            await _until_signal()
        finally:
            await runner.cleanup()

    eventloop.run(run(), settings.event_loop)
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
        print(f"值班表：新增 {report.shifts_created} 个班次（cinebot roster 查看今天谁值班）。")

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


def cmd_staff_token(args: argparse.Namespace) -> int:
    """A check-in token for a gate scanner or tablet that calls ``POST /api/checkin``."""
    from datetime import timedelta

    from bot.infra import tokens
    from domain.people import find_staff

    settings = _settings()

    async def run() -> int:
        async with open_database(settings.database_url, domain.MODEL_MODULES, domain.MIGRATIONS):
            if await find_staff(args.userid) is None:
                print(f"没有找到在职员工 {args.userid}", file=sys.stderr)
                return 1
        expires = SystemClock().now() + timedelta(days=args.days)
        print(tokens.sign(settings.secret_key, "staff", args.userid, expires.timestamp()))
        return 0

    return asyncio.run(run())


def cmd_showtime(args: argparse.Namespace) -> int:
    """List a day's shows, or cancel one: its buyers are refunded and told by chat."""
    from datetime import date, datetime, time, timedelta

    from bot.app import INVENTORY, PAYMENTS, init_app, ticket_api
    from bot.infra.clock import SHANGHAI
    from domain import ticketing
    from domain.catalog import Showtime
    from domain.orders import SOLD_STATES, Order

    settings = _settings()
    configure_logging("WARNING", settings.log_format)

    async def listing() -> int:
        async with open_database(settings.database_url, domain.MODEL_MODULES, domain.MIGRATIONS):
            day = date.fromisoformat(args.date) if args.date else SystemClock().now().astimezone(SHANGHAI).date()
            start = datetime.combine(day, time(0), SHANGHAI)
            shows = await Showtime.filter(
                starts_at__gte=start.astimezone(UTC), starts_at__lt=(start + timedelta(days=1)).astimezone(UTC)
            ).order_by("starts_at").prefetch_related("film", "hall")
            for s in shows:
                sold = await Order.filter(showtime_id=s.id, state__in=list(SOLD_STATES)).count()
                flag = "  已取消" if s.cancelled_at else ""
                print(f"{s.id:>6}  {s.starts_at.astimezone(SHANGHAI):%m-%d %H:%M}  {s.hall.name:<6}"
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


ROSTER_TEAMS = ("floor", "engineering", "management")
WEEKDAYS = "一二三四五六日"


def cmd_roster(args: argparse.Namespace) -> int:
    """Who is on duty: a day's shifts per team, who is on right now, and adding a shift."""
    from datetime import date, datetime, time, timedelta

    from bot.infra.clock import SHANGHAI
    from domain.cinemas import Cinema
    from domain.people import Staff
    from domain.workorders import TEAM_LABELS, Shift, WorkOrderError, add_shift, roster

    settings = _settings()
    now = SystemClock().now()
    action = args.action or "list"

    def clock_at(moment: datetime, ref: datetime) -> str:
        """HH:MM, marked 次日 when it falls on the day after ``ref``."""
        local = moment.astimezone(SHANGHAI)
        later = "次日" if local.date() > ref.astimezone(SHANGHAI).date() else ""
        return f"{later}{local:%H:%M}"

    def hm(start: datetime, end: datetime) -> str:
        return f"{clock_at(start, start)}–{clock_at(end, start)}"

    def pad(text: str, width: int) -> str:
        """Left-aligned in a terminal, where a Chinese character takes two columns."""
        import unicodedata

        used = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
        return text + " " * max(width - used, 1)

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
        print(f"{cinema.name} · 现在（{now.astimezone(SHANGHAI):%m-%d %H:%M}）在岗：")
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


def cmd_outbox(args: argparse.Namespace) -> int:
    from domain.outbox import OutboundMessage, OutboundStatus, requeue

    settings = _settings()

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
            for m in rows:
                error = f"  {m.last_error[:60]}" if m.last_error else ""
                print(
                    f"#{m.id:<6}{m.status:<8}{m.channel:<7}{short_openid(m.recipient):<16}"
                    f"尝试{m.attempts}次  {m.created_at:%m-%d %H:%M:%S}{error}"
                )
            return 0

    return asyncio.run(run())


def cmd_fakewx(args: argparse.Namespace) -> int:
    from bot.wechat.standin import main as standin_main

    standin_main(["--host", args.host, "--port", str(args.port)])
    return 0


def cmd_nlu(args: argparse.Namespace) -> int:
    import json

    from bot.nlu.catalog import FilmCatalog
    from bot.nlu.classifier import load_or_train
    from bot.nlu.engine import NluEngine
    from bot.nlu.tools import evaluate_rows, parse_stream, parse_time, read_inputs

    clock = SystemClock()
    if args.action == "train":
        import time

        started = time.perf_counter()
        print("正在训练意图模型……", file=sys.stderr)
        load_or_train(retrain=True)
        print(f"意图模型已训练并缓存（{time.perf_counter() - started:.1f} 秒）。")
        return 0
    try:
        now = parse_time(args.now, clock.now())
    except ValueError as exc:
        print(f"--now 格式不对：{exc}", file=sys.stderr)
        return 2
    classifier, _ = load_or_train()
    if args.films:
        try:
            with open(args.films, encoding="utf-8") as fh:
                catalog = FilmCatalog.from_lines(fh)
        except OSError as exc:
            print(f"读不了影片文件：{exc}", file=sys.stderr)
            return 2
    else:
        catalog = asyncio.run(_catalog_from_db())
    engine = NluEngine(classifier, clock, catalog=catalog)
    if args.action == "parse":
        parse_stream(engine, read_inputs(sys.stdin), now, sys.stdout)
        return 0
    try:
        with open(args.file, encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
    except (OSError, json.JSONDecodeError) as exc:
        print(f"读不了评估文件：{exc}", file=sys.stderr)
        return 2
    report = evaluate_rows(engine, rows, now, progress=sys.stderr.isatty() or len(rows) > 200)
    print(report.render())
    return 0


async def _catalog_from_db() -> Any:
    """The live film catalog; the demo films when the database has none yet."""
    from bot.nlu.catalog import DEFAULT_FILMS, FilmCatalog, FilmEntry
    from domain.catalog import Film

    settings = _settings()
    async with open_database(settings.database_url, domain.MODEL_MODULES, domain.MIGRATIONS):
        films = await Film.all().order_by("id")
    entries = [FilmEntry(f.title, tuple(f.aliases)) for f in films]
    return FilmCatalog(entries or DEFAULT_FILMS)


QR_KINDS_EN = {
    "hall_exit": "hall exit", "restroom": "restroom", "ticket_machine": "ticket machine",
    "concession": "concession", "eticket": "e-ticket", "push": "after-show", "chat": "chat",
}


def cmd_qr(args: argparse.Namespace) -> int:
    """``cinebot qr export``: a printable sheet of a cinema's touchpoint QR codes (PNG or PDF)."""
    from bot.wechat.qrsheet import SheetItem, survey_url, write_sheet
    from domain.cinemas import Cinema
    from domain.touchpoints import of_cinema

    settings = _settings()
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
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http, \
                    open_redis(settings.redis_url, settings.embedded_redis_path) as redis:
                api = WeChatApi.from_settings(http, redis, settings)
                for scene in scenes:
                    found[scene] = (await api.create_qrcode(scene, permanent=True)).url
        except Exception as exc:  # offline, or the API refused: the survey URLs still work
            print(f"微信二维码接口不可用（{type(exc).__name__}: {exc}），改用 H5 问卷链接。", file=sys.stderr)
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
        kind, chinese = write_sheet(args.out, items, f"{cinema.name}  扫码评价（约30秒）", font_path=args.font)
        what = "微信带参二维码" if codes else "H5 问卷链接"
        print(f"已写入 {args.out}（{kind.upper()}，{len(items)} 个触点，二维码内容：{what}）。")
        if not chinese:
            print("没有找到中文字体，PNG 标签只印了触点代码；用 --font 指定字体，或导出 PDF。", file=sys.stderr)
        return 0

    return asyncio.run(run())


def cmd_chat(args: argparse.Namespace) -> int:
    from bot.wechat.chatclient import run_chat

    return asyncio.run(run_chat(_settings(), args))


def cmd_telemetry(args: argparse.Namespace) -> int:
    """Projector telemetry: replay readings through the detectors, simulate a fleet to
    files, or stream a simulated fleet to a running server (``simulate --url``)."""
    from telemetry.replay import replay_file, simulate_to_files

    if args.action == "replay":
        return replay_file(args.file, args.rules, sys.stdout, sys.stderr)
    if args.url:
        return cmd_telemetry_stream(args)
    if args.devices is None or args.days is None or args.out is None:
        print("cinebot telemetry simulate: 需要 --devices、--days 和 --out"
              "（或用 --url 把模拟读数发给运行中的服务器）", file=sys.stderr)
        return 2
    return simulate_to_files(
        args.devices, args.days, args.out, args.truth,
        interval_s=60.0 if args.interval_s is None else args.interval_s, seed=args.seed,
        faults=args.faults, errors=sys.stderr,
    )


TELEMETRY_PATH = "/telemetry/readings"
STREAM_BATCH = 500  # readings per signed POST


class _StreamStats:
    def __init__(self) -> None:
        self.sent = self.accepted = self.errors = 0
        self.started = time.monotonic()
        self.first_error = ""

    def line(self, sim_t: float | None = None) -> str:
        from bot.infra.clock import SHANGHAI

        seconds = max(time.monotonic() - self.started, 1e-6)
        at = (f" · 模拟时间 {datetime.fromtimestamp(sim_t, SHANGHAI):%m-%d %H:%M}"
              if sim_t is not None else "")
        return (f"已发送 {self.sent:,} 条 · 已接受 {self.accepted:,} · 错误 {self.errors:,} · "
                f"{self.sent / seconds:,.0f} 条/秒{at}")


def cmd_telemetry_stream(args: argparse.Namespace) -> int:
    """``cinebot telemetry simulate --url URL``: the simulator's fleet, signed batches every
    few seconds, in real time or ``--speed`` times faster, until the simulated days end."""
    stats = _StreamStats()
    try:
        return asyncio.run(_stream_fleet(args, stats))
    except KeyboardInterrupt:
        print(f"\n已停止。{stats.line()}", file=sys.stderr)
        return 0


async def _stream_target(args: argparse.Namespace) -> tuple[str, str, list[str]] | str:
    """(box, key, the box's cinema's projector ids) or a message saying what is missing.

    Without --box/--key: the demo cinema's box from the database. The projector ids come
    from the database too when it knows the box (else --device-ids, else the simulator's)."""
    from domain.devices import DEMO_BOX_ID, edge_box, places

    if bool(args.box) != bool(args.key):
        return "--box 和 --key 要一起给出"
    ids = [d.strip() for d in (args.device_ids or "").split(",") if d.strip()]
    if args.box and ids:
        return args.box, args.key, ids
    settings = _settings()
    try:
        async with open_database(settings.database_url, domain.MODEL_MODULES, domain.MIGRATIONS):
            box = await edge_box(args.box or DEMO_BOX_ID)
            if box is None and not args.box:
                return "数据库里没有演示影城的边缘盒子：先运行 cinebot demo，或用 --box/--key 指定"
            if box is not None and not ids:
                ids = sorted((await places(box.cinema_id)).keys())
    except Exception as exc:  # a remote server's box: the local database need not know it
        if not args.box:
            return f"读不了数据库（{type(exc).__name__}: {exc}）：用 --box/--key 指定边缘盒子"
        box = None
    if args.box:
        return args.box, args.key, ids
    assert box is not None
    return box.box_id, box.key, ids


async def _stream_fleet(args: argparse.Namespace, stats: _StreamStats) -> int:
    import json

    import aiohttp

    from telemetry.ingest import signed_headers
    from telemetry.readings import iso
    from telemetry.simulate import FaultSpecError, FleetConfig, LiveFeed, simulate

    target = await _stream_target(args)
    if isinstance(target, str):
        print(target, file=sys.stderr)
        return 2
    box_id, key, ids = target
    devices = args.devices or len(ids) or 8
    if ids and devices > len(ids):
        print(f"该影城只有 {len(ids)} 台放映机，--devices 不能超过它"
              "（或用 --device-ids 列出服务器认识的设备编号）", file=sys.stderr)
        return 2
    interval = 10.0 if args.interval_s is None else args.interval_s
    days = 1.0 if args.days is None else args.days
    try:
        fleet = simulate(FleetConfig(devices=devices, days=days, interval_s=interval, seed=args.seed,
                                     faults=args.faults, start=iso(time.time())))
        feed = LiveFeed(fleet, speed=args.speed,
                        rename={d.device_id: ids[i] for i, d in enumerate(fleet.devices) if i < len(ids)})
    except (FaultSpecError, ValueError) as exc:
        print(f"模拟参数有误 / bad simulation parameters: {exc}", file=sys.stderr)
        return 2
    url = args.url.rstrip("/")
    if not url.endswith(TELEMETRY_PATH):
        url += TELEMETRY_PATH
    kinds: dict[str, int] = {}
    for f in fleet.faults:
        kinds[f.fault] = kinds.get(f.fault, 0) + 1
    faults = "，".join(f"{k} {v}" for k, v in sorted(kinds.items())) or "无"
    print(f"向 {url} 发送 {devices} 台放映机的模拟读数（每台每 {interval:g} 秒一条，{args.speed:g} 倍速，"
          f"共 {days:g} 天 {feed.total:,} 条；边缘盒子 {box_id}；故障：{faults}）。Ctrl+C 停止。",
          file=sys.stderr)
    tick = min(5.0, max(0.2, interval / args.speed))
    tty = sys.stderr.isatty()
    shown = time.monotonic()  # without a terminal: a progress line every 5 s
    timeout = aiohttp.ClientTimeout(total=30, connect=5)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        while not feed.done:
            now = time.time()
            while True:
                batch = feed.due(now, limit=STREAM_BATCH)
                if not batch:
                    break
                body = json.dumps(batch, separators=(",", ":")).encode()
                try:
                    async with http.post(url, data=body, headers=signed_headers(box_id, key, body)) as resp:
                        text = await resp.text()
                        status = resp.status
                except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                    print(f"\n连不上服务器 {url}（{type(exc).__name__}: {exc}）。"
                          "cinebot serve 在运行吗？地址和端口对吗？", file=sys.stderr)
                    return 1
                stats.sent += len(batch)
                if status == 401:
                    print(f"\n服务器拒绝了读数（401 {_error_code(text)}）：边缘盒子编号或密钥不对，"
                          "或本机时钟与服务器相差超过 5 分钟。", file=sys.stderr)
                    return 1
                if status != 202:
                    print(f"\n服务器答复 {status}：{text[:300]}", file=sys.stderr)
                    return 1
                answer = json.loads(text)
                stats.accepted += int(answer.get("accepted", 0))
                stats.errors += len(answer.get("errors", []))
                if answer.get("errors") and not stats.first_error:
                    first = answer["errors"][0]
                    problem = first["errors"][0] if first.get("errors") else {}
                    stats.first_error = f"{problem.get('field', '')}: {problem.get('message', '')}"
                    print(f"\n服务器拒绝了部分读数，例如 {stats.first_error}", file=sys.stderr)
            sim_t = feed.sim_time(time.time())
            if tty:
                print(f"\r{stats.line(sim_t)}   ", end="", file=sys.stderr, flush=True)
            elif time.monotonic() - shown >= 5.0:
                shown = time.monotonic()
                print(stats.line(sim_t), file=sys.stderr, flush=True)
            if not feed.done:
                await asyncio.sleep(tick)
    print(("\n" if tty else "") + f"完成：{stats.line()}", file=sys.stderr)
    if stats.sent and not stats.accepted:
        print("服务器一条读数也没有接受（设备编号不属于这个边缘盒子的影城？用 --device-ids 指定）",
              file=sys.stderr)
        return 1
    return 0


def _error_code(text: str) -> str:
    import json

    try:
        return str(json.loads(text).get("error", ""))
    except (ValueError, AttributeError):
        return text[:80]


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
    token = staff.add_parser("token", help="print a check-in token for POST /api/checkin")
    token.add_argument("userid")
    token.add_argument("--days", type=int, default=30)
    p.set_defaults(func=lambda a: cmd_staff_token(a) if a.action == "token" else cmd_staff(a))

    p = sub.add_parser("showtime", help="list a day's shows or cancel one (buyers are refunded)")
    shows = p.add_subparsers(dest="action", required=True)
    sl = shows.add_parser("list", help="the shows of a day")
    sl.add_argument("--date", help="YYYY-MM-DD (default: today)")
    sc = shows.add_parser("cancel", help="cancel a show: refund and tell every buyer")
    sc.add_argument("id", type=int)
    sc.add_argument("--by", default="manager", help="who cancels (kept in the audit trail)")
    p.set_defaults(func=cmd_showtime)

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

    p = sub.add_parser("nlu", help="understand Chinese: parse, evaluate, train")
    nlu = p.add_subparsers(dest="action", required=True)
    parse = nlu.add_parser("parse", help="JSON lines (or text lines) in, JSON lines out")
    parse.add_argument("--now", help="ISO 8601 time that 今天/明天 are relative to")
    parse.add_argument("--films", help="film catalog file: `title|alias|alias` per line")
    ev = nlu.add_parser("eval", help="per-intent precision/recall/F1 and slot exact-match")
    ev.add_argument("file", help="JSON lines with text, intent, optional role/now/slots")
    ev.add_argument("--now", help="default time for lines without `now`")
    ev.add_argument("--films", help="film catalog file: `title|alias|alias` per line")
    nlu.add_parser("train", help="retrain the intent model and cache it")
    p.set_defaults(func=cmd_nlu)

    p = sub.add_parser("fakewx", help="run the local stand-in for the WeChat/WeCom APIs")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8081)
    p.set_defaults(func=cmd_fakewx)

    p = sub.add_parser("chat", help="talk to a running cinebot as a WeChat user or WeCom staff")
    p.add_argument("--url", default="http://127.0.0.1:8080")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--as", dest="openid", default="oCineBotDemoAudience0000001", help="audience openid")
    who.add_argument("--staff", dest="staff", help="WeCom userid, e.g. staff01")
    p.add_argument(
        "--plaintext", action="store_true",
        help="WeChat plaintext mode instead of safe mode "
        "(the server must run with CINEBOT_WECHAT_MESSAGE_MODE=compatible or plain)",
    )
    p.add_argument("--say", action="append", help="send this message and exit (repeatable)")
    p.add_argument(
        "--standin", help="the local API stand-in to watch for pushed messages (default: port+1)"
    )
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("telemetry", help="projector telemetry: replay readings, simulate a fleet")
    tele = p.add_subparsers(dest="action", required=True)
    rp = tele.add_parser("replay", help="readings (JSON lines) in, alert events (JSON lines) out")
    rp.add_argument("file", help="readings as JSON lines sorted by ts ('-' for stdin)")
    rp.add_argument("--rules", help="JSON rules: defaults, per-cinema and per-device limits")
    sm = tele.add_parser(
        "simulate", help="write a realistic fleet's readings (and ground truth), or stream them "
        "to a running server with --url",
    )
    sm.add_argument("--devices", type=int, help="projectors (with --url: default all of the cinema's)")
    sm.add_argument("--days", type=float, help="simulated days (with --url: default 1)")
    sm.add_argument("--interval-s", type=float, default=None,
                    help="seconds between readings (default 60; with --url 10)")
    sm.add_argument("--seed", type=int, default=1)
    sm.add_argument(
        "--faults", default="random:0.3",
        help="none | random:SHARE | all:N | KIND:N,... (fan_failure fan_degradation blocked_exhaust "
        "filter_clogging light_ageing light_loss offline)",
    )
    sm.add_argument("--out", help="readings file (JSON lines)")
    sm.add_argument("--truth", help="ground truth file (JSON lines: devices, then faults)")
    sm.add_argument("--url", help="stream to this running server (e.g. http://127.0.0.1:8080) "
                    "as signed batches instead of writing files")
    sm.add_argument("--box", help="edge box id (default: the demo cinema's box from the database)")
    sm.add_argument("--key", help="the edge box's key")
    sm.add_argument("--speed", type=float, default=1.0,
                    help="with --url: simulated seconds per wall-clock second (default 1, real time)")
    sm.add_argument("--device-ids", help="with --url: the server's projector ids, comma-separated "
                    "(default: the box's cinema's projectors from the database)")
    p.set_defaults(func=cmd_telemetry)
    p = sub.add_parser("qr", help="touchpoint QR codes: export a printable sheet")
    qr = p.add_subparsers(dest="action", required=True)
    qe = qr.add_parser("export", help="a sheet of a cinema's touchpoint QR codes, with labels")
    qe.add_argument("--cinema", help="cinema code (needed when there are several)")
    qe.add_argument("--out", required=True, help="FILE.png or FILE.pdf")
    qe.add_argument("--wechat", action="store_true",
                    help="WeChat parametric codes (needs the API); default: the H5 survey URLs")
    qe.add_argument("--font", help="a font file with Chinese glyphs for the PNG labels")
    p.set_defaults(func=cmd_qr)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
