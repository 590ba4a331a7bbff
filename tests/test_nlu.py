"""Understanding Chinese: the intent model on text it never trained on, and the nlu CLI."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bot.nlu.classifier import (
    STAFF_ONLY,
    IntentClassifier,
    evaluate,
    load_examples,
    load_or_train,
)
from bot.nlu.engine import NluEngine
from bot.nlu.tools import evaluate_rows
from tests.support import FakeClock

SECOND_SET = Path(__file__).parent / "data" / "nlu_second_set.jsonl"
CINEBOT = str(Path(sys.executable).with_name("cinebot"))


def _held_out(text: str) -> bool:
    # A fixed 20 % of the corpus, chosen by content so it never drifts between runs.
    return int(hashlib.md5(text.encode("utf-8")).hexdigest(), 16) % 5 == 0


@pytest.fixture(scope="module")
def model(nlu_cache: Path) -> IntentClassifier:
    classifier, _ = load_or_train(nlu_cache)
    return classifier


def test_intent_accuracy_on_a_held_out_fifth_of_the_corpus_is_at_least_90_percent() -> None:
    examples = load_examples()
    train = [e for e in examples if not _held_out(e.text)]
    held = [e for e in examples if _held_out(e.text)]
    assert len(held) > 200
    accuracy, _ = evaluate(IntentClassifier().fit(train), held)
    assert accuracy >= 0.90, f"held-out intent accuracy {accuracy:.3f}"


def test_an_independent_second_set_in_other_voices_is_understood(model: IntentClassifier) -> None:
    rows = [json.loads(line) for line in SECOND_SET.read_text(encoding="utf-8").splitlines() if line]
    train_texts = {e.text for e in load_examples()}
    assert not train_texts & {r["text"] for r in rows}, "the second set must never be trained on"
    engine = NluEngine(model, FakeClock())
    report = evaluate_rows(engine, rows, FakeClock().now())
    assert report.accuracy >= 0.90, report.render()
    assert report.slot_accuracy >= 0.90, report.render()


@pytest.mark.parametrize(
    "text", ["今天天气怎么样", "帮我点个外卖", "讲个笑话", "asdfghjkl", "CCTV5今晚放什么球赛"]
)
def test_out_of_scope_messages_are_unknown(model: IntentClassifier, text: str) -> None:
    assert model.predict(text, "audience").intent == "unknown"


@pytest.mark.parametrize("text", ["收到", "已处理，换了座椅", "我的任务"])
def test_staff_only_intents_never_go_to_audiences(model: IntentClassifier, text: str) -> None:
    assert model.predict(text, "audience").intent not in STAFF_ONLY
    assert model.predict(text, "staff").intent in STAFF_ONLY


def test_a_cached_model_is_reused_not_retrained(nlu_cache: Path) -> None:
    load_or_train(nlu_cache)
    _, trained = load_or_train(nlu_cache)
    assert trained is False


def test_nlu_parse_cli_reads_json_and_plain_lines_with_role_now_and_films(tmp_path: Path) -> None:
    films = tmp_path / "films.txt"
    films.write_text("# demo\n沙丘：第二部|沙丘2|Dune2\n八佰|八百\n", encoding="utf-8")
    lines = [
        json.dumps({"text": "明天晚上7点两张沙丘2", "now": "2026-11-20T10:00:00+08:00"},
                   ensure_ascii=False),
        json.dumps({"text": "收到", "role": "staff"}, ensure_ascii=False),
        "八佰几点",
    ]
    done = subprocess.run(
        [CINEBOT, "nlu", "parse", "--now", "2026-11-21T10:00:00+08:00", "--films", str(films)],
        input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert [set(o) for o in out] == [{"text", "intent", "confidence", "slots"}] * 3
    assert out[0]["intent"] == "buy_ticket"
    assert out[0]["slots"] == {"film": "沙丘：第二部", "date": "2026-11-21", "time": "19:00", "count": 2}
    assert out[1]["intent"] == "task_ack"
    assert out[2]["slots"] == {"film": "八佰"}


def test_nlu_eval_cli_reports_per_intent_scores(tmp_path: Path) -> None:
    sample = tmp_path / "eval.jsonl"
    sample.write_text(
        "\n".join(
            json.dumps(row, ensure_ascii=False)
            for row in [
                {"text": "你好呀", "intent": "greeting"},
                {"text": "今天有什么电影", "intent": "query_showtimes", "slots": {}},
                {"text": "明天的哪吒2", "intent": "query_showtimes",
                 "now": "2026-11-20T10:00:00+08:00",
                 "slots": {"film": "哪吒之魔童闹海", "date": "2026-11-21"}},
            ]
        ),
        encoding="utf-8",
    )
    done = subprocess.run(
        [CINEBOT, "nlu", "eval", str(sample)], capture_output=True, text=True, timeout=120,
        env={**__import__("os").environ, "CINEBOT_DATABASE_URL": f"sqlite://{tmp_path}/db.sqlite3"},
    )
    assert done.returncode == 0, done.stderr
    assert "intent accuracy" in done.stdout and "slot exact-match" in done.stdout
    assert "query_showtimes" in done.stdout


def test_fast_scoring_gives_exactly_scikit_learns_probabilities() -> None:
    import numpy as np
    from scipy.sparse import csr_matrix, hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from bot.nlu.classifier import ROLES, role_of

    examples = load_examples()[::3]
    ours = IntentClassifier().fit(examples)
    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True)

    def roles(rows: list) -> csr_matrix:
        return csr_matrix(np.array([[float(role_of(e.role) == n) for n in ROLES] for e in rows]))

    grams = vectorizer.fit_transform([ours.prepare(e.text) for e in examples])
    reference = LogisticRegression(C=200.0, max_iter=5000, class_weight="balanced").fit(
        hstack([grams, roles(examples)], format="csr"), [e.intent for e in examples]
    )
    sample = examples[::5]
    expected = reference.predict_proba(
        hstack([vectorizer.transform([ours.prepare(e.text) for e in sample]), roles(sample)],
               format="csr")
    )
    for row, e in zip(expected, sample, strict=True):
        assert np.allclose(ours.probabilities(e.text, e.role), row, atol=1e-9)


async def test_a_repeated_text_is_understood_once_a_day_and_relative_dates_move_on(
    model: IntentClassifier,
) -> None:
    clock = FakeClock()  # Saturday 2026-11-21, Shanghai
    engine = NluEngine(model, clock)
    first = await engine.understand("明天有什么电影", "audience")
    assert await engine.understand("明天有什么电影", "audience") is first
    assert first.slots["date"] == "2026-11-22"
    clock.advance(days=1)
    later = await engine.understand("明天有什么电影", "audience")
    assert later.slots["date"] == "2026-11-23"
    staff = await engine.understand("收到", "staff")
    assert staff.intent == "task_ack"
    assert (await engine.understand("收到", "audience")).intent != "task_ack"
