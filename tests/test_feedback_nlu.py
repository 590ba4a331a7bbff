"""Free text: the comment classifier (category and sentiment) on a held-out set it never saw,
and the words that raise a complaint's priority."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from bot.nlu import sentiment
from bot.nlu.sentiment import accuracy, load_comments
from domain import workorders
from domain.feedback import FeedbackResponse, is_alarming, priority_of

HELD_OUT = Path(__file__).parent / "data" / "feedback_heldout.jsonl"


def _key(text: str) -> str:
    return "".join(ch for ch in text if ch.isalnum())


def test_the_corpus_covers_every_work_order_category_and_is_not_the_held_out_set() -> None:
    assert sentiment.CATEGORIES == workorders.CATEGORIES
    corpus = load_comments()
    per_category = Counter(c.category for c in corpus)
    assert set(per_category) == set(workorders.CATEGORIES)
    assert min(per_category.values()) >= 30, per_category
    assert {c.sentiment for c in corpus} == {"neg", "neu", "pos"}
    held = load_comments(HELD_OUT)
    assert len(held) >= 80 and {c.category for c in held} == set(workorders.CATEGORIES)
    assert not {_key(c.text) for c in held} & {_key(c.text) for c in corpus}


def test_held_out_comments_are_read_well() -> None:
    model = sentiment.model()
    category, mood, n = accuracy(model, load_comments(HELD_OUT))
    assert n >= 80
    assert category >= 0.85, category  # 0.94 when written
    assert mood >= 0.85, mood  # 0.93 when written


def test_a_reading_names_the_category_and_the_sentiment() -> None:
    model = sentiment.model()
    cold = model.read("空调冷得要命，冻死我了")
    assert (cold.category, cold.sentiment) == ("temperature", "neg")
    assert 0.0 < cold.category_confidence <= 1.0
    praise = model.read("爆米花很好吃，下次还买")
    assert (praise.category, praise.sentiment) == ("concession", "pos")


def test_keywords_raise_the_priority_and_an_urgent_comment_alerts_whatever_the_stars() -> None:
    assert priority_of("我家孩子在台阶摔倒受伤了") == "P1"
    assert priority_of("我要退款，不然就投诉") == "P2"
    assert priority_of("座椅有点硬") == "P3"
    happy_but_hurt = FeedbackResponse(stars=5, nps=10, priority="P1", sentiment="neg")
    assert is_alarming(happy_but_hurt)
    wants_money = FeedbackResponse(stars=4, nps=8, priority="P2", sentiment="neg")
    assert is_alarming(wants_money)
    content = FeedbackResponse(stars=4, nps=8, priority="P3", sentiment="neg")
    assert not is_alarming(content)
    assert is_alarming(FeedbackResponse(stars=2, nps=None, priority="P3"))
    assert is_alarming(FeedbackResponse(stars=None, nps=6, priority="P3"))
    assert not is_alarming(FeedbackResponse(stars=3, nps=7, priority="P3"))
