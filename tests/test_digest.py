"""The managers' morning digest: the stand-in records one card per manager with yesterday's
figures — ``domain.reports.digest``'s, which the console shows too — the 09:00 job sends
it once across processes and ticks, and ``cinebot digest send`` sends it on demand."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from bot.app import DISPATCHER
from bot.infra.settings import Settings
from domain import reports
from domain.cinemas import Cinema
from domain.outbox import OutboundMessage
from domain.people import Staff, StaffRole
from domain.workorders import WorkOrder, check_sla
from handlers.console.auth import enter_link
from handlers.digest_card import DigestCards, complaints_text, satisfaction_text
from jobs import digest as digest_job
from jobs.context import JobContext
from jobs.interval import run_once_per_tick
from jobs.locks import LeaderLocks
from jobs.scheduler import build_scheduler
from tests.support import Desk, Standin, cinebot
from tests.test_manager_chat import YESTERDAY, audience_says, rate, seed_sales

NINE_AM = datetime(2026, 11, 21, 1, 0, tzinfo=UTC)  # Saturday 09:00 in Shanghai
TICK = digest_job.INTERVAL_S


@pytest.fixture
async def client(make_client: Any, standin: Standin) -> TestClient:
    return await make_client(standin=standin)


def cards_for(client: TestClient, clock: Any) -> DigestCards:
    settings = client.app[DISPATCHER].deps["settings"]
    return DigestCards(settings.public_url, settings.wecom_agent_id, clock)


def rows(card: dict[str, Any]) -> dict[str, str]:
    return {r["keyname"]: r["value"] for r in card["horizontal_content_list"]}


def figure(html: str, key: str) -> str:
    """The value of the console tile ``data-figure=key``."""
    found = re.search(rf'data-figure="{key}".*?<div class="cb-value">([^<]*)</div>', html, re.S)
    assert found, key
    return found.group(1)


async def digest_cards(desk: Desk, userid: str) -> list[dict[str, Any]]:
    return [c for c in await desk.cards(userid) if c["card_type"] == "text_notice"]


async def test_the_card_shows_yesterdays_figures_as_the_console_does(
    client: TestClient, desk: Desk, clock: Any
) -> None:
    await seed_sales()
    report = await cards_for(client, clock).send(YESTERDAY)
    assert report.sent == ["manager01"]
    await desk.deliver()
    [card] = await digest_cards(desk, "manager01")
    assert await desk.cards("staff01") == []  # managers only

    cinema = await Cinema.get(code="demo")
    d = await reports.digest(cinema.id, YESTERDAY, clock.now())
    assert (d.tickets.value, d.tickets.previous) == (40, 20)
    assert (d.revenue_fen.value, d.revenue_fen.previous) == (185000, 90000)
    assert card["main_title"]["title"] == "11月20日（周五） 经营日报"
    assert card["emphasis_content"]["title"] == "40张"
    assert "+100%" in card["emphasis_content"]["desc"]  # 40 tickets against 20 a week earlier
    shown = rows(card)
    assert shown["票房"] == "¥1850（同比上周+106%）"
    assert shown["上座率"].startswith(f"{d.occupancy * 100:.1f}%")  # type: ignore[operator]
    assert shown["投诉"] == "0" and shown["SLA超时"] == f"{d.breach_count}次"
    url = card["card_action"]["url"]
    assert "/console/sales?range=custom&start=2026-11-20&end=2026-11-20" in url

    # The console's sales page for that day shows the same revenue and tickets.
    settings = client.app[DISPATCHER].deps["settings"]
    path = urlsplit(url)
    link = urlsplit(enter_link(settings, clock.timestamp(), "manager01",
                               next_path=f"{path.path}?{path.query}"))
    page = await client.get(f"{link.path}?{link.query}")
    assert page.status == 200
    html = await page.text()
    assert figure(html, "tickets") == "40" and figure(html, "revenue") == "¥1850"
    assert figure(html, "occupancy") == shown["上座率"].split("（")[0]


async def test_the_card_tells_of_yesterdays_ratings_complaints_and_sla_breaches(
    client: TestClient, desk: Desk, clock: Any, callbacks: Any
) -> None:
    clock.set(NINE_AM - timedelta(hours=13))  # Friday 20:00: yesterday evening
    await desk.on_duty(("staff01", "floor"))
    await audience_says(callbacks, "3号厅空调太冷了")
    await rate(callbacks, clock, 1, 5, 10)
    await rate(callbacks, clock, 2, 2, 3)  # a low rating opens a complaint for the manager
    clock.advance(hours=2)  # nobody acknowledged: both orders breach their SLA
    for order in await WorkOrder.all():
        await check_sla(order, clock.now())
    await desk.deliver()  # the evening's cards went out that evening
    clock.set(NINE_AM)

    await cards_for(client, clock).send(YESTERDAY)
    await desk.deliver()
    [card] = await digest_cards(desk, "manager01")
    cinema = await Cinema.get(code="demo")
    d = await reports.digest(cinema.id, YESTERDAY, clock.now())
    assert d.responses == 2 and d.nps.score == 0 and d.csat.share == 0.5
    assert d.complaints == 2 and d.breach_count >= 2
    shown = rows(card)
    assert shown["满意度"] == satisfaction_text(d) == "NPS +0 · 满意 50.0%（2份）"
    assert shown["投诉"] == complaints_text(d) and shown["投诉"].startswith("2张：")
    assert shown["SLA超时"] == f"{d.breach_count}次"
    assert f"⏰ 超时 {d.breach_count} 次" in card["sub_title_text"]


async def test_the_nine_oclock_job_sends_once_across_two_processes_and_ticks(
    client: TestClient, desk: Desk, clock: Any, redis_url: str
) -> None:
    await seed_sales()
    cinema = await Cinema.get(code="demo")
    await Staff.create(cinema=cinema, userid="manager02", name="周经理", role=StaffRole.MANAGER)
    await Staff.create(cinema=cinema, userid="manager09", name="前经理", role=StaffRole.MANAGER, active=False)
    send = cards_for(client, clock).send_due
    processes = [aioredis.Redis.from_url(redis_url) for _ in range(2)]
    try:
        ctxs = [JobContext(clock=clock, locks=LeaderLocks(r), digest=send) for r in processes]
        assert build_scheduler(ctxs[0]).get_job(digest_job.JOB_ID) is not None

        clock.set(NINE_AM - timedelta(minutes=5))  # 08:55
        early = NINE_AM.timestamp() - TICK
        assert await run_once_per_tick(digest_job.send_digest, ctxs[0], digest_job.JOB_ID, TICK, at=early) == 0
        assert await OutboundMessage.filter(idempotency_key__startswith="digest:").count() == 0

        clock.set(NINE_AM)
        both = await asyncio.gather(*(
            run_once_per_tick(digest_job.send_digest, ctx, digest_job.JOB_ID, TICK, at=NINE_AM.timestamp())
            for ctx in ctxs
        ))
        assert sorted(x or 0 for x in both) == [0, 2]  # one process ran the tick
        clock.advance(seconds=TICK)
        for ctx in ctxs:  # the next tick, in either process: nothing more
            later = clock.timestamp()
            assert await run_once_per_tick(digest_job.send_digest, ctx, digest_job.JOB_ID, TICK, at=later) in (0, None)
    finally:
        for r in processes:
            await r.aclose()
    await desk.deliver()
    for userid in ("manager01", "manager02"):
        [card] = await digest_cards(desk, userid)
        assert card["main_title"]["title"].startswith("11月20日")
    assert await desk.cards("manager09") == []


async def test_cinebot_digest_send_now_to_one_manager_or_refuses_clearly(
    client: TestClient, desk: Desk, settings: Settings, tmp_path: Path, clock: Any
) -> None:
    await seed_sales()
    env = {"database_url": settings.database_url, "redis_url": settings.redis_url, "cwd": tmp_path}

    code, out, err = await cinebot("digest", "send", "--to", "nobody01", **env)
    assert code == 2 and "没有找到在职员工 nobody01" in err
    code, out, err = await cinebot("digest", "send", "--to", "staff01", **env)
    assert code == 2 and "不是经理" in err
    for bad in ("2026-11-２0", "20261120", "2026-02-30"):
        code, out, err = await cinebot("digest", "send", "--date", bad, **env)
        assert code == 2 and "YYYY-MM-DD" in err, bad
    assert await OutboundMessage.filter(idempotency_key__startswith="digest:").count() == 0

    code, out, err = await cinebot("digest", "send", "--date", "2026-11-20", "--to", "manager01", **env)
    assert code == 0, err
    assert "已发送 11月20日 日报给 manager01" in out
    code, out, err = await cinebot("digest", "send", "--date", "2026-11-20", **env)
    assert code == 0 and "manager01 已收到过11月20日的日报" in out
    clock.set(datetime.now(UTC) + timedelta(seconds=1))  # the command recorded it at the real time
    await desk.deliver()
    [card] = await digest_cards(desk, "manager01")
    assert card["emphasis_content"]["title"] == "40张"
