"""Slots from what people type to the cinema: films, dates, times, counts, halls, seats, ratings.

Every table row is a message and the slots it must give. "Now" is fixed: a Friday
morning (2026-11-20 10:00 in Shanghai) unless the row says it is Sunday night
(2026-11-22 21:30). In that week Monday is 11-16 and Sunday 11-22.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from bot.nlu.catalog import DEFAULT_FILMS, FilmCatalog, FilmEntry
from bot.nlu.normalise import compact, normalise
from bot.nlu.slots import cn_to_int, extract_slots

CST = timezone(timedelta(hours=8))
FRIDAY = datetime(2026, 11, 20, 10, 0, tzinfo=CST)
SUNDAY = datetime(2026, 11, 22, 21, 30, tzinfo=CST)
CATALOG = FilmCatalog(DEFAULT_FILMS)
EMPTY = FilmCatalog([])


def slots(text: str, now: datetime = FRIDAY, catalog: FilmCatalog = CATALOG) -> dict[str, Any]:
    return extract_slots(text, now, catalog)


# --- numerals and normalisation ------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("0", 0),
        ("25", 25),
        ("３", 3),
        ("零", 0),
        ("一", 1),
        ("两", 2),
        ("十", 10),
        ("十五", 15),
        ("二十", 20),
        ("二十五", 25),
        ("一百", 100),
        ("一百零五", 105),
        ("一百二十", 120),
        ("三百五", 350),
        ("两百", 200),
        ("九百九十九", 999),
        ("二〇二六", 2026),
        ("零五", 5),
        ("", None),
        ("abc", None),
        ("两三", None),
        ("十十", None),
        ("一千", None),
        ("八佰", None),
    ],
)
def test_numbers_are_read_in_digits_or_chinese(written: str, value: int | None) -> None:
    assert cn_to_int(written) == value


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("ＩＭＡＸ厅　两张！", "imax厅 两张!"),
        ("7排8、9座", "7排8,9座"),
        ("《沙丘：第二部》", '"沙丘:第二部"'),
        ("  明天   晚上\t7点 ", "明天 晚上 7点"),
        ("Dune: Part Two", "dune: part two"),
        ("好的。", "好的."),
        ("沙丘\u200b2", "沙丘2"),
    ],
)
def test_normalise_gives_one_spelling(raw: str, clean: str) -> None:
    assert normalise(raw) == clean
    assert normalise(clean) == clean  # idempotent


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("Dune: Part Two", "duneparttwo"),
        ("《沙丘：第二部》", "沙丘第二部"),
        ("长安 三万里！", "长安三万里"),
        ("ＤＵＮＥ ２", "dune2"),
    ],
)
def test_compact_keeps_only_letters_and_digits(raw: str, key: str) -> None:
    assert compact(raw) == key


# --- the film catalog ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("said", "title", "span"),
    [
        ("沙丘2", "沙丘：第二部", "沙丘2"),
        ("沙丘二", "沙丘：第二部", "沙丘二"),
        ("沙丘第二部", "沙丘：第二部", "沙丘第二部"),
        ("沙丘第2部", "沙丘：第二部", "沙丘第2部"),
        ("沙丘：第二部几点", "沙丘：第二部", "沙丘:第二部"),
        ("dune2", "沙丘：第二部", "dune2"),
        ("Dune 2", "沙丘：第二部", "dune 2"),
        ("ＤＵＮＥ２", "沙丘：第二部", "dune2"),
        ("我想看Dune: Part Two", "沙丘：第二部", "dune: part two"),
        ("dune part 2 tonight", "沙丘：第二部", "dune part 2"),
        ("买两张《沙丘2》", "沙丘：第二部", "沙丘2"),
        ("哪吒二", "哪吒之魔童闹海", "哪吒二"),
        ("魔童闹海好看吗", "哪吒之魔童闹海", "魔童闹海"),
        ("流浪地球第二部", "流浪地球2", "流浪地球第二部"),
        ("流浪2", "流浪地球2", "流浪2"),
        ("热辣", "热辣滚烫", "热辣"),
        ("八百几点", "八佰", "八百"),
        ("飞驰人生二", "飞驰人生2", "飞驰人生二"),
        ("飞驰2", "飞驰人生2", "飞驰2"),
        ("长安3万里", "长安三万里", "长安3万里"),
        ("长安三万里", "长安三万里", "长安三万里"),  # the longest name, not 长安
        ("买票看长安", "长安三万里", "长安"),
        # The bare name of a sequel that is showing means the showing film.
        ("来2张IMAX的沙丘", "沙丘：第二部", "沙丘"),
        ("飞驰人生几点", "飞驰人生2", "飞驰人生"),
        # One typo in a long name.
        ("热辣滚汤", "热辣滚烫", "热辣滚汤"),
        ("哪吒魔童闹海", "哪吒之魔童闹海", "哪吒魔童闹海"),
        ("流浪地求2", "流浪地球2", "流浪地求2"),
        ("dnue2", "沙丘：第二部", "dnue2"),
    ],
)
def test_the_catalog_finds_the_canonical_title(said: str, title: str, span: str) -> None:
    found = CATALOG.match(said)
    assert found is not None, said
    got, start, end = found
    assert got == title
    assert normalise(said)[start:end] == span


@pytest.mark.parametrize(
    "said",
    [
        "十面埋伏",  # not showing
        "哪吒",  # not an alias, and 哪吒之魔童闹海 is no sequel title
        "流浪地球1",  # another film of the series
        "沙丘第一部",
        "飞驰人生3",
        "dune2x",  # inside a longer Latin word
        "xdune2",
        "八百块",  # a price, not 八佰
        "长安街怎么走",  # a street, not 长安三万里
        "流浪地球22",  # a different number
        "",
    ],
)
def test_the_catalog_does_not_guess(said: str) -> None:
    assert CATALOG.match(said) is None


def test_a_films_file_replaces_the_catalog() -> None:
    catalog = FilmCatalog.from_lines(
        [
            "# 本周片单",
            "",
            "封神第一部|封神1|封神",
            "  奥本海默 | Oppenheimer  ",
            "# 下线：八佰",
        ]
    )
    assert catalog.titles() == ["封神第一部", "奥本海默"]
    assert catalog.match("OPPENHEIMER几点")[0] == "奥本海默"  # type: ignore[index]
    assert catalog.match("看封神一")[0] == "封神第一部"  # type: ignore[index]
    assert catalog.match("八佰") is None
    assert set(catalog.user_dict_words()) == {
        "封神第一部",
        "封神1",
        "封神",
        "奥本海默",
        "oppenheimer",
    }


def test_the_demo_catalog_and_its_jieba_words() -> None:
    assert CATALOG.titles() == [
        "沙丘：第二部",
        "哪吒之魔童闹海",
        "流浪地球2",
        "热辣滚烫",
        "八佰",
        "飞驰人生2",
        "长安三万里",
    ]
    words = CATALOG.user_dict_words()
    assert "沙丘第二部" in words and "duneparttwo" in words and "长安三万里" in words
    assert all(w == compact(w) and " " not in w for w in words)
    assert FilmEntry("八佰", ("八百",)) in DEFAULT_FILMS


# --- dates ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("said", "day"),
    [
        ("今天", "2026-11-20"),
        ("今晚", "2026-11-20"),
        ("今儿个有啥电影", "2026-11-20"),
        ("明天", "2026-11-21"),
        ("明晚", "2026-11-21"),
        ("后天", "2026-11-22"),
        ("大后天", "2026-11-23"),
        ("昨天买的票", "2026-11-19"),
        ("周日", "2026-11-22"),
        ("星期天", "2026-11-22"),
        ("礼拜六", "2026-11-21"),
        ("周五", "2026-11-20"),  # today is Friday
        ("这周五", "2026-11-20"),
        ("本周三", "2026-11-18"),  # this week's, though past
        ("下周五", "2026-11-27"),
        ("下个星期五", "2026-11-27"),
        ("下周一", "2026-11-23"),
        ("下下周一", "2026-11-30"),
        ("下礼拜三", "2026-11-25"),
        ("周末", "2026-11-21"),
        ("下周末", "2026-11-28"),
        ("11月25号", "2026-11-25"),
        ("11月25日", "2026-11-25"),
        ("十一月二十五号", "2026-11-25"),
        ("11月25", "2026-11-25"),
        ("25号", "2026-11-25"),
        ("20号", "2026-11-20"),
        ("19号", "2026-12-19"),  # passed this month
        ("31号", "2026-12-31"),  # November has no 31st
        ("二十五号", "2026-11-25"),
        ("11.25", "2026-11-25"),
        ("11/25", "2026-11-25"),
        ("11-25", "2026-11-25"),
        ("12-24", "2026-12-24"),
        ("12月1号", "2026-12-01"),
        ("1月5号", "2027-01-05"),  # nearer next year
        ("11月18号的票", "2026-11-18"),  # nearer this year, though past
        ("2026-12-24", "2026-12-24"),
        ("2026年12月24日", "2026-12-24"),
        ("下个月5号", "2026-12-05"),
        ("本月30号", "2026-11-30"),
        ("showtimes tonight", "2026-11-20"),
    ],
)
def test_dates_on_a_friday_morning(said: str, day: str) -> None:
    assert slots(said)["date"] == day


@pytest.mark.parametrize(
    ("said", "day"),
    [
        ("周日", "2026-11-22"),  # today is Sunday
        ("星期日", "2026-11-22"),
        ("这周日", "2026-11-22"),
        ("下周日", "2026-11-29"),
        ("周五", "2026-11-27"),  # the next Friday
        ("这周五", "2026-11-20"),  # this week's, passed
        ("下周五", "2026-11-27"),
        ("下下周一", "2026-11-30"),
        ("周一", "2026-11-23"),
        ("周末", "2026-11-22"),
        ("明天", "2026-11-23"),
        ("25号", "2026-11-25"),
        ("22号", "2026-11-22"),
        ("21号", "2026-12-21"),
    ],
)
def test_dates_on_a_sunday_night(said: str, day: str) -> None:
    assert slots(said, SUNDAY)["date"] == day


def test_today_is_todays_date_in_shanghai_whatever_the_zone_of_now() -> None:
    late_utc = datetime(2026, 11, 20, 17, 0, tzinfo=UTC)  # Saturday 01:00 in Shanghai
    assert slots("今天", late_utc) == {"date": "2026-11-21"}
    assert slots("周六", late_utc) == {"date": "2026-11-21"}


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        ("3号厅", {"hall": "3号厅"}),  # a hall, not the 3rd
        ("3号厅几点", {"hall": "3号厅"}),
        ("5排6号", {"seats": ["5-6"]}),  # a seat, not the 6th
        ("2号线怎么走", {}),
        ("1号门在哪", {}),
        ("七日内可以退票吗", {}),
        ("11.5元一桶", {}),
        ("评分7.5", {}),
        ("4.5星", {}),
    ],
)
def test_numbers_that_are_not_dates(said: str, expected: dict[str, Any]) -> None:
    assert slots(said) == expected


# --- times ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("said", "clock"),
    [
        ("三点", "15:00"),  # a cinema's bare 三点 is the afternoon
        ("3点", "15:00"),
        ("两点", "14:00"),
        ("九点", "21:00"),
        ("10点", "10:00"),
        ("十一点", "11:00"),
        ("12点", "12:00"),
        ("0点", "00:00"),
        ("零点", "00:00"),
        ("19点", "19:00"),
        ("二十点", "20:00"),
        ("早上8点", "08:00"),
        ("早上七点", "07:00"),
        ("上午10点", "10:00"),
        ("上午九点半", "09:30"),
        ("中午12点", "12:00"),
        ("中午1点", "13:00"),
        ("中午十二点半", "12:30"),
        ("下午3点", "15:00"),
        ("下午三点半", "15:30"),
        ("下午15点", "15:00"),
        ("傍晚6点", "18:00"),
        ("晚上7点", "19:00"),
        ("晚上十一点", "23:00"),
        ("深夜11点", "23:00"),
        ("凌晨3点", "03:00"),
        ("凌晨12点", "00:00"),
        ("19:30", "19:30"),
        ("7:30", "19:30"),
        ("09:30", "09:30"),  # a leading zero is 24-hour
        ("下午03:00", "15:00"),
        ("晚上7.30", "19:30"),
        ("8点半", "20:30"),
        ("八点一刻", "20:15"),
        ("十点三刻", "10:45"),
        ("7点15", "19:15"),
        ("7点15分", "19:15"),
        ("7点05", "19:05"),
        ("七点钟", "19:00"),
        ("一点半", "13:30"),
        ("一点的场", "13:00"),
        ("晚上好，明天7点有吗", "19:00"),  # a greeting is no time of day
        ("早上好，明天7点有吗", "19:00"),
    ],
)
def test_times_in_24_hours(said: str, clock: str) -> None:
    assert slots(said)["time"] == clock


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        ("今晚7点", {"date": "2026-11-20", "time": "19:00"}),
        ("今晚", {"date": "2026-11-20"}),  # evening, but no time said
        ("明天早上8点", {"date": "2026-11-21", "time": "08:00"}),
        ("明早8点", {"date": "2026-11-21", "time": "08:00"}),
        ("明天一点", {"date": "2026-11-21", "time": "13:00"}),
        ("星期天早上9点半", {"date": "2026-11-22", "time": "09:30"}),
        ("25号7点", {"date": "2026-11-25", "time": "19:00"}),
        ("11月25号19:30", {"date": "2026-11-25", "time": "19:30"}),
        ("2026-12-24 19:30", {"date": "2026-12-24", "time": "19:30"}),
        ("十一月二十五号晚上七点半", {"date": "2026-11-25", "time": "19:30"}),
        # Midnight shows belong to the next day.
        ("今晚12点", {"date": "2026-11-21", "time": "00:00"}),
        ("晚上12点", {"date": "2026-11-21", "time": "00:00"}),
        ("半夜12点", {"date": "2026-11-21", "time": "00:00"}),
        ("午夜场", {"date": "2026-11-21", "time": "00:00"}),
        ("午夜12点", {"date": "2026-11-21", "time": "00:00"}),
        ("今晚0点", {"date": "2026-11-21", "time": "00:00"}),
        ("明晚12点", {"date": "2026-11-22", "time": "00:00"}),
        ("今晚1点", {"date": "2026-11-21", "time": "01:00"}),
        ("半夜两点", {"date": "2026-11-21", "time": "02:00"}),
        ("周六晚上12点", {"date": "2026-11-22", "time": "00:00"}),
        # 凌晨 and 0点 are read as said.
        ("明天凌晨1点", {"date": "2026-11-21", "time": "01:00"}),
        ("明天0点", {"date": "2026-11-21", "time": "00:00"}),
        ("凌晨12点", {"time": "00:00"}),
        ("0点", {"time": "00:00"}),
        ("12点", {"time": "12:00"}),
    ],
)
def test_dates_with_times_and_midnight_shows(said: str, expected: dict[str, Any]) -> None:
    assert slots(said) == expected


def test_a_sunday_night_midnight_show_is_monday() -> None:
    assert slots("今晚12点的沙丘2", SUNDAY) == {
        "film": "沙丘：第二部",
        "date": "2026-11-23",
        "time": "00:00",
    }


@pytest.mark.parametrize(
    "said",
    ["快一点", "便宜一点", "想看燃一点的片子", "有一点冷", "3小时", "两个小时后", "同时", "几点"],
)
def test_words_that_are_not_times(said: str) -> None:
    assert "time" not in slots(said)


# --- counts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("said", "count"),
    [
        ("两张", 2),
        ("俩", 2),
        ("来俩", 2),
        ("二张", 2),
        ("3张", 3),
        ("一张", 1),
        ("十二张", 12),
        ("四个人", 4),
        ("5个人", 5),
        ("两个大人一个小孩", 3),
        ("两张大人票一张儿童票", 3),
        ("大人俩 小孩一个", 3),
        ("两大一小", 3),
        ("我们三个", 3),
        ("我们俩", 2),
        ("咱俩", 2),
        ("2位", 2),
        ("一共5位", 5),
        ("一家三口", 3),
        ("一家四口", 4),
        ("三十人团体", 30),
        ("我们一行二十人", 20),
        ("一个班四十个同学", 40),
        ("要200张票", 200),
        ("i want to buy 2 tickets", 2),
        ("two tickets please", 2),
        ("7点2张", 2),
    ],
)
def test_how_many_people_or_tickets(said: str, count: int) -> None:
    assert slots(said)["count"] == count


@pytest.mark.parametrize(
    "said",
    [
        "两三张",
        "售票员一个人都不管",
        "小孩一直哭没人管",
        "捡到一张身份证",
        "想办一张会员卡",
        "第2张",
        "3小时",
        "五星",
        "3号厅",
    ],
)
def test_no_count_where_none_was_said(said: str) -> None:
    assert "count" not in slots(said)


# --- halls and seats -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("said", "hall"),
    [
        ("3号厅", "3号厅"),
        ("三号厅", "3号厅"),
        ("3厅", "3号厅"),
        ("3号影厅", "3号厅"),
        ("第3放映厅", "3号厅"),
        ("十号厅", "10号厅"),
        ("IMAX厅", "IMAX厅"),
        ("imax", "IMAX厅"),
        ("有没有IMAX的场次", "IMAX厅"),
        ("巨幕厅", "IMAX厅"),
        ("巨幕", "IMAX厅"),
    ],
)
def test_halls(said: str, hall: str) -> None:
    assert slots(said)["hall"] == hall


@pytest.mark.parametrize(
    ("said", "seats"),
    [
        ("5排6座", ["5-6"]),
        ("5排6号", ["5-6"]),
        ("五排六座", ["5-6"]),
        ("十二排三座", ["12-3"]),
        ("5-6", ["5-6"]),
        ("5-6座", ["5-6"]),
        ("选座5-6", ["5-6"]),
        ("7排8、9座", ["7-8", "7-9"]),
        ("7排8座、9座", ["7-8", "7-9"]),
        ("8排1、2、3号", ["8-1", "8-2", "8-3"]),
        ("7排8到10座", ["7-8", "7-9", "7-10"]),
        ("第五排第六个座位", ["5-6"]),
        ("5排6座和5排7座", ["5-6", "5-7"]),
        ("把5排6座换成7排8座", ["5-6", "7-8"]),
    ],
)
def test_seats(said: str, seats: list[str]) -> None:
    assert slots(said)["seats"] == seats


def test_a_seat_and_a_count_side_by_side() -> None:
    assert slots("5排6座 2张") == {"seats": ["5-6"], "count": 2}
    assert slots("5排6座 25号") == {"seats": ["5-6"], "date": "2026-11-25"}


# --- ratings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("said", "rating"),
    [
        ("五星", 5),
        ("5星", 5),
        ("五星好评", 5),
        ("打5分", 5),
        ("给个五分", 5),
        ("给这次观影打4分", 4),
        ("差评一星", 1),
        ("三颗星", 3),
        ("2分吧，一般般", 2),
        ("给满分", 5),
        ("给10分不怕你骄傲", 10),  # points someone gives may be out of 10
        ("打个9分", 9),
        ("四星，扣一星因为排队久", 4),
        ("推荐指数8分", 8),
        ("推荐指数：9", 9),
        ("推荐给朋友的可能性打9分", 9),
        ("愿意推荐，10分", 10),
        ("推荐的可能性 0分", 0),
    ],
)
def test_ratings(said: str, rating: int) -> None:
    assert slots(said)["rating"] == rating


@pytest.mark.parametrize(
    "said",
    [
        "星期五",
        "我的三星手机丢了",
        "五星级服务",
        "三星期",
        "10分",
        "十分满意",
        "推荐一部电影",
        "差评",
    ],
)
def test_no_rating_where_none_was_given(said: str) -> None:
    assert "rating" not in slots(said)


# --- titles with numerals never leak -------------------------------------------------


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        ("八佰几点", {"film": "八佰"}),
        ("八佰两张", {"film": "八佰", "count": 2}),
        ("流浪地球2明天两张", {"film": "流浪地球2", "date": "2026-11-21", "count": 2}),
        ("飞驰人生2", {"film": "飞驰人生2"}),
        ("飞驰人生2 三张", {"film": "飞驰人生2", "count": 3}),
        ("飞驰人生22张", {"film": "飞驰人生2", "count": 2}),
        ("沙丘二两张", {"film": "沙丘：第二部", "count": 2}),
        ("八百四张", {"film": "八佰", "count": 4}),
        ("长安三万里", {"film": "长安三万里"}),
        ("长安三万里两张", {"film": "长安三万里", "count": 2}),
        ("沙丘 2张", {"film": "沙丘：第二部", "count": 2}),
        ("哪吒2 3张 明天下午", {"film": "哪吒之魔童闹海", "count": 3, "date": "2026-11-21"}),
        ("十面埋伏", {}),
        ("十面埋伏几点", {}),
    ],
)
def test_titles_with_numerals(said: str, expected: dict[str, Any]) -> None:
    assert slots(said) == expected


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        ("八佰几点", {}),
        ("飞驰人生2", {}),
        ("长安三万里", {}),
        ("十面埋伏", {}),
        ("流浪地球2明天两张", {"date": "2026-11-21", "count": 2}),
    ],
)
def test_titles_outside_the_catalog_give_no_numbers(said: str, expected: dict[str, Any]) -> None:
    assert slots(said, catalog=EMPTY) == expected


# --- whole messages ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("said", "now", "expected"),
    [
        (
            "明天晚上7点半IMAX厅两张沙丘2 7排8、9座",
            FRIDAY,
            {
                "film": "沙丘：第二部",
                "date": "2026-11-21",
                "time": "19:30",
                "count": 2,
                "hall": "IMAX厅",
                "seats": ["7-8", "7-9"],
            },
        ),
        (
            "今天晚上八点，三号厅，五排六座，沙丘二",
            FRIDAY,
            {
                "film": "沙丘：第二部",
                "date": "2026-11-20",
                "time": "20:00",
                "hall": "3号厅",
                "seats": ["5-6"],
            },
        ),
        (
            "流浪地球2 11月25号 3号厅 5排6座 两张 晚上8点",
            FRIDAY,
            {
                "film": "流浪地球2",
                "date": "2026-11-25",
                "time": "20:00",
                "count": 2,
                "hall": "3号厅",
                "seats": ["5-6"],
            },
        ),
        (
            "我想订周六下午的长安三万里，两个大人一个小孩",
            FRIDAY,
            {"film": "长安三万里", "date": "2026-11-21", "count": 3},
        ),
        (
            "下周五晚上八点 沙丘2 4张票",
            SUNDAY,
            {"film": "沙丘：第二部", "date": "2026-11-27", "time": "20:00", "count": 4},
        ),
        ("订一张19:00热辣滚烫", FRIDAY, {"film": "热辣滚烫", "time": "19:00", "count": 1}),
        ("3号厅5排6座扶手断了", FRIDAY, {"hall": "3号厅", "seats": ["5-6"]}),
        ("IMAX效果太震撼了，五星", FRIDAY, {"hall": "IMAX厅", "rating": 5}),
        ("i want to buy 2 tickets for dune2", FRIDAY, {"film": "沙丘：第二部", "count": 2}),
        (
            "一家三口周日看哪吒2",
            SUNDAY,
            {"film": "哪吒之魔童闹海", "date": "2026-11-22", "count": 3},
        ),
        ("你好", FRIDAY, {}),
        ("", FRIDAY, {}),
    ],
)
def test_whole_messages(said: str, now: datetime, expected: dict[str, Any]) -> None:
    assert slots(said, now) == expected


def test_slot_values_have_the_contract_types() -> None:
    got = slots("明天晚上7点半IMAX厅两张沙丘2 7排8、9座 五星")
    types = {
        "film": str,
        "date": str,
        "time": str,
        "count": int,
        "hall": str,
        "seats": list,
        "rating": int,
    }
    assert set(got) == set(types)
    for key, kind in types.items():
        assert type(got[key]) is kind, key
    assert datetime.strptime(got["date"], "%Y-%m-%d")
    assert datetime.strptime(got["time"], "%H:%M")
    assert all(isinstance(s, str) and s.count("-") == 1 for s in got["seats"])
