"""``cinebot nlu``: parse, evaluate and train the Chinese understanding."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import domain
from bot.cli.common import load_settings
from bot.infra.clock import SystemClock
from bot.infra.storage import open_database


def cmd_nlu(args: argparse.Namespace) -> int:
    import json

    from bot.nlu.catalog import FilmCatalog
    from bot.nlu.classifier import load_or_train
    from bot.nlu.engine import NluEngine
    from bot.nlu.tools import evaluate_rows, parse_stream, parse_time, read_inputs

    clock = SystemClock()
    if args.action == "train":
        import time

        from bot.nlu import sentiment

        # Every model the processes load, so an image trained at build never writes one.
        started = time.perf_counter()
        print("正在训练意图模型……", file=sys.stderr)
        load_or_train(retrain=True)
        print(f"意图模型已训练并缓存（{time.perf_counter() - started:.1f} 秒）。")
        started = time.perf_counter()
        print("正在训练评价分类模型……", file=sys.stderr)
        sentiment.load_or_train(retrain=True)
        print(f"评价分类模型已训练并缓存（{time.perf_counter() - started:.1f} 秒）。")
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

    settings = load_settings()
    async with open_database(settings.database_url, domain.MODEL_MODULES, domain.MIGRATIONS):
        films = await Film.all().order_by("id")
    entries = [FilmEntry(f.title, tuple(f.aliases)) for f in films]
    return FilmCatalog(entries or DEFAULT_FILMS)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("nlu", help="understand Chinese: parse, evaluate, train")
    nlu = p.add_subparsers(dest="action", required=True)
    parse = nlu.add_parser("parse", help="JSON lines (or text lines) in, JSON lines out")
    parse.add_argument("--now", help="ISO 8601 time that 今天/明天 are relative to")
    parse.add_argument("--films", help="film catalog file: `title|alias|alias` per line")
    ev = nlu.add_parser("eval", help="per-intent precision/recall/F1 and slot exact-match")
    ev.add_argument("file", help="JSON lines with text, intent, optional role/now/slots")
    ev.add_argument("--now", help="default time for lines without `now`")
    ev.add_argument("--films", help="film catalog file: `title|alias|alias` per line")
    nlu.add_parser("train", help="retrain the intent and feedback models and cache them")
    p.set_defaults(func=cmd_nlu)
