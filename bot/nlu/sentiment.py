"""What an audience's comment is about, and how they feel: category and sentiment.

Two multinomial logistic regressions (scikit-learn) over one TF-IDF of the comment's
features: jieba words and word pairs (from the process's shared tokenizer, with
the cinema vocabulary) and character uni- and bigrams (robust to typos and to
words jieba splits). Trained from ``bot/nlu/data/feedback.jsonl`` and cached on
disk like the intent model (``bot.nlu.classifier``): under a hash of the corpus
and ``MODEL_VERSION``, kept as plain arrays so reading a comment needs no
scikit-learn. ``tests/data/feedback_heldout.jsonl`` is never trained on.

The categories are the work-order categories of ``domain.workorders`` (repeated
here because ``bot`` does not import ``domain``; a test keeps them equal).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bot.nlu.catalog import DEFAULT_FILMS, FilmCatalog
from bot.nlu.classifier import DATA_DIR, cached_model, default_cache_dir
from bot.nlu.normalise import normalise

log = logging.getLogger(__name__)

MODEL_VERSION = "feedback-v1"
CORPUS = DATA_DIR / "feedback.jsonl"
CATEGORIES = (
    "seat", "temperature", "sound", "picture", "lighting", "cleanliness", "noise", "staff",
    "facility", "concession", "other",
)
SENTIMENTS = ("neg", "neu", "pos")
_SKIP = frozenset(" ,.!?;:~-\"'()[]{}…·/\\|@#$%^&*+=<>_，。！？；：、（）【】")


@dataclass(frozen=True, slots=True)
class Comment:
    text: str
    category: str
    sentiment: str


@dataclass(frozen=True, slots=True)
class Reading:
    category: str
    category_confidence: float
    sentiment: str
    sentiment_confidence: float


def load_comments(path: Path = CORPUS) -> list[Comment]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        if row["category"] not in CATEGORIES or row["sentiment"] not in SENTIMENTS:
            raise ValueError(f"{path}:{n}: unknown category or sentiment in {row!r}")
        rows.append(Comment(row["text"], row["category"], row["sentiment"]))
    return rows


_CATALOG = FilmCatalog(DEFAULT_FILMS)


def _words(norm: str) -> list[str]:
    from bot.nlu.tokenizer import for_catalog

    return [w for w in for_catalog(_CATALOG).cut(norm) if w not in _SKIP and not w.isspace()]


def features(text: str) -> list[str]:
    """Words (w:), word pairs (b:) and character uni-/bigrams (c:) of a comment."""
    norm = normalise(text)
    chars = [ch for ch in norm if ch not in _SKIP and not ch.isspace()]
    out = [f"c:{ch}" for ch in chars]
    out += [f"c:{a}{b}" for a, b in zip(chars, chars[1:], strict=False)]
    words = _words(norm)
    out += [f"w:{w}" for w in words]
    out += [f"b:{a}|{b}" for a, b in zip(words, words[1:], strict=False)]
    return out


class _Head:
    """One linear model over the shared features: its classes, coefficients, intercepts."""

    def __init__(self, classes: list[str], coef: Any, intercept: Any) -> None:
        self.classes = classes
        self.coef = np.ascontiguousarray(coef, dtype=np.float64)
        self.intercept = np.asarray(intercept, dtype=np.float64)

    def probabilities(self, idx: Any, weights: Any) -> Any:
        scores = self.intercept + (self.coef[:, idx] @ weights if len(idx) else 0.0)
        scores = np.exp(scores - np.max(scores))
        return scores / scores.sum()


class CommentModel:
    """Trained with scikit-learn, kept as arrays (as ``IntentClassifier`` is)."""

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}
        self.idf = np.zeros(0)
        self.category = _Head([], np.zeros((0, 0)), np.zeros(0))
        self.sentiment = _Head([], np.zeros((0, 0)), np.zeros(0))

    def fit(self, comments: Sequence[Comment]) -> CommentModel:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        vectorizer = TfidfVectorizer(analyzer=_same, sublinear_tf=True)
        grams = vectorizer.fit_transform([features(c.text) for c in comments])
        self.vocab = {str(k): int(v) for k, v in vectorizer.vocabulary_.items()}
        self.idf = np.asarray(vectorizer.idf_, dtype=np.float64)
        for name, labels in (
            ("category", [c.category for c in comments]),
            ("sentiment", [c.sentiment for c in comments]),
        ):
            model = LogisticRegression(C=20.0, max_iter=5000, class_weight="balanced")
            model.fit(grams, labels)
            head = _Head([str(c) for c in model.classes_], model.coef_, model.intercept_)
            setattr(self, name, head)
        return self

    def _vector(self, text: str) -> tuple[Any, Any]:
        counts: dict[int, int] = {}
        for feature in features(text):
            index = self.vocab.get(feature)
            if index is not None:
                counts[index] = counts.get(index, 0) + 1
        if not counts:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        weights = (1.0 + np.log(tf)) * self.idf[idx]  # sublinear tf × idf, then l2
        weights /= math.sqrt(float(weights @ weights))
        return idx, weights

    def probabilities(self, text: str) -> tuple[dict[str, float], dict[str, float]]:
        idx, weights = self._vector(text)
        cat = self.category.probabilities(idx, weights)
        sen = self.sentiment.probabilities(idx, weights)
        return (
            dict(zip(self.category.classes, map(float, cat), strict=True)),
            dict(zip(self.sentiment.classes, map(float, sen), strict=True)),
        )

    def read(self, text: str) -> Reading:
        cat, sen = self.probabilities(text)
        category = max(cat, key=cat.__getitem__)
        sentiment = max(sen, key=sen.__getitem__)
        return Reading(category, cat[category], sentiment, sen[sentiment])


def _same(value: Any) -> Any:
    return value


def corpus_hash(path: Path = CORPUS) -> str:
    digest = hashlib.sha256(MODEL_VERSION.encode())
    digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def load_or_train(
    cache_dir: Path | None = None, path: Path = CORPUS, retrain: bool = False
) -> tuple[CommentModel, bool]:
    """The cached model for the current corpus, trained first if needed: (model, trained_now)."""
    cache_dir = cache_dir or default_cache_dir()
    cached = cache_dir / f"feedback-{corpus_hash(path)}.pkl"
    if retrain:
        cached.unlink(missing_ok=True)
    return cached_model(
        cached, CommentModel, lambda: CommentModel().fit(load_comments(path)), "feedback model"
    )


def accuracy(model: CommentModel, comments: Iterable[Comment]) -> tuple[float, float, int]:
    """(category accuracy, sentiment accuracy, n)."""
    rows = list(comments)
    readings = [model.read(c.text) for c in rows]
    n = len(rows)
    if not n:
        return 0.0, 0.0, 0
    cat = sum(r.category == c.category for r, c in zip(readings, rows, strict=True)) / n
    sen = sum(r.sentiment == c.sentiment for r, c in zip(readings, rows, strict=True)) / n
    return cat, sen, n


# --- one model per process ----------------------------------------------------------------

_model: CommentModel | None = None
_lock = threading.Lock()
_thread: threading.Thread | None = None


def model() -> CommentModel:
    """The process's model, loaded (or trained) on first use."""
    global _model
    if _model is None:
        with _lock:
            if _model is None:
                _model, trained = load_or_train()
                log.info("feedback model ready", extra={"trained": trained})
    return _model


def warm_up() -> None:
    """Load the model in a background thread (once), so the first comment does not wait."""
    global _thread
    if _model is not None or _thread is not None:
        return
    _thread = threading.Thread(target=model, name="feedback-model", daemon=True)
    _thread.start()


async def read(text: str) -> Reading:
    """Category and sentiment of a comment, off the event loop (jieba may still be loading)."""
    return await asyncio.to_thread(lambda: model().read(text))
