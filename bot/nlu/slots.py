"""Slots from Chinese chat text: film, date, time, count, hall, seats, rating.

A small table-driven grammar of our own, because off-the-shelf Chinese time
parsers read "3号厅" as the 3rd and "三点" as 03:00. Chinese numerals are
converted only inside a pattern (两张, 五排六座, 三号厅, 八点半, 十一月), never
across the sentence, so 八佰, 十面埋伏 and 长安三万里 stay words.

Order matters, and each stage blanks what it used (same length, so positions
hold): the film title first (its numerals never leak: 流浪地球2 is no count; the
catalog's own scan, then — only when that finds nothing — the fuzzy fallback over
jieba tokens in ``bot.nlu.tokenizer``), then halls (3号厅 is no date), seats (5排6号
is no date), dates, times, ratings, counts.

Dates and times are read in Asia/Shanghai, relative to ``now``:

* weeks run Monday to Sunday. 周五 / 星期五 alone is the next Friday on or after
  today (today on a Friday); 这周五 / 本周五 is this week's Friday, even if it has
  passed; 下周五 is next week's, 下下周五 the week after. 周末 is the coming
  Saturday (today on a weekend day).
* 25号 is the next 25th on or after today; 11月25号 (no year) is the nearer of
  this, last and next year's 25 November; 11-25 / 11.25 / 11/25 likewise.
* Hours: with no time-of-day word a cinema means the afternoon or evening, so a
  bare 1–9 点 is 13:00–21:00, 10/11/12 点 stay 10:00/11:00/12:00, 0 点 is
  00:00. 早上/上午 keep the hour; 中午 1–5 点 add 12 (中午12点 is 12:00);
  下午/傍晚 add 12 below 12; 晚上/今晚 add 12 to 5–11.
* Midnight shows: a time after midnight said from the evening before — 今晚12点,
  晚上12点, 半夜12点, 午夜, 今晚1点, 半夜2点 — is 00:00 / 01:00 / 02:00 of the *next*
  day (the date said, or today, plus one). 凌晨 and 0点 are read literally:
  明天凌晨1点 is tomorrow 01:00, 凌晨12点 and 0点 are 00:00 of the date said.
* 今晚 alone gives the date and no time.
* 11-25 vs 5-6: a dashed pair is a date when its first number is this or next
  month (or it ends in 日), a seat otherwise (or when it says 座 / follows 选座).

Where a message says several of one thing, the first date, time and hall win;
seats are all kept, in order; people of several kinds are added up (两个大人一个
小孩 is 3). A rating is 1–5 (stars, or points), up to 10 for points someone gives
(给10分) and 0–10 for 推荐 likelihood (推荐指数8分).
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.nlu.catalog import FilmCatalog
from bot.nlu.normalise import normalise
from bot.nlu.tokenizer import fuzzy_film

SHANGHAI = ZoneInfo("Asia/Shanghai")

# --- numerals ------------------------------------------------------------------------

_CN_DIGIT = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4,
             "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}  # fmt: skip
_CN = "零〇一二两三四五六七八九十百"


def cn_to_int(s: str) -> int | None:
    """An integer written in digits or Chinese numerals (零一二两三四五六七八九十百, up to
    999): "25" → 25, "二十五" → 25, "十" → 10, "两" → 2, "一百零五" → 105, "三百五" → 350.
    A run of bare Chinese digits reads positionally ("二〇二六" → 2026, "零五" → 5).
    None when ``s`` is not such a number."""
    s = unicodedata.normalize("NFKC", s).strip()
    if not s:
        return None
    if s.isascii():
        return int(s) if s.isdigit() else None
    if all(ch in _CN_DIGIT for ch in s):
        if len(s) == 1:
            return _CN_DIGIT[s]
        if "两" in s:
            return None  # 两三 is "two or three", not 23
        return int("".join(str(_CN_DIGIT[ch]) for ch in s))
    total = 0
    digit: int | None = None
    last_unit = 0  # 100 or 10: the unit just used
    zero = False
    for ch in s:
        if ch in ("零", "〇"):
            if digit is not None:
                return None
            zero = True
        elif ch in _CN_DIGIT:
            if digit is not None:
                return None
            digit = _CN_DIGIT[ch]
        elif ch == "十":
            if last_unit and last_unit <= 10:
                return None
            total += (1 if digit is None else digit) * 10
            digit, last_unit, zero = None, 10, False
        elif ch == "百":
            if last_unit:
                return None
            total += (1 if digit is None else digit) * 100
            digit, last_unit, zero = None, 100, False
        else:
            return None
    if digit is not None:
        # 三百五 is 350, 一百零五 is 105.
        total += digit * 10 if last_unit == 100 and not zero else digit
    return total


def _num(s: str | None) -> int | None:
    return None if s is None else cn_to_int(s)


# Building blocks. _NB: a number starts where no other number ends.
_NB = rf"(?<![\d{_CN}.])"
_N = rf"(?:\d{{1,3}}|[{_CN}]{{1,4}})"  # 1–999


def _blank(s: str, start: int, end: int) -> str:
    return s[:start] + " " * (end - start) + s[end:]


def _take(pattern: re.Pattern[str], s: str, keep: Callable[[re.Match[str]], bool]) -> str:
    """Blank every match of ``pattern`` for which ``keep`` (which records it) says True."""
    for m in list(pattern.finditer(s)):
        if keep(m):
            s = _blank(s, m.start(), m.end())
    return s


# --- hall ----------------------------------------------------------------------------

_HALL = re.compile(
    rf"{_NB}第?(?P<n>\d{{1,2}}|[一二三四五六七八九十]{{1,3}})\s*号?\s*(?:影厅|放映厅|厅)"
    r"|(?P<imax>imax|巨幕)\s*(?:影厅|放映厅|厅)?"
)


def _halls(s: str, found: list[str]) -> str:
    def keep(m: re.Match[str]) -> bool:
        if m.group("imax"):
            found.append("IMAX厅")
            return True
        n = _num(m.group("n"))
        if n is None or not 1 <= n <= 99:
            return False
        found.append(f"{n}号厅")
        return True

    return _take(_HALL, s, keep)


# --- seats ---------------------------------------------------------------------------

_SUFFIX = r"(?:号座位|号座|号位|个座位|个位置|个位子|个座|座位|位置|座|号)"
_COL = rf"第?{_N}(?:{_SUFFIX}|(?![\d{_CN}张人位点时:.分星口名厅月日个]))"
_SEP = r"\s*(?:,|和|跟|与|及|以及|还有|/|到|至|~|-)\s*"
_SEATS = re.compile(
    rf"{_NB}第?(?P<row>{_N})\s*排\s*(?P<cols>{_COL}(?:{_SEP}(?!第?{_N}\s*排){_COL})*)"
)
_COL_TOKEN = re.compile(rf"(?P<range>到|至|~|-)|(?P<n>\d{{1,3}}|[{_CN}]{{1,4}})")
# "5-6": a seat or a date (11-25)? Decided in _dash_pairs.
_DASH = re.compile(
    r"(?<![\d.:/-])(?P<a>\d{1,2})\s*-\s*(?P<b>\d{1,2})(?![\d.:/-])"
    r"(?!\s*(?:点|时|张|个|人|位|岁|元|块|厅|分|星|月|天|小时|号厅))"
    r"(?P<suffix>\s*(?:号座位|号座|座位|座|号|日))?"
)
_SEAT_CONTEXT = ("选座", "座位号", "座位", "座号", "位置", "选", "坐")


def _seat_cols(text: str) -> list[int]:
    cols: list[int] = []
    pending_range = False
    for m in _COL_TOKEN.finditer(text):
        if m.group("range"):
            pending_range = bool(cols)
            continue
        n = cn_to_int(m.group("n"))
        if n is None:
            continue
        if pending_range and cols and 0 < n - cols[-1] <= 10:
            cols.extend(range(cols[-1] + 1, n + 1))
        else:
            cols.append(n)
        pending_range = False
    return cols


def _seats(s: str, found: list[tuple[int, str]]) -> str:
    def keep(m: re.Match[str]) -> bool:
        row = _num(m.group("row"))
        if row is None or not 1 <= row <= 60:
            return False
        cols = [c for c in _seat_cols(m.group("cols")) if 1 <= c <= 99]
        if not cols:
            return False
        found.extend((m.start(), f"{row}-{c}") for c in cols)
        return True

    return _take(_SEATS, s, keep)


def _dash_pairs(
    s: str, today: date, seats: list[tuple[int, str]], dates: list[tuple[int, date]]
) -> str:
    """``a-b`` is a seat when it says so (5-6座, 选座5-6) and a date when it says so
    (11-25日); otherwise a date if ``a`` is this or next month (11-25 in November),
    else a seat (5-6)."""
    this_month, next_month = today.month, today.month % 12 + 1

    def keep(m: re.Match[str]) -> bool:
        a, b = int(m.group("a")), int(m.group("b"))
        suffix = (m.group("suffix") or "").strip()
        before = s[max(0, m.start() - 3) : m.start()].rstrip()
        as_date = _nearest_md(today, a, b)
        is_seat = "座" in suffix or before.endswith(_SEAT_CONTEXT)
        date_like = suffix == "日" or a in (this_month, next_month)
        if not is_seat and as_date is not None and date_like:
            dates.append((m.start(), as_date))
            return True
        if 1 <= a <= 60 and 1 <= b <= 99 and suffix != "日":
            seats.append((m.start(), f"{a}-{b}"))
            return True
        return False

    return _take(_DASH, s, keep)


# --- dates ---------------------------------------------------------------------------

_DN = r"(?:\d{1,2}|[一二三四五六七八九十]{1,3})"
_WEEKDAY = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6, "七": 6,
            "1": 0, "2": 1, "3": 2, "4": 3, "5": 4, "6": 5, "7": 6}  # fmt: skip
_WEEK_OFFSET = {"": None, "这": 0, "这个": 0, "本": 0, "下": 1, "下个": 1,
                "下下": 2, "下下个": 2, "上": -1, "上个": -1}  # fmt: skip
_DAY_WORD = {"大后天": 3, "大前天": -3, "今天": 0, "今日": 0, "今儿": 0, "今儿个": 0,
             "今晚": 0, "今夜": 0, "今早": 0, "明天": 1, "明日": 1, "明儿": 1, "明儿个": 1,
             "明晚": 1, "明早": 1, "后天": 2, "后儿": 2, "昨天": -1, "昨日": -1,
             "昨晚": -1, "前天": -2, "today": 0, "tonight": 0, "tomorrow": 1}  # fmt: skip
_MONTH_OFFSET = {"这": 0, "这个": 0, "本": 0, "下": 1, "下个": 1, "下下": 2, "下下个": 2,
                 "上": -1, "上个": -1}  # fmt: skip
_WEEK_PREFIX = r"(?:下下个?|下个?|这个?|本|上个?)"
_DATE = re.compile(
    # 2026-11-25, 2026.11.25, 2026/11/25, 2026年11月25日
    r"(?<!\d)(?P<y>\d{4})\s*[-./年]\s*(?P<ym>\d{1,2})\s*[-./月]\s*(?P<yd>\d{1,2})\s*[日号]?(?!\d)"
    # 11月25号, 十一月二十五日, 11月25
    rf"|{_NB}(?P<m>{_DN})\s*月\s*(?P<d>{_DN})\s*(?:日|号)?(?![\d{_CN}张个位人排座厅点:时分])"
    # 下个月5号, 本月25日
    rf"|(?P<mp>{_WEEK_PREFIX})\s*月\s*(?P<md>{_DN})\s*[日号]"
    # 25号, 二十五日 — but not 1号线, 3号门, 七日内
    rf"|(?<![\d{_CN}第])(?P<dd>{_DN})\s*[日号](?![线楼门口厅座机位店馆院内游期子])"
    # 11.25, 11/25 (a time after 晚上 — 晚上7.30 — is left for the time grammar)
    r"|(?<![\d.:/¥$分])(?<![上午晚早])(?P<dm>\d{1,2})\s*[./]\s*(?P<dmd>\d{1,2})"
    r"(?![\d.%星分元块折倍万米个岁kw])(?:\s*[日号])?"
    rf"|(?P<word>{'|'.join(sorted(_DAY_WORD, key=len, reverse=True))})"
    rf"|(?P<wp>{_WEEK_PREFIX})?\s*(?:周|星期|礼拜|週)(?P<wd>[一二三四五六日天七1-7])(?!气)"
    rf"|(?P<ep>{_WEEK_PREFIX})?\s*周末"
)


def _valid(y: int, m: int, d: int) -> date | None:
    if not (1 <= m <= 12 and 1 <= d <= 31):
        return None
    if d > calendar.monthrange(y, m)[1]:
        return None
    return date(y, m, d)


def _nearest_md(today: date, m: int, d: int) -> date | None:
    """The month-day nearest to today, this year, last year or next (ties: the future)."""
    options = [x for x in (_valid(today.year + k, m, d) for k in (0, 1, -1)) if x is not None]
    if not options:
        return None
    return min(options, key=lambda x: (abs((x - today).days), x < today))


def _next_day_of_month(today: date, d: int, months_ahead: int | None = None) -> date | None:
    """The day ``d`` on or after today; or of a given month (``months_ahead`` from now)."""
    y, m = today.year, today.month
    if months_ahead is not None:
        m += months_ahead
        y, m = y + (m - 1) // 12, (m - 1) % 12 + 1
        return _valid(y, m, d)
    for _ in range(13):
        found = _valid(y, m, d)
        if found is not None and found >= today:
            return found
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return None


def _weekday(today: date, weekday: int, prefix: str | None) -> date:
    offset = _WEEK_OFFSET.get(prefix or "")
    if offset is None:
        return today + timedelta(days=(weekday - today.weekday()) % 7)
    monday = today - timedelta(days=today.weekday())
    return monday + timedelta(weeks=offset, days=weekday)


def _weekend(today: date, prefix: str | None) -> date:
    offset = _WEEK_OFFSET.get(prefix or "")
    if offset is None:
        return today if today.weekday() >= 5 else _weekday(today, 5, None)
    return _weekday(today, 5, prefix)


def _date_of(m: re.Match[str], today: date) -> date | None:
    if m.group("y"):
        return _valid(int(m.group("y")), int(m.group("ym")), int(m.group("yd")))
    if m.group("m"):
        month, day = _num(m.group("m")), _num(m.group("d"))
        return None if month is None or day is None else _nearest_md(today, month, day)
    if m.group("md"):
        day = _num(m.group("md"))
        ahead = _MONTH_OFFSET[m.group("mp")]
        return None if day is None else _next_day_of_month(today, day, ahead)
    if m.group("dd"):
        day = _num(m.group("dd"))
        return None if day is None else _next_day_of_month(today, day)
    if m.group("dm"):
        return _nearest_md(today, int(m.group("dm")), int(m.group("dmd")))
    if m.group("word"):
        return today + timedelta(days=_DAY_WORD[m.group("word")])
    if m.group("wd"):
        return _weekday(today, _WEEKDAY[m.group("wd")], m.group("wp"))
    return _weekend(today, m.group("ep"))


def _dates(s: str, today: date, found: list[tuple[int, date]]) -> str:
    def keep(m: re.Match[str]) -> bool:
        when = _date_of(m, today)
        if when is None:
            return False
        found.append((m.start(), when))
        return True

    return _take(_DATE, s, keep)


# --- times ---------------------------------------------------------------------------

# Time-of-day words, by how they turn a spoken hour into 24 h (see _hour).
_MORNING, _NOON, _AFTERNOON, _EVENING, _LATE, _DAWN = range(6)
_PERIOD_WORDS = {
    "早上": _MORNING, "早晨": _MORNING, "清晨": _MORNING, "一早": _MORNING, "上午": _MORNING,
    "今早": _MORNING, "明早": _MORNING, "早": _MORNING,
    "中午": _NOON, "午间": _NOON,
    "下午": _AFTERNOON, "午后": _AFTERNOON, "傍晚": _AFTERNOON, "黄昏": _AFTERNOON,
    "晚上": _EVENING, "夜里": _EVENING, "夜间": _EVENING, "夜晚": _EVENING, "今晚": _EVENING,
    "明晚": _EVENING, "昨晚": _EVENING, "今夜": _EVENING, "晚": _EVENING, "夜": _EVENING,
    "半夜": _LATE, "深夜": _LATE, "午夜": _LATE,
    "凌晨": _DAWN,
}  # fmt: skip
_PERIOD = re.compile(
    "(?:" + "|".join(w for w in sorted(_PERIOD_WORDS, key=len, reverse=True) if len(w) > 1) + ")"
    r"(?!好|安|饭|餐)"
    # A lone 早/晚/夜 only right before a number: 晚7点, not 最早 or 太晚了.
    rf"|[早晚夜](?=\s*[\d{_CN}])"
)
_TIME = re.compile(
    rf"(?<![\d{_CN}.:])(?P<h>\d{{1,2}}|[零〇一二两三四五六七八九十]{{1,3}})\s*(?:点|时)"
    r"(?!间|候|长|段|尚|髦|代|刻表|差)(?:\s*钟)?"
    r"(?:\s*(?:(?P<half>半)|(?P<ke>[一二两三123])\s*刻"
    rf"|(?P<m>[0-5]?\d|[零〇一二三四五六七八九十]{{1,3}})\s*(?:分钟|分)?"
    rf"(?![\d{_CN}张个位人排号座厅星口名])))?"
    r"|(?<![\d:.])(?P<hh>[01]?\d|2[0-4])\s*:\s*(?P<mm>[0-5]\d)(?![\d:])"
    r"|(?<=[上午晚早])\s?(?P<dh>\d{1,2})\.(?P<dmm>[0-5]\d)(?!\d)"
)
_MIDNIGHT = re.compile(r"午夜|子夜")
# "一点" is as often "a little" (快一点, 便宜一点) as one o'clock.
_LITTLE_BEFORE = frozenset("快慢早晚多少好大小高低冷热近远有差再轻重便宜点贵长短松紧亮暗")
_ONE_OCLOCK_AFTER = ("的场", "场", "开", "左右", "前", "后", "那", "整", "钟")


def _hour(h: int, period: int | None, explicit: bool) -> tuple[int, bool]:
    """24 h hour and whether it falls on the next day. See the module docstring."""
    if h == 24:
        return 0, True
    if period is None:
        if explicit or h == 0 or h >= 10:
            return h, False
        return h + 12, False  # a cinema's bare 三点 is 15:00
    if period == _MORNING:
        return h, False
    if period == _NOON:
        return (h + 12 if 1 <= h <= 5 else h), False
    if period == _AFTERNOON:
        return (h + 12 if 1 <= h <= 11 else h), False
    if period == _EVENING:
        if h in (0, 12):
            return 0, True
        if 1 <= h <= 4:
            return h, True
        return (h + 12 if h <= 11 else h), False
    if period == _LATE:
        if h in (0, 12):
            return 0, True
        if 1 <= h <= 5:
            return h, True
        return (h + 12 if h <= 11 else h), False
    # _DAWN: literal; 凌晨12点 is 00:00.
    return (0 if h == 12 else h), False


def _time(s: str, periods: list[tuple[int, int]], has_date: bool) -> tuple[str | None, bool, str]:
    """(HH:MM, next_day, text with the time blanked)."""
    for m in _TIME.finditer(s):
        before = [p for end, p in periods if end <= m.start()]
        period = before[-1] if before else None
        minute = 0
        explicit = False
        if m.group("h") is not None:
            raw = m.group("h")
            h = cn_to_int(raw)
            if m.group("half"):
                minute = 30
            elif m.group("ke"):
                minute = 15 * (cn_to_int(m.group("ke")) or 0)
            elif m.group("m"):
                minute = cn_to_int(m.group("m")) or 0
            if raw == "一" and not _one_oclock(s, m, period, has_date):
                continue
        elif m.group("hh") is not None:
            h, minute = int(m.group("hh")), int(m.group("mm"))
            explicit = len(m.group("hh")) == 2 and m.group("hh")[0] == "0"  # 09:30
        else:
            h, minute = int(m.group("dh")), int(m.group("dmm"))
        if h is None or not 0 <= h <= 24 or not 0 <= minute <= 59:
            continue
        hour, next_day = _hour(h, period, explicit)
        return f"{hour:02d}:{minute:02d}", next_day, _blank(s, m.start(), m.end())
    if _MIDNIGHT.search(s):
        return "00:00", True, s
    return None, False, s


def _one_oclock(s: str, m: re.Match[str], period: int | None, has_date: bool) -> bool:
    """Whether 一点 here is one o'clock (明天一点, 一点半, 一点的场) rather than "a little"."""
    before = s[m.start() - 1] if m.start() > 0 else ""
    after = s[m.end()] if m.end() < len(s) else ""
    if before in _LITTLE_BEFORE or after in ("点", "儿"):
        return False
    if m.group("half") or m.group("ke") or m.group("m"):
        return True
    return period is not None or has_date or s.startswith(_ONE_OCLOCK_AFTER, m.end())


# --- rating --------------------------------------------------------------------------

_RN = r"(?:\d{1,2}|[零一二两三四五六七八九十]{1,2})"
_RATING = re.compile(
    rf"(?:打|给|评|得|打个|给个|评个|打了|给了|评了|只给|就给)\s*(?P<give>{_RN})\s*"
    r"(?P<unit>分|颗星|个星|星)(?!钟)"
    rf"|{_NB}(?P<star>{_RN})\s*(?:颗|个)?\s*星(?!期|级|座|球|人|手机|巴克|星)"
    rf"|{_NB}(?P<score>{_RN})\s*分(?![钟之店开享期数])"
    r"|(?P<full>满分)"
)
_NPS = re.compile(
    rf"推荐(?:指数|度|值|意愿|可能性|程度|分数?)\s*(?:是|为|:|打|给)?\s*(?P<a>{_RN})(?![\d{_CN}])"
    rf"|推荐[^\d{_CN}]{{0,8}}?(?P<b>{_RN})\s*分(?!钟|满意|喜欢|好|推荐|愿意|期待|感谢|精彩|不错)"
)


def _rating(s: str) -> tuple[int | None, str]:
    """1–5 stars or points (up to 10 points when given: 给10分); 0–10 when the
    message rates how likely one is to 推荐 (NPS)."""
    if "推荐" in s:
        for m in _NPS.finditer(s):
            n = cn_to_int(m.group("a") or m.group("b"))
            if n is not None and 0 <= n <= 10:
                return n, _blank(s, m.start(), m.end())
        nps_full = 10
    else:
        nps_full = 5
    for m in _RATING.finditer(s):
        if m.group("full"):
            return nps_full, _blank(s, m.start(), m.end())
        n = cn_to_int(m.group("give") or m.group("star") or m.group("score"))
        # Stars run 1–5; a score someone gives in points (给10分, 打个9分) may be out
        # of 10, and is passed on as said.
        top = 10 if m.group("give") and m.group("unit") == "分" else 5
        if n is not None and 1 <= n <= top:
            return n, _blank(s, m.start(), m.end())
    return None, s


# --- count ---------------------------------------------------------------------------

_CN_COUNT = r"(?:\d{1,3}|[一二两三四五六七八九十百]{1,3})"
# 一 that starts a word is no number: 一直, 一起, 一共, 一行, 一样, 一下.
_NOT_A_NUMBER = "[行起共家块样定直般次边下些会]"
_KINDS = (
    r"(?:成年人|大人|成人|小孩子|小孩儿|小孩|孩子|儿童|小朋友|学生|同学|老人|长辈|宝宝|娃"
    r"|员工|同事|家长|老师)"
)
_PEOPLE = re.compile(
    rf"{_NB}(?P<n>{_CN_COUNT})\s*(?:个|位|名|张)?\s*{_KINDS}"
    rf"|{_NB}(?P<a>{_CN_COUNT})\s*大\s*(?P<b>{_CN_COUNT})\s*小"
    # 大人俩 小孩一个
    rf"|{_KINDS}(?:票)?\s*(?P<after>{_CN_COUNT}|俩|仨)(?!{_NOT_A_NUMBER})"
    rf"(?:\s*(?:个|位|名|张))?(?![\d{_CN}点号岁])"
)
_COUNT = re.compile(
    rf"一家(?P<family>{_CN_COUNT})口"
    rf"|(?<![第每哪]){_NB}(?P<n>{_CN_COUNT})\s*"
    r"(?:张|位|名|个人|口人|人|个座位|个位置|个位子)"
    # Not 一张身份证, 一张会员卡, 一人都不管, 人民, 人员.
    r"(?!身份|证|卡|图|照|纸|桌|椅|床|脸|嘴|单子|发票|表|优惠|券|海报|银行|信用|会员"
    r"|民|类|员|物|间|工|造|体|群|行|都|也)"
    rf"|(?:我们|咱们|我们家|我家|一共|总共|共|一起|一行)\s*(?P<group>{_CN_COUNT})"
    # Not the 一 of 我们一起 / 我们一行二十人.
    rf"(?!{_NOT_A_NUMBER})\s*(?:个|位)?(?![\d点号月日天年岁张排座分小时])"
    r"|(?P<two>(?<!伎)俩)|(?P<three>仨)"
    r"|\b(?P<en>\d{1,3}|one|two|three|four|five|six|seven|eight|nine|ten)\s*"
    r"(?:tickets?|seats?|people|persons|pax|adults?)\b"
)


_EN_NUMBERS = {
    w: i
    for i, w in enumerate(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
    )
}


def _count(s: str) -> int | None:
    people = 0
    for m in _PEOPLE.finditer(s):
        if m.group("n"):
            people += cn_to_int(m.group("n")) or 0
        elif m.group("after"):
            word = m.group("after")
            people += {"俩": 2, "仨": 3}.get(word) or cn_to_int(word) or 0
        else:
            people += (cn_to_int(m.group("a")) or 0) + (cn_to_int(m.group("b")) or 0)
    if people:
        return people if people <= 999 else None
    for m in _COUNT.finditer(s):
        if m.group("two"):
            return 2
        if m.group("three"):
            return 3
        if m.group("en") and not m.group("en").isdigit():
            return _EN_NUMBERS[m.group("en")]
        n = cn_to_int(m.group("family") or m.group("n") or m.group("group") or m.group("en"))
        if n is not None and 1 <= n <= 999:
            return n
    return None


# --- the whole message ---------------------------------------------------------------

_SPACED_NUMBER_COUNT = re.compile(rf" (?:\d{{1,2}}|[{_CN}]{{1,3}})$")
_COUNT_UNIT = ("张", "位", "个人", "人")


def _title_end(norm: str, start: int, end: int) -> int:
    """Where the title's span ends for the other slots. In "沙丘 2张" the catalog
    reads 沙丘 2 (沙丘2, the same film), but the spaced number with a unit right after
    it is the count: it is left for the count grammar."""
    m = _SPACED_NUMBER_COUNT.search(norm, start, end)
    if m is not None and m.start() > start and norm.startswith(_COUNT_UNIT, end):
        return m.start()
    return end


def extract_slots(text: str, now: datetime, catalog: FilmCatalog) -> dict[str, Any]:
    """The slots found in ``text``, and only those: ``film`` (canonical title),
    ``date`` ("YYYY-MM-DD"), ``time`` ("HH:MM", 24 h), ``count`` (int), ``hall``
    (e.g. "3号厅", "IMAX厅"), ``seats`` (["row-col", ...]) and ``rating`` (int).

    ``now`` should be timezone-aware (a naive one is taken as Shanghai time); dates
    are computed in Asia/Shanghai. See the module docstring for the date rules.
    """
    norm = normalise(text)
    slots: dict[str, Any] = {}
    if not norm:
        return slots
    local = now.astimezone(SHANGHAI) if now.tzinfo else now.replace(tzinfo=SHANGHAI)
    today = local.date()
    s = norm

    film = catalog.match_normalised(norm)
    if film is None:
        film = fuzzy_film(norm, catalog)  # jieba's words: typos and other sequel spellings
    if film is not None:
        slots["film"] = film[0]
        s = _blank(s, film[1], _title_end(norm, film[1], film[2]))

    halls: list[str] = []
    s = _halls(s, halls)

    seats: list[tuple[int, str]] = []
    dates: list[tuple[int, date]] = []
    s = _seats(s, seats)
    s = _dash_pairs(s, today, seats, dates)

    # Time-of-day words are read before the dates are blanked: 今晚 is both.
    periods = [(m.end(), _PERIOD_WORDS[m.group()]) for m in _PERIOD.finditer(s)]
    s = _dates(s, today, dates)
    when = min(dates)[1] if dates else None

    clock, next_day, s = _time(s, periods, when is not None)
    if next_day:
        when = (when or today) + timedelta(days=1)

    rating, s = _rating(s)
    count = _count(s)

    if when is not None:
        slots["date"] = when.isoformat()
    if clock is not None:
        slots["time"] = clock
    if count is not None:
        slots["count"] = count
    if halls:
        slots["hall"] = halls[0]
    if seats:
        ordered: list[str] = []
        for _, seat in sorted(seats, key=lambda ps: ps[0]):
            if seat not in ordered:
                ordered.append(seat)
        slots["seats"] = ordered
    if rating is not None:
        slots["rating"] = rating
    return slots
