"""The console in a real Chromium (Debian's ``/usr/bin/chromium`` through Playwright).

People log in the way they do from WeCom: ``/console/`` sends them to the login page,
「企业微信登录」 opens WeCom's ``connect/oauth2/authorize`` (played by the stand-in, which
answers for the member set with ``POST /standin/oauth`` or typed into its own form) and
WeCom's redirect through ``/console/oauth`` opens the console — as a manager (four
sections), a staff member (服务 and 放映设备; 销售 is refused) and nobody (an unknown
userid, a non-member: refused, no session); logout ends the session on the server.

Every section a person may open, at 375 px (a phone in WeCom) and 1280 px, has no sideways
overflow, draws its charts, renders its Chinese with a CJK font, and its filters and
downloads work. Screenshots go to ``$CINEBOT_ARTIFACTS/console/<section>-<width>.png``
(default ``artifacts/`` at the repo root) for people to look at.

The app listens on a port bound before it starts, so its PUBLIC_URL (where WeCom sends the
browser back) is its real address.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestClient

from bot.app import init_app
from bot.infra.settings import Settings
from domain.cinemas import Cinema
from domain.days import business_day
from domain.devices import AlertRecord, Projector
from domain.rollups import DeviceDay
from handlers.console import auth
from handlers.console.context import CONSOLE
from tests.support import FakeClock, Standin
from tests.test_console_pages import figure, seed

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium")

ARTIFACTS = Path(os.environ.get("CINEBOT_ARTIFACTS") or Path(__file__).resolve().parent.parent / "artifacts")
WIDTHS = (375, 1280)
ROLES = {"manager01": ("experience", "service", "sales", "projectors"),
         "staff01": ("service", "projectors")}

# Which fonts drew a node's text (Chromium's own answer, through the DevTools protocol).
CJK_FONT = ("CJK", "Source Han", "WenQuanYi", "Droid Sans Fallback")


# What makes Debian's Chromium start quietly here: no sandbox (containers), no GPU, and no
# calls of its own to Google's hosts (the closed network refuses them, slowly). Playwright's
# launch() gives every run a fresh, temporary user-data-dir of its own.
CHROMIUM_ARGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)


@pytest.fixture
async def console(aiohttp_client: Any, settings: Settings, clock: FakeClock, standin: Standin) -> TestClient:
    """The real app (demo data) on a port bound first, PUBLIC_URL its own address, the
    stand-in as its WeChat and WeCom API (and as WeCom's web login)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = init_app(
        replace(settings, public_url=f"http://127.0.0.1:{port}", wechat_api_base=standin.url,
                wecom_api_base=standin.url),
        clock=clock, run_jobs=False, seed_demo=True,
    )
    return await aiohttp_client(app, server_kwargs={"port": port, "socket_factory": lambda *_: sock})


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS))
        try:
            yield b
        finally:
            await b.close()


async def holds_phone(standin: Standin, userid: str) -> None:
    """Who the stand-in's WeCom says is logging in ("" : its page asks)."""
    await standin.post("/standin/oauth", {"userid": userid})


async def wecom_login(page: Any, console: TestClient, standin: Standin, typed: str = "") -> None:
    """From ``/console/`` through the login page's 「企业微信登录」 and the stand-in's
    ``connect/oauth2/authorize`` (typing ``typed`` into its form when it asks) back through
    ``/console/oauth``. Ends wherever the console sends the browser."""
    await page.goto(str(console.make_url("/console/")))
    assert urlsplit(page.url).path == "/console/login", page.url
    async with page.expect_navigation(url=lambda u: "/connect/oauth2/authorize" in u
                                      or "/console/oauth" in u or "/console/" in u):
        await page.click("#wecom-login")
    if typed:
        assert page.url.startswith(standin.url + "/connect/oauth2/authorize?"), page.url
        await page.fill("input[name=userid]", typed)
        await page.click("button[type=submit]")
    await page.wait_for_load_state("load")


async def session_cookie(page: Any) -> dict[str, Any] | None:
    return next((c for c in await page.context.cookies() if c["name"] == auth.SESSION_COOKIE), None)


async def nav(page: Any) -> list[str]:
    return await page.eval_on_selector_all(".cn-tabs a", "els => els.map(e => e.textContent.trim())")


# The demo's projectors as the telemetry would leave them: a snapshot each (one of every
# grade, one stale), a week of daily health scores, one firing and one resolved alert.
FLEET = {  # device: (score, grade, brightness %, light hours, a week of scores)
    "PJ-DEMO-1": (92, "良好", 96.0, 1210.0, [95, 94, 94, 93, 93, 92, 92]),
    "PJ-DEMO-2": (68, "注意", 84.0, 3650.0, [80, 78, 76, 74, 72, 70, 68]),
    "PJ-DEMO-3": (41, "危险", 74.0, 5120.0, [62, 58, 55, 51, 47, 44, 41]),
    "PJ-DEMO-IMAX": (88, "良好", 91.0, 860.0, [90, 90, 89, 89, 88, 88, 88]),
}


async def seed_fleet(now: datetime) -> None:
    cinema = await Cinema.get(code="demo")
    today = business_day(now)
    for device, (score, grade, brightness, hours, week) in FLEET.items():
        reasons = {"注意": ["亮度 84%，接近红线"], "危险": ["亮度 74%，低于红线"]}.get(grade, [])
        await Projector.filter(device_id=device).update(
            health_score=score, health_at=now - timedelta(minutes=3),
            health={"grade": grade, "reasons": reasons, "brightness_pct": brightness, "light_hours": hours,
                    "rated_light_hours": 6000.0, "red_line_pct": 80.0, "critical_line_pct": 50.0,
                    "days_to_red_line": 12 if grade == "注意" else None},
        )
        for i, value in enumerate(week):
            await DeviceDay.create(cinema_id=cinema.id, device_id=device, day=today - timedelta(days=6 - i),
                                   metric="health_score", n=1440, vmin=value - 3, vmax=value + 2,
                                   vsum=value * 1440, vlast=value)
    await Projector.filter(device_id="PJ-DEMO-4").update(  # an hour without data: 无数据
        health_score=90, health_at=now - timedelta(hours=1), health={"grade": "良好", "reasons": []})
    for n, (state, hours_ago) in enumerate((("firing", 2), ("resolved", 30))):
        fired = now - timedelta(hours=hours_ago)
        await AlertRecord.create(
            alert_id=f"browser-{n}", cinema_id=cinema.id, device_id="PJ-DEMO-3", hall="3号厅",
            rule="brightness_low", severity="critical" if state == "firing" else "warning", state=state,
            message="亮度 74%，低于红线 80%", value=74.0, limit=80.0, fired_at=fired, created_at=fired,
            resolved_at=fired + timedelta(hours=1) if state == "resolved" else None,
        )


def enter_url(client: TestClient, clock: FakeClock, userid: str) -> str:
    link = urlsplit(auth.enter_link(client.app[CONSOLE].settings, clock.timestamp(), userid))
    return str(client.make_url(link.path)) + (f"?{link.query}" if link.query else "")


async def check_page(page: Any, shot: Path) -> None:
    overflow = await page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    assert overflow[0] <= overflow[1], f"sideways overflow {overflow} on {page.url}"
    charts = await page.evaluate(
        """() => [...document.querySelectorAll('.cb-chart')].map(el => {
              const g = el.querySelector('svg, canvas'); if (!g) return [el.getAttribute('aria-label'), 0, 0];
              const r = g.getBoundingClientRect(); return [el.getAttribute('aria-label'), r.width, r.height]; })"""
    )
    for label, w, h in charts:
        assert w > 0 and h > 0, f"chart {label!r} did not draw on {page.url}"
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("DOM.enable")
    await cdp.send("CSS.enable")
    doc = await cdp.send("DOM.getDocument", {"depth": -1})
    found = await cdp.send("DOM.querySelectorAll", {"nodeId": doc["root"]["nodeId"], "selector": "h2, .cb-label, th"})
    checked = 0
    for node_id in found["nodeIds"][:20]:
        fonts = await cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node_id})
        families = [f["familyName"] for f in fonts["fonts"]]
        if families:
            checked += 1
            assert any(any(k in f for k in CJK_FONT) for f in families), f"no CJK font for text: {families}"
    assert checked, "no text checked for its font"
    await charts_fill_their_boxes(page)
    await page.screenshot(path=str(shot), full_page=True)
    await charts_fill_their_boxes(page)  # and the screenshot's resize left them so


async def charts_fill_their_boxes(page: Any) -> None:
    """Every chart is drawn as wide as its box (a chart drawn before its box had its width
    shows as a crushed strip)."""
    sizes = await page.evaluate(
        """() => [...document.querySelectorAll('.cb-chart')].map(el => {
              const g = el.querySelector('svg'); return [el.getAttribute('aria-label'),
              el.getBoundingClientRect().width, g ? g.getBoundingClientRect().width : 0]; })"""
    )
    for label, box, drawn in sizes:
        assert abs(box - drawn) <= 1, f"chart {label!r} drawn {drawn}px wide in a {box}px box on {page.url}"


async def test_people_log_in_through_wecom_and_see_what_their_role_allows(
    console: TestClient, browser: Any, standin: Standin
) -> None:
    # A manager: WeCom knows who holds the phone.
    context = await browser.new_context(viewport={"width": 375, "height": 900})
    page = await context.new_page()
    await holds_phone(standin, "manager01")
    await wecom_login(page, console, standin)
    assert urlsplit(page.url).path == "/console/experience", page.url
    assert await nav(page) == ["体验", "服务", "销售", "放映设备"]
    assert await session_cookie(page) is not None
    logins = (await standin.get("/standin/oauth"))["logins"]
    assert [x["userid"] for x in logins] == ["manager01"]
    assert logins[0]["redirect_uri"] == str(console.make_url("/console/oauth"))

    # Logout ends the session: back to the login page, and the old cookie opens nothing.
    old = await session_cookie(page)
    async with page.expect_navigation():
        await page.click("#logout")
    assert urlsplit(page.url).path == "/console/login" and "你已退出登录" in await page.content()
    assert await session_cookie(page) is None
    await context.add_cookies([old])  # type: ignore[list-item]
    await page.goto(str(console.make_url("/console/sales")))
    assert urlsplit(page.url).path == "/console/login", page.url
    await context.close()

    # A staff member, typed into the stand-in's own page: 服务 and 放映设备, never 销售.
    await holds_phone(standin, "")
    context = await browser.new_context(viewport={"width": 375, "height": 900})
    page = await context.new_page()
    await wecom_login(page, console, standin, typed="staff01")
    assert urlsplit(page.url).path == "/console/service", page.url
    assert await nav(page) == ["服务", "放映设备"]
    resp = await page.goto(str(console.make_url("/console/sales?range=today")))
    assert resp is not None and resp.status == 403
    assert "票房" not in await page.content()
    await context.close()

    # Nobody: a userid the cinema does not know, and someone outside the company.
    for userid, says in (("stranger7", "还没有开通影城看板权限"), ("outsider1", "只有本企业的成员可以登录")):
        await holds_phone(standin, userid)
        context = await browser.new_context(viewport={"width": 375, "height": 900})
        page = await context.new_page()
        statuses: list[int] = []
        page.on("response", lambda r, seen=statuses: seen.append(r.status) if "/console/oauth" in r.url else None)
        await wecom_login(page, console, standin)
        assert urlsplit(page.url).path == "/console/oauth", page.url
        assert statuses == [403], statuses
        assert says in await page.content()
        assert await session_cookie(page) is None
        await page.goto(str(console.make_url("/console/service")))
        assert urlsplit(page.url).path == "/console/login", (userid, page.url)
        await context.close()
    assert [x["userid"] for x in (await standin.get("/standin/oauth"))["logins"]] == [
        "manager01", "staff01", "stranger7", "outsider1"]


async def test_every_section_renders_on_a_phone_and_a_desktop(
    console: TestClient, browser: Any, clock: FakeClock, standin: Standin
) -> None:
    await seed(clock.now())
    await seed_fleet(clock.now())
    out = ARTIFACTS / "console"
    out.mkdir(parents=True, exist_ok=True)
    for userid, sections in ROLES.items():
        await holds_phone(standin, userid)
        for width in WIDTHS:
            context = await browser.new_context(viewport={"width": width, "height": 900}, accept_downloads=True)
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e, seen=errors: seen.append(str(e)))
            await wecom_login(page, console, standin)
            assert urlsplit(page.url).path == f"/console/{sections[0]}", page.url
            for key in sections:
                # A week: trend lines with several days, a per-show table longer than the page's.
                resp = await page.goto(str(console.make_url(f"/console/{key}?range=7d")))
                assert resp is not None and resp.status == 200, (userid, key)
                await page.wait_for_load_state("load")
                suffix = "" if userid == "manager01" else f"-{userid}"
                await check_page(page, out / f"{key}{suffix}-{width}.png")
            if userid != "manager01":
                resp = await page.goto(str(console.make_url("/console/sales?range=today")))
                assert resp is not None and resp.status == 403
            assert not errors, errors
            await context.close()


async def test_filters_change_the_figures_and_downloads_arrive(
    console: TestClient, browser: Any, clock: FakeClock, tmp_path: Path
) -> None:
    await seed(clock.now())
    context = await browser.new_context(viewport={"width": 375, "height": 900}, accept_downloads=True)
    page = await context.new_page()
    await page.goto(enter_url(console, clock, "manager01"))
    await page.goto(str(console.make_url("/console/sales?range=today")))
    today = figure(await page.content(), "tickets")
    assert today == "6"
    await page.goto(str(console.make_url("/console/sales?range=custom&start=2026-01-01&end=2026-01-02")))
    assert figure(await page.content(), "tickets") == "0"
    await page.goto(str(console.make_url("/console/sales?range=today")))
    for name in ("halls.csv", "halls.xlsx"):
        async with page.expect_download() as info:
            await page.click(f'a[data-export="{name}"]')
        download = await info.value
        path = tmp_path / name
        await download.save_as(str(path))
        assert path.stat().st_size > 0
    await context.close()


async def test_nobody_is_sent_to_the_login_page(console: TestClient, browser: Any) -> None:
    page = await browser.new_page()
    await page.goto(str(console.make_url("/console/service?range=today")))
    assert "/console/login" in page.url
    assert "登录" in await page.content()
    await page.close()
