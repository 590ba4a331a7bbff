"""``cinebot telemetry replay`` and ``cinebot telemetry simulate``: the logic behind the CLI.

Replay reads readings as JSON lines (sorted by ts), runs the production
:class:`~telemetry.evaluator.Evaluator` with the readings' timestamps as its clock and
writes alert events as JSON lines. No database, no Redis, no messages: nothing but
stdout (events) and stderr (bad lines, a summary). Progress is shown by the caller (the
CLI: :class:`bot.infra.progress.Progress`), which these functions report to when asked.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import IO

from bot.infra.progress import Progress
from telemetry.evaluator import Evaluator
from telemetry.readings import Reading, ReadingError
from telemetry.rules import RuleSet, RulesError
from telemetry.simulate import FaultSpecError, FleetConfig, simulate


@dataclass
class ReplayReport:
    readings: int = 0
    invalid: int = 0
    out_of_order: int = 0
    events: int = 0
    devices: int = 0
    seconds: float = 0.0


def parse_lines(lines: Iterable[str], report: ReplayReport, errors: IO[str]) -> Iterator[Reading]:
    """Valid readings from JSON lines; each bad line is reported with its number."""
    loads = json.loads
    parse = Reading.parse
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            reading = parse(loads(line))
        except json.JSONDecodeError as exc:
            report.invalid += 1
            if report.invalid <= 20:
                errors.write(f"第 {number} 行不是 JSON / line {number}: {exc.msg}\n")
            continue
        except ReadingError as exc:
            report.invalid += 1
            if report.invalid <= 20:
                errors.write(f"第 {number} 行读数无效 / line {number}: {exc}\n")
            continue
        report.readings += 1
        yield reading


def replay(
    lines: Iterable[str],
    out: IO[str],
    rules: RuleSet | None = None,
    errors: IO[str] | None = None,
    progress: Progress | None = None,
    position: Callable[[], float] | None = None,
) -> ReplayReport:
    errors = errors or sys.stderr
    report = ReplayReport()
    started = time.perf_counter()
    evaluator = Evaluator(rules)
    dumps = json.dumps
    readings = parse_lines(lines, report, errors)
    if progress is not None:
        readings = _with_progress(readings, progress, position)
    for event in evaluator.run(readings):
        out.write(dumps(event.to_json(), ensure_ascii=False) + "\n")
        report.events += 1
    if progress is not None:
        progress.close()
    report.out_of_order = evaluator.out_of_order
    report.devices = len(evaluator.devices)
    report.seconds = time.perf_counter() - started
    return report


def _with_progress(
    readings: Iterator[Reading], progress: Progress, position: Callable[[], float] | None
) -> Iterator[Reading]:
    """``position``: how far into the input (bytes); without it, the readings so far."""
    done = 0
    for r in readings:
        if done % 5000 == 0:
            progress.update(position() if position is not None else done, f"{done:,} 条")
        yield r
        done += 1
    progress.update(position() if position is not None else done, f"{done:,} 条")


def replay_file(
    path: str, rules_path: str | None, out: IO[str], errors: IO[str],
    progress: Callable[[int | None], Progress] | None = None,
) -> int:
    """The CLI command; exit status 0, or 2 when the input or the rules cannot be read.

    ``progress``: given the input's size in bytes (None for stdin), returns the progress
    to report to: bytes read, or readings for stdin; closed when the replay is done.
    Without it, no progress is shown."""
    try:
        rules = RuleSet.load(rules_path) if rules_path else RuleSet()
    except RulesError as exc:
        errors.write(f"规则文件有误 / bad rules: {exc}\n")
        return 2
    try:
        fh = sys.stdin if path == "-" else open(path, encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        errors.write(f"读不了读数文件 / cannot read {path}: {exc}\n")
        return 2
    try:
        size = os.fstat(fh.fileno()).st_size if path != "-" else 0
        shown = progress(size or None) if progress is not None else None
        report = replay(fh, out, rules, errors, shown, (lambda: _tell(fh)) if size else None)
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, like other Unix tools.
        if out is sys.stdout:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        if fh is not sys.stdin:
            fh.close()
    errors.write(
        f"已回放 {report.readings:,} 条读数（{report.devices} 台设备），"
        f"{report.events} 个告警事件，{report.invalid} 条无效，"
        f"{report.out_of_order} 条乱序/重复被忽略，用时 {report.seconds:.1f} 秒\n"
    )
    return 0


def _tell(fh: IO[str]) -> int:
    try:
        return os.lseek(fh.fileno(), 0, os.SEEK_CUR)
    except OSError:
        return 0


def simulate_to_files(
    devices: int,
    days: float,
    out_path: str,
    truth_path: str | None = None,
    interval_s: float = 60.0,
    seed: int = 1,
    faults: str = "random:0.3",
    errors: IO[str] | None = None,
    config: FleetConfig | None = None,
    progress: Callable[[int], Progress] | None = None,
) -> int:
    """``progress``: given the number of readings to write, returns the progress to report
    to, closed once they are written; without it, no progress is shown."""
    errors = errors or sys.stderr
    cfg = replace(
        config or FleetConfig(), devices=devices, days=days, interval_s=interval_s, seed=seed, faults=faults
    )
    started = time.perf_counter()
    try:
        fleet = simulate(cfg)
    except (FaultSpecError, ValueError) as exc:
        errors.write(f"模拟参数有误 / bad simulation parameters: {exc}\n")
        return 2
    total = fleet.readings_count
    bar = progress(total) if progress is not None else None
    try:
        with open(out_path, "w", encoding="utf-8") as out:
            written = fleet.write(out, progress=bar.update if bar is not None else None)
        if bar is not None:
            bar.close()
        if truth_path:
            with open(truth_path, "w", encoding="utf-8") as out:
                fleet.write_truth(out)
    except OSError as exc:
        errors.write(f"写不了文件 / cannot write: {exc}\n")
        return 2
    kinds: dict[str, int] = {}
    for f in fleet.faults:
        kinds[f.fault] = kinds.get(f.fault, 0) + 1
    summary = "，".join(f"{k} {v}" for k, v in sorted(kinds.items())) or "无故障"
    errors.write(
        f"已模拟 {devices} 台放映机 {days:g} 天（每 {interval_s:g} 秒一条）：{written:,} 条读数 → {out_path}；"
        f"故障：{summary}"
        + (f"；真值 → {truth_path}" if truth_path else "")
        + f"（{time.perf_counter() - started:.1f} 秒）\n"
    )
    return 0

