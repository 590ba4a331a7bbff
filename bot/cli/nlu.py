"""``cinebot nlu``: parse, evaluate and train the Chinese understanding."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, Self

import domain
from bot.cli.common import load_settings
from bot.infra.clock import SystemClock
from bot.infra.progress import Progress
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
        with Training(TRAIN_ALL) as training:
            started = time.perf_counter()
            load_or_train(retrain=True, progress=training.stage)
            intent_s = time.perf_counter() - started
            training.stage("feedback")
            started = time.perf_counter()
            sentiment.load_or_train(retrain=True)
            feedback_s = time.perf_counter() - started
        print(f"意图模型已训练并缓存（{intent_s:.1f} 秒）。")
        print(f"评价分类模型已训练并缓存（{feedback_s:.1f} 秒）。")
        return 0
    try:
        now = parse_time(args.now, clock.now())
    except ValueError as exc:
        print(f"--now 格式不对：{exc}", file=sys.stderr)
        return 2
    with Training(TRAIN_INTENT) as training:  # shown only when no model is cached for the corpus
        classifier, _ = load_or_train(progress=training.stage)
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
    with Progress("评估", len(rows)) as bar:
        report = evaluate_rows(engine, rows, now,
                               on_progress=lambda done, _total: bar.update(done))
    print(report.render())
    return 0


# The intent model reports its stages (bot.nlu.classifier.IntentClassifier.fit); the
# feedback model is one step.
TRAIN_INTENT = {
    "features": "意图模型：提取特征", "fit": "意图模型：拟合", "done": "意图模型：写入缓存",
}
TRAIN_ALL = {**TRAIN_INTENT, "feedback": "评价分类模型"}


class Training:
    """Training as a bar of steps, made when the first step is reported (loading a cached
    model shows nothing). The longest step, the intent model's fit, says nothing while it
    runs: the bar shows its spinner and the time going by."""

    def __init__(self, stages: dict[str, str]) -> None:
        self.stages = stages
        self.bar: Progress | None = None

    def stage(self, name: str) -> None:
        if self.bar is None:
            self.bar = Progress("训练模型", len(self.stages), unit="步", eta=False)
        steps = list(self.stages)
        done = steps.index(name) if name in steps else self.bar.done
        self.bar.update(done, note=self.stages.get(name, name))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if self.bar is None:
            return
        if kind is None:
            self.bar.close(note="")
        else:
            self.bar.stop()


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
