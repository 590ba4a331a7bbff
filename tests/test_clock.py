"""Times as people in the cinema read them (bot.infra.clock): Shanghai time, ``HH:MM`` on
the day it is there now, ``M月D日 HH:MM`` on any other — the chat, its pages and the CLI."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.infra.clock import SHANGHAI, local_date_time_text, local_time_text

NOW = datetime(2026, 11, 21, 2, 30, tzinfo=UTC)  # 10:30 on the 21st in Shanghai


def test_today_in_shanghai_is_the_time_alone_another_day_has_its_date() -> None:
    made = datetime(2026, 11, 21, 2, 5, 9, tzinfo=UTC)
    assert local_time_text(made, NOW) == "10:05"
    assert local_time_text(made, NOW, seconds=True) == "10:05:09"
    assert local_time_text(datetime(2026, 11, 22, 1, 0, tzinfo=UTC), NOW) == "11月22日 09:00"
    assert local_time_text(datetime(2026, 11, 2, 1, 0, tzinfo=UTC), NOW) == "11月2日 09:00"  # no 0s
    assert local_time_text(datetime(2026, 11, 20, 1, 0, tzinfo=UTC), NOW, seconds=True) == (
        "11月20日 09:00:00"
    )


def test_the_day_is_shanghais_not_utcs() -> None:
    # 17:00 UTC on the 20th is 01:00 on the 21st in Shanghai: today, though UTC says yesterday.
    assert local_time_text(datetime(2026, 11, 20, 17, 0, tzinfo=UTC), NOW) == "01:00"
    assert local_time_text(datetime(2026, 11, 20, 15, 59, tzinfo=UTC), NOW) == "11月20日 23:59"
    # Just after midnight in Shanghai (16:30 UTC, still the 20th in UTC): the 20th is yesterday.
    night = datetime(2026, 11, 20, 16, 30, tzinfo=UTC)  # 00:30 on the 21st in Shanghai
    assert local_time_text(datetime(2026, 11, 20, 16, 10, tzinfo=UTC), night) == "00:10"
    assert local_time_text(datetime(2026, 11, 20, 15, 50, tzinfo=UTC), night) == "11月20日 23:50"
    # The same instant whatever zone it is given in.
    assert local_time_text(NOW.astimezone(SHANGHAI), NOW) == "10:30"


def test_naive_times_are_utc_as_stored() -> None:
    assert local_time_text(datetime(2026, 11, 20, 15, 59), NOW) == "11月20日 23:59"
    naive_now = datetime(2026, 11, 21, 2, 30)
    assert local_time_text(datetime(2026, 11, 20, 17, 0), naive_now) == "01:00"


def test_the_dated_form_always_has_the_date() -> None:
    assert local_date_time_text(datetime(2026, 11, 21, 2, 5, tzinfo=UTC)) == "11月21日 10:05"
    assert local_date_time_text(datetime(2026, 11, 20, 17, 0, tzinfo=UTC)) == "11月21日 01:00"
