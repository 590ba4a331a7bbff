"""The managers' morning digest: yesterday's figures of their cinema as a WeCom card.

The figures are ``domain.reports.digest``'s — the same the console shows — and this module
only words them: a ``text_notice`` template card (a headline, up to six rows, a few lines
of exceptions, a tap into the console) and the same words as plain text for 「日报」 in chat.

``DigestCards.send`` records one card per (manager, business day) in the outbox, under the
key ``digest:<day>:<userid>``: a second run for the same day records nothing, whoever
runs it (the 09:00 job in any process, ``cinebot digest send``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from urllib.parse import urlencode

from bot.infra.clock import Clock
from domain import reports
from domain.cinemas import Cinema
from domain.outbox import OutboundMessage, enqueue
from domain.people import Staff
from domain.pricing import format_fen
from domain.reports import Change, Digest
from domain.workorders import managers

log = logging.getLogger(__name__)

WEEKDAYS = "一二三四五六日"
CARD_ROWS = 6  # WeCom shows at most six rows on a template card
SUB_TITLE_MAX = 112  # characters WeCom keeps of a card's sub title
CATEGORIES_SHOWN = 4


def day_text(day: date) -> str:
    return f"{day.month}月{day.day}日（周{WEEKDAYS[day.weekday()]}）"


def pct(share: float | None) -> str:
    """0.128 → 「12.8%」, as the console writes a share (``handlers.console.widgets.percent``)."""
    return "—" if share is None else f"{share * 100:.1f}%"


def nps_text(score: float | None) -> str:
    return "—" if score is None else f"{score:+.0f}"


def change_text(change: Change, money: bool = False) -> str:
    """「+12%」 against the same weekday last week; 「上周0」 when there is nothing to divide."""
    if change.ratio is None:
        if not change.previous and not change.value:
            return "持平"
        prev = format_fen(int(change.previous)) if money else f"{change.previous:.0f}"
        return f"上周{prev}"
    return f"{change.ratio * 100:+.0f}%"


def tickets_text(d: Digest) -> str:
    return f"{d.tickets.value:.0f}张（同比上周{change_text(d.tickets)}）"


def revenue_text(d: Digest) -> str:
    return f"{format_fen(int(d.revenue_fen.value))}（同比上周{change_text(d.revenue_fen, money=True)}）"


def occupancy_text(d: Digest) -> str:
    text = pct(d.occupancy)
    if d.previous_occupancy is not None:
        text += f"（上周{pct(d.previous_occupancy)}）"
    return text


def satisfaction_text(d: Digest) -> str:
    if not d.responses:
        return "暂无评价"
    return f"NPS {nps_text(d.nps.score)} · 满意 {pct(d.csat.share)}（{d.responses}份）"


def complaints_text(d: Digest) -> str:
    if not d.complaints:
        return "0"
    cats = "、".join(f"{c.label}{c.count}" for c in d.complaint_categories[:CATEGORIES_SHOWN])
    return f"{d.complaints}张：{cats}" if cats else f"{d.complaints}张"


def exceptions_lines(d: Digest) -> list[str]:
    """The lines a manager should act on: SLA breaches and unwell projectors."""
    lines = []
    if d.breach_count:
        held = sorted({b.held_by for b in d.breaches if b.held_by})
        who = f"（{'、'.join(held[:3])}）" if held else ""
        lines.append(f"⏰ 超时 {d.breach_count} 次{who}")
    for p in d.projector_exceptions:
        why = "；".join(p.reasons[:1]) or (p.critical_alerts[0].message if p.critical_alerts else "")
        score = "" if p.score is None else f" {p.score}分"
        lines.append(f"📽 {p.hall} {p.grade}{score}{('：' + why) if why else ''}")
    return lines


def digest_lines(d: Digest, cinema_name: str) -> list[str]:
    """The digest as text lines (chat's 「日报」, and the card's words)."""
    lines = [
        f"📋 {cinema_name} {day_text(d.day)} 日报",
        f"售票 {tickets_text(d)}",
        f"票房 {revenue_text(d)}",
        f"上座率 {occupancy_text(d)}，{d.shows}场",
        f"满意度 {satisfaction_text(d)}",
        f"投诉 {complaints_text(d)}",
        f"SLA超时 {d.breach_count}次 · 未结工单 {d.open_count}张",
    ]
    if d.refunds:
        lines.append(f"退票 {d.refunds}张（{format_fen(d.refunded_fen)}）")
    projectors = [line for line in exceptions_lines(d) if line.startswith("📽")]
    lines.extend(projectors or ["📽 放映机均正常"])
    return lines


def console_url(public_url: str, section: str, start: date, end: date) -> str:
    """A console page for business days ``start``..``end`` (the shell logs the reader in)."""
    query = urlencode({"range": "custom", "start": start.isoformat(), "end": end.isoformat()})
    return f"{public_url.rstrip('/')}/console/{section}?{query}"


def digest_card(d: Digest, cinema_name: str, url: str) -> dict[str, Any]:
    """A ``text_notice`` template card: tickets up front, six rows, the exceptions below."""
    rows = [
        ("票房", revenue_text(d)),
        ("上座率", occupancy_text(d)),
        ("满意度", satisfaction_text(d)),
        ("投诉", complaints_text(d)),
        ("SLA超时", f"{d.breach_count}次"),
        ("放映机", f"{len(d.projector_exceptions)}台异常" if d.projector_exceptions else "正常"),
    ]
    exceptions = exceptions_lines(d)
    sub = "\n".join(exceptions) if exceptions else "当日无超时工单，放映机均正常。"
    return {
        "card_type": "text_notice",
        "source": {"desc": f"影城日报 · {cinema_name}"},
        "main_title": {"title": f"{day_text(d.day)} 经营日报", "desc": cinema_name},
        "emphasis_content": {"title": f"{d.tickets.value:.0f}张", "desc": f"售票 同比上周{change_text(d.tickets)}"},
        "sub_title_text": sub[:SUB_TITLE_MAX],
        "horizontal_content_list": [{"keyname": k, "value": v} for k, v in rows[:CARD_ROWS]],
        "jump_list": [{"type": 1, "title": "打开看板", "url": url}],
        "card_action": {"type": 1, "url": url},
    }


@dataclass
class DigestReport:
    """What one run did: who got a card now, who had had it already."""

    day: date
    sent: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)


class DigestCards:
    """Builds and records the digest cards (outbox rows, sent by the outbox worker)."""

    def __init__(self, public_url: str, wecom_agent_id: int, clock: Clock) -> None:
        self.public_url = public_url.rstrip("/")
        self.agent_id = wecom_agent_id
        self.clock = clock

    def yesterday(self, now: datetime | None = None) -> date:
        """The business day before the one ``now`` (default: the clock's) belongs to."""
        return date.fromordinal(reports.today(now or self.clock.now()).toordinal() - 1)

    async def send_due(self, now: datetime) -> int:
        """The 09:00 job's run: yesterday's card to every manager who has not had it."""
        return len((await self.send(self.yesterday(now))).sent)

    @staticmethod
    def key(day: date, userid: str) -> str:
        """One card per (manager, business day): the outbox records a key once."""
        return f"digest:{day.isoformat()}:{userid}"

    async def send(self, day: date, people: Sequence[Staff] | None = None) -> DigestReport:
        """``day``'s card to ``people`` (default: every active manager of every cinema)."""
        if people is None:
            people = [m for c in await Cinema.all().order_by("id") for m in await managers(c.id)]
        report = DigestReport(day)
        by_cinema: dict[int, list[Staff]] = {}
        for person in people:
            by_cinema.setdefault(person.cinema_id, []).append(person)  # type: ignore[attr-defined]
        now = self.clock.now()
        keys = {p.userid: self.key(day, p.userid) for p in people}
        had = set(
            await OutboundMessage.filter(idempotency_key__in=list(keys.values()))
            .values_list("idempotency_key", flat=True)
        )
        for cinema_id, staff in by_cinema.items():
            report.already += [p.userid for p in staff if keys[p.userid] in had]
            staff = [p for p in staff if keys[p.userid] not in had]
            if not staff:
                continue  # the figures are not read again for people who have them
            cinema = await Cinema.get(id=cinema_id)
            figures = await reports.digest(cinema_id, day, now)
            card = digest_card(figures, cinema.name, console_url(self.public_url, "sales", day, day))
            for person in staff:
                _, created = await enqueue(
                    channel="wecom", recipient=person.userid,
                    payload={"msgtype": "template_card", "agentid": self.agent_id, "template_card": card},
                    idempotency_key=keys[person.userid], now=now,
                )
                (report.sent if created else report.already).append(person.userid)
        if report.sent:
            log.info("digest cards recorded", extra={"day": day.isoformat(), "people": len(report.sent)})
        return report
