"""Intent classifier: character n-gram TF-IDF + logistic regression, with the speaker's role.

Trained from the corpus shipped in ``bot/nlu/data/train.jsonl`` and cached on
disk under a hash of the corpus and of this module's ``MODEL_VERSION``, so a
process starts from the cache (no binary model is committed) and any change to
either retrains once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from bot.nlu.catalog import DEFAULT_FILMS, FilmCatalog
from bot.nlu.normalise import normalise

T = TypeVar("T")
log = logging.getLogger(__name__)

# Bump when features or the model change: cached models of other versions are ignored.
MODEL_VERSION = "intent-v3"
DATA_DIR = Path(__file__).parent / "data"
TRAIN_FILE = DATA_DIR / "train.jsonl"

INTENTS = (
    "buy_ticket query_showtimes film_info recommend refund change_ticket my_tickets "
    "report_fault complaint feedback lost_found group_booking membership directions greeting "
    "help human confirm deny cancel task_ack task_done my_tasks unknown"
).split()
STAFF_ONLY = frozenset({"task_ack", "task_done", "my_tasks"})
ROLES = ("audience", "staff")
FILM_MARK = "〈片〉"  # stands in for any film title, so intents never hinge on which film

# Below this probability, or with the runner-up this close, the answer is "unknown"
# plus a question offering the likely choices. With 24 intents a clear winner often
# holds 0.3–0.5 of the mass; 0.3 keeps those and still catches real toss-ups.
MIN_CONFIDENCE = 0.3
MIN_MARGIN = 0.05


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    intent: str
    role: str = "audience"


@dataclass(frozen=True, slots=True)
class Prediction:
    intent: str
    confidence: float
    ranked: tuple[tuple[str, float], ...]  # best first
    uncertain: bool = False  # "unknown" because no intent was clear, not because off-topic

    @property
    def alternatives(self) -> tuple[str, ...]:
        """The likely intents to offer when unsure; none for a confidently off-topic message."""
        if not self.uncertain:
            return ()
        return tuple(name for name, _ in self.ranked[:3] if name != "unknown")


def load_examples(path: Path = TRAIN_FILE) -> list[Example]:
    examples = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        if row["intent"] not in INTENTS:
            raise ValueError(f"{path}:{n}: unknown intent {row['intent']!r}")
        examples.append(Example(row["text"], row["intent"], row.get("role", "audience")))
    return examples


def role_of(role: str) -> str:
    return "staff" if role in ("staff", "engineer", "manager") else "audience"


class IntentClassifier:
    """Trained with scikit-learn, then kept as plain arrays.

    ``fit`` uses scikit-learn (imported only there); what is kept and cached is
    the vocabulary, the idf weights and the model's coefficients, so a server
    starts without importing scikit-learn, and one message is scored by
    gathering the weights of its few dozen n-grams — the same numbers as
    ``transform`` + ``predict_proba``, in tens of microseconds instead of
    several hundred. ``catalog`` (the live film list) is swapped in at run
    time; titles become FILM_MARK.
    """

    def __init__(self, catalog: FilmCatalog | None = None) -> None:
        self.catalog = catalog or FilmCatalog(DEFAULT_FILMS)
        self.classes: list[str] = []
        self.vocab: dict[str, int] = {}
        self.idf = np.zeros(0)
        self.coef = np.zeros((0, 0))  # classes × n-grams
        self.role_coef = np.zeros((0, len(ROLES)))
        self.intercept = np.zeros(0)

    def prepare(self, text: str) -> str:
        clean = normalise(text)
        found = self.catalog.match(clean)
        if found is None:
            return clean
        _, start, end = found
        return clean[:start] + FILM_MARK + clean[end:]

    def fit(
        self, examples: Sequence[Example], progress: Callable[[str], None] | None = None
    ) -> IntentClassifier:
        """``progress(stage)``: ``"features"``, then ``"fit"`` (the long one), then ``"done"``."""
        from scipy.sparse import csr_matrix, hstack
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        # Characters 1–3: Chinese words are short, and typos/homophones keep most n-grams.
        vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True)
        # Weak regularisation: the corpus is small and clean; probabilities stay usable.
        model = LogisticRegression(C=200.0, max_iter=5000, class_weight="balanced")
        if progress is not None:
            progress("features")
        grams = vectorizer.fit_transform([self.prepare(e.text) for e in examples])
        roles = csr_matrix(
            np.array([[1.0 if role_of(e.role) == name else 0.0 for name in ROLES] for e in examples])
        )
        if progress is not None:
            progress("fit")
        model.fit(hstack([grams, roles], format="csr"), [e.intent for e in examples])
        if progress is not None:
            progress("done")
        n_grams = len(vectorizer.vocabulary_)
        coef = np.asarray(model.coef_, dtype=np.float64)
        self.classes = [str(c) for c in model.classes_]
        self.vocab = {str(k): int(v) for k, v in vectorizer.vocabulary_.items()}
        self.idf = np.asarray(vectorizer.idf_, dtype=np.float64)
        self.coef = np.ascontiguousarray(coef[:, :n_grams])
        self.role_coef = np.ascontiguousarray(coef[:, n_grams:])
        self.intercept = np.asarray(model.intercept_, dtype=np.float64)
        return self

    def probabilities(self, text: str, role: str) -> Any:
        counts: dict[int, int] = {}
        for gram in _char_ngrams(self.prepare(text).lower()):
            index = self.vocab.get(gram)
            if index is not None:
                counts[index] = counts.get(index, 0) + 1
        scores = self.intercept + self.role_coef[:, ROLES.index(role_of(role))]
        if counts:
            idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
            tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
            weights = (1.0 + np.log(tf)) * self.idf[idx]  # sublinear tf × idf, then l2
            weights /= np.sqrt(weights @ weights)
            scores = scores + self.coef[:, idx] @ weights
        scores = np.exp(scores - scores.max())  # softmax, as multinomial predict_proba
        return scores / scores.sum()

    def predict(self, text: str, role: str) -> Prediction:
        return self._decide(self.probabilities(text, role), role)

    def predict_many(self, texts: Sequence[str], roles: Sequence[str]) -> list[Prediction]:
        return [self.predict(t, r) for t, r in zip(texts, roles, strict=True)]

    def _decide(self, row: Any, role: str) -> Prediction:
        scores = dict(zip(self.classes, (float(v) for v in row), strict=True))
        if role_of(role) != "staff":
            # Audiences cannot acknowledge work orders, whatever they typed.
            for name in STAFF_ONLY:
                scores[name] = 0.0
        total = sum(scores.values()) or 1.0
        ranked = tuple(
            sorted(((k, v / total) for k, v in scores.items()), key=lambda kv: -kv[1])
        )
        best, p = ranked[0]
        runner_up = ranked[1][1] if len(ranked) > 1 else 0.0
        if best != "unknown" and (p < MIN_CONFIDENCE or p - runner_up < MIN_MARGIN):
            return Prediction("unknown", p, ranked, uncertain=True)
        return Prediction(best, p, ranked)


_WHITESPACE = re.compile(r"\s\s+")


def _char_ngrams(text: str, low: int = 1, high: int = 3) -> Iterable[str]:
    """The n-grams scikit-learn's ``analyzer="char"`` produces for ``ngram_range=(1, 3)``."""
    text = _WHITESPACE.sub(" ", text)
    length = len(text)
    for n in range(low, high + 1):
        for i in range(length - n + 1):
            yield text[i : i + n]


def corpus_hash(examples_path: Path = TRAIN_FILE) -> str:
    digest = hashlib.sha256(MODEL_VERSION.encode())
    digest.update(examples_path.read_bytes())
    return digest.hexdigest()[:16]


def default_cache_dir() -> Path:
    base = os.environ.get("CINEBOT_NLU_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cinebot"
    )
    return Path(base)


def cached_model(path: Path, kind: type[T], train: Callable[[], T], what: str) -> tuple[T, bool]:
    """The model pickled at ``path`` (our own file), else ``train()`` it and store it there.

    Returns (model, trained_now). Written then renamed: processes starting together never
    read a half-written model.
    """
    if path.is_file():
        try:
            with path.open("rb") as fh:
                model = pickle.load(fh)  # our own file, written below
            if isinstance(model, kind):
                return model, False
        except Exception:
            log.warning("cached %s unreadable; retraining", what, exc_info=True)
    log.info("training the %s (first start with this corpus; takes a little while)", what)
    model = train()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as fh:
        pickle.dump(model, fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)
    return model, True


def load_or_train(
    cache_dir: Path | None = None, train_path: Path = TRAIN_FILE, retrain: bool = False,
    progress: Callable[[str], None] | None = None,
) -> tuple[IntentClassifier, bool]:
    """The cached classifier for the current corpus, training it first if needed.

    Returns (classifier, trained_now). ``progress``: told the training's stages (see ``fit``).
    """
    cache_dir = cache_dir or default_cache_dir()
    path = cache_dir / f"intent-{corpus_hash(train_path)}.pkl"
    if retrain:
        path.unlink(missing_ok=True)
    return cached_model(
        path, IntentClassifier, lambda: IntentClassifier().fit(load_examples(train_path), progress),
        "intent model",
    )


def evaluate(
    model: IntentClassifier, examples: Iterable[Example]
) -> tuple[float, list[tuple[Example, Prediction]]]:
    rows = list(examples)
    predictions = model.predict_many([e.text for e in rows], [e.role for e in rows])
    pairs = list(zip(rows, predictions, strict=True))
    correct = sum(e.intent == p.intent for e, p in pairs)
    return (correct / len(pairs) if pairs else 0.0), pairs
