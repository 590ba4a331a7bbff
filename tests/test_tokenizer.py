"""The jieba tokenizer of the live catalog and the fuzzy film fallback it feeds.

One ``jieba.Tokenizer`` per process (private, never ``jieba.dt``); each catalog
is a view whose words are swapped in before it segments, so these tests build
several catalogs in one process on purpose.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from bot.nlu import tokenizer
from bot.nlu.catalog import DEFAULT_FILMS, FilmCatalog, FilmEntry
from bot.nlu.engine import NluEngine
from bot.nlu.normalise import normalise
from bot.nlu.slots import extract_slots
from bot.nlu.tokenizer import CatalogTokenizer, for_catalog, keepable, shared_tokenizer
from tests.support import FakeClock

ROOT = Path(__file__).resolve().parent.parent
CST = timezone(timedelta(hours=8))
FRIDAY = datetime(2026, 11, 20, 10, 0, tzinfo=CST)
DEMO = FilmCatalog(DEFAULT_FILMS)
# Titles only (no aliases), with the marks jieba cannot keep inside a token.
SHOWING = FilmCatalog(
    [
        FilmEntry("沙丘：第二部"),
        FilmEntry("满江红"),
        FilmEntry("长津湖"),
        FilmEntry("碟中谍7：致命清算"),
        FilmEntry("蜘蛛侠·纵横宇宙"),
        FilmEntry("你好，李焕英"),
        FilmEntry("Mission: Impossible"),
        FilmEntry("八佰", ("八百",)),
        FilmEntry("十面埋伏"),
    ]
)


def slots(text: str, catalog: FilmCatalog = DEMO) -> dict[str, Any]:
    return extract_slots(text, FRIDAY, catalog)


def base_cut(text: str) -> list[str]:
    """How jieba's own dictionary (no catalog) segments: a catalog with no films,
    halls or vocabulary."""
    return CatalogTokenizer(FilmCatalog([]), halls=(), vocabulary=()).cut(text)


# --- the dictionary -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "word"),
    [
        ("我想看热辣滚烫", "热辣滚烫"),
        ("长安三万里两张", "长安三万里"),
        ("哪吒之魔童闹海几点", "哪吒之魔童闹海"),
        ("沙丘第二部明天", "沙丘第二部"),  # the compact form of 沙丘：第二部
        ("流浪地球第二部", "流浪地球第二部"),
    ],
)
def test_titles_and_aliases_are_one_token(message: str, word: str) -> None:
    assert word not in base_cut(message)  # jieba alone splits it
    view = for_catalog(DEMO)
    assert word in view.cut(message)
    assert view.tag(word) == tokenizer.FILM_TAG


@pytest.mark.parametrize(
    ("message", "word", "tag"),
    [
        ("我想改签到3号厅", "3号厅", tokenizer.HALL_TAG),
        ("12号厅在哪", "12号厅", tokenizer.HALL_TAG),
        ("ＩＭＡＸ厅几点开场", "imax厅", tokenizer.HALL_TAG),
        ("三号厅的票", "三号厅", tokenizer.HALL_TAG),
        ("取票码发我一下", "取票码", "n"),
        ("还有情侣座吗", "情侣座", "n"),
    ],
)
def test_halls_and_cinema_words_are_one_token(message: str, word: str, tag: str) -> None:
    assert word not in base_cut(message)
    view = for_catalog(DEMO)
    assert word in view.cut(message)
    assert view.tag(word) == tag


def test_names_are_added_normalised_and_only_when_jieba_can_keep_them() -> None:
    words = for_catalog(SHOWING).words
    # ：·， and spaces split jieba's blocks: only the compact forms go in.
    assert "沙丘:第二部" not in words and "沙丘第二部" in words
    assert "蜘蛛侠·纵横宇宙" not in words and "蜘蛛侠纵横宇宙" in words
    assert "你好,李焕英" not in words and "你好李焕英" in words
    assert "mission: impossible" not in words and "missionimpossible" in words
    assert "Mission: Impossible" not in words  # jieba is case-sensitive; we are not
    assert all(keepable(w) for w in words)
    assert not keepable("沙丘:第二部") and not keepable("a b") and keepable("dune2")
    assert for_catalog(SHOWING).cut("ＭＩＳＳＩＯＮＩＭＰＯＳＳＩＢＬＥ") == ["missionimpossible"]


# --- refresh and isolation ------------------------------------------------------------


def test_a_refreshed_catalog_drops_the_words_of_the_old_one() -> None:
    old = FilmCatalog([FilmEntry("热辣滚烫", ("热辣",)), FilmEntry("长安三万里", ("长安",))])
    new = FilmCatalog([FilmEntry("独行月球")])
    jieba = shared_tokenizer()
    assert for_catalog(old).cut("热辣滚烫") == ["热辣滚烫"]
    assert jieba.user_word_tag_tab.get("热辣滚烫") == tokenizer.FILM_TAG
    assert for_catalog(new).cut("热辣滚烫") == ["热辣", "滚烫"]
    assert "热辣滚烫" not in jieba.user_word_tag_tab
    # A word jieba already knew (长安) gets its own frequency back, not ours.
    assert jieba.FREQ["长安"] < tokenizer.USER_FREQ
    assert jieba.FREQ.get("热辣滚烫", 0) == 0
    # Back to the old catalog: its words are back, the new one's gone.
    assert for_catalog(old).cut("热辣滚烫独行月球") == ["热辣滚烫", "独行", "月球"]
    assert for_catalog(new).cut("热辣滚烫独行月球") == ["热辣", "滚烫", "独行月球"]


def test_two_catalogs_in_one_process_never_see_each_others_words() -> None:
    a = FilmCatalog([FilmEntry("满江红"), FilmEntry("热辣滚烫")])
    b = FilmCatalog([FilmEntry("长津湖"), FilmEntry("独行月球")])
    for _ in range(3):  # interleaved, as two engines would be
        assert for_catalog(a).cut("热辣滚烫独行月球") == ["热辣滚烫", "独行", "月球"]
        assert for_catalog(b).cut("热辣滚烫独行月球") == ["热辣", "滚烫", "独行月球"]
        assert slots("满江虹几点", a)["film"] == "满江红"
        assert "film" not in slots("满江虹几点", b)
        assert slots("长津胡几点", b)["film"] == "长津湖"
        assert "film" not in slots("长津胡几点", a)
    assert for_catalog(a) is for_catalog(a) and for_catalog(a) is not for_catalog(b)


async def test_an_engine_with_a_new_catalog_understands_the_new_films_only() -> None:
    from bot.nlu.classifier import load_or_train

    classifier, _ = load_or_train()
    engine = NluEngine(classifier, FakeClock(), catalog=FilmCatalog([FilmEntry("满江红")]))
    assert (await engine.understand("满江虹还有票吗", "audience")).slots["film"] == "满江红"
    engine.set_catalog(FilmCatalog([FilmEntry("长津湖")]))
    assert "film" not in (await engine.understand("满江虹还有票吗", "audience")).slots
    assert (await engine.understand("长津胡还有票吗", "audience")).slots["film"] == "长津湖"


# --- the catalog's own scan over normalised text ------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("ＭＩＳＳＩＯＮ：ＩＭＰＯＳＳＩＢＬＥ 两张", {"film": "Mission: Impossible", "count": 2}),
        ("mission impossible明天", {"film": "Mission: Impossible", "date": "2026-11-21"}),
        ("蜘蛛侠・纵横宇宙明天", {"film": "蜘蛛侠·纵横宇宙", "date": "2026-11-21"}),
        ("蜘蛛侠 纵横宇宙", {"film": "蜘蛛侠·纵横宇宙"}),
        ("你好,李焕英 3张", {"film": "你好，李焕英", "count": 3}),
        ("你好李焕英", {"film": "你好，李焕英"}),
        ("《沙丘：第二部》两张", {"film": "沙丘：第二部", "count": 2}),
        ("碟中谍７：致命清算", {"film": "碟中谍7：致命清算"}),
    ],
)
def test_titles_with_marks_are_found_whatever_the_width_case_or_punctuation(
    message: str, expected: dict[str, Any]
) -> None:
    assert slots(message, SHOWING) == expected


# --- the fuzzy fallback ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "catalog", "expected"),
    [
        # What the issue asks for, found by the catalog's scan before any fallback.
        ("沙丘二", SHOWING, {"film": "沙丘：第二部"}),
        ("沙丘第二部", SHOWING, {"film": "沙丘：第二部"}),
        ("dune2", DEMO, {"film": "沙丘：第二部"}),
    ],
)
def test_sequel_spellings_name_the_film(
    message: str, catalog: FilmCatalog, expected: dict[str, Any]
) -> None:
    assert slots(message, catalog) == expected


@pytest.mark.parametrize(
    ("message", "catalog", "expected"),
    [
        # Another spelling of the part number, after the base's own tokens.
        ("dune two tonight", DEMO, {"film": "沙丘：第二部", "date": "2026-11-20"}),
        ("沙秋第二集两张", DEMO, {"film": "沙丘：第二部", "count": 2}),
        # One typo in a short name (the scan's fuzzy tier starts at 4 characters).
        ("哪咤2明天晚上7点", DEMO, {"film": "哪吒之魔童闹海", "date": "2026-11-21", "time": "19:00"}),
        ("飞池2两张", DEMO, {"film": "飞驰人生2", "count": 2}),
        ("满江虹几点", SHOWING, {"film": "满江红"}),
        ("长津胡两张", SHOWING, {"film": "长津湖", "count": 2}),
        # Two in a long one, though 碟中碟 is itself a dictionary word.
        ("碟中碟七致名清算", SHOWING, {"film": "碟中谍7：致命清算"}),
    ],
)
def test_the_fuzzy_fallback_finds_what_the_scan_misses(
    message: str, catalog: FilmCatalog, expected: dict[str, Any]
) -> None:
    assert catalog.match(message) is None  # only the fallback can find it
    assert slots(message, catalog) == expected


@pytest.mark.parametrize(
    ("message", "catalog", "expected"),
    [
        # Common words next to a number are not a sequel with a typo (飞驰2, 沙丘2, 哪吒2).
        ("飞机2点到", DEMO, {"time": "14:00"}),
        ("流量2块钱", DEMO, {}),
        ("沙发2个", DEMO, {}),
        ("洗手间在哪里2楼", DEMO, {}),
        # A common word one edit from a short title is not the title.
        ("他满脸红了", SHOWING, {}),
        ("长江湖", SHOWING, {}),
        ("长江红", SHOWING, {}),
        ("长津路怎么走", SHOWING, {}),  # a road
        # No dictionary guards Latin words: short ones are never guessed at.
        ("hey 你好", FilmCatalog([FilmEntry("Her")]), {}),
        # Titles with numerals stay whole; not showing, they give nothing at all.
        ("十面埋伏两张", SHOWING, {"film": "十面埋伏", "count": 2}),
        ("十面埋伏", DEMO, {}),
        ("八佰几点", SHOWING, {"film": "八佰"}),
        ("八佰两张", DEMO, {"film": "八佰", "count": 2}),
        # What the scan refuses, the fallback does not take either.
        ("八百块", DEMO, {}),
        ("长安街怎么走", DEMO, {}),
        ("流浪地球1", DEMO, {}),
        ("流浪地球22", DEMO, {}),
        ("飞驰人生3", DEMO, {}),
        ("哪吒", DEMO, {}),
        # A number with a count after it is a count.
        ("dune two tickets", DEMO, {"count": 2}),
        # Unrelated text.
        ("今天天气怎么样", DEMO, {"date": "2026-11-20"}),
        ("帮我点个外卖", DEMO, {}),
        ("我想改签到3号厅", DEMO, {"hall": "3号厅"}),
        ("沙发坐着不舒服", DEMO, {}),
    ],
)
def test_the_fuzzy_fallback_never_makes_films_of_common_words(
    message: str, catalog: FilmCatalog, expected: dict[str, Any]
) -> None:
    assert slots(message, catalog) == expected


def test_the_fallback_finds_nothing_in_the_corpus_the_scan_does_not() -> None:
    """Thousands of real messages: whatever the scan leaves, the fallback leaves too
    (and that with a bigger catalog of short titles, where typos are easiest)."""
    import json

    from bot.nlu.classifier import load_examples

    second = ROOT / "tests" / "data" / "nlu_second_set.jsonl"
    texts = [e.text for e in load_examples()] + [
        json.loads(line)["text"] for line in second.read_text(encoding="utf-8").splitlines()
    ]
    big = FilmCatalog(
        [FilmEntry(t) for t in "封神 消失的她 孤注一掷 满江红 奥本海默 热烈 长津湖 误杀 无名 好东西 "
         "抓娃娃 默杀 第二十条 人生大事 独行月球 坚如磐石 功夫熊猫4 唐探1900".split()]
        + list(DEFAULT_FILMS)
    )  # fmt: skip
    for catalog in (DEMO, big):
        view = for_catalog(catalog)
        found = []
        for text in texts:
            norm = normalise(text)
            if catalog.match_normalised(norm) is None and view.match_film(norm) is not None:
                found.append(text)
        assert found == []


# --- jieba's global state and the one-time load -------------------------------------------

ISOLATION = textwrap.dedent(
    """
    import threading
    from datetime import datetime, timezone

    import jieba
    import jieba.finalseg

    loads = []
    original = jieba.Tokenizer.initialize
    def counting(self, *args, **kwargs):
        loads.append(self)
        return original(self, *args, **kwargs)
    jieba.Tokenizer.initialize = counting

    from bot.nlu import tokenizer
    from bot.nlu.catalog import DEFAULT_FILMS, FilmCatalog, FilmEntry
    from bot.nlu.slots import extract_slots

    now = datetime.now(timezone.utc)
    demo = FilmCatalog(DEFAULT_FILMS)
    # An exact title needs no jieba: the dictionary is not loaded for it.
    assert extract_slots("两张沙丘2", now, demo)["film"] == "沙丘：第二部"
    assert not tokenizer.is_ready() and loads == []

    tokenizer.warm_up()  # as every engine does
    tokenizer.warm_up()
    other = FilmCatalog([FilmEntry("满江红")])
    results = []
    def use(catalog, text):
        results.append(extract_slots(text, now, catalog).get("film"))
    threads = [threading.Thread(target=use, args=(c, t))
               for c, t in [(demo, "哪咤2几点"), (other, "满江虹几点")] * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(set(results)) == ["哪吒之魔童闹海", "满江红"], results
    assert len(loads) == 1 and loads[0] is tokenizer.shared_tokenizer(), loads
    assert loads[0] is not jieba.dt
    assert jieba.dt.initialized is False and jieba.dt.FREQ == {}
    assert jieba.dt.user_word_tag_tab == {}
    assert not jieba.finalseg.Force_Split_Words
    print("ok")
    """
)


def test_one_private_jieba_per_process_loaded_once_and_jieba_dt_untouched() -> None:
    done = subprocess.run(
        [sys.executable, "-c", ISOLATION], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_jieba_dt_is_not_initialised_in_this_process_either() -> None:
    import jieba

    before = jieba.dt.initialized
    for_catalog(FilmCatalog([FilmEntry("长津湖")])).cut("长津湖几点")
    slots("哪咤2几点")
    assert jieba.dt.initialized is before
    if not before:
        assert jieba.dt.FREQ == {}
