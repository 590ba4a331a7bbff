"""「这周的NPS多少」「今天有多少投诉」「昨天卖了多少票」「3号厅上座率」「日报」: figures in WeCom chat.

A question is recognised by words, not by the intent model (which reads 「本周满意度」 as a
work order being done): a period (今天, 昨天, 本周, 上周, 近7天, 本月, …), one or more
topics (NPS / 满意度 / 好评率; 投诉; 卖了多少票 / 售票; 票房 / 收入; 上座率, of a hall or
overall; 日报), and nothing else but filler (的, 多少, 统计, 吗, …). So 「顾客投诉3号厅空调太冷」
stays a report, and 「本周满意度」 is answered, never taken as an order's resolution.

Every figure comes from ``domain.reports`` — the console's and the digest's own — with a
link into the console. Managers may ask anything; staff and engineers see what their
console shows (the service section: complaints), and asking for sales, revenue,
satisfaction or the digest they are politely told it is the managers'. Audiences never reach this router (WeCom, staff roles only).
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from bot.chat.channels import Channel
from bot.chat.replies import Button, Reply
from bot.chat.router import Actor, Router, Update
from bot.infra.clock import Clock
from bot.infra.settings import Settings
from domain import reports
from domain.cinemas import Cinema
from domain.pricing import format_fen
from domain.reports import Period
from handlers.console.auth import enter_link
from handlers.digest_card import console_url, digest_lines, nps_text, pct

router = Router(__name__)

# --- reading the question ---------------------------------------------------------------------

SPANS: tuple[tuple[str, str], ...] = (
    ("today", r"今天|今日|当天"),
    ("yesterday", r"昨天|昨日"),
    ("before_yesterday", r"前天"),
    ("this_week", r"本周|这周|这一周|这个?星期|本星期|这个?礼拜|本礼拜"),
    ("last_week", r"上周|上一周|上个?星期|上个?礼拜"),
    ("30d", r"(?:近|最近|过去)(?:30|三十)天|(?:近|最近|过去)一个月"),
    ("7d", r"(?:近|最近|过去)(?:7|七)天|(?:近|最近|过去)一周"),
    ("this_month", r"本月|这个?月"),
    ("last_month", r"上个?月"),
)
SPAN_LABELS = {
    "today": "今天", "yesterday": "昨天", "before_yesterday": "前天", "this_week": "本周",
    "last_week": "上周", "7d": "近7天", "30d": "近30天", "this_month": "本月", "last_month": "上月",
}
# Longest words first within a topic; topics are tried in this order.
TOPICS: tuple[tuple[str, str], ...] = (
    ("digest", r"经营日报|每日简报|昨日简报|日报|简报"),
    ("revenue", r"卖了多少钱|卖了几多钱|赚了多少|票房|收入|营收|营业额|销售额"),
    ("tickets", r"卖了多少张票|卖了几张票|卖了多少张|卖了多少票|卖了几张|多少张票|售票数?|出票数?|票数|观影人次|人次|卖了多少"),
    ("occupancy", r"上座率|满座率|入座率|上座"),
    ("satisfaction", r"NPS|净推荐值|满意度|好评率|顾客评价|评价|评分|口碑"),
    ("complaints", r"投诉"),
)
FILLER = re.compile(
    r"帮我|请问|麻烦|查一下|查查|查询|查看|看一下|看看|看下|告诉我|一下|"
    r"我们|咱们|影城|全部|一共|总共|整体|全部影厅|各个?厅|每个厅|目前|现在|为止|截至|到|"
    r"多少|几个|几张|几|是|有|了|吗|呢|啊|呀|嘛|的|怎么样|如何|咋样|情况|统计|数据|汇总|分布|"
    r"分类|各类|类别|数|量|总|共|和|与|跟|及|还有|以及|"
    r"[?？。!！,，、:：\s~～]"
)
# Words that alone do not ask for a figure; with a period, a hall or STAT they do.
WEAK = re.compile(r"(?:我要|我想)?(?:投诉|评价|评分|上座)[。!！]?")
STAT = re.compile(r"多少|几|统计|数量|情况|汇总|分布|分类|怎么样|如何|咋样")
CN_DIGITS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}
HALL = re.compile(r"(?P<n>[0-9]{1,2}|[一二三四五六七八九十]{1,3})号?厅|(?P<name>IMAX|imax|杜比|Dolby|DOLBY|VIP|vip)厅")
# Sections of the console a role may open (handlers.console: staff see service and projectors).
SECTIONS_FOR_STAFF = frozenset({"service", "projectors"})
LINK_TTL_S = 600


@dataclass(frozen=True, slots=True)
class Question:
    topics: tuple[str, ...]
    span: str | None  # a SPANS key; None: not said
    hall: str | None  # 3号厅, IMAX厅


def _hall_name(m: re.Match[str]) -> str:
    if m.group("name"):
        name = m.group("name")
        return {"imax": "IMAX", "杜比": "Dolby", "DOLBY": "Dolby", "vip": "VIP"}.get(name, name) + "厅"
    n = m.group("n")
    if n.isdigit():
        return f"{int(n)}号厅"
    if len(n) == 1:
        return f"{CN_DIGITS[n]}号厅"
    tens, _, ones = n.partition("十")  # 十二, 二十, 二十一
    return f"{(CN_DIGITS.get(tens, 1) if tens else 1) * 10 + (CN_DIGITS.get(ones, 0) if ones else 0)}号厅"


def parse(text: str) -> Question | None:
    """The question in ``text``, or None when anything in it is not part of one."""
    rest = unicodedata.normalize("NFKC", text or "").strip()
    if not rest or len(rest) > 40:
        return None
    span = None
    for key, pattern in SPANS:
        found = re.search(pattern, rest)
        if found:
            span = span or key
            rest = rest[: found.start()] + " " + rest[found.end() :]
    hall = None
    if m := HALL.search(rest):
        hall = _hall_name(m)
        rest = rest[: m.start()] + " " + rest[m.end() :]
    topics: list[str] = []
    for topic, pattern in TOPICS:
        compiled = re.compile(pattern, re.I)
        if compiled.search(rest):
            topics.append(topic)
            rest = compiled.sub(" ", rest)
    if not topics or FILLER.sub("", rest):
        return None
    if span is None and hall is None and not STAT.search(text) and WEAK.fullmatch(text.strip()):
        return None  # a bare 「投诉」 asks to file one (handlers.tasks), not for a count
    if hall and topics != ["occupancy"] and "occupancy" not in topics:
        return None  # 「3号厅投诉」 reads as a report, not a question we can split by hall
    return Question(tuple(dict.fromkeys(topics)), span, hall)


def _asked(update: Update) -> dict[str, Any] | None:
    question = parse(update.inbound.text or "")
    return {"question": question} if question else None


# --- periods ------------------------------------------------------------------------------------


def days_of(span: str, today: date) -> tuple[date, date]:
    """Business days ``start``..``end`` of a span, today being ``today``."""
    if span == "today":
        return today, today
    if span == "yesterday":
        return today - timedelta(days=1), today - timedelta(days=1)
    if span == "before_yesterday":
        return today - timedelta(days=2), today - timedelta(days=2)
    if span == "this_week":
        return today - timedelta(days=today.weekday()), today
    if span == "last_week":
        monday = today - timedelta(days=today.weekday() + 7)
        return monday, monday + timedelta(days=6)
    if span == "7d":
        return today - timedelta(days=6), today
    if span == "30d":
        return today - timedelta(days=29), today
    if span == "this_month":
        return today.replace(day=1), today
    if span == "last_month":
        end = today.replace(day=1) - timedelta(days=1)
        return end.replace(day=1), end
    raise ValueError(span)


def span_text(span: str, start: date, end: date) -> str:
    label = SPAN_LABELS[span]
    if start == end:
        return f"{label}（{start.month}月{start.day}日）"
    return f"{label}（{start.month}月{start.day}日–{end.month}月{end.day}日）"


# --- answering ------------------------------------------------------------------------------------


class Answers:
    """One question's answer: the figures of ``reports`` for the asker's cinema."""

    def __init__(self, actor: Actor, settings: Settings, clock: Clock) -> None:
        self.actor, self.settings, self.clock = actor, settings, clock
        self.now = clock.now()
        self.today = reports.today(self.now)

    @property
    def is_manager(self) -> bool:
        return self.actor.role == "manager"

    def period(self, span: str) -> tuple[Period, str]:
        start, end = days_of(span, self.today)
        return Period((self.actor.cinema_id,), start, end), span_text(span, start, end)  # type: ignore[arg-type]

    def link(self, section: str, p: Period) -> str:
        """A one-time login link (H3's ``enter_link``) that opens the section for this period."""
        if not self.is_manager and section not in SECTIONS_FOR_STAFF:
            return ""
        url = console_url("", section, p.start, p.end)
        return enter_link(self.settings, self.clock.timestamp(), self.actor.user_id, LINK_TTL_S, url)

    async def satisfaction(self, span: str) -> tuple[str, str]:
        p, when = self.period(span)
        e = await reports.experience(p)
        if not e.responses:
            return f"⭐ {when}还没有顾客评价。", self.link("experience", p)
        lines = [f"⭐ {when}顾客满意度（{e.responses}份评价）"]
        if e.nps.n:
            ci = f"（95%区间 {nps_text(e.nps.low)}~{nps_text(e.nps.high)}）" if e.nps.low is not None else ""
            lines.append(
                f"NPS {nps_text(e.nps.score)}{ci}：推荐 {e.nps.promoters} / 中立 {e.nps.passives}"
                f" / 贬损 {e.nps.detractors}"
            )
        if e.csat.n:
            avg = f"，平均 {e.stars_avg:.1f} 星" if e.stars_avg is not None else ""
            lines.append(f"满意度（好评率）{pct(e.csat.share)}：{e.csat.satisfied}/{e.csat.n} 人打4–5星{avg}")
        return "\n".join(lines), self.link("experience", p)

    async def complaints(self, span: str) -> tuple[str, str]:
        p, when = self.period(span)
        e = await reports.experience(p)
        section = "experience" if self.is_manager else "service"
        if not e.complaints:
            return f"🧾 {when}没有投诉 👍", self.link(section, p)
        cats = "、".join(f"{c.label} {c.count}（{pct(c.share)}）" for c in e.complaint_categories)
        return f"🧾 {when}投诉 {e.complaints} 张：{cats}", self.link(section, p)

    async def sales_figures(self, span: str, topics: tuple[str, ...]) -> tuple[str, str]:
        p, when = self.period(span)
        s = await reports.sales(p, self.now)
        lines = []
        if "tickets" in topics or "revenue" in topics:
            line = f"🎟 {when}售出 {s.tickets} 张票（{s.shows} 场）"
            if "revenue" in topics or ("tickets" in topics and self.is_manager):
                line += f"，票房 {format_fen(s.revenue_fen, cents=True)}"
            if s.refunds:
                line += f"；退票 {s.refunds} 张"
            lines.append(line)
        if "occupancy" in topics:
            lines.append(f"💺 {when}上座率 {pct(s.occupancy)}（{s.tickets}/{s.capacity} 座，{s.shows} 场）")
        return "\n".join(lines), self.link("sales", p)

    async def hall_occupancy(self, span: str, hall: str) -> tuple[str, str]:
        p, when = self.period(span)
        s = await reports.sales(p, self.now)
        group = next((g for g in s.by_hall if g.label == hall), None)
        if group is None or not group.shows:
            return f"💺 {hall}{when}没有场次。", self.link("sales", p)
        return (
            f"💺 {hall}{when}上座率 {pct(group.occupancy)}（{group.tickets}/{group.capacity} 座，"
            f"{group.shows} 场）",
            self.link("sales", p),
        )

    async def digest(self, span: str | None) -> tuple[str, str]:
        day = self.today - timedelta(days=2 if span == "before_yesterday" else 1)
        if span == "today":
            day = self.today
        d = await reports.digest(self.actor.cinema_id, day, self.now)  # type: ignore[arg-type]
        cinema = await Cinema.get_or_none(id=self.actor.cinema_id)
        return "\n".join(digest_lines(d, cinema.name if cinema else "")), self.link(
            "sales", Period((self.actor.cinema_id,), day, day)  # type: ignore[arg-type]
        )


# What staff and engineers may ask: what their console shows (service), never sales or revenue.
STAFF_TOPICS = frozenset({"complaints"})
REFUSED = (
    "抱歉，票房、售票、上座率、满意度和日报只有经理可以查看。"
    "你可以问我「今天有多少投诉」，或发送「我的任务」查看工单。"
)


@router.on(channel=Channel.WECOM, role="employee", kind=("text", "voice"), when=_asked)
async def figures_asked(actor: Actor, question: Question, settings: Settings, clock: Clock) -> Reply:
    if actor.cinema_id is None:
        return Reply.say("你的账号没有关联影城，查不到数据。")
    answers = Answers(actor, settings, clock)
    topics = question.topics
    if not answers.is_manager and set(topics) - STAFF_TOPICS:
        return Reply.say(REFUSED)
    if "digest" in topics:
        text, link = await answers.digest(question.span)
        return _with_link(text, link, "打开看板")
    span = question.span or "today"
    parts: list[tuple[str, str]] = []
    if "satisfaction" in topics:
        parts.append(await answers.satisfaction(span))
    if "complaints" in topics:
        parts.append(await answers.complaints(span))
    if question.hall and "occupancy" in topics:
        parts.append(await answers.hall_occupancy(span, question.hall))
    sales_topics = tuple(t for t in topics if t in ("tickets", "revenue") or (t == "occupancy" and not question.hall))
    if sales_topics:
        parts.append(await answers.sales_figures(span, sales_topics))
    text = "\n".join(t for t, _ in parts)
    link = next((lk for _, lk in parts if lk), "")
    return _with_link(text, link, "在看板中查看")


def _with_link(text: str, link: str, label: str) -> Reply:
    if link:
        text += f'\n<a href="{html.escape(link)}">👉 {label}</a>'
    return Reply.say(text)
