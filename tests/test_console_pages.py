"""The console's four sections as a manager, a staff member and an engineer read them: the
figures on each page equal what the database holds (worked out here from the raw rows,
not from the reports), staff never see revenue, and every figure's link and every export
answers.

Data: the demo cinema (halls, films, today's shows, staff) plus tickets, ratings and work
orders written here, with their rollups refreshed."""

from __future__ import annotations

import csv
import html
import io
import json
import re
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import openpyxl
import pytest
from aiohttp.test_utils import TestClient

from bot.infra.logs import mask_phone
from domain import reports, rollups
from domain.catalog import Showtime
from domain.cinemas import Cinema
from domain.days import SHANGHAI, business_day, day_bounds
from domain.feedback import FeedbackResponse
from domain.orders import Order, OrderState, Ticket, TicketState
from domain.pricing import format_fen
from domain.touchpoints import Touchpoint
from domain.workorders import Kind, Who, open_order
from handlers.console import charts, widgets
from handlers.console.base import Column, Table
from tests.support import FakeClock, Standin
from tests.test_console_auth import LoginAs, login_as  # noqa: F401  (fixture)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

COMMENT = "空调太冷了 <script>alert(1)</script> 电话13812345678"


@pytest.fixture
async def console(make_client: Callable[..., Any], standin: Standin) -> TestClient:
    """The real app with the real sections (demo data, the stand-in as WeCom)."""
    return await make_client(standin=standin)


async def seed(now: datetime) -> dict[str, Any]:
    """Tickets on two of today's shows, five ratings, two work orders; rollups rebuilt."""
    cinema = await Cinema.get(code="demo")
    assert cinema is not None
    today = business_day(now)
    shows = [s for s in await Showtime.filter(cinema_id=cinema.id).order_by("starts_at")
             if business_day(s.starts_at) == today and s.cancelled_at is None][:2]
    assert len(shows) == 2, "the demo schedules shows today"
    sold = [(shows[0], ["1-1", "1-2", "1-3"], 4500, TicketState.ISSUED),
            (shows[0], ["2-1"], 3800, TicketState.CHECKED_IN),
            (shows[1], ["3-3", "3-4"], 5200, TicketState.ISSUED),
            (shows[1], ["4-4"], 5200, TicketState.REFUNDED)]
    for show, seats, price, state in sold:
        order = await Order.create(
            no=secrets.token_hex(8), cinema_id=cinema.id, showtime=show, openid="o-test",
            state=OrderState.REFUNDED if state is TicketState.REFUNDED else OrderState.ISSUED,
            hold_id=secrets.token_hex(4), seats=seats, quote={}, amount_fen=price * len(seats),
            paid_fen=price * len(seats), expires_at=now, created_at=now, paid_at=now,
        )
        for seat in seats:
            await Ticket.create(order=order, showtime=show, seat=seat, price_fen=price,
                                secret=secrets.token_hex(10), state=state,
                                active=None if state is TicketState.REFUNDED else True)
    touchpoint = await Touchpoint.filter(cinema_id=cinema.id).first()
    assert touchpoint is not None
    ratings = [(5, 10, ""), (4, 9, "很好"), (2, 3, COMMENT), (5, 8, ""), (1, 0, "太吵")]
    for i, (stars, nps, comment) in enumerate(ratings):
        await FeedbackResponse.create(
            cinema_id=cinema.id, touchpoint=touchpoint, visitor=f"o-visitor-{i}", visit_day=today,
            channel="chat", stars=stars, nps=nps, comment=comment,
            category="temperature" if comment else None, sentiment="neg" if stars < 3 and comment else None,
            created_at=now - timedelta(minutes=10 * (5 - i)), updated_at=now - timedelta(minutes=10 * (5 - i)),
        )
    who = Who(user_id="o-visitor-0", role="audience")
    for category in ("seat", "temperature"):
        await open_order(cinema_id=cinema.id, kind=Kind.FAULT, category=category,
                         summary=f"{category} 坏了", reporter=who, now=now, hall="1号厅")
    # What the write paths do after a change of these rows (tickets and ratings are written
    # raw here; open_order keeps its own rollup).
    await rollups.refresh_shows([s.id for s in shows])
    for response in await FeedbackResponse.filter(cinema_id=cinema.id):
        await rollups.refresh_response(response.id)
    return {"cinema": cinema, "today": today, "sold": sold, "ratings": ratings}


def figure(page: str, key: str) -> str:
    """The value text of the tile ``data-figure=key``."""
    match = re.search(rf'data-figure="{re.escape(key)}"[^>]*>.*?<div class="cb-value">(.*?)</div>', page, re.S)
    assert match, f"no figure {key}"
    return html.unescape(match.group(1))


def figure_link(page: str, key: str) -> str:
    match = re.search(rf'<a class="cb-tile" href="([^"]+)" data-figure="{re.escape(key)}"', page)
    assert match, f"figure {key} has no link"
    return html.unescape(match.group(1))


def export_links(page: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'<a class="cb-btn" href="([^"]+)" data-export=', page)]


async def test_a_manager_reads_sales_that_match_the_tickets_sold(
    console: TestClient, login_as: LoginAs, clock: FakeClock  # noqa: F811
) -> None:
    data = await seed(clock.now())
    standing = [(s, seats, price) for s, seats, price, state in data["sold"]
                if state in (TicketState.ISSUED, TicketState.CHECKED_IN)]
    tickets = sum(len(seats) for _, seats, _ in standing)
    revenue = sum(len(seats) * price for _, seats, price in standing)
    await login_as(console, "manager01")
    resp = await console.get("/console/sales?range=today")
    assert resp.status == 200, await resp.text()
    page = await resp.text()
    assert figure(page, "tickets") == f"{tickets:,}" == "6"
    assert figure(page, "revenue") == format_fen(revenue) == format_fen(3 * 4500 + 3800 + 2 * 5200)
    assert figure(page, "refunds") == "1"
    assert figure(page, "checked_in") == "1"
    # The tickets behind the figure: the same six.
    rows = await console.get(figure_link(page, "tickets"))
    assert rows.status == 200
    text = await rows.text()
    assert text.count("<tr>") - 1 == tickets  # minus the header row
    # Every export of the page answers, as CSV and as XLSX.
    exports = export_links(page)
    assert {e.split("?")[0].rsplit("/", 1)[1] for e in exports} >= {"halls.csv", "shows.xlsx", "presale.csv"}
    for href in exports:
        got = await console.get(href)
        assert got.status == 200, (href, await got.text())
        body = await got.read()
        if href.split("?")[0].endswith(".xlsx"):
            assert openpyxl.load_workbook(io.BytesIO(body)).active.max_row >= 1
        else:
            assert list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))[0]
    shows = await console.get("/console/sales/export/shows.csv?range=today")
    table = list(csv.DictReader(io.StringIO((await shows.read()).decode("utf-8-sig"))))
    assert sorted(r["售票"] for r in table if r["售票"] not in ("0", "")) == ["2", "4"]


def chart_options(page: str) -> dict[str, dict[str, Any]]:
    """Each chart's ECharts option on ``page``, by its label."""
    found = re.findall(r'aria-label="([^"]*)"[^>]*></div><script>\(function\(\)\{var el=document\.getElementById'
                       r'\("[^"]+"\),opt=(.*?);function draw\(\)', page)
    return {html.unescape(label): json.loads(opt) for label, opt in found}


async def test_every_heatmap_cell_links_to_the_tickets_of_its_shows(
    console: TestClient, login_as: LoginAs, clock: FakeClock  # noqa: F811
) -> None:
    data = await seed(clock.now())
    # Worked out from the tickets sold: standing tickets per (weekday of the business day,
    # local start hour) of their show.
    want: dict[tuple[int, int], int] = {}
    for show, seats, _, state in data["sold"]:
        if state in (TicketState.ISSUED, TicketState.CHECKED_IN):
            cell = (business_day(show.starts_at).weekday(), show.starts_at.astimezone(SHANGHAI).hour)
            want[cell] = want.get(cell, 0) + len(seats)
    await login_as(console, "manager01")
    page = await (await console.get("/console/sales?range=7d")).text()
    heat = chart_options(page)["上座率热力图"]
    hours = [int(h.rstrip("点")) for h in heat["xAxis"]["data"]]
    linked = {}
    for point in heat["series"][0]["data"]:
        if isinstance(point, dict) and point.get("url"):
            x, y, _ = point["value"]
            linked[(y, hours[x])] = point["url"]
    assert set(linked) == set(want)
    for (weekday, hour), url in linked.items():
        assert f"weekday={weekday}" in url and f"hour={hour}" in url and "range=7d" in url
        rows = await console.get(url)
        assert rows.status == 200, url
        text = await rows.text()
        assert text.count("<tr>") - 1 == want[(weekday, hour)], url
        assert text.count(f" {hour:02d}:") >= want[(weekday, hour)]  # every row starts at that hour
    for bad in ("weekday=7", "hour=24", "hour=x"):
        assert (await console.get(f"/console/sales/rows/tickets?{bad}")).status == 400, bad


async def test_the_per_show_table_shows_twenty_and_links_to_all(
    console: TestClient, login_as: LoginAs, clock: FakeClock  # noqa: F811
) -> None:
    await seed(clock.now())
    cinema = await Cinema.get(code="demo")
    lo, hi = day_bounds(business_day(clock.now()))
    n = await Showtime.filter(cinema_id=cinema.id, starts_at__gte=lo, starts_at__lt=hi).count()
    assert n > 20, "the demo schedules more than 20 shows a day"
    await login_as(console, "manager01")
    page = await (await console.get("/console/sales?range=today")).text()
    block = page.split('data-block="shows"', 1)[1].split("</section>", 1)[0]
    assert block.split("<tbody>", 1)[1].split("</tbody>", 1)[0].count("<tr>") == 20
    more = re.search(r'<a class="cb-btn" href="([^"]+)" data-more>查看全部 (\d+) 场</a>', block)
    assert more and int(more.group(2)) == n
    every = await (await console.get(html.unescape(more.group(1)))).text()
    assert every.count("<tr>") - 1 == n
    export = await console.get("/console/sales/export/shows.csv?range=today")
    assert len(list(csv.DictReader(io.StringIO((await export.read()).decode("utf-8-sig"))))) == n


async def test_each_comment_topic_links_to_its_comments(
    console: TestClient, login_as: LoginAs, clock: FakeClock  # noqa: F811
) -> None:
    await seed(clock.now())
    loud = await FeedbackResponse.get(comment="太吵")
    await FeedbackResponse.filter(id=loud.id).update(category="sound")
    await rollups.refresh_response(loud.id)
    want: dict[str, set[str]] = {}
    for r in await FeedbackResponse.filter(comment__not="", category__not_isnull=True):
        want.setdefault(r.category, set()).add(r.comment)
    assert {k: len(v) for k, v in want.items()} == {"temperature": 2, "sound": 1}
    await login_as(console, "manager01")
    page = await (await console.get("/console/experience?range=today")).text()
    block = page.split('data-block="topics"', 1)[1].split("</section>", 1)[0]
    links = {html.unescape(h) for h in re.findall(r'<a href="([^"]*/rows/comments[^"]*)"', block)}
    assert len(links) == 2
    for href in links:
        category = re.search(r"category=(\w+)", href).group(1)  # type: ignore[union-attr]
        text = html.unescape(await (await console.get(href)).text())
        assert text.count("<tr>") - 1 == len(want[category]), href
        for comment in want[category]:
            assert mask_phone(comment) in text
        for other, comments in want.items():
            if other != category:
                assert not any(mask_phone(c) in text for c in comments)
    assert (await console.get("/console/experience/rows/comments?category=nope")).status == 400


async def test_staff_and_engineers_never_see_revenue(
    console: TestClient, login_as: LoginAs, clock: FakeClock  # noqa: F811
) -> None:
    await seed(clock.now())
    for userid in ("staff01", "eng01"):
        console.session.cookie_jar.clear()
        await login_as(console, userid)
        for path in ("/console/sales?range=today", "/console/sales/export/shows.csv?range=today",
                     "/console/sales/rows/tickets?range=today", "/console/experience?range=today"):
            resp = await console.get(path, allow_redirects=False)
            assert resp.status == 403, (userid, path, resp.status)
        for path in ("/console/service?range=today", "/console/projectors?range=today"):
            resp = await console.get(path)
            assert resp.status == 200, (userid, path)
            page = await resp.text()
            assert "票房" not in page and "¥" not in page, (userid, path)


async def test_experience_figures_match_the_ratings(
    console: TestClient, login_as: LoginAs, clock: FakeClock  # noqa: F811
) -> None:
    data = await seed(clock.now())
    ratings = data["ratings"]
    n = len(ratings)
    promoters = sum(1 for _, s, _ in ratings if s >= 9)
    detractors = sum(1 for _, s, _ in ratings if s <= 6)
    satisfied = sum(1 for stars, _, _ in ratings if stars >= 4)
    await login_as(console, "manager01")
    page = await (await console.get("/console/experience?range=today")).text()
    assert figure(page, "nps") == f"{100 * (promoters - detractors) / n:.0f}"  # 2 - 2 of 5 -> 0
    assert figure(page, "csat") == f"{100 * satisfied / n:.1f}%"  # 3 of 5 -> 60.0%
    assert figure(page, "responses") == str(n)
    # The comment is shown escaped and masked, never as markup or a full phone number.
    assert "<script>alert(1)</script>" not in page
    assert "13812345678" not in page and "138****5678" in page
    rows = await console.get(figure_link(page, "nps"))
    assert rows.status == 200
    assert (await rows.text()).count("<tr>") - 1 == n


async def test_service_counts_the_work_orders_and_links_to_them(
    console: TestClient, login_as: LoginAs, clock: FakeClock  # noqa: F811
) -> None:
    await seed(clock.now())
    await login_as(console, "staff01")
    page = await (await console.get("/console/service?range=today")).text()
    assert figure(page, "opened") == "2"
    assert figure(page, "open") == "2"
    rows = await (await console.get(figure_link(page, "opened"))).text()
    assert rows.count("<tr>") - 1 == 2 and "座椅" in rows and "温度" in rows
    projectors = await console.get("/console/projectors?range=today")
    assert projectors.status == 200
    assert "PJ-" in await projectors.text()  # the demo's projectors, listed without readings


async def test_an_empty_period_says_so_instead_of_failing(
    console: TestClient, login_as: LoginAs  # noqa: F811
) -> None:
    await login_as(console, "manager01")
    for key in ("experience", "service", "sales", "projectors"):
        resp = await console.get(f"/console/{key}?range=custom&start=2026-01-01&end=2026-01-02")
        assert resp.status == 200, (key, await resp.text())
        assert widgets.EMPTY in await resp.text()


async def test_a_bad_drill_down_parameter_is_a_400(console: TestClient, login_as: LoginAs) -> None:  # noqa: F811
    await login_as(console, "manager01")
    for path in ("/console/sales/rows/tickets?show=１２", "/console/service/rows/orders?kind=nope",
                 "/console/experience/rows/responses?day=2026-13-01"):
        resp = await console.get(path)
        assert resp.status == 400, (path, resp.status)


# --- the pieces ------------------------------------------------------------------------------------


def test_durations_read_as_people_say_them() -> None:
    assert [widgets.human_duration(s) for s in (None, 45, 720, 3900, 7200, 97200)] == [
        "—", "45秒", "12分钟", "1小时5分", "2小时", "1天3小时"]


def test_tables_and_charts_escape_what_they_show() -> None:
    table = Table("t", "表", [Column("name", "名称"), Column("fen", "金额", "money")],
                  [{"name": "<b>x</b>", "fen": 123456}], links={"fen": lambda r: "/x?a=1&b=2"})
    out = widgets.table(table)
    assert "<b>x</b>" not in out and "&lt;b&gt;x&lt;/b&gt;" in out
    assert 'href="/x?a=1&amp;b=2"' in out and "¥1234.56" in out
    chart = charts.render(charts.bars(["</script><b>"], {"n": [1]}), label="<x>")
    assert "</script><b>" not in chart and "&lt;x&gt;" in chart


async def test_a_drill_down_pages_through_all_its_rows(
    console: TestClient, login_as: LoginAs, clock: FakeClock, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    # Three rows a page (instead of 200): the six standing tickets take two pages, and the
    # third page, after a full second one, is empty.
    await seed(clock.now())
    monkeypatch.setattr(reports, "PAGE_LIMIT", 3)
    await login_as(console, "manager01")
    first = await (await console.get("/console/sales/rows/tickets?range=today&state=standing")).text()
    assert first.count("<tr>") - 1 == 3 and "上一页" not in first
    nxt = html.unescape(re.search(r'href="([^"]+)" data-page="next"', first).group(1))
    assert "state=standing" in nxt and "page=2" in nxt and "range=today" in nxt
    second = await (await console.get(nxt)).text()
    assert second.count("<tr>") - 1 == 3 and 'data-page="prev"' in second
    seats = re.findall(r"<tr>.*?</tr>", first + second, re.S)
    assert len(set(seats)) == 7  # the header twice counts once: six different tickets
    third = await console.get(html.unescape(re.search(r'href="([^"]+)" data-page="next"', second).group(1)))
    assert third.status == 200 and "下一页" not in await third.text()
