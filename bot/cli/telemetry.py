"""``cinebot telemetry``: replay readings, simulate a fleet, stream it to a server."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from datetime import UTC, datetime

import domain
from bot.cli.common import load_settings
from bot.infra.clock import local_time_text
from bot.infra.progress import BYTES, Progress
from bot.infra.storage import open_database


def cmd_telemetry(args: argparse.Namespace) -> int:
    """Projector telemetry: replay readings through the detectors, simulate a fleet to
    files, or stream a simulated fleet to a running server (``simulate --url``)."""
    if args.action == "replay":
        return cmd_telemetry_replay(args)
    if args.url:
        return cmd_telemetry_stream(args)
    if args.devices is None or args.days is None or args.out is None:
        print("cinebot telemetry simulate: 需要 --devices、--days 和 --out"
              "（或用 --url 把模拟读数发给运行中的服务器）", file=sys.stderr)
        return 2
    return cmd_telemetry_simulate(args)


def cmd_telemetry_replay(args: argparse.Namespace) -> int:
    """Alert events (JSON lines) to stdout; the bar, bad lines and the summary to stderr.

    The bar follows the bytes read; from stdin (``-``) it counts readings."""
    from telemetry.replay import replay_file

    size: int | None = None
    if args.file != "-":
        try:
            size = os.stat(args.file).st_size or None
        except OSError:
            pass  # replay_file says what is wrong with it
    bar = Progress("回放读数", size, unit=BYTES if size else "")

    def shown(total: int | None) -> Progress:
        bar.set_total(total)
        return bar

    try:
        code = replay_file(args.file, args.rules, sys.stdout, bar.messages, progress=shown)
    finally:
        # (Done, replay has closed it.) A closed pipe (`| head`): the bar stays where it
        # stopped. Bad rules or no such file: only the message stays.
        bar.stop(keep=bar.done > 0)
    return code


def cmd_telemetry_simulate(args: argparse.Namespace) -> int:
    """Readings and ground truth to files; the bar counts readings as they are written (it
    shows up while the fleet is being generated, before that count is known)."""
    from telemetry.replay import simulate_to_files

    bar = Progress("模拟读数", None, note="生成中…")

    def writing(total: int) -> Progress:
        bar.set_total(total)
        bar.update(0, note=f"写入 {os.path.basename(args.out)}")
        return bar

    try:
        return simulate_to_files(
            args.devices, args.days, args.out, args.truth,
            interval_s=60.0 if args.interval_s is None else args.interval_s, seed=args.seed,
            faults=args.faults, errors=bar.messages, progress=writing,
        )
    finally:
        bar.stop(keep=bar.total is not None)  # bad parameters: only the message stays


TELEMETRY_PATH = "/telemetry/readings"


STREAM_BATCH = 500  # readings per signed POST


class _StreamStats:
    def __init__(self) -> None:
        self.sent = self.accepted = self.errors = 0
        self.started = time.monotonic()
        self.first_error = ""

    def line(self) -> str:
        seconds = max(time.monotonic() - self.started, 1e-6)
        return (f"已发送 {self.sent:,} 条 · 已接受 {self.accepted:,} · 错误 {self.errors:,} · "
                f"{self.sent / seconds:,.0f} 条/秒")

    def note(self, sim_t: float) -> str:
        """For the bar, which shows the count sent itself: what the server made of them, and
        the simulated clock (Shanghai time, as in the chat)."""
        now = datetime.now(UTC)
        at = local_time_text(datetime.fromtimestamp(sim_t, UTC), now)
        errors = f" · 错误 {self.errors:,}" if self.errors else ""
        return f"已接受 {self.accepted:,}{errors} · 模拟时间 {at}"


def cmd_telemetry_stream(args: argparse.Namespace) -> int:
    """``cinebot telemetry simulate --url URL``: the simulator's fleet, signed batches every
    few seconds, in real time or ``--speed`` times faster, until the simulated days end."""
    stats = _StreamStats()
    try:
        return asyncio.run(_stream_fleet(args, stats))
    except KeyboardInterrupt:
        print(f"已停止。{stats.line()}", file=sys.stderr)
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
    settings = load_settings()
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
    timeout = aiohttp.ClientTimeout(total=30, connect=5)
    bar = Progress("发送读数", feed.total)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while not feed.done:
                now = time.time()
                while True:
                    batch = feed.due(now, limit=STREAM_BATCH)
                    if not batch:
                        break
                    body = json.dumps(batch, separators=(",", ":")).encode()
                    headers = signed_headers(box_id, key, body)
                    try:
                        async with http.post(url, data=body, headers=headers) as resp:
                            text = await resp.text()
                            status = resp.status
                    except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                        bar.stop()
                        print(f"连不上服务器 {url}（{type(exc).__name__}: {exc}）。"
                              "cinebot serve 在运行吗？地址和端口对吗？", file=sys.stderr)
                        return 1
                    stats.sent += len(batch)
                    if status == 401:
                        bar.stop()
                        print(f"服务器拒绝了读数（401 {_error_code(text)}）："
                              "边缘盒子编号或密钥不对，或本机时钟与服务器相差超过 5 分钟。",
                              file=sys.stderr)
                        return 1
                    if status != 202:
                        bar.stop()
                        print(f"服务器答复 {status}：{text[:300]}", file=sys.stderr)
                        return 1
                    answer = json.loads(text)
                    stats.accepted += int(answer.get("accepted", 0))
                    stats.errors += len(answer.get("errors", []))
                    if answer.get("errors") and not stats.first_error:
                        first = answer["errors"][0]
                        problem = first["errors"][0] if first.get("errors") else {}
                        field, message = problem.get("field", ""), problem.get("message", "")
                        stats.first_error = f"{field}: {message}"
                        print(f"服务器拒绝了部分读数，例如 {stats.first_error}", file=bar.messages)
                bar.update(stats.sent, note=stats.note(feed.sim_time(time.time())))
                if not feed.done:
                    await asyncio.sleep(tick)
        bar.close()
    finally:
        bar.stop()  # Ctrl+C: the bar stays where it was
    print(f"完成：{stats.line()}", file=sys.stderr)
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


def register(sub: argparse._SubParsersAction) -> None:
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
