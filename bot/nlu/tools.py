"""``cinebot nlu parse | eval | train``: the NLU as a command-line tool."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from bot.nlu.engine import NluEngine


def read_inputs(stream: IO[str]) -> Iterator[dict[str, Any]]:
    """JSON lines ``{"text", "role"?, "now"?, ...}`` or plain text lines."""
    for line in stream:
        line = line.rstrip("\n")
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            if isinstance(row, dict) and isinstance(row.get("text"), str):
                yield row
                continue
        yield {"text": line}


def parse_time(value: str | None, default: datetime) -> datetime:
    if not value:
        return default
    when = datetime.fromisoformat(value)
    if when.tzinfo is None:
        raise ValueError(f"--now / now must carry a UTC offset, got {value!r}")
    return when


def parse_stream(
    engine: NluEngine, rows: Iterable[dict[str, Any]], now: datetime, out: IO[str]
) -> int:
    n = 0
    for row in rows:
        result = engine.parse(
            row["text"], row.get("role", "audience"), parse_time(row.get("now"), now)
        )
        out.write(json.dumps(result, ensure_ascii=False) + "\n")
        n += 1
    return n


@dataclass
class EvalReport:
    total: int = 0
    correct: int = 0
    slot_total: int = 0
    slot_exact: int = 0
    tp: Counter[str] = field(default_factory=Counter)
    fp: Counter[str] = field(default_factory=Counter)
    fn: Counter[str] = field(default_factory=Counter)
    confusions: Counter[tuple[str, str]] = field(default_factory=Counter)
    slot_misses: list[tuple[str, dict[str, Any], dict[str, Any]]] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    @property
    def slot_accuracy(self) -> float:
        return self.slot_exact / self.slot_total if self.slot_total else 0.0

    def add(self, expected: str, got: str) -> None:
        self.total += 1
        if expected == got:
            self.correct += 1
            self.tp[expected] += 1
        else:
            self.fp[got] += 1
            self.fn[expected] += 1
            self.confusions[(expected, got)] += 1

    def per_intent(self) -> dict[str, tuple[float, float, float, int]]:
        table = {}
        for intent in sorted(set(self.tp) | set(self.fn) | set(self.fp)):
            tp, fp, fn = self.tp[intent], self.fp[intent], self.fn[intent]
            p = tp / (tp + fp) if tp + fp else 0.0
            r = tp / (tp + fn) if tp + fn else 0.0
            f = 2 * p * r / (p + r) if p + r else 0.0
            table[intent] = (p, r, f, tp + fn)
        return table

    def render(self) -> str:
        lines = [f"{'intent':<16}{'P':>7}{'R':>7}{'F1':>7}{'n':>6}"]
        for intent, (p, r, f, n) in self.per_intent().items():
            lines.append(f"{intent:<16}{p:7.2f}{r:7.2f}{f:7.2f}{n:6d}")
        lines.append(f"\nintent accuracy: {self.accuracy:.3f} ({self.correct}/{self.total})")
        if self.slot_total:
            lines.append(
                f"slot exact-match: {self.slot_accuracy:.3f} ({self.slot_exact}/{self.slot_total})"
            )
        if self.confusions:
            lines.append("\nmost frequent confusions (expected → got):")
            for (e, g), n in self.confusions.most_common(10):
                lines.append(f"  {e} → {g}: {n}")
        if self.slot_misses:
            lines.append("\nslot misses (first 10):")
            for text, want, got in self.slot_misses[:10]:
                lines.append(f"  {text}\n    want {want}\n    got  {got}")
        return "\n".join(lines)


def evaluate_rows(
    engine: NluEngine, rows: list[dict[str, Any]], now: datetime,
    on_progress: Callable[[int, int], None] | None = None,
) -> EvalReport:
    """``on_progress(done, total)`` after each row, for the caller to show (the CLI: with
    :class:`bot.infra.progress.Progress`); evaluating writes nothing itself."""
    report = EvalReport()
    for i, row in enumerate(rows, start=1):
        result = engine.parse(
            row["text"], row.get("role", "audience"), parse_time(row.get("now"), now)
        )
        report.add(row["intent"], result["intent"])
        if "slots" in row:
            report.slot_total += 1
            if result["slots"] == row["slots"]:
                report.slot_exact += 1
            else:
                report.slot_misses.append((row["text"], row["slots"], result["slots"]))
        if on_progress is not None:
            on_progress(i, len(rows))
    return report


def by_intent(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        counts[row["intent"]] += 1
    return dict(counts)
