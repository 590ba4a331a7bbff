"""NLU speed: intent + slots latency per message, cold start from the cached model, memory.

    .venv/bin/python bench/nlu.py [--repeat 3]

Targets (issue "Understanding Chinese"): p99 ≤ 2 ms per message; cold start with a
cached model ≤ 1.5 s. Cold start and memory are measured in a fresh process, the
way a server starts: import, load the cached model, understand the first message.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

COLD_START = """
import resource, time
t0 = time.perf_counter()
from datetime import datetime, timezone
from bot.nlu.classifier import load_or_train
from bot.nlu.catalog import DEFAULT_FILMS, FilmCatalog
from bot.nlu.slots import extract_slots
model, trained = load_or_train()
model.predict("你好", "audience")
extract_slots("明天晚上7点两张沙丘2", datetime.now(timezone.utc), FilmCatalog(DEFAULT_FILMS))
elapsed = time.perf_counter() - t0
print(f"{elapsed:.3f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} {int(trained)}")
"""


def cold_start(cache: str) -> tuple[float, float, bool]:
    env = {"CINEBOT_NLU_CACHE": cache, "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", COLD_START], cwd=ROOT, env=env,
        capture_output=True, text=True, check=True,
    ).stdout.split()
    return float(out[0]), float(out[1]), out[2] == "1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="passes over the messages")
    args = parser.parse_args()

    from bot.nlu.classifier import load_examples
    from bot.nlu.engine import NluEngine
    from bot.nlu.classifier import load_or_train
    from datetime import datetime, timezone

    with tempfile.TemporaryDirectory() as cache:
        first, _, trained = cold_start(cache)
        print(f"first start (trains the model): {first:.2f} s (trained: {trained})", file=sys.stderr)
        colds = [cold_start(cache) for _ in range(3)]

        class Clock:
            def now(self) -> datetime:
                return datetime.now(timezone.utc)

            def timestamp(self) -> float:
                return time.time()

        classifier, _ = load_or_train(Path(cache))
        engine = NluEngine(classifier, Clock())
        texts = [(e.text, e.role) for e in load_examples()]
        second = ROOT / "tests" / "data" / "nlu_second_set.jsonl"
        texts += [
            (r["text"], r.get("role", "audience"))
            for r in map(json.loads, second.read_text(encoding="utf-8").splitlines())
        ]
        for text, role in texts[:200]:  # warm caches
            engine.parse(text, role)
        timings: list[float] = []
        for n in range(args.repeat):
            for text, role in texts:
                t = time.perf_counter()
                engine.parse(text, role)
                timings.append((time.perf_counter() - t) * 1000)
            print(f"\rpass {n + 1}/{args.repeat}", end="", file=sys.stderr)
        print(file=sys.stderr)

    timings.sort()
    p50 = timings[len(timings) // 2]
    p99 = timings[int(len(timings) * 0.99)]
    cold = statistics.median(c[0] for c in colds)
    rss = statistics.median(c[1] for c in colds)
    print(f"messages: {len(timings)} ({len(texts)} distinct, {args.repeat} passes)")
    print(f"intent + slots per message: p50 {p50:.3f} ms  p99 {p99:.3f} ms  max {timings[-1]:.3f} ms")
    print(f"cold start with cached model: {cold:.2f} s (median of 3; first run with training {first:.2f} s)")
    print(f"memory after cold start: {rss:.0f} MiB max RSS")
    print(f"targets: p99 <= 2 ms {'PASS' if p99 <= 2 else 'FAIL'};"
          f" cold start <= 1.5 s {'PASS' if cold <= 1.5 else 'FAIL'}")


if __name__ == "__main__":
    main()
