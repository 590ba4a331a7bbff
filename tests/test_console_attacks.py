"""The console attacked: by an outsider (forged, expired and replayed links, OAuth ``state``
and codes, session cookies, ``next=`` redirects, odd methods and addresses) and by a
logged-in person (a staff member reaching revenue, a manager reaching another cinema,
odd periods, markup and formulas in the data they look at). Every answer is a 4xx or the
page itself — never a 500, never another site, never someone else's rows — and the server
log holds no traceback for any of it (``no_tracebacks``).

Runs on the real sections (``tests.test_console_pages.console``) with the demo cinema,
plus a second cinema and its manager where a test needs one.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import re
import secrets
from collections.abc import Callable, Iterator
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import openpyxl
import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from bot.infra import tokens
from bot.wechat.chatclient import next_msg_id, text_xml
from domain.catalog import Film, Showtime
from domain.cinemas import Cinema, Hall
from domain.devices import AlertRecord
from domain.feedback import FeedbackResponse
from domain.people import Staff, StaffRole
from domain.touchpoints import Touchpoint, TouchpointKind
from domain.workorders import WorkOrder
from handlers.console import auth, layout
from handlers.console.context import CONSOLE
from tests.support import FakeClock, Standin
from tests.test_console_auth import (  # noqa: F401  (fixtures)
    LoginAs,
    _path,
    callbacks_for,
    links,
    login_as,
    oauth_login,
)
from tests.test_console_browser import CHROMIUM, browser, enter_url, seed_fleet  # noqa: F401  (fixture)
from tests.test_console_pages import console, seed  # noqa: F401  (fixture)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SECTIONS = ("experience", "service", "sales", "projectors")
MANAGERS_ONLY = ("experience", "sales")


@pytest.fixture(autouse=True)
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Whatever a test sends, the server logs no error: an answer that failed inside
    would show here as aiohttp's 「Error handling request」 with its traceback."""
    caplog.set_level(logging.WARNING)
    yield
    failures = [
        f"{r.name}: {r.getMessage()}\n{r.exc_text or ''}"
        for r in caplog.records
        if r.levelno >= logging.ERROR
        # aiohttp's own parser refusing an over-long request line (a 400 before any handler)
        and "LineTooLong" not in (r.exc_text or "")
    ]
    assert not failures, "\n\n".join(failures)


async def get(client: TestClient, path: str, **kwargs: Any) -> Any:
    """GET ``path`` exactly as written (no client-side normalising or re-encoding)."""
    return await client.get(URL(path, encoded=True), allow_redirects=False, **kwargs)


def token_of(link: str) -> str:
    return parse_qs(urlsplit(link).query)["t"][0]


def link_for(client: TestClient, clock: FakeClock, userid: str, **kwargs: Any) -> str:
    return auth.enter_link(client.app[CONSOLE].settings, clock.timestamp(), userid, **kwargs)


async def other_cinema() -> dict[str, Any]:
    """A second cinema with its own manager, show, ticket, rating, work order and alert, all
    marked ``OTHERSECRET`` — text the demo cinema's people must never see."""
    cinema = await Cinema.create(code="other", name="别家影城OTHERSECRET")
    hall = await Hall.create(cinema=cinema, name="9号厅", layout=["SSSS"])
    film = await Film.create(title="别家电影OTHERSECRET", duration_min=100)
    manager = await Staff.create(cinema=cinema, userid="manager02", name="周经理",
                                 role=StaffRole.MANAGER)
    return {"cinema": cinema, "hall": hall, "film": film, "manager": manager}


# --- one-time links ----------------------------------------------------------------------------


async def test_one_time_links_forged_tampered_expired_or_replayed_open_nothing(
    console: TestClient, clock: FakeClock  # noqa: F811
) -> None:
    settings = console.app[CONSOLE].settings
    link = link_for(console, clock, "manager01")
    token = token_of(link)
    purpose, value, expires, mac = token.split(".")
    other_value = tokens._b64(b"manager01 0000000000000000 /console/")
    forged = [
        f"{purpose}.{other_value}.{expires}.{mac}",  # another value under the same MAC
        f"{purpose}.{value}.{int(expires) + 86400}.{mac}",  # a later expiry
        f"{purpose}.{value}.{expires}.{mac.lower()}",
        f"{purpose}.{value}.{expires}.{mac}=",
        f"{purpose}.{value}.{expires}",
        f"{purpose}.{value}.{expires}.{mac}.{mac}",
        tokens.sign(settings.secret_key, "session", "manager01 00 /console/", clock.timestamp() + 60),
        tokens.sign(settings.secret_key, "console", "manager01", clock.timestamp() + 60),  # no nonce
        tokens.sign(settings.secret_key, "console", "", clock.timestamp() + 60),
        tokens.sign(settings.secret_key, "console", "nobody 00 /console/", clock.timestamp() + 60),
        tokens.sign(settings.secret_key, "console", "manager01 00 /console/", clock.timestamp()),
    ]
    for bad in forged:
        resp = await console.get("/console/enter", params={"t": bad}, allow_redirects=False)
        assert resp.status == 403, bad
        assert auth.SESSION_COOKIE not in resp.cookies
    for raw in ("t=", "t=%00", "t=" + "%FF" * 10, "t=a&t=" + token, "", "t=" + "."*3):
        resp = await get(console, "/console/enter?" + raw)
        assert resp.status == 403, raw
    # The untouched link still works — once — even when the same browser hammers it.
    answers = await asyncio.gather(*(get(console, _path(link)) for _ in range(5)))
    assert sorted(a.status for a in answers) == [302, 403, 403, 403, 403]
    # One second too late is too late.
    late = link_for(console, clock, "manager01", ttl_s=30)
    clock.advance(seconds=30)
    assert (await get(console, _path(late))).status == 403


async def test_a_link_never_leads_off_the_console(
    console: TestClient, clock: FakeClock  # noqa: F811
) -> None:
    settings = console.app[CONSOLE].settings
    for target in ("https://evil.example/", "//evil.example", "/console/../api/x",
                   "/console/%2e%2e/api", "/console/sales\r\nSet-Cookie: a=b"):
        value = f"manager01 {secrets.token_hex(8)} {target}"
        token = tokens.sign(settings.secret_key, "console", value, clock.timestamp() + 60)
        resp = await console.get("/console/enter", params={"t": token}, allow_redirects=False)
        assert resp.status == 302 and resp.headers["Location"] == "/console/", target
        assert "a" not in resp.cookies


# --- WeCom web OAuth ---------------------------------------------------------------------------


async def _state(client: TestClient) -> tuple[str, str]:
    """Open the login page: (the authorize URL's ``state``, the state cookie it set)."""
    page = await client.get("/console/login", allow_redirects=False)
    authorize = links(await page.text()).by_id["wecom-login"]
    return parse_qs(urlsplit(authorize).query)["state"][0], page.cookies[auth.STATE_COOKIE].value


async def _code(standin: Standin, userid: str, appid: str) -> str:
    url = standin.make_url("/connect/oauth2/authorize").with_query(
        appid=appid, redirect_uri="http://app.example/console/oauth", response_type="code",
        scope="snsapi_base", state="x", agentid="1", userid=userid,
    )
    async with standin.http.get(url, allow_redirects=False) as resp:
        return parse_qs(urlsplit(resp.headers["Location"]).query)["code"][0]


async def test_oauth_state_and_codes_are_checked(
    console: TestClient, standin: Standin, make_client: Callable[..., Any], clock: FakeClock  # noqa: F811
) -> None:
    settings = console.app[CONSOLE].settings
    corp = settings.wecom_corp_id

    # No state cookie at all: a return this browser never started.
    state, _cookie = await _state(console)
    code = await _code(standin, "manager01", corp)
    console.session.cookie_jar.clear()
    resp = await console.get("/console/oauth", params={"code": code, "state": state})
    assert resp.status == 403 and "登录请求无效" in await resp.text()

    # Someone else's state (and their cookie stays with them): refused here.
    victim = await make_client(standin=standin)
    mine, _ = await _state(console)
    await _state(victim)
    code = await _code(standin, "manager01", corp)
    resp = await victim.get("/console/oauth", params={"code": code, "state": mine})
    assert resp.status == 403 and auth.SESSION_COOKIE not in resp.cookies

    # A state past its ten minutes.
    state, _ = await _state(console)
    clock.advance(minutes=10, seconds=1)
    code = await _code(standin, "manager01", corp)
    resp = await console.get("/console/oauth", params={"code": code, "state": state})
    assert resp.status == 403

    # A code WeCom gave another corp's app: getuserinfo with our token refuses it.
    state, _ = await _state(console)
    foreign = await _code(standin, "manager01", "ww_other_corp")
    resp = await console.get("/console/oauth", params={"code": foreign, "state": state})
    assert resp.status == 403 and "登录码无效" in await resp.text()

    # A used code, even with a fresh state of this browser.
    good = await oauth_login(console, standin, "manager01")
    assert good.status == 302
    used = parse_qs(good.url.query_string)["code"][0]
    console.session.cookie_jar.clear()
    state, _ = await _state(console)
    resp = await console.get("/console/oauth", params={"code": used, "state": state})
    assert resp.status == 403 and auth.SESSION_COOKIE not in resp.cookies

    # Garbage in every field: refused, never a 500.
    state, _ = await _state(console)
    for query in ("code=&state=" + state, "state=" + state, "code=a%00b&state=" + state,
                  "code=" + "a" * 600 + "&state=" + state, "code=x&state=" + state + "0",
                  "code=x&state=%E4%BD%A0", "code=x&code=y&state=" + state):
        resp = await get(console, "/console/oauth?" + query)
        assert resp.status == 403, query


async def test_the_state_cookie_cannot_carry_a_way_off_the_console(
    console: TestClient, standin: Standin  # noqa: F811
) -> None:
    for target in ("//evil.example", "https://evil.example", "/console/../api", "/console/%2E%2E/api"):
        console.session.cookie_jar.clear()
        state, cookie = await _state(console)
        nonce = cookie.partition(".")[0]
        console.session.cookie_jar.update_cookies(
            {auth.STATE_COOKIE: f"{nonce}.{auth._b64(target)}"}, URL(str(console.make_url("/console/")))
        )
        code = await _code(standin, "manager01", console.app[CONSOLE].settings.wecom_corp_id)
        resp = await console.get("/console/oauth", params={"code": code, "state": state},
                                 allow_redirects=False)
        assert resp.status == 302 and resp.headers["Location"] == "/console/", target
    console.session.cookie_jar.clear()
    state, cookie = await _state(console)
    console.session.cookie_jar.update_cookies(
        {auth.STATE_COOKIE: cookie.partition(".")[0] + ".%%%not-base64"},
        URL(str(console.make_url("/console/"))),
    )
    code = await _code(standin, "manager01", console.app[CONSOLE].settings.wecom_corp_id)
    resp = await console.get("/console/oauth", params={"code": code, "state": state},
                             allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/console/"


# --- next= -------------------------------------------------------------------------------------

OFFSITE = [
    "//evil.com", "/\\evil.com", "\\\\evil.com", "https:evil.com", "https://evil.com/console/",
    "http://127.0.0.1:8080/console/", "javascript:alert(1)", "/console//evil.com",
    "/console/\\evil.com", "/console/\t/evil.com", "/console/..", "/console/../api/x",
    "/console/./../api", "/console/%2e%2e/api", "/console/%2E%2e/%2e%2E/evil",
    "/console/.%2e/api", "/console/..%2fapi", "/console/sales/..;/../api", "/console/%5c%5cevil.com",
    "/console/%2F%2Fevil.com", "/console/\r\nSet-Cookie: a=b", "/console/\u2028", "/%63onsole/",
    " /console/", "/console/" + "a" * 2000, "/console/sales\x00",
]


def lands_on_the_console(location: str) -> bool:
    """Where a browser goes from ``location`` stays under /console/ of this site: no
    scheme or host, no backslash, no ``//``, and no dot segment however it is spelled."""
    if not location.startswith("/console/") or "\\" in location or not location.isascii():
        return False
    path = urlsplit(location).path
    segments = unquote(path).split("/")
    return "//" not in path and not any(s in (".", "..") for s in segments) and (
        not re.search(r"%2f|%5c", path, re.IGNORECASE)
    )


@pytest.mark.parametrize("target", OFFSITE)
def test_next_never_leaves_the_console(target: str) -> None:
    assert lands_on_the_console(auth.safe_next(target)), target


def test_next_keeps_what_is_on_the_console() -> None:
    for target in ("/console/", "/console/sales?range=30d&cinema=1",
                   "/console/sales/rows/tickets?range=today&show=3"):
        assert auth.safe_next(target) == target
    # Non-ASCII comes back percent-encoded (a header holds ASCII), meaning the same.
    kept = auth.safe_next("/console/experience/rows/responses?hall=3号厅")
    assert kept == "/console/experience/rows/responses?hall=3" + quote("号厅")


async def test_next_through_the_real_login(
    console: TestClient, standin: Standin  # noqa: F811
) -> None:
    for target in ("//evil.com", "/console/../api", "/console/%2e%2e/api", "/console/\\evil.com"):
        console.session.cookie_jar.clear()
        resp = await oauth_login(console, standin, "manager01", next_path=quote(target, safe=""))
        assert resp.status == 302 and resp.headers["Location"] == "/console/", target
        resp = await console.get("/console/login", params={"next": target}, allow_redirects=False)
        assert resp.status == 302 and resp.headers["Location"] == "/console/", target
    # Logged in, /console/login?next= redirects at once: still never elsewhere.
    resp = await get(console, "/console/login?next=%2F%2Fevil.com")
    assert resp.headers["Location"] == "/console/"
    # The home page passes its query on as sent: an escaped & stays one, CR LF stay escaped.
    query = "a=%26b%3D1&x=%0D%0ASet-Cookie:%20a=b"
    resp = await get(console, f"/console/?{query}")
    assert resp.headers["Location"] == f"/console/experience?{query}" and "a" not in resp.cookies
    # Without a session, the login is asked to come back to the same address, as sent.
    console.session.cookie_jar.clear()
    resp = await get(console, f"/console/sales?{query}")
    back = parse_qs(urlsplit(resp.headers["Location"]).query)["next"][0]
    assert back == f"/console/sales?{query}"
    assert auth.safe_next(back) == back


# --- sessions ----------------------------------------------------------------------------------


def _sid(client: TestClient) -> str | None:
    for cookie in client.session.cookie_jar:
        if cookie.key == auth.SESSION_COOKIE:
            return cookie.value
    return None


def _set_sid(client: TestClient, sid: str) -> None:
    client.session.cookie_jar.update_cookies(
        {auth.SESSION_COOKIE: sid}, URL(str(client.make_url("/console/")))
    )


async def _logged_in(client: TestClient) -> bool:
    resp = await get(client, "/console/service")
    return resp.status == 200


async def test_a_tampered_session_cookie_opens_nothing(
    console: TestClient, login_as: LoginAs  # noqa: F811
) -> None:
    await login_as(console, "manager01")
    sid = _sid(console)
    assert sid and await _logged_in(console)
    flipped = sid[:-1] + ("A" if sid[-1] != "A" else "B")
    for bad in (flipped, sid + "A", sid[:-1], sid.upper() if sid.upper() != sid else sid.lower(),
                "", " " + sid, sid + ";", "../" + sid, "x" * 43, "%" * 43):
        console.session.cookie_jar.clear()
        _set_sid(console, bad)
        assert not await _logged_in(console), bad
        resp = await get(console, "/console/service/export/orders.csv")
        assert resp.status == 401, bad
    # Redis holds only the digest of a live id: the digest itself is no cookie either.
    console.session.cookie_jar.clear()
    _set_sid(console, auth._key("session", sid).rsplit(":", 1)[1][:43])
    assert not await _logged_in(console)


async def test_a_session_id_planted_before_login_never_becomes_the_session(
    console: TestClient, standin: Standin, clock: FakeClock  # noqa: F811
) -> None:
    planted = secrets.token_urlsafe(32)
    for way in ("link", "oauth"):
        console.session.cookie_jar.clear()
        _set_sid(console, planted)
        if way == "link":
            resp = await get(console, _path(link_for(console, clock, "manager01")))
        else:
            resp = await oauth_login(console, standin, "manager01")
        assert resp.status == 302
        issued = resp.cookies[auth.SESSION_COOKIE].value
        assert issued != planted
        # The planted id is no session: a browser that kept it is not logged in.
        other = console.session.cookie_jar
        other.clear()
        _set_sid(console, planted)
        assert not await _logged_in(console), way
        _set_sid(console, issued)
        assert await _logged_in(console), way


async def test_logging_in_again_ends_the_session_the_browser_had(
    console: TestClient, login_as: LoginAs  # noqa: F811
) -> None:
    """A shared phone: the next person's login does not leave the last one's session alive
    for whoever copied its cookie."""
    await login_as(console, "manager01")
    first = _sid(console)
    await login_as(console, "staff01")
    second = _sid(console)
    assert first and second and first != second
    console.session.cookie_jar.clear()
    _set_sid(console, first)
    assert (await get(console, "/console/sales")).status == 302


async def test_after_logout_the_old_cookie_opens_no_page_file_or_rows(
    console: TestClient, login_as: LoginAs  # noqa: F811
) -> None:
    await login_as(console, "manager01")
    sid = _sid(console)
    assert sid
    # A GET (a link on any site) only asks: the session lives on.
    asked = await console.get("/console/logout", allow_redirects=False)
    assert asked.status == 200 and 'method="post"' in await asked.text()
    assert (await get(console, "/console/sales")).status == 200
    resp = await console.post("/console/logout", allow_redirects=False)
    assert resp.status == 302
    _set_sid(console, sid)
    for path in ("/console/sales", "/console/sales/rows/tickets", "/console/sales/export/shows.csv",
                 "/console/sales/rows/tickets.xlsx", "/console/"):
        resp = await get(console, path)
        assert resp.status in (302, 401), path
        if resp.status == 302:
            assert resp.headers["Location"].startswith("/console/login"), path
    # Logging out twice, or without a session, is harmless.
    for _ in range(2):
        assert (await console.post("/console/logout", allow_redirects=False)).status == 302


async def test_a_live_session_follows_the_staff_row(
    console: TestClient, login_as: LoginAs, clock: FakeClock  # noqa: F811
) -> None:
    await login_as(console, "manager01")
    assert (await get(console, "/console/sales")).status == 200
    await Staff.filter(userid="manager01").update(role=StaffRole.STAFF)  # demoted
    assert (await get(console, "/console/sales")).status == 403
    assert (await get(console, "/console/sales/export/shows.xlsx")).status == 403
    await Staff.filter(userid="manager01").update(role=StaffRole.MANAGER, active=False)
    for path in ("/console/service", "/console/service/rows/orders"):
        assert (await get(console, path)).status == 302, path
    assert (await get(console, "/console/service/export/orders.csv")).status == 401


# --- staff reaching revenue --------------------------------------------------------------------


def _ways_to(section: str, table: str, rows: str) -> list[str]:
    base = f"/console/{section}"
    return [
        base, base + "?range=30d", base.upper(), base.title(), base + "/", base + "//",
        f"/console//{section}", f"/console/./{section}", f"/console/%2e/{section}",
        f"/console/service/../{section}", f"/console/service/%2e%2e/{section}",
        f"/console/service/%2E%2E/{section}", "/console/" + quote(section, safe="").replace(
            section[0], f"%{ord(section[0]):02x}", 1),
        f"{base}/export/{table}.csv", f"{base}/export/{table}.xlsx", f"{base}/export/{table}.CSV",
        f"{base}/export/{table}.csv/", f"{base}//export/{table}.csv", f"{base}/export/{table}.csv?range=today",
        f"{base}/export/{table}%2ecsv", f"{base}/rows/{rows}", f"{base}/rows/{rows}.csv",
        f"{base}/rows/{rows}.xlsx", f"{base}/rows/{rows}/", f"{base}/ROWS/{rows}",
        f"{base}/rows/{rows}?range=custom&start=2026-11-01&end=2026-11-21",
        f"/console/service/rows/../../{section}/rows/{rows}.csv",
    ]


@pytest.mark.parametrize("userid", ["staff01", "eng01"])
async def test_staff_reach_no_revenue_or_ratings_by_any_address(
    console: TestClient, login_as: LoginAs, clock: FakeClock, userid: str  # noqa: F811
) -> None:
    await seed(clock.now())
    await login_as(console, userid)
    ways = _ways_to("sales", "shows", "tickets") + _ways_to("experience", "films", "responses")
    for path in ways:
        for method in ("GET", "HEAD"):
            resp = await console.request(method, URL(path, encoded=True), allow_redirects=False)
            assert resp.status in (403, 404), (method, path, resp.status)
            if method == "GET":
                text = await resp.text()
                assert "¥" not in text and "票房" not in text and "NPS" not in text, path
    for section in ("service", "projectors"):
        page = await (await get(console, f"/console/{section}?range=30d")).text()
        assert "sales" not in links(page).sections and "experience" not in links(page).sections
        assert not re.search(r'href="/console/(sales|experience)', page)


# --- another cinema ----------------------------------------------------------------------------


async def _seed_other(clock: FakeClock) -> dict[str, Any]:
    """The second cinema's rows for today: a show with a sold ticket, a rating with a
    comment, a work order and an alert on its projector."""
    other = await other_cinema()
    now = clock.now()
    cinema, hall, film = other["cinema"], other["hall"], other["film"]
    show = await Showtime.create(cinema=cinema, hall=hall, film=film, starts_at=now + timedelta(hours=1),
                                 ends_at=now + timedelta(hours=3), base_price_fen=9900)
    touchpoint = await Touchpoint.create(cinema_id=cinema.id, code="other-exit", name="9号厅出口",
                                         kind=TouchpointKind.HALL_EXIT, hall="9号厅", created_at=now)
    await FeedbackResponse.create(
        cinema_id=cinema.id, touchpoint=touchpoint, visitor="o-other", visit_day=(await _today(now)), channel="chat",
        stars=1, nps=0, comment="别家评论OTHERSECRET", category="temperature", created_at=now,
        updated_at=now,
    )
    await WorkOrder.create(
        ref="WOTHER1", cinema_id=cinema.id, kind="fault", category="seat", source="staff",
        summary="别家工单OTHERSECRET", reporter="manager02", reporter_role="manager",
        created_at=now, updated_at=now,
    )
    await AlertRecord.create(
        alert_id="other-1", cinema=cinema, device_id="PJ-OTHER9", rule="brightness",
        severity="critical", state="firing", message="别家告警OTHERSECRET", fired_at=now,
        created_at=now,
    )
    return {**other, "show": show}


async def _today(now: Any) -> Any:
    from domain.days import business_day

    return business_day(now)


async def test_a_manager_never_sees_another_cinema(
    console: TestClient, login_as: LoginAs, clock: FakeClock  # noqa: F811
) -> None:
    await seed(clock.now())
    other = await _seed_other(clock)
    mine = (await Staff.get(userid="manager01")).cinema_id  # type: ignore[attr-defined]
    theirs = other["cinema"].id
    await login_as(console, "manager01")
    # As they travel in the address: full-width １, Arabic-Indic ٣, Persian ۱, spaces, NUL.
    odd = [str(theirs), f"{mine}&cinema={theirs}", f"{theirs}&cinema={mine}", "-1", f"-{mine}",
           "0", str(2**31), str(2**63), "9" * 30, quote("１"), quote("٣"), quote("۱"),
           quote(chr(0x660 + mine % 10)), "1e0", "0x1", f"%20{mine}", f"{mine}%20", f"{mine}.0",
           f"%2B{mine}", "", "%00", "all", "*", f"{mine},{theirs}", f"%5B{theirs}%5D"]
    seen: list[str] = []
    for section in SECTIONS:
        for value in odd:
            for suffix in ("", "/export/{t}.csv", "/rows/{r}"):
                table = {"experience": "films", "service": "open", "sales": "shows",
                         "projectors": "projectors"}[section]
                rows = {"experience": "responses", "service": "orders", "sales": "tickets",
                        "projectors": "alerts"}[section]
                path = f"/console/{section}{suffix.format(t=table, r=rows)}?range=today&cinema={value}"
                resp = await get(console, path)
                body = await resp.read()
                assert resp.status in (200, 400, 403), (path, resp.status)
                assert b"OTHERSECRET" not in body, path
                if resp.status == 200:
                    seen.append(path)
    # Only the own cinema, said plainly or with an empty value, gave a page.
    assert all(re.search(rf"cinema=({mine}(&cinema={theirs})?|)$", p) for p in seen), seen
    # The figures' own parameters cannot reach the other cinema's rows either.
    for path in (f"/console/sales/rows/tickets?range=today&show={other['show'].id}",
                 f"/console/sales/rows/tickets?range=today&film={other['film'].id}",
                 f"/console/sales/rows/tickets?range=today&hall={other['hall'].id}",
                 f"/console/sales/rows/tickets.csv?range=today&show={other['show'].id}",
                 "/console/projectors/rows/alerts?range=today&device=PJ-OTHER9",
                 "/console/projectors/rows/alerts.xlsx?range=today&device=PJ-OTHER9",
                 f"/console/experience/rows/responses?range=today&film={other['film'].id}",
                 "/console/experience/rows/responses?range=today&hall=9号厅",
                 "/console/service/rows/orders?range=today&category=seat"):
        resp = await get(console, quote(path, safe="/?&=%"))
        assert resp.status in (200, 400), path
        assert b"OTHERSECRET" not in await resp.read(), path
    # And the other cinema's manager sees theirs, not ours.
    console.session.cookie_jar.clear()
    await login_as(console, "manager02")
    page = await (await get(console, "/console/experience?range=today")).text()
    assert "别家评论OTHERSECRET" in page and "13812345678" not in page and "很好" not in page
    assert (await get(console, f"/console/sales?cinema={mine}")).status == 403


# --- periods -----------------------------------------------------------------------------------

ODD_PERIODS = [
    "range=custom&start=2026-02-30", "range=custom&start=2026-02-29", "start=2026-13-01",
    "range=custom&start=2026-11-10&end=2026-11-01", "range=custom&start=0001-01-01",
    "range=custom&start=0001-01-01&end=0001-12-31", "range=custom&start=9999-12-31",
    "range=custom&start=9999-01-01&end=9999-12-31", "range=custom&start=0001-01-01&end=9999-12-31",
    "range=custom&start=1970-01-01&end=1970-01-02", "range=custom&start=2100-01-01",
    "start=2026-11-01&end=12026-11-01", "range=forever", "range=7D", "range=", "range=%00",
    "range=today&range=30d", "range=custom&start=2026-11-01&start=2026-11-05&end=2026-11-20",
    "start=2026-11-01&end=2026-11-02&end=2026-11-30", "range=custom&end=2026-11-01",
    "range=custom&start=%EF%BC%92%EF%BC%90%EF%BC%92%EF%BC%96-11-01",
    "range=custom&start=2026-11-01T00:00", "range=custom&start=2026-W47-6",
    "range=custom&start=20261101", "range=custom&start=+2026-11-01", "range=today&start=garbage",
]


async def test_odd_periods_are_refused_or_read_never_a_500(
    console: TestClient, login_as: LoginAs, clock: FakeClock  # noqa: F811
) -> None:
    await seed(clock.now())
    await login_as(console, "manager01")
    for query in ODD_PERIODS:
        for section in SECTIONS:
            for path in (f"/console/{section}", f"/console/{section}/export/"
                         + {"experience": "days", "service": "teams", "sales": "halls",
                            "projectors": "history"}[section] + ".xlsx",
                         f"/console/{section}/rows/" + {"experience": "comments", "service": "open",
                                                        "sales": "shows", "projectors": "alerts"}[section]):
                resp = await get(console, f"{path}?{query}")
                assert resp.status in (200, 400), (path, query, resp.status)
    # A bad period says why on the page; far-off years are refused in words too.
    resp = await get(console, "/console/sales?range=custom&start=9999-12-31")
    assert resp.status == 400 and "日期" in await resp.text()
    resp = await get(console, "/console/projectors/export/history.csv?range=custom&start=0001-01-01")
    assert resp.status == 400 and "日期" in await resp.text()


# --- markup and formulas in the data -----------------------------------------------------------

SCRIPT = "</script><script>alert(1)</script>"
ATTR = "\"'><img src=x onerror=alert(2)>"
LS = "\u2028\u2029"
FORMULAS = ["=HYPERLINK(\"http://evil/\",\"x\")", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(1,1)",
            "\t=1+1", "\r=1+1"]


async def poison(clock: FakeClock) -> None:
    """The demo cinema's data as a hostile customer or colleague could write it: markup in
    film titles, a hall's name, comments, work orders, alerts and staff names, formulas at
    the start of text cells (columns keep their database lengths: PostgreSQL checks them)."""
    data = await seed(clock.now())
    cinema = data["cinema"]
    shows = await Showtime.filter(cinema_id=cinema.id).prefetch_related("film", "hall")
    films = sorted({s.film_id for s in shows})
    titles = [SCRIPT + LS, ATTR, FORMULAS[0], FORMULAS[1]]
    for film_id, title in zip(films, titles, strict=False):
        await Film.filter(id=film_id).update(title=title)
    halls = sorted({s.hall_id for s in shows})
    hall_names = ["</script>\"'<u>", "=1+1\u2028", "@x"]
    for hall_id, name in zip(halls, hall_names, strict=False):
        await Hall.filter(id=hall_id).update(name=name)
    await Staff.filter(userid="manager01").update(name=ATTR)
    await Staff.filter(userid="staff01").update(name="</script><b>")
    touchpoint = await Touchpoint.filter(cinema_id=cinema.id).first()
    for i, text in enumerate([SCRIPT + ATTR + LS, *FORMULAS]):
        await FeedbackResponse.create(
            cinema_id=cinema.id, touchpoint=touchpoint, visitor=f"o-evil-{i}", visit_day=data["today"], channel="chat",
            stars=1, nps=0, comment=text, category="temperature", film_title=SCRIPT[:64],
            hall="</script>\"'<u>", created_at=clock.now(), updated_at=clock.now(),
        )
    for i, summary in enumerate([SCRIPT + ATTR, *FORMULAS]):
        await WorkOrder.create(
            ref=f"WEVIL{i}", cinema_id=cinema.id, kind="fault", category="seat", source="staff", summary=summary[:120], hall="</script>\"'<u>",
            reporter=ATTR, reporter_role="staff", reporter_name="</script><b>",
            assignee=FORMULAS[0][:64], cause=SCRIPT, action=ATTR,
            created_at=clock.now(), updated_at=clock.now(),
        )
    await AlertRecord.create(
        alert_id="evil-1", cinema=cinema, device_id="PJ-</script><u>", hall="</script>\"'<u>",
        rule=SCRIPT[:64], severity="critical", state="firing", message=SCRIPT + ATTR + LS,
        fired_at=clock.now(), created_at=clock.now(), acknowledged_by=FORMULAS[0][:64],
    )
    from domain import rollups

    await rollups.rebuild(cinema.id)


class _Page(HTMLParser):
    """Every element, attribute and script of a page, as a browser's parser sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = not dict(attrs).get("src")
            self.scripts.append("") if self._in_script else None
        if tag == "a" and dict(attrs).get("href"):
            self.hrefs.append(str(dict(attrs)["href"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data


MARKUP = ("img", "u", "b", "i")  # tags only the payloads bring (the console uses none)


def assert_inert(page: str, where: str) -> list[str]:
    """No payload became markup or script on ``page``; its chart options parse as JSON
    with the payloads as text. The page's console links, to follow."""
    parsed = _Page()
    parsed.feed(page)
    for tag, attrs in parsed.tags:
        assert tag not in MARKUP, (where, tag, attrs)
        assert not any(name.startswith("on") for name in attrs), (where, tag, attrs)
        if tag == "script" and attrs.get("src"):
            assert str(attrs["src"]).startswith("/console/static/echarts.min.js?v="), where
    for script in parsed.scripts:
        assert script.startswith("(function(){var el=document.getElementById("), (where, script[:80])
        assert script.endswith("})();"), (where, script[-80:])
        assert "</" not in script and "<!--" not in script and LS[0] not in script, where
        option = script.split(",opt=", 1)[1].split(";function draw(){", 1)[0]
        json.loads(option)
    for raw in (SCRIPT, ATTR, "<img", "<u>", "<b>", "\"'>"):
        assert raw not in page, (where, raw)
    return [h for h in parsed.hrefs if h.startswith("/console/") and "/static/" not in h]


async def test_markup_in_the_data_stays_text_on_every_page_chart_and_drill_down(
    console: TestClient, login_as: LoginAs, clock: FakeClock  # noqa: F811
) -> None:
    await poison(clock)
    for userid, sections in (("manager01", SECTIONS), ("staff01", ("service", "projectors"))):
        console.session.cookie_jar.clear()
        await login_as(console, userid)
        followed: set[str] = set()
        escaped = 0
        for section in sections:
            resp = await get(console, f"/console/{section}?range=today")
            assert resp.status == 200, section
            page = await resp.text()
            hrefs = assert_inert(page, section)
            escaped += "&lt;img" in page or "&lt;/script&gt;" in page
            for href in hrefs:
                href = href.split("#")[0]
                if href in followed or "/export/" in href or href.split("?")[0].endswith((".csv", ".xlsx")):
                    continue
                followed.add(href)
                got = await get(console, href)
                assert got.status in (200, 302), (href, got.status)
                if got.status == 200:
                    assert_inert(await got.text(), href)
        assert any("/rows/" in h for h in followed), followed
        assert escaped, "the payloads reached the pages"
    # The refusal and error pages say what was asked in words, never as markup.
    for path in ("/console/%3Cscript%3E", "/console/sales/rows/%3Cimg%3E",
                 "/console/sales?range=%3Cscript%3E", "/console/service/rows/orders?kind=%3Cimg%3E"):
        resp = await get(console, path)
        assert resp.status in (400, 403, 404)
        assert "<script>" not in await resp.text() and "<img" not in await resp.text()


def _csv_cells(body: bytes) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(body.decode("utf-8-sig"))) for cell in row]


async def test_no_export_cell_is_a_formula(
    console: TestClient, login_as: LoginAs, clock: FakeClock  # noqa: F811
) -> None:
    await poison(clock)
    await login_as(console, "manager01")
    files: set[str] = set()
    for section in SECTIONS:
        page = await (await get(console, f"/console/{section}?range=today")).text()
        hrefs = assert_inert(page, section)
        for href in hrefs:
            if "/rows/" in href and not href.split("?")[0].endswith((".csv", ".xlsx")):
                rows_page = await get(console, href)
                if rows_page.status == 200:
                    hrefs += [h for h in links(await rows_page.text()).exports]
        files |= {h for h in hrefs if h.split("?")[0].endswith((".csv", ".xlsx"))}
    assert len(files) > 20, files
    payload_seen = 0
    for href in sorted(files):
        resp = await get(console, href)
        assert resp.status == 200, href
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Content-Disposition"].startswith("attachment;")
        body = await resp.read()
        if href.split("?")[0].endswith(".csv"):
            for cell in _csv_cells(body):
                if cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
                    assert re.fullmatch(r"-?[0-9][0-9.,:%]*", cell), (href, cell)
                payload_seen += any(f in cell for f in ("HYPERLINK", "cmd|", "@SUM", "=1+1"))
        else:
            book = openpyxl.load_workbook(io.BytesIO(body))
            for sheet in book.worksheets:
                for row in sheet.iter_rows():
                    for cell in row:
                        assert cell.data_type != "f", (href, cell.coordinate, cell.value)
                        if isinstance(cell.value, str):
                            payload_seen += any(f in cell.value for f in ("HYPERLINK", "cmd|", "@SUM"))
    assert payload_seen, "the payloads reached the exports"


# --- odd requests ------------------------------------------------------------------------------


async def test_long_addresses_and_many_parameters_are_a_4xx(
    console: TestClient, login_as: LoginAs  # noqa: F811
) -> None:
    await login_as(console, "manager01")
    many = "&".join(f"p{i}=1" for i in range(500))
    repeated = "&".join("cinema=1" for _ in range(500))
    for path in (f"/console/sales?{many}", f"/console/sales?range=today&{repeated}",
                 f"/console/sales/export/shows.csv?{many}", f"/console/sales/rows/tickets?{many}",
                 f"/console/?{many}", "/console/sales?x=" + "a" * 7000,
                 "/console/sales/rows/tickets?film=" + "1" * 5000,
                 "/console/sales?range=today&" + "x" * 7000 + "=1",
                 "/console/" + "a" * 5000, "/console/sales/rows/" + "a" * 5000,
                 "/console/sales?x=" + "a" * 9000):
        resp = await get(console, path)
        assert 400 <= resp.status < 500, (path[:60], resp.status)
    for path in ("/console/login?next=/console/" + "a" * 3000, "/console/enter?t=" + "a" * 6000,
                 "/console/oauth?code=" + "a" * 6000 + "&state=x"):
        resp = await get(console, path)
        assert resp.status in (302, 403) or 400 <= resp.status < 500, (path[:40], resp.status)


async def test_other_methods_on_console_routes_are_a_405(
    console: TestClient, login_as: LoginAs  # noqa: F811
) -> None:
    await login_as(console, "manager01")
    routes = ("/console/", "/console/sales", "/console/sales/export/shows.csv",
              "/console/sales/rows/tickets", "/console/sales/rows/tickets.xlsx", "/console/login",
              "/console/oauth", "/console/enter", "/console/static/console.css")
    for path in routes:
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            resp = await console.request(method, path, data=b"x=1", allow_redirects=False)
            assert resp.status == 405, (method, path, resp.status)
            assert "GET" in resp.headers["Allow"], (method, path)
        head = await console.head(path, allow_redirects=False)
        assert head.status < 500 and not await head.read(), path
    resp = await console.put("/console/logout", allow_redirects=False)
    assert resp.status == 405 and "POST" in resp.headers["Allow"]
    assert (await console.post("/console/sales/else/more")).status == 404


# --- headers -----------------------------------------------------------------------------------


def assert_page_headers(resp: Any, where: str) -> None:
    headers = resp.headers
    assert "no-store" in headers.get("Cache-Control", ""), where
    assert headers.get("X-Content-Type-Options") == "nosniff", where
    assert headers.get("X-Frame-Options") == "DENY", where
    assert "frame-ancestors 'none'" in headers.get("Content-Security-Policy", ""), where


async def test_every_console_answer_forbids_framing_caching_and_sniffing(
    console: TestClient, login_as: LoginAs, clock: FakeClock  # noqa: F811
) -> None:
    await seed(clock.now())
    anonymous = ["/console/login", "/console/enter?t=x", "/console/oauth?code=x&state=y",
                 "/console/sales", "/console/sales/export/shows.csv", "/console/"]
    for path in anonymous:
        assert_page_headers(await get(console, path), path)
    await login_as(console, "staff01")
    assert_page_headers(await get(console, "/console/sales"), "403 page")
    assert_page_headers(await get(console, "/console/sales/export/shows.csv"), "403 file")
    console.session.cookie_jar.clear()
    await login_as(console, "manager01")
    for path in ("/console/sales?range=today", "/console/sales/rows/tickets?range=today",
                 "/console/sales/export/shows.csv", "/console/sales/rows/tickets.xlsx",
                 "/console/sales?range=nope", "/console/sales/export/shows.csv?range=nope",
                 "/console/sales/rows/tickets?show=x", "/console/sales/rows/tickets.csv?show=x",
                 "/console/nothing", "/console/", "/console/static/nothing.js"):
        resp = await get(console, path)
        assert_page_headers(resp, path)
    # A figure's parameter the section refuses: the page frame says so, not bare text.
    resp = await get(console, "/console/sales/rows/tickets?show=x")
    assert resp.status == 400 and resp.content_type == "text/html" and "参数" in await resp.text()
    assert 'class="cn-tabs"' in await resp.text()
    assert_page_headers(await get(console, "/console/logout"), "logout")
    # Static files keep their year-long cache, and are not framed or sniffed either.
    css = await get(console, layout.static_url("console.css"))
    assert "immutable" in css.headers["Cache-Control"]
    assert css.headers["X-Content-Type-Options"] == "nosniff" and css.headers["X-Frame-Options"] == "DENY"


# --- 「看板」 in chat --------------------------------------------------------------------------


async def test_only_active_staff_get_a_console_link_in_chat(
    make_client: Callable[..., Any], standin: Standin, callbacks_for: Any, wechat: Any,  # noqa: F811
    clock: FakeClock,
) -> None:
    client = await make_client(standin=standin)
    post = callbacks_for(client)
    for userid in ("stranger7", "outsider1"):
        status, reply = await post(text_xml("ww_corp", userid, "看板", next_msg_id(), 1000002))
        assert status == 200 and "/console/enter" not in json.dumps(reply, ensure_ascii=False), userid
    await Staff.filter(userid="staff02").update(active=False)
    status, reply = await post(text_xml("ww_corp", "staff02", "看板", next_msg_id(), 1000002))
    assert "/console/enter" not in json.dumps(reply, ensure_ascii=False)
    # An audience member on the WeChat account: 「看板」 is just words there.
    req = wechat.sign(text_xml("gh_cinema", "o-audience-1", "看板", next_msg_id()),
                      encrypted=True, timestamp=int(clock.timestamp()))
    resp = await client.post("/wechat/callback", params=req.params, data=req.body)
    assert resp.status == 200
    reply_text = await resp.text()
    opened = wechat.open_reply(reply_text, req.params) if reply_text not in ("", "success") else {}
    assert "/console/enter" not in json.dumps(opened, ensure_ascii=False)
    # A link made for someone who is not staff (a stale one, or forged by a bug) logs nobody in.
    for userid in ("stranger7", "o-audience-1", "staff02"):
        resp = await get(client, _path(link_for(client, clock, userid)))
        assert resp.status == 403 and auth.SESSION_COOKIE not in resp.cookies, userid


# --- in a real browser -------------------------------------------------------------------------


@pytest.fixture
async def served(aiohttp_client: Any, settings: Any, clock: FakeClock, standin: Standin) -> TestClient:
    """The real app on a port bound first, PUBLIC_URL its own address (a browser follows
    its redirects), the stand-in as WeCom."""
    import socket
    from dataclasses import replace

    from bot.app import init_app

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


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
async def test_no_payload_runs_in_chromium_even_in_chart_tooltips(
    served: TestClient, browser: Any, clock: FakeClock  # noqa: F811
) -> None:
    """The payloads in a real Chromium, with the pages' own CSP: every chart is drawn and
    hovered point by point (ECharts writes tooltips as HTML), and nothing ever runs —
    no dialog, no ``onerror``, no element the data brought."""
    await poison(clock)
    await seed_fleet(clock.now())  # projectors with scores: their charts carry the halls' names
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), asyncio.ensure_future(d.dismiss())))
    await page.goto(enter_url(served, clock, "manager01"))
    tips = ""
    for section in SECTIONS:
        await page.goto(str(served.make_url(f"/console/{section}?range=today")))
        await page.wait_for_load_state("load")
        boxes = await page.evaluate(
            """() => [...document.querySelectorAll('.cb-chart')].map(el => {
                  el.scrollIntoView(); const r = el.getBoundingClientRect();
                  return [r.x + scrollX, r.y + scrollY, r.width, r.height, !!el.querySelector('svg')]; })"""
        )
        assert all(drawn for *_, drawn in boxes), (section, boxes)
        for x, y, width, height, _ in boxes:
            await page.evaluate(f"window.scrollTo(0, {max(0, y - 100)})")
            top = y - await page.evaluate("scrollY")
            for fx in (0.15, 0.3, 0.5, 0.7, 0.9):
                for fy in (0.3, 0.6):
                    await page.mouse.move(x + width * fx, top + height * fy)
                    tips += await page.evaluate(
                        "() => [...document.querySelectorAll('.cb-chart div')]"
                        ".map(d => d.textContent).join('|')"
                    )
        found = await page.evaluate(
            "() => [...document.querySelectorAll('img, u, b, i, [onerror]')].map(e => e.outerHTML)"
        )
        assert not found, (section, found)
    assert not dialogs, dialogs
    assert "onerror" in tips or "</script>" in tips, "no tooltip showed a payload (as text)"
    await page.close()


async def test_the_standin_holds_the_console_to_wecoms_rules_for_state(
    standin: Standin, http: Any
) -> None:
    """WeCom takes a ``state`` of a-zA-Z0-9 up to 128 bytes: the console's own state is
    one (``auth.make_state``), and the stand-in refuses any other as WeCom would."""
    state, _ = auth.make_state("secret", 1_800_000_000)
    base = standin.make_url("/connect/oauth2/authorize").with_query(
        appid="ww1", redirect_uri="http://app.example/console/oauth", response_type="code",
        scope="snsapi_base", agentid="1", userid="manager01",
    )
    for good in (state, "", "a" * 128):
        async with http.get(base.update_query(state=good), allow_redirects=False) as resp:
            assert resp.status == 302, good
    for bad in ("a" * 129, "a-b", "a b", "<script>", "状态"):
        async with http.get(base.update_query(state=bad), allow_redirects=False) as resp:
            assert resp.status == 400 and "state" in await resp.text(), bad
