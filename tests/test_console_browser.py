"""The console in a real Chromium (Debian's ``/usr/bin/chromium`` through Playwright): every
section a person may open, at 375 px (a phone in WeCom) and 1280 px, has no sideways
overflow, draws its charts, renders its Chinese with a CJK font, and its filters and
downloads work. Screenshots go to ``$CINEBOT_ARTIFACTS/console/<section>-<width>.png``
(default ``artifacts/`` at the repo root) for people to look at.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestClient

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


@pytest.fixture
async def console(make_client: Callable[..., Any], standin: Standin) -> TestClient:
    return await make_client(standin=standin)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield b
        finally:
            await b.close()


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
    await page.screenshot(path=str(shot), full_page=True)


async def test_every_section_renders_on_a_phone_and_a_desktop(
    console: TestClient, browser: Any, clock: FakeClock
) -> None:
    await seed(clock.now())
    out = ARTIFACTS / "console"
    out.mkdir(parents=True, exist_ok=True)
    for userid, sections in ROLES.items():
        for width in WIDTHS:
            context = await browser.new_context(viewport={"width": width, "height": 900}, accept_downloads=True)
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(enter_url(console, clock, userid))
            for key in sections:
                resp = await page.goto(str(console.make_url(f"/console/{key}?range=today")))
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
